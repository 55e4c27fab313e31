"""``python -m tests.simulation``: the simulation on the PostgreSQL database DATABASE_URL names.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/simulation \\
        .venv/bin/python -m tests.simulation --workers 16 --operations 5000 --seed 123 [--log var/sim.log]

It migrates that database and adds a world of its own (a programme with a code unique to the
run, its enterprises, providers and staff), so runs do not collide and nothing else is wiped;
the invariant checks read the whole database, so earlier data must be consistent too. It refuses
any database but PostgreSQL, and the ``postgres``, ``root`` and ``test`` databases.

The last line is ``simulation: N operations (M refused), V violations, seed S``; the exit status
is 1 when there is any violation, 2 when the simulation could not run.

A failing seed: run it again with the same ``--workers`` (the interleaving of threads can differ)
or with ``--workers 1`` (exact); ``--log PATH`` writes every operation (JSON lines) and
``--replay PATH [--until SEQ]`` runs a log's operations again one at a time, in the order they
finished, checking after each.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from urllib.parse import urlsplit

REFUSED_DATABASES = frozenset({"postgres", "root", "test", "template0", "template1"})
SHOWN = 20  # violations printed in full


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m tests.simulation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=16, help="worker threads (default 16)")
    parser.add_argument("--operations", type=int, default=5000, help="operations per worker (default 5000)")
    parser.add_argument("--seed", type=int, default=None, help="the seed (default: from the clock, printed)")
    parser.add_argument(
        "--check-every", type=int, default=1, help="check the invariants after every N steps of each worker (default 1)"
    )
    parser.add_argument("--race-every", type=int, default=12, help="a race every N steps, 0 for none (default 12)")
    parser.add_argument("--log", metavar="PATH", help="write every operation to PATH (JSON lines)")
    parser.add_argument("--replay", metavar="PATH", help="run the operations of a log again, one at a time")
    parser.add_argument("--until", type=int, metavar="SEQ", help="with --replay: stop after operation SEQ")
    parser.add_argument("--score", action="store_true", help="score applications on submission (slow)")
    return parser.parse_args(argv)


def refusal() -> str | None:
    """Why this database may not be used, or None."""
    from django.db import connection

    name = connection.settings_dict.get("NAME") or ""
    if connection.vendor != "postgresql":
        return f"the simulation runs on PostgreSQL only (DATABASE_URL names a {connection.vendor} database)"
    if name in REFUSED_DATABASES:
        return f"refusing to run in the {name!r} database; create one for it (createdb simulation)"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print(
            "set DATABASE_URL to a PostgreSQL database of its own, e.g. postgresql://postgres@127.0.0.1:5432/simulation"
        )
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    os.environ.setdefault("DEBUG", "false")  # no query log growing in memory
    import django

    django.setup()
    problem = refusal()
    if problem:
        print(problem)
        return 2
    from django.core.management import call_command

    from tests.simulation.engine import replay, run

    database = urlsplit(url)
    print(f"database {database.hostname}:{database.port or 5432}{database.path}: migrating", file=sys.stderr)
    call_command("migrate", interactive=False, verbosity=0)
    started = time.monotonic()
    if args.replay:
        result = replay(args.replay, until=args.until, check_every=args.check_every)
    else:
        seed = args.seed if args.seed is not None else int(time.time())
        result = run(
            seed,
            args.workers,
            args.operations,
            check_every=args.check_every,
            race_every=args.race_every,
            log_path=args.log,
            score=args.score,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    report(result, time.monotonic() - started, replaying=bool(args.replay))
    return 1 if result.violations else 0


def report(result, seconds: float, *, replaying: bool) -> None:
    for violation in result.details[:SHOWN]:
        print(f"VIOLATION {violation.describe()}")
        if violation.trace:
            print("    " + violation.trace.strip().replace("\n", "\n    "))
    before = sum(violation.seq == 0 for violation in result.details)
    if before:
        print(f"{before} of the violations were in the database before this run started")
    if len(result.details) > SHOWN:
        print(f"… {len(result.details) - SHOWN} more violations")
    print("operations by kind and outcome: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
    if result.races:
        print("races: " + ", ".join(f"{k} {v}" for k, v in sorted(result.races.items())))
    if replaying:
        for entry in [e for e in result.log if "logged" in e][:SHOWN]:
            print(
                f"diverged at operation {entry['seq']}: {entry['op']['op']} logged {entry['logged']!r}, now {entry['out']!r}"
            )
        print(f"replay: {result.diverged} operations went otherwise than in the log")
    rate = result.operations / seconds if seconds else 0
    print(
        f"{result.accepted} accepted, {result.refused} refused, {result.skipped} skipped; "
        f"{result.checks} invariant checks; {seconds:.1f} s ({rate:.0f} operations/s)"
    )
    print(result.line)


if __name__ == "__main__":
    sys.exit(main())
