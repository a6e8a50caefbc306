"""``unlearnkit ui``: the comparator web app over a workspace (docs/comparator.md).

Serves the page and its read-only JSON API with uvicorn on ``--host`` (127.0.0.1: this
machine only) and ``--port``, and opens a browser unless ``--no-open``. The workspace is
opened as it is (never created); a read-only one is served without writing a cache. Bad input
(no workspace, a bad or busy port, the extra missing) is one line ``error: ...``, exit 2.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from . import app
from .common import HomeOpt, StoreOpt, workspace


def _check_port(host: str, port: int) -> None:
    """Raise ConfigError unless ``host:port`` can be listened on (free, a valid address)."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:  # in use, not an address of this machine, an unknown name
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


@app.command("ui")
def ui(
    home: Optional[Path] = HomeOpt,
    store: Optional[str] = StoreOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (127.0.0.1: this machine only)."),
    port: int = typer.Option(8765, "--port", help="TCP port."),
    open_browser: bool = typer.Option(True, "--open/--no-open", help="Open the page in a browser."),
) -> None:
    """Compare models in a web page: runs, class-wise accuracy, embeddings, CKA, attacks
    (runs are never changed; everything heavy is computed once and cached in
    <home>/ui-cache, and a missing reference is trained there once)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be in 1..65535, not {port}")
    try:
        import uvicorn

        from ..ui.app import create_app
    except ImportError as e:
        raise ConfigError(f"the comparator needs its extra: pip install 'unlearnkit[ui]' ({e.name} missing)") from None
    ws = workspace(home, store, mode="existing")
    _check_port(host, port)
    application = create_app(ws)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    mode = "read-only" if ws.read_only else "cache in " + str(Path(ws.root) / "ui-cache")
    typer.echo(f"unlearnkit ui: {ws.root} at {url} ({mode}); Ctrl-C stops it", err=True)
    if open_browser:
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    uvicorn.run(application, host=host, port=port, log_level="warning")
