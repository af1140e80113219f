"""optuna-dashboard over a study's storage and artifact store, on 127.0.0.1 only.

We build the WSGI app with `optuna_dashboard.wsgi` and serve it ourselves (threaded wsgiref, as
optuna-dashboard's own CLI does) rather than calling `run_server`, so that a port already in use is
found by the bind itself, before anything is served, and reported as one line; and so that Ctrl-C
ends the server cleanly instead of through bottle's handler.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from memory_models.errors import InputError

HOST = "127.0.0.1"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # an open keep-alive connection must not hold up Ctrl-C


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - wsgiref's signature
        """One line per request on stderr drowns the URL the user needs; stay silent."""


def bind(app, port: int) -> WSGIServer:
    """The listening server, or InputError when the port cannot be had."""
    if not 0 < port < 65536:
        raise InputError(f"--port {port}: must be in 1..65535")
    try:
        return make_server(HOST, port, app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise InputError(f"--port {port}: already in use on {HOST} (pick another with --port)") from None
        raise InputError(f"--port {port}: cannot listen on {HOST} ({e.strerror})") from None


@dataclass
class Dashboard:
    """A bound (not yet serving) dashboard: the caller runs `server.serve_forever()`."""

    server: WSGIServer
    url: str
    study: str
    trials: int
    artifact_dir: Path


def open_dashboard(study_file: Path, port: int, storage: str | None) -> Dashboard:
    from optuna_dashboard import wsgi

    from nas.engine.storage import artifact_store, make_storage

    from .data import load_trials

    study, trials, url = load_trials(study_file, storage)  # the same bad-input checks as the report
    s = study.cfg.study
    rdb = make_storage(url, s.heartbeat_s, s.grace_s, s.max_retry, create=False)
    server = bind(wsgi(rdb, artifact_store=artifact_store(study.artifact_dir)), port)
    return Dashboard(server, f"http://{HOST}:{port}/", study.name, len(trials), study.artifact_dir)
