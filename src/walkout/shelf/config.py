"""Tunable thresholds of the shelf stage, with defaults that work on AiFi-like plates."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ShelfConfig(BaseModel):
    """Every knob of the weights → ShelfEvent stage. Times in seconds, weights in grams."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_hz: float | None = Field(
        default=None,
        gt=0,
        description="sample rate; None infers it from the first block's timestamps",
    )
    stable_window_s: float = Field(
        default=0.4, gt=0, description="window over which a plate must be quiet to be at rest"
    )
    level_window_s: float = Field(
        default=1.5,
        gt=0,
        description="samples averaged for a rest level; a new rest must last this long to count",
    )
    guard_s: float = Field(
        default=0.1, ge=0, description="rest samples skipped before a disturbance (slow onsets)"
    )
    stable_k: float = Field(
        default=3.0,
        gt=1,
        description="a window is quiet when its std is below stable_k × the plate's noise σ",
    )
    lookback_s: float = Field(
        default=3.0,
        gt=0,
        description="the level before a disturbance is taken this long before it (slow presses "
        "creep in unnoticed), and a resting level that departs from the level this long ago "
        "opens a disturbance",
    )
    settle_s: float = Field(
        default=1.5,
        ge=0,
        description="a new rest must stay quiet and flat this long beyond its level window",
    )
    depart_k: float = Field(
        default=4.0,
        gt=0,
        description="a level departs (or is not flat) when it moves by more than depart_k x "
        "the σ of a difference of levels",
    )
    depart_min_g: float = Field(
        default=3.0, ge=0, description="floor on the departure/flatness threshold"
    )
    recal_max_s: float = Field(
        default=0.1,
        ge=0,
        description="a change completed within this time with no hand transient is a clean step: "
        "a recalibration (tare jump), reported as an alert, never as an event",
    )
    slow_hold_s: float = Field(
        default=4.0,
        ge=0,
        description="a change that crept in slowly (no quiet break) is held back until its new "
        "level has lasted this long; a disturbance before then continues it (slow presses)",
    )
    creep_step_s: float = Field(
        default=0.5,
        ge=0,
        description="a change that no span this long moved by half of it crept in (a hand "
        "pressing slowly, tremor and all): it is held back like a slow change, and a later "
        "disturbance continuing it is one change with it (a released press is no put); 0 "
        "disables",
    )
    creep_hold_s: float = Field(
        default=8.0,
        ge=0,
        description="how long a change that crept in is held back (as slow_hold_s for slow "
        "changes): the top of a long press stays flat for seconds, and its release is seen late "
        "(it starts as gently as the press ended)",
    )
    level_sd_k: float = Field(
        default=0.5,
        ge=0,
        description="a departure must also exceed this fraction of the plate's current window "
        "std (the residual of its 5-12 Hz ringing in a 0.75 s level; half of it for the 1.5 s "
        "flatness test)",
    )
    recal_max_vib: float = Field(
        default=1.5,
        ge=1,
        description="a clean step only counts as a recalibration while the gondola's vibration "
        "factor is below this (a shopper near shakes the gondola)",
    )
    vib_gain: float = Field(
        default=2.0,
        ge=0,
        description="effective noise factor per unit of gondola vibration above vib_floor",
    )
    vib_floor: float = Field(
        default=1.0,
        ge=0,
        description="gondola vibration (median window std / rest σ) that counts as none",
    )
    vib_min_plates: int = Field(
        default=4, ge=1, description="smallest plate group whose vibration is estimated"
    )
    spike_min_g: float = Field(
        default=40.0, ge=0, description="smallest single-sample outlier reported as a spike"
    )
    spike_k: float = Field(
        default=12.0, gt=0, description="a spike also exceeds spike_k x the effective noise σ"
    )
    alert_repeat_s: float = Field(
        default=60.0, gt=0, description="a repeated alert of one plate is raised at most this often"
    )
    frozen_sd_g: float = Field(
        default=1e-3,
        ge=0,
        description="a window with a std below this is a frozen sensor, never a rest",
    )
    min_noise_g: float = Field(
        default=0.3, gt=0, description="floor on the estimated noise σ (quantised sensors)"
    )
    noise_tau_s: float = Field(
        default=30.0, gt=0, description="time constant of the running per-plate noise estimate"
    )
    noise_update_s: float = Field(
        default=20.0,
        gt=0,
        description="the noise estimate is updated at fixed stream times this far apart",
    )
    min_delta_g: float = Field(
        default=5.0, ge=0, description="smallest settled change reported as an event"
    )
    event_k: float = Field(
        default=5.0,
        gt=0,
        description="an event also needs |Δ| > event_k × σ of the difference of rest means",
    )
    model_sd_g: float = Field(
        default=1.0,
        ge=0,
        description="extra σ for what the noise model misses (drift, creep, item settling)",
    )
    merge_gap_s: float = Field(
        default=2.0,
        ge=0,
        description="footprint plates disturbed within this gap merge into one event",
    )
    split_min_s: float = Field(
        default=1.5,
        ge=0,
        description="a flat rest this long inside a disturbance, at a level different from the "
        "levels before and after it, splits the disturbance into two changes (two hands one "
        "after the other); 0 disables",
    )
    max_merge_wait_s: float = Field(
        default=10.0,
        gt=0,
        description="longest an event waits for a partner plate to settle before it is emitted",
    )
    fault_after_s: float = Field(
        default=2.0,
        gt=0,
        description="NaN/absent or frozen readings lasting this long raise a plate alert",
    )
    max_quantity: int = Field(
        default=6, ge=1, description="largest quantity hypothesised for a shopper's grab"
    )
    max_stock_quantity: int = Field(
        default=500,
        ge=1,
        description="largest count a staff restock or removal is explained by (a tray of stock "
        "is not a shopper's grab: max_quantity does not bound it); see shelf.decide.choose_stock",
    )
    quantity_decay: float = Field(
        default=0.5, gt=0, le=1, description="prior ratio of q+1 items to q items"
    )
    mixtures: bool = Field(
        default=True,
        description="also hypothesise two products at once when several are on the plates",
    )
    mixture_prior: float = Field(
        default=0.1, ge=0, le=1, description="prior weight of a two-product mixture"
    )
    foreign_prior: float = Field(
        default=0.3,
        ge=0,
        description="prior weight of a product on the plates that the planogram does not put there",
    )
    stray_put_prior: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="total prior of a put of any other catalogue product (misplaced put-back)",
    )
    stray_pick_prior: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="total prior of a pick of a product this plate should not hold (a wrong "
        "planogram entry, an unrecorded misplaced item); only considered when no product it "
        "should hold fits the weight",
    )
    listed_fit_z: float = Field(
        default=4.0,
        gt=0,
        description="a pick counts as explained by the plate's listed products when one of "
        "them (or a pair) fits its weight within this many σ; otherwise it is 'unlisted'",
    )
    rare_quantity: int = Field(
        default=4,
        ge=2,
        description="this many identical items in one grab is rare: a pick that only so many "
        "items of the plate's products explain keeps single items of other products that fit "
        "beside it, and is reviewed when one fits about as well",
    )
    overdraw_prior: float = Field(
        default=1e-3,
        ge=0,
        le=1,
        description="prior factor for taking more items than the inventory says are there",
    )
    unexplained_prior: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="prior of 'none of these' (flat over ±unexplained_range_g)",
    )
    unexplained_range_g: float = Field(
        default=5000.0, gt=0, description="range of the flat 'none of these' likelihood"
    )
    min_probability: float = Field(
        default=1e-3, ge=0, le=1, description="hypotheses below this posterior are dropped"
    )
    keep_fit_z: float = Field(
        default=2.5,
        gt=0,
        description="put hypotheses whose weight fits within this many σ are kept as runner-ups "
        "even below min_probability (a misplaced put-back of what the shopper holds)",
    )
    review_below: float = Field(
        default=0.8, ge=0, le=1, description="product confidence under which an event is reviewed"
    )
    ambiguous_loglik: float = Field(
        default=2.0,
        ge=0,
        description="an event is reviewed when another product's weight likelihood is within "
        "this many log units of the chosen one's",
    )
    held_fit_z: float = Field(
        default=4.0,
        gt=0,
        description="a put-back is what its shopper holds when that item's weight fits within "
        "this many σ (else it is reviewed)",
    )
    max_hypotheses: int = Field(default=10, ge=1, description="hypotheses kept per event")
    chunk_samples: int = Field(
        default=4096,
        ge=64,
        description="long blocks are processed in chunks of this many samples (bounds memory)",
    )
