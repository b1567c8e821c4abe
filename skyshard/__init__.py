"""The ``skyshard`` command and what several processes share.

:mod:`skyshard.mariadb` (private MariaDB instances and connections),
:mod:`skyshard.cluster` (a local cluster's life cycle), :mod:`skyshard.cli`.
"""
