"""Where studies live: the store interface and its implementations (journal folder today)."""

from nbtune.store.attrs import ATTR, finished_count, is_interrupted
from nbtune.store.base import BaseStore
from nbtune.store.journal import JournalStore, Store, default_store_dir, load_study

__all__ = [
    "ATTR",
    "BaseStore",
    "JournalStore",
    "Store",
    "default_store_dir",
    "finished_count",
    "is_interrupted",
    "load_study",
]
