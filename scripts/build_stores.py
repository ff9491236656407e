"""Regenerate the shipped store files from ../shared/data (run from the repo root)."""

from pathlib import Path

from walkout.store.generate import build_small_store
from walkout.store.loader import dump_store

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT = Path(__file__).resolve().parents[1] / "src" / "walkout" / "store" / "builtin"

if __name__ == "__main__":
    store = build_small_store(
        DATA / "aifi-autocheckout" / "BENCHMARK-1" / "products.json",
        DATA / "aim3s" / "product_info.json",
    )
    dump_store(store, OUT / "small.yaml")
    n_plates, n_products = len(store.plates), len(store.catalogue)
    print(f"wrote {OUT / 'small.yaml'}: {n_plates} plates, {n_products} products")
