"""TuSimple reader on real-format trees written to disk, its errors, and parser properties."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from src.data import DatasetError, build_dataset
from src.data.tusimple import (
    parse_tusimple_line,
    read_tusimple_label_file,
    read_tusimple_split,
    tusimple_lanes,
)
from tests.data.lane_trees import (
    SRLANE_TARGETS,
    TUSIMPLE_ROWS,
    lane_image,
    tusimple_config,
    write_jpeg,
    write_tusimple_tree,
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tusimple")
    return root, write_tusimple_tree(root, per_file=2)


def test_splits_read_back_what_was_written(tree):
    root, records = tree
    expected = {
        "train": records["label_data_0313.json"] + records["label_data_0601.json"],
        "val": records["label_data_0531.json"],
        "trainval": records["label_data_0313.json"]
        + records["label_data_0601.json"]
        + records["label_data_0531.json"],
        "test": records["test_label.json"],
    }
    for split, lines in expected.items():
        samples = read_tusimple_split(root, split)
        assert [s.img_name for s in samples] == [r["raw_file"] for r in lines]
        for sample, record in zip(samples, lines, strict=True):
            assert sample.img_path == str(root / record["raw_file"])
            assert list(sample.h_samples) == record["h_samples"]
            assert [list(x) for x in sample.gt_xs] == record["lanes"]
            for lane, xs in zip(sample.lanes, record["lanes"], strict=True):
                keep = np.array(xs) >= 0
                np.testing.assert_array_equal(lane[:, 0], np.array(xs)[keep])
                np.testing.assert_array_equal(lane[:, 1], np.array(TUSIMPLE_ROWS)[keep])


def test_dataset_items_and_meta(tree):
    root, records = tree
    dataset = build_dataset(tusimple_config(root), "val", False, targets_fn=SRLANE_TARGETS)
    assert len(dataset) == 2
    item = dataset[1]
    assert item["img"].shape == (3, 128, 320) and item["img"].dtype.is_floating_point
    assert 0.0 <= float(item["img"].min()) and float(item["img"].max()) <= 1.0
    assert item["gt_lane"].shape == (5, 76)
    assert [tuple(a.shape) for a in item["gt_angle"]] == [(16, 40), (8, 20), (4, 10)]
    meta = item["meta"]
    record = records["label_data_0531.json"][1]
    assert meta["img_name"] == record["raw_file"]
    assert meta["img_path"] == str(root / record["raw_file"])
    assert meta["ori_size"] == (720, 1280) and meta["cut_height"] == 160
    assert meta["category"] is None and meta["augment"] is None
    assert meta["index"] == 1 and meta["replaces"] == []
    assert meta["h_samples"] == record["h_samples"] and meta["gt_xs"] == record["lanes"]
    assert len(meta["lanes"]) == sum(any(x >= 0 for x in xs) for xs in record["lanes"])
    # Evaluation has no randomness: the same key gives the same tensor.
    assert np.array_equal(dataset[1]["img"].numpy(), item["img"].numpy())
    valid = item["gt_lane"][:, 1] == 1
    assert int(valid.sum()) >= 1


def test_missing_root_names_path_and_layout(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        build_dataset(tusimple_config(missing), "train", training=True)
    message = str(err.value)
    assert str(missing) in message and "does not exist" in message
    for name in (
        "label_data_0313.json",
        "label_data_0601.json",
        "label_data_0531.json",
        "test_label.json",
        "clips/",
    ):
        assert name in message


def test_missing_label_file_names_it(tmp_path):
    write_tusimple_tree(tmp_path, per_file=1)
    (tmp_path / "label_data_0601.json").unlink()
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "label_data_0601.json"))):
        build_dataset(tusimple_config(tmp_path), "train", training=True)
    # Splits that do not use the file still work.
    assert len(build_dataset(tusimple_config(tmp_path), "val", training=False)) == 1


def _rewrite_line(path, line_index, text):
    lines = path.read_text().splitlines()
    lines[line_index] = text
    path.write_text("\n".join(lines) + "\n")


def test_malformed_json_line_gives_file_and_line(tmp_path):
    write_tusimple_tree(tmp_path, per_file=3)
    label = tmp_path / "label_data_0531.json"
    _rewrite_line(label, 1, '{"lanes": [[1, 2]], "h_samples": [1, 2], "raw_file": ')
    with pytest.raises(DatasetError, match=re.escape(f"{label}:2: invalid JSON")):
        build_dataset(tusimple_config(tmp_path), "val", training=False)


def test_lane_length_mismatch_message(tmp_path):
    records = write_tusimple_tree(tmp_path, per_file=3)
    label = tmp_path / "label_data_0313.json"
    record = dict(records["label_data_0313.json"][2])
    record["lanes"] = [list(lane) for lane in record["lanes"]]
    record["lanes"][1] = record["lanes"][1][:-1]
    _rewrite_line(label, 2, json.dumps(record))
    expected = f"{label}:3: lane 1 has 55 values but h_samples has 56"
    with pytest.raises(DatasetError, match=re.escape(expected)):
        build_dataset(tusimple_config(tmp_path), "train", training=True)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"lanes": [], "h_samples": []}', "missing key(s) raw_file"),
        ("[1, 2, 3]", "expected a JSON object"),
        ('{"lanes": [["a"]], "h_samples": [1], "raw_file": "x.jpg"}', "lane 0 must be a list"),
        ('{"lanes": [], "h_samples": [1], "raw_file": ""}', "raw_file must be"),
        ('{"lanes": [], "h_samples": "abc", "raw_file": "x.jpg"}', "h_samples must be"),
    ],
)
def test_malformed_fields(text, fragment):
    with pytest.raises(DatasetError, match=re.escape(f"f.json:7: {fragment}")):
        parse_tusimple_line(text, "f.json:7")


def test_empty_split_is_an_error(tmp_path):
    write_tusimple_tree(tmp_path, per_file=1)
    (tmp_path / "label_data_0531.json").write_text("\n")
    with pytest.raises(DatasetError, match="empty"):
        build_dataset(tusimple_config(tmp_path), "val", training=False)


def test_unknown_split(tmp_path):
    write_tusimple_tree(tmp_path, per_file=1)
    with pytest.raises(DatasetError, match="unknown TuSimple split 'validation'"):
        build_dataset(tusimple_config(tmp_path), "validation", training=False)


def test_missing_image_error_or_skip(tmp_path):
    records = write_tusimple_tree(tmp_path, per_file=2)
    gone = tmp_path / records["label_data_0531.json"][0]["raw_file"]
    gone.unlink()
    with pytest.raises(DatasetError) as err:
        build_dataset(tusimple_config(tmp_path), "val", training=False)
    assert str(gone) in str(err.value) and "label_data_0531.json:1" in str(err.value)
    dataset = build_dataset(tusimple_config(tmp_path, skip_unreadable_images=True), "val", False)
    assert len(dataset) == 1 and dataset.skipped == [str(gone)]
    # All images missing: still an error, never an empty dataset.
    (tmp_path / records["label_data_0531.json"][1]["raw_file"]).unlink()
    with pytest.raises(DatasetError, match="none of its 2 images exist"):
        build_dataset(tusimple_config(tmp_path, skip_unreadable_images=True), "val", False)


def test_undecodable_image_error_or_skip(tmp_path):
    records = write_tusimple_tree(tmp_path, per_file=2)
    bad = tmp_path / records["label_data_0531.json"][0]["raw_file"]
    bad.write_bytes(b"not a jpeg")
    dataset = build_dataset(tusimple_config(tmp_path), "val", training=False)
    with pytest.raises(DatasetError, match=re.escape(f"cannot decode image {bad}")):
        dataset[0]
    skipping = build_dataset(tusimple_config(tmp_path, skip_unreadable_images=True), "val", False)
    item = skipping[0]  # the next readable sample stands in, and the skip is counted
    assert item["meta"]["img_name"] == records["label_data_0531.json"][1]["raw_file"]
    assert item["meta"]["index"] == 1 and item["meta"]["replaces"] == [str(bad)]
    assert skipping.skipped == [str(bad)]
    assert skipping[1]["meta"]["replaces"] == []


def test_image_size_must_match_config(tmp_path):
    write_tusimple_tree(tmp_path, per_file=1)
    dataset = build_dataset(tusimple_config(tmp_path, ori_w=1640), "val", training=False)
    with pytest.raises(DatasetError, match="is 1280x720 but the dataset config says"):
        dataset[0]


def test_zero_byte_image_is_named_or_skipped(tmp_path):
    records = write_tusimple_tree(tmp_path, per_file=2)
    empty = tmp_path / records["label_data_0531.json"][0]["raw_file"]
    empty.write_bytes(b"")
    dataset = build_dataset(tusimple_config(tmp_path), "val", training=False)
    with pytest.raises(DatasetError) as err:
        dataset[0]
    assert f"cannot decode image {empty}: the file is empty (0 bytes)" in str(err.value)
    assert "label_data_0531.json:1" in str(err.value)
    skipping = build_dataset(tusimple_config(tmp_path, skip_unreadable_images=True), "val", True)
    item = skipping[(0, 0)]
    assert item["meta"]["replaces"] == [str(empty)] and skipping.skipped == [str(empty)]


def test_empty_label_file_is_an_error_at_build(tmp_path):
    write_tusimple_tree(tmp_path, per_file=2)
    label = tmp_path / "label_data_0601.json"
    label.write_text("")
    with pytest.raises(DatasetError, match=re.escape(f"{label}: label file is empty")):
        build_dataset(tusimple_config(tmp_path), "train", training=True)
    assert len(build_dataset(tusimple_config(tmp_path), "val", training=False)) == 2


def test_non_utf8_label_line_is_a_dataset_error_with_file_and_line(tmp_path):
    write_tusimple_tree(tmp_path, per_file=3)
    label = tmp_path / "label_data_0531.json"
    lines = label.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"lanes"', b'"la\xe9es"', 1)
    label.write_bytes(b"\n".join(lines))
    expected = f"{label}:2: expected UTF-8 text, got byte 0xe9 at column 5"
    with pytest.raises(DatasetError, match=re.escape(expected)):
        build_dataset(tusimple_config(tmp_path), "val", training=False)


def test_wrong_size_image_error_names_image_listing_and_expected_size(tmp_path):
    records = write_tusimple_tree(tmp_path, per_file=2)
    small = tmp_path / records["label_data_0531.json"][1]["raw_file"]
    write_jpeg(small, lane_image(640, 360, []))
    dataset = build_dataset(tusimple_config(tmp_path, skip_unreadable_images=True), "val", False)
    assert dataset[0]["meta"]["ori_size"] == (720, 1280)
    with pytest.raises(DatasetError) as err:
        dataset[1]  # a wrong size is never skipped: the config or the data is wrong
    message = str(err.value)
    assert f"image {small} (listed at " in message and "label_data_0531.json:2" in message
    assert "is 640x360 but the dataset config says ori_w x ori_h = 1280x720" in message


LABEL_BYTES = (
    json.dumps(
        {
            "lanes": [[-2, 630, 620], [700, 710, -2]],
            "h_samples": [240, 250, 260],
            "raw_file": "clips/0531/1/20.jpg",
        }
    )
    + "\n"
    + json.dumps({"lanes": [], "h_samples": [240], "raw_file": "clips/0531/2/20.jpg"})
    + "\n"
).encode()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_label_file_bytes_raise_only_dataset_error(tmp_path_factory, mutations):
    data = bytearray(LABEL_BYTES)
    for position, value in mutations:
        data[position % len(data)] = value
    root = tmp_path_factory.getbasetemp()
    mutated = root / "label_data_mutated.json"
    mutated.write_bytes(bytes(data))
    try:
        read_tusimple_label_file(root, mutated)
    except DatasetError as err:
        assert str(err).startswith(f"{mutated}")


# --- properties of the label parser ---------------------------------------------------------

xs_values = st.one_of(st.integers(-2, -1), st.integers(0, 1279))


@st.composite
def label_lines(draw):
    rows = sorted(draw(st.lists(st.integers(0, 719), min_size=1, max_size=60, unique=True)))
    lanes = draw(st.lists(st.lists(xs_values, min_size=len(rows), max_size=len(rows)), max_size=6))
    raw = draw(st.from_regex(r"/?clips/[a-z0-9_]{1,8}/[0-9]{1,4}/20\.jpg", fullmatch=True))
    return {"lanes": lanes, "h_samples": rows, "raw_file": raw}


@settings(max_examples=100, deadline=None)
@given(label_lines())
def test_parse_round_trip(record):
    raw, rows, lanes = parse_tusimple_line(json.dumps(record), "f:1")
    assert (raw, rows, lanes) == (record["raw_file"], record["h_samples"], record["lanes"])
    points = tusimple_lanes(rows, lanes)
    non_empty = [xs for xs in lanes if any(x >= 0 for x in xs)]
    assert len(points) == len(non_empty)
    for lane, xs in zip(points, non_empty, strict=True):
        kept = [(x, y) for x, y in zip(xs, rows, strict=True) if x >= 0]
        assert lane.tolist() == [[float(x), float(y)] for x, y in kept]


@settings(max_examples=100, deadline=None)
@given(label_lines(), st.integers(0, 5), st.integers(-3, 3).filter(lambda d: d != 0))
def test_any_wrong_lane_length_is_reported(record, lane, delta):
    if not record["lanes"]:
        return
    lane %= len(record["lanes"])
    bad = record["lanes"][lane]
    record["lanes"][lane] = bad[:delta] if delta < 0 else bad + [-2] * delta
    if len(record["lanes"][lane]) == len(record["h_samples"]):
        return
    with pytest.raises(DatasetError, match=rf"f:9: lane {lane} has \d+ values but h_samples"):
        parse_tusimple_line(json.dumps(record), "f:9")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_dataset_error(text):
    try:
        parse_tusimple_line(text, "f:3")
    except DatasetError as err:
        assert str(err).startswith("f:3: ")
