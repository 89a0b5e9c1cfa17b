"""Int8 inference on the CPU (``evaluation.int8``): post-training static quantization of the whole
eval forward (backbone, neck, heads), calibrated on the user's images.

PyTorch 2 export quantization (torchao, in the optional extra ``deploy``): the model's eval
forward is captured with ``torch.export`` as one graph, the X86 inductor quantizer marks its
convolutions (with their BatchNorm, residual add and ReLU), the stem's max pool and the linear
layers of the heads for int8 (per-channel weights, per-tensor activations), observers record
activation ranges over the calibration images, and the converted graph, compiled with inductor
freezing (src/inference/compiled.py ``FrozenCompiledModel``), runs as oneDNN int8 kernels
(AVX512-VNNI / AMX) whose outputs stay int8 from one layer to the next wherever the next layer is
int8 too. What stays fp32 is each model's choice (its plugin's ``int8_fp32_modules``, why
there); the proposals, the feature sampling and the attention are fp32 arithmetic on few
numbers. Not for training: the weights are constants afterwards. Measured against the
machine's limit: scripts/bench_model.py --paths.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


def require_torchao() -> Any:
    """torchao's pt2e quantization API, or an error saying how to install it."""
    # At import torchao logs a warning for each CUDA kernel library a CPU machine cannot load,
    # and torch one about torchao registering an enum with pytree: neither concerns int8 here.
    quiet = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        from torchao.quantization import pt2e
        from torchao.quantization.pt2e import graph_utils, quantize_pt2e  # noqa: F401
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    except ImportError as err:
        raise ImportError(
            f"evaluation.int8 needs torchao ({err}): pip install -e '.[deploy]'"
        ) from None
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return pt2e, x86_inductor_quantizer


def _match_functional_relu(graph_utils: Any) -> None:
    """Let the quantizer's fusion patterns see ``F.relu`` (the backbone's ReLU, see
    src/models/srlane/backbone.py) as a ReLU. An exported graph names a functional call by its
    function name ("relu"), which torchao matches for add and mul but not for relu; unmatched,
    conv + ReLU is not an int8-output pattern, so the stem's max pool ran in fp32 between int8
    convolutions and conv1 wrote its output in fp32 (4 bytes a value instead of 1)."""
    groups = graph_utils.get_equivalent_types()
    if any("relu" in group for group in groups):
        return
    extended = [group | {"relu", "relu_"} if nn.ReLU in group else group for group in groups]
    graph_utils.update_equivalent_types_dict(extended)


class Int8LaneModel(nn.Module):
    """A lane model's eval forward as a converted int8 graph, with the fp32 model's decoding."""

    def __init__(self, graph: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.graph = graph
        # Outside the module tree: decoding reads settings (image width, thresholds), no weights.
        object.__setattr__(self, "_fp32_model", model)

    def forward(self, img: Tensor) -> Tensor:
        return self.graph(img.contiguous(memory_format=torch.channels_last))

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        return self._fp32_model.decode(*args, **kwargs)


def quantize_model(
    model: nn.Module,
    calibration: Iterable[Tensor],
    fp32_modules: Sequence[str] = (),
    scope: Sequence[str] | None = None,
) -> nn.Module:
    """The eval forward of ``model`` in int8, calibrated on the image batches of ``calibration``
    (B, 3, H, W in the model's input range); the modules named in ``fp32_modules`` (and what
    the quantizer has no int8 kernel for) stay fp32. ``scope``: the leading submodules that form
    one int8 graph (their forward runs in this order, each on the last one's output), the rest of
    the forward fp32; None: the whole forward. ``model`` is left as it is."""
    pt2e, x86 = require_torchao()
    unknown = sorted(set(fp32_modules) - {name for name, _ in model.named_modules()})
    if unknown:
        raise ValueError(f"fp32_modules names no module of the model: {', '.join(unknown)}")
    batches = [img.contiguous(memory_format=torch.channels_last) for img in calibration]
    if not batches:
        raise ValueError("int8 calibration needs at least one image batch")
    _match_functional_relu(pt2e.graph_utils)
    fp32 = copy.deepcopy(model).eval()
    if scope is None:
        return Int8LaneModel(_int8_graph(fp32, batches, fp32_modules, pt2e, x86), fp32).eval()
    part = nn.Sequential(*(fp32.get_submodule(name) for name in scope))
    inside = [_scoped_name(name, scope) for name in fp32_modules]
    graph = _int8_graph(part, batches, [name for name in inside if name], pt2e, x86)
    for index, name in enumerate(scope):  # the graph stands for the whole chain
        fp32.set_submodule(name, _Channels(graph) if index == 0 else nn.Identity())
    return fp32


class _Channels(nn.Module):
    """An int8 graph as a drop-in submodule: its input in the layout it was exported with."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: Tensor) -> Any:
        return self.graph(x.contiguous(memory_format=torch.channels_last))


def _scoped_name(name: str, scope: Sequence[str]) -> str:
    """``name`` (of the model) inside the Sequential of ``scope``, "" when outside it."""
    for index, prefix in enumerate(scope):
        if name == prefix or name.startswith(prefix + "."):
            return f"{index}{name[len(prefix) :]}"
    return ""


def _int8_graph(
    module: nn.Module, batches: list[Tensor], fp32_modules: Sequence[str], pt2e: Any, x86: Any
) -> nn.Module:
    """``module``'s forward exported, quantized (int8 but ``fp32_modules``), calibrated on
    ``batches`` and converted."""
    # Batch size stays free: the last batch of a split is smaller.
    batch = torch.export.Dim("batch", min=1)
    graph = torch.export.export(module, (batches[0],), dynamic_shapes=({0: batch},)).module()
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    for name in fp32_modules:
        quantizer.set_module_name_qconfig(name, None)
    observed = pt2e.quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for img in batches:
            observed(img)
    converted = pt2e.quantize_pt2e.convert_pt2e(observed)
    # An exported graph refuses .train()/.eval() unless told how (it has no dropout and its
    # BatchNorm is folded, so both are the same here).
    converted = pt2e.allow_exported_model_train_eval(converted)
    log.info("int8 model calibrated on %d images", sum(len(img) for img in batches))
    return converted
