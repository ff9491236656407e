"""The store service: accounts, entry, charges and receipts over a database, behind FastAPI."""
