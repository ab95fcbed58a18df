"""Run execution: claim a run's lease, export, publish, retry; the maintenance loop (recovery,
retention, schedules). Works from :mod:`export_center.runs`; never imports the HTTP service."""
