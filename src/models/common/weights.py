"""Loading weights with every key accounted for: reference checkpoints, this project's
checkpoints, bare state dicts.

A model package describes how a reference checkpoint's keys relate to its own in a ``KeyTables``:
renames (reference key pattern -> model key), keys ignored on purpose (with the reason), and
constant buffers that the model recomputes (checked against the model's value instead of being
loaded). ``load_checkpoint`` applies the tables; a missing, unexpected or mis-shaped tensor, or a
constant that differs, raises ``CheckpointMismatchError`` and nothing is loaded. The tables live
in ``src/models/<model>/weights.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

# Wrapper prefixes stripped from every key: DataParallel/DDP, torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

# How to get the model's value of a constant reference buffer, given the regex match of its key.
ConstantGetter = Callable[[nn.Module, re.Match], Tensor]


@dataclass(frozen=True)
class KeyTables:
    """How a reference checkpoint's keys (without ``module.``) relate to a model's keys.

    Patterns are matched with ``re.fullmatch``; the first matching rename wins.
    """

    renames: tuple[tuple[str, str], ...]  # (reference key pattern, model key template)
    ignored: tuple[tuple[str, str], ...] = ()  # (reference key pattern, reason)
    constants: tuple[tuple[str, ConstantGetter], ...] = ()  # (pattern, model value)

    def model_key(self, key: str) -> str | None:
        """The model's key for a reference key, or None if no rename applies."""
        for pattern, target in self.renames:
            match = re.fullmatch(pattern, key)
            if match:
                return match.expand(target)
        return None

    def ignored_reason(self, key: str) -> str | None:
        return next((r for p, r in self.ignored if re.fullmatch(p, key)), None)

    def constant_value(self, key: str, model: nn.Module) -> Tensor | None:
        """The model's value for a constant reference key; None if the key is not a constant
        (or names a part this model does not have)."""
        for pattern, expected in self.constants:
            match = re.fullmatch(pattern, key)
            if match:
                try:
                    return expected(model, match)
                except AttributeError:  # e.g. a stage this model does not have
                    return None
        return None


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
    """What ``load_checkpoint`` did. ``layout`` is "reference" or "project"."""

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


def _reference_only_key(
    raw_key: str,
    key: str,
    value: Tensor,
    model: nn.Module,
    tables: KeyTables,
    report: LoadReport,
    bad_constants: list[str],
) -> bool:
    """True for a reference key that is not loaded: ignored on purpose (recorded with its reason)
    or a constant buffer (checked against this model's; a differing one goes to
    ``bad_constants``)."""
    reason = tables.ignored_reason(key)
    if reason is not None:
        report.ignored[raw_key] = reason
        report.layout = "reference"
        return True
    expected = tables.constant_value(key, model)
    if expected is None:
        return False
    report.layout = "reference"
    same = tuple(value.shape) == tuple(expected.shape) and torch.allclose(
        value.to(expected.device, expected.dtype), expected, rtol=0.0, atol=1e-6
    )
    (report.verified_constants if same else bad_constants).append(raw_key)
    return True


def load_checkpoint(
    model: nn.Module,
    source: str | Path | Mapping[str, object],
    tables: KeyTables,
    name: str | None = None,
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
        if _reference_only_key(raw_key, key, value, model, tables, report, bad_constants):
            continue
        target = tables.model_key(key)
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
