"""``humpback review RUN_DIR``: serve the review page on 127.0.0.1 with uvicorn until Ctrl+C.

The socket is bound here, before uvicorn starts, so a port in use is a one-line error and ``--port 0``
(the default) gets a free port that is then printed. The browser is opened where one can show a page
(a desktop session: macOS, Windows, or a DISPLAY / WAYLAND_DISPLAY); elsewhere the address is printed
for the reviewer to open (an SSH tunnel: ``ssh -L PORT:127.0.0.1:PORT host``).
"""

from __future__ import annotations

import errno
import getpass
import os
import socket
import sys
import threading
from typing import Callable, Optional

from ..errors import HumpbackError
from .session import ReviewSession

HOST = "127.0.0.1"


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port (0: a free port); a port in use is a one-line error."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise HumpbackError(f"port {port} on {HOST} is in use (another review server?); choose another with "
                                f"--port, or leave --port out for a free one") from None
        raise HumpbackError(f"cannot listen on {HOST}:{port}: {e.strerror}") from None
    sock.listen(128)
    return sock


def default_reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


def can_open_browser() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def serve(session: ReviewSession, port: int = 0, open_browser: Optional[bool] = None,
          say: Callable[[str], None] = print) -> None:
    """Serve ``session`` until interrupted (Ctrl+C, SIGTERM). Every decision is already on disk."""
    import uvicorn

    from .app import create_app

    sock = bind(port)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    from ..layout import REVIEW_DECISIONS

    state = session.progress()
    say(f"Reviewing {session.sample.describe()}")
    say(f"Reviewer {session.reviewer}: {state['done']} of {state['total']} already decided; decisions go to "
        f"{session.sample.run_dir / REVIEW_DECISIONS}")
    say(f"Review page: {url}  (Ctrl+C stops the server; every decision is already saved)")
    sys.stdout.flush()
    if open_browser if open_browser is not None else can_open_browser():
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(create_app(session), log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
