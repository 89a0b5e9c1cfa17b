"""Reading and scoring prediction files as the official tools do."""

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from src.metrics import (
    culane_tool_output,
    read_culane_lanes,
    read_culane_list,
    score_culane_files,
    score_tusimple_files,
)
from src.metrics.files import FileFormatError

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


HS = [160, 170, 180]
GT_LINE = {"raw_file": "a", "lanes": [[100, 110, 120]], "h_samples": HS}


@pytest.mark.parametrize(
    ("pred", "message"),
    [
        (
            {"raw_file": "a", "lanes": {"0": [1, 2, 3]}, "run_time": 1},
            "pred.json:1: lanes must be a list of lanes (lists of x per h_sample), got dict",
        ),
        (
            {"raw_file": "a", "lanes": [[1, 2, 3], [1, 2]], "run_time": 1},
            "pred.json:1: lane 1 has 2 values, expected one x per h_sample (3 values, "
            "h_samples of ",
        ),
        (
            {"raw_file": "a", "lanes": [[1, "x", 3]], "run_time": 1},
            "pred.json:1: lane 0 must be a list of numbers",
        ),
        (
            {"raw_file": "a", "lanes": [], "run_time": None},
            "pred.json:1: run_time must be a number (ms), got None",
        ),
        ({"raw_file": ["a"], "lanes": [], "run_time": 1}, "pred.json:1: raw_file must be"),
        ([1, 2], "pred.json:1: expected a JSON object per line, got list"),
    ],
)
def test_tusimple_prediction_errors_name_file_line_and_what_was_expected(tmp_path, pred, message):
    pred_path, gt_path = _tusimple_files(tmp_path, [pred], [GT_LINE])
    with pytest.raises(FileFormatError) as err:
        score_tusimple_files(pred_path, gt_path)
    assert message in str(err.value) and str(pred_path) in str(err.value)
    if "h_samples of" in message:
        assert f"{gt_path}:1" in str(err.value)


@pytest.mark.parametrize(
    ("gt", "message"),
    [
        ({"raw_file": "a", "lanes": [[1, 2]], "h_samples": HS}, "gt.json:1: lane 0 has 2 values"),
        ({"raw_file": "a", "lanes": {}, "h_samples": HS}, "gt.json:1: lanes must be a list"),
        ({"raw_file": "a", "lanes": []}, "gt.json:1: missing h_samples"),
        ({"raw_file": "a", "lanes": [], "h_samples": "abc"}, "gt.json:1: h_samples must be"),
    ],
)
def test_tusimple_gt_errors_name_file_line_and_what_was_expected(tmp_path, gt, message):
    pred = {"raw_file": "a", "lanes": [], "run_time": 1}
    with pytest.raises(FileFormatError, match=re.escape(message)):
        score_tusimple_files(*_tusimple_files(tmp_path, [pred], [gt]))


def test_binary_prediction_files_name_their_path(tmp_path):
    pred_path, gt_path = _tusimple_files(tmp_path, [], [GT_LINE])
    pred_path.write_bytes(b'{"raw_file": "a"}\n\x89PNG\r\n\x1a\n\x00\xff')
    with pytest.raises(FileFormatError, match=re.escape(f"{pred_path}:2: expected UTF-8 text")):
        score_tusimple_files(pred_path, gt_path)
    lines = tmp_path / "a.lines.txt"
    lines.write_bytes(b"1 2 3 4\n\xff\xd8\xff\xe0")
    for evaluator in ("python", "cpp"):
        with pytest.raises(FileFormatError, match=re.escape(f"{lines}:2: expected UTF-8 text")):
            read_culane_lanes(lines, evaluator)
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"/a.jpg\n/b\xff.jpg\n")
    with pytest.raises(FileFormatError, match=re.escape(f"{listing}:2: expected UTF-8 text")):
        read_culane_list(listing)


def test_culane_non_numbers_name_file_and_line(tmp_path):
    path = tmp_path / "a.lines.txt"
    path.write_text("1 2 3 4\n1 2 x 4\n")
    with pytest.raises(FileFormatError, match=re.escape(f"{path}:2: expected finite numbers")):
        read_culane_lanes(path)
    path.write_text("1 2\n1 2 nan 4\n")
    with pytest.raises(FileFormatError, match=re.escape(f"{path}:2: expected finite numbers")):
        read_culane_lanes(path)
    # The C++ tool's stream parser reads no nan/inf: the lane stops there.
    assert [lane.tolist() for lane in read_culane_lanes(path, "cpp")] == [[[1, 2]], [[1, 2]]]
    path.write_text("1 2 3\n")
    with pytest.raises(FileFormatError, match=re.escape(f"{path}:1: a lane line has an odd")):
        read_culane_lanes(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "raw_file": st.sampled_from(["a", ""]) | json_values,
            "lanes": st.lists(st.lists(st.integers(-2, 300), min_size=3, max_size=3)) | json_values,
            "run_time": st.just(1.0) | json_values,
        },
    )
)
def test_any_prediction_record_scores_or_raises_file_format_error(tmp_path_factory, pred):
    root = tmp_path_factory.getbasetemp()
    pred_path, gt_path = root / "pred.json", root / "gt.json"
    pred_path.write_text(json.dumps(pred) + "\n")
    gt_path.write_text(json.dumps(GT_LINE) + "\n")
    try:
        result = score_tusimple_files(pred_path, gt_path)
    except FileFormatError as err:
        assert str(err).startswith(str(pred_path))
    else:
        assert set(result) == {"Accuracy", "FP", "FN", "F1"}
