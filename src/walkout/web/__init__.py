"""The web pages people use: the operations dashboard (``/``), the shopper app (``/app``) and
the kiosk (``/kiosk``), served by the store service with their assets (no CDN)."""

from walkout.web.routes import PAGES, card_receipts, mount

__all__ = ["PAGES", "card_receipts", "mount"]
