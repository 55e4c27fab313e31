"""A seeded concurrency simulation of the platform (design.md, Invariants).

Many worker threads, each with its own database connection, perform random valid and invalid
operations through the services (apply, review, ingest usage with duplicates, replays and
conflicts, claim redemptions with races for the same records, reverse, freeze, revoke, expire,
settle, work cases); after every step the invariants are checked by ``check_ledger`` (the code
behind ``manage.py check_ledger``) in one consistent snapshot, plus a few checks of what the
ledger check cannot see (related parties, paid statements) and what each operation promised
(a replay answers with the original, a second reversal is refused).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/simulation \\
        .venv/bin/python -m tests.simulation --workers 16 --operations 5000 --seed 123

``engine.run`` is the entry point; ``world`` builds the data a run starts from; ``ops`` draws
and executes the operations. ``test_simulation`` is the CI-sized run.

Reproducibility: the operations a worker draws depend only on the seed, the worker's number and
the results of that worker's earlier operations. With one worker (``--workers 1``) a seed
replays exactly (the test checks that the operation log is identical). With several workers
the interleaving of threads, and so what each worker finds in the database, can vary from run
to run; the log (``--log PATH``) lists every operation with its arguments in logical names and
the order in which it finished, and ``--replay PATH`` re-executes such a log one operation at a
time on a fresh world of the same seed, checking the invariants after every step.
"""
