"""SRLane lane detector: model, checkpoint loading and training targets."""

from .checkpoint import CheckpointMismatchError, LoadReport, load_weights
from .model import SRLane
from .targets import lane_targets

__all__ = ["CheckpointMismatchError", "LoadReport", "SRLane", "lane_targets", "load_weights"]
