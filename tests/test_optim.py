"""Learning-rate schedules: the reference warm-up + cosine, and warm-up + multi-step."""

from __future__ import annotations

import math

import pytest
import torch

from src.optim import WarmupCosineFactor, warmup_cosine, warmup_multistep


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
