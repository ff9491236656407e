"""walkout: an open checkout-free store platform."""

__version__ = "0.1.0"
