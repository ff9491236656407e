"""Sessions and cart ledgers."""

from walkout.cart.ledger import CartLedger, fold
from walkout.cart.sessions import Session, SessionBook, SessionState

__all__ = ["CartLedger", "Session", "SessionBook", "SessionState", "fold"]
