"""The web dashboard's files: ``GET /`` (the page) and ``GET /ui/{path}`` (its script, styles, chart library).

The files are package data (``servertrack/ui``), served by Tornado's
``StaticFileHandler`` (ETags, ``If-None-Match``, no path outside the folder).
They hold no data, so they are served without a token: the page asks for
the token and sends it with every API request it makes. The Host check
still applies (a rebinding attack must not get even the page), and every
answer carries a Content-Security-Policy that lets the page load nothing
from another host and run no inline script.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import orjson
import tornado.web

from ..common.stats import IngestStats
from .handlers import error_message
from .request_policy import RequestPolicy

UI_ROOT = Path(__file__).resolve().parent.parent / "ui"
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class UiFileHandler(tornado.web.StaticFileHandler):
    """One file of the dashboard; ``GET /`` is ``index.html``."""

    NEEDS_TOKEN = False  # as JsonHandler's: the files hold no data (OpenAPI documents it from here)
    STATE_CHANGING_METHODS: frozenset[str] = frozenset()

    def initialize(self, **_: Any) -> None:  # type: ignore[override]
        super().initialize(path=str(UI_ROOT))
        self._refusal: str | None = None

    def prepare(self) -> None:
        """Refuse a foreign Host (403), as every API route does."""
        policy: RequestPolicy = self.application.settings["policy"]
        refusal = policy.host_refusal(self.request.headers.get("Host"))
        if refusal is not None:
            stats: IngestStats = self.application.settings["stats"]
            stats.http_refused["bad_host"] += 1
            self._refusal = refusal
            raise tornado.web.HTTPError(403)

    async def get(self, path: str = "", include_body: bool = True) -> None:
        """The file at ``path`` under the dashboard's folder (``index.html`` for ``/``)."""
        if not path.isprintable():  # a NUL would reach os.path as a ValueError
            raise tornado.web.HTTPError(404)
        await super().get(path or "index.html", include_body)

    def head(self, path: str = "") -> Awaitable[None]:
        """The headers ``get`` would send."""
        return self.get(path, include_body=False)

    def get_content_type(self) -> str:
        """The file's media type; text is UTF-8."""
        media = super().get_content_type()
        return media + "; charset=utf-8" if media.startswith("text/") or media.endswith("javascript") else media

    def set_extra_headers(self, path: str) -> None:
        """Security headers on every file; the page itself is never cached (a new version shows at once)."""
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        if path.endswith(".html"):
            self.set_header("Cache-Control", "no-cache")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as ``{"error": message}``, like every route."""
        self.clear_header("Content-Security-Policy")
        self.set_header("Content-Type", "application/json")
        refusal = self._refusal if status_code == 403 else None
        message = refusal if refusal is not None else error_message(self, status_code)
        self.finish(orjson.dumps({"error": message}))
