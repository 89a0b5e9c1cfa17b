"""Rich progress display for training: ETA, lr, data / batch time and each loss part."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    """A progress bar over optimizer steps; a no-op when disabled (other ranks, no terminal)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        console = Console(stderr=True)
        self.enabled = enabled and console.is_terminal
        self._progress: Progress | None = None
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, info="")
        self._progress.start()

    def update(self, step: int, values: dict[str, float]) -> None:
        if self._progress is None:
            return
        info = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        self._progress.update(self._task, completed=step, info=info)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
