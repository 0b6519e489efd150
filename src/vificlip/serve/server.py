"""Run the app with uvicorn: in the foreground (``vificlip serve``) or in a background thread (tests, scripts)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from .app import create_app
from .config import ServeConfig
from .service import Service

LOOPBACK = "127.0.0.1"


def uvicorn_config(app, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    # One event loop: decoding and the model have their own threads; several processes would load several models.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                          timeout_graceful_shutdown=5)  # fmt: skip


def serve(config: ServeConfig, host: str = LOOPBACK, port: int = 8000, log_level: str = "info") -> None:
    """Load the model once, then serve until interrupted."""
    uvicorn.Server(uvicorn_config(create_app(config), host, port, log_level)).run()


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(service: Service | ServeConfig, host: str = LOOPBACK, port: int | None = None) -> Iterator[str]:
    """A real uvicorn server in a daemon thread; yields its base URL and stops it on exit."""
    port = port or free_port(host)
    app = create_app(service=service) if isinstance(service, Service) else create_app(service)
    server = uvicorn.Server(uvicorn_config(app, host, port, "warning"))
    thread = threading.Thread(target=server.run, name="vificlip-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
