"""The numpy-only decoder (for ONNX deployments) equals the model's torch decoder: same lanes,
bit-identical points and scores; and it imports nothing but numpy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from src.models.srlane import SRLane, load_weights
from src.models.srlane.decode import decode_predictions
from src.models.srlane.decode_np import decode_lanes, prior_ys
from tests.models.srlane_golden import golden_inputs, reference_state_dict

P = 72


def random_predictions(seed: int, batch: int = 4, n: int = 40, img_w: int = 800) -> np.ndarray:
    """Predictions with many candidates and near-duplicate lanes (so NMS has work): rows as the
    network emits them (logits, start/length fractions, xs / img_w)."""
    rng = np.random.default_rng(seed)
    preds = np.zeros((batch, n, 4 + P), dtype=np.float32)
    preds[..., :2] = rng.normal(0, 2, (batch, n, 2))
    preds[..., 2] = rng.uniform(-0.05, 0.6, (batch, n))
    preds[..., 3] = rng.uniform(-0.05, 1.0, (batch, n))
    base = rng.choice([100, 130, 400, 420, 700], size=(batch, n)) + rng.normal(0, 15, (batch, n))
    slope = rng.normal(0, 4, (batch, n))
    xs = base[..., None] + slope[..., None] * np.arange(P)
    preds[..., 4:] = (xs / img_w).astype(np.float32)
    return preds


def assert_same_lanes(torch_lanes: list, np_lanes: list) -> int:
    """Same lanes per image, bit-identical points and scores; returns the number of lanes
    compared."""
    assert [len(image) for image in torch_lanes] == [len(image) for image in np_lanes]
    count = 0
    for t_image, n_image in zip(torch_lanes, np_lanes, strict=True):
        for lane, (points, score) in zip(t_image, n_image, strict=True):
            assert np.array_equal(lane.points, points)
            assert score == lane.score
            count += 1
    return count


def test_prior_ys_are_torch_linspace() -> None:
    for n in (2, 3, 10, 36, 72, 73, 200):
        expected = torch.linspace(1, 0, steps=n, dtype=torch.float32).double().numpy()
        assert np.array_equal(prior_ys(n), expected), n


@pytest.mark.parametrize("seed", range(6))
def test_random_predictions_decode_the_same(seed: int) -> None:
    preds = random_predictions(seed)
    cuts, oris = [270, 160, 0, 80], [590, 720, 590, 360]
    args = {"img_w": 800, "conf_threshold": 0.4, "nms_thres": 50.0, "max_lanes": 4}
    torch_lanes = decode_predictions(torch.from_numpy(preds), cuts, oris, **args)
    count = assert_same_lanes(torch_lanes, decode_lanes(preds, cuts, oris, **args))
    assert count >= 4  # the comparison is not vacuous


def test_model_outputs_decode_the_same(tmp_path: Path) -> None:
    path = tmp_path / "reference.pth"
    torch.save({"net": {"module." + k: v for k, v in reference_state_dict().items()}}, path)
    model = SRLane()
    load_weights(model, path)
    model.eval()
    with torch.no_grad():
        predictions = model(golden_inputs())
    cuts, oris = [270, 160], [590, 720]
    torch_lanes = model.decode(predictions, cuts, oris)
    np_lanes = decode_lanes(
        predictions.numpy(),
        cuts,
        oris,
        img_w=model.img_w,
        conf_threshold=model.conf_threshold,
        nms_thres=model.nms_thres,
        max_lanes=model.max_lanes,
    )
    assert assert_same_lanes(torch_lanes, np_lanes) >= 2


def test_the_module_imports_only_numpy() -> None:
    # Loaded from its file with torch made unimportable: a deployment copies this one file.
    path = Path(__file__).resolve().parents[2] / "src" / "models" / "srlane" / "decode_np.py"
    code = (
        "import sys, importlib.util\n"
        "for name in ('torch', 'hydra', 'omegaconf', 'src', 'cv2', 'scipy'):\n"
        "    sys.modules[name] = None\n"
        f"spec = importlib.util.spec_from_file_location('decode_np', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "zeros = module.np.zeros((1, 40, 76), 'float32')\n"
        "print(len(module.decode_lanes(zeros, [0], [1], 800)[0]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
