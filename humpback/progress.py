"""Progress bars: one per stage, in the stage's own unit (segments, pairs, steps), fit to where the
output goes; and the switch for the libraries' own bars.

On a terminal a bar is a tqdm bar with its rate and time left. Anywhere else (CI, SLURM, a pipe) it is a
plain line at each tenth of the way, never two within ``MIN_GAP_S`` seconds, one at least every
``HEARTBEAT_S`` seconds, and a last one when it closes, so that a log stays readable.

A stage opens a bar with :func:`bar`; the code doing its work (a generation backend) reports what it
finished through :func:`task`, which counts toward the stage's open bar, or shows a bar of its own
when the code is called on its own. Humpback's console (:mod:`humpback.console`) says where the bars
go with :func:`configure`; without it, bars are tqdm's defaults.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Callable, Iterator, Optional, TextIO

MIN_GAP_S = 5.0  # a plain bar never writes two lines closer than this
HEARTBEAT_S = 60.0  # ... and writes one at least this often, at a tenth or not

_lock = threading.RLock()
_open: list = []  # the bars open now, innermost last
_held = threading.local()
_where: dict = {"stream": None, "terminal": False, "show": True, "width": 80}


def configure(stream: Optional[TextIO], terminal: bool = False, show: bool = True, width: int = 80) -> None:
    """Where bars and lines go: ``stream`` (None: tqdm's defaults), drawn as a terminal bar or as plain
    lines; ``show`` False: no bars at all (``--quiet``)."""
    _where.update(stream=stream, terminal=terminal, show=show, width=width)


def write(text: str, stream: Optional[TextIO] = None) -> None:
    """Write a line of text above the open bars (a terminal bar is cleared and drawn again below it)."""
    stream = stream or _where["stream"] or sys.stdout
    with _lock:
        if any(isinstance(b, _TqdmBar) for b in _open):
            from tqdm import tqdm

            tqdm.write(text, file=stream)
        else:
            stream.write(text + "\n")
        stream.flush()


class NullBar:
    """A bar that shows nothing (bars off, or the stage advances its bar itself)."""

    n = 0

    def update(self, k: float = 1) -> None:
        self.n += k

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        with _lock:
            if self in _open:
                _open.remove(self)


class PlainBar(NullBar):
    """A bar as plain lines: ``  augment: 48/96 segments (50%), 00:04 left, 12.0 segments/s`` on the
    way, ``  augment: 96/96 segments (100%) in 00:08, 12.0 segments/s`` when it closes."""

    def __init__(self, total: Optional[int], unit: str, desc: str, initial: int = 0,
                 emit: Callable[[str], None] = write, width: int = 80, clock: Callable[[], float] = time.monotonic):
        self.total, self.unit, self.desc, self.initial, self.n = total, unit, desc, initial, initial
        self.emit, self.width, self.clock = emit, width, clock
        self.postfix = ""
        self.start = self.last = clock()
        self.tenths = self._tenths()
        self.closed = False

    def _tenths(self) -> int:
        return int(10 * self.n / self.total) if self.total else 0

    def update(self, k: float = 1) -> None:
        self.n += k
        now = self.clock()
        if now - self.last < MIN_GAP_S or (self.total and self.n >= self.total):  # the last line: on closing
            return
        if self._tenths() > self.tenths or now - self.last >= HEARTBEAT_S:
            self._emit(now)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        super().close()
        if not self.closed:
            self.closed = True
            if self.n != self.initial:  # a bar that did nothing (all of it done before) says nothing
                self._emit(self.clock(), last=True)

    def _emit(self, now: float, last: bool = False) -> None:
        self.last, self.tenths = now, self._tenths()
        self.emit(self.line(now, last)[: self.width])

    def line(self, now: float, last: bool = False) -> str:
        from tqdm import tqdm

        elapsed = now - self.start
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        n = f"{self.n:g}"
        head = f"  {self.desc}: " + (f"{n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)"
                                     if self.total else f"{n} {self.unit}")
        if last:
            parts = [f"{head} in {tqdm.format_interval(elapsed)}"]
        else:
            parts = [head]
            if rate and self.total and self.n < self.total:
                parts.append(f"{tqdm.format_interval((self.total - self.n) / rate)} left")
        if rate:
            parts.append(f"{rate:.3g} {self.unit}/s")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)


# tqdm's default with the rate always in units per second ("0.11 steps/s", not "9.31s/ steps").
_BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"
_COUNT = "{desc}: {n_fmt}{unit} [{elapsed}, {rate_noinv_fmt}{postfix}]"


class _TqdmBar:
    """A tqdm bar on the console's terminal (tqdm's own default when no console is set up)."""

    def __init__(self, total: Optional[int], unit: str, desc: str, initial: int, stream: Optional[TextIO]):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit=f" {unit}", desc=f"  {desc}", initial=initial, file=stream,
                        dynamic_ncols=True, mininterval=0.5, leave=True, bar_format=_BAR if total else _COUNT)

    @property
    def n(self):
        return self.bar.n

    def update(self, k: float = 1) -> None:
        self.bar.update(k)

    def set_postfix_str(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        with _lock:
            if self in _open:
                _open.remove(self)
        self.bar.close()


def open_bar(total: Optional[int], unit: str, desc: str, initial: int = 0, show: bool = True):
    """A bar, open until its ``close()``: ``update(k)``, ``set_postfix_str(text)``, ``n``."""
    if not (show and _where["show"]):
        made = NullBar()
        made.n = initial
    elif _where["stream"] is not None and not _where["terminal"]:
        made = PlainBar(total, unit, desc, initial, width=_where["width"])
    else:
        made = _TqdmBar(total, unit, desc, initial, _where["stream"])
    with _lock:
        _open.append(made)
    return made


@contextlib.contextmanager
def bar(total: Optional[int], unit: str, desc: str, initial: int = 0, show: bool = True) -> Iterator:
    """A stage's bar over ``total`` items of ``unit`` (plural: "segments"), closed on leaving."""
    made = open_bar(total, unit, desc, initial, show)
    try:
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def task(total: int, unit: str, desc: str, show: bool = False) -> Iterator:
    """Work that counts toward the stage's open bar; with no bar open, a bar of its own when ``show``
    (a generation backend called on its own). Inside :func:`hold`, it counts nowhere."""
    if getattr(_held, "on", False):
        yield NullBar()
    elif _open:
        yield _open[-1]
    else:
        with bar(total, unit, desc, show=show) as made:
            yield made


@contextlib.contextmanager
def hold() -> Iterator[None]:
    """Work that does not advance the open bar (a stage that makes two passes over its items counts one)."""
    was = getattr(_held, "on", False)
    _held.on = True
    try:
        yield
    finally:
        _held.on = was


@contextlib.contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """Silence the transformers, Hub and datasets progress bars (weight loading, map) unless ``show``."""
    if show:
        yield
        return
    was = library_bars(False)
    try:
        yield
    finally:
        library_bars(*was)


def library_bars(*show: bool) -> tuple[bool, bool, bool]:
    """Turn the datasets, transformers and Hub bars on or off (one value for all, or one each);
    returns what they were."""
    import datasets
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    was = (datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled(),
           not hub.are_progress_bars_disabled())
    want = show * 3 if len(show) == 1 else show
    for on, enable, disable in ((want[0], datasets.enable_progress_bars, datasets.disable_progress_bars),
                                (want[1], hf_logging.enable_progress_bar, hf_logging.disable_progress_bar),
                                (want[2], hub.enable_progress_bars, hub.disable_progress_bars)):
        (enable if on else disable)()
    return was
