"""The REST API (FastAPI): thin routes over :mod:`export_center.runs`, plus authentication,
idempotency, the error envelope and the event streams. It never imports the worker."""
