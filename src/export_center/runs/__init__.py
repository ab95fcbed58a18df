"""Export runs: what a run is, where it is stored, and how it reaches a worker.

Below both the HTTP service (:mod:`export_center.service`) and the worker
(:mod:`export_center.worker`), which use it and never each other:

- :mod:`~export_center.runs.states`: the state machine, a pure transition table;
- :mod:`~export_center.runs.repository`: runs, leases and the event log in the database;
- :mod:`~export_center.runs.operations`: plan, create (quota-checked) and cancel runs;
- :mod:`~export_center.runs.quotas`: per-tenant limits checked when a run is created;
- :mod:`~export_center.runs.schedules`: cron slots of scheduled profiles;
- :mod:`~export_center.runs.queue` (+ :mod:`~export_center.runs.pgqueue`): the job queue;
- :mod:`~export_center.runs.artifacts`: where published bundles live;
- :mod:`~export_center.runs.clock`: UTC time helpers shared by the above.
"""
