"""Parts shared by the lane detectors in ``src.models``: checkpoint loading with accounted keys."""
