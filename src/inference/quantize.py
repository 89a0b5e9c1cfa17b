"""Int8 inference on the CPU (``evaluation.int8``): post-training static quantization of the
backbone, which is ~95 % of the eval forward.

PyTorch 2 export quantization (torchao, in the optional extra ``deploy``): the backbone is
captured with ``torch.export``, the X86 inductor quantizer marks its convolutions (with their
BatchNorm, residual add and ReLU) for int8 with per-channel weights, observers record activation
ranges over calibration images, and the converted graph, compiled with inductor freezing
(``FrozenCompiledModel``), runs as oneDNN int8 kernels (AVX512-VNNI / AMX). The neck and heads
stay fp32. Not for training: the weights are constants afterwards.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterable
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
        from torchao.quantization.pt2e import quantize_pt2e  # noqa: F401  (the submodule)
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    except ImportError as err:
        raise ImportError(
            f"evaluation.int8 needs torchao ({err}): pip install -e '.[deploy]'"
        ) from None
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return pt2e, x86_inductor_quantizer


def quantize_backbone(model: nn.Module, calibration: Iterable[Tensor]) -> nn.Module:
    """A copy of the eval-mode ``model`` whose backbone is int8, calibrated on the image batches
    of ``calibration`` (B, 3, H, W in the model's input range). ``model`` is left as it is."""
    pt2e, x86 = require_torchao()
    batches = [img.contiguous(memory_format=torch.channels_last) for img in calibration]
    if not batches:
        raise ValueError("int8 calibration needs at least one image batch")
    quantized = copy.deepcopy(model).eval()
    # Batch size stays free: the last batch of a split is smaller.
    batch = torch.export.Dim("batch", min=1)
    graph = torch.export.export(
        quantized.backbone, (batches[0],), dynamic_shapes=({0: batch},)
    ).module()
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    with warnings.catch_warnings():
        # The quantizer leaves conv1's output in fp32, so the stem's max pool runs in fp32
        # between int8 convolutions, and it says so as a warning.
        warnings.filterwarnings("ignore", "The input of maxpool2d is not quantized")
        observed = pt2e.quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for img in batches:
            observed(img)
    backbone = pt2e.quantize_pt2e.convert_pt2e(observed)
    # An exported graph refuses .train()/.eval() unless told how (it has no dropout and its
    # BatchNorm is folded, so both are the same here).
    quantized.backbone = pt2e.allow_exported_model_train_eval(backbone)
    log.info("int8 backbone calibrated on %d images", sum(len(img) for img in batches))
    return quantized
