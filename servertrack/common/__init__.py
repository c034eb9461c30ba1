"""Pure domain logic of ServerTrack: protocol, time buckets, aggregator, settings. No I/O."""

from .aggregator import Aggregator, ApplyResult, ServerWindows
from .batch import PendingBatch
from .errors import InvalidSample, ServerTrackError
from .inventory import AgentInventory
from .protocol import NameCache, Sample, decode_sample, encode_sample, normalize_name
from .stats import IngestStats

__all__ = [
    "Aggregator",
    "AgentInventory",
    "ApplyResult",
    "IngestStats",
    "InvalidSample",
    "NameCache",
    "PendingBatch",
    "Sample",
    "ServerTrackError",
    "ServerWindows",
    "decode_sample",
    "encode_sample",
    "normalize_name",
]
