"""The train/validation/holdout split the search benchmarks share (imported by the scripts beside it)."""

from __future__ import annotations

from typing import Any

import numpy as np


def split_scaled(
    X: np.ndarray, y: np.ndarray, seed: int, first: dict[str, Any], second: dict[str, Any]
) -> dict[str, Any]:
    """Train / validation / holdout, stratified and drawn by ``seed``; features standardised on train.

    ``first`` sizes the train part against the rest and ``second`` the validation part against the
    holdout, as ``train_test_split`` takes them (``{"test_size": 0.4}``, ``{"train_size": 1200}``).
    """
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, stratify=y, random_state=seed, **first)
    X_val, X_ho, y_val, y_ho = train_test_split(X_rest, y_rest, stratify=y_rest, random_state=seed, **second)
    sc = StandardScaler().fit(X_tr)
    return {
        "X_train": sc.transform(X_tr),
        "y_train": y_tr,
        "X_val": sc.transform(X_val),
        "y_val": y_val,
        "X_holdout": sc.transform(X_ho),
        "y_holdout": y_ho,
        "classes": np.unique(y),
    }
