"""`make bench` / `python -m tests.bench`: Wharf's registry beside the reference registry.

Starts, in one run on this machine, Wharf's registry with auth none and with token auth
(filesystem storage, SQLite or PostgreSQL, `--workers` processes), Wharf's full path (the
proxy in front of a token service and a token-auth registry, clients logging in through the
proxy's `/service/token`) and the reference (CNCF distribution, `docker-registry serve`,
filesystem storage, no auth), and `wharf run` as `make run` starts it (`wharf-run`: its
defaults, SQLite and a private Redis), runs the same scenarios against each (`scenarios.py` lists
them, `mixed.py` the mixed load's operations), and prints each figure, the ratio Wharf/reference,
the issues' targets met or missed (issue 3's for the registry alone, issue 10's for the full
path), the server CPU seconds per GiB and per 1,000 requests, and each target's resident memory
at idle (`tests/support/memory.py`). Results are also written as JSON under `.bench/` (with the
server logs), and every process, database and temp dir is removed.

Load comes from this process's threads through a lean blocking HTTP client (`http.py`) for the
MiB/s and image-push scenarios, and from wrk for the request-rate ones. Benchmarks never run
in the test suite.
"""
