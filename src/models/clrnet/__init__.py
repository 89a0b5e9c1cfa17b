"""CLRNet lane detector (and its CLRerNet variant): model, checkpoint loading, training
targets."""

from src.models.common.weights import CheckpointMismatchError, LoadReport

from .model import CLRNet
from .targets import lane_targets
from .weights import load_weights

__all__ = ["CLRNet", "CheckpointMismatchError", "LoadReport", "lane_targets", "load_weights"]
