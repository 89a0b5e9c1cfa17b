"""Shared pytest options and fixtures. Slow tests are skipped unless --run-slow is given (CI
gives it)."""

from pathlib import Path

import pytest

from src.data import generate_synthetic_tusimple
from src.data.config import SyntheticConfig


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic TuSimple-format dataset (640x360 frames) for launcher runs; the
    matching overrides are tests.launcher_helpers.tiny_run."""
    root = tmp_path_factory.mktemp("synthetic") / "tiny"
    cfg = SyntheticConfig(num_train=12, num_val=6, num_test=4, width=640, height=360)
    generate_synthetic_tusimple(root, cfg)
    return root


@pytest.fixture(scope="session")
def llamas_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic LLAMAS tree (official layout; 4 train, 5 valid, 1 test image). Tests
    that change files work on a copy."""
    from src.data.synthetic_formats import generate_synthetic_llamas

    root = tmp_path_factory.mktemp("synthetic_llamas") / "tree"
    return generate_synthetic_llamas(root, num_train=4, num_val=5, num_test=1, seed=4, workers=1)


@pytest.fixture(scope="session")
def curvelanes_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic CurveLanes tree (official layout, three image sizes; 4 train,
    6 valid, 2 test images). Tests that change files work on a copy."""
    from src.data.synthetic_formats import generate_synthetic_curvelanes

    root = tmp_path_factory.mktemp("synthetic_curvelanes") / "tree"
    return generate_synthetic_curvelanes(
        root, num_train=4, num_val=6, num_test=2, seed=4, workers=1
    )
