"""Human review of uncertain decisions: cases with their evidence, verdicts as corrections."""

from walkout.review.cases import (
    Evidence,
    HandTrace,
    ReviewCase,
    Verdict,
    WeightTrace,
    corrections,
    hand_traces,
)

__all__ = [
    "Evidence",
    "HandTrace",
    "ReviewCase",
    "Verdict",
    "WeightTrace",
    "corrections",
    "hand_traces",
]
