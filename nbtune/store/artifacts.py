"""Where trials' files (checkpoints) go: a folder, or an object store every machine reaches.

``--artifacts s3://bucket/prefix`` (or the ``NBTUNE_ARTIFACTS`` environment variable) puts them
in S3 or any S3-compatible object store (MinIO, Ceph, a cloud's) through Optuna's own
``Boto3ArtifactStore``. boto3 finds the endpoint and credentials where the AWS tools do:
``AWS_ENDPOINT_URL`` (for a store that is not AWS), ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``~/.aws/credentials``, an instance role. nbtune never sees a secret.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

from nbtune.exceptions import ConfigError

__all__ = ["artifacts_location", "is_object_store_url", "open_artifact_store"]

_SCHEMES = ("s3://",)
_CLIENTS: dict[str, Any] = {}  # one boto3 client per process and endpoint (creating one takes ~50 ms)
_LOCK = threading.Lock()


def is_object_store_url(location: str | os.PathLike[str] | None) -> bool:
    return location is not None and str(location).startswith(_SCHEMES)


class _Prefixed:
    """An Optuna artifact store whose ids live under ``prefix/`` (Optuna's S3 store writes ids as
    keys at the top of the bucket; one bucket then serves many projects)."""

    def __init__(self, inner: Any, prefix: str) -> None:
        self._inner, self._prefix = inner, prefix.strip("/") + "/"

    def open_reader(self, artifact_id: str) -> BinaryIO:
        reader: BinaryIO = self._inner.open_reader(self._prefix + artifact_id)
        return reader

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._inner.write(self._prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self._inner.remove(self._prefix + artifact_id)


def _s3(url: str) -> Any:
    try:
        import boto3
        from optuna.artifacts import Boto3ArtifactStore
    except ImportError:
        raise ConfigError(f"--artifacts {url} needs boto3; install it with: pip install 'nbtune[s3]'") from None
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError(f"--artifacts {url}: name the bucket, e.g. s3://my-bucket/nbtune")
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    with _LOCK:
        client = _CLIENTS.get(endpoint)
        if client is None:
            client = _CLIENTS[endpoint] = boto3.client("s3")
    store = Boto3ArtifactStore(bucket, client=client)
    return _Prefixed(store, prefix) if prefix.strip("/") else store


def artifacts_location(artifacts: str | os.PathLike[str] | None, default: Path) -> str | Path:
    """Where a store keeps checkpoints: an object store URL as given, a folder made absolute, or
    ``default`` when none is given."""
    if is_object_store_url(artifacts):
        return str(artifacts)
    return Path(artifacts).expanduser().absolute() if artifacts is not None else default


def open_artifact_store(location: str | os.PathLike[str]) -> Any:
    """The Optuna artifact store at ``location``: ``s3://bucket/prefix``, or a folder (created)."""
    if is_object_store_url(location):
        return _s3(str(location))
    from optuna.artifacts import FileSystemArtifactStore

    Path(location).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(Path(location))
