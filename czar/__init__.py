"""The czar: MySQL front end, planner, dispatcher, merger and query metadata.

Modules: :mod:`czar.frontend` (wire protocol adapter), :mod:`czar.engine`
(a query's life cycle), :mod:`czar.planner` (SQL -> plan, as rules),
:mod:`czar.dispatch` (gRPC to workers), :mod:`czar.merge` (result tables),
:mod:`czar.qmeta` (query records), :mod:`czar.catalog` (css snapshot).
"""
