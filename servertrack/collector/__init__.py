"""The collector: ZeroMQ SUB ingest and the once-a-second batch apply."""

from .applier import BatchApplier
from .ingest import IngestReader, open_ingest_socket

__all__ = ["BatchApplier", "IngestReader", "open_ingest_socket"]
