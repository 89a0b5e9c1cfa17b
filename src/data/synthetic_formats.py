"""Synthetic LLAMAS and CurveLanes trees in the official layouts and label formats, generated
offline from the same road scenes as the synthetic TuSimple set (``synthetic_scene``).

* ``generate_synthetic_llamas(root, ...)``: 1276x717 PNG images and marker labels,
  ``labels/{train,valid}/<recording>/<name>.json`` and ``color_images/{train,valid,test}/
  <recording>/<name>_color_rect.png`` (test: images only, as the real set). Markers are the
  painted dashes (solid lines: 4 m pieces) with pixel and world start / end points. Some lanes
  keep only their markers above row 300 (the extension to the image bottom makes them full
  height), some keep one marker (dropped, so the others are renamed), marker order is
  sometimes shuffled, and some labels write pixel values as floats (read with ``int()``).
  Lanes the official tools cannot read (no sloped marker, or fewer than 2 points in rows
  300..716 after the extension) are left out, so the official code runs on every label.
* ``generate_synthetic_curvelanes(root, ...)``: ``{train,valid,test}/images/<md5>.jpg`` in the
  three sizes (2560x1440, 1570x660, 1280x720, in turn), ``{train,valid}/labels/<md5>.lines
  .json`` with string coordinates, bottom -> top (some lanes top -> bottom), and the
  ``<split>/<split>.txt`` lists. Every fourth image has 6 to 8 painted lines, so more than 4
  lanes occur in every split with four or more images.

Image ``i`` of split ``k`` is drawn from ``default_rng([seed, k, i])``, so a tree depends on its
arguments only; trees are reused, regenerated and locked as the TuSimple one
(``synthetic.generate_tree``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from src.metrics.llamas_labels import (
    MIN_LANE_SPAN,
    llamas_lanes,
    named_lanes,
    parse_llamas_label,
)

from .curvelanes import CROP_OFFSETS
from .errors import DatasetError
from .synthetic import JPEG_QUALITY, generate_tree
from .synthetic_scene import Camera, PaintedLine, SceneTextures, render_scene

GENERATOR_VERSION = 1
LLAMAS_WIDTH, LLAMAS_HEIGHT = 1276, 717
LLAMAS_SPLITS = ("train", "valid", "test")
CURVELANES_SPLITS = ("train", "valid", "test")
CURVELANES_SIZES = tuple(CROP_OFFSETS)  # (width, height), used in turn
_SOLID_PIECE_M = 4.0
_MANY_LINES = ((6, 7, 8), (0.3, 0.4, 0.3))
_TEXTURES: dict[tuple[int, int, int], SceneTextures] = {}


def _textures(width: int, height: int, seed: int) -> SceneTextures:
    key = (width, height, seed)
    if key not in _TEXTURES:
        _TEXTURES[key] = SceneTextures.create(width, height, seed)
    return _TEXTURES[key]


def _split_config(num_train: int, num_val: int, num_test: int, seed: int) -> dict:
    config = {"num_train": num_train, "num_val": num_val, "num_test": num_test, "seed": seed}
    problems = [f"{key} must be >= 1" for key, n in config.items() if key != "seed" and n < 1]
    if seed < 0:
        problems.append("seed must be >= 0")
    if problems:
        raise DatasetError(f"invalid synthetic dataset config {config}: " + "; ".join(problems))
    return config


def _run(jobs: list[tuple], render: Callable[[tuple], object], workers: int | None) -> list:
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1 and len(jobs) > 8:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(render, jobs, chunksize=4))
    return [render(job) for job in jobs]


def _generate_format(
    root: str | Path,
    name: str,
    render: Callable[[tuple], object],
    config: dict,
    workers: int | None,
    write_lists: Callable[[Path], None] | None = None,
) -> Path:
    """Render every image of a synthetic tree (``render((root, split index, image index,
    seed))``) into a temporary tree that ``generate_tree`` renames into place, unless ``root``
    already holds the same tree; ``write_lists`` adds the split lists a format has."""
    seed = config["seed"]
    counts = [config["num_train"], config["num_val"], config["num_test"]]
    manifest = {"generator": f"srlane-launcher synthetic {name}", "version": GENERATOR_VERSION}
    manifest |= {"config": config, "complete": True}

    def generate_into(tmp_root: Path) -> None:
        jobs = [(str(tmp_root), k, i, seed) for k, n in enumerate(counts) for i in range(n)]
        _run(jobs, render, workers)
        if write_lists is not None:
            write_lists(tmp_root)

    return generate_tree(root, manifest, generate_into, f"{sum(counts)} synthetic {name} images")


def _write_image(path: Path, image: np.ndarray, extension: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if extension == ".jpg" else []
    ok, buffer = cv2.imencode(extension, image, params)
    if not ok:
        raise RuntimeError(f"encoding failed for {path}")
    path.write_bytes(buffer.tobytes())


# ---------------------------------------------------------------------------- LLAMAS


def _world_x(camera: Camera, lateral: float, z: float) -> float:
    return lateral + camera.yaw * z + camera.curve * z * z


def _llamas_marker(camera: Camera, lateral: float, z0: float, z1: float, floats: bool) -> dict:
    """A marker from depth z0 (near: pixel_start) to z1, or {} when it leaves the image."""
    marker: dict = {}
    for end, z in (("start", z0), ("end", z1)):
        x, y = float(camera.column(lateral, np.array(z))), float(camera.row(np.array(z)))
        if not (0 <= x < LLAMAS_WIDTH and 0 <= y < LLAMAS_HEIGHT):
            return {}
        pixel = (round(x, 1), round(y, 1)) if floats else (int(round(x)), int(round(y)))
        marker[f"pixel_{end}"] = {"x": pixel[0], "y": pixel[1]}
        world = (_world_x(camera, lateral, z), camera.cam_height, z)
        marker[f"world_{end}"] = dict(zip("xyz", (round(v, 4) for v in world), strict=True))
    return marker


def _llamas_lane(camera: Camera, line: PaintedLine, floats: bool) -> dict:
    z_bottom = float(camera.depth(np.array(LLAMAS_HEIGHT - 1.0)))
    markers = []
    for a, b in line.pieces:
        edges = [*np.arange(max(a, z_bottom), b, _SOLID_PIECE_M).tolist(), b]
        for z0, z1 in zip(edges[:-1], edges[1:], strict=True):
            marker = _llamas_marker(camera, line.lateral, z0, z1, floats) if z1 - z0 > 0.2 else {}
            if marker:
                marker["lane_marker_id"] = f"{line.name}_{len(markers)}"
                markers.append(marker)
    return {"lane_id": line.name, "markers": markers}


def _llamas_quirks(rng: np.random.Generator, lanes: list[dict]) -> None:
    """Far-only lanes, one-marker lanes, shuffled markers and lanes (see the docstring)."""
    if lanes and rng.random() < 0.4:
        far = [[m for m in lane["markers"] if m["pixel_start"]["y"] < 300] for lane in lanes]
        # Mostly lanes whose far markers survive the filters, so they get extended.
        kept = [i for i, ms in enumerate(far) if len(ms) > 1 and _span(ms) >= MIN_LANE_SPAN]
        pool = kept if kept and rng.random() < 0.75 else list(range(len(lanes)))
        k = pool[int(rng.integers(len(pool)))]
        lanes[k]["markers"] = far[k]
    if len(lanes) > 1 and rng.random() < 0.2:
        lane = lanes[int(rng.integers(len(lanes)))]
        lane["markers"] = lane["markers"][:1]
    for lane in lanes:
        if rng.random() < 0.2:
            lane["markers"] = [lane["markers"][i] for i in rng.permutation(len(lane["markers"]))]
    if rng.random() < 0.3:
        lanes[:] = [lanes[i] for i in rng.permutation(len(lanes))]


def _span(markers: list[dict]) -> float:
    rows = [m["pixel_start"]["y"] for m in markers]
    return max(rows) - min(rows)


def _officially_readable(label: dict) -> dict:
    """``label`` without the lanes the official tools crash on (see the module docstring)."""
    while True:
        text = json.dumps(label)
        named = named_lanes(parse_llamas_label(label, text, "<synthetic>"))
        bad = {
            lane.markers[0].where[1]
            for lane in named.values()
            if not any(m.start[0] != m.end[0] and m.start[1] != m.end[1] for m in lane.markers)
        }
        if not bad:
            dropped = llamas_lanes(label, text, "<synthetic>").dropped_above
            bad = {named[name].markers[0].where[1] for name in dropped}
        if not bad:
            return label
        label["lanes"] = [lane for i, lane in enumerate(label["lanes"]) if i not in bad]


def llamas_label(rng: np.random.Generator, camera: Camera, lines: list[PaintedLine]) -> dict:
    """The LLAMAS label of a scene's painted lines (``rng`` draws the quirks)."""
    floats = bool(rng.random() < 0.3)
    lanes = [_llamas_lane(camera, line, floats) for line in lines]
    lanes = [lane for lane in lanes if lane["markers"]]
    _llamas_quirks(rng, lanes)
    projection = [[camera.focal, 0.0, camera.cx], [0.0, camera.focal, camera.horizon], [0, 0, 1]]
    label = {"projection_matrix": projection, "lanes": [ln for ln in lanes if ln["markers"]]}
    return _officially_readable(label)


def _llamas_paths(split: str, index: int) -> tuple[str, str]:
    """(label path, image path) of image ``index`` of ``split``, relative to the root."""
    recording, name = f"synthetic_{split}_{index % 2}", f"{index:06d}"
    return (
        f"labels/{split}/{recording}/{name}.json",
        f"color_images/{split}/{recording}/{name}_color_rect.png",
    )


def _render_llamas(job: tuple[str, int, int, int]) -> None:
    root, split_id, index, seed = job
    cv2.setNumThreads(1)
    rng = np.random.default_rng([seed, split_id, index])
    scene = render_scene(rng, LLAMAS_WIDTH, LLAMAS_HEIGHT, _textures(1276, 717, seed))
    split = LLAMAS_SPLITS[split_id]
    label_path, image_path = _llamas_paths(split, index)
    _write_image(Path(root) / image_path, scene.image, ".png")
    if split != "test":
        label = llamas_label(rng, scene.camera, scene.lines)
        (Path(root) / label_path).parent.mkdir(parents=True, exist_ok=True)
        (Path(root) / label_path).write_text(json.dumps(label, indent=2))


def generate_synthetic_llamas(
    root: str | Path,
    num_train: int = 8,
    num_val: int = 4,
    num_test: int = 2,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Make sure ``root`` holds this synthetic LLAMAS tree; returns its absolute path."""
    config = _split_config(num_train, num_val, num_test, seed)
    return _generate_format(root, "LLAMAS", _render_llamas, config, workers)


# ---------------------------------------------------------------------------- CurveLanes


def _coordinate(value: float) -> str:
    """A coordinate as the dataset writes it: a string such as "2079.41" or "1439.0"."""
    return str(round(float(value), 2))


def curvelanes_lines(
    rng: np.random.Generator, camera: Camera, lines: list[PaintedLine], scale: int
) -> list[list[dict]]:
    """CurveLanes ``Lines`` of a scene's painted lines: points every ~1/24 of the height from
    the bottom row to the far end, in pixels of the image ``scale`` times the render size."""
    out = []
    for line in lines:
        top = float(camera.row(np.array(line.z_far)))
        rows = np.arange(camera.height - 1.0, top, -camera.height / rng.uniform(18, 30))
        xs = camera.column(line.lateral, camera.depth(rows))
        keep = (xs >= 0) & (xs < camera.width)
        points = [(x * scale, y * scale) for x, y in zip(xs[keep], rows[keep], strict=True)]
        if len(points) < 2:
            continue
        if rng.random() < 0.1:
            points.reverse()
        out.append([{"x": _coordinate(x), "y": _coordinate(y)} for x, y in points])
    return out


def curvelanes_name(seed: int, split: str, index: int) -> str:
    """The md5-like file stem of an image."""
    return hashlib.md5(f"synthetic-curvelanes-{seed}-{split}-{index}".encode()).hexdigest()


def _render_curvelanes(job: tuple[str, int, int, int]) -> None:
    root, split_id, index, seed = job
    cv2.setNumThreads(1)
    width, height = CURVELANES_SIZES[index % len(CURVELANES_SIZES)]
    scale = 2 if width > 2000 else 1  # 2560x1440 is rendered at half size and enlarged
    rng = np.random.default_rng([seed, split_id, index])
    kwargs = {"line_counts": _MANY_LINES} if index % 4 == 1 else {}
    w, h = width // scale, height // scale
    scene = render_scene(rng, w, h, _textures(w, h, seed), **kwargs)
    image = scene.image if scale == 1 else cv2.resize(scene.image, (width, height))
    split = CURVELANES_SPLITS[split_id]
    name = curvelanes_name(seed, split, index)
    _write_image(Path(root) / split / "images" / f"{name}.jpg", image, ".jpg")
    if split != "test":
        lines = curvelanes_lines(rng, scene.camera, scene.lines, scale)
        label = Path(root) / split / "labels" / f"{name}.lines.json"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(json.dumps({"Lines": lines}))


def generate_synthetic_curvelanes(
    root: str | Path,
    num_train: int = 8,
    num_val: int = 4,
    num_test: int = 2,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Make sure ``root`` holds this synthetic CurveLanes tree; returns its absolute path."""
    config = _split_config(num_train, num_val, num_test, seed)

    def write_lists(tmp_root: Path) -> None:
        for split, n in zip(CURVELANES_SPLITS, (num_train, num_val, num_test), strict=True):
            names = [f"images/{curvelanes_name(seed, split, i)}.jpg\n" for i in range(n)]
            (tmp_root / split / f"{split}.txt").write_text("".join(names))

    return _generate_format(root, "CurveLanes", _render_curvelanes, config, workers, write_lists)
