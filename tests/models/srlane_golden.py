"""Deterministic stand-in for a released reference checkpoint, used by the fidelity tests.

``reference_state_dict(seed)`` builds a state dict with exactly the reference R18 checkpoint's
keys and shapes (read from ``data/srlane_r18_reference_keys.txt``, a copy of the released
file's key list), filling each tensor in list order from one seeded generator with a scale that
keeps activations in a useful range, and the constant buffers with their defining formulas.
The expected outputs in ``data/srlane_golden.npz`` were computed by the reference code
(passerer/SRLane) from this very state dict (see ``tests/models/test_fidelity.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"
REFERENCE_KEYS = DATA / "srlane_r18_reference_keys.txt"
GOLDEN = DATA / "srlane_golden.npz"
WEIGHT_SEED = 20240125
INPUT_SEED = 7

_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def read_reference_keys(path: Path = REFERENCE_KEYS) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype name) per line of a key listing like ``backbone.x (64, 3) float32``."""
    entries = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        key, rest = line.split(" ", 1)
        shape_text, dtype = rest.rsplit(" ", 1)
        shape = tuple(int(s) for s in shape_text.strip("()").split(",") if s.strip())
        entries.append((key, shape, dtype))
    return entries


def reference_constants(num_points: int = 72, sample_points: int = 36) -> dict[str, torch.Tensor]:
    """The reference's constant buffers, from their definitions (not from the model code)."""
    n_strips = num_points - 1
    ys, xs = torch.meshgrid(
        torch.arange(3.5, 0, -1, dtype=torch.float32),
        torch.arange(0.5, 10, 1, dtype=torch.float32),
        indexing="ij",
    )
    rows = (torch.linspace(0, 1, sample_points) * n_strips).long()
    return {
        "rpn_head.prior_ys": torch.linspace(0, 4, num_points),
        "rpn_head.grid": torch.stack((xs, ys)).unsqueeze(0),
        "roi_head.prior_ys": torch.linspace(1, 0, num_points),
        "roi_head.stage_heads.0.sample_x_indexs": rows,
        "roi_head.stage_heads.0.prior_feat_ys": torch.flip(1 - rows.float() / n_strips, [0]),
    }


def _scaled(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """One random tensor for ``key``; the scale depends on what the tensor is."""
    x = torch.randn(shape, generator=g)
    name = key.rsplit(".", 1)[-1]
    is_bn = ".bn" in key or "downsample.1" in key
    if is_bn:
        return {
            "weight": 1 + 0.1 * x,
            "bias": 0.1 * x,
            "running_mean": 0.1 * x,
            "running_var": 1 + 0.2 * x.abs(),
        }[name]
    if "z_embeddings" in key:
        return 1.0 + 0.6 * x
    if "angle_conv" in key:
        return x * 0.05
    if "cls_layers" in key:
        return x * (0.3 if name == "weight" else 0.2)
    if "reg_layers" in key:
        if name == "bias":
            out = 0.01 * x
            out[1] += 0.5  # a positive length so that decoded lanes span many rows
            return out
        return x * 0.002
    if name == "bias":
        return 0.05 * x
    fan_in = math.prod(shape[1:])
    gain = 2.0 if len(shape) == 4 else 1.0
    return x * math.sqrt(gain / fan_in)


def reference_state_dict(seed: int = WEIGHT_SEED) -> dict[str, torch.Tensor]:
    """Reference-layout state dict (keys without ``module.``), deterministic in ``seed``."""
    g = torch.Generator().manual_seed(seed)
    constants = reference_constants()
    state = {}
    for key, shape, dtype in read_reference_keys():
        if key in constants:
            state[key] = constants[key]
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=_DTYPES[dtype])
        else:
            state[key] = _scaled(key, shape, g)
    return state


def golden_inputs(batch: int = 2, img_h: int = 320, img_w: int = 800) -> torch.Tensor:
    """Fixed input images in [0, 1]."""
    g = torch.Generator().manual_seed(INPUT_SEED)
    return torch.rand(batch, 3, img_h, img_w, generator=g)


# Hand-made lanes (input pixels, 800x320) for the training-loss comparison; image 1 has none.
GOLDEN_LANES = [
    [
        [(120.0, 319.0), (260.0, 200.0), (350.0, 120.0)],
        [(420.0, 319.0), (415.0, 220.0), (405.0, 130.0)],
        [(700.0, 319.0), (560.0, 200.0), (470.0, 125.0)],
        [(-40.0, 300.0), (100.0, 230.0), (250.0, 150.0), (330.0, 110.0)],
    ],
    [],
]
