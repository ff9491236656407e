"""shelf stage."""
