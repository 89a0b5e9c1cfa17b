"""Loading weights into SRLane: reference checkpoints, this project's checkpoints, bare state dicts.

The reference code (passerer/SRLane) saves ``{"net": state_dict}`` from a DataParallel model,
so every key starts with ``module.``. Its key names map to this model's by the explicit table
``REFERENCE_KEY_MAP``; every other reference key is either ignored on purpose (``IGNORED_KEYS``,
with the reason) or a constant buffer that this model recomputes (``CONSTANT_KEYS``), which is
checked against ours. Anything else - a missing, unexpected or mis-shaped tensor, or a constant
that differs - raises ``CheckpointMismatchError``; nothing is loaded silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

# (reference key pattern, this model's key) - applied with re.fullmatch, first match wins.
_STAGE = r"roi_head\.stage_heads\.(\d+)"
REFERENCE_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"backbone\.model\.(.+)", r"backbone.\1"),
    (r"neck\.lateral_convs\.(\d+)\.(weight|bias)", r"neck.convs.\1.\2"),
    (r"rpn_head\.angle_conv\.(\d+)\.weight", r"sketch_head.angle_convs.\1.weight"),
    (_STAGE + r"\.z_embeddings", r"refine_head.stages.\1.level_z"),
    (_STAGE + r"\.gather_fc\.(weight|bias)", r"refine_head.stages.\1.gather.\2"),
    (_STAGE + r"\.shuffle_fc\.(weight|bias)", r"refine_head.stages.\1.shuffle_fc.\2"),
    (
        _STAGE + r"\.segment_attn\.0\.(q_proj|k_proj)\.(weight|bias)",
        r"refine_head.stages.\1.attention.\2.\3",
    ),
    (
        _STAGE + r"\.channel_fc\.0\.([02])\.(weight|bias)",
        r"refine_head.stages.\1.attention_mlp.\2.\3",
    ),
    (_STAGE + r"\.cls_modules\.0\.(weight|bias)", r"refine_head.stages.\1.cls_head.0.\2"),
    (_STAGE + r"\.cls_layers\.(weight|bias)", r"refine_head.stages.\1.cls_head.2.\2"),
    (_STAGE + r"\.reg_modules\.0\.(weight|bias)", r"refine_head.stages.\1.reg_head.0.\2"),
    (_STAGE + r"\.reg_layers\.(weight|bias)", r"refine_head.stages.\1.reg_head.2.\2"),
)

# Reference keys with no counterpart here, and why.
IGNORED_KEYS: tuple[tuple[str, str], ...] = (
    (
        r"rpn_head\.seg_conv\.\d+\.(weight|bias)",
        "auxiliary segmentation branch (training-only, loss weight 0 in the released configs)",
    ),
)


def _row_ys(model: nn.Module) -> Tensor:
    num_points = model.get_buffer("sketch_head.prior_ys").numel()
    return torch.linspace(1, 0, steps=num_points, dtype=torch.float32)


# Reference constant buffers -> how to get this model's value (they are recomputed, not loaded).
CONSTANT_KEYS: tuple[tuple[str, Callable[[nn.Module, re.Match], Tensor]], ...] = (
    (r"rpn_head\.prior_ys", lambda m, _: m.get_buffer("sketch_head.prior_ys")),
    (r"rpn_head\.grid", lambda m, _: m.get_buffer("sketch_head.grid")),
    (r"roi_head\.prior_ys", lambda m, _: _row_ys(m)),
    (
        _STAGE + r"\.sample_x_indexs",
        lambda m, g: m.get_buffer(f"refine_head.stages.{g[1]}.sample_rows"),
    ),
    (
        _STAGE + r"\.prior_feat_ys",
        lambda m, g: m.get_buffer(f"refine_head.stages.{g[1]}.sample_ys"),
    ),
)

# Wrapper prefixes stripped from every key: DataParallel/DDP, torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointMismatchError(RuntimeError):
    """The weights do not fit the model; lists every missing, unexpected and mis-shaped key."""

    def __init__(
        self,
        source: str,
        missing: list[str],
        unexpected: list[str],
        mis_shaped: list[str],
        constants: list[str],
    ) -> None:
        self.source = source
        self.missing, self.unexpected = missing, unexpected
        self.mis_shaped, self.constants = mis_shaped, constants
        lines = [f"checkpoint {source} does not fit the model:"]
        for title, keys in (
            ("missing (in the model, not in the file)", missing),
            ("unexpected (in the file, not in the model)", unexpected),
            ("mis-shaped", mis_shaped),
            ("constant buffers that differ from this model's", constants),
        ):
            if keys:
                lines.append(f"  {title}: {len(keys)}")
                lines.extend(f"    {k}" for k in keys)
        super().__init__("\n".join(lines))


@dataclass
class LoadReport:
    """What ``load_weights`` did. ``layout`` is "reference" or "project"."""

    source: str
    layout: str
    loaded: list[str] = field(default_factory=list)  # this model's keys that were set
    renamed: dict[str, str] = field(default_factory=dict)  # reference key -> model key
    ignored: dict[str, str] = field(default_factory=dict)  # file key -> reason
    verified_constants: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors from {self.source} ({self.layout} layout); "
            f"{len(self.ignored)} ignored on purpose, {len(self.verified_constants)} constants "
            "verified"
        )


def reference_key_to_model_key(key: str) -> str | None:
    """This model's key for a reference key (without ``module.``), or None if it has none."""
    for pattern, target in REFERENCE_KEY_MAP:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(target)
    return None


def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _unwrap(obj: object, source: str) -> Mapping[str, Tensor]:
    """The state dict inside a reference file ({"net": ...}), a project checkpoint
    ({"model": ...}), a Lightning-style file ({"state_dict": ...}), or a bare state dict."""
    if not isinstance(obj, Mapping):
        raise CheckpointMismatchError(source, [], [f"<not a dict: {type(obj).__name__}>"], [], [])
    for wrapper in ("net", "model", "state_dict"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping):
            return inner
    return obj


def _match_constant(key: str, model: nn.Module) -> Tensor | None:
    for pattern, expected in CONSTANT_KEYS:
        match = re.fullmatch(pattern, key)
        if match:
            try:
                return expected(model, match)
            except AttributeError:  # e.g. a stage this model does not have
                return None
    return None


def _reference_only_key(
    raw_key: str,
    key: str,
    value: Tensor,
    model: nn.Module,
    report: LoadReport,
    bad_constants: list[str],
) -> bool:
    """True for a reference key that is not loaded: ignored on purpose (recorded with its reason)
    or a constant buffer (checked against this model's; a differing one goes to
    ``bad_constants``)."""
    reason = next((r for p, r in IGNORED_KEYS if re.fullmatch(p, key)), None)
    if reason is not None:
        report.ignored[raw_key] = reason
        report.layout = "reference"
        return True
    expected = _match_constant(key, model)
    if expected is None:
        return False
    report.layout = "reference"
    same = tuple(value.shape) == tuple(expected.shape) and torch.allclose(
        value.to(expected.device, expected.dtype), expected, rtol=0.0, atol=1e-6
    )
    (report.verified_constants if same else bad_constants).append(raw_key)
    return True


def load_weights(
    model: nn.Module, source: str | Path | Mapping[str, object], name: str | None = None
) -> LoadReport:
    """Load a reference checkpoint, a project checkpoint or a state dict into ``model``.

    ``source`` is a file path (read with ``torch.load(weights_only=True, map_location="cpu")``)
    or an already loaded object, then ``name`` (e.g. the file it came from) names it in reports
    and errors. Every tensor in the file must be used, ignored on purpose or be a matching
    constant, and every model tensor must be provided; otherwise ``CheckpointMismatchError`` is
    raised before anything is loaded.
    """
    if isinstance(source, (str, Path)):
        name = str(source)
        obj = torch.load(Path(source).expanduser(), map_location="cpu", weights_only=True)
    else:
        name, obj = name or "<state dict>", source
    state = _unwrap(obj, name)

    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: load the module inside
    own = model.state_dict()
    report = LoadReport(source=name, layout="project")
    mapped: dict[str, Tensor] = {}
    provided: set[str] = set()
    unexpected, mis_shaped, bad_constants = [], [], []
    for raw_key, value in state.items():
        key = _strip_wrappers(raw_key)
        if _reference_only_key(raw_key, key, value, model, report, bad_constants):
            continue
        target = reference_key_to_model_key(key)
        if target is not None:
            report.layout = "reference"
            report.renamed[raw_key] = target
        else:
            target = key
        if target not in own:
            unexpected.append(raw_key)
            continue
        provided.add(target)
        if tuple(own[target].shape) != tuple(value.shape):
            mis_shaped.append(
                f"{raw_key}: file {tuple(value.shape)} vs model {tuple(own[target].shape)}"
            )
        else:
            mapped[target] = value
    missing = sorted(set(own) - provided)
    if missing or unexpected or mis_shaped or bad_constants:
        raise CheckpointMismatchError(name, missing, unexpected, mis_shaped, bad_constants)
    model.load_state_dict(mapped, strict=True)
    report.loaded = sorted(mapped)
    return report
