"""``stella worker`` with slow progress reports: an export that is still running when a test
kills the process. Run as ``python -m support.slow_worker`` with ``tests/`` on PYTHONPATH;
settings come from STELLA_* variables and the delay per progress report from
STELLA_TEST_EXPORT_DELAY."""

from __future__ import annotations

import os
import signal
import threading

from export_center.runtime.container import Services
from export_center.runtime.logs import configure_logging
from export_center.settings import load_settings
from export_center.worker.runtime import WorkerRuntime
from support.service import slow_export


def main() -> None:
    configure_logging("INFO")
    services = Services.open(load_settings())
    runtime = WorkerRuntime(
        services, export=slow_export(float(os.environ["STELLA_TEST_EXPORT_DELAY"]))
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime.start()
    stop.wait()
    runtime.stop(drain_seconds=5)
    services.close()


if __name__ == "__main__":
    main()
