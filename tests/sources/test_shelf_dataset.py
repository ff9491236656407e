"""Shelf benchmark readers against the real files (skipped where the data is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from walkout.sources.shelf_dataset import (
    BODY25_PAFS,
    ShelfDataError,
    load_shelf,
    read_calibration,
    read_detections,
    read_skeletons,
)

SHELF = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "shelf"


@pytest.fixture(scope="module")
def shelf_dir() -> Path:
    if not (SHELF / "calibration.json").is_file() or not (SHELF / "gt.txt").is_file():
        pytest.skip(f"Shelf benchmark data not found at {SHELF} (../shared/data beside the repo)")
    return SHELF


def test_calibration(shelf_dir: Path) -> None:
    cams = read_calibration(shelf_dir / "calibration.json")
    assert [c.id for c in cams] == ["0", "1", "2", "3", "4"]
    for c in cams:
        assert c.size == (1032, 776)
        np.testing.assert_allclose(c.R @ c.R.T, np.eye(3), atol=1e-4)
        assert c.K[2, 2] == 1.0 and 1000 < c.K[0, 0] < 1200
        # cameras stand above the floor (world z up, metres)
        assert 0.5 < c.center[2] < 4.0


def test_detections_layout(shelf_dir: Path) -> None:
    cam = read_calibration(shelf_dir / "calibration.json")[0]
    frames = read_detections(shelf_dir / "detection" / "0.txt", cam.size)
    assert len(frames) == 301
    for vf in frames[:50]:
        assert len(vf.joints) == 25 and len(vf.pafs) == len(BODY25_PAFS)
        for (a, b), m in zip(BODY25_PAFS, vf.pafs, strict=True):
            assert m.shape == (len(vf.joints[a]), len(vf.joints[b]))
            assert ((m >= 0) & (m <= 1.5)).all()
        xy = np.concatenate(vf.joints)
        assert (xy[:, 0] >= 0).all() and (xy[:, 0] <= 1031).all()
        assert (xy[:, 1] >= 0).all() and (xy[:, 1] <= 775).all()
        assert ((xy[:, 2] > 0) & (xy[:, 2] <= 1.0)).all()


def test_ground_truth_and_reference(shelf_dir: Path) -> None:
    n_j, gt = read_skeletons(shelf_dir / "gt.txt")
    assert n_j == 15 and len(gt) == 301
    ids = set().union(*(f.people for f in gt))
    assert ids == {0, 1, 2, 3}
    a0 = gt[0].people[0]
    assert a0.shape == (4, 15) and (a0[3] == 1).all()
    # head top above the neck above the pelvis above the ankles
    assert a0[2, 13] > a0[2, 12] > a0[2, 14] > a0[2, 0]
    n_j, ref = read_skeletons(shelf_dir / "skel.txt")
    assert n_j == 19 and len(ref) == 301


def test_load_shelf_prefix(shelf_dir: Path) -> None:
    d = load_shelf(shelf_dir, n_frames=10)
    assert d.n_frames == 10 and len(d.views) == 5 and all(len(v) == 10 for v in d.views)


def test_malformed_files_are_named(tmp_path: Path) -> None:
    p = tmp_path / "0.txt"
    p.write_text("4 1\n1\n0.5\n0.5\n")  # joint 0 only, truncated
    with pytest.raises(ShelfDataError, match=r"0\.txt.*frame 0"):
        read_detections(p, (1032, 776))
    p.write_text("18 1\n")
    with pytest.raises(ShelfDataError, match="BODY25"):
        read_detections(p, (1032, 776))
    g = tmp_path / "gt.txt"
    g.write_text("15 1\n1\n0\n1 2 3\n")
    with pytest.raises(ShelfDataError, match=r"gt\.txt"):
        read_skeletons(g)
