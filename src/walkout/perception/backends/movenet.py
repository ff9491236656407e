"""MoveNet MultiPose Lightning through LiteRT (``ai-edge-litert``): the CPU default.

The model takes a uint8 RGB image whose sides are multiples of 32 (dynamic shape) and returns
(1, 6, 56): per person 17 × (y, x, score) normalised to the input, then a box and the person's
score. Frames are letterboxed (aspect kept, padded bottom/right) so that normalised outputs map
back to source pixels by one scale.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from walkout.perception.backends import ModelError, Poses, filter_people
from walkout.perception.config import PerceptionConfig


class MoveNet:
    name = "movenet"

    def __init__(self, config: PerceptionConfig) -> None:
        from ai_edge_litert.interpreter import Interpreter

        path = config.model_path(config.movenet.path)
        if not path.is_file():
            raise ModelError(f"MoveNet model not found: {path} (models_dir {config.models_dir})")
        try:
            self._it = Interpreter(model_path=str(path), num_threads=config.threads)
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{path}: not a loadable TFLite model ({e})") from e
        inp, out = self._it.get_input_details(), self._it.get_output_details()
        if len(inp) != 1 or inp[0]["dtype"] != np.uint8 or tuple(out[0]["shape"][2:]) != (56,):
            raise ModelError(f"{path}: expected uint8 image in, (1, 6, 56) out; got "
                             f"{inp[0]['dtype']} in, {tuple(out[0]['shape'])} out")
        self._in, self._out = inp[0]["index"], out[0]["index"]
        self._long = config.movenet.long_side
        self._cfg = config
        self._shape: tuple[int, int] | None = None  # (h, w) the interpreter is allocated for
        self._buf: np.ndarray | None = None

    def _prepare(self, h: int, w: int) -> tuple[float, int, int]:
        s = self._long / max(h, w)
        rw, rh = round(w * s), round(h * s)
        ih, iw = 32 * math.ceil(rh / 32), 32 * math.ceil(rw / 32)
        if self._shape != (ih, iw):
            self._it.resize_tensor_input(self._in, [1, ih, iw, 3], strict=False)
            self._it.allocate_tensors()
            self._shape = (ih, iw)
            self._buf = np.zeros((1, ih, iw, 3), np.uint8)
        return s, rw, rh

    def infer(self, image_bgr: np.ndarray) -> Poses:
        h, w = image_bgr.shape[:2]
        s, rw, rh = self._prepare(h, w)
        assert self._buf is not None and self._shape is not None
        small = cv2.resize(image_bgr, (rw, rh), interpolation=cv2.INTER_AREA)
        self._buf[0, :rh, :rw] = small[..., ::-1]  # BGR -> RGB into the padded input
        self._it.set_tensor(self._in, self._buf)
        self._it.invoke()
        raw = self._it.get_tensor(self._out)[0]  # (6, 56)
        ih, iw = self._shape
        kp = raw[:, :51].reshape(-1, 17, 3)
        out = np.empty_like(kp)
        out[..., 0] = kp[..., 1] * iw / s  # x
        out[..., 1] = kp[..., 0] * ih / s  # y
        out[..., 2] = kp[..., 2]
        poses = Poses(out.astype(np.float32), raw[:, 55].astype(np.float32))
        return filter_people(poses, self._cfg.min_person_score, self._cfg.max_people)

    def infer_batch(self, images_bgr: list[np.ndarray]) -> list[Poses]:
        # The TFLite graph has batch 1; one invoke per image.
        return [self.infer(im) for im in images_bgr]


def create(config: PerceptionConfig) -> MoveNet:
    return MoveNet(config)
