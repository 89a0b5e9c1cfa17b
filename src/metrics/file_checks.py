"""What scoring files on disk checks beyond their syntax (used by ``files``, hence
scripts/evaluate.py): values no official evaluator can score, and legal data that silently
changes the result.

Errors (``FileFormatError``, naming ``file:line``):

* a CULane coordinate more than one image size outside the image. Lane files hold x y pixels of
  the 1640x590 image; the official evaluators draw lanes on a 590x1640 mask, so points past the
  border only cut off, but 1e308 is no pixel of it (and overflows the evaluators' int32
  drawing coordinates).

Suspicious but legal (``Findings``: counted, printed as warnings; ``--strict`` refuses):

* a TuSimple image with more predicted lanes than GT lanes + 2, or a run_time over 200 ms: the
  benchmark's lane.py scores such an image Accuracy 0, FP 0, FN 1 without saying so;
* a TuSimple prediction file without a single lane (F1 0.667: see ``tusimple.no_lane_note``);
* a CULane list naming an image twice (it is scored twice, as the official tools do);
* CULane prediction files missing (scored as images without lanes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from src.metrics.tusimple import MAX_RUN_TIME_MS

# Points may lie this many image sizes outside the image (lanes drawn past the border).
OUTSIDE_IMAGE_TOLERANCE = 1.0


@dataclass
class Finding:
    """One kind of suspicious data: how often, the first place, what it does to the score."""

    count: int = 0
    first: str = ""
    effect: str = ""


@dataclass
class Findings:
    """Suspicious-but-legal data met while scoring, by kind, in the order first met."""

    strict: bool = False
    kinds: dict[str, Finding] = field(default_factory=dict)

    def add(self, kind: str, where: str, effect: str, count: int = 1) -> None:
        finding = self.kinds.setdefault(kind, Finding(first=where, effect=effect))
        finding.count += count

    def messages(self) -> list[str]:
        """One line per kind: count, first example, effect on the score."""
        return [f"{f.count} {kind}, e.g. {f.first} ({f.effect})" for kind, f in self.kinds.items()]

    def refuse_if_strict(self, error: type[Exception]) -> None:
        """With ``strict``: raise ``error`` listing every kind found (before scoring)."""
        if self.strict and self.kinds:
            raise error(
                "refused (--strict): " + "; ".join(self.messages()) + ". Fix the files or "
                "drop --strict to score them as the official tools do"
            )


def check_culane_points(
    values: Sequence[float], img_size: tuple[int, int], where: str, error: type[Exception]
) -> None:
    """``values`` (x1 y1 x2 y2 ...) of one lane line within OUTSIDE_IMAGE_TOLERANCE image sizes
    of the (height, width) image; ``error`` names ``where`` (``file:line``) otherwise."""
    if not len(values):
        return
    height, width = img_size
    points = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    limits = np.array([width, height], dtype=np.float64) * OUTSIDE_IMAGE_TOLERANCE
    low, high = -limits, np.array([width, height]) + limits
    far = np.nonzero(((points < low) | (points > high)).any(axis=1))[0]
    if len(far):
        x, y = points[far[0]]
        raise error(
            f"{where}: point ({x:g}, {y:g}) lies far outside the {width}x{height} image: CULane "
            f"lanes are x y pixels of it, accepted up to one image size past its border (x in "
            f"[{low[0]:g}, {high[0]:g}], y in [{low[1]:g}, {high[1]:g}]); check the file's "
            "units"
        )


def note_repeated_images(names: Iterable[tuple[str, str]], findings: Findings) -> None:
    """(image, ``file:line``) of a list file: an image listed again is a finding."""
    first: dict[str, str] = {}
    for name, where in names:
        if name in first:
            findings.add(
                "image(s) listed more than once",
                f"{name} at {where} (first at {first[name]})",
                "each listing is scored, so the image counts several times",
            )
        else:
            first[name] = where


def note_tusimple_prediction(
    lanes: Sequence[Sequence[float]], n_gt: int, run_time: float, where: str, findings: Findings
) -> None:
    """The benchmark's rules that zero an image without a word: more predicted lanes than
    GT + 2, or a run time over MAX_RUN_TIME_MS."""
    zeroed = "the benchmark scores such an image Accuracy 0, FP 0, FN 1"
    if len(lanes) > n_gt + 2:
        findings.add(
            "image(s) with more predicted lanes than GT lanes + 2",
            f"{where} ({len(lanes)} predicted, {n_gt} GT)",
            zeroed,
        )
    if run_time > MAX_RUN_TIME_MS:
        findings.add(
            f"image(s) with run_time over {MAX_RUN_TIME_MS:g} ms",
            f"{where} ({run_time:g} ms)",
            zeroed,
        )


def note_no_tusimple_lane(
    predicted_lanes: int, n_images: int, path: str, findings: Findings
) -> None:
    """A prediction file that holds no lane at all scores F1 0.667 (FP 0, FN 1)."""
    if n_images and predicted_lanes == 0:
        findings.add(
            "prediction file(s) without a single lane",
            path,
            "F1 is 0.667 (FP 0, FN 1) for empty predictions, not a working model",
        )
