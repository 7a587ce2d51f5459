"""The console of a humpback command, and the run's log file.

The console is for the person: per stage the line that starts it, its bar and its result line
(:mod:`humpback.progress`), humpback's own warnings, and the summary. Everything else — what
transformers, datasets, TRL, accelerate, DeepSpeed and torch log or print, Python warnings, the output
of an ``accelerate launch`` subprocess, anything written to file descriptors 1 and 2 — goes, with
timestamps, to the log file (``RUN_DIR/logs/run-N.log``, one per attempt: :func:`humpback.layout.run_log`),
and also to the console with ``--verbose``. ``--quiet`` keeps warnings and the summary only.

Humpback code reports through the standard :mod:`logging` module: records of the ``humpback`` logger
(and its children) reach the console; :data:`details` (``humpback.details``) records go to the log
only. :func:`warn` is the one way to emit a warning a person must see (judge health, truncation,
skipped inputs); it works with or without a console open.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, TextIO

from . import layout, progress

QUIET, NORMAL, VERBOSE = "quiet", "normal", "verbose"

logger = logging.getLogger("humpback")
details = logging.getLogger("humpback.details")  # the run's log only (unless --verbose)
SUMMARY = "summary"  # a record with extra={SUMMARY: True} is shown even with --quiet

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def info(line: str) -> None:
    """A line for the console (and the log): what the command passes stages as ``log``."""
    logger.info(line)


def warn(message: str) -> None:
    """A warning a person must see: on the console whatever the verbosity, and in the log."""
    logger.warning(message)


def summary(text: str) -> None:
    """The command's closing text (the per-iteration summary): shown even with ``--quiet``."""
    for line in text.split("\n"):
        logger.info(line, extra={SUMMARY: True})


def is_humpback(record: logging.LogRecord) -> bool:
    name = record.name
    return (name == "humpback" or name.startswith("humpback.")) and not name.startswith(details.name)


class ConsoleHandler(logging.Handler):
    """Humpback's records (warnings prefixed), or with ``verbose`` everything, on the console stream;
    off a terminal, long lines are wrapped to the row width."""

    def __init__(self, stream: TextIO, mode: str, terminal: bool, width: int):
        super().__init__(logging.DEBUG)
        self.stream, self.mode, self.terminal, self.width = stream, mode, terminal, width

    def shows(self, record: logging.LogRecord) -> bool:
        if getattr(record, SUMMARY, False):
            return True
        if self.mode == VERBOSE:
            return True
        if not is_humpback(record):
            return False
        return record.levelno >= (logging.WARNING if self.mode == QUIET else logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.shows(record):
            return
        try:
            text = self.text(record)
            for line in text.split("\n"):
                progress.write(self.fit(line), self.stream)
        except Exception:  # noqa: BLE001 - a console that cannot be written must not stop the run
            self.handleError(record)

    def text(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not is_humpback(record):
            return f"[{record.name.removeprefix(details.name + '.')}] {message}"  # [launch], [transformers...]
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message

    def fit(self, line: str) -> str:
        if self.terminal or len(line) <= self.width:
            return line
        indent = len(line) - len(line.lstrip()) + 4
        return "\n".join(textwrap.wrap(line, self.width, subsequent_indent=" " * indent,
                                       break_long_words=False, break_on_hyphens=False))


class _Output:
    """File descriptors 1 and 2 redirected into a pipe; a thread writes each line, with its time, to
    the log (a bar's carriage-return updates collapse to what a terminal would show last)."""

    def __init__(self, log_path: Path, echo):
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        self.saved = os.dup(1), os.dup(2)
        # Python's own print() lands in the log as it happens, not when a block buffer fills.
        self.buffered = [s for s in (sys.stdout, sys.stderr)
                         if isinstance(s, io.TextIOWrapper) and not s.line_buffering]
        for s in self.buffered:
            s.reconfigure(line_buffering=True)
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        os.close(write)
        self.log = open(log_path, "a", encoding="utf-8", errors="replace", buffering=1)
        self.echo = echo
        self.thread = threading.Thread(target=self._drain, args=(read,), name="humpback-output", daemon=True)
        self.thread.start()

    def _drain(self, fd: int) -> None:
        with open(fd, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._line(line)
            if pending:
                self._line(pending)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r").split("\r")[-1].rstrip()
        if not text:
            return
        with contextlib.suppress(ValueError):  # the log closed under a straggler
            self.log.write(f"{_stamp()} OUTPUT  {text}\n")
        echo = self.echo
        if echo is not None:
            echo(text)

    def close(self, wait_s: float = 5.0) -> None:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        for s in self.buffered:
            s.reconfigure(line_buffering=False)
        self.echo = None
        # A child that outlived its parent's call (a service process) may still hold the pipe.
        self.thread.join(wait_s)
        if not self.thread.is_alive():
            self.log.close()


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).rstrip()  # a captured warning ends with a newline of its own


def _stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now * 1000) % 1000:03d}"


def next_log(root: Path, worker: Optional[int] = None) -> Path:
    """A new log file of the run folder ``root``: the next attempt's number, created exclusively
    (several workers may start at once)."""
    folder = Path(root) / layout.LOGS
    folder.mkdir(parents=True, exist_ok=True)
    attempt = 1 + max((n for p in folder.glob("run-*.log") if (n := layout.log_attempt(p.name, worker))), default=0)
    while True:
        path = Path(root) / layout.run_log(attempt, worker)
        try:
            with open(path, "x", encoding="utf-8"):
                return path
        except FileExistsError:
            attempt += 1


@contextlib.contextmanager
def open_console(log_path: Path, mode: str = NORMAL, bars: bool = True, stream: Optional[TextIO] = None,
                 capture_output: bool = True) -> Iterator[None]:
    """The console for one command: humpback's lines and bars on ``stream`` (default: the terminal
    or whatever stdout is), everything on ``log_path``. With ``capture_output`` file descriptors 1
    and 2 go to the log while it is open, and with them Python's warnings (``warnings.showwarning`` is
    left alone: the builtin corpus documents it). The libraries' own bars are off."""
    own_stream = stream is None and capture_output and sys.stdout is sys.__stdout__
    if own_stream:  # our own handle on the terminal: fd 1 itself is about to go to the log
        stream = open(os.dup(sys.stdout.fileno()), "w", encoding=sys.stdout.encoding or "utf-8",
                      errors="replace", buffering=1)
    elif stream is None:
        stream = sys.stdout
    terminal = _isatty(stream)
    width = shutil.get_terminal_size().columns
    file_handler = logging.FileHandler(log_path, encoding="utf-8")
    file_handler.setFormatter(_Formatter(_FORMAT))
    console_handler = ConsoleHandler(stream, mode, terminal, width)
    root = logging.getLogger()
    level = logger.level
    root.addHandler(file_handler)
    root.addHandler(console_handler)
    logger.setLevel(logging.INFO)
    libraries = _route_libraries()
    progress.configure(stream, terminal=terminal, show=bars and mode != QUIET, width=width)
    library_bars = progress.library_bars(False)
    echo = (lambda line: progress.write(f"[output] {line}"[: None if terminal else width], stream)) \
        if mode == VERBOSE else None
    output = _Output(log_path, echo) if capture_output else None
    details.info("humpback %s; command line: %s", _version(), " ".join(sys.argv))
    try:
        yield
    except KeyboardInterrupt:
        details.error("interrupted")
        raise
    except BaseException as e:
        details.error("failed", exc_info=e)
        raise
    finally:
        if output is not None:
            output.close()
        progress.library_bars(*library_bars)
        progress.configure(None)
        _restore_libraries(libraries)
        for handler in (file_handler, console_handler):
            root.removeHandler(handler)
        file_handler.close()
        logger.setLevel(level)
        if own_stream:
            stream.close()


# Libraries whose loggers print to stdout/stderr themselves (and transformers' does not propagate).
_LIBRARY_LOGGERS = ("transformers", "datasets", "huggingface_hub", "DeepSpeed")


def _route_libraries() -> list:
    """Send the libraries' records through the root logger's handlers instead of their own stream
    handlers; returns what to restore."""
    import importlib

    undo = []
    for name in _LIBRARY_LOGGERS:
        with contextlib.suppress(ImportError, AttributeError):  # makes the library set its logger up now
            importlib.import_module(f"{name}.utils.logging").get_logger()
        lib = logging.getLogger(name)
        own = [h for h in lib.handlers if type(h) is logging.StreamHandler]
        undo.append((lib, own, lib.propagate))
        for handler in own:
            lib.removeHandler(handler)
        lib.propagate = True
    return undo


def _restore_libraries(undo: list) -> None:
    for lib, handlers, propagate in undo:
        for handler in handlers:
            lib.addHandler(handler)
        lib.propagate = propagate


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _version() -> str:
    from . import __version__

    return __version__
