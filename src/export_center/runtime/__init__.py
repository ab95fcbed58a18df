"""The composition root: what a service, worker or CLI process builds once and shares.

:mod:`~export_center.runtime.container` opens the store and wires the run machinery
(:class:`~export_center.runtime.container.Services`); :mod:`~export_center.runtime.logs`
configures structured logs; :mod:`~export_center.runtime.metrics` holds the process's
Prometheus registry. The HTTP service and the worker both start from here and never import
each other.
"""
