"""HTTP API of ServerTrack (Tornado)."""

from .app import make_app
from .handlers import MAX_BATCH_ITEMS, MAX_BODY_BYTES

__all__ = ["make_app", "MAX_BATCH_ITEMS", "MAX_BODY_BYTES"]
