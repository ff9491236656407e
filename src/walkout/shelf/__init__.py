"""Shelf stage: load-cell plate readings → settled weight changes → ShelfEvents with product
hypotheses, plus the plate inventory and sensor-fault alerts."""

from walkout.shelf.config import ShelfConfig
from walkout.shelf.detect import PlateChange, PlateDetector
from walkout.shelf.infer import Explainer
from walkout.shelf.inventory import PlateInventory
from walkout.shelf.stage import ShelfStage

__all__ = [
    "Explainer",
    "PlateChange",
    "PlateDetector",
    "PlateInventory",
    "ShelfConfig",
    "ShelfStage",
]
