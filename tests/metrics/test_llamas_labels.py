"""LLAMAS ground truth from marker labels: every rule and quirk of the official spline_creator
on hand-made labels, and the errors for what the official code crashes on.

Equality with the official code on 100 generated labels is in test_golden_benchmarks.py.
"""

import json

import numpy as np
import pytest

from src.metrics import FileFormatError, llamas_lanes, read_llamas_label
from src.metrics.json_labels import value_line


def marker(start, end, z=10.0):
    return {
        "pixel_start": {"x": start[0], "y": start[1]},
        "pixel_end": {"x": end[0], "y": end[1]},
        "world_start": {"x": 0.0, "y": 1.5, "z": z},
        "world_end": {"x": 0.0, "y": 1.5, "z": z + 2.0},
    }


def label(*lanes):
    return {
        "projection_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        "lanes": [{"lane_id": lane_id, "markers": markers} for lane_id, markers in lanes],
    }


def lanes_of(doc):
    return llamas_lanes(doc, json.dumps(doc, indent=2), "label.json")


# A far marker that keeps a lane alive (2 markers, start rows 40 px apart) without being the
# closest one.
FAR = marker((130, 660), (140, 650), z=20.0)


def test_rows_of_markers_extension_and_gap_fill():
    rows = lanes_of(label(("l0", [marker((100, 700), (110, 690)), FAR]))).rows["l0"]
    # Extension: x falls 1 px per row going down, so it reaches row 716 at x = 84.
    assert rows[700:717].tolist() == [100.0 - i for i in range(17)]
    assert rows[690:701].tolist() == [110.0 - i for i in range(11)]
    assert rows[650:661].tolist() == [140.0 - i for i in range(11)]
    # Rows 661..689 are filled between the markers (the official recurrence, ~linear).
    assert rows[661:690] == pytest.approx(130 - (np.arange(661, 690) - 660) * 20 / 30)
    assert (rows[:650] == -1).all()


def test_extension_rounds_half_to_even():
    # The closest marker meets row 716 at x = 101.5 (-> 102) and 100.5 (-> 100).
    for start, end, expected in (((101, 715), (100, 713), 102), ((100, 715), (99, 713), 100)):
        rows = lanes_of(label(("l0", [marker(start, end), FAR]))).rows["l0"]
        assert rows[716] == expected


def test_extension_to_the_left_and_right_image_sides():
    far = marker((40, 560), (50, 540), z=20.0)
    left = lanes_of(label(("l0", [marker((10, 600), (20, 580)), far]))).rows["l0"]
    assert left[620] == 0 and (left[621:] == -1).all()  # x = 0 is reached at row 620
    far = marker((1236, 560), (1226, 540), z=20.0)
    right = lanes_of(label(("r0", [marker((1266, 600), (1256, 580)), far]))).rows["r0"]
    assert right[620] == 1276 and (right[621:] == -1).all()


def test_closest_marker_is_the_nearest_sloped_one():
    flat = marker((50, 700), (60, 700), z=1.0)  # horizontal: not extended although closer
    rows = lanes_of(label(("l0", [flat, marker((100, 650), (110, 640), z=5.0), FAR]))).rows["l0"]
    assert rows[716] == 34  # 100 - 66: the sloped marker's line at row 716
    behind = marker((100, 650), (110, 640), z=-1.0)  # negative z: nothing is extended
    rows = lanes_of(label(("l0", [behind, marker((130, 600), (140, 590), z=20.0)]))).rows["l0"]
    assert rows[650] == 100 and (rows[651:] == -1).all()


def test_lane_without_sloped_markers_is_not_extended():
    # The official code fails (min() of nothing); here the markers alone give the rows.
    vertical = [marker((300, 700), (300, 680)), marker((300, 660), (300, 640))]
    rows = lanes_of(label(("l0", vertical))).rows["l0"]
    assert (rows[640:701] == 300).all() and (rows[701:] == -1).all()


def test_rows_with_several_values_are_averaged():
    doc = label(("l0", [marker((100, 610), (100, 600), z=-1.0), marker((120, 610), (120, 600))]))
    doc["lanes"][0]["markers"].append(FAR)
    rows = lanes_of(doc).rows["l0"]
    assert (rows[600:611] == 110).all()


def test_negative_rows_index_from_the_bottom_as_the_official_list_does():
    doc = label(("l0", [marker((200, 10), (205, -5), z=-1.0), marker((150, 300), (160, 290))]))
    rows = lanes_of(doc).rows["l0"]
    assert rows[716] == 204  # row -1: round(200 + 11 / 3)
    assert rows[712] == 205  # row -5


def test_lanes_are_dropped_and_renamed_per_side():
    keep = [marker((100, 700), (110, 690)), FAR]
    doc = label(
        ("l0", keep[:1]),  # one marker: dropped
        ("l1", keep),
        ("l2", [marker((400, 700), (410, 690)), marker((430, 660), (440, 650), z=20.0)]),
        ("r0", [marker((900, 700), (890, 690)), marker((880, 690), (870, 680), z=20.0)]),  # 10 px
        ("r1", [marker((1000, 700), (990, 690)), marker((970, 660), (960, 650), z=20.0)]),
    )
    result = lanes_of(doc)
    assert set(result.rows) == {"l1", "l0", "r0"}
    assert result.rows["l1"][700] == 400 and result.rows["l0"][700] == 100
    assert result.rows["r0"][700] == 1000
    assert [lane[-1, 0] for lane in result.lanes] == [
        result.rows[name][716] for name in ("l1", "l0", "r0")
    ]


def test_two_lanes_with_one_id_both_take_the_next_name_and_the_later_wins():
    first = [marker((100, 700), (110, 690)), FAR]
    second = [marker((500, 700), (510, 690)), marker((530, 660), (540, 650), z=20.0)]
    result = lanes_of(label(("l0", first), ("l0", second)))
    assert set(result.rows) == {"l1"} and result.rows["l1"][700] == 500


def test_ground_truth_keeps_rows_300_to_716_and_training_every_row():
    doc = label(("l0", [marker((600, 400), (610, 250)), marker((650, 280), (660, 260), z=20.0)]))
    result = lanes_of(doc)
    (gt,) = result.lanes
    assert gt[0, 1] == 300 and gt[-1, 1] == 716 and np.all(np.diff(gt[:, 1]) == 1)
    (train,) = result.train_lanes
    assert train[0, 1] == 250 and train[-1, 1] == 716


def test_lane_far_above_row_300_becomes_full_height():
    # Markers only above row 300: the extension carries the lane to the image bottom.
    doc = label(("r0", [marker((700, 290), (705, 280)), marker((712, 268), (716, 260), z=20.0)]))
    (gt,) = lanes_of(doc).lanes
    assert gt[0, 1] == 300 and gt[-1, 1] == 716


def test_extension_leaving_the_side_above_row_300_is_left_out_not_asserted():
    # The official evaluator asserts; here the lane is left out of the GT and reported.
    doc = label(("l0", [marker((10, 250), (20, 230)), marker((30, 220), (40, 200), z=20.0)]))
    result = lanes_of(doc)
    assert result.lanes == () and result.dropped_above == ("l0",)
    assert len(result.train_lanes) == 1


def test_training_lanes_are_sorted_by_the_x_of_their_top_point():
    doc = label(
        ("l0", [marker((600, 700), (590, 690)), marker((580, 500), (570, 490), z=20.0)]),
        ("r0", [marker((700, 700), (710, 690)), marker((300, 450), (310, 440), z=20.0)]),
    )
    result = lanes_of(doc)
    assert [lane[0, 0] for lane in result.train_lanes] == [310.0, 570.0]
    assert [lane[-1, 0] for lane in result.lanes] == [616.0, 684.0]  # l0, r0 order


def test_pixel_values_are_truncated_with_int():
    doc = label(("l0", [marker((100.9, 700.7), (110.2, 690.9)), FAR]))
    assert (
        lanes_of(doc).rows["l0"].tolist()
        == lanes_of(label(("l0", [marker((100, 700), (110, 690)), FAR]))).rows["l0"].tolist()
    )


def error_text(doc, tmp_path, text=None):
    path = tmp_path / "label.json"
    path.write_text(text if text is not None else json.dumps(doc, indent=2))
    with pytest.raises(FileFormatError) as err:
        read_llamas_label(path)
    return str(err.value), path.read_text()


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    return text.count("\n", 0, index) + 1


def test_row_beyond_the_image_names_file_line_and_marker(tmp_path):
    doc = label(("l0", [marker((100, 700), (110, 690)), marker((130, 800), (140, 650), z=20.0)]))
    message, text = error_text(doc, tmp_path)
    line = line_of(text, '"pixel_start"', 2) - 1  # the marker object's opening brace
    assert message.startswith(f"{tmp_path / 'label.json'}:{line}: lanes[0].markers[1]:")
    assert "rows 650..800" in message and "0..716" in message


@pytest.mark.parametrize(
    ("edit", "where", "expected"),
    [
        (
            lambda d: d["lanes"][0]["markers"][1]["pixel_start"].update(y="abc"),
            '"abc"',
            "expected a number",
        ),
        (lambda d: d["lanes"][0].update(lane_id="x0"), '"x0"', "expected 'l<k>' or 'r<k>'"),
        (
            lambda d: d["lanes"][0]["markers"][0].pop("world_end"),
            '"pixel_start"',
            "missing 'world_end'",
        ),
        (lambda d: d.pop("lanes"), "{", "missing 'lanes'"),
    ],
)
def test_bad_fields_name_file_line_and_path(tmp_path, edit, where, expected):
    doc = label(("l0", [marker((100, 700), (110, 690)), FAR]))
    edit(doc)
    message, text = error_text(doc, tmp_path)
    line = line_of(text, where) - (1 if where == '"pixel_start"' else 0)
    assert message.startswith(f"{tmp_path / 'label.json'}:{line}: ") and expected in message


def test_invalid_json_and_bytes_name_the_line(tmp_path):
    message, _ = error_text(None, tmp_path, text='{\n  "lanes": [\n    oops\n]}')
    assert message.startswith(f"{tmp_path / 'label.json'}:3: not valid JSON")
    path = tmp_path / "bin.json"
    path.write_bytes(b'{\n"lanes": "\xff"}')
    with pytest.raises(FileFormatError, match=r"bin.json:2: expected UTF-8"):
        read_llamas_label(path)


def test_value_line_follows_the_path_and_keeps_the_last_duplicate_key():
    text = '{"a": 1,\n "b": [10,\n  {"c": 2}],\n "a": {"d":\n 3}}'
    assert value_line(text, ("b", 1, "c")) == 3
    assert value_line(text, ("a", "d")) == 5
    assert value_line(text, ("missing",)) == 1
