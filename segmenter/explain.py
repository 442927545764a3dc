"""Why a customer is, or is not, an Insider: drivers and the distance to a change of status."""

from __future__ import annotations

from dataclasses import dataclass

from segmenter.features import CustomerState, features_of
from segmenter.model import Driver, model_input
from segmenter.policy import InsiderStatus, describe, lapse_after
from segmenter.segmentation import Segmenter


@dataclass(frozen=True, slots=True)
class Explanation:
    summary: str
    margin: float | None  # > 0 inside the top segment's edge, < 0 outside
    to_change: float | None  # how much margin must move before the status flips
    lapse_in_days: float | None  # Insiders: days without a purchase before a lapse exit
    drivers: tuple[Driver, ...]


def explain(
    segmenter: Segmenter, state: CustomerState, status: InsiderStatus, now_ts: int
) -> Explanation:
    """Assess the customer with the current model at ``now_ts`` and say what decides it.

    >>> from segmenter.model import SegmentModel
    >>> seg = Segmenter(SegmentModel(warmup=10_000))
    >>> explain(seg, CustomerState(), InsiderStatus(), 0).summary
    'no assessment yet: the model is still warming up or the customer has no purchase'
    """
    if not state.has_purchases or not segmenter.model.clusterer.ready:
        return Explanation(
            "no assessment yet: the model is still warming up or the customer has no purchase",
            None,
            None,
            None,
            (),
        )
    features = features_of(state, now_ts)
    assessment = segmenter.model.assess(model_input(features), explain=True)
    rules = segmenter.policy.settings
    edges = segmenter.edges
    margin = assessment.margin if assessment.margin is not None else 0.0
    drivers = describe(assessment)
    recency = features.recency_days or 0.0
    if edges is None:
        summary = (
            f"{'Insider' if status.insider else 'not an Insider'}: margin {margin:+.2f}; the "
            f"edges are set at the first daily ranking after the warm-up; {drivers}"
        )
        return Explanation(summary, margin, None, None, assessment.drivers)
    if status.insider:
        to_change = margin - edges.exit
        lapse = max(lapse_after(features, rules) - recency, 0.0)
        summary = (
            f"Insider: margin {margin:+.2f}, exits below {edges.exit:+.2f} "
            f"or after {lapse:.0f} more days without a purchase; {drivers}"
        )
        return Explanation(summary, margin, to_change, lapse, assessment.drivers)
    to_change = edges.entry - margin
    summary = (
        f"not an Insider: margin {margin:+.2f}, enters at {edges.entry:+.2f} "
        f"(segment now {assessment.segment}); {drivers}"
    )
    return Explanation(summary, margin, to_change, None, assessment.drivers)
