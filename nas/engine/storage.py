"""Optuna storage and artifact store for a study.

SQLite by default, made safe for several worker processes on one machine: WAL journal (readers never
block the writer), a long busy timeout, and Optuna's own retry on top. PostgreSQL (or any SQLAlchemy
URL Optuna accepts) for many machines. Heartbeats are on, so a trial whose worker died (SIGKILL,
power loss) is marked failed after the grace period and re-queued with the same parameters.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
import warnings
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from memory_models.errors import InputError

# Heartbeats and artifacts are marked experimental in Optuna 5; we rely on them on purpose.
warnings.filterwarnings("ignore", category=ExperimentalWarning)


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def check_sqlite_file(url: str, path: Path, create: bool, read_only: bool = False) -> str:
    """A SQLite storage that can be opened, or one InputError saying why not, before Optuna (whose
    errors are tracebacks) touches it; the URL to hand Optuna. Set WAL once (a property of the file)
    where we may write: `status`, `report` and the dashboard (create=False) only read, and must work
    on a read-only database too."""
    if not str(path) or str(path) in (".", "/") or path.is_dir():
        raise InputError(f"storage {url}: expected sqlite:///PATH to a database file")
    if not create and not path.exists():
        raise InputError(f"storage {url}: no such database (run `m2nas search` first)")
    resolved = path.resolve()
    if resolved.parts[1:2] in (("proc",), ("sys",), ("dev",)):
        raise InputError(f"storage {url}: not a place for a database")
    try:
        if create:
            resolved.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not path.is_file():
            raise InputError(f"storage {url}: not a regular file")
        if create and path.exists() and _unwritable(resolved):
            raise InputError(
                f"storage {url}: cannot be written (a read-only file or folder); a search records every "
                "candidate there, while status, report and export only read it"
            )
        try:
            _read_header(f"file:{quote(str(resolved))}?mode={'rwc' if create else 'ro'}", create)
        except sqlite3.Error:
            if not (read_only and _unwritable(resolved)):
                raise
            # A WAL database needs its -shm file, which a read-only folder cannot give: open the file
            # as immutable. SQLite then assumes nobody writes it while we read (no locks) and ignores
            # any -wal file, so this is only for the commands that only read (status, report,
            # export), only where the file or its folder cannot be written, and not while a -wal
            # holds transactions the database file lacks.
            wal = resolved.with_name(resolved.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise InputError(
                    f"storage {url}: cannot be read without write access: its write-ahead log "
                    f"{wal.name} is not merged into it (copy the database and its -wal, -shm files "
                    "to a writable folder)"
                ) from None
            uri = f"file:{quote(str(resolved))}"
            _read_header(f"{uri}?mode=ro&immutable=1", False)
            # SQLAlchemy decodes %XX in the database part once, SQLite's URI parser once more.
            return f"sqlite:///{quote(uri, safe='/:')}?mode=ro&immutable=1&uri=true"
    except InputError:
        raise
    except (OSError, sqlite3.Error) as e:
        msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise InputError(f"storage {url}: cannot open ({msg})") from None
    return url


def _read_header(uri: str, create: bool) -> None:
    with closing(sqlite3.connect(uri, uri=True, timeout=60)) as con:
        if create:
            con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA schema_version").fetchone()  # reads the header: a corrupt file fails here
        # ... and a damaged page further in (zeroed, overwritten) here, before Optuna's queries meet it
        # mid-command as a traceback. quick_check reads every page once: milliseconds for a study.
        problems = [row[0] for row in con.execute("PRAGMA quick_check(1)").fetchall()]
        if problems != ["ok"]:
            detail = " ".join(problems[0].replace("*** in database main ***", "").split())
            raise sqlite3.DatabaseError(f"database disk image is malformed: {detail}")


def _unwritable(path: Path) -> bool:
    # access(2) answers EROFS on a read-only mount even for root, and mode bits for everyone else.
    return not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def make_storage(
    url: str,
    heartbeat_s: int = 10,
    grace_s: int = 30,
    max_retry: int = 2,
    create: bool = True,
    read_only: bool = False,
) -> RDBStorage:
    """read_only: the caller never writes (status, report, export), so a database on a read-only
    folder or file may be opened as immutable (see check_sqlite_file)."""
    engine_kwargs: dict = {}
    optuna_url = url
    path = sqlite_path(url)
    if path is not None:
        optuna_url = check_sqlite_file(url, path, create, read_only)
        engine_kwargs = {"connect_args": {"timeout": 120}}
    elif url.startswith("postgresql"):
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    for attempt in range(5):
        try:
            return RDBStorage(
                optuna_url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_s,
                grace_period=grace_s,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
            )
        except Exception as e:  # sqlalchemy / driver errors: unreachable server, bad URL, ...
            # Workers started together on a fresh database race to create Optuna's tables; the
            # losers see a unique-constraint error and find the tables there on the next try.
            if "UniqueViolation" in str(e) or "already exists" in str(e):
                time.sleep(0.5 * (attempt + 1))
                continue
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"storage {url}: cannot open ({msg})") from None
    raise InputError(f"storage {url}: cannot create Optuna's tables (other processes keep racing)")


def check_artifact_dir(directory: Path) -> None:
    """The artifacts folder must take files before a search trains anything: otherwise the first
    trained candidate fails when its weights are saved, after its training time is spent."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".m2nas-write-check-"):
            pass
    except OSError as e:
        raise InputError(f"artifacts folder {directory}: cannot be written ({e.strerror or e})") from None


def artifact_store(directory: Path) -> FileSystemArtifactStore:
    directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(directory))


def save_trial_artifacts(store, trial, arch, reports, state_dict) -> dict[str, str]:
    """Upload a trained trial's arch.json, weights.pt and memory.json; their artifact ids by name."""
    import torch
    from optuna.artifacts import upload_artifact

    ids = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "arch.json").write_text(arch.to_json(indent=1))
        torch.save(state_dict, tmp / "weights.pt")
        (tmp / "memory.json").write_text(json.dumps({n: r.to_dict() for n, r in reports.items()}, indent=1))
        for name in ("arch.json", "weights.pt", "memory.json"):
            ids[name] = upload_artifact(artifact_store=store, file_path=str(tmp / name), study_or_trial=trial)
    return ids


def load_existing_study(study_name: str, storage: RDBStorage) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise InputError(
            f"study {study_name!r} not found in {storage.url} (run `m2nas search` first)"
        ) from None
