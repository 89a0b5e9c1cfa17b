"""torchmetrics wrappers: ``TuSimpleMetric``, ``CULaneMetric``, ``LLAMASMetric`` and
``CurveLanesMetric``.

The per-image definitions live in ``tusimple`` and ``culane`` (plain numpy, so the file-scoring
command line tool starts without importing torch). States are fixed-size tensors reduced with
"sum", so torchmetrics' own synchronisation gives, under DDP, the result of one process that saw
every image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

from src.metrics.culane import (
    CULANE_IMG_SIZE,
    CULANE_LANE_WIDTH,
    check_evaluator,
    culane_image_counts,
    culane_summary,
    mean_f1,
    threshold_key,
)
from src.metrics.curvelanes import (
    CURVELANES_IOU,
    CURVELANES_LANE_WIDTH,
    curvelanes_image_counts,
    curvelanes_summary,
)
from src.metrics.llamas import LLAMAS_LANE_WIDTH, llamas_image_counts
from src.metrics.tusimple import tusimple_image_scores, tusimple_summary


class TuSimpleMetric(Metric):
    """TuSimple Accuracy / FP / FN (means over images) and CLRNet's F1.

    ``update(pred_xs, gt_xs, h_samples, run_times=None)``: one entry per image; lanes are lists
    of x per h_sample (negative = no point); ``run_times`` in ms (None: no run-time rule).

    ``compute()`` returns plain floats: ``{"Accuracy", "FP", "FN", "F1"}`` (all 0.0 before any
    update). States are float64 sums and an image count, summed across processes. Within one
    process the per-image values are accumulated one by one in update order, so feeding images
    in file order reproduces the benchmark's sums to the last bit.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("accuracy_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fp_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fn_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self,
        pred_xs: Sequence[Sequence[Sequence[float]]],
        gt_xs: Sequence[Sequence[Sequence[float]]],
        h_samples: Sequence[Sequence[float]],
        run_times: Sequence[float] | None = None,
    ) -> None:
        """Add a batch of images."""
        n = len(gt_xs)
        if len(pred_xs) != n or len(h_samples) != n:
            raise ValueError(
                f"got {len(pred_xs)} predictions, {n} GT entries, {len(h_samples)} h_samples"
            )
        if run_times is not None and len(run_times) != n:
            raise ValueError(f"got {len(run_times)} run times for {n} images")
        acc, fp, fn = float(self.accuracy_sum), float(self.fp_sum), float(self.fn_sum)
        for i in range(n):
            run_time = None if run_times is None else float(run_times[i])
            a, p, m = tusimple_image_scores(pred_xs[i], gt_xs[i], h_samples[i], run_time)
            acc += a
            fp += p
            fn += m
        self.accuracy_sum.fill_(acc)
        self.fp_sum.fill_(fp)
        self.fn_sum.fill_(fn)
        self.n_images += n

    def compute(self) -> dict[str, float]:
        """``{"Accuracy", "FP", "FN", "F1"}`` as floats."""
        return tusimple_summary(
            float(self.accuracy_sum), float(self.fp_sum), float(self.fn_sum), int(self.n_images)
        )


class CULaneMetric(Metric):
    """CULane TP/FP/FN at one or more IoU thresholds, optionally per category.

    ``update(preds, gts, categories=None)`` takes one entry per image: lists of (N, 2) float
    arrays of (x, y) pixels in the original 1640x590 image; ``categories`` (one name or None per
    image) must come from the ``categories`` given at construction.

    ``compute()`` returns plain Python numbers::

        {"0.5": {"TP": int, "FP": int, "FN": int, "Precision": float, "Recall": float,
                 "F1": float},
         ...one entry per threshold (keys from ``threshold_key``),
         "mF1": float,                      # only with several thresholds
         "categories": {name: {same structure, without "categories"}}}  # only with categories

    States are fixed-size int64 count tensors summed across processes, so the result under DDP
    equals a single process seeing every image.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (0.5,),
        evaluator: str = "python",
        categories: Sequence[str] | None = None,
        img_size: tuple[int, int] = CULANE_IMG_SIZE,
        width: int = CULANE_LANE_WIDTH,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_evaluator(evaluator)
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        if not self.iou_thresholds:
            raise ValueError("at least one IoU threshold is needed")
        keys = [threshold_key(t) for t in self.iou_thresholds]
        if len(set(keys)) != len(keys):
            raise ValueError(f"repeated IoU thresholds: {keys}")
        self.evaluator = evaluator
        self.categories = tuple(categories) if categories is not None else None
        if self.categories is not None and len(set(self.categories)) != len(self.categories):
            raise ValueError(f"repeated category names: {self.categories}")
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.width = int(width)
        n_thr = len(self.iou_thresholds)
        n_cat = len(self.categories) if self.categories is not None else 0
        self.add_state("counts", torch.zeros(n_thr, 3, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state(
            "category_counts", torch.zeros(n_cat, n_thr, 3, dtype=torch.int64), dist_reduce_fx="sum"
        )
        self.add_state("n_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self,
        preds: Sequence[Sequence[np.ndarray]],
        gts: Sequence[Sequence[np.ndarray]],
        categories: Sequence[str | None] | None = None,
    ) -> None:
        """Add a batch of images (see the class docstring for the formats)."""
        if len(preds) != len(gts):
            raise ValueError(f"{len(preds)} prediction entries for {len(gts)} GT entries")
        if categories is not None and len(categories) != len(gts):
            raise ValueError(f"{len(categories)} categories for {len(gts)} images")
        total = np.zeros((len(self.iou_thresholds), 3), dtype=np.int64)
        per_cat = np.zeros(tuple(self.category_counts.shape), dtype=np.int64)
        for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
            counts = culane_image_counts(
                pred, gt, self.iou_thresholds, self.evaluator, self.img_size, self.width
            )
            total += counts
            name = categories[i] if categories is not None else None
            if name is not None:
                per_cat[self._category_index(name)] += counts
        self.counts += torch.from_numpy(total).to(self.counts.device)
        self.category_counts += torch.from_numpy(per_cat).to(self.category_counts.device)
        self.n_images += len(gts)

    def _category_index(self, name: str) -> int:
        if self.categories is None:
            raise ValueError("got per-image categories, but the metric was built without any")
        try:
            return self.categories.index(name)
        except ValueError:
            raise ValueError(f"unknown category {name!r}; known: {self.categories}") from None

    def _summary(self, counts: torch.Tensor) -> dict:
        return culane_summary(counts.cpu().numpy(), self.iou_thresholds)

    def compute(self) -> dict:
        """The summed result (structure in the class docstring)."""
        result = self._summary(self.counts)
        if self.categories is not None:
            result["categories"] = {
                name: self._summary(self.category_counts[i])
                for i, name in enumerate(self.categories)
            }
        return result


def checked_thresholds(iou_thresholds: Sequence[float]) -> tuple[float, ...]:
    """The thresholds as floats; ValueError when there are none or two share a result key."""
    thresholds = tuple(float(t) for t in iou_thresholds)
    if not thresholds:
        raise ValueError("at least one IoU threshold is needed")
    keys = [threshold_key(t) for t in thresholds]
    if len(set(keys)) != len(keys):
        raise ValueError(f"repeated IoU thresholds: {keys}")
    return thresholds


class _CountsMetric(Metric):
    """[TP, FP, FN] per IoU threshold, as an int64 (n_thresholds, 3) state summed across
    processes (so the result under DDP equals one process seeing every image)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, iou_thresholds: Sequence[float], width: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.iou_thresholds = checked_thresholds(iou_thresholds)
        self.width = int(width)
        n_thr = len(self.iou_thresholds)
        self.add_state("counts", torch.zeros(n_thr, 3, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("n_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def _add(self, counts: np.ndarray, n_images: int) -> None:
        self.counts += torch.from_numpy(counts).to(self.counts.device)
        self.n_images += n_images


class LLAMASMetric(_CountsMetric):
    """The LLAMAS lane metric (``llamas``) at one or more IoU thresholds.

    ``update(preds, gts)``: one entry per image; lanes are (N, 2) float arrays of (x, y) pixels
    in the 1276x717 image; ``gts`` the benchmark ground truth (``LlamasLanes.lanes``, as the
    LLAMAS reader's samples carry it). ``compute()`` returns the structure of
    ``CULaneMetric.compute()`` without categories (P/R/F1 0 when TP is 0, "mF1" with several
    thresholds).
    """

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (0.5,),
        width: int = LLAMAS_LANE_WIDTH,
        **kwargs,
    ) -> None:
        super().__init__(iou_thresholds, width, **kwargs)

    def update(self, preds: Sequence[Sequence[np.ndarray]], gts: Sequence[Sequence[np.ndarray]]):
        """Add a batch of images."""
        if len(preds) != len(gts):
            raise ValueError(f"{len(preds)} prediction entries for {len(gts)} GT entries")
        total = np.zeros((len(self.iou_thresholds), 3), dtype=np.int64)
        for pred, gt in zip(preds, gts, strict=True):
            total += llamas_image_counts(pred, gt, self.iou_thresholds, self.width)
        self._add(total, len(gts))

    def compute(self) -> dict:
        return culane_summary(self.counts.cpu().numpy(), self.iou_thresholds)


class CurveLanesMetric(_CountsMetric):
    """The CurveLanes lane metric (``curvelanes``, CondLaneNet's ``LaneMetricCore``).

    ``update(preds, gts, ori_sizes)``: one entry per image; lanes are (N, 2) float arrays of
    (x, y) pixels of that image, whose size ``ori_sizes[i]`` is (height, width). ``compute()``
    returns ``{"0.5": {"TP", "FP", "FN", "Precision", "Recall", "F1"}, ...}`` with the
    reference's epsilon in P/R/F1 (``curvelanes_summary``), plus "mF1" with several thresholds.
    """

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (CURVELANES_IOU,),
        width: int = CURVELANES_LANE_WIDTH,
        **kwargs,
    ) -> None:
        super().__init__(iou_thresholds, width, **kwargs)

    def update(
        self,
        preds: Sequence[Sequence[np.ndarray]],
        gts: Sequence[Sequence[np.ndarray]],
        ori_sizes: Sequence[tuple[int, int]],
    ) -> None:
        """Add a batch of images."""
        if not len(preds) == len(gts) == len(ori_sizes):
            raise ValueError(
                f"got {len(preds)} prediction entries, {len(gts)} GT entries and "
                f"{len(ori_sizes)} image sizes"
            )
        total = np.zeros((len(self.iou_thresholds), 3), dtype=np.int64)
        for pred, gt, size in zip(preds, gts, ori_sizes, strict=True):
            height, width = (int(v) for v in size)
            total += curvelanes_image_counts(
                pred, gt, (height, width), self.iou_thresholds, self.width
            )
        self._add(total, len(gts))

    def compute(self) -> dict:
        result: dict = curvelanes_summary(self.counts.cpu().numpy(), self.iou_thresholds)
        if len(self.iou_thresholds) > 1:
            result["mF1"] = mean_f1(result)
        return result
