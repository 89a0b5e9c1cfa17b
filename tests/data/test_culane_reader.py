"""CULane reader on real-format trees, categories, errors, duplicate filter, parser properties."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from src.data import DatasetError, build_dataset
from src.data import near_duplicates as duplicates
from src.data.culane import (
    culane_train_lanes,
    parse_culane_label,
    parse_culane_list_line,
    read_culane_list,
    read_culane_split,
    read_label,
)
from tests.data.lane_trees import SRLANE_TARGETS, culane_config, write_culane_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("culane")
    return root, write_culane_tree(root)


def test_splits_read_back_with_labels(tree):
    root, written = tree
    for split in ("train", "val", "test"):
        samples = read_culane_split(root, split)
        assert [s.img_name for s in samples] == [name for name, _ in written[split]]
        for sample, (name, lanes) in zip(samples, written[split], strict=True):
            assert sample.img_path == str(root / name)
            assert sample.label_path == str(root / name[:-4]) + ".lines.txt"
            read_lanes, train_lanes = sample.load_lanes()
            assert len(read_lanes) == len(lanes)
            for got, want in zip(read_lanes, lanes, strict=True):
                np.testing.assert_allclose(got, want, atol=1e-3)
            # Training lanes: negative coordinates dropped, sorted top -> bottom.
            for lane in train_lanes:
                assert (lane >= 0).all() and np.all(np.diff(lane[:, 1]) >= 0)


def test_test_samples_keep_their_category(tree):
    root, written = tree
    samples = read_culane_split(root, "test")
    assert {s.img_name: s.category for s in samples} == written["categories"]
    assert all(s.category is None for s in read_culane_split(root, "train"))


@pytest.mark.parametrize("name", ["test_split/test1_crowd", "test1_crowd", "crowd"])
def test_category_split_names(tree, name):
    root, written = tree
    samples = read_culane_split(root, name)
    expected = [n for n, c in written["categories"].items() if c == "crowd"]
    assert [s.img_name for s in samples] == expected
    assert {s.category for s in samples} == {"crowd"}


def test_dataset_meta_has_category_and_raw_lanes(tree):
    root, written = tree
    dataset = build_dataset(culane_config(root), "test", False, targets_fn=SRLANE_TARGETS)
    item = dataset[2]
    name, lanes = written["test"][2]
    assert item["meta"]["img_name"] == name
    assert item["meta"]["category"] == written["categories"][name]
    assert item["meta"]["ori_size"] == (590, 1640) and item["meta"]["cut_height"] == 270
    assert "h_samples" not in item["meta"]
    for got, want in zip(item["meta"]["lanes"], lanes, strict=True):
        assert got.dtype == np.float64 and got.shape == want.shape
    assert item["img"].shape == (3, 320, 800) and item["gt_lane"].shape == (4, 76)


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError) as err:
        build_dataset(culane_config(tmp_path / "CULane"), "train", training=True)
    message = str(err.value)
    assert str(tmp_path / "CULane") in message and "list/train_gt.txt" in message


def test_missing_list_file(tmp_path):
    write_culane_tree(tmp_path, {"train": 1, "val": 1, "test": 2})
    (tmp_path / "list" / "val.txt").unlink()
    with pytest.raises(
        DatasetError, match=re.escape(f"{tmp_path / 'list' / 'val.txt'} is missing")
    ):
        build_dataset(culane_config(tmp_path), "val", training=False)


def test_test_split_requires_category_lists(tmp_path):
    write_culane_tree(tmp_path, {"train": 1, "val": 1, "test": 2})
    shutil.rmtree(tmp_path / "list" / "test_split")
    with pytest.raises(DatasetError, match="test0_normal.txt is missing"):
        build_dataset(culane_config(tmp_path), "test", training=False)


def test_missing_label_file_names_it(tmp_path):
    written = write_culane_tree(tmp_path, {"train": 3, "val": 1, "test": 1})
    name = written["train"][1][0]
    label = (tmp_path / name).with_suffix(".lines.txt")
    label.unlink()
    with pytest.raises(DatasetError) as err:
        build_dataset(culane_config(tmp_path), "train", training=True)
    assert str(label) in str(err.value) and "train_gt.txt:2" in str(err.value)


def test_malformed_label_gives_file_and_line(tmp_path):
    written = write_culane_tree(tmp_path, {"train": 2, "val": 1, "test": 1})
    label = (tmp_path / written["train"][0][0]).with_suffix(".lines.txt")
    label.write_text("10 20 30 40\n10 20 30\n")
    with pytest.raises(DatasetError, match=re.escape(f"{label}:2: expected x y pairs")):
        build_dataset(culane_config(tmp_path), "train", training=True)
    label.write_text("10 20 abc 40\n")
    with pytest.raises(DatasetError, match=re.escape(f"{label}:1: expected numbers")):
        build_dataset(culane_config(tmp_path), "train", training=True)


def test_malformed_list_line(tmp_path):
    write_culane_tree(tmp_path, {"train": 2, "val": 1, "test": 1})
    list_path = tmp_path / "list" / "train_gt.txt"
    lines = list_path.read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0] + " yes"
    list_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=re.escape(f"{list_path}:2: expected")):
        build_dataset(culane_config(tmp_path), "train", training=True)


def test_empty_list_is_an_error(tmp_path):
    write_culane_tree(tmp_path, {"train": 1, "val": 1, "test": 1})
    (tmp_path / "list" / "val.txt").write_text("")
    with pytest.raises(DatasetError, match="empty"):
        build_dataset(culane_config(tmp_path), "val", training=False)


def test_empty_list_error_names_the_list_file(tmp_path):
    write_culane_tree(tmp_path, {"train": 1, "val": 1, "test": 1})
    list_path = tmp_path / "list" / "val.txt"
    list_path.write_text("\n\n")
    with pytest.raises(DatasetError, match=re.escape(f"CULane list file {list_path} of split")):
        read_culane_split(tmp_path, "val")


def test_non_utf8_label_file_is_a_dataset_error_with_file_and_line(tmp_path):
    written = write_culane_tree(tmp_path, {"train": 2, "val": 1, "test": 1})
    label = (tmp_path / written["train"][1][0]).with_suffix(".lines.txt")
    label.write_bytes(b"10 20 30 40\n10 2\x800 30 40\n")
    expected = f"{label}:2: expected UTF-8 text, got byte 0x80 at column 5"
    with pytest.raises(DatasetError, match=re.escape(expected)):
        build_dataset(culane_config(tmp_path), "train", training=True)


def test_non_utf8_list_line_is_a_dataset_error_with_file_and_line(tmp_path):
    write_culane_tree(tmp_path, {"train": 2, "val": 1, "test": 1})
    list_path = tmp_path / "list" / "val.txt"
    list_path.write_bytes(list_path.read_bytes().replace(b"driver", b"dr\xffver", 1))
    with pytest.raises(DatasetError, match=re.escape(f"{list_path}:1: expected UTF-8 text")):
        build_dataset(culane_config(tmp_path), "val", training=False)


def test_empty_list_line_is_a_dataset_error():
    for text in ("", "  \t\n"):
        with pytest.raises(DatasetError, match=re.escape("val.txt:4: expected an image path")):
            parse_culane_list_line(text, "val.txt:4")


def test_zero_byte_image_is_named_or_skipped(tmp_path):
    written = write_culane_tree(tmp_path, {"train": 1, "val": 2, "test": 1})
    empty = tmp_path / written["val"][0][0]
    empty.write_bytes(b"")
    dataset = build_dataset(culane_config(tmp_path), "val", training=False)
    with pytest.raises(DatasetError, match=re.escape(f"cannot decode image {empty}: the file is")):
        dataset[0]
    skipping = build_dataset(culane_config(tmp_path, skip_unreadable_images=True), "val", False)
    assert skipping[0]["meta"]["replaces"] == [str(empty)]


def test_near_duplicate_filter_cached_outside_cwd(tmp_path, monkeypatch):
    root = tmp_path / "CULane"
    write_culane_tree(root, {"train": 5, "val": 1, "test": 1})
    listed = read_culane_split(root, "train")
    # Frame 2 becomes a copy of frame 1 (a near duplicate); the others stay distinct.
    shutil.copy(listed[1].img_path, listed[2].img_path)
    cache = tmp_path / "cache"
    monkeypatch.chdir(tmp_path)
    cfg = culane_config(root, filter_near_duplicates=True, cache_dir=str(cache))
    dataset = build_dataset(cfg, "train", training=True)
    assert [s.img_name for s in dataset.samples] == [
        s.img_name for i, s in enumerate(listed) if i != 2
    ]
    files = list((cache / "culane-near-duplicates").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["keep"] == [0, 1, 3, 4]
    assert not (tmp_path / ".cache").exists()
    # Off by default, and never applied to evaluation datasets.
    assert len(build_dataset(culane_config(root), "train", training=True)) == 5
    assert len(build_dataset(cfg, "train", training=False)) == 5

    # Second build: served from the cache without reading images.
    def no_reading(*args, **kwargs):
        raise AssertionError("images read although the result is cached")

    monkeypatch.setattr(duplicates, "frame_differences", no_reading)
    assert len(build_dataset(cfg, "train", training=True)) == 4
    # A changed list is a different cache key: recomputed.
    list_path = root / "list" / "train_gt.txt"
    list_path.write_text("".join(list_path.read_text().splitlines(keepends=True)[:4]))
    with pytest.raises(AssertionError, match="images read"):
        build_dataset(cfg, "train", training=True)


def test_frame_differences_parallel_matches_serial(tmp_path):
    root = tmp_path / "CULane"
    write_culane_tree(root, {"train": 70, "val": 1, "test": 1})
    paths = [s.img_path for s in read_culane_split(root, "train")]
    serial = duplicates.frame_differences(paths, workers=1)
    parallel = duplicates.frame_differences(paths, workers=2)
    np.testing.assert_allclose(serial, parallel)
    assert serial[0] > 15  # the first frame is compared with a black image


# --- properties of the label and list parsers -----------------------------------------------

coordinate = st.floats(-3000, 3000, allow_nan=False, width=32)
lanes_strategy = st.lists(
    st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=40), max_size=6
)


@settings(max_examples=100, deadline=None)
@given(lanes_strategy, st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_label_round_trip(lanes, newline, trailing_space):
    text = newline.join(
        " ".join(f"{x!r} {y!r}" for x, y in lane) + (" " if trailing_space else "")
        for lane in lanes
    )
    parsed = parse_culane_label(text + newline, "x.lines.txt")
    assert len(parsed) == len(lanes)
    for got, lane in zip(parsed, lanes, strict=True):
        np.testing.assert_array_equal(got, np.array(lane, dtype=np.float64).reshape(-1, 2))


@settings(max_examples=100, deadline=None)
@given(lanes_strategy)
def test_train_lanes_filtering(lanes):
    parsed = [np.array(lane, dtype=np.float64) for lane in lanes]
    for lane in culane_train_lanes(parsed):
        assert len(lane) > 2 and (lane >= 0).all()
        assert np.all(np.diff(lane[:, 1]) >= 0)
        assert len(np.unique(lane, axis=0)) == len(lane)
    expected = sum(len(np.unique(lane[(lane >= 0).all(axis=1)], axis=0)) > 2 for lane in parsed)
    assert len(culane_train_lanes(parsed)) == expected


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_label_text_raises_only_dataset_error(text):
    try:
        lanes = parse_culane_label(text, "y.lines.txt")
    except DatasetError as err:
        assert str(err).startswith("y.lines.txt:")
    else:
        assert all(lane.ndim == 2 and lane.shape[1] == 2 for lane in lanes)


@settings(max_examples=100, deadline=None)
@given(
    st.from_regex(
        r"/?driver_[0-9]{2,3}_[0-9]{2}frame/[0-9_]{4,13}\.MP4/[0-9]{5}\.jpg", fullmatch=True
    ),
    st.lists(st.sampled_from("01"), min_size=4, max_size=4),
)
def test_list_line_round_trip(path, flags):
    line = f"{path} /laneseg_label_w16{path.lstrip('/')}.png {' '.join(flags)}\n"
    name, parsed = parse_culane_list_line(line, "train_gt.txt:1")
    assert name == path.lstrip("/") and parsed == tuple(int(f) for f in flags)
    assert parse_culane_list_line(path, "val.txt:1") == (path.lstrip("/"), None)


LABEL_BYTES = b"10.5 590 20.25 580 30 570\n\n-5 590 40 500 41 490 \n"
LIST_BYTES = b"/driver_1_30frame/a.MP4/00000.jpg /laneseg/a.png 1 0 1 0\n\n/driver_1/b.jpg\n"


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["label", "list"]),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_label_and_list_bytes_raise_only_dataset_error(tmp_path_factory, kind, mutations):
    data = bytearray(LABEL_BYTES if kind == "label" else LIST_BYTES)
    for position, value in mutations:
        data[position % len(data)] = value
    root = tmp_path_factory.getbasetemp()
    path = root / ("mutated.lines.txt" if kind == "label" else "list/mutated.txt")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(data))
    try:
        if kind == "label":
            read_label(str(path), "list/train_gt.txt:1")
        else:
            read_culane_list(root, "list/mutated.txt")
    except DatasetError as err:
        assert str(err).startswith(f"{path}:")
