"""Real models and real footage from ../shared (beside the checkout); tests needing them skip
with the reason when that folder is absent."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"
MODELS = SHARED / "models"
VIDEOS = SHARED / "data" / "aifi-autocheckout" / "videos"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not MODELS.is_dir():
        pytest.skip(f"pose models not installed: {MODELS} is absent (see issue 9)")
    return MODELS


@pytest.fixture(scope="session")
def videos_dir() -> Path:
    if not (VIDEOS / "cps-test-01-nodepth-cam7.mp4").is_file():
        pytest.skip(f"AiFi footage absent: {VIDEOS}")
    return VIDEOS


@pytest.fixture(scope="session")
def shopper_frame(videos_dir: Path) -> np.ndarray:
    """Camera 7 at 15 s: one shopper, whole body in view, reaching to the shelf."""
    cap = cv2.VideoCapture(str(videos_dir / "cps-test-01-nodepth-cam7.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 150)
    ok, img = cap.read()
    cap.release()
    assert ok
    return img
