"""What every benchmark needs: the database it may wipe, Django in the driver process, a real
application server on 127.0.0.1 (gunicorn, stopped whatever happens) and a small HTTP client
that sends pre-built requests over keep-alive connections from a few threads.

Benchmarks compare figures measured in the same run (the limit is a ratio to a baseline, never
a wall-clock constant), so that they mean the same on a laptop and on a CI runner.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SETTINGS = "config.settings.local"
# Databases a benchmark never wipes, whatever DATABASE_URL says.
PROTECTED_DATABASES = frozenset({"postgres", "template0", "template1"})
# Databases that hold someone's data: a benchmark that loads a world of its own refuses them too.
REFUSED_DATABASES = frozenset({"postgres", "root", "test"})


class BenchError(Exception):
    """A benchmark cannot run or a response was wrong: printed, exit status 2."""


# --- the database ----------------------------------------------------------------------------


def postgres_url() -> str:
    """DATABASE_URL, which must name a PostgreSQL database that is not a system database."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise BenchError(
            "DATABASE_URL is not set; the benchmark needs PostgreSQL, e.g. postgresql://postgres@127.0.0.1:5432/bench"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise BenchError(f"DATABASE_URL has scheme {parts.scheme!r}; the benchmark runs on PostgreSQL only")
    name = parts.path.lstrip("/")
    if not name:
        raise BenchError("DATABASE_URL names no database")
    if name in PROTECTED_DATABASES:
        raise BenchError(f"refusing to wipe usage in the {name!r} database; create one for benchmarks (createdb bench)")
    return url


def own_database_url(own: str, *, default: str | None = None) -> str:
    """DATABASE_URL (``default`` when it is unset), a PostgreSQL database of the benchmark's own:
    never one of ``REFUSED_DATABASES``, ``PROTECTED_DATABASES`` or a template."""
    if default:
        os.environ.setdefault("DATABASE_URL", default)
    parts = urlsplit(os.environ.get("DATABASE_URL", "").strip())
    name = parts.path.lstrip("/")
    if parts.scheme in ("postgres", "postgresql") and (
        name in REFUSED_DATABASES or name in PROTECTED_DATABASES or name.startswith("template")
    ):
        raise BenchError(f"refusing to run on the {name!r} database; use one of its own: {own!r}")
    return postgres_url()


def ensure_database(url: str, own: str) -> None:
    """Create the database when it is missing and its name starts with ``own``."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=10).close()
        return
    except psycopg.OperationalError as error:
        name = urlsplit(url).path.lstrip("/")
        if "does not exist" not in str(error) or not name.startswith(own):
            raise BenchError(
                f"cannot connect to {database_label(url)} ({error}); only a database named {own}* is created"
            ) from error
    parts = urlsplit(url)
    createdb = shutil.which("createdb")
    if createdb:
        command = [createdb, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
        if parts.username:
            command += ["-U", parts.username]
        env = dict(os.environ)
        if parts.password:
            env["PGPASSWORD"] = parts.password
        log(f"$ createdb {name}")
        result = subprocess.run([*command, name], env=env, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode:
            raise BenchError(f"createdb {name} failed: {result.stderr.strip()}")
        return
    log(f"CREATE DATABASE {name}")
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def pg_connect(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def server_version(url: str) -> str:
    with pg_connect(url) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def checkpoint(url: str) -> None:
    with pg_connect(url) as conn:
        conn.execute("CHECKPOINT")


def database_label(url: str) -> str:
    """The URL without its password, for reports."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def require_consent(yes: bool, what: str) -> None:
    if yes or os.environ.get("BENCH_OK") == "1":
        return
    raise BenchError(f"this benchmark {what}; pass --yes (or set BENCH_OK=1) to go ahead")


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of the application processes: local settings, DEBUG off, persistent
    database connections as in production."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        DATABASE_URL=database_url,
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1",
        DB_CONN_MAX_AGE="60",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def django_setup(database_url: str) -> None:
    """Django in the driver process (DEBUG off, so that queries are not kept in memory)."""
    os.environ.update(DJANGO_SETTINGS_MODULE=SETTINGS, DATABASE_URL=database_url, DEBUG="false")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def manage(database_url: str, *args: str, failure: str = "", env: dict[str, str] | None = None) -> None:
    """``manage.py <args>`` in a child process (``env`` added to ``server_env``); its output
    goes to our stderr."""
    command = [sys.executable, str(ROOT / "manage.py"), *args]
    log(f"$ manage.py {' '.join(args)}")
    result = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        command, cwd=ROOT, env=server_env(database_url, **(env or {})), stdout=sys.stderr, check=False
    )
    if result.returncode:
        hint = f": {failure}" if failure else ""
        raise BenchError(f"manage.py {' '.join(args)} failed with status {result.returncode}{hint}")


# --- the application server ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AppServer:
    """gunicorn serving ``config.wsgi`` on 127.0.0.1 with sync workers, in its own process
    group. Use as a context manager: the group is terminated on the way out, whatever happens."""

    def __init__(
        self,
        *,
        database_url: str,
        workers: int,
        port: int = 0,
        log_path: Path,
        timeout: int = 300,
        env: dict[str, str] | None = None,
    ):
        self.database_url = database_url
        self.env = env or {}
        self.workers = workers
        self.port = port or free_port()
        self.log_path = log_path
        self.timeout = timeout
        self.process: subprocess.Popen | None = None

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            "sync",
            "--preload",
            "--timeout",
            str(self.timeout),
            "--graceful-timeout",
            "10",
            "--log-level",
            "warning",
        ]

    def __enter__(self) -> AppServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as handle:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                self.command,
                cwd=ROOT,
                env=server_env(self.database_url, **self.env),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, terminated as a whole
            )
        log(
            f"gunicorn pid {self.process.pid}: {self.workers} sync workers on 127.0.0.1:{self.port} (log {self.log_path})"
        )

    def wait_ready(self, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/api/v1/usage/")
                connection.getresponse().read()
                connection.close()
                return
            except OSError:
                time.sleep(0.2)
        raise BenchError(f"gunicorn did not answer within {seconds:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def sigterm_raises() -> None:
    """Turn SIGTERM into SystemExit so that ``finally`` blocks (stopping the server) run."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# --- the HTTP client -------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    records: int = 0
    tag: object = None


@dataclass
class Response:
    status: int
    body: bytes
    seconds: float


@dataclass
class Pass:
    seconds: float
    responses: list[Response]
    connections: int = 0
    errors: list[str] = field(default_factory=list)


def send_all(port: int, requests: Sequence[Request], clients: int, timeout: float = 600.0) -> Pass:
    """Send every request once, ``clients`` at a time, each client on its own keep-alive
    connection (reopened if the server closes it). Returns the wall time from the first request
    to the last response; responses are in the order of ``requests``."""
    responses: list[Response | None] = [None] * len(requests)
    lock = threading.Lock()
    state = {"next": 0, "connections": 0}
    errors: list[str] = []
    go = threading.Event()

    def take() -> int | None:
        with lock:
            index = state["next"]
            if index >= len(requests) or errors:
                return None
            state["next"] = index + 1
            return index

    def client() -> None:
        connection = None
        go.wait()
        try:
            while (index := take()) is not None:
                request = requests[index]
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                    with lock:
                        state["connections"] += 1
                started = time.perf_counter()
                connection.request(request.method, request.path, body=request.body, headers=request.headers)
                answer = connection.getresponse()
                body = answer.read()
                responses[index] = Response(answer.status, body, time.perf_counter() - started)
                if answer.will_close:
                    connection.close()
                    connection = None
        except Exception as error:
            with lock:
                errors.append(f"{type(error).__name__}: {error}")
        finally:
            if connection is not None:
                connection.close()

    threads = [threading.Thread(target=client, name=f"client-{n}", daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if not errors and any(response is None for response in responses):
        errors.append("some requests got no response")
    return Pass(seconds, responses, state["connections"], errors)


# --- output ----------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def run_main(name: str, argv: list[str] | None, parse_args, run, report) -> int:
    """A benchmark's ``main``: its figures reported (exit 0, or 1 when a limit is missed), or
    exit 2 with the reason when it could not run."""
    args = parse_args(argv)
    sigterm_raises()
    try:
        figures = run(args)
    except BenchError as error:
        print(f"bench.{name}: {error}", file=sys.stderr)
        return 2
    except Exception:  # a failure of the platform or the database: the benchmark could not run
        traceback.print_exc()
        print(f"bench.{name}: the benchmark could not run (traceback above)", file=sys.stderr)
        return 2
    figures["out"] = str(args.out)
    return report(figures)
