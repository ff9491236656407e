"""Connecting to a Ray cluster: the settings that make a loopback head work, clear errors.

Ray is an optional dependency (``pip install walkout[ray]``); nothing outside
``walkout.distributed`` imports it, so the single-process engine never pays for it.
"""

from __future__ import annotations

import os
import socket
from typing import Any

#: Set before ``ray`` is imported: without the first a head started on 127.0.0.1 listens on
#: every interface and drivers hang; without the second an explicit address fails with
#: InvalidAuthToken (Ray 2.5x); the third keeps Ray from phoning home.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


#: seconds a head's port has to accept a TCP connection before ``ray.init`` is tried
CONNECT_TIMEOUT_S = 5.0
#: the port of a ``ray://host`` address that names none (Ray Client's default)
RAY_CLIENT_PORT = 10001


class RayError(RuntimeError):
    """Ray is missing, or the cluster at the given address cannot be reached."""


def _head(address: str) -> tuple[str, int] | None:
    """Host and port of the head that ``address`` names (None for ``auto`` and ``local``,
    which name none and are left to Ray); a :class:`RayError` when it is neither."""
    if address in ("auto", "local"):
        return None
    client = address.startswith("ray://")
    hostport = address.removeprefix("ray://").split("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep and client:
        host, port = hostport, str(RAY_CLIENT_PORT)
    host = host.strip("[]")  # an IPv6 literal, [::1]:6379
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayError(f"Ray address {address!r} is not host:port of the cluster's head (e.g. "
                       "127.0.0.1:6379), ray://host[:port] or auto")
    return host, int(port)


def _answers(address: str, head: tuple[str, int], timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`RayError` unless something accepts a TCP connection at ``head``.

    ``ray.init`` retries an address where no head listens for minutes (its GCS client's own
    retry loop, not interruptible from here); a plain connect says so in at most seconds."""
    host, port = head
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise RayError(f"cannot join the Ray cluster at {address!r}: nothing answers at "
                       f"{host}:{port} ({why}); is its head running?") from e


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
    head = _head(address.strip())
    ray = ray_module()
    if ray.is_initialized():
        return ray
    if head is not None:
        _answers(address, head)
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False,
                 include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayError(f"cannot join the Ray cluster at {address!r}: {e}") from e
    return ray
