"""Checkout: receipts, tax and money (payments and channels come with the service)."""

from walkout.checkout.receipt import Receipt, ReceiptLine, build_receipt

__all__ = ["Receipt", "ReceiptLine", "build_receipt"]
