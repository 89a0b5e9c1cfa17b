"""report.html of a sweep (src/sweeps/report.py collects the data): one static page that opens
from disk (file://) without a network: CSS, JS and figures are inline (matplotlib PNGs as
base64). Tables sort on a header click; ``report.html#sort=-best_F1`` opens the job table sorted
(a leading ``-``: descending). Links to logs and checkpoints are relative to the sweep dir."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from src.run_dir import MAIN_LOG
from src.sweeps.collect import job_numbers
from src.sweeps.records import (
    HEADLINE,
    SEED_KEY,
    STATUSES,
    TRAIN_LOSS,
    Job,
    Study,
    SweepReport,
)
from src.sweeps.tables import status_counts

STEP_COLUMNS = {"best_step", "final_step"}
INTEGER_KEYS = STEP_COLUMNS | {"trial"}  # shown without decimals
LABELS = {
    f"best_{HEADLINE}": f"best {HEADLINE}",
    "best_step": "best step",
    "final_step": "final step",
    f"final_{TRAIN_LOSS}": "final train loss",
    "wall_time_s": "wall time",
}
LINE_STYLES = ("-", "--", ":", "-.")

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #1d2330; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #556; margin: 2px 0; } code { font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 4px; font-size: 13px; }
th, td { border: 1px solid #d5d9e0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f6; position: sticky; top: 0; white-space: nowrap; }
table.sortable th[data-key] { cursor: pointer; user-select: none; }
table.sortable th[data-key]:hover { background: #dde3ee; }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 10px; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 10px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f8f9fb; }
td.detail { max-width: 22em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.status { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px;
          color: #fff; white-space: nowrap; }
.completed { background: #2e7d32; } .running { background: #1565c0; }
.failed { background: #c62828; } .pruned { background: #ef6c00; }
.not-started { background: #78808c; }
.n { color: #667; font-size: 11px; margin-left: 4px; }
.note { color: #556; font-style: italic; }
img.figure { max-width: 100%; border: 1px solid #e3e6eb; }
.scroll { overflow-x: auto; max-width: 100%; }
td.nowrap { white-space: nowrap; }
"""

# Sorting: numbers compare as numbers, text naturally; empty cells stay last either way.
# Sets data-sorted-by / data-sort-dir on the table and aria-sort on the header, and
# data-sortable-ready on <body> once initialised.
JS = """
(function () {
  "use strict";
  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    var value = cell.getAttribute("data-value");
    return value === null ? cell.textContent.trim() : value;
  }
  function compare(a, b) {
    if (isFinite(a) && isFinite(b)) { return Number(a) - Number(b); }
    return a.localeCompare(b, undefined, {numeric: true});
  }
  function sortTable(table, key, descending) {
    if (!table || !table.tHead) { return false; }
    var headers = table.tHead.rows[0].cells, index = -1, i;
    for (i = 0; i < headers.length; i++) {
      headers[i].removeAttribute("aria-sort");
      if (headers[i].getAttribute("data-key") === key) { index = i; }
    }
    if (index < 0) { return false; }
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = cellValue(r1, index), b = cellValue(r2, index);
      if (a === "" || b === "") { return (a === "") - (b === ""); }
      var order = compare(a, b);
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers[index].setAttribute("aria-sort", descending ? "descending" : "ascending");
    table.setAttribute("data-sorted-by", key);
    table.setAttribute("data-sort-dir", descending ? "desc" : "asc");
    return true;
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      var key = th.getAttribute("data-key");
      if (!key) { return; }
      th.addEventListener("click", function () {
        var again = table.getAttribute("data-sorted-by") === key;
        var descending = again && table.getAttribute("data-sort-dir") === "asc";
        sortTable(table, key, descending);
      });
    });
  });
  var wanted = /(?:^#|&)sort=(-?)([^&]+)/.exec(window.location.hash);
  if (wanted) {
    sortTable(document.getElementById("jobs"), decodeURIComponent(wanted[2]), wanted[1] === "-");
  }
  document.body.setAttribute("data-sortable-ready", String(tables.length));
})();
"""


# ----------------------------------------------------------------------------- formatting
def label(key: str) -> str:
    if key in LABELS:
        return LABELS[key]
    return key.replace("final_val/", "final val ")


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def fmt_number(key: str, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "" if value is None else str(value)
    if key in INTEGER_KEYS:
        return f"{value:.0f}"
    if key == "wall_time_s":
        return fmt_duration(value)
    return f"{value:.4f}"


def num_cell(key: str, value: float | None) -> str:
    shown = fmt_number(key, value)
    raw = "" if value is None else repr(float(value))
    return f'<td class="num" data-value="{raw}">{escape(shown)}</td>'


def text_cell(text: str, css: str = "", value: str | None = None) -> str:
    attrs = f' class="{css}"' if css else ""
    if value is not None:
        attrs += f' data-value="{escape(value)}"'
    if css == "detail" and text:
        attrs += f' title="{escape(text)}"'
    return f"<td{attrs}>{escape(text)}</td>"


def table(table_id: str, columns: Sequence[tuple[str, str]], rows: Sequence[str]) -> str:
    """A table; headers with a key sort it (the page's JS)."""
    cells = "".join(
        f'<th data-key="{escape(key)}">{escape(text)}</th>' if key else f"<th>{escape(text)}</th>"
        for key, text in columns
    )
    return (
        f'<div class="scroll"><table id="{table_id}" class="sortable"><thead><tr>{cells}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def link(path: str, text: str) -> str:
    return f'<a href="{escape(quote(path))}">{escape(text)}</a>'


def png(fig: Any) -> str:
    """A matplotlib figure as an inline <img>."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="figure" alt="" src="data:image/png;base64,{data}">'


# --------------------------------------------------------------------------------- tables
def job_table(report: SweepReport) -> str:
    metrics = [c for c in report.metric_columns if c != "final_step"] + ["final_step"]
    columns = [("job", "job"), ("status", "status"), ("detail", "detail")]
    columns += [(k, k) for k in report.varying_keys]
    columns += [(m, label(m)) for m in metrics]
    if report.study is not None:
        columns.append(("optuna_trial", "trial"))
    columns += [("", "checkpoints"), ("", "log")]
    rows = []
    for job in report.jobs:
        numbers = job_numbers(job)
        cells = [text_cell(job.job, value=job.job), status_cell(job.status)]
        cells.append(text_cell(job.detail, "detail"))
        cells += [param_cell(job.params.get(k, "")) for k in report.varying_keys]
        cells += [num_cell(m, numbers.get(m)) for m in metrics]
        if report.study is not None:
            number = job.trial.number if job.trial is not None else None
            cells.append(num_cell("trial", None if number is None else float(number)))
        ckpts = [link(p, n.split("_")[0]) for n, p in sorted(job.checkpoints.items())]
        cells.append(f"<td>{' · '.join(ckpts)}</td>")
        has_log = job.job_dir is not None and (job.job_dir / MAIN_LOG).is_file()
        cells.append(f"<td>{link(f'{job.job}/{MAIN_LOG}', MAIN_LOG) if has_log else ''}</td>")
        attrs = f'data-job="{escape(job.job)}" data-status="{escape(job.status)}"'
        rows.append(f"<tr {attrs}>{''.join(cells)}</tr>")
    return table("jobs", columns, rows)


def param_cell(value: str) -> str:
    """An override value, long numbers shortened; the exact value sorts and shows on hover."""
    shown = short(value)
    if shown == value:
        return text_cell(value)
    return f'<td data-value="{escape(value)}" title="{escape(value)}">{escape(shown)}</td>'


def status_cell(status: str) -> str:
    css = status.replace(" ", "-")
    order = str(STATUSES.index(status)) if status in STATUSES else "9"
    return f'<td data-value="{order}"><span class="status {css}">{escape(status)}</span></td>'


def group_table(report: SweepReport) -> str:
    keys = [k for k in report.varying_keys if k != SEED_KEY]
    metrics = [c for c in report.metric_columns if c not in STEP_COLUMNS]
    columns = [("group", "group"), *[(k, k) for k in keys], ("jobs", "jobs")]
    columns += [("seeds", "seeds"), ("statuses", "statuses"), ("n", "n")]
    columns += [(m, label(m)) for m in metrics]
    rows = []
    for group in report.groups:
        completed = sum(j.status == "completed" for j in group.jobs)
        cells = [text_cell(group.label)]
        cells += [param_cell(group.params.get(k, "")) for k in keys]
        cells.append(text_cell(" ".join(j.job for j in group.jobs), "nowrap"))
        cells.append(text_cell(" ".join(j.params.get(SEED_KEY, "") for j in group.jobs), "nowrap"))
        cells.append(text_cell(status_counts(group.jobs), "nowrap"))
        cells.append(f'<td class="num" data-value="{completed}">{completed}</td>')
        cells += [stat_cell(m, group.stats[m]) for m in metrics]
        rows.append(f'<tr data-group="{escape(group.label)}">{"".join(cells)}</tr>')
    return table("groups", columns, rows)


def stat_cell(key: str, stat: tuple[float | None, float | None, int]) -> str:
    """mean ± sample std (no std for n = 1) and n."""
    mean, std, n = stat
    if mean is None:
        return f'<td class="num" data-value="" data-n="{n}"></td>'
    text = fmt_number(key, mean)
    if std is not None:
        text += f" ± {fmt_number(key, std)}"
    return (
        f'<td class="num" data-value="{mean!r}" data-n="{n}">{escape(text)}'
        f'<span class="n">n={n}</span></td>'
    )


# -------------------------------------------------------------------------------- figures
def curves_figure(report: SweepReport) -> str:
    """Training loss and validation F1 against the iteration, one line per job: one colour per
    group of seeds, one line style per seed; one legend entry per job below both."""
    jobs = [j for j in report.jobs if j.train_curve or j.val_curve]
    if not jobs:
        return '<p class="note">No job has logged metrics yet (metrics.csv).</p>'
    from matplotlib.figure import Figure

    labels = [f"job {j.job}: {job_label(j, report.varying_keys)}" for j in jobs]
    ncols = max(1, min(3, 160 // max(len(t) for t in labels)))  # about 160 characters a row
    rows = math.ceil(len(jobs) / ncols)
    fig = Figure(figsize=(13, 4.6 + 0.2 * rows), layout="constrained")
    loss_ax, f1_ax = fig.subplots(1, 2, sharex=True)
    group_of = {id(j): i for i, g in enumerate(report.groups) for j in g.jobs}
    member = {id(j): g.jobs.index(j) for g in report.groups for j in g.jobs}
    handles = []
    for job in jobs:
        style = {
            "color": f"C{group_of.get(id(job), 0) % 10}",
            "linestyle": LINE_STYLES[member.get(id(job), 0) % len(LINE_STYLES)],
        }
        lines = []
        if job.train_curve:
            lines += loss_ax.plot(*zip(*job.train_curve, strict=True), **style)
        if job.val_curve:
            lines += f1_ax.plot(*zip(*job.val_curve, strict=True), marker="o", ms=4, **style)
        handles.append(lines[0])
    loss_ax.set(title=f"training loss ({TRAIN_LOSS})", xlabel="iteration", ylabel="loss")
    f1_ax.set(title=f"validation {HEADLINE} (val/{HEADLINE})", xlabel="iteration")
    f1_ax.set_ylabel(HEADLINE)
    for ax in (loss_ax, f1_ax):
        ax.grid(alpha=0.3)
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8, frameon=False)
    return png(fig)


def job_label(job: Job, keys: Sequence[str]) -> str:
    params = job.params
    return " ".join(f"{k}={short(params[k])}" for k in keys if k in params) or "(no overrides)"


def short(value: str) -> str:
    """A long number as 4 significant digits (Optuna's floats), anything else as given."""
    if len(value) <= 8:
        return value
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


def history_figure(study: Study) -> str:
    """Trial number vs objective value by state, and the best value so far."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    done = [t for t in study.trials if t.state == "COMPLETE" and t.value is not None]
    if done:
        ax.scatter([t.number for t in done], [t.value for t in done], c="C0", label="COMPLETE")
        pick = max if study.direction == "maximize" else min
        best, best_so_far = [], None
        for trial in done:
            best_so_far = trial.value if best_so_far is None else pick(best_so_far, trial.value)
            best.append(best_so_far)
        ax.step([t.number for t in done], best, where="post", c="C3", label="best so far")
    pruned = [t for t in study.trials if t.state == "PRUNED" and t.last_intermediate is not None]
    if pruned:
        xs, ys = [t.number for t in pruned], [t.last_intermediate for t in pruned]
        ax.scatter(xs, ys, c="C1", marker="x", label="PRUNED (last reported value)")
    values = [t.value for t in done] + [t.last_intermediate for t in pruned]
    floor = min(values) if values else 0.0
    for state, marker, color in (("FAIL", "v", "#c62828"), ("RUNNING", "s", "#78808c")):
        numbers = [t.number for t in study.trials if t.state == state]
        if numbers:
            ax.scatter(numbers, [floor] * len(numbers), c=color, marker=marker, label=state)
    ax.set(xlabel="trial", ylabel=f"objective ({study.direction})", title="optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)


def importance_figure(importances: dict[str, float]) -> str:
    from matplotlib.figure import Figure

    names = list(importances)[::-1]  # most important on top
    fig = Figure(figsize=(8, 1.2 + 0.45 * len(names)), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set(xlabel="importance", title="parameter importances", xlim=(0, 1))
    return png(fig)


def optuna_section(study: Study) -> str:
    head = (
        f'<h2>Optuna study</h2><p class="meta">study <code>{escape(study.name)}</code>, '
        f"storage <code>{escape(study.storage)}</code>, {escape(study.direction)}</p>"
    )
    if study.error:
        return head + f'<p class="note">The study could not be loaded: {escape(study.error)}</p>'
    if not study.trials:
        return head + '<p class="note">The study has no trials yet.</p>'
    states = {t.state: sum(x.state == t.state for x in study.trials) for t in study.trials}
    counts = ", ".join(f"{n} {s}" for s, n in states.items())
    parts = [head, f'<p class="meta">{len(study.trials)} trials: {counts}</p>']
    parts.append(history_figure(study))
    parts.append('<h3 id="importances">Parameter importances</h3>')
    if study.importances:
        rows = [
            f"<tr>{text_cell(k)}{num_cell('importance', v)}</tr>"
            for k, v in study.importances.items()
        ]
        parts.append(importance_figure(study.importances))
        columns = [("parameter", "parameter"), ("importance", "importance")]
        parts.append(table("importances-table", columns, rows))
        parts.append(f'<p class="note">{escape(study.importance_note)}</p>')
    else:
        parts.append(f'<p class="note">No importances: {escape(study.importance_note)}</p>')
    parts.append(trial_table(study))
    return "".join(parts)


def trial_table(study: Study) -> str:
    columns = [("number", "trial"), ("state", "state"), ("value", "value")]
    columns += [("job", "job"), ("params", "params")]
    rows = []
    for trial in study.trials:
        params = " ".join(f"{k}={v}" for k, v in trial.params.items())
        cells = [
            num_cell("trial", float(trial.number)),
            text_cell(trial.state),
            num_cell("value", trial.value),
            text_cell(trial.job or ""),
            text_cell(params),
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return "<h3>Trials</h3>" + table("trials", columns, rows)


# ----------------------------------------------------------------------------------- page
def render_html(report: SweepReport) -> str:
    """The whole page as one string."""
    state = "the sweep has ended" if report.sweep_ended else "the sweep may still be running"
    common = " ".join(report.common_overrides)
    groups_note = (
        "Jobs whose overrides differ only in <code>seed</code>: mean ± sample standard "
        "deviation (ddof=1; none for n=1) over the group's completed jobs; n counts them."
    )
    body = [
        f"<h1>Sweep report: {escape(report.sweep_dir.name)}</h1>",
        f'<p class="meta"><code>{escape(str(report.sweep_dir.resolve()))}</code></p>',
        f'<p class="meta">{len(report.jobs)} jobs: {escape(status_counts(report.jobs))}; '
        f"{escape(state)}; written {escape(report.generated_at)}</p>",
        f'<p class="meta">Overrides common to all jobs: <code>{escape(common)}</code></p>'
        if common
        else "",
        '<h2>Jobs</h2><p class="note">Click a header to sort; '
        "<code>report.html#sort=-best_F1</code> opens sorted (- for descending).</p>",
        job_table(report),
        f'<h2>Grouped over seeds</h2><p class="note">{groups_note}</p>',
        group_table(report)
        if any(len(g.jobs) > 1 for g in report.groups)
        else '<p class="note">No two jobs differ only in the seed (results_by_seed.csv has one '
        "row per job).</p>",
        "<h2>Training curves</h2>",
        curves_figure(report),
        optuna_section(report.study) if report.study is not None else "",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Sweep report: {escape(report.sweep_dir.name)}</title>"
        f"<style>{CSS}</style></head>\n<body>\n{''.join(body)}\n"
        f"<script>{JS}</script>\n</body></html>\n"
    )
