"""Reading and scoring prediction files as the official tools do."""

import json

import numpy as np
import pytest

from src.metrics import (
    culane_tool_output,
    read_culane_lanes,
    read_culane_list,
    score_culane_files,
    score_tusimple_files,
)

LANE = "100.5 700 100.5 600 100.5 500 100.5 400 100.5 300 100.5 200 100.5 100 100.5 0 100.5 -100"


def test_read_lanes_python_recipe(tmp_path):
    path = tmp_path / "a.lines.txt"
    path.write_text("1 2 3 4\n\n5 6\n")
    lanes = read_culane_lanes(path)
    assert [len(lane) for lane in lanes] == [2, 0, 1]
    np.testing.assert_array_equal(lanes[0], [[1, 2], [3, 4]])
    path.write_text("1 2 3\n")
    with pytest.raises(ValueError, match="odd number"):
        read_culane_lanes(path)


def test_read_lanes_cpp_recipe_is_the_tools_stream_parser(tmp_path):
    path = tmp_path / "a.lines.txt"
    # Pairs until the first token that is not a number; an unpaired value is ignored; every
    # line, blank ones included, is a lane; a final newline does not start a lane.
    path.write_text("1 2 3 4 x 7\n\n5 6 7\n")
    lanes = read_culane_lanes(path, "cpp")
    assert [lane.tolist() for lane in lanes] == [[[1, 2], [3, 4]], [], [[5, 6]]]
    path.write_text("")
    assert read_culane_lanes(path, "cpp") == []


def test_list_file_first_field_and_blank_lines(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("/a/1.jpg /laneseg/a/1.png 1 1 0 0\n\n/a/2.jpg\n")
    assert read_culane_list(path) == ["/a/1.jpg", "/a/2.jpg"]


def _tree(tmp_path, gt: dict[str, str], pred: dict[str, str]) -> None:
    for root, files in (("gt", gt), ("pred", pred)):
        for name, text in files.items():
            path = tmp_path / root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    (tmp_path / "list.txt").write_text("".join(f"/{n[: -len('.lines.txt')]}.jpg\n" for n in gt))


def test_score_files_missing_prediction_and_blank_lines(tmp_path):
    _tree(
        tmp_path,
        gt={"d/1.lines.txt": LANE + "\n", "d/2.lines.txt": LANE + "\n\n"},
        pred={"d/2.lines.txt": LANE},
    )
    args = (tmp_path / "pred", tmp_path / "gt", tmp_path / "list.txt")
    score = score_culane_files(*args)
    assert score.missing == ["/d/1.jpg"] and score.n_images == 2
    # Python recipe: image 1 has no predictions (FN 1); the blank line of image 2 is no lane.
    assert score.result["0.5"]["TP"] == 1 and score.result["0.5"]["FN"] == 1
    # C++ recipe: the blank line is a GT lane that cannot be matched.
    cpp = score_culane_files(*args, evaluator="cpp")
    assert cpp.result["0.5"]["TP"] == 1 and cpp.result["0.5"]["FN"] == 2


def test_tool_output_mean_entry():
    result = {
        "0.5": {"TP": 2, "FP": 1, "FN": 0, "Precision": 2 / 3, "Recall": 1.0, "F1": 0.8},
        "0.9": {"TP": 1, "FP": 2, "FN": 1, "Precision": 1 / 3, "Recall": 0.5, "F1": 0.4},
        "mF1": 0.6,
    }
    out = culane_tool_output(result)
    assert list(out) == ["0.5", "0.9", "mean"]
    assert out["mean"]["TP"] == 3 and out["mean"]["FN"] == 1
    assert out["mean"]["F1"] == pytest.approx(0.6)
    assert "mean" not in culane_tool_output({"0.5": result["0.5"]})


def _tusimple_files(tmp_path, preds: list[dict], gts: list[dict]):
    pred_path, gt_path = tmp_path / "pred.json", tmp_path / "gt.json"
    pred_path.write_text("\n".join(json.dumps(p) for p in preds))
    gt_path.write_text("\n".join(json.dumps(g) for g in gts) + "\n")
    return pred_path, gt_path


def test_tusimple_files_scored_in_prediction_order(tmp_path):
    hs = [160, 170, 180, 190]
    gts = [
        {"raw_file": "a", "lanes": [[100] * 4], "h_samples": hs},
        {"raw_file": "b", "lanes": [[300] * 4, [600] * 4], "h_samples": hs},
    ]
    preds = [
        {"raw_file": "b", "lanes": [[300] * 4], "run_time": 3.0},
        {"raw_file": "a", "lanes": [[100] * 4], "run_time": 3.0},
    ]
    result = score_tusimple_files(*_tusimple_files(tmp_path, preds, gts))
    # a: (1, 0, 0); b: (0.5, 0, 0.5)
    assert result["Accuracy"] == 0.75 and result["FP"] == 0.0 and result["FN"] == 0.25


@pytest.mark.parametrize(
    ("preds", "message"),
    [
        ([], "need one per image"),
        ([{"raw_file": "a", "lanes": []}], "raw_file, lanes and run_time"),
        ([{"raw_file": "z", "lanes": [], "run_time": 1}], "not in the GT file"),
        ([{"raw_file": "a", "lanes": [[1, 2]], "run_time": 1}], "one x per h_sample"),
    ],
)
def test_tusimple_files_errors(tmp_path, preds, message):
    gts = [{"raw_file": "a", "lanes": [], "h_samples": [160, 170, 180]}]
    with pytest.raises(ValueError, match=message):
        score_tusimple_files(*_tusimple_files(tmp_path, preds, gts))
