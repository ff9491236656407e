"""``walkout models check``: which pose models are installed and whether they load and run.

Each backend's model is loaded from the models directory and run once on a blank frame, so a
truncated download or a wrong file shows up here rather than in the middle of a store day.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from walkout.perception.backends import BACKENDS, ModelError, create_backend
from walkout.perception.config import PerceptionConfig


@dataclass(frozen=True, slots=True)
class ModelStatus:
    backend: str
    path: Path | None
    ok: bool
    detail: str


def _path(cfg: PerceptionConfig, backend: str) -> Path | None:
    rel = {"movenet": cfg.movenet.path, "openvino-hpe": cfg.openvino_hpe.path,
           "onnx": cfg.onnx.path}[backend]
    return cfg.model_path(rel) if rel else None


def check_models(models_dir: Path, onnx_model: str = "") -> list[ModelStatus]:
    """One status per backend; the ONNX backend is checked only when a model is named."""
    out = []
    blank = np.zeros((360, 640, 3), np.uint8)
    for name in BACKENDS:
        try:
            cfg = PerceptionConfig(models_dir=models_dir, backend=name,  # type: ignore[arg-type]
                                   onnx={"path": onnx_model or "unset.onnx"})
        except ValueError as e:
            out.append(ModelStatus(name, None, False, str(e)))
            continue
        path = _path(cfg, name)
        if name == "onnx" and not onnx_model:
            out.append(ModelStatus(name, None, True, "no model configured (optional)"))
            continue
        try:
            backend = create_backend(cfg)
            t0 = time.perf_counter()
            backend.infer(blank)
            ms = 1000 * (time.perf_counter() - t0)
        except ModelError as e:
            out.append(ModelStatus(name, path, False, str(e)))
        else:
            out.append(ModelStatus(name, path, True, f"loads and runs ({ms:.0f} ms first frame)"))
    return out
