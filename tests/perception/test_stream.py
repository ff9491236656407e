"""The live source against a real local HTTP camera (MJPEG over HTTP, as many IP cameras
serve it): the stream stops, the server goes away, comes back on the same port, and the source
reconnects with capture timestamps continuing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from walkout.perception.sources import SourceError, StreamSource, read_video


class _Camera:
    """An MJPEG-over-HTTP server sending ``frames`` numbered frames per connection."""

    def __init__(self, port: int, frames: int, period_s: float = 0.02) -> None:
        img = np.zeros((90, 160, 3), np.uint8)
        cv2.putText(img, "cam", (10, 50), 0, 1.0, (255, 255, 255), 2)
        jpg = cv2.imencode(".jpg", img)[1].tobytes()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=f")
                self.end_headers()
                try:
                    for _ in range(frames):
                        self.wfile.write(b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                        time.sleep(period_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
    yield p


def test_stream_survives_the_camera_going_away(port: int):
    cam = _Camera(port, frames=25)
    url = f"http://127.0.0.1:{port}/video.mjpg"
    got: list[float] = []
    with StreamSource(url, retry_s=0.1, max_retry_s=0.3) as src:
        deadline = time.monotonic() + 20
        while len(got) < 10 and time.monotonic() < deadline:
            f = src.read(1.0)
            if f is not None:
                got.append(f[0])
        cam.stop()  # the camera disappears: connection refused from now on
        time.sleep(1.0)
        gap_start = time.monotonic()
        assert src.stats.failures >= 1
        cam = _Camera(port, frames=25)  # ... and comes back on the same address
        n_before = len(got)
        while len(got) < n_before + 10 and time.monotonic() < deadline:
            f = src.read(1.0)
            if f is not None:
                got.append(f[0])
        stats = src.stats
    cam.stop()
    assert len(got) >= n_before + 10, "no frames after the camera came back"
    assert stats.reconnects >= 1 and stats.gaps_s and max(stats.gaps_s) >= 0.9
    assert got == sorted(got)  # capture times only move forward
    assert max(np.diff(got)) >= 0.9  # the outage is visible in the timestamps, not hidden
    assert time.monotonic() - gap_start < 15


def test_stream_gives_up_when_told(port: int):
    with StreamSource(f"http://127.0.0.1:{port}/none", retry_s=0.05, give_up_s=0.5) as src:
        assert src.read(10.0) is None
        assert src.finished and src.stats.grabbed == 0 and src.stats.failures >= 2


def test_read_video_errors_name_the_file(tmp_path: Path):
    with pytest.raises(SourceError, match="video file not found"):
        next(read_video(tmp_path / "missing.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot open video"):
        next(read_video(bad))
