"""HTTP API of ServerTrack (Tornado)."""

from .app import make_app
from .handlers import MAX_BATCH_ITEMS, MAX_BODY_BYTES
from .http_server import GuardedHTTPServer, HttpLimits
from .metrics import ServiceMetrics
from .request_policy import RequestPolicy

__all__ = ["make_app", "GuardedHTTPServer", "HttpLimits", "MAX_BATCH_ITEMS", "MAX_BODY_BYTES", "RequestPolicy",
           "ServiceMetrics"]
