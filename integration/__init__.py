"""Integration tooling: the conformance runner over Qserv-layout case directories.

``corpus`` reads query files, ``catalogs`` loads a case directory into a
cluster and into a reference MariaDB, ``compare`` compares result sets, and
``conformance`` runs a whole corpus (``python -m integration.conformance``).
"""
