"""ServerTrack: a fleet-load monitor (agent -> ZeroMQ -> collector -> aggregator -> HTTP)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
