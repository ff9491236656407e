"""The typed data that flows between stages.

High-rate sensor data is column-oriented (numpy arrays with a documented shape); low-rate
decisions are small frozen dataclasses. No stage passes ``dict[str, Any]`` to another.

Conventions:
- time is seconds (float64) since the start of the recording;
- lengths are metres in store coordinates (x, y on the floor, z up);
- weights are grams; a pick makes a plate lighter (``delta_g < 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: COCO-17 joint order used by every keypoint array in walkout.
COCO17: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
N_JOINTS = len(COCO17)
NOSE, L_SHOULDER, R_SHOULDER = 0, 5, 6
L_ELBOW, R_ELBOW = 7, 8
L_WRIST, R_WRIST = 9, 10
L_HIP, R_HIP = 11, 12
L_ANKLE, R_ANKLE = 15, 16
WRISTS = (L_WRIST, R_WRIST)


@dataclass(frozen=True, slots=True)
class PlateBlock:
    """A block of synchronous load-cell samples for a set of plates.

    ``grams[i, j]`` is plate ``plate_ids[j]`` at time ``t[i]``; NaN means "no reading".
    """

    t: np.ndarray  # (samples,) float64
    grams: np.ndarray  # (samples, plates) float32
    plate_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.t.ndim != 1 or self.grams.ndim != 2:
            raise ValueError("PlateBlock needs t of shape (n,) and grams of shape (n, plates)")
        if self.grams.shape != (self.t.shape[0], len(self.plate_ids)):
            raise ValueError(
                f"PlateBlock shape mismatch: grams {self.grams.shape}, "
                f"{self.t.shape[0]} times, {len(self.plate_ids)} plates"
            )


@dataclass(frozen=True, slots=True)
class KeypointFrame:
    """One camera frame of 2D skeleton detections.

    ``keypoints[k, j] = (x_px, y_px, confidence)`` for person k, COCO-17 joint j, in the
    camera's raw (distorted) pixel coordinates. Confidence 0 marks a missing joint.
    """

    camera_id: str
    t: float
    keypoints: np.ndarray  # (people, 17, 3) float32

    def __post_init__(self) -> None:
        if self.keypoints.ndim != 3 or self.keypoints.shape[1:] != (N_JOINTS, 3):
            raise ValueError(
                f"KeypointFrame from camera {self.camera_id!r} has shape "
                f"{self.keypoints.shape}, expected (people, {N_JOINTS}, 3)"
            )


GateKind = Literal["entry", "exit"]


@dataclass(frozen=True, slots=True)
class GateEvent:
    """A gate opening: an entry scan (credential = QR token or card token) or an exit."""

    t: float
    gate_id: str
    kind: GateKind
    credential: str = ""
    party_size: int = 1


@dataclass(frozen=True, slots=True)
class StoreModeChange:
    """The operator marked the store closed (restock mode) or open again at stream time ``t``.

    An input of the engine like a gate event (``Engine.set_store_mode``): a replay must meet
    the same changes where the live run met them, so recordings carry them
    (``walkout.sources.recording``)."""

    t: float
    closed: bool

    @property
    def mode(self) -> str:
        """``"closed"`` or ``"open"``: how a recording's ``store_modes.jsonl`` spells it."""
        return "closed" if self.closed else "open"


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """One explanation of a weight change: so many items of one product, or of a mixture.

    ``items`` holds ``(product_id, count)`` pairs with positive counts; the direction (taken or
    put) is the event's ``kind``.
    """

    items: tuple[tuple[str, int], ...]
    log_likelihood: float
    probability: float

    @property
    def quantity(self) -> int:
        """Total number of items."""
        return sum(q for _, q in self.items)

    @property
    def product_id(self) -> str:
        """The product of a single-product hypothesis; ``A+B`` for a mixture (display only)."""
        return "+".join(p for p, _ in self.items)

    @property
    def is_mixture(self) -> bool:
        return len(self.items) > 1


@dataclass(frozen=True, slots=True)
class ShelfEvent:
    """A settled weight change on one plate, or on the plates of one product footprint."""

    event_id: str
    t_start: float  # first sample where the plate left its previous rest
    t_end: float  # first sample of the new rest
    plate_ids: tuple[str, ...]
    delta_g: float  # after - before, summed over plate_ids
    hypotheses: tuple[Hypothesis, ...]  # best first; may be empty when nothing fits
    noise_var_g2: float = 0.0  # variance of delta_g from the plates' noise (not the items')
    #: a pick that nothing listed for (or known on) these plates explains: a wrong planogram
    #: entry or an unseen misplaced item; its hypotheses come from the whole catalogue
    unlisted: bool = False

    @property
    def kind(self) -> Literal["pick", "put"]:
        return "pick" if self.delta_g < 0 else "put"

    @property
    def best(self) -> Hypothesis | None:
        return self.hypotheses[0] if self.hypotheses else None

    @property
    def confidence(self) -> float:
        return self.hypotheses[0].probability if self.hypotheses else 0.0


@dataclass(slots=True)
class Track:
    """A person's 3D skeleton over time, as estimated by the tracker.

    ``joints[i]`` is the (17, 3) world skeleton at ``t[i]`` (NaN for joints not seen);
    ``sigma[i]`` the per-joint position uncertainty in metres.
    """

    track_id: int
    t: np.ndarray  # (n,)
    joints: np.ndarray  # (n, 17, 3)
    sigma: np.ndarray  # (n, 17)
    born_at: str | None = None  # entry gate id where the track was born, if any
    ended_at: str | None = None  # exit gate id where it ended, if any

    def window(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """Times and joints within ``[t0, t1]``."""
        i0, i1 = np.searchsorted(self.t, [t0, t1 + 1e-9])
        return self.t[i0:i1], self.joints[i0:i1]


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an operator must look at (unbound person, lost identity, dead sensor...)."""

    t: float
    kind: str
    message: str
    subject: str = ""


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who an event is charged to, with the evidence score of each candidate."""

    event: ShelfEvent
    session_id: str | None  # None when nobody plausible was near
    confidence: float
    scores: tuple[tuple[str, float], ...] = ()  # (session_id, probability), best first
    needs_review: bool = False
    #: (session_id, sustained wrist-to-plate distance in metres, see attribution.hands),
    #: nearest first
    reach_m: tuple[tuple[str, float], ...] = ()
    #: decided on the arm's direction because no seen wrist was near (attribution.hands)
    by_arm: bool = False


@dataclass(frozen=True, slots=True)
class CartEntry:
    """One append-only line of a cart ledger: +quantity for a pick, -quantity for a put-back."""

    session_id: str
    product_id: str
    quantity: int
    t: float
    event_id: str
    confidence: float
    provenance: tuple[str, ...] = field(default=())
