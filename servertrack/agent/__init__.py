"""The ServerTrack agent: samples the node with psutil and publishes over ZeroMQ."""

from .collector_choice import CollectorAddress
from .daemon import Agent, run_agent
from .publisher import SamplePublisher
from .sampler import LoadSampler

__all__ = ["Agent", "CollectorAddress", "LoadSampler", "SamplePublisher", "run_agent"]
