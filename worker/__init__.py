"""The worker: a gRPC server that runs chunk tasks on its own MariaDB.

Modules: :mod:`worker.executor` (blocking SQL on MariaDB),
:mod:`worker.service` (the grpc.aio service), :mod:`worker.main` (process
entry point).  The worker never reads css; the czar and the ingest tool tell
it what to run and load.
"""
