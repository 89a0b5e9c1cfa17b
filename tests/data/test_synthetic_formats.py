"""Synthetic LLAMAS and CurveLanes trees: official layouts and formats, the awkward parts they
must contain, determinism and caching, and check_dataset.py on clean and broken copies."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from src.data.synthetic import MANIFEST
from src.data.synthetic_formats import generate_synthetic_curvelanes, llamas_label
from src.data.synthetic_scene import SceneTextures, render_scene
from src.metrics.llamas_labels import llamas_lanes, named_lanes, parse_llamas_label
from tests.data.lane_trees import write_jpeg

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_dataset.py"


@pytest.fixture(scope="module")
def check_main():
    spec = importlib.util.spec_from_file_location("check_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def generated_labels() -> list[dict]:
    """40 LLAMAS labels drawn as the generator draws them (images are not needed)."""
    textures = SceneTextures.create(1276, 717, 0)
    labels = []
    for i in range(40):
        rng = np.random.default_rng([9, 1, i])
        scene = render_scene(rng, 1276, 717, textures)
        labels.append(llamas_label(rng, scene.camera, scene.lines))
    return labels


def test_llamas_labels_have_the_awkward_parts_and_the_official_code_reads_them(generated_labels):
    far_only = renamed = floats = 0
    for label in generated_labels:
        text = json.dumps(label)
        lanes = parse_llamas_label(label, text, "x.json")
        named = named_lanes(lanes)
        for lane in named.values():
            far_only += all(m.start[1] < 300 for m in lane.markers)
        renamed += {lane.lane_id for lane in named.values()} != set(named)
        floats += any(
            isinstance(m["pixel_start"]["x"], float) for ln in label["lanes"] for m in ln["markers"]
        )
        result = llamas_lanes(label, text, "x.json")
        assert result.dropped_above == () and result.lanes
        assert all(  # every kept lane has a marker the official extension can use
            any(m.start[0] != m.end[0] and m.start[1] != m.end[1] for m in lane.markers)
            for lane in named.values()
        )
    assert far_only >= 3 and renamed >= 3 and floats >= 3


def test_llamas_tree_layout(llamas_tree):
    labels = sorted(p.relative_to(llamas_tree).as_posix() for p in llamas_tree.rglob("*.json"))
    assert MANIFEST in labels
    labels.remove(MANIFEST)
    assert len(labels) == 9 and all(
        p.startswith(("labels/train/", "labels/valid/")) for p in labels
    )
    for label in labels:
        image = label.replace("labels/", "color_images/").replace(".json", "_color_rect.png")
        assert (llamas_tree / image).is_file()
    assert len(list((llamas_tree / "color_images" / "test").rglob("*_color_rect.png"))) == 1
    assert not (llamas_tree / "labels" / "test").exists()


def test_curvelanes_tree_layout(curvelanes_tree):
    for split, n in (("train", 4), ("valid", 6), ("test", 2)):
        entries = (curvelanes_tree / split / f"{split}.txt").read_text().splitlines()
        assert len(entries) == n and all((curvelanes_tree / split / e).is_file() for e in entries)
        labels = curvelanes_tree / split / "labels"
        assert labels.is_dir() == (split != "test")
        for entry in entries if split != "test" else []:
            doc = json.loads((labels / f"{Path(entry).stem}.lines.json").read_text())
            assert all(
                isinstance(p["x"], str) and isinstance(p["y"], str)
                for ln in doc["Lines"]
                for p in ln
            )


def test_generation_is_deterministic_and_cached(tmp_path):
    first = generate_synthetic_curvelanes(tmp_path / "a", 1, 1, 1, seed=2, workers=1)
    second = generate_synthetic_curvelanes(tmp_path / "b", 1, 1, 1, seed=2, workers=1)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    stamp = (first / MANIFEST).stat().st_mtime_ns
    assert generate_synthetic_curvelanes(first, 1, 1, 1, seed=2) == first
    assert (first / MANIFEST).stat().st_mtime_ns == stamp  # reused
    generate_synthetic_curvelanes(first, 1, 1, 1, seed=3, workers=1)
    assert json.loads((first / MANIFEST).read_text())["config"]["seed"] == 3


def test_check_dataset_passes_on_both_trees(llamas_tree, curvelanes_tree, check_main, capsys):
    assert check_main(["--dataset", "llamas", "--root", str(llamas_tree), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "- split valid: 5 samples, 5 images decoded" in out and "image sizes: 1276x717: 5" in out
    root = str(curvelanes_tree)
    assert check_main(["--dataset", "curvelanes", "--root", root, "--no-decode"]) == 0
    out = capsys.readouterr().out
    assert "image sizes: 2560x1440: 2, 1570x660: 2, 1280x720: 2" in out
    assert "image(s) with more than 4 lanes" in out


def test_check_dataset_lists_every_problem(
    llamas_tree, curvelanes_tree, check_main, capsys, tmp_path
):
    llamas = shutil.copytree(llamas_tree, tmp_path / "llamas")
    labels = sorted((llamas / "labels" / "valid").rglob("*.json"))
    text = labels[0].read_text().replace('"lane_id": "', '"lane_id": "x', 1)
    labels[0].write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if '"lane_id": "x' in s)
    image = llamas / "color_images" / labels[1].relative_to(llamas / "labels").as_posix()
    Path(str(image).replace(".json", "_color_rect.png")).unlink()
    args = ["--dataset", "llamas", "--root", str(llamas), "--split", "valid", "--no-decode"]
    assert check_main(args) == 1
    out = capsys.readouterr().out
    assert f"{labels[0]}:{line}: lanes[0].lane_id: expected 'l<k>' or 'r<k>'" in out
    assert f"{labels[1]}: image " in out and "FAILED: 2 problem(s)" in out

    curve = shutil.copytree(curvelanes_tree, tmp_path / "curvelanes")
    entries = (curve / "valid" / "valid.txt").read_text().splitlines()
    write_jpeg(curve / "valid" / entries[1], np.zeros((1080, 1920, 3), np.uint8))
    (curve / "valid" / "labels" / f"{Path(entries[3]).stem}.lines.json").unlink()
    assert check_main(["--dataset", "curvelanes", "--root", str(curve), "--split", "val"]) == 1
    out = capsys.readouterr().out
    list_path = curve / "valid" / "valid.txt"
    assert f"{list_path}:2: image " in out and "is 1920x1080, expected one of" in out
    assert f"{list_path}:4: label file" in out and "FAILED: 2 problem(s)" in out
