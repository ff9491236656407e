"""Pose backends on a real ceiling-camera frame: one shopper found, where he stands, by both
CPU backends; the ONNX backend's plumbing on a model built here; config and model errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from walkout.perception import ModelError, PerceptionConfig, create_backend
from walkout.perception.backends.openvino_hpe import LIMBS

# Camera 7 at 15 s: the shopper's hips are around x 225-260, y 105-120 px, shoulders ~ y 15-25
HIPS_PX = np.array([242.0, 113.0])


def _hip_centre(kp: np.ndarray) -> np.ndarray:
    return kp[[11, 12], :2].mean(axis=0)


@pytest.mark.parametrize("backend", ["movenet", "openvino-hpe"])
def test_backend_finds_the_shopper(backend: str, models_dir: Path, shopper_frame: np.ndarray):
    b = create_backend(PerceptionConfig(backend=backend, models_dir=models_dir))  # type: ignore[arg-type]
    poses = b.infer(shopper_frame)
    assert poses.keypoints.shape == (1, 17, 3)
    kp = poses.keypoints[0]
    assert np.linalg.norm(_hip_centre(kp) - HIPS_PX) < 25
    assert kp[[11, 12], 2].min() > 0.3  # hips clearly seen
    assert kp[[5, 6], 1].max() < kp[[11, 12], 1].min()  # shoulders above hips in the image


def test_openvino_passes_paf_scores_on(models_dir: Path, shopper_frame: np.ndarray):
    b = create_backend(PerceptionConfig(backend="openvino-hpe", models_dir=models_dir))
    poses = b.infer(shopper_frame)
    assert poses.limb_scores is not None and poses.limb_scores.shape == (1, len(LIMBS))
    # neck-hip limbs (indices 6 and 9) carry strong part-affinity support on this clear view
    assert np.nanmin(poses.limb_scores[0, [6, 9]]) > 0.5
    # the joint confidences the tracker weighs include that support: at most the heatmap peak
    assert (poses.keypoints[0, :, 2] <= 1.0).all()


def test_backends_agree_on_the_torso(models_dir: Path, shopper_frame: np.ndarray):
    a = create_backend(PerceptionConfig(backend="movenet", models_dir=models_dir))
    b = create_backend(PerceptionConfig(backend="openvino-hpe", models_dir=models_dir))
    ka, kb = a.infer(shopper_frame).keypoints[0], b.infer(shopper_frame).keypoints[0]
    assert np.linalg.norm(_hip_centre(ka) - _hip_centre(kb)) < 25


def _movenet_layout_model(path: Path, h: int, w: int) -> np.ndarray:
    """An ONNX graph returning a fixed MoveNet-layout tensor plus 0 × the input (so the input
    is really consumed): the backend's decoding is then known exactly."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = np.zeros((1, 6, 56), np.float32)
    out[0, 0, :51] = np.tile([0.5, 0.25, 0.9], 17)  # y=0.5, x=0.25, score 0.9
    out[0, 0, 55] = 0.8
    out[0, 1, 55] = 0.05  # a second, weak person: filtered out
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["const", "z"], ["poses"]),
    ]
    graph = helper.make_graph(
        nodes, "fixed",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", h, w, 3])],
        [helper.make_tensor_value_info("poses", TensorProto.FLOAT, [1, 6, 56])],
        [numpy_helper.from_array(out, "const"),
         numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return out


def test_onnx_backend_decodes_movenet_layout(tmp_path: Path):
    _movenet_layout_model(tmp_path / "m.onnx", 160, 256)
    cfg = PerceptionConfig(backend="onnx", models_dir=tmp_path,
                           onnx={"path": "m.onnx", "input_size": (256, 160)})
    b = create_backend(cfg)
    assert "CPUExecutionProvider" in b.providers  # type: ignore[attr-defined]
    img = np.zeros((360, 640, 3), np.uint8)
    poses = b.infer(img)
    assert poses.keypoints.shape == (1, 17, 3)
    np.testing.assert_allclose(poses.keypoints[0, 0], [160.0, 180.0, 0.9], rtol=1e-5)
    batch = b.infer_batch([img, img, img])
    assert [p.keypoints.shape[0] for p in batch] == [1, 1, 1]


def test_missing_model_is_named(tmp_path: Path):
    with pytest.raises(ModelError, match=r"MoveNet model not found: .*movenet.tflite"):
        create_backend(PerceptionConfig(models_dir=tmp_path))


def test_config_is_strict():
    with pytest.raises(ValueError, match="extra"):
        PerceptionConfig(backend="movenet", treads=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"needs onnx\.path"):
        PerceptionConfig(backend="onnx")
    with pytest.raises(ValueError, match="multiple of 32"):
        PerceptionConfig(movenet={"long_side": 300})


@pytest.mark.parametrize(("backend", "runtime"), [("movenet", "ai_edge_litert"),
                                                  ("openvino-hpe", "openvino"),
                                                  ("onnx", "onnxruntime")])
def test_a_runtime_that_is_not_installed_is_a_model_error_naming_it(
        backend: str, runtime: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The runtimes are an extra (``walkout[perception]``): without it the import failed as a
    ModuleNotFoundError wherever a backend was made."""
    for name in [runtime, *(m for m in sys.modules if m.startswith(f"{runtime}."))]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    cfg = PerceptionConfig(models_dir=tmp_path, backend=backend,
                           onnx={"path": "x.onnx"} if backend == "onnx" else {})
    with pytest.raises(ModelError, match=rf"the {backend} backend needs {runtime}, which is "
                                         r"not installed: pip install 'walkout\[perception\]'"):
        create_backend(cfg)
