"""The one exception tree of ServerTrack; every domain error derives from ServerTrackError."""

from __future__ import annotations


class ServerTrackError(Exception):
    """Root of every error ServerTrack raises on purpose."""


class InvalidSample(ServerTrackError):
    """A sample (from ZeroMQ or HTTP) broke the protocol.

    ``reason`` is a short stable token used as a counter key
    (``bad_type``, ``out_of_range``...); ``field`` names the offending key;
    ``kind`` the kind of message refused, when it was known.
    """

    def __init__(self, reason: str, message: str, field: str | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field
        # The message kind (sample, hello, bye, snapshot) once it is known; None before.
        self.kind = kind



class StoreVersionError(ServerTrackError):
    """A store file was written by a newer ServerTrack (an unknown schema version): it is left untouched."""


class HistoryUnreadable(ServerTrackError):
    """The store's kept history could not be read just now (a disk or Redis fault): a range cannot be
    answered until it can; ``message`` says what failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
