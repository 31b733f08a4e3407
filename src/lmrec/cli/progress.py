"""Progress of long jobs: a rich bar in a terminal, plain log lines elsewhere.

One helper for every loop that can take more than a few seconds (encoding a catalog, tuning
points, fine-tuning steps, pipeline stages)::

    with Reporter("encode items", total=len(texts), unit="texts") as rep:
        for s, e in spans:
            ...
            rep.advance(e - s)

- In a terminal (stderr is a TTY) a transient rich bar shows the count, the rate, the elapsed
  time and the time left; it appears only once the job has run for `delay` seconds (so the
  millisecond encodes of a running service never flash one) and, when the job took longer
  than `min_seconds`, a summary line stays behind.
- Elsewhere (a pipe, a log file, CI) it writes lines to stderr at most every `every` seconds,
  e.g. ``encode items: 4000/25000 (16%), 52/s, ETA 6m44s``, and a final line
  ``encode items: 25000/25000 done in 8m01s (52/s)``. A job shorter than `every` seconds writes
  nothing, one that stalls (a long step with no count) still gets a line every `every` seconds.

`LMREC_PROGRESS` overrides the choice: ``bar``, ``log``, ``off`` or ``auto`` (the default).
Nested reporters are fine (an encoding inside a model fit): bars stack, and log lines come
from the innermost job. `quiet()` silences the reporters started inside it (the inner
batches of an encoder whose caller already reports). This module imports neither typer nor
rich at import time, so library code (`lmrec.text`) can use it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Any, Callable, Iterable, Iterator, TypeVar

__all__ = ["Reporter", "track", "progress_mode", "quiet", "log_lines", "format_duration", "format_rate"]

T = TypeVar("T")
MODES = ("auto", "bar", "log", "off")

_lock = threading.RLock()
_active: list[Reporter] = []  # started reporters, oldest first
_quiet = threading.local()
_shared: dict[str, Any] = {"progress": None, "users": 0}  # the one rich Progress all bars share
_ticker: dict[str, Any] = {"thread": None}


def progress_mode(stream: Any = None) -> str:
    """'bar', 'log' or 'off': LMREC_PROGRESS when set to one of those, else 'bar' when
    stderr (or `stream`) is a terminal and 'log' otherwise."""
    env = os.environ.get("LMREC_PROGRESS", "auto").strip().lower()
    if env in ("bar", "log", "off"):
        return env
    if env in ("0", "false", "no", "none"):
        return "off"
    stream = stream if stream is not None else sys.stderr
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or odd stream
        tty = False
    return "bar" if tty else "log"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Reporters started inside this block (in this thread) show nothing."""
    old = getattr(_quiet, "on", False)
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = old


def format_duration(seconds: float) -> str:
    """8s, 6m44s, 1h02m."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def format_rate(per_second: float, unit: str = "") -> str:
    """52/s, 3.4/s, or 12.0 s each for slow steps."""
    if per_second <= 0:
        return "-"
    if per_second >= 10:
        return f"{per_second:,.0f}/s"
    if per_second >= 1:
        return f"{per_second:.1f}/s"
    return f"{1 / per_second:.1f} s each"


class Reporter:
    """Counts done out of `total` (None: unknown) and shows them as a bar or as log lines
    (see the module docstring). Use it as a context manager, or call `close()`."""

    def __init__(self, description: str, total: int | float | None = None, *, unit: str = "",
                 every: float = 10.0, delay: float = 1.0, min_seconds: float = 2.0,
                 mode: str | None = None, stream: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.completed: float = 0
        self.every, self.delay, self.min_seconds = every, delay, min_seconds
        self._stream = stream
        self._clock = clock
        self.mode = "off" if getattr(_quiet, "on", False) else (mode or progress_mode(stream))
        self.start = clock()
        self._last_line = self.start
        self.lines = 0  # log lines written so far
        self._task: Any = None
        self._closed = False
        if self.mode != "off":
            with _lock:
                _active.append(self)
            if self._stream is None and clock is time.monotonic:
                _ensure_ticker()

    # --- counting ---------------------------------------------------------------------------
    def advance(self, n: float = 1) -> None:
        self.update(completed=self.completed + n)

    def update(self, completed: float | None = None, *, total: float | None = None,
               description: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        if self.mode == "off" or self._closed:
            return
        self.tick(self._clock())

    def tick(self, now: float) -> None:
        """Show what is due at time `now`: start the bar after `delay`, or write a log line
        when `every` seconds passed since the last one (innermost job only)."""
        with _lock:  # the ticker thread and the counting thread both come here
            self._tick(now)

    def _tick(self, now: float) -> None:
        if self._closed:
            return
        if self.mode == "bar":
            if self._task is None and now - self.start >= self.delay:
                self._start_bar()
            prog = _shared["progress"]
            if self._task is not None and prog is not None:
                prog.update(self._task, completed=self.completed, total=self.total,
                            description=self.description)
        elif self.mode == "log" and now - self._last_line >= self.every and self._innermost():
            self._write(self.line(now))
            self._last_line = now

    def _innermost(self) -> bool:
        with _lock:
            return bool(_active) and _active[-1] is self

    # --- text -------------------------------------------------------------------------------
    def rate(self, now: float | None = None) -> float:
        elapsed = (now if now is not None else self._clock()) - self.start
        return self.completed / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        """E.g. 'encode items: 4000/25000 (16%), 52/s, ETA 6m44s'."""
        now = now if now is not None else self._clock()
        elapsed = now - self.start
        done = _num(self.completed)
        unit = f" {self.unit}" if self.unit else ""
        rate = self.rate(now)
        if self.total:
            pct = 100.0 * self.completed / self.total
            text = f"{self.description}: {done}/{_num(self.total)}{unit} ({pct:.0f}%)"
            if rate > 0:
                eta = (self.total - self.completed) / rate
                text += f", {format_rate(rate)}, ETA {format_duration(eta)}"
            else:
                text += f", {format_duration(elapsed)} elapsed"
            return text
        text = f"{self.description}: {done}{unit}" if self.completed else f"{self.description}:"
        return text + (f", {format_rate(rate)}" if rate > 0 else "") + f", {format_duration(elapsed)} elapsed"

    def final_line(self, now: float | None = None) -> str:
        """E.g. 'encode items: 25000/25000 texts done in 8m01s (52/s)'."""
        now = now if now is not None else self._clock()
        elapsed = now - self.start
        unit = f" {self.unit}" if self.unit else ""
        count = f"{_num(self.completed)}/{_num(self.total)}" if self.total else _num(self.completed)
        rate = self.rate(now)
        return (f"{self.description}: {count}{unit} done in {format_duration(elapsed)}"
                + (f" ({format_rate(rate)})" if rate > 0 else ""))

    def _write(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            print(text, file=stream, flush=True)
            self.lines += 1
        except (ValueError, OSError):  # stream closed under us (interpreter exit, CliRunner)
            pass

    # --- the bar ----------------------------------------------------------------------------
    def _start_bar(self) -> None:
        with _lock:
            prog = _shared["progress"]
            if prog is None:
                try:
                    prog = _new_progress(self._stream)
                    prog.start()
                except Exception:  # another live display (older rich) or no console: log lines instead
                    self.mode = "log"
                    return
                _shared["progress"] = prog
            _shared["users"] += 1
            self._task = prog.add_task(self.description, total=self.total, completed=self.completed)

    def _stop_bar(self) -> None:
        with _lock:
            prog = _shared["progress"]
            if prog is None or self._task is None:
                return
            prog.remove_task(self._task)
            self._task = None
            _shared["users"] -= 1
            if _shared["users"] <= 0:
                _shared["progress"], _shared["users"] = None, 0
                prog.stop()

    # --- end --------------------------------------------------------------------------------
    def close(self, *, stopped: bool = False) -> None:
        """End the job: a summary line when it was long (see the module docstring);
        `stopped`: it ended early (an error, a loop left early), said so in that line."""
        if self._closed or self.mode == "off":
            self._closed = True
            return
        now = self._clock()
        with _lock:
            self._closed = True
            if self in _active:
                _active.remove(self)
        long = now - self.start >= self.min_seconds
        text = self.final_line(now)
        if stopped:
            text = text.replace(" done in ", " stopped after ", 1)
        if self.mode == "bar":
            prog = _shared["progress"]
            shown = self._task is not None
            if shown and long and prog is not None:
                prog.console.print(text, highlight=False, markup=False)
            self._stop_bar()
        elif self.lines or now - self.start >= self.every:
            self._write(text)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self.close(stopped=exc_type is not None)


def track(items: Iterable[T], description: str, total: int | None = None, **kw: Any) -> Iterator[T]:
    """Iterate `items`, counting each one in a `Reporter`."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Reporter(description, total, **kw) as rep:
        for x in items:
            yield x
            rep.advance()


@contextlib.contextmanager
def log_lines(*loggers: str, level: int = 20) -> Iterator[None]:
    """Outside a terminal (log mode), the INFO records of `loggers` (e.g. the per-epoch lines
    of `lmrec.models.training`) are written to stderr as plain lines for the block; in a
    terminal the bars say it and nothing changes."""
    import logging

    if progress_mode() != "log":
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(level)
    saved = []
    for name in loggers:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level))
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > level:
            lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in saved:
            lg.removeHandler(handler)
            lg.setLevel(old)


def _num(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() else f"{x:.1f}"


def _new_progress(stream: Any) -> Any:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(format_rate(speed) if speed else "", style="progress.data.speed")

    # a given stream (tests) is drawn on as a terminal; otherwise stderr, as rich detects it
    console = Console(file=stream, force_terminal=True) if stream is not None else Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                    TaskProgressColumn(), RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, transient=True)


def _ensure_ticker() -> None:
    """A daemon thread that ticks the active reporters once a second, so a long step with no
    count still starts its bar and writes its log lines."""
    with _lock:
        t = _ticker["thread"]
        if t is not None and t.is_alive():
            return
        t = threading.Thread(target=_tick_loop, name="lmrec-progress", daemon=True)
        _ticker["thread"] = t
        t.start()


def _tick_loop() -> None:
    while True:
        time.sleep(1.0)
        with _lock:
            reps = [r for r in _active if r._clock is time.monotonic and r._stream is None]
        now = time.monotonic()
        for r in reps:
            try:
                r.tick(now)
            except Exception:  # never let the display thread die on a rendering problem
                pass
