"""The package's public names resolve, and file scoring does not import torch."""

import subprocess
import sys
from pathlib import Path

import src.metrics as metrics


def test_every_exported_name_resolves():
    for name in metrics.__all__:
        assert getattr(metrics, name) is not None
    assert sorted(metrics._WHERE) == metrics.__all__


def test_file_scoring_does_not_import_torch():
    code = "import sys, src.metrics.files; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.stdout.strip() == "False", out.stderr
