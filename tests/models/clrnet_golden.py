"""Deterministic stand-in for a released CLRNet checkpoint and the fixed inputs of the fidelity
tests.

``reference_state_dict(seed)`` builds a state dict with exactly the reference R18 model's keys and
shapes (``data/clrnet_r18_reference_keys.txt``, the reference's own ``state_dict()`` key list; R34
and DLA-34 in ``clrnet_r34_reference_keys.txt``, ``clrnet_dla34_reference_keys.txt``), filling each
tensor in list order from one seeded generator with a scale that keeps activations in a useful
range, the constant buffers with their defining formulas, and ``priors`` from embeddings one "step"
behind the stored ``prior_embeddings`` (as in a trained checkpoint, so that using the wrong one
shows).

How ``data/clrnet_golden.npz`` was made: Turoad/CLRNet @ 7269e9d was fetched into a scratch
directory under /tmp and run on the CPU (torch 2.13, numpy 2.4) with mmcv's ConvModule replaced
by Conv2d + BatchNorm2d + ReLU under mmcv's parameter names (``conv``, ``bn``, ``activate``) and
init, its CUDA ``nms_impl`` replaced by a line-by-line Python port of ``nms_kernel.cu`` (float32
arithmetic, ``(int)`` truncation, the unsigned char loop index), imgaug 0.4 (with numpy 2 aliases
patched in) for ``GenerateLaneLine``, and the model assembled as its Detector does (ResNetWrapper
-> FPN -> CLRHead) from the reference's R18 CULane config values, loaded with this state dict.
It stored:

- ``eval_head`` / ``eval_xs``: the eval forward of ``golden_inputs()`` (columns 0-5 of every
  prior; the xs of every 8th prior);
- ``lanes_*``: ``get_lanes`` of those predictions for each image with CULane (cut 270 of 590)
  and TuSimple (cut 160 of 720) heights; ``lanes16_*`` the same with max_lanes 16 and
  threshold 0.2 (lane counts, lengths and the first and last point of each lane);
- ``dla34_*``: the same eval forward and decoding with the DLA-34 model (DLAWrapper, as the
  reference's DLA-34 config) and ``reference_state_dict(keys=REFERENCE_KEYS_DLA34)``;
- ``targets``: ``GenerateLaneLine`` (no augmentation, training=False) on ``TARGET_LANE_SETS``
  (``targets16`` on ``LANES_16`` with max_lanes 16);
- ``losses`` (cls, reg_xytl, iou, seg, total; weighted) and ``grad_embeddings`` (the gradient
  of the total loss w.r.t. ``prior_embeddings``) of the train-mode forward on
  ``golden_inputs()`` with ``GOLDEN_LANES``, both dropouts off (ROIGather's ``F.dropout``
  patched to the identity, the seg decoder's Dropout2d in eval mode), BatchNorm in train mode,
  ``seg`` drawn as ``lane_targets`` specifies; ``losses_clrernet`` the same with the head's
  ``assign`` / ``liou_loss`` replaced by CLRerNet's (hirotomusiker/CLRerNet @ 21761ed)
  ``DynamicTopkAssigner`` (cost_combination=1, LaneIoUCost 7.5/800 and 30/800 as its config)
  and ``LaneIoULoss`` (7.5/800), run with mmdet's registry stubbed;
- ``clip_*``: imgaug's ``LineString.clip_out_of_image`` on ``clip_cases()`` (pieces per case,
  points per piece, the float32 points);
- ``nms_keep``: the ported kernel on ``nms_cases()``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tests.models.srlane_golden import read_reference_keys

DATA = Path(__file__).parent / "data"
REFERENCE_KEYS = DATA / "clrnet_r18_reference_keys.txt"
REFERENCE_KEYS_R34 = DATA / "clrnet_r34_reference_keys.txt"
REFERENCE_KEYS_DLA34 = DATA / "clrnet_dla34_reference_keys.txt"
GOLDEN = DATA / "clrnet_golden.npz"
WEIGHT_SEED = 20220619
INPUT_SEED = 11
NUM_POINTS, SAMPLE_POINTS, IMG_W, IMG_H = 72, 36, 800, 320
XS_EVERY = 8  # eval_xs keeps the xs of every 8th prior
CUTS = {"culane": (270, 590), "tusimple": (160, 720)}


def initial_prior_params(num_priors: int = 192) -> torch.Tensor:
    """The reference's prior layout, from its definition (left / bottom / right borders)."""
    side, bottom = num_priors // 8, num_priors * 3 // 4
    side_step, bottom_step = 0.5 / (side // 2 - 1), 1 / (bottom // 4 + 1)
    rows = []
    for i in range(num_priors):
        if i < side:
            rows.append(((i // 2) * side_step, 0.0, 0.16 if i % 2 == 0 else 0.32))
        elif i < side + bottom:
            rows.append((0.0, ((i - side) // 4 + 1) * bottom_step, 0.2 * (i % 4 + 1)))
        else:
            rows.append(((i - side - bottom) // 2 * side_step, 1.0, 0.68 if i % 2 == 0 else 0.84))
    return torch.tensor(rows, dtype=torch.float32)


def priors_of(params: torch.Tensor) -> torch.Tensor:
    """Prior rows (N, 6 + P) of (start_y, start_x, theta) parameters (the paper's line)."""
    ys = torch.linspace(1, 0, NUM_POINTS)
    start_y, start_x, theta = params[:, :1], params[:, 1:2], params[:, 2:3]
    xs = start_x * (IMG_W - 1) + (1 - ys - start_y) * IMG_H / torch.tan(theta * math.pi + 1e-5)
    zeros = torch.zeros(len(params), 1)
    return torch.cat((zeros, zeros, params, zeros, xs / (IMG_W - 1)), dim=1)


def reference_constants() -> dict[str, torch.Tensor]:
    """The reference's constant buffers, from their definitions (not from the model code)."""
    rows = (torch.linspace(0, 1, SAMPLE_POINTS) * (NUM_POINTS - 1)).long()
    return {
        "heads.sample_x_indexs": rows,
        "heads.prior_feat_ys": torch.flip(1 - rows.float() / (NUM_POINTS - 1), [0]),
        "heads.prior_ys": torch.linspace(1, 0, NUM_POINTS),
        "heads.criterion.weight": torch.tensor([0.4, 1.0, 1.0, 1.0, 1.0]),
    }


def _scaled(key: str, shape: tuple[int, ...], g: torch.Generator, norms: set) -> torch.Tensor:
    """One random tensor for ``key``; the scale depends on what the tensor is (``norms``: the
    BatchNorm modules)."""
    x = torch.randn(shape, generator=g)
    module, name = key.rsplit(".", 1)
    if module in norms:
        return {
            "weight": 1 + 0.1 * x,
            "bias": 0.1 * x,
            "running_mean": 0.1 * x,
            "running_var": 1 + 0.2 * x.abs(),
        }[name]
    if "fc_norm" in key:
        return 1 + 0.1 * x if name == "weight" else 0.1 * x
    if "f_query" in key:
        return 1 + 0.2 * x if name == "weight" else 0.05 * x
    if key.startswith("heads.roi_gather.W."):  # the per-prior scale of the attention context
        return 0.03 * x if name == "weight" else 0.01 * x
    if "cls_layers" in key:
        return x * (0.3 if name == "weight" else 0.3)
    if "reg_layers" in key:
        if name == "bias":
            out = 0.01 * x
            out[3] += 0.45  # a positive length so that decoded lanes span many rows
            return out
        return x * 0.002
    if name == "bias":
        return 0.05 * x
    fan_in = math.prod(shape[1:])
    gain = 2.0 if len(shape) == 4 else 1.0
    return x * math.sqrt(gain / fan_in)


def reference_state_dict(
    seed: int = WEIGHT_SEED, keys: Path = REFERENCE_KEYS
) -> dict[str, torch.Tensor]:
    """Reference-layout state dict (keys without ``module.``), deterministic in ``seed``."""
    g = torch.Generator().manual_seed(seed)
    constants = reference_constants()
    entries = read_reference_keys(keys)
    norms = {key.rsplit(".", 1)[0] for key, _, _ in entries if key.endswith(".running_var")}
    state = {}
    for key, shape, dtype in entries:
        if key in constants:
            state[key] = constants[key]
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=getattr(torch, dtype))
        elif key == "heads.prior_embeddings.weight":
            state[key] = initial_prior_params(shape[0]) + 0.01 * torch.randn(shape, generator=g)
        elif key in ("heads.priors", "heads.priors_on_featmap"):
            continue  # from the embeddings, below
        else:
            state[key] = _scaled(key, shape, g, norms)
    lagging = state["heads.prior_embeddings.weight"] - 0.003 * torch.randn((192, 3), generator=g)
    state["heads.priors"] = priors_of(lagging)
    state["heads.priors_on_featmap"] = state["heads.priors"][
        :, 6 + constants["heads.sample_x_indexs"]
    ]
    return state


def golden_inputs(batch: int = 2) -> torch.Tensor:
    """Fixed input images in [0, 1]."""
    g = torch.Generator().manual_seed(INPUT_SEED)
    return torch.rand(batch, 3, IMG_H, IMG_W, generator=g)


# Lanes (input pixels, 800x320) for the training losses; image 1 has none. The fifth lane of
# image 0 is beyond max_lanes (4); the fourth crosses the left border.
GOLDEN_LANES = [
    [
        [(120.0, 319.0), (260.0, 200.0), (350.0, 120.0)],
        [(420.0, 330.0), (415.0, 220.0), (405.0, 130.0)],
        [(700.0, 319.0), (560.0, 200.0), (470.0, 125.0)],
        [(-40.0, 300.0), (100.0, 230.0), (250.0, 150.0), (330.0, 110.0)],
        [(790.0, 250.0), (600.0, 160.0)],
    ],
    [],
]

# Lane sets for the target comparison (max_lanes 4), with the edge cases of GenerateLaneLine.
TARGET_LANE_SETS = [
    # plain lanes, given top -> bottom or bottom -> top
    [
        [(100.0, 319.5), (200.0, 250.0), (300.0, 180.0), (380.0, 130.0)],
        [(520.0, 120.0), (600.0, 200.0), (700.0, 300.0)],
    ],
    # crossing the bottom, left, right and top borders; leaving and re-entering (two pieces)
    [
        [(300.0, 360.0), (350.0, 250.0), (400.0, 140.0)],
        [(-60.0, 310.0), (50.0, 260.0), (200.0, 180.0)],
        [(760.0, 200.0), (820.0, 260.0), (900.0, 330.0)],
        [(500.0, 150.0), (520.0, 60.0), (530.0, -30.0)],
    ],
    [
        [(100.0, 300.0), (820.0, 200.0), (700.0, 120.0), (600.0, 80.0)],
        [(800.0, 310.0), (780.0, 250.0)],
    ],
    # one point; repeated ys; a span holding no sample row; a near-horizontal lane (kept)
    [
        [(400.0, 200.0)],
        [(200.0, 300.0), (205.0, 300.0), (260.0, 250.0), (262.0, 250.0), (300.0, 200.0)],
        [(600.0, 101.6), (602.0, 102.9)],
        [(100.0, 200.0), (700.0, 190.0)],
        [(650.0, 300.0), (690.0, 200.0)],
    ],
    # a lane with a single sample inside the image (invalid slot); more lanes than max_lanes
    [
        [(799.0, 319.0), (795.0, 316.0), (1200.0, 100.0)],
        [(100.0, 319.0), (150.0, 200.0)],
        [(250.0, 319.0), (300.0, 200.0)],
        [(400.0, 319.0), (450.0, 200.0)],
        [(550.0, 319.0), (600.0, 200.0)],
        [(700.0, 319.0), (750.0, 200.0)],
    ],
    [],
]

# 16 lanes fanning out from the vanishing area, for the max_lanes=16 targets.
LANES_16 = [
    [(40.0 + 48.0 * k, 319.0), (300.0 + 13.0 * k, 160.0), (360.0 + 5.0 * k, 100.0)]
    for k in range(16)
]


def nms_cases() -> list[tuple[np.ndarray, np.ndarray, float, int]]:
    """Crafted (rows in the kernel layout (n, 77), scores (n,), threshold, top_k) cases:
    score ties, end < start, overlap reaching row 71, negative starts (reading the columns
    before the xs, and the unsigned char wrap), .5 rounding, the threshold boundary, top-k."""

    def row(x: float, start_y: float = 0.0, length: float = 72.0, slope: float = 0.0) -> list:
        return [0.0, 1.0, start_y, 0.3, length, *(x + slope * np.arange(72))]

    cases = [
        # ties: equal scores keep index order; 0 suppresses 1 (20 px), 2 is far
        ([row(100), row(120), row(400), row(110)], [0.9, 0.9, 0.9, 0.5], 50.0, 4),
        # end < start: length 0 and length 0.4 never overlap anything
        (
            [row(100), row(100, start_y=10 / 71, length=0.0), row(101, length=0.4)],
            [0.9, 0.8, 0.7],
            50.0,
            4,
        ),
        # overlap only on rows 60..71 (end clamped to 71); 40 px apart there
        (
            [
                row(100, start_y=60 / 71, length=30),
                row(140, start_y=50 / 71, length=40),
                row(100, slope=-50),
            ],
            [0.9, 0.8, 0.7],
            41.0,
            4,
        ),
        # a start of -1 reads column 4 (the lengths, 72 vs 80): 2130 px of xs + 8 >= 29.64 * 72
        ([row(100, start_y=-2 / 71), row(130, start_y=-3 / 71, length=80)], [0.9, 0.8], 29.64, 4),
        # starts of -199: the unsigned char index wraps to column 62, so only rows 57..65 count
        (
            [row(100, start_y=-200 / 71, length=265), row(400, start_y=-200 / 71, length=265)],
            [0.9, 0.8],
            50.0,
            4,
        ),
        # .5 rounding of start and end
        (
            [
                row(100, start_y=30.5 / 71, length=10.5),
                row(100, start_y=0.0, length=31.5),
                row(100, start_y=0.0, length=30.49),
            ],
            [0.9, 0.8, 0.7],
            1.0,
            4,
        ),
        # the threshold is strict: exactly 50 px apart is kept, 49.99 suppressed
        ([row(100), row(150), row(149.99)], [0.9, 0.8, 0.7], 50.0, 4),
        # top-k
        ([row(100 * k) for k in range(8)], [0.1 * k for k in range(8)], 50.0, 3),
    ]
    return [
        (np.asarray(r, dtype=np.float32), np.asarray(s, dtype=np.float32), t, k)
        for r, s, t, k in cases
    ]


def clip_cases(count: int = 400, seed: int = 5) -> list[np.ndarray]:
    """Random polylines (input pixels, 800x320) for the clipping comparison with imgaug: anywhere,
    with points exactly on the borders, in the 1e-3 band inside the right border, and on a
    coarse grid through the corners."""
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(count):
        n = int(rng.integers(1, 8))
        kind = index % 4
        if kind == 0:
            points = rng.uniform([-200, -100], [1000, 420], (n, 2))
        elif kind == 1:
            points = rng.uniform([-50, -50], [850, 370], (n, 2))
            border = rng.integers(0, 6, n)  # 4, 5: leave the point where it is
            points[border == 0, 0], points[border == 1, 1] = 800, 320
            points[border == 2, 0], points[border == 3, 1] = 0, 0
        elif kind == 2:
            points = rng.uniform([700, 200], [800, 320], (n, 2))
            points[rng.random(n) < 0.5, 0] = 799.9995
        else:
            points = (rng.integers(-2, 4, (n, 2)) * np.array([400, 160])).astype(np.float64)
        cases.append(points)
    return cases
