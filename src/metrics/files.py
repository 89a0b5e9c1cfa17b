"""Scoring prediction files on disk, as the official tools do (used by scripts/evaluate.py).

CULane: a list file names the images (``/driver_37_30frame/x.MP4/00000.jpg``, one per line;
only the first whitespace-separated field is used, blank lines are skipped); the lanes of image
``p`` are read from ``<root>/<p minus leading "/" and ".jpg">.lines.txt`` under the prediction
and the GT directory. A missing prediction file counts as an image without predicted lanes (the
Python evaluator crashes there, the C++ tool does the same as here) and is counted and reported;
a missing GT file is an error.

TuSimple: both files are JSON Lines; every GT image needs exactly one prediction line with
``raw_file``, ``lanes`` and ``run_time`` (ms), as the benchmark requires.

A file that cannot be scored (not UTF-8, invalid JSON, a missing or mistyped field, a lane
without one x per h_sample, a non-number coordinate) raises ``FileFormatError`` (a ValueError)
naming ``file:line`` and what was expected.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.metrics.culane import (
    CULANE_IMG_SIZE,
    CULANE_LANE_WIDTH,
    check_evaluator,
    culane_image_counts,
    culane_summary,
    mean_of,
)
from src.metrics.file_checks import (
    Findings,
    check_culane_points,
    note_no_tusimple_lane,
    note_repeated_images,
    note_tusimple_prediction,
)
from src.metrics.tusimple import tusimple_image_scores, tusimple_summary
from src.metrics.writers import culane_label_name


class FileFormatError(ValueError):
    """A prediction, GT or list file that cannot be scored; the message names ``file:line``
    and what was expected."""


def _decoded_lines(path: str | os.PathLike, raw_lines: list[bytes]) -> list[str]:
    """``raw_lines`` (a file's lines, numbered from 1) as UTF-8 text; FileFormatError at the
    first line that is not UTF-8."""
    lines = []
    for line_no, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise FileFormatError(
                f"{path}:{line_no}: expected UTF-8 text, got byte 0x{raw[err.start]:02x} "
                f"at column {err.start + 1} (a binary file?)"
            ) from None
    return lines


def text_lines(path: str | os.PathLike) -> list[str]:
    """Every line of a UTF-8 text file (split at \\r\\n, \\r or \\n, as text mode does),
    numbered from 1 in error messages; OSError when it cannot be read."""
    return _decoded_lines(path, Path(path).read_bytes().splitlines())


def is_json_number(value: object) -> bool:
    """A finite JSON number (not a bool); shared with the TuSimple label reader."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def read_culane_lanes(
    path: str | os.PathLike, evaluator: str = "python", img_size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """The lanes of one ``.lines.txt`` file as (N, 2) float64 arrays (file order).

    Python recipe: every line's numbers in (x, y) pairs (an odd count or a token that is not a
    finite number is a FileFormatError naming ``file:line``), blank lines give empty lanes that
    the metric drops. C++ recipe: read as the tool's stream parser does (pairs until the first
    token that is not a finite number: it reads no nan / inf), values rounded to float32 later
    by the metric; every line, blank ones included, is a lane. Both: FileFormatError for a line
    that is not UTF-8, or (with ``img_size``, (height, width)) for a point far outside the image
    (``file_checks.check_culane_points``); FileNotFoundError when the file is missing.
    """
    check_evaluator(evaluator)
    data = Path(path).read_bytes()
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lanes = []
    for line_no, line in enumerate(_decoded_lines(path, raw_lines), start=1):
        tokens = line.split()
        if evaluator == "cpp":
            values = []
            for token in tokens:
                value = _float_or_none(token)
                if value is None:  # the stream parser stops here (it reads no nan / inf)
                    break
                values.append(value)
            values = values[: len(values) // 2 * 2]
        else:
            values = [_float_or_none(t) for t in tokens]
            if any(v is None for v in values):
                bad = tokens[values.index(None)]
                raise FileFormatError(
                    f"{path}:{line_no}: expected finite numbers 'x1 y1 x2 y2 ...', got {bad!r}"
                )
            if len(tokens) % 2:
                raise FileFormatError(
                    f"{path}:{line_no}: a lane line has an odd number of coordinates "
                    f"({len(tokens)}): expected x y pairs"
                )
        if img_size is not None:
            check_culane_points(values, img_size, f"{path}:{line_no}", FileFormatError)
        lanes.append(np.array(values, dtype=np.float64).reshape(-1, 2))
    return lanes


def _float_or_none(token: str) -> float | None:
    """The finite number a token spells, else None."""
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_culane_list(list_path: str | os.PathLike) -> list[str]:
    """Image paths of a CULane list file (first field of each non-blank line)."""
    return [name for name, _ in read_culane_list_entries(list_path)]


def read_culane_list_entries(list_path: str | os.PathLike) -> list[tuple[str, str]]:
    """(image path, ``file:line``) per non-blank line of a CULane list file; FileFormatError
    for a list that names no image."""
    entries = []
    for line_no, line in enumerate(text_lines(list_path), start=1):
        fields = line.split()
        if fields:
            entries.append((fields[0], f"{list_path}:{line_no}"))
    if not entries:
        raise FileFormatError(
            f"{list_path}: lists no image: expected one image path per line, e.g. "
            "/driver_37_30frame/05181432_0203.MP4/00000.jpg"
        )
    return entries


@dataclass
class CULaneFileScore:
    """Result of scoring a prediction directory: the metric's ``compute()`` dict, the number of
    images, and the images whose prediction file was missing."""

    result: dict
    n_images: int
    missing: list[str] = field(default_factory=list)


def score_culane_files(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    list_path: str | os.PathLike,
    iou_thresholds: Sequence[float] = (0.5,),
    evaluator: str = "python",
    img_size: tuple[int, int] = CULANE_IMG_SIZE,
    width: int = CULANE_LANE_WIDTH,
    findings: Findings | None = None,
) -> CULaneFileScore:
    """Score the ``.lines.txt`` predictions of every image in ``list_path`` against the GT.

    ``result`` has the structure of ``CULaneMetric.compute()`` (without categories). Every file
    is read and checked before the first image is scored; suspicious data (an image listed
    twice, missing prediction files) goes to ``findings``, which refuses it when strict.
    """
    check_evaluator(evaluator)
    findings = findings if findings is not None else Findings()
    _check_directory(pred_dir, "prediction")
    _check_directory(gt_dir, "GT")
    entries = read_culane_list_entries(list_path)
    note_repeated_images(entries, findings)
    images, missing = [], []
    for name, where in entries:
        rel = culane_label_name(name)
        gt_path = _label_file(Path(gt_dir) / rel, "GT label", name, where)
        if gt_path is None:
            raise FileNotFoundError(f"GT label file missing: {Path(gt_dir) / rel} ({where})")
        pred_path = _label_file(Path(pred_dir) / rel, "prediction", name, where)
        if pred_path is None:
            missing.append(name)
        gts = read_culane_lanes(gt_path, evaluator, img_size)
        preds = read_culane_lanes(pred_path, evaluator, img_size) if pred_path else []
        images.append((preds, gts, pred_path or Path(pred_dir) / rel, gt_path))
    if missing:
        findings.add(
            f"of {len(entries)} prediction files missing",
            missing[0],
            "scored as images without lanes",
            count=len(missing),
        )
    findings.refuse_if_strict(FileFormatError)
    counts = np.zeros((len(iou_thresholds), 3), dtype=np.int64)
    for preds, gts, pred_path, gt_path in images:
        try:
            counts += culane_image_counts(preds, gts, iou_thresholds, evaluator, img_size, width)
        except ValueError as err:  # e.g. lanes the spline cannot fit
            raise FileFormatError(
                f"{pred_path} (GT {gt_path}): cannot score these lanes: {err}"
            ) from None
    names = [name for name, _ in entries]
    return CULaneFileScore(culane_summary(counts, iou_thresholds), len(names), missing)


def _check_directory(path: str | os.PathLike, what: str) -> None:
    """A CULane tree root that is missing or not a directory would score every image as
    having no file: refused instead."""
    if not Path(path).is_dir():
        state = "is not a directory" if Path(path).exists() else "does not exist"
        raise FileFormatError(
            f"{what} directory {path} {state}: expected the root of a tree of <image "
            "path>.lines.txt files, e.g. <root>/driver_37_30frame/05181432_0203.MP4/00000.lines.txt"
        )


def _label_file(path: Path, what: str, name: str, where: str) -> Path | None:
    """``path`` when it is a file, None when it does not exist; FileFormatError when it is
    something else (a directory where the file should be)."""
    if path.is_file():
        return path
    if path.exists():
        raise FileFormatError(
            f"{what} path {path} of {name} (listed at {where}) is not a file (a directory?): "
            "expected a .lines.txt file"
        )
    return None


def culane_tool_output(result: dict) -> dict:
    """The command line tool's JSON: one entry per threshold key, plus "mean" with several
    thresholds (TP/FP/FN summed over thresholds, Precision/Recall/F1 averaged), as the
    reference's "mean" entry."""
    per_thr = {k: v for k, v in result.items() if isinstance(v, dict) and "TP" in v}
    out = dict(per_thr)
    if len(per_thr) > 1:
        out["mean"] = {
            "TP": sum(v["TP"] for v in per_thr.values()),
            "FP": sum(v["FP"] for v in per_thr.values()),
            "FN": sum(v["FN"] for v in per_thr.values()),
            "Precision": mean_of(v["Precision"] for v in per_thr.values()),
            "Recall": mean_of(v["Recall"] for v in per_thr.values()),
            "F1": mean_of(v["F1"] for v in per_thr.values()),
        }
    return out


def _json_lines(path: str | os.PathLike) -> list[tuple[dict, str]]:
    """(object, ``file:line``) per non-blank line of a JSON Lines file; FileFormatError for a
    line that is not UTF-8, not JSON or not a JSON object."""
    out = []
    for line_no, line in enumerate(text_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise FileFormatError(f"{where}: not valid JSON: {err}") from None
        except RecursionError:
            raise FileFormatError(f"{where}: not valid JSON: nested too deeply") from None
        if not isinstance(value, dict):
            raise FileFormatError(
                f"{where}: expected a JSON object per line, got {type(value).__name__}"
            )
        out.append((value, where))
    return out


def read_json_lines(path: str | os.PathLike) -> list[dict]:
    """Objects of a JSON Lines file (blank lines skipped); FileFormatError names file:line."""
    return [value for value, _ in _json_lines(path)]


def _check_lanes(lanes: object, n_rows: int, where: str, rows_from: str) -> None:
    """``lanes`` must be a list of lists of ``n_rows`` numbers (x per h_sample)."""
    if not isinstance(lanes, list):
        raise FileFormatError(
            f"{where}: lanes must be a list of lanes (lists of x per h_sample), "
            f"got {type(lanes).__name__}"
        )
    for index, lane in enumerate(lanes):
        if not isinstance(lane, list) or not all(is_json_number(x) for x in lane):
            raise FileFormatError(f"{where}: lane {index} must be a list of numbers")
        if len(lane) != n_rows:
            raise FileFormatError(
                f"{where}: lane {index} has {len(lane)} values, expected one x per h_sample "
                f"({n_rows} values, h_samples of {rows_from})"
            )


def _check_raw_file(record: dict, where: str) -> str:
    name = record["raw_file"]
    if not isinstance(name, str) or not name:
        raise FileFormatError(f"{where}: raw_file must be a non-empty string, got {name!r}")
    return name


def _read_tusimple_gt(gt_path: str | os.PathLike) -> dict[str, tuple[dict, str]]:
    """raw_file -> (record, ``file:line``) of a TuSimple GT file, every line validated."""
    by_name: dict[str, tuple[dict, str]] = {}
    for gt, where in _json_lines(gt_path):
        missing = [k for k in ("raw_file", "lanes", "h_samples") if k not in gt]
        if missing:
            raise FileFormatError(
                f"{where}: missing {', '.join(missing)}: every GT line needs raw_file, lanes "
                "and h_samples"
            )
        name = _check_raw_file(gt, where)
        rows = gt["h_samples"]
        if not isinstance(rows, list) or not all(is_json_number(y) for y in rows):
            raise FileFormatError(f"{where}: h_samples must be a list of numbers")
        _check_lanes(gt["lanes"], len(rows), where, "this line")
        if name in by_name:
            raise FileFormatError(
                f"{where}: GT file lists {name} twice (first at {by_name[name][1]})"
            )
        by_name[name] = (gt, where)
    return by_name


def score_tusimple_files(
    pred_path: str | os.PathLike, gt_path: str | os.PathLike, findings: Findings | None = None
) -> dict:
    """Score a TuSimple prediction file against a GT file: ``{"Accuracy", "FP", "FN", "F1"}``.

    Images are scored in prediction-file order (so the sums equal the benchmark's).
    FileFormatError (file:line, what was expected) for anything the benchmark could not score.
    Every line is checked before scoring; images the benchmark's rules zero silently and a file
    without any lane go to ``findings``, which refuses them when strict.
    """
    findings = findings if findings is not None else Findings()
    preds = _json_lines(pred_path)
    by_name = _read_tusimple_gt(gt_path)
    if not by_name:
        raise FileFormatError(
            f"{gt_path}: no GT image: expected one JSON object per image "
            '({"raw_file": ..., "lanes": ..., "h_samples": ...}), e.g. test_label.json'
        )
    if len(preds) != len(by_name):
        raise FileFormatError(
            f"{pred_path}: {len(preds)} predictions for {len(by_name)} GT images in {gt_path}: "
            "need one per image"
        )
    scored = _checked_tusimple_predictions(preds, by_name, findings)
    note_no_tusimple_lane(
        sum(len(p["lanes"]) for p, _, _ in scored), len(scored), str(pred_path), findings
    )
    findings.refuse_if_strict(FileFormatError)
    accuracy = fp = fn = 0.0
    for pred, gt, where in scored:
        try:
            a, p, n = tusimple_image_scores(
                pred["lanes"], gt["lanes"], gt["h_samples"], float(pred["run_time"])
            )
        except ValueError as err:
            raise FileFormatError(f"{where} ({pred['raw_file']}): {err}") from None
        accuracy += a
        fp += p
        fn += n
    return tusimple_summary(accuracy, fp, fn, len(by_name))


def _checked_tusimple_predictions(
    preds: list[tuple[dict, str]], by_name: dict[str, tuple[dict, str]], findings: Findings
) -> list[tuple[dict, dict, str]]:
    """(prediction, its GT record, ``file:line``) per prediction line, every line validated."""
    seen: dict[str, str] = {}
    out = []
    for pred, where in preds:
        missing = [k for k in ("raw_file", "lanes", "run_time") if k not in pred]
        if missing:
            raise FileFormatError(
                f"{where}: missing {', '.join(missing)}: every prediction needs raw_file, lanes "
                "and run_time"
            )
        name = _check_raw_file(pred, where)
        if name not in by_name:
            raise FileFormatError(f"{where}: prediction for an image not in the GT file: {name}")
        if name in seen:
            raise FileFormatError(f"{where}: two predictions for {name} (first at {seen[name]})")
        seen[name] = where
        run_time = pred["run_time"]
        if not is_json_number(run_time):
            raise FileFormatError(f"{where}: run_time must be a number (ms), got {run_time!r}")
        gt, gt_where = by_name[name]
        _check_lanes(pred["lanes"], len(gt["h_samples"]), where, gt_where)
        note_tusimple_prediction(pred["lanes"], len(gt["lanes"]), float(run_time), where, findings)
        out.append((pred, gt, where))
    return out
