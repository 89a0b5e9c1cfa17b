"""Deployment: the trained network as ONNX plus what decoding needs, and running it with ONNX
Runtime.

``export_onnx`` writes ``model.onnx`` (fp32, input "img" (batch, 3, H, W) RGB in [0, 1], output
"predictions" (batch, N, D), dynamic batch) and ``decode.json`` (input size, cut height,
normalisation, the row width D, and what the model's numpy-only decoder needs: its plugin's
``decode_spec``, and the decoder module under "decoder"). ``OnnxLaneModel`` loads the pair,
refusing a missing or mismatched file, and decodes with that module (e.g.
``src/models/srlane/decode_np.py``), which is what a deployment copies. onnx / onnxruntime come
with the optional extra ``deploy`` and are imported only when used.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from src.lane import Lane
from src.models.registry import plugin_of
from src.run_dir import EXPORT_DIR, write_atomic

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
DECODE_JSON = "decode.json"
INPUT_NAME = "img"
OUTPUT_NAME = "predictions"
SPEC_KEYS = ("input_w", "input_h", "cut_height", "num_points")
# Exports written before decode.json named its decoder: SRLane's.
DEFAULT_DECODER = "src.models.srlane.decode_np"


class ExportError(ValueError):
    """An exported model that is missing, incomplete or does not match its decode.json or the
    config it is used with."""


def require_onnxruntime() -> Any:
    """onnxruntime, or an error naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            "ONNX Runtime is not installed: pip install -e '.[deploy]' (the optional extra "
            "'deploy': onnx and onnxruntime)"
        ) from err
    return onnxruntime


def decode_spec(model: nn.Module, cut_height: int, opset: int, row_width: int) -> dict[str, Any]:
    """What a deployment needs to turn an image into lanes with this network."""
    plugin = plugin_of(model)
    return {
        "input_w": int(model.img_w),
        "input_h": int(model.img_h),
        "cut_height": int(cut_height),
        "num_points": int(model.num_points),
        "row_width": int(row_width),  # D of the (batch, N, D) predictions
        "decoder": plugin.onnx_decoder,
        **plugin.decode_spec(model),
        "normalisation": "RGB, pixel / 255, no mean / std; rows from cut_height down, resized "
        "to input_w x input_h with cubic interpolation",
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "opset": int(opset),
    }


def export_onnx(model: nn.Module, out_dir: Path, cut_height: int, opset: int = 17) -> Path:
    """Write ``model.onnx`` (fp32, dynamic batch) and ``decode.json`` into ``out_dir``; returns
    the ONNX path. The model is copied to the CPU in eval mode; the caller's is left as it is."""
    require_onnxruntime()  # with the extra; a failed export would otherwise come late and vague
    net = copy.deepcopy(model).float().cpu().eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ONNX_FILE
    # Batch 2 traced so that no size-1 dimension gets specialised; the batch axis is dynamic.
    example = torch.rand(2, 3, net.img_h, net.img_w)
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False, no onnxscript needed) warns that it is
        # deprecated, and the tracer about Python loops over the fixed feature levels.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    with torch.no_grad():
        row_width = net(example).shape[-1]
    spec = decode_spec(net, cut_height, opset, row_width)
    write_atomic(out_dir / DECODE_JSON, json.dumps(spec, indent=2) + "\n")
    log.info("exported %s (opset %d) and %s", path, opset, out_dir / DECODE_JSON)
    return path


def export_paths(location: str | Path) -> tuple[Path, Path]:
    """(model.onnx, decode.json) from a folder holding both or from the .onnx file (its
    decode.json next to it); ExportError when either is missing."""
    location = Path(location).expanduser()
    onnx_path = location / ONNX_FILE if location.is_dir() else location
    json_path = onnx_path.parent / DECODE_JSON
    for path in (onnx_path, json_path):
        if not path.is_file():
            raise ExportError(
                f"no exported model: {path} does not exist. mode=export writes model.onnx and "
                f"decode.json into <run dir>/{EXPORT_DIR}; point predict.onnx at that folder"
            )
    return onnx_path, json_path


class OnnxLaneModel:
    """model.onnx + decode.json under ONNX Runtime (CPU): raw predictions, or lanes.

    Refuses (ExportError) a missing file, a decode.json without the needed keys, an ONNX input
    that is not (batch, 3, input_h, input_w) of decode.json, an output that is not
    (batch, N, row_width), and an ``input_size`` (width, height) other than the model's.
    """

    def __init__(
        self,
        location: str | Path,
        input_size: tuple[int, int] | None = None,
        threads: int | None = None,
    ) -> None:
        """``threads``: ONNX Runtime's intra-op threads (None: its default, all cores)."""
        ort = require_onnxruntime()
        self.onnx_path, json_path = export_paths(location)
        try:
            self.spec: dict[str, Any] = json.loads(json_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ExportError(f"{json_path} is not a valid decode JSON: {err}") from None
        self.decoder = importlib.import_module(self.spec.get("decoder", DEFAULT_DECODER))
        self.spec.setdefault("row_width", 4 + self.spec.get("num_points", 0))  # older exports
        needed = (*SPEC_KEYS, *self.decoder.DECODE_KEYS)
        missing = [key for key in needed if key not in self.spec]
        if missing:
            raise ExportError(f"{json_path} lacks {missing}: re-export with mode=export")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # no warnings about unused initialisers
        if threads:
            options.intra_op_num_threads = threads
        # ONNX Runtime's threads busy-wait after each run by default, taking the cores from
        # whatever runs next (the torch side of a comparison, the video writer).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own Fail / InvalidGraph types
            raise ExportError(f"{self.onnx_path} is not a loadable ONNX model: {err}") from None
        self._check_shapes(json_path, input_size)
        self.input_name = self.session.get_inputs()[0].name

    def _check_shapes(self, json_path: Path, input_size: tuple[int, int] | None) -> None:
        spec = self.spec
        expected = (spec["input_w"], spec["input_h"])
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = list(inputs[0].shape) if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or shape[1:] != [3, expected[1], expected[0]]:
            raise ExportError(
                f"{self.onnx_path} takes {[i.shape for i in inputs]} but {json_path} says "
                f"(batch, 3, {expected[1]}, {expected[0]}): the files come from different "
                "exports; re-export both with mode=export"
            )
        out = list(outputs[0].shape)
        # The exporter may leave the last dimension symbolic (a concatenation): checked when known.
        if len(out) != 3 or (isinstance(out[2], int) and out[2] != spec["row_width"]):
            raise ExportError(
                f"{self.onnx_path} outputs {out}, not (batch, N, {spec['row_width']}) as "
                f"{json_path} says: re-export both with mode=export"
            )
        if input_size is not None and tuple(input_size) != expected:
            raise ExportError(
                f"{self.onnx_path} takes {expected[0]}x{expected[1]} images but the config "
                f"resizes to {input_size[0]}x{input_size[1]} (dataset.img_w x dataset.img_h): "
                "use the config the model was trained with, or re-export"
            )

    def run(self, img: np.ndarray) -> np.ndarray:
        """Raw predictions (B, N, D) for inputs (B, 3, H, W) float32 RGB in [0, 1]."""
        img = np.ascontiguousarray(img, dtype=np.float32)
        return self.session.run(None, {self.input_name: img})[0]

    def lanes(
        self, img: np.ndarray, cut_heights: Sequence[int], ori_heights: Sequence[int]
    ) -> list[list[Lane]]:
        """Lanes per image, as the torch model's ``decode`` gives them."""
        args = self.decoder.decode_args(self.spec)
        decoded = self.decoder.decode_lanes(self.run(img), cut_heights, ori_heights, **args)
        return [[Lane(points, score=score) for points, score in image] for image in decoded]

    def __call__(self, batch: dict[str, Any]) -> list[list[Lane]]:
        """A detector for the evaluation / predict passes: a collated batch -> lanes."""
        metas = batch["meta"]
        img = batch["img"].detach().cpu().float().numpy()
        return self.lanes(img, [m["cut_height"] for m in metas], [m["ori_size"][0] for m in metas])
