"""The eval-mode model that validate / test / predict run: eager, compiled with freezing
(evaluation.compile) or with an int8 backbone (evaluation.int8, src/inference/quantize.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from src.inference.quantize import quantize_model
from src.lane import Lane
from src.models.registry import plugin_of

log = logging.getLogger(__name__)


class FrozenCompiledModel(nn.Module):
    """A trained model for inference only (evaluation.compile): its forward runs through
    torch.compile with inductor freezing, which treats the weights as constants: BatchNorm is
    folded into the convolutions and the weights are prepacked (and cast to bf16 once under bf16
    autocast) instead of at every call. Decoding is the model's own. The weights must not change
    afterwards, hence not for the validations inside training."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = getattr(model, "_orig_mod", model)  # trainer.compile wraps it already
        # Kept out of the module tree so that state_dict and .to() see the model once.
        object.__setattr__(self, "_compiled", torch.compile(self.model, dynamic=False))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor_config

        # Read when a shape compiles (the first call of each batch size).
        with inductor_config.patch(freezing=True):
            return self._compiled(img)

    def decode(self, *args: Any, **kwargs: Any) -> list[list[Lane]]:
        return self.model.decode(*args, **kwargs)


def inference_model(
    model: nn.Module, compile: bool, int8_calibration: Iterable[Tensor] | None = None
) -> nn.Module:
    """The eval-mode model evaluation and prediction run (``compile``: FrozenCompiledModel;
    ``int8_calibration`` image batches: its backbone in int8 first, src/inference/quantize.py)."""
    model.eval()
    if int8_calibration is not None:
        log.info("evaluation.int8: calibrating the int8 model, then compiling it")
        plugin = plugin_of(model)
        int8 = quantize_model(model, int8_calibration, plugin.int8_fp32_modules, plugin.int8_scope)
        return FrozenCompiledModel(int8).eval()
    if compile:
        log.info("evaluation.compile: torch.compile with freezing (the first batch compiles)")
        return FrozenCompiledModel(model).eval()
    return model
