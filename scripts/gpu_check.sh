#!/usr/bin/env bash
# GPU acceptance run: one prepared script, one summary table at the end.
#
#   bash scripts/gpu_check.sh            # on one CUDA GPU: about 6 minutes (budget 7 min)
#   bash scripts/gpu_check.sh --cpu      # the same steps tiny on the CPU (CI: proves the script)
#
# Steps (each in its own process, bounded by a time limit; a failed step is a FAIL row and the
# others still run). The order is chosen so that the time-hungry torch.compile part comes last
# and gets whatever the budget has left:
#   d/e  scripts/bench_model.py --train-batch-sizes: training-step time at batch 8 and 40
#        (16-mixed) and the peak GPU memory at the reference batch 40 (800x320);
#   d    data-loader samples/s over the synthetic train split at 800x320 for several
#        num_workers, through the training input path (uint8 hand-over, device_batches:
#        copy, image augmentation where dataset.augment_on puts it, float conversion), then
#        again from the decoded cache, against the GPU step: is the GPU starved, from which
#        num_workers not (loader rate / step rate);
#   b    synthetic training runs (python -m src.main) at 800x320 under 16-mixed and bf16-mixed:
#        finite losses, val F1 (from the run's metrics.json / metrics.csv), seconds from the
#        run's last result (metrics.json) to its exit;
#   c    SIGKILL and resume under 16-mixed with trainer.deterministic=true: an uninterrupted
#        run, and a run killed (kill -9) right after its first periodic checkpoint, rerun with
#        the same command (same run_name, resume=auto) once the killed run's DataLoader
#        workers are gone; max abs difference of the final weights (CUDA's grid_sample
#        backward is not deterministic: the number is reported);
#   a    scripts/bench_model.py: fp32 / fp16 / bf16 autocast, eager and torch.compile,
#        batch 1 and 8 at 800x320: FPS of forward + decode, max abs prediction diff vs fp32.
# --cpu: 320x128 training on a tiny generated dataset, a few iterations, fp32 and bf16 only
# (fp16 training is refused on the CPU: 16-mixed rows are SKIP, step c runs 32-true, with one
# DataLoader worker), the benchmark at 160x64 with torch.compile's aot_eager backend
# (inductor's C++ build takes minutes on a small CPU), no peak GPU memory.
#
# Options / environment:
#   --out-dir DIR  or GPU_CHECK_OUT_DIR   where everything goes (default outputs/gpu_check);
#                                         its runs/ logs/ json/ status/ are replaced each time
#   --budget-s S   or GPU_CHECK_BUDGET_S  wall-time budget (default 420 GPU, 300 CPU): a step
#                                         still running at its end is stopped (TIMEOUT rows),
#                                         one that would start after it is SKIP
#   OUT                                   if set, the table, the rows as JSON, all logs in one
#                                         text file and a tarball of logs and run files (no
#                                         checkpoints) are copied there (4 files)
#   PYTHON                                the interpreter (default python3)
#   SRLANE_CACHE                          where the synthetic dataset is generated (default
#                                         ~/.cache/srlane-launcher, or DIR/cache if $HOME is
#                                         not writable)
# Output: DIR/gpu_check.md (the table), DIR/gpu_check.json (its rows), DIR/logs/*.log,
# DIR/json/*.json (raw figures), DIR/runs/<name>/ (the training runs). Exit status: 0 when no
# row is FAIL, 1 when one is, 2 when the table could not be made.
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

MODE=gpu
OUT_DIR=${GPU_CHECK_OUT_DIR:-outputs/gpu_check}
BUDGET_S=${GPU_CHECK_BUDGET_S:-}
while (($#)); do
    case $1 in
    --cpu) MODE=cpu ;;
    --out-dir) OUT_DIR=${2:?--out-dir needs a directory}; shift ;;
    --budget-s) BUDGET_S=${2:?--budget-s needs seconds}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-python3}
# The checkout must be importable as `src` (installed with pip install -e ., or PYTHONPATH).
case ":${PYTHONPATH:-}:" in
*":$ROOT:"*) ;;
*) export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$ROOT" ;;
esac
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd) || exit 2
RUNS=$OUT_DIR/runs LOGS=$OUT_DIR/logs JSON=$OUT_DIR/json STATUS=$OUT_DIR/status
rm -rf "$RUNS" "$LOGS" "$JSON" "$STATUS" "$OUT_DIR/gpu_check.md" "$OUT_DIR/gpu_check.json"
mkdir -p "$RUNS" "$LOGS" "$JSON" "$STATUS"
if [[ -z ${SRLANE_CACHE:-} && ! -w ${HOME:-/nonexistent} ]]; then
    export SRLANE_CACHE=$OUT_DIR/cache
fi

T0=$(date +%s)
if [[ $MODE == gpu ]]; then BUDGET_S=${BUDGET_S:-420}; else BUDGET_S=${BUDGET_S:-300}; fi
DEADLINE=$((T0 + BUDGET_S))

if [[ $MODE == gpu ]]; then
    IMG_W=800 IMG_H=320
    COMMON=(
        trainer.accelerator=gpu dataset.img_w=800 dataset.img_h=320 model.nms_thres=50
        trainer.progress=false trainer.num_val_images=2
    )
    B_WORKERS=8 C_WORKERS=8
    B_PRECISIONS=(16-mixed bf16-mixed)
    B_SKIP=()
    B_ITERS=(
        trainer.total_iter=400 trainer.eval_every_iters=200 trainer.checkpoint_every_iters=200
        trainer.log_every_iters=50 scheduler.warmup_iters=50
    )
    C_PRECISION=16-mixed
    C_ITERS=(
        trainer.total_iter=60 trainer.checkpoint_every_iters=30 trainer.eval_every_iters=0
        trainer.limit_val_batches=2 trainer.log_every_iters=10 scheduler.warmup_iters=10
    )
    STEP_ARGS=(
        --device cuda --img-w 800 --img-h 320 --train-batch-sizes 8 40
        --train-precision 16-mixed --train-warmup 5 --train-repeats 20
    )
    LOADER=(--batch 8 --workers 0 4 8 16 --min-batches 12)
    A_ARGS=(
        --device cuda --img-w 800 --img-h 320 --batch-sizes 1 8 --precisions fp16 bf16 fp32
        --compile --warmup 10 --repeats 30
    )
    CAP_STEP=90 CAP_LOADER=120 CAP_B=100 CAP_C=150 CAP_A=300
else
    IMG_W=320 IMG_H=128
    COMMON=(
        trainer.accelerator=cpu dataset.img_w=320 dataset.img_h=128 model.nms_thres=20
        "dataset.root=$OUT_DIR/data/synthetic-tiny" dataset.synthetic.num_train=16
        dataset.synthetic.num_val=4 dataset.synthetic.num_test=2 dataset.synthetic.width=640
        dataset.synthetic.height=360 dataset.cut_height=80 dataset.batch_size=2
        dataset.eval_batch_size=2 trainer.progress=false trainer.num_val_images=1
    )
    # Step c with a DataLoader worker, as on the GPU: the killed run's worker outlives it.
    B_WORKERS=0 C_WORKERS=1
    B_PRECISIONS=(bf16-mixed)
    B_SKIP=(16-mixed)
    B_ITERS=(
        trainer.total_iter=4 trainer.eval_every_iters=0 trainer.checkpoint_every_iters=2
        trainer.log_every_iters=2 scheduler.warmup_iters=2
    )
    C_PRECISION=32-true
    C_ITERS=(
        trainer.total_iter=4 trainer.checkpoint_every_iters=2 trainer.eval_every_iters=0
        trainer.limit_val_batches=1 trainer.log_every_iters=2 scheduler.warmup_iters=2
    )
    STEP_ARGS=(
        --device cpu --img-w 320 --img-h 128 --train-batch-sizes 2 4
        --train-precision 32-true --train-warmup 1 --train-repeats 2
    )
    LOADER=(--batch 2 --workers 0 1 2 --min-batches 3)
    A_ARGS=(
        --device cpu --img-w 160 --img-h 64 --batch-sizes 1 2 --precisions fp32 bf16
        --compile --compile-backend aot_eager --warmup 1 --repeats 2
    )
    CAP_STEP=120 CAP_LOADER=120 CAP_B=150 CAP_C=240 CAP_A=180
fi

say() { echo "[gpu_check $(($(date +%s) - T0))s] $*"; }

# Seconds left for a step capped at $1 (0 when the budget is spent).
time_left() {
    local left=$((DEADLINE - $(date +%s)))
    ((left < 0)) && left=0
    echo $((left < $1 ? left : $1))
}

# write_status NAME STATE RC WALL LIMIT [NOTE]
write_status() {
    printf '{"state": "%s", "rc": %s, "wall_s": %s, "limit_s": %s, "note": "%s"}\n' \
        "$2" "$3" "$4" "$5" "${6:-}" >"$STATUS/$1.json"
    say "$1: $2 (rc $3, ${4}s of ${5}s)${6:+ $6}"
}

# run_step NAME CAP_S COMMAND...: run with a time limit, output to logs/NAME.log.
run_step() {
    local name=$1 cap=$2
    shift 2
    local limit
    limit=$(time_left "$cap")
    if ((limit < 5)); then
        write_status "$name" skip null 0 0 "time budget of ${BUDGET_S}s used up"
        return 1
    fi
    say "$name: starting (limit ${limit}s)"
    local start rc state
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    case $rc in
    0) state=ok ;;
    124 | 137) state=timeout ;;
    *) state=fail ;;
    esac
    write_status "$name" "$state" "$rc" $(($(date +%s) - start)) "$limit"
    return "$rc"
}

# main_args RUN_NAME NUM_WORKERS: the command line of a training run into the array CMD.
main_args() {
    CMD=("$PY" -m src.main "run_name=$1" "hydra.run.dir=$RUNS/$1" "${COMMON[@]}"
        "dataset.num_workers=$2")
}

step_d_e_train_step() {
    run_step d_step "$CAP_STEP" "$PY" scripts/bench_model.py --skip-latency \
        --json "$JSON/d_step.json" "${STEP_ARGS[@]}"
}

step_d_loader() {
    run_step d_loader "$CAP_LOADER" "$PY" - --json "$JSON/d_loader.json" "${LOADER[@]}" \
        --cache-dir "$OUT_DIR/decoded-cache" -- "${COMMON[@]}" <<'PY'
"""Data-loader samples/s over the synthetic train split (training pipeline, augmentation on)
for several num_workers, with the launcher's loader settings (collate, pin_memory) and its
input path: uint8 hand-over, then device_batches (copy to the device, image augmentation there
when dataset.augment_on resolves to device, float conversion), synchronised before the clock
stops. Then the same with the decoded cache (dataset.decoded_cache=true)."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from src.config import register_configs
from src.data import (
    EpochSampler,
    build_dataset,
    collate_lanes,
    configure_training_input,
    device_batches,
)
from src.models.registry import plugin_for

parser = argparse.ArgumentParser()
parser.add_argument("--json", required=True)
parser.add_argument("--batch", type=int, required=True)
parser.add_argument("--workers", type=int, nargs="+", required=True)
parser.add_argument("--min-batches", type=int, default=12)
parser.add_argument("--cache-dir", required=True, help="for the decoded cache; removed at the end")
parser.add_argument("overrides", nargs="*")
args = parser.parse_args()

register_configs()
with initialize_config_dir(config_dir=str(Path("conf").resolve()), version_base="1.3"):
    cfg = compose(config_name="config", overrides=args.overrides)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
out: dict = {"batch": args.batch, "img_w": cfg.dataset.img_w, "img_h": cfg.dataset.img_h}


def rate(dataset, workers: int) -> dict:
    per_epoch = len(dataset) // args.batch
    warm = min(workers + 1, per_epoch - 1)  # until every worker has delivered a batch
    timed = max(1, min(max(4 * workers, args.min_batches), per_epoch - warm))
    loader = DataLoader(
        dataset,
        batch_size=args.batch,
        sampler=EpochSampler(len(dataset), shuffle=True, seed=0),
        num_workers=workers,
        collate_fn=collate_lanes,
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
    )
    start = time.perf_counter()
    first_s = 0.0
    for index, _ in enumerate(device_batches(loader, device)):
        if index == 0:
            first_s = time.perf_counter() - start
        if index == warm - 1 or (warm == 0 and index == 0):
            if device.type == "cuda":
                torch.cuda.synchronize()
            tick = time.perf_counter()
        if index == warm + timed - 1:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - tick
    del loader
    return {
        "workers": workers,
        "samples_per_s": timed * args.batch / elapsed,
        "first_batch_s": first_s,
        "timed_batches": timed,
    }


images_root = None
for key, cache in (("loaders", False), ("cache_loaders", True)):
    if cache:  # the same images (the generated dataset stays where it is), a cache of our own
        cfg.dataset.root = images_root
        cfg.dataset.cache_dir = args.cache_dir
    cfg.dataset.decoded_cache = cache
    start = time.perf_counter()
    targets = plugin_for(cfg.model._target_).training_targets  # the model's, as a run builds them
    dataset = build_dataset(cfg.dataset, cfg.dataset.train_split, True, 0, targets)
    images_root = str(dataset.root)
    ready_s = time.perf_counter() - start
    out["augment_on"] = configure_training_input(dataset, cfg.dataset.augment_on, device)
    out["samples"] = len(dataset)
    out[f"{key}_ready_s"] = ready_s
    print(
        f"train split ({'decoded cache' if cache else 'decoding'}): {len(dataset)} samples at "
        f"{cfg.dataset.img_w}x{cfg.dataset.img_h}, ready in {ready_s:.1f} s, "
        f"dataset.augment_on={out['augment_on']} ({device})"
    )
    out[key] = []
    for workers in args.workers:
        row = rate(dataset, workers)
        out[key].append(row)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(
            f"num_workers={workers}: {row['samples_per_s']:.1f} samples/s "
            f"({row['timed_batches']} batches of {args.batch} timed; first batch after "
            f"{row['first_batch_s']:.2f} s)"
        )
shutil.rmtree(args.cache_dir, ignore_errors=True)
PY
}

step_b_train() {
    local precision=$1 name=b_$1 rc
    main_args "$name" "$B_WORKERS"
    run_step "$name" "$CAP_B" "${CMD[@]}" "trainer.precision=$precision" "${B_ITERS[@]}"
    rc=$?
    # Seconds from the run's last result (metrics.json) to its exit: DataLoader workers left to
    # the interpreter's exit cost 5 s each there under torch < 2.13 (src/data/loader_workers.py).
    "$PY" -c 'import json, os, sys, time
print(json.dumps({"exit_s": time.time() - os.path.getmtime(sys.argv[1])}))' \
        "$RUNS/$name/metrics.json" >"$JSON/${name}_exit.json" 2>/dev/null
    return "$rc"
}

# c: uninterrupted run; run killed right after its first periodic checkpoint; the same command
# again (resume=auto continues from last.ckpt).
step_c_resume() {
    local c_deadline=$(($(date +%s) + $(time_left "$CAP_C")))
    local args=("trainer.precision=$C_PRECISION" trainer.deterministic=true "${C_ITERS[@]}")
    local limit start rc
    export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
    main_args c_straight "$C_WORKERS"
    limit=$((c_deadline - $(date +%s)))
    run_step c_straight "$limit" "${CMD[@]}" "${args[@]}" || return 1

    main_args c_resumed "$C_WORKERS"
    limit=$((c_deadline - $(date +%s)))
    if ((limit < 5)); then
        write_status c_killed skip null 0 0 "time budget used up"
        return 1
    fi
    say "c_killed: starting, SIGKILL after its first 'saved ... last.ckpt' (limit ${limit}s)"
    start=$(date +%s)
    : >"$LOGS/c_killed.log" # exists before the first poll
    "${CMD[@]}" "${args[@]}" >>"$LOGS/c_killed.log" 2>&1 &
    local pid=$! killed=0 workers="" kid waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if grep -qsE 'saved .*last\.ckpt at iteration' "$LOGS/c_killed.log"; then
            workers=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ') # its DataLoader workers
            kill -KILL "$pid"
            killed=1
            break
        fi
        if (($(date +%s) >= c_deadline)); then
            kill -KILL "$pid"
            break
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null # no "Killed" line from bash
    rc=$?
    # Forked DataLoader workers outlive the killed process (their watchdog ends them within
    # ~5 s) and share its open files, the run dir's lock included: the rerun waits for them,
    # at most 15 s, then they are killed too.
    for kid in $workers; do
        while kill -0 "$kid" 2>/dev/null && ((waited < 150)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$kid" 2>/dev/null
    done
    if ((killed)); then
        local note="SIGKILL sent; $(wc -w <<<"$workers") worker process(es) of it gone"
        write_status c_killed ok "$rc" $(($(date +%s) - start)) "$limit" \
            "$note after $((waited / 10)).$((waited % 10)) s"
    elif (($(date +%s) >= c_deadline)); then
        write_status c_killed timeout "$rc" $(($(date +%s) - start)) "$limit"
        return 1
    else
        write_status c_killed fail "$rc" $(($(date +%s) - start)) "$limit" \
            "ended before any checkpoint line"
        return 1
    fi
    limit=$((c_deadline - $(date +%s)))
    run_step c_rerun "$limit" "${CMD[@]}" "${args[@]}"
}

step_a_bench() {
    run_step a_bench "$CAP_A" "$PY" scripts/bench_model.py --skip-latency \
        --json "$JSON/a_bench.json" "${A_ARGS[@]}"
}

say "mode $MODE, budget ${BUDGET_S}s, output $OUT_DIR, $($PY --version 2>&1)"
step_d_e_train_step
step_d_loader
for precision in "${B_PRECISIONS[@]}"; do step_b_train "$precision"; done
step_c_resume
step_a_bench
TOTAL_S=$(($(date +%s) - T0))

# The table: every figure is read back from the steps' files.
GPU_CHECK_MODE=$MODE GPU_CHECK_TOTAL_S=$TOTAL_S GPU_CHECK_BUDGET_S=$BUDGET_S \
    GPU_CHECK_B_SKIP="${B_SKIP[*]}" GPU_CHECK_B_PRECISIONS="${B_PRECISIONS[*]}" \
    GPU_CHECK_B_WORKERS=$B_WORKERS \
    GPU_CHECK_C_PRECISION=$C_PRECISION GPU_CHECK_IMG="${IMG_W}x${IMG_H}" \
    "$PY" - "$OUT_DIR" <<'PY' 2>"$LOGS/report.log"
"""Assemble the summary table from the steps' JSON files, run dirs, logs and statuses."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

out_dir = Path(sys.argv[1])
runs, logs, data, status_dir = (out_dir / n for n in ("runs", "logs", "json", "status"))
mode = os.environ["GPU_CHECK_MODE"]
img = os.environ["GPU_CHECK_IMG"]
rows: list[dict[str, Any]] = []


def load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def status(name: str) -> dict[str, Any]:
    return load(status_dir / f"{name}.json") or {"state": "not run", "rc": None, "wall_s": 0}


def why(name: str) -> str:
    """A step's state, and the last error-looking line of its log when it failed."""
    st = status(name)
    text = f"step {name}: {st['state']}"
    if st.get("rc") not in (None, 0):
        text += f" (rc {st['rc']})"
    if st.get("note"):
        text += f", {st['note']}"
    log = logs / f"{name}.log"
    if st["state"] != "ok" and log.is_file():
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "Error" in ln or "error" in ln or "FAILED" in ln]
        if errors or lines:
            text += f": {(errors or lines)[-1][:160]}"
    return text


def add(row_id: str, check: str, value: float | None, unit: str, state: str, detail: str) -> None:
    if state == "ok" and (value is None or not math.isfinite(value)):
        state = "FAIL"
        detail = f"non-finite value; {detail}"
    rows.append(
        {
            "id": row_id,
            "check": check,
            "value": value,
            "unit": unit,
            "status": state,
            "detail": detail,
        }
    )


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def train_metrics(run: Path) -> dict[str, Any]:
    """Losses and timings from metrics.csv, the validation summary from metrics.json."""
    result: dict[str, Any] = {"summary": load(run / "metrics.json")}
    losses, batch_s, data_s = [], [], []
    if (run / "metrics.csv").is_file():
        with open(run / "metrics.csv") as f:
            for rec in csv.DictReader(f):
                if rec.get("train/loss"):
                    losses.append(float(rec["train/loss"]))
                    batch_s.append(float(rec["time/batch_s"]))
                    data_s.append(float(rec["time/data_s"]))
    result["losses"] = losses
    # Per-iteration times without the first logged row (start-up, cuDNN autotuning).
    steady = slice(1, None) if len(batch_s) > 1 else slice(None)
    result["it_ms"] = 1e3 * sum(batch_s[steady]) / max(len(batch_s[steady]), 1)
    result["data_ms"] = 1e3 * sum(data_s[steady]) / max(len(data_s[steady]), 1)
    return result


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k.removeprefix("_orig_mod."): v for k, v in state["model"].items()}


# ----------------------------------------------------------------------------- a: inference
bench = load(data / "a_bench.json")
a_ok = status("a_bench")["state"] == "ok"
precisions = ["fp32", "fp16", "bf16"] if mode == "gpu" else ["fp32", "bf16"]
if mode == "cpu":
    add("a.fp16", "inference fp16 autocast", None, "", "SKIP", "CPU mode: fp32 and bf16 only")
if bench:
    meta = bench["meta"]
    res = bench["results"]
    add(
        "a.gmac",
        f"SRLane {meta['backbone']} at {meta['img_w']}x{meta['img_h']}, batch 1",
        res.get("gmac"),
        "GMAC",
        "ok",
        f"{res.get('params_m', float('nan')):.3f} M parameters; "
        f"{meta['device']}, torch {meta['torch']}",
    )
    found = {(r["mode"], r["precision"], r["batch"]): r for r in bench["inference"]}
    batches = sorted({r["batch"] for r in bench["inference"]}) or [1]
    for mode_name in ("eager", "compile"):
        for precision in precisions:
            for batch in batches:
                row_id = f"a.{mode_name}.{precision}.b{batch}"
                check = (
                    f"FPS forward+decode, {mode_name} {precision}, batch {batch}, "
                    f"{meta['img_w']}x{meta['img_h']}"
                )
                r = found.get((mode_name, precision, batch))
                if r is None:
                    errors = bench.get("errors", [])
                    cut = status("a_bench")["state"] in ("timeout", "skip") and not errors
                    add(
                        row_id,
                        check,
                        None,
                        "FPS",
                        "TIMEOUT" if cut else "FAIL",
                        f"not measured: {errors[-1] if errors else why('a_bench')}",
                    )
                    continue
                first = f", first call {r['first_call_s']:.1f} s" if mode_name == "compile" else ""
                add(
                    row_id,
                    check,
                    r["fps"],
                    "FPS",
                    "ok",
                    f"forward {r['forward_ms']:.2f} ms, forward+decode {r['e2e_ms']:.2f} ms, "
                    f"max abs diff vs fp32 {r['max_abs_diff_vs_fp32']:.3g}{first}",
                )
    for precision in precisions:
        diffs = [r for r in bench["inference"] if r["precision"] == precision]
        detail = ", ".join(
            f"{r['mode']} b{r['batch']} {r['max_abs_diff_vs_fp32']:.3g}" for r in diffs
        )
        add(
            f"a.diff.{precision}",
            f"max abs diff of raw predictions, {precision} vs eager fp32",
            max((r["max_abs_diff_vs_fp32"] for r in diffs), default=None),
            "",
            "ok" if diffs else "FAIL",
            detail or why("a_bench"),
        )
        if precision == "fp32" and mode == "gpu" and meta.get("cudnn_allow_tf32"):
            rows[-1]["detail"] += " (fp32 = torch defaults: cuDNN convolutions may use TF32)"
else:
    add("a.bench", "inference benchmark", None, "", "FAIL", why("a_bench"))
if bench and not a_ok:
    rows.append(
        {
            "id": "a.note",
            "check": "inference benchmark step",
            "value": None,
            "unit": "",
            "status": "WARN",
            "detail": why("a_bench"),
        }
    )

# ------------------------------------------------------------------------ b: training runs
for precision in os.environ["GPU_CHECK_B_SKIP"].split():
    add(
        f"b.{precision}",
        f"synthetic training {precision}",
        None,
        "",
        "SKIP",
        "fp16 mixed-precision training is refused on the CPU",
    )
for precision in os.environ["GPU_CHECK_B_PRECISIONS"].split():
    name = f"b_{precision}"
    run = runs / name
    st = status(name)
    m = train_metrics(run)
    summary = m["summary"] or {}
    final = summary.get("final_validation") or {}
    f1 = final.get("val/F1")
    steps = summary.get("final_step")
    ok = st["state"] == "ok" and f1 is not None
    check = f"synthetic training {precision}, {steps or '?'} it at {img}: final val F1"
    detail = (
        f"best F1 {summary.get('best_metric', float('nan')):.4f} at iteration "
        f"{summary.get('best_step')}; "
        + ", ".join(
            f"{k[4:]} {v:.4f}" for k, v in final.items() if k.startswith("val/") and k != "val/F1"
        )
        if ok
        else why(name)
    )
    add(f"b.{precision}.f1", check, f1, "F1", "ok" if ok else "FAIL", detail)
    losses = m["losses"]
    finite = bool(losses) and all(math.isfinite(v) for v in losses)
    add(
        f"b.{precision}.loss",
        f"training loss {precision}: last logged (all finite?)",
        losses[-1] if losses else None,
        "",
        "ok" if finite and st["state"] == "ok" else "FAIL",
        f"{len(losses)} logged rows, first {losses[0]:.4f}, all finite: {finite}"
        if losses
        else why(name),
    )
    exit_s = (load(data / f"{name}_exit.json") or {}).get("exit_s")
    add(
        f"b.{precision}.exit_s",
        f"training {precision}: seconds from its last result (metrics.json) to process exit",
        exit_s,
        "s",
        "ok" if exit_s is not None and exit_s < 15 else "FAIL",
        f"num_workers {os.environ.get('GPU_CHECK_B_WORKERS', '?')}: a worker still alive at exit "
        "costs 5 s under torch < 2.13"
        if exit_s is not None
        else why(name),
    )
    add(
        f"b.{precision}.it_ms",
        f"training iteration time {precision}",
        m["it_ms"] if losses else None,
        "ms/it",
        "ok" if losses else "FAIL",
        f"data wait {m['data_ms']:.1f} ms/it; run wall {st.get('wall_s')} s (start-up, "
        "validation and checkpoints included)"
        if losses
        else why(name),
    )

# -------------------------------------------------------------------- c: SIGKILL and resume
cp = os.environ["GPU_CHECK_C_PRECISION"]
note = "" if cp == "16-mixed" else f" ({cp}: fp16 training is refused on the CPU)"
killed_log = logs / "c_killed.log"
killed_step = None
if killed_log.is_file():
    for line in killed_log.read_text(errors="replace").splitlines():
        if "saved" in line and "last.ckpt at iteration" in line:
            killed_step = int(line.rsplit("iteration", 1)[1].split()[0])
            break
stk = status("c_killed")
add(
    "c.kill",
    f"SIGKILL right after the first periodic checkpoint{note}",
    killed_step,
    "iteration",
    "ok" if stk["state"] == "ok" and stk.get("rc") == 137 and killed_step else "FAIL",
    f"kill -9 after the log line 'saved ... last.ckpt at iteration {killed_step}', exit status "
    f"{stk.get('rc')}; {stk.get('note')}"
    if stk["state"] == "ok"
    else why("c_killed"),
)
straight, resumed = runs / "c_straight", runs / "c_resumed"
try:
    a_w = model_weights(straight / "checkpoints" / "last.ckpt")
    b_w = model_weights(resumed / "checkpoints" / "last.ckpt")
    if a_w.keys() != b_w.keys():
        raise ValueError("the two checkpoints hold different parameter names")
    diff = max(
        ((a_w[k].float() - b_w[k].float()).abs().max().item() if a_w[k].numel() else 0.0)
        for k in a_w
    )
    rerun_log = (logs / "c_rerun.log").read_text(errors="replace")
    resumed_from = "resumed from" in rerun_log
    s_sum = load(straight / "metrics.json") or {}
    r_sum = load(resumed / "metrics.json") or {}
    same_step = s_sum.get("final_step") == r_sum.get("final_step")
    f1s = [((x.get("final_validation") or {}).get("val/F1")) for x in (s_sum, r_sum)]
    ok = status("c_rerun")["state"] == "ok" and resumed_from and same_step
    add(
        "c.resume",
        f"resumed vs uninterrupted final weights, max abs diff{note}",
        diff,
        "",
        "ok" if ok else "FAIL",
        f"rerun log says 'resumed from': {resumed_from}; final iteration {s_sum.get('final_step')}"
        f" vs {r_sum.get('final_step')}; val F1 {f1s[0]} vs {f1s[1]}; deterministic=true"
        + (
            "; CUDA grid_sample backward is not deterministic, a small difference is expected"
            if mode == "gpu"
            else "; expected 0 on the CPU"
        ),
    )
except Exception as err:  # reported as a row
    add(
        "c.resume",
        f"resumed vs uninterrupted final weights{note}",
        None,
        "",
        "FAIL",
        f"{type(err).__name__}: {err}; "
        + "; ".join(why(n) for n in ("c_straight", "c_killed", "c_rerun")),
    )

# ------------------------------------------------------------------- d / e: loader vs step
loader = load(data / "d_loader.json")
step = load(data / "d_step.json")
train_rows = (step or {}).get("train", [])
# Each path: (row id part, what it reads, its loader rows).
paths = [
    (key, label, loader[name])
    for key, label, name in (
        ("", "decoding each epoch", "loaders"),
        ("cache.", "decoded cache", "cache_loaders"),
    )
    if loader and loader.get(name)
]
for key, label, rows_of in paths:
    for r in rows_of:
        add(
            f"d.loader.{key}nw{r['workers']}",
            f"data loader + device input, num_workers={r['workers']}, batch {loader['batch']}, "
            f"{loader['img_w']}x{loader['img_h']} train pipeline, {label}",
            r["samples_per_s"],
            "samples/s",
            "ok",
            f"dataset.augment_on={loader['augment_on']}; {r['timed_batches']} batches "
            f"timed; first batch after {r['first_batch_s']:.2f} s",
        )
if len(paths) < 2:
    add("d.loader", "data loader samples/s (both paths)", None, "", "FAIL", why("d_loader"))
for r in train_rows:
    detail = f"{r['samples_per_s']:.1f} samples/s, loss finite: {r['finite_loss']}"
    if r.get("peak_mem_gib") is not None:
        detail += f", peak memory {r['peak_mem_gib']:.2f} GiB"
    add(
        f"d.step.b{r['batch']}",
        f"training step {r['precision']}, batch {r['batch']} "
        f"({'GPU' if mode == 'gpu' else 'CPU'}, fixed batch, no data loading)",
        r["step_ms"],
        "ms",
        "ok" if r["finite_loss"] else "FAIL",
        detail,
    )
if not train_rows:
    add("d.step", "training step time", None, "", "FAIL", why("d_step"))
for key, label, rows_of in paths:
    for r in train_rows:
        needed = r["samples_per_s"]
        fed = [x for x in rows_of if x["samples_per_s"] >= needed]
        best = max(rows_of, key=lambda x: x["samples_per_s"])
        starved = [x["workers"] for x in rows_of if x["samples_per_s"] < needed]
        check = (
            f"is the {'GPU' if mode == 'gpu' else 'model'} starved at batch {r['batch']}, "
            f"{label}? (smallest num_workers that keeps up; loader rate / step rate)"
        )
        if fed:
            first = min(fed, key=lambda x: x["workers"])
            add(
                f"d.starved.{key}b{r['batch']}",
                check,
                first["workers"],
                "num_workers",
                "ok",
                f"step needs {needed:.3g} samples/s; "
                + (f"starved at num_workers {starved}, " if starved else "never starved, ")
                + f"fed from num_workers={first['workers']} "
                f"({first['samples_per_s']:.0f} samples/s, "
                f"{first['samples_per_s'] / needed:.2f}x the step)",
            )
        else:
            rows.append(
                {
                    "id": f"d.starved.{key}b{r['batch']}",
                    "check": check,
                    "value": None,
                    "unit": "num_workers",
                    "status": "WARN",
                    "detail": f"starved at every tested num_workers: step needs {needed:.3g}"
                    f" samples/s, best loader {best['samples_per_s']:.0f} samples/s "
                    f"({best['samples_per_s'] / needed:.2f}x the step) at "
                    f"num_workers={best['workers']}",
                }
            )
if mode == "gpu":
    ref = [r for r in train_rows if r["batch"] == 40]
    if ref and ref[0].get("peak_mem_gib") is not None:
        r = ref[0]
        add(
            "e.peak_mem.b40",
            f"peak GPU memory of a training step, batch 40, {r['precision']}, "
            "800x320 (torch.cuda.max_memory_allocated)",
            r["peak_mem_gib"],
            "GiB",
            "ok",
            f"max reserved {r['peak_reserved_gib']:.2f} GiB; step {r['step_ms']:.1f} ms",
        )
    else:
        add("e.peak_mem.b40", "peak GPU memory, batch 40", None, "GiB", "FAIL", why("d_step"))
else:
    add(
        "e.peak_mem",
        "peak GPU memory of a training step at batch 40",
        None,
        "GiB",
        "SKIP",
        "no CUDA in CPU mode",
    )

# ------------------------------------------------------------------------------ wall times
for path in sorted(status_dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
    st = load(path) or {}
    add(
        f"wall.{path.stem}",
        f"wall time of step {path.stem} ({st.get('state')})",
        float(st.get("wall_s") or 0),
        "s",
        "ok" if st.get("state") == "ok" else ("SKIP" if st.get("state") == "skip" else "FAIL"),
        f"limit {st.get('limit_s')} s" + (f", {st['note']}" if st.get("note") else ""),
    )
total = float(os.environ["GPU_CHECK_TOTAL_S"])
add(
    "wall.total",
    "wall time of all steps",
    total,
    "s",
    "ok",
    f"budget {os.environ['GPU_CHECK_BUDGET_S']} s",
)

order = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "wall": 5}
rows.sort(key=lambda r: order.get(r["id"].split(".")[0], 9))
device = (bench or step or {}).get("meta", {}).get("device", "?")
head = f"# gpu_check ({mode} mode): {device}, torch {torch.__version__}, {total:.0f} s wall\n\n"
lines = ["| id | check | value | unit | status | detail |", "| --- | --- | --- | --- | --- | --- |"]
for r in rows:
    cells = [r["id"], r["check"], fmt(r["value"]), r["unit"], r["status"], r["detail"]]
    lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
failed = sum(r["status"] == "FAIL" for r in rows)
foot = f"\n{len(rows)} rows, {failed} FAIL\n"
table = head + "\n".join(lines) + "\n" + foot
(out_dir / "gpu_check.md").write_text(table)
(out_dir / "gpu_check.json").write_text(
    json.dumps({"mode": mode, "device": device, "total_s": total, "rows": rows}, indent=2) + "\n"
)
print(table)
sys.exit(1 if failed else 0)
PY
REPORT_RC=$?
if [[ ! -s $OUT_DIR/gpu_check.md ]]; then
    echo "gpu_check: the report failed (logs/report.log):" >&2
    tail -20 "$LOGS/report.log" >&2
    grep -H . "$STATUS"/*.json >&2
    REPORT_RC=2
fi

# $OUT (the device machine's return folder): the table, its rows, all logs, run files.
if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT"
    cp -f "$OUT_DIR/gpu_check.md" "$OUT_DIR/gpu_check.json" "$OUT/" 2>/dev/null
    for log in "$LOGS"/*.log; do
        [[ -f $log ]] || continue
        echo "===== $(basename "$log")"
        tail -c 200000 "$log"
    done >"$OUT/gpu_check_logs.txt"
    tar -czf "$OUT/gpu_check_files.tar.gz" -C "$OUT_DIR" --exclude='*.ckpt' \
        --exclude='*.ckpt.tmp' --exclude=val_images logs json status runs 2>/dev/null
    say "copied gpu_check.md, gpu_check.json, gpu_check_logs.txt, gpu_check_files.tar.gz to $OUT"
fi
exit "$REPORT_RC"
