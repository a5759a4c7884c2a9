"""Progress display of the ``softmix`` command (the library itself never prints).

:class:`Progress` draws on standard error only when it is a terminal: with rich (the
``softmix[cli]`` extra) a live bar, else one plain line rewritten in place; nothing at all when
standard error is redirected (logs, pipes, CI) or when disabled. Two uses:

- :meth:`Progress.fit`: a context manager yielding an estimator ``callback(iteration, params,
  objective)``; it shows restarts x iterations of a fit (a restart begins when the iteration
  counter starts again at 0) and the current objective. The callback never stops a fit.
- :meth:`Progress.steps`: a ``report(done, total)`` function for grids (experiments, sweeps).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["Progress"]


def _rich_progress(stream: TextIO):
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )
    except ImportError:
        return None
    return RichProgress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
        console=Console(file=stream), transient=True,
    )


class Progress:
    """Progress on ``stream`` (default ``sys.stderr``).

    Parameters
    ----------
    stream : text stream, optional
    enabled : bool, optional
        Default: whether ``stream`` is a terminal. False draws nothing.
    use_rich : bool, optional
        Default: use rich when it is importable; False forces the plain line.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None,
                 use_rich: bool | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty()) if callable(isatty) else False
        self.enabled = enabled
        self.use_rich = use_rich

    def _rich(self):
        return None if self.use_rich is False else _rich_progress(self.stream)

    def _line(self, text: str, end: bool = False) -> None:
        self.stream.write("\r" + text[:150].ljust(80) + ("\n" if end else ""))
        self.stream.flush()

    @contextlib.contextmanager
    def fit(self, label: str, *, n_init: int, max_iter: int) -> Iterator[Callable | None]:
        """Yield a fit callback showing restart r/n_init and iteration i/max_iter (None if off)."""
        if not self.enabled:
            yield None
            return
        state: dict[str, Any] = {"restart": 0, "last": None}
        rich = self._rich()

        def update(iteration: int, objective: float) -> tuple[str, str]:
            if state["last"] is None or iteration <= state["last"]:
                state["restart"] += 1
            state["last"] = iteration
            return (f"{label} restart {state['restart']}/{n_init}",
                    f"objective {objective:,.4f}")

        if rich is not None:
            with rich:
                runs = rich.add_task(f"{label} restarts", total=n_init, info="")
                iters = rich.add_task(f"{label} iterations", total=max(max_iter, 1), info="")

                def callback(iteration: int, params: Any, objective: float) -> bool:
                    new = state["last"] is None or iteration <= state["last"]
                    desc, info = update(iteration, objective)
                    if new:
                        rich.update(runs, completed=state["restart"] - 1)
                    rich.update(iters, description=desc, completed=iteration + 1, info=info)
                    return False

                yield callback
            return

        def plain(iteration: int, params: Any, objective: float) -> bool:
            desc, info = update(iteration, objective)
            self._line(f"{desc} iteration {iteration + 1}/{max_iter} {info}")
            return False

        try:
            yield plain
        finally:
            if state["last"] is not None:
                self._line(f"{label}: done", end=True)

    def steps(self, label: str) -> Callable[[int, int], None] | None:
        """A ``report(done, total)`` function for a grid of runs (None when disabled)."""
        if not self.enabled:
            return None
        rich = self._rich()
        if rich is not None:
            task: dict[str, Any] = {}

            def report_rich(done: int, total: int) -> None:
                if not task:
                    rich.start()
                    task["id"] = rich.add_task(label, total=max(total, 1), info="")
                rich.update(task["id"], completed=done)
                if done >= total:
                    rich.stop()

            return report_rich

        def report(done: int, total: int) -> None:
            width = 30
            filled = int(width * done / max(total, 1))
            self._line(f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
                       end=done >= total)

        return report
