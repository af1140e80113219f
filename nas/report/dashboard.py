"""optuna-dashboard over a study's storage and artifact store, on 127.0.0.1 only.

We build the WSGI app with `optuna_dashboard.wsgi` and serve it ourselves (threaded wsgiref, as
optuna-dashboard's own CLI does) rather than calling `run_server`, so that a port already in use is
found by the bind itself, before anything is served, and reported as one line; so that Ctrl-C
ends the server cleanly instead of through bottle's handler; and so that the app can be guarded
(`guard`: read-only unless asked, and only for requests addressed to this server).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from memory_models.errors import InputError

HOST = "127.0.0.1"


READ_METHODS = frozenset({"GET", "HEAD"})


def guard(app, port: int, allow_writes: bool = False):
    """The dashboard app behind two checks, both before optuna-dashboard sees the request.

    `Host` must name this server (127.0.0.1, localhost or [::1] with this port): a web page the
    user visits can point its own domain at 127.0.0.1 (DNS rebinding) and would otherwise reach the
    API with the user's browser; its requests carry its domain as `Host`. And unless writes are
    allowed, only GET and HEAD pass: optuna-dashboard deletes and renames studies and edits notes
    on request, and a study's trials and artifacts are not the dashboard's to lose."""
    allowed = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}

    def refuse(start_response, status: str, why: str):
        body = why.encode()
        start_response(
            status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        )
        return [body]

    def guarded(environ, start_response):
        host = environ.get("HTTP_HOST", "").strip().lower()
        if host not in allowed:
            return refuse(start_response, "421 Misdirected Request", f"unexpected Host {host!r}\n")
        if not allow_writes and environ.get("REQUEST_METHOD", "GET").upper() not in READ_METHODS:
            return refuse(
                start_response, "403 Forbidden", "read-only dashboard (start it with --allow-writes)\n"
            )
        return app(environ, start_response)

    return guarded


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


def open_dashboard(study_file: Path, port: int, storage: str | None, allow_writes: bool = False) -> Dashboard:
    from optuna_dashboard import wsgi

    from nas.engine.storage import artifact_store, make_storage

    from .data import load_trials

    study, trials, url = load_trials(study_file, storage)  # the same bad-input checks as the report
    s = study.cfg.study
    rdb = make_storage(url, s.heartbeat_s, s.grace_s, s.max_retry, create=False)
    app = wsgi(rdb, artifact_store=artifact_store(study.artifact_dir))
    server = bind(guard(app, port, allow_writes), port)
    return Dashboard(server, f"http://{HOST}:{port}/", study.name, len(trials), study.artifact_dir)
