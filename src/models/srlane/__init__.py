"""SRLane lane detector: model, checkpoint loading and training targets."""

from .model import SRLane
from .targets import lane_targets
from .weights import CheckpointMismatchError, LoadReport, load_weights

__all__ = ["CheckpointMismatchError", "LoadReport", "SRLane", "lane_targets", "load_weights"]
