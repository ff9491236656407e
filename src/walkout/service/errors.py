"""Refusals the API turns into clear 4xx answers: ``{"error": code, "detail": message}``."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses; ``code`` is stable for clients, ``detail`` is for people
    (and never contains personal or card data)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def not_found(what: str) -> ServiceError:
    return ServiceError(404, "not_found", f"{what} not found")
