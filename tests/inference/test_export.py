"""mode=export and the ONNX Runtime path: raw predictions within 1e-4 of the torch model, the
same decoded lanes and the same TuSimple metric on the synthetic val split (every model, through
its plugin), reference-format checkpoints, refused mismatches, and mode=predict on a video with
both backends."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from src.config import ConfigError
from src.data import build_dataset, collate_lanes
from src.engine.checkpoint import evaluation_weights, read_checkpoint
from src.inference.evaluate import LaneEvaluator
from src.inference.export import DECODE_JSON, ONNX_FILE, ExportError, OnnxLaneModel
from src.models.registry import plugin_for
from src.models.srlane import SRLane, load_weights
from tests.launcher_helpers import compose_cfg, run_main, tiny_run
from tests.models.srlane_golden import GOLDEN, golden_inputs, reference_state_dict

pytest.importorskip("onnxruntime", reason="the optional extra 'deploy' is not installed")


def launch(overrides: list[str], run_dir: Path) -> None:
    """One job in this process (no subprocess start-up: export and predict are short)."""
    from src.main import run_job

    run_job(compose_cfg(*overrides), run_dir)


def write_onnx(path: Path, height: int, width: int) -> None:
    """A minimal loadable ONNX model with input "img" (batch, 3, height, width)."""
    from onnx import TensorProto, helper, save

    img = helper.make_tensor_value_info("img", TensorProto.FLOAT, ["batch", 3, height, width])
    out = helper.make_tensor_value_info("predictions", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["img"], ["predictions"])], "g", [img], [out]
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def write_spec(path: Path, width: int = 320, height: int = 128) -> None:
    spec = {
        "input_w": width,
        "input_h": height,
        "cut_height": 80,
        "img_w": width,
        "conf_threshold": 0.4,
        "nms_thres": 20.0,
        "max_lanes": 5,
        "num_points": 72,
    }
    path.write_text(json.dumps(spec))


# ------------------------------------------------------------------------------ fast
def test_a_missing_export_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="mode=export"):
        OnnxLaneModel(tmp_path)
    write_onnx(tmp_path / ONNX_FILE, 128, 320)
    with pytest.raises(ExportError, match=DECODE_JSON):
        OnnxLaneModel(tmp_path / ONNX_FILE)


def test_an_onnx_input_other_than_the_json_is_refused(tmp_path: Path) -> None:
    write_onnx(tmp_path / ONNX_FILE, 64, 64)
    write_spec(tmp_path / DECODE_JSON, 320, 128)
    with pytest.raises(ExportError, match="different exports"):
        OnnxLaneModel(tmp_path)


def test_a_json_without_decode_keys_is_refused(tmp_path: Path) -> None:
    write_onnx(tmp_path / ONNX_FILE, 128, 320)
    (tmp_path / DECODE_JSON).write_text('{"input_w": 320}')
    with pytest.raises(ExportError, match="lacks"):
        OnnxLaneModel(tmp_path)


def test_without_onnxruntime_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"\.\[deploy\]"):
        OnnxLaneModel(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["mode=export"], "mode=export needs weights"),
        (["mode=export", "export.opset=13"], "export.opset=13 must be >= 17"),
        (["mode=predict", "predict.input=x.mp4", "predict.backend=tf"], "predict.backend"),
    ],
)
def test_export_config_errors_come_before_any_work(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        launch(["trainer.accelerator=cpu", *overrides], tmp_path)


# ------------------------------------------------------------------------------ slow
class Exported(NamedTuple):
    model: str  # the model option
    run_dir: Path


@pytest.fixture(scope="module", params=["srlane", "clrnet"])
def exported(
    request: pytest.FixtureRequest, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Exported:
    """A run of each model trained a few iterations with EMA on the tiny dataset, exported."""
    model = f"model={request.param}"
    run_dir = tmp_path_factory.mktemp("export") / "run"
    train = [*tiny_run(tiny_root, total_iter=4), model, "trainer.ema_decay=0.5"]
    run_main([*train, f"hydra.run.dir={run_dir}"])
    launch([*tiny_run(tiny_root), model, "mode=export"], run_dir)
    return Exported(request.param, run_dir)


@pytest.mark.slow
def test_onnx_equals_torch_on_the_val_split(tiny_root: Path, exported: Exported) -> None:
    cfg = compose_cfg(*tiny_run(tiny_root), f"model={exported.model}")
    plugin = plugin_for(cfg.model._target_)
    model = instantiate(cfg.model, pretrained_backbone=None)
    best = exported.run_dir / "checkpoints" / "best.ckpt"
    saved = read_checkpoint(best)
    assert "ema" in saved  # the export holds the EMA weights, as evaluation does
    plugin.load_weights(model, evaluation_weights(saved, best))
    model.eval()
    export_dir = exported.run_dir / "export"
    onnx_model = OnnxLaneModel(export_dir, input_size=(cfg.dataset.img_w, cfg.dataset.img_h))
    spec = json.loads((export_dir / DECODE_JSON).read_text())
    assert spec["cut_height"] == 80 and spec["decoder"] == plugin.onnx_decoder
    decoder = importlib.import_module(plugin.onnx_decoder)
    dataset = build_dataset(cfg.dataset, cfg.dataset.val_split, training=False)
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate_lanes)  # batches of 4 and 2
    evaluators = {b: LaneEvaluator("synthetic", cfg.evaluation) for b in ("torch", "onnx")}
    max_diff, lanes_compared = 0.0, 0
    for batch in loader:
        metas = batch["meta"]
        cuts, oris = [m["cut_height"] for m in metas], [m["ori_size"][0] for m in metas]
        with torch.no_grad():
            torch_preds = model(batch["img"])
        onnx_preds = onnx_model.run(batch["img"].numpy())
        max_diff = max(max_diff, float(np.abs(onnx_preds - torch_preds.numpy()).max()))
        torch_lanes = model.decode(torch_preds, cuts, oris)
        onnx_lanes = onnx_model.lanes(batch["img"].numpy(), cuts, oris)
        # The numpy decoder on the torch model's outputs: bit-identical points.
        np_lanes = decoder.decode_lanes(
            torch_preds.numpy(), cuts, oris, **decoder.decode_args(onnx_model.spec)
        )
        for t_image, o_image, n_image in zip(torch_lanes, onnx_lanes, np_lanes, strict=True):
            assert len(t_image) == len(o_image) == len(n_image)
            for t_lane, o_lane, (points, score) in zip(t_image, o_image, n_image, strict=True):
                assert np.array_equal(t_lane.points, points) and t_lane.score == score
                assert t_lane.points.shape == o_lane.points.shape
                np.testing.assert_allclose(o_lane.points, t_lane.points, rtol=0, atol=1e-5)
                lanes_compared += 1
        evaluators["torch"].update(torch_lanes, metas, [1.0] * len(metas))
        evaluators["onnx"].update(onnx_lanes, metas, [1.0] * len(metas))
    assert max_diff <= 1e-4, max_diff
    assert lanes_compared > 0
    metrics = {backend: evaluator.compute() for backend, evaluator in evaluators.items()}
    assert metrics["onnx"] == metrics["torch"]
    flat = {k: v for k, v in metrics["onnx"].items() if k != "details"}
    print(
        f"{exported.model}: max abs diff {max_diff:.3g}; {lanes_compared} lanes identical; "
        f"metric {flat}"
    )


@pytest.mark.slow
def test_a_reference_checkpoint_exports(tiny_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "reference.pth"
    torch.save({"net": {"module." + k: v for k, v in reference_state_dict().items()}}, path)
    # The reference model's input size and decoding (the synthetic recipe's differ).
    size = ["dataset.img_w=800", "dataset.img_h=320", "model.max_lanes=4", "model.nms_thres=50"]
    launch([*tiny_run(tiny_root), *size, "mode=export", f"load_from={path}"], tmp_path / "run")
    onnx_model = OnnxLaneModel(tmp_path / "run" / "export", input_size=(800, 320))
    model = SRLane()
    load_weights(model, path)
    model.eval()
    with torch.no_grad():
        expected = model(golden_inputs()).numpy()
    got = onnx_model.run(golden_inputs().numpy())
    # Absolute 1e-4 on the geometry; the logits of these random weights reach |10| and amplify
    # float32 rounding: the fidelity tests' tolerance (3e-4 measured).
    np.testing.assert_allclose(got[..., 2:], expected[..., 2:], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got[..., :2], expected[..., :2], rtol=1e-4, atol=1e-3)
    # The reference code's own lanes for these weights (tests/models/test_srlane_fidelity.py).
    golden = np.load(GOLDEN)
    lanes = onnx_model.lanes(golden_inputs().numpy(), [270, 160], [590, 720])
    assert [len(image) for image in lanes] == golden["lane_counts"].tolist()
    points = np.concatenate([lane.points for image in lanes for lane in image])
    np.testing.assert_allclose(points, golden["lane_points"], atol=1e-4)
    with pytest.raises(ExportError, match="320x128"):
        OnnxLaneModel(tmp_path / "run" / "export", input_size=(320, 128))


@pytest.mark.slow
def test_a_reference_clrnet_checkpoint_exports(tiny_root: Path, tmp_path: Path) -> None:
    """The ONNX export of a reference-format CLRNet file gives the reference code's predictions
    and lanes (tests/models/test_clrnet_fidelity.py has how they were made)."""
    from tests.models import clrnet_golden

    path = tmp_path / "culane_r18.pth"
    state = clrnet_golden.reference_state_dict()
    torch.save({"net": {"module." + k: v for k, v in state.items()}}, path)
    size = ["dataset.img_w=800", "dataset.img_h=320", "model.max_lanes=4", "model.nms_thres=50"]
    args = [*tiny_run(tiny_root), "model=clrnet", *size, "mode=export", f"load_from={path}"]
    launch(args, tmp_path / "run")
    onnx_model = OnnxLaneModel(tmp_path / "run" / "export", input_size=(800, 320))
    golden = np.load(clrnet_golden.GOLDEN)
    got = onnx_model.run(clrnet_golden.golden_inputs().numpy())
    assert got.shape == (2, 192, 78)
    every = clrnet_golden.XS_EVERY
    np.testing.assert_allclose(got[..., :6], golden["eval_head"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(got[:, ::every, 6:], golden["eval_xs"], rtol=0, atol=1e-3)
    lanes = [
        onnx_model.lanes(clrnet_golden.golden_inputs().numpy()[i : i + 1], [cut], [ori])[0]
        for cut, ori in clrnet_golden.CUTS.values()
        for i in range(len(got))
    ]
    assert [len(image) for image in lanes] == golden["lanes_counts"].tolist()
    points = np.concatenate([lane.points for image in lanes for lane in image])
    np.testing.assert_allclose(points, golden["lanes_points"], rtol=0, atol=1e-4)


@pytest.mark.slow
def test_clrnet_with_16_lanes_trains_and_exports(tiny_root: Path, tmp_path: Path) -> None:
    """max_lanes=16 end to end: targets and segmentation classes from the data pipeline, the
    assignment in training, the export's rows and decode.json, the NMS keeping up to 16."""
    run_dir = tmp_path / "run"
    args = [*tiny_run(tiny_root, total_iter=2), "model=clrnet", "dataset.max_lanes=16"]
    run_main([*args, f"hydra.run.dir={run_dir}"])
    launch([*args, "mode=export"], run_dir)
    spec = json.loads((run_dir / "export" / DECODE_JSON).read_text())
    assert spec["max_lanes"] == 16 and spec["row_width"] == 78
    onnx_model = OnnxLaneModel(run_dir / "export", input_size=(320, 128))
    img = np.random.default_rng(0).random((3, 3, 128, 320), dtype=np.float32)
    predictions = onnx_model.run(img)
    assert predictions.shape == (3, 192, 78)
    # Every prior confident, vertical lines 6.7 px apart (64 survive a 20 px NMS; x > 1 is
    # kept): the NMS stops at max_lanes.
    spread = predictions.copy()
    spread[..., 0], spread[..., 1] = -10.0, 10.0
    spread[..., 2], spread[..., 5] = 0.0, 1.0
    spread[..., 6:] = np.linspace(0.0, 4.0, 192, dtype=np.float32)[None, :, None]
    decoder = importlib.import_module(spec["decoder"])
    lanes = decoder.decode_lanes(spread, [80] * 3, [360] * 3, **decoder.decode_args(spec))
    assert [len(image) for image in lanes] == [16, 16, 16]


def write_clip(frames: list[Path], path: Path, fps: float) -> tuple[int, int]:
    first = cv2.imread(str(frames[0]))
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.imread(str(frame)))
    writer.release()
    return width, height


@pytest.mark.slow
def test_predict_on_videos_with_torch_and_onnx(
    tiny_root: Path, exported: Exported, tmp_path: Path
) -> None:
    frames = sorted((tiny_root / "clips" / "0531").rglob("*.jpg"))
    videos = tmp_path / "videos"
    (videos / "b").mkdir(parents=True)
    width, height = write_clip(frames, videos / "clip.mp4", fps=12.0)
    write_clip(frames[:3], videos / "b" / "clip.mp4", fps=12.0)
    expected = {"b/clip.mp4": 3, "clip.mp4": len(frames)}
    for backend in ("torch", "onnx"):
        run_dir = exported.run_dir if backend == "torch" else tmp_path / "onnx_run"
        args = ["mode=predict", f"predict.input={videos}", f"predict.backend={backend}"]
        onnx = f"predict.onnx={exported.run_dir / 'export'}"
        launch([*tiny_run(tiny_root), f"model={exported.model}", *args, onnx], run_dir)
        out = run_dir / "predictions"
        lines = (out / "predictions.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        for name, count in expected.items():
            rows = [r for r in records if r["video"] == name]
            assert [r["frame"] for r in rows] == list(range(count))
            assert all(len(r["lanes"]) == len(r["scores"]) for r in rows)
            video = cv2.VideoCapture(str(out / name.replace("/", "_")))
            assert video.isOpened()
            assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == count
            assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
            size = (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT))
            assert size == (width, height)
            read = 0
            while video.read()[0]:
                read += 1
            assert read == count
        assert len(records) == sum(expected.values())
    # Lanes are not compared across backends here: the mp4 frames are not the val images, and
    # this barely trained model's scores tie to 1e-4, so 1e-7 differences may swap a lane
    # (test_onnx_equals_torch_on_the_val_split compares them on the val split).
