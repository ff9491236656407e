"""The stage around the backends: keypoint undistortion, even frame skipping under load, the
recording `walkout replay` reads, and the CLI's errors."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from walkout.events import KeypointFrame
from walkout.perception.backends import Poses
from walkout.perception.output import write_keypoint_recording
from walkout.perception.stage import FrameGovernor, PerceptionStage
from walkout.perception.undistort import undistort_keypoints
from walkout.sources.recording import RecordingError, load_sensors
from walkout.store import load_store
from walkout.store.model import Store

STORE = load_store("aifi-nanostore")


def test_undistorted_keypoints_match_a_distortion_free_projection():
    cam = STORE.cameras_by_id["cam7"]
    rng = np.random.default_rng(1)
    world = np.c_[rng.uniform(2.5, 5.5, 40), rng.uniform(-2.0, 0.0, 40), rng.uniform(0, 1.8, 40)]
    rvec, tvec = np.array(cam.pose.rvec), np.array(cam.pose.tvec)
    raw, _ = cv2.projectPoints(world, rvec, tvec, cam.K_array, cam.dist_array)
    ideal, _ = cv2.projectPoints(world, rvec, tvec, cam.K_array, np.zeros(5))
    raw, ideal = raw.reshape(-1, 2), ideal.reshape(-1, 2)
    inside = (raw[:, 0] > 0) & (raw[:, 0] < 640) & (raw[:, 1] > 0) & (raw[:, 1] < 360)
    assert inside.sum() >= 10
    kp = np.zeros((1, inside.sum(), 3), np.float32)
    kp[0, :, :2], kp[0, :, 2] = raw[inside], 0.7
    und = undistort_keypoints(kp, cam.K_array, cam.dist_array)
    assert np.abs(und[0, :, :2] - ideal[inside]).max() < 0.05  # px
    assert np.abs(raw[inside] - ideal[inside]).max() > 20  # the lens matters on this camera
    assert (und[..., 2] == 0.7).all()


class _SlowBackend:
    """Backend stand-in with a known cost per frame (the governor only sees durations)."""

    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def infer(self, image_bgr: np.ndarray) -> Poses:
        import time

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < self.seconds:
            pass
        return Poses.empty()

    def infer_batch(self, images_bgr: list[np.ndarray]) -> list[Poses]:
        return [self.infer(i) for i in images_bgr]


def test_governor_skips_evenly():
    gov = FrameGovernor(fps=10.0, headroom=1.0)  # 100 ms per frame available
    taken = []
    for _ in range(300):
        ok = gov.admit()
        taken.append(ok)
        if ok:
            gov.observe(0.25)  # inference needs 250 ms: 2 frames in 5 can be processed
    idx = np.flatnonzero(taken[20:])
    assert 0.38 < len(idx) / 280 < 0.42
    assert set(np.diff(idx)) <= {2, 3}  # evenly spread: never a burst, never a long hole


def test_stage_counts_the_frames_it_skips():
    stage = PerceptionStage(_SlowBackend(0.02), "cam1", governor=FrameGovernor(fps=100.0))
    img = np.zeros((8, 8, 3), np.uint8)
    out = [stage.process(i / 100, img) for i in range(100)]
    s = stage.stats
    assert s.frames_in == 100 and s.processed + s.skipped == 100 and s.skipped > 30
    assert sum(f is not None for f in out) == s.processed


def test_governor_keeps_everything_when_fast_enough():
    stage = PerceptionStage(_SlowBackend(0.0), "cam1", governor=FrameGovernor(fps=10.0))
    img = np.zeros((8, 8, 3), np.uint8)
    assert all(stage.process(i / 10, img) is not None for i in range(50))
    assert stage.stats.skipped == 0


def test_recording_merges_cameras_and_replays(tmp_path: Path):
    kp = np.zeros((1, 17, 3), np.float32)
    a = [KeypointFrame("cam1", i / 10, kp) for i in range(5)]
    b = [KeypointFrame("cam3", i / 10 + 0.01, kp) for i in range(4)]
    write_keypoint_recording(tmp_path, STORE, a, {"backend": "x"})
    n = write_keypoint_recording(tmp_path, STORE, b, {"backend": "y"})
    assert n == 9
    n = write_keypoint_recording(tmp_path, STORE, a[:2], {"backend": "x"})  # cam1 again
    assert n == 6
    s = load_sensors(tmp_path)
    assert [f.camera_id for f in s.frames].count("cam1") == 2
    assert [f.t for f in s.frames] == sorted(f.t for f in s.frames)
    assert set(json.loads((tmp_path / "perception.json").read_text())) == {"cam1", "cam3"}


def test_cameras_written_at_the_same_time_are_all_kept(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    """One ``perceive`` per camera, started together with the same ``--duration``: they end
    together and each read the recording, added its camera and wrote it back, so the last
    write dropped the cameras of the others. They take turns now."""
    import multiprocessing

    import walkout.perception.output as output

    kp = np.zeros((1, 17, 3), np.float32)
    cams = ["cam1", "cam2", "cam3", "cam4"]
    ctx = multiprocessing.get_context("fork")  # the patched reader goes with the processes
    together = ctx.Barrier(len(cams))
    read = output._existing

    def slow_read(out: Path, store: Store) -> list[KeypointFrame]:
        frames = read(out, store)
        # every run has read before any writes, unless turns keep them apart
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait(timeout=1.0)
        return frames

    monkeypatch.setattr(output, "_existing", slow_read)

    def run(cam: str) -> None:
        write_keypoint_recording(tmp_path, STORE, [KeypointFrame(cam, i / 10, kp)
                                                   for i in range(5)], {"backend": cam})

    procs = [ctx.Process(target=run, args=(c,)) for c in cams]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(cams)
    frames = load_sensors(tmp_path).frames
    assert sorted({f.camera_id for f in frames}) == cams and len(frames) == 20
    assert sorted(json.loads((tmp_path / "perception.json").read_text())) == cams
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # nothing else left there
        "gates.jsonl", "keypoints.npz", "perception.json", "plates.npz", "recording.json",
        "store.yaml"]


def test_recording_with_a_corrupt_keypoints_file_is_refused_and_kept(tmp_path: Path):
    """Adding a camera to a recording whose keypoints file is damaged stops with the file named,
    and leaves the file as it was (nothing recorded is overwritten)."""
    kp = np.zeros((1, 17, 3), np.float32)
    write_keypoint_recording(tmp_path, STORE, [KeypointFrame("cam1", 0.0, kp)], {"backend": "x"})
    path = tmp_path / "keypoints.npz"
    damaged = path.read_bytes()[:200]
    path.write_bytes(damaged)
    cam3 = [KeypointFrame("cam3", 0.0, kp)]
    with pytest.raises(RecordingError, match=r"keypoints\.npz: corrupt"):
        write_keypoint_recording(tmp_path, STORE, cam3, {"backend": "y"})
    assert path.read_bytes() == damaged


def test_a_write_that_fails_half_way_keeps_the_earlier_cameras(tmp_path: Path):
    """keypoints.npz used to be rewritten in place: a full disk while adding a camera left a
    truncated archive and the frames of every camera perceived before were gone. A real failed
    write (the file-size limit, as a full disk fails it) now leaves the recording as it was."""
    import resource
    import signal

    kp = np.zeros((1, 17, 3), np.float32)
    write_keypoint_recording(tmp_path, STORE, [KeypointFrame("cam1", i / 10, kp)
                                               for i in range(5)], {"backend": "x"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    big = np.ones((20, 17, 3), np.float32)
    cam3 = [KeypointFrame("cam3", i / 10, big) for i in range(500)]  # ~2 MB of keypoints
    limit = max(len(b) for b in before.values()) + 4096
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError):
            write_keypoint_recording(tmp_path, STORE, cam3, {"backend": "y"})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no partial left
    assert [f.camera_id for f in load_sensors(tmp_path).frames] == ["cam1"] * 5


def test_a_corrupt_perception_json_is_refused_before_anything_is_written(tmp_path: Path):
    """perception.json was read with a bare json.loads after keypoints.npz and recording.json
    had been rewritten: a JSONDecodeError traceback, and the recording half changed."""
    kp = np.zeros((1, 17, 3), np.float32)
    write_keypoint_recording(tmp_path, STORE, [KeypointFrame("cam1", 0.0, kp)], {"backend": "x"})
    (tmp_path / "perception.json").write_text("{truncated")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(RecordingError, match=r"perception\.json: invalid JSON"):
        write_keypoint_recording(tmp_path, STORE, [KeypointFrame("cam3", 0.0, kp)], {})
    (tmp_path / "perception.json").write_text("[1]")
    with pytest.raises(RecordingError, match=r"perception\.json: not a JSON object"):
        write_keypoint_recording(tmp_path, STORE, [KeypointFrame("cam3", 0.0, kp)], {})
    (tmp_path / "perception.json").write_text("{truncated")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_perceive_never_writes_over_a_recording_with_sensor_data(tmp_path: Path):
    """`walkout perceive --out` pointed at a simulated or store recording used to replace its
    plates and gates with empty streams: refused, every file left as it was."""
    from walkout.sim.session import simulate
    from walkout.sources.recording import write_recording

    store = load_store("small")
    write_recording(simulate(store, 1, 1), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    frame = KeypointFrame(store.cameras[0].id, 0.0, np.zeros((1, 17, 3), np.float32))
    with pytest.raises(RecordingError, match="sensor data"):
        write_keypoint_recording(tmp_path, store, [frame], {"backend": "x"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_perceive_from_a_stream_that_gives_nothing_fails_and_writes_nothing(tmp_path: Path):
    r = _walkout("perceive", "--out", str(tmp_path / "rec"), "--camera", "cam1", "--store",
                 "aifi-nanostore", "--stream", "rtsp://127.0.0.1:1/none", "--duration", "1")
    assert r.returncode == 2 and "no frame was read" in r.stderr, r.stderr
    assert not (tmp_path / "rec").exists()


def _walkout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "walkout.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_perceive_rejects_bad_input(tmp_path: Path):
    r = _walkout("perceive", "--video", str(tmp_path / "nope.mp4"), "--camera", "cam9",
                 "--store", "aifi-nanostore", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "camera 'cam9' is not in store" in r.stderr
    r = _walkout("perceive", "--video", str(tmp_path / "nope.mp4"), "--camera", "cam1",
                 "--store", "aifi-nanostore", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "video file not found" in r.stderr
    r = _walkout("perceive", "--camera", "cam1", "--store", "aifi-nanostore",
                 "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "exactly one of --video" in r.stderr


@pytest.mark.slow
def test_perceive_a_real_clip_then_replay(tmp_path: Path, models_dir: Path, videos_dir: Path):
    clip = tmp_path / "clip.mp4"  # 3 s of camera 3 around the shopper's first reach
    cap = cv2.VideoCapture(str(videos_dir / "cps-test-01-nodepth-cam3.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 360))
    for _ in range(30):
        ok, img = cap.read()
        assert ok
        out.write(img)
    out.release()
    rec = tmp_path / "rec"
    r = _walkout("perceive", "--video", str(clip), "--camera", "cam3", "--store",
                 "aifi-nanostore", "--out", str(rec), "--models", str(models_dir))
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["processed"] == 30 and stats["skipped"] == 0
    assert stats["people"] >= 25  # the shopper, in (nearly) every frame
    s = load_sensors(rec)
    assert len(s.frames) == 30 and all(f.camera_id == "cam3" for f in s.frames)
    r = _walkout("replay", str(rec))
    assert r.returncode == 0, r.stderr
    assert json.loads((rec / "receipts.json").read_text())["receipts"] == []


def _noisy_video(path: Path, videos_dir: Path, frames: int, fps: float,
                 size: tuple[int, int]) -> None:
    """Real footage with per-frame noise: every frame costs a full decode."""
    cap = cv2.VideoCapture(str(videos_dir / "cps-test-01-nodepth-cam3.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, img = cap.read()
    cap.release()
    assert ok
    base = cv2.resize(img, size)
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 48, base.shape, dtype=np.uint8) for _ in range(7)]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        out.write(cv2.add(base, noise[i % 7]))
    out.release()


@pytest.mark.slow
def test_realtime_replay_keeps_up_when_decoding_costs_a_share_of_the_period(
        tmp_path: Path, models_dir: Path, videos_dir: Path):
    """The governor weighed inference alone: with 720p at 120 fps, decoding every frame takes a
    third of the period, and a 4 s replay ended over 1 s behind its clock, falling further behind
    for as long as it ran. Reading is now in its budget: it keeps the video's clock. (How
    evenly it skips is left to test_governor_skips_evenly: with a third of the period left to
    share, a busy machine's jitter decides the spacing here.)"""
    import time

    from walkout.perception.config import PerceptionConfig
    from walkout.perception.run import perceive_video

    video = tmp_path / "fast.mp4"
    _noisy_video(video, videos_dir, 480, 120.0, (1280, 720))
    cfg = PerceptionConfig(models_dir=models_dir, threads=1)
    seen: list[float] = []  # when each frame was done with, from the first on (model loaded)
    res = perceive_video(video, "cam3", None, cfg, realtime=True,
                         progress=lambda n: seen.append(time.perf_counter()))
    wall = seen[-1] - seen[0]  # the video's 479 periods last 3.99 s
    s = res.stats
    assert s["frames_in"] == 480 and s["skipped"] > 100 and s["processed"] >= 10
    assert wall < 4.0 + 0.5, f"a 4 s video took {wall:.1f} s: {s}"


def test_a_truncated_video_is_an_error_not_a_shorter_recording(tmp_path: Path,
                                                                models_dir: Path):
    """A video cut short (a copy interrupted, a camera's disk full) was read up to the damage
    and written as a recording of half the footage, exit 0, without a word."""
    video = tmp_path / "cam.avi"
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 90))
    for i in range(100):
        img = np.zeros((90, 160, 3), np.uint8)
        cv2.putText(img, str(i), (10, 60), 0, 1.5, (255, 255, 255), 2)
        out.write(img)
    out.release()
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    rec = tmp_path / "rec"
    r = _walkout("perceive", "--video", str(video), "--camera", "cam1", "--store",
                 "aifi-nanostore", "--out", str(rec), "--models", str(models_dir))
    assert r.returncode == 2, r.stderr
    assert re.search(r"cam\.avi: ends at frame 5\d of the 100", r.stderr), r.stderr
    assert not rec.exists()
