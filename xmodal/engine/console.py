"""A quiet console for a training run: a short header, a progress bar per epoch with the loss and the
time left, and one line per validation. Everything mmengine logs at INFO (environment, config, hook
table, per-iteration lines) still goes to the run's log file; the console keeps warnings and errors,
less the few mmengine prints on every run that a user can do nothing about.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop, Runner

# mmengine's own notes, printed on every run whatever the config says: kept in the log file only
_UNACTIONABLE = ("The prefix is not set in metric class", '"FileClient" will be deprecated',
                 '"HardDiskBackend" is the alias of "LocalBackend"',
                 "`save_param_scheduler` is True but `self.param_schedulers` is None")


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        message = record.getMessage()
        return not any(note in message for note in _UNACTIONABLE)


def quiet_console(logger: logging.Logger) -> None:
    """Console handlers of ``logger`` pass warnings and errors only; file handlers keep everything."""
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler:  # FileHandler is a StreamHandler subclass: left alone
            handler.addFilter(_ConsoleFilter())


class QuietRunner(Runner):
    """mmengine's Runner whose logger keeps INFO out of the console from the first line it logs (the
    environment and config dumps are logged while the Runner is built)."""

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        quiet_console(logger)
        return logger


class TestRunner(QuietRunner):
    """The Runner of ``tools/test.py``: its log, config dump and scalars go to ``<work_dir>/test_<timestamp>/``,
    so a test never overwrites the training run's config dump nor shows up as another training run."""

    def setup_env(self, env_cfg: dict) -> None:
        super().setup_env(env_cfg)
        self._timestamp = f"test_{self._timestamp}"  # names the log dir, the log file and the run

    def dump_config(self) -> None:
        if self.rank == 0 and self.cfg.filename is not None:
            self.cfg.dump(str(Path(self.log_dir) / Path(self.cfg.filename).name))


def _number(value) -> float | None:
    if hasattr(value, "detach"):
        value = value.detach()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class ConsoleProgressHook(Hook):
    """Prints ``header(runner)`` lines before training, shows a rich progress bar for each epoch (mean
    loss so far, time left) and prints one line per validation. :meth:`close` stops the bar; the
    command calls it when training fails, so that its error is the last thing on the screen."""

    priority = "VERY_LOW"  # after the teacher cache is built and the checkpoint is resumed

    def __init__(self, header: Callable[[Runner], list[str]] | None = None, console=None) -> None:
        from rich.console import Console

        self.header = header
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.progress = None
        self.task = None
        self._losses: list[float] = []
        self._start = 0.0

    def before_train(self, runner) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        for line in self.header(runner) if self.header else []:
            self.console.print(line)
        self._start = time.perf_counter()
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TextColumn("eta"), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self.progress.start()

    def before_train_epoch(self, runner) -> None:
        if self.progress is None:
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        self._losses = []
        if isinstance(runner.train_loop, IterBasedTrainLoop):  # one "epoch" of max_iters iterations
            self.task = self.progress.add_task("iterations", total=runner.max_iters, completed=runner.iter, loss="-")
            return
        self.task = self.progress.add_task(f"epoch {runner.epoch + 1}/{runner.max_epochs}",
                                           total=len(runner.train_dataloader), loss="-")

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loss = _number(outputs.get("loss")) if outputs else None
        if loss is not None:
            self._losses.append(loss)
        if self.progress is not None and self.task is not None:
            mean = f"{sum(self._losses) / len(self._losses):.4f}" if self._losses else "-"
            self.progress.update(self.task, advance=1, loss=mean)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self.progress is None:  # a validation outside training (runner.val())
            return
        shown = {k: v for k, v in (metrics or {}).items() if _number(v) is not None and k not in ("time", "data_time")}
        loss = f"loss {sum(self._losses) / len(self._losses):.4f}  " if self._losses else ""
        values = "  ".join(f"{k} {float(v):.4f}" for k, v in shown.items())
        where = (f"iter {runner.iter}/{runner.max_iters}" if isinstance(runner.train_loop, IterBasedTrainLoop)
                 else f"epoch {runner.epoch}/{runner.max_epochs}")
        self.console.print(f"{where}  {loss}val {values}")
        self._losses = []

    def after_train(self, runner) -> None:
        self.close()
        length = (f"{runner.max_iters} iterations" if isinstance(runner.train_loop, IterBasedTrainLoop)
                  else f"{runner.max_epochs} epochs")
        self.console.print(f"trained {length} in {time.perf_counter() - self._start:.1f} s; "
                           f"log: {runner.log_dir}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
