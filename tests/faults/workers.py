"""Real Celery workers for the fault tests: ``celery -A config worker`` subprocesses on the
Redis of CELERY_BROKER_URL and the PostgreSQL test database, each consuming a queue of the
test's own (as tests/integration/test_celery_worker.py does), started in a session of their own
so that a test can SIGKILL the whole process group as the kernel's OOM killer or a lost machine
would, and start another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.db import connection

from config.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("CELERY_BROKER_URL", "")
# Redis hands a task that was taken and never acknowledged to another worker after this many
# seconds (Celery's default is an hour); checked by the workers every 10 seconds.
VISIBILITY_TIMEOUT = 4


def database_url() -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(condition, seconds: float = 60.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


class Workers:
    """Start workers on one queue; kill them; print their output at the end."""

    def __init__(self, tmp_path: Path):
        self.queue = f"faults-{uuid.uuid4().hex[:8]}"
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen] = []

    def start(self, *, concurrency: int = 1) -> subprocess.Popen:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": BROKER,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "FRAUD_MODEL_PATH": str(self.tmp_path / "model.pickle"),
            "FRAUD_RESCORE_ON_USAGE": "false",
            "DEBUG": "false",
        }
        pool = ["-P", "solo"] if concurrency == 1 else ["-P", "prefork", "-c", str(concurrency)]
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", *pool, "-Q", self.queue]
        command += ["--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO"]
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command,
            cwd=ROOT,
            env=env,
            stdout=(self.tmp_path / f"worker-{len(self.processes)}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, for killpg
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL to the worker's whole process group: no clean-up, no acknowledgement, no
        message handed back to the broker."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
        for index in range(len(self.processes)):
            print(f"--- worker {index}:\n" + (self.tmp_path / f"worker-{index}.log").read_text()[-3000:])

    def publish(self):
        """Send tasks from this process to the workers' queue (not eagerly), for the ``with``."""
        return _Publishing(self.queue)


class _Publishing:
    """The app of this process sends the fraud tasks to ``queue`` on the real broker (Celery
    caches its router: rebuilt on the way in and out)."""

    NAMES = ("broker_url", "task_always_eager", "task_routes")

    def __init__(self, queue: str):
        self.queue = queue

    def __enter__(self):
        self.saved = {name: celery_app.conf[name] for name in self.NAMES}
        celery_app.conf.update(
            broker_url=BROKER, task_always_eager=False, task_routes={"fraud.tasks.*": {"queue": self.queue}}
        )
        self._reset()
        return self

    def __exit__(self, *exc):
        celery_app.conf.update(self.saved)
        self._reset()
        return False

    @staticmethod
    def _reset() -> None:
        celery_app.amqp.flush_routes()
        celery_app.amqp.__dict__.pop("router", None)
        celery_app.amqp._producer_pool = None
        celery_app._pool = None
