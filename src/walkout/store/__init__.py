"""Store description: geometry, catalogue, planogram, cameras, gates."""

from walkout.store.loader import StoreFileError, builtin_stores, load_store, parse_store
from walkout.store.model import Store

__all__ = ["Store", "StoreFileError", "builtin_stores", "load_store", "parse_store"]
