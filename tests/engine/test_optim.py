"""Learning-rate schedules (the reference warm-up + cosine, warm-up + multi-step) and the linear
lr scaling of trainer.scale_lr."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from hydra.utils import instantiate

from src.engine.optim import (
    WarmupCosineFactor,
    build_optimizer,
    scaled_lr,
    warmup_cosine,
    warmup_multistep,
)
from tests.launcher_helpers import compose_cfg


def test_warmup_cosine_matches_the_reference_formula() -> None:
    factor = WarmupCosineFactor(warmup_iters=800, total_iters=44440)
    assert factor(0) == 0.0 and factor(400) == 0.5 and factor(800) == 1.0
    for i in (801, 10_000, 30_000, 44_439):
        expected = 0.5 * (math.cos((i - 800) / (44440 - 800) * math.pi) + 1)
        assert factor(i) == pytest.approx(expected, abs=1e-15)
    assert factor(44440) == pytest.approx(0.0, abs=1e-15)
    assert factor(50_000) == pytest.approx(0.0, abs=1e-15)  # stays at 0 past the end


def test_schedulers_step_the_optimizer_lr() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    scheduler = warmup_cosine(optimizer, warmup_iters=2, total_iters=10)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[:3] == [0.0, 5e-4, 1e-3]
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False))

    optimizer = torch.optim.SGD(params, lr=1.0)
    scheduler = warmup_multistep(optimizer, warmup_iters=1, milestones=[3, 5], gamma=0.1)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.0, 1.0, 1.0, 0.1, 0.1, 0.01])


def test_warmup_cosine_state_round_trip() -> None:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, warmup_iters=5, total_iters=20)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    other = warmup_cosine(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 5, 20)
    other.load_state_dict(scheduler.state_dict())
    assert other.last_epoch == 7 and other.get_last_lr() == scheduler.get_last_lr()


# ----------------------------------------------------------------------------- linear lr scaling
def lr_after_warmup(*overrides: str) -> float:
    """The lr the recipe trains at once the warm-up is over: optimizer and scheduler built as
    src.main builds them."""
    cfg = compose_cfg("experiment=srlane_culane", "scheduler.warmup_iters=2", *overrides)
    optimizer = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
    scheduler = instantiate(cfg.scheduler)(optimizer)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


def test_scaled_lr_is_linear_in_the_global_batch() -> None:
    assert scaled_lr(6e-4, 40, 40) == 6e-4
    assert scaled_lr(6e-4, 80, 40) == pytest.approx(1.2e-3)
    assert scaled_lr(6e-4, 320, 40) == pytest.approx(4.8e-3)
    assert scaled_lr(1e-3, 2, 8) == pytest.approx(2.5e-4)


def test_scale_lr_scales_from_the_recipe_base_batch(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="src.engine.optim"):
        lr = lr_after_warmup("dataset.batch_size=80", "trainer.scale_lr=true")
    assert lr == pytest.approx(1.2e-3)  # the scheduler warms up to the scaled lr
    assert "scale_lr: global batch 80 vs base 40 -> lr 6e-4 -> 1.2e-3" in caplog.text
    # The global batch is dataset.batch_size whatever the processes: 2 nodes x 4 GPUs at the
    # reference batch train at the reference lr.
    lr = lr_after_warmup("trainer.num_nodes=2", "trainer.devices=4", "trainer.scale_lr=true")
    assert lr == pytest.approx(6e-4)


def test_without_scale_lr_the_lr_is_as_configured(caplog: pytest.LogCaptureFixture) -> None:
    """The default: the reference does not scale; a batch other than the base is pointed out."""
    with caplog.at_level(logging.INFO, logger="src.engine.optim"):
        assert lr_after_warmup("dataset.batch_size=80") == pytest.approx(6e-4)
    assert "global batch 80, base 40: lr 6e-4 as configured (trainer.scale_lr=true: 1.2e-3)" in (
        caplog.text
    )


def test_each_recipe_names_the_batch_its_lr_was_tuned_for() -> None:
    assert compose_cfg().trainer.base_batch_size == compose_cfg().dataset.batch_size == 8
    reference = compose_cfg("experiment=srlane_culane")
    assert reference.trainer.base_batch_size == reference.dataset.batch_size == 40
    assert compose_cfg("experiment=srlane_tusimple").trainer.base_batch_size == 40
    assert compose_cfg().trainer.scale_lr is False
