"""Evaluation settings that no benchmark can use are refused with the config check, before any
work (they used to fail at the first validation, or to score every image 0)."""

from __future__ import annotations

import pytest

from src.config import ConfigError
from src.engine.preflight import check_config
from tests.launcher_helpers import compose_cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("evaluation.culane_iou_thresholds=[0.5,0.5]", "0.5 given more than once"),
        ("evaluation.culane_iou_thresholds=[0.5,1.0]", "threshold 1.0 must lie in [0, 1)"),
        ("evaluation.culane_iou_thresholds=[]", "no IoU threshold"),
        ("evaluation.tusimple_run_time_ms=250", "every image Accuracy 0, FN 1"),
        ("evaluation.tusimple_run_time_ms=-1", "must lie in [0, 200] ms"),
    ],
)
def test_evaluation_values_no_benchmark_can_use_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid config") as info:
        check_config(compose_cfg(override))
    assert message in str(info.value)


def test_the_recipes_pass() -> None:
    for experiment in ("synthetic_cpu", "srlane_culane", "srlane_tusimple"):
        check_config(compose_cfg(f"experiment={experiment}"))
