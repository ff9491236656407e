"""A real Ray cluster for the distributed engine's tests: the head that `scripts/test.sh`
starts (``WALKOUT_TEST_RAY_ADDRESS``) or, without it, a private one started here by
`scripts/services.sh` (and stopped after the tests)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    address = os.environ.get("WALKOUT_TEST_RAY_ADDRESS")
    if address:
        yield address
        return
    env = {**os.environ, "WALKOUT_SERVICES_STATE": str(tmp_path_factory.mktemp("services")),
           "WALKOUT_RAY_PORT": "16479"}
    script = str(ROOT / "scripts" / "services.sh")
    started = subprocess.run(["bash", script, "start", "ray"], env=env, capture_output=True,
                             text=True, check=False)
    if started.returncode != 0:
        pytest.fail(f"could not start a Ray head: {started.stderr[-2000:]}")
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run(["bash", script, "stop", "ray"], env=env, check=False)
