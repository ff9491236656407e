"""Attribution: which shopper each shelf event belongs to."""

from walkout.attribution.hands import AttributionConfig, attribute, box_distance

__all__ = ["AttributionConfig", "attribute", "box_distance"]
