"""cart stage."""
