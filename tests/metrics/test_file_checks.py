"""scripts/evaluate.py on data no official tool can score (refused, naming file:line) and on
legal data that silently changes the score (a warning with counts; --strict refuses): the CLI's
main() in this process, so each case takes milliseconds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from src.metrics.file_checks import Findings
from src.metrics.files import FileFormatError, read_culane_lanes, score_culane_files

ROOT = Path(__file__).resolve().parents[2]
H_SAMPLES = list(range(160, 720, 10))
LANE_XS = [300 + 2 * i for i in range(len(H_SAMPLES))]
CULANE_LANE = "100 580 300 400 500 250"


def _cli():
    spec = importlib.util.spec_from_file_location("evaluate_cli", ROOT / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = _cli()([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------------- TuSimple
def _tusimple(tmp_path: Path, pred_lanes: list[list], run_times: list[float] | None = None):
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    names = [f"clips/{i}/20.jpg" for i in range(len(pred_lanes))]
    gt.write_text(
        "".join(
            json.dumps({"raw_file": n, "lanes": [LANE_XS], "h_samples": H_SAMPLES}) + "\n"
            for n in names
        )
    )
    times = run_times or [5.0] * len(names)
    pred.write_text(
        "".join(
            json.dumps({"raw_file": n, "lanes": lanes, "run_time": t}) + "\n"
            for n, lanes, t in zip(names, pred_lanes, times, strict=True)
        )
    )
    return ["tusimple", "--pred", pred, "--gt", gt]


def test_forty_tusimple_lanes_on_one_image_are_counted_and_refused_when_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = _tusimple(tmp_path, [[LANE_XS] * 40, [LANE_XS]])
    code, out, err = run(capsys, *args)
    # the official value: the first image scores Accuracy 0, FN 1
    assert code == 0 and json.loads(out) == {"Accuracy": 0.5, "FP": 0.0, "FN": 0.5, "F1": 0.8}
    assert "warning: 1 image(s) with more predicted lanes than GT lanes + 2" in err
    assert "pred.json:1 (40 predicted, 1 GT)" in err and "Accuracy 0, FP 0, FN 1" in err
    code, out, err = run(capsys, *args, "--strict")
    assert code == 2 and out == "" and err.startswith("error: refused (--strict): 1 image(s)")


def test_a_run_time_over_200_ms_is_counted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, *_tusimple(tmp_path, [[LANE_XS]] * 3, [5.0, 250.0, 300.0]))
    assert code == 0 and "2 image(s) with run_time over 200 ms, e.g. " in err


def test_a_tusimple_file_without_any_lane_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = _tusimple(tmp_path, [[], []])
    code, out, err = run(capsys, *args)
    assert code == 0 and json.loads(out)["F1"] == pytest.approx(2 / 3)  # official, kept
    assert "1 prediction file(s) without a single lane" in err and "not a working model" in err
    assert run(capsys, *args, "--strict")[0] == 2


def test_an_empty_tusimple_gt_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "gt.json").write_text("\n")
    (tmp_path / "pred.json").write_text("")
    code, _, err = run(
        capsys, "tusimple", "--pred", tmp_path / "pred.json", "--gt", tmp_path / "gt.json"
    )
    assert code == 2 and "gt.json: no GT image" in err  # before: F1 0 for zero images


# ---------------------------------------------------------------------------------- CULane
def _culane(tmp_path: Path, pred_text: str | None, listed: list[str]) -> list:
    for folder, text in (("gt", CULANE_LANE + "\n"), ("pred", pred_text)):
        label = tmp_path / folder / "d" / "v.MP4" / "00000.lines.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        if text is not None:
            label.write_text(text)
    (tmp_path / "list.txt").write_text("".join(f"{name}\n" for name in listed))
    return [
        "culane",
        "--pred",
        tmp_path / "pred",
        "--gt",
        tmp_path / "gt",
        "--list",
        tmp_path / "list.txt",
    ]


IMAGE = "/d/v.MP4/00000.jpg"


@pytest.mark.parametrize("evaluator", ["python", "cpp"])
def test_culane_coordinates_of_1e308_are_refused_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, evaluator: str
) -> None:
    args = _culane(tmp_path, CULANE_LANE + "\n1e308 500 200 400 300 300\n", [IMAGE])
    # before: scored (F1 0) with numpy overflow warnings
    code, out, err = run(capsys, *args, "--evaluator", evaluator)
    assert code == 2 and out == ""
    assert f"error: {tmp_path}/pred/d/v.MP4/00000.lines.txt:2: point (1e+308, 500)" in err
    assert "far outside the 1640x590 image" in err


def test_points_just_past_the_border_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "x.lines.txt"
    path.write_text("-30.5 600 1700 -20\n")  # CULane GT has such points
    assert len(read_culane_lanes(path, img_size=(590, 1640))) == 1
    path.write_text("-1700 300 5 5\n")
    with pytest.raises(FileFormatError, match=r"x.lines.txt:1: point \(-1700, 300\)"):
        read_culane_lanes(path, img_size=(590, 1640))


def test_a_culane_prediction_path_that_is_a_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = _culane(tmp_path, None, [IMAGE])
    (tmp_path / "pred" / "d" / "v.MP4" / "00000.lines.txt").mkdir()
    # before: counted as a missing file (scored as no lanes)
    code, _, err = run(capsys, *args)
    assert code == 2 and "00000.lines.txt of /d/v.MP4/00000.jpg (listed at" in err
    assert "list.txt:1) is not a file (a directory?)" in err


def test_a_list_with_the_same_image_twice_is_counted_and_refused_when_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = _culane(tmp_path, CULANE_LANE + "\n", [IMAGE, "/d/other.jpg", IMAGE])
    (tmp_path / "gt" / "d" / "other.lines.txt").write_text(CULANE_LANE + "\n")
    (tmp_path / "pred" / "d" / "other.lines.txt").write_text(CULANE_LANE + "\n")
    code, out, err = run(capsys, *args)
    assert code == 0 and json.loads(out)["0.5"]["TP"] == 3  # scored as the official tools do
    assert f"1 image(s) listed more than once, e.g. {IMAGE} at {tmp_path}/list.txt:3" in err
    assert "(first at " in err and "list.txt:1)" in err
    code, out, err = run(capsys, *args, "--strict")
    assert code == 2 and out == "" and "refused (--strict)" in err


def test_missing_prediction_files_are_refused_when_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = _culane(tmp_path, None, [IMAGE])
    code, _, err = run(capsys, *args)
    assert code == 0 and f"1 of 1 prediction files missing, e.g. {IMAGE}" in err
    assert run(capsys, *args, "--strict")[0] == 2


@pytest.mark.parametrize("which", ["pred", "gt"])
def test_a_missing_tree_root_is_refused(tmp_path: Path, which: str) -> None:
    _culane(tmp_path, CULANE_LANE, [IMAGE])
    roots = {"pred": tmp_path / "pred", "gt": tmp_path / "gt", which: tmp_path / "typo"}
    # before (pred): every image scored as having no prediction, with a warning only
    with pytest.raises(FileFormatError, match="typo does not exist"):
        score_culane_files(roots["pred"], roots["gt"], tmp_path / "list.txt")


def test_an_empty_list_is_refused(tmp_path: Path) -> None:
    _culane(tmp_path, CULANE_LANE, [])
    # before: F1 0 over zero images
    with pytest.raises(FileFormatError, match="list.txt: lists no image"):
        score_culane_files(tmp_path / "pred", tmp_path / "gt", tmp_path / "list.txt")


def test_findings_without_strict_only_count() -> None:
    findings = Findings()
    findings.add("thing(s)", "a:1", "effect")
    findings.add("thing(s)", "a:2", "effect")
    findings.refuse_if_strict(ValueError)  # not strict: no error
    assert findings.messages() == ["2 thing(s), e.g. a:1 (effect)"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--iou", "0.5", "0.5"], "IoU threshold(s) 0.5 given more than once"),
        (["--iou", "1.5"], "IoU threshold 1.5 must lie in [0, 1)"),
        (["--iou", "nan"], "IoU threshold nan must lie in [0, 1)"),
        (["--width", "-5"], "the lane width must be >= 1 pixel, got -5"),
    ],
    ids=["repeated_iou", "iou_over_1", "iou_nan", "negative_width"],
)
def test_culane_arguments_no_evaluator_can_use_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    # before: a repeated threshold collapsed into one entry, 1.5 and nan scored TP 0, -5 ended
    # in a cv2.error traceback
    with pytest.raises(SystemExit) as info:
        run(capsys, *_culane(tmp_path, CULANE_LANE + "\n", [IMAGE]), *args)
    assert info.value.code == 2 and message in capsys.readouterr().err
