"""A user-supplied ONNX pose model through ONNX Runtime.

Execution providers are tried in the configured order, keeping only those this ONNX Runtime
build offers: with ``onnxruntime-gpu`` on a CUDA machine that is the CUDA EP, elsewhere the CPU
EP, so nothing depends on a GPU. Batches go through in one ``run`` when the model's batch axis
is dynamic (the way to reach thousands of frames per second on one GPU), else image by image.
See :class:`~walkout.perception.config.OnnxConfig` for the input and output contracts.
"""

from __future__ import annotations

import cv2
import numpy as np

from walkout.perception.backends import ModelError, Poses, filter_people
from walkout.perception.config import PerceptionConfig


class OnnxPose:
    name = "onnx"

    def __init__(self, config: PerceptionConfig) -> None:
        import onnxruntime as ort

        c = config.onnx
        path = config.model_path(c.path)
        if not path.is_file():
            raise ModelError(f"ONNX model not found: {path} (models_dir {config.models_dir})")
        available = set(ort.get_available_providers())
        providers = [p for p in c.providers if p in available] or ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = config.threads
        try:
            self._sess = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types, not exported
            raise ModelError(f"{path}: not a loadable ONNX model ({e})") from e
        self.providers = tuple(self._sess.get_providers())
        inp = self._sess.get_inputs()
        if len(inp) != 1:
            raise ModelError(f"{path}: expected one image input, found {len(inp)}")
        self._input = inp[0].name
        batch = inp[0].shape[0]
        self._dynamic_batch = not isinstance(batch, int)
        self._cfg, self._c = config, c

    def _blob(self, images: list[np.ndarray]) -> np.ndarray:
        w, h = self._c.input_size
        arr = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)[..., ::-1]
                        for im in images])
        if self._c.layout == "nchw":
            arr = arr.transpose(0, 3, 1, 2)
        if self._c.dtype == "float32":
            return np.ascontiguousarray(arr, dtype=np.float32) * np.float32(self._c.scale)
        return np.ascontiguousarray(arr, dtype=np.uint8)

    def _decode(self, out: np.ndarray, ih: int, iw: int) -> Poses:
        if self._c.output == "movenet":
            if out.shape[-1] != 56:
                raise ModelError(f"ONNX output {out.shape} is not the MoveNet (P, 56) layout")
            raw = out.reshape(-1, 56)
            kp = raw[:, :51].reshape(-1, 17, 3)
            xy = np.stack([kp[..., 1] * iw, kp[..., 0] * ih, kp[..., 2]], -1)
            scores = raw[:, 55]
        else:
            if out.shape[-2:] != (17, 3):
                raise ModelError(f"ONNX output {out.shape} is not the (P, 17, 3) layout")
            kp = out.reshape(-1, 17, 3)
            xy = np.stack([kp[..., 0] * iw, kp[..., 1] * ih, kp[..., 2]], -1)
            scores = kp[..., 2].mean(axis=1)
        poses = Poses(xy.astype(np.float32), scores.astype(np.float32))
        return filter_people(poses, self._cfg.min_person_score, self._cfg.max_people)

    def infer(self, image_bgr: np.ndarray) -> Poses:
        return self.infer_batch([image_bgr])[0]

    def infer_batch(self, images_bgr: list[np.ndarray]) -> list[Poses]:
        if not images_bgr:
            return []
        per: list[np.ndarray] = []
        if self._dynamic_batch:
            outs = self._sess.run(None, {self._input: self._blob(images_bgr)})[0]
            if outs.shape[0] == len(images_bgr):
                per = list(outs)
            else:  # the output does not follow the batch axis: go image by image from now on
                self._dynamic_batch = False
        if not per:
            per = [self._sess.run(None, {self._input: self._blob([im])})[0][0]
                   for im in images_bgr]
        return [self._decode(np.asarray(o), im.shape[0], im.shape[1])
                for o, im in zip(per, images_bgr, strict=True)]


def create(config: PerceptionConfig) -> OnnxPose:
    return OnnxPose(config)
