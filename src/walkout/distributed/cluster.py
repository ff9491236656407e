"""Connecting to a Ray cluster: the settings that make a loopback head work, clear errors.

Ray is an optional dependency (``pip install walkout[ray]``); nothing outside
``walkout.distributed`` imports it, so the single-process engine never pays for it.
"""

from __future__ import annotations

import os
from typing import Any

#: Set before ``ray`` is imported: without the first a head started on 127.0.0.1 listens on
#: every interface and drivers hang; without the second an explicit address fails with
#: InvalidAuthToken (Ray 2.5x); the third keeps Ray from phoning home.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


class RayError(RuntimeError):
    """Ray is missing, or the cluster at the given address cannot be reached."""


def ray_module() -> Any:
    """The ``ray`` module, imported with :data:`RAY_ENV` in place."""
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    try:
        import ray
    except ImportError as e:
        raise RayError("Ray is not installed: pip install 'walkout[ray]'") from e
    return ray


def connect(address: str) -> Any:
    """Join the cluster at ``address`` (``host:port`` of its GCS, ``ray://...`` or ``auto``)
    as a driver, once per process; returns the ``ray`` module."""
    if not address.strip():
        raise RayError("empty Ray address: give host:port of the head (e.g. 127.0.0.1:16379)")
    ray = ray_module()
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False,
                 include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayError(f"cannot join the Ray cluster at {address!r}: {e}") from e
    return ray
