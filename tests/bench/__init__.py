"""Benchmarks of the hub: `make bench` (``python -m tests.bench``), `make soak`
(``python -m tests.bench.soak``) and `make profile`.

Everything runs on 127.0.0.1 in separate processes (Redis, fake platforms, the hub, a bare
forwarder, the load client), and every figure of `make bench` is a ratio to a baseline
measured in the same run, so the numbers mean something on a small, shared machine. Not
collected by pytest.
"""
