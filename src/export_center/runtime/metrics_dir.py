"""The directory of prometheus-client's multiprocess mode, settled before the library loads.

prometheus-client decides at import time whether samples live in this process's memory or in
memory-mapped files under ``PROMETHEUS_MULTIPROC_DIR`` (the only switch it has), so this module
must not import it, and :func:`metrics_process_group` must run before anything else does.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PREFIX = "stella-metrics-"


def _library_in_memory_mode() -> bool:
    module = sys.modules.get("prometheus_client.values")
    if module is None:
        return False
    return bool(module.ValueClass is module.MutexValue)


def metrics_process_group(environ: MutableMapping[str, str], *, private: bool) -> Path | None:
    """The multiprocess directory this process reports into, or None (in-memory metrics).

    ``PROMETHEUS_MULTIPROC_DIR`` when the operator set it (they empty it before the group
    starts, as prometheus-client requires). Otherwise, with ``private``, a fresh directory
    is created and exported in ``environ``, so that every process started from here on
    inherits it and reports through this process's ``/metrics``; it is removed at exit, or
    by the next start when this process is killed.
    """
    if _library_in_memory_mode():
        # Already loaded without a directory (an in-process test, an embedding program):
        # aggregating an empty directory would hide this process's own samples.
        return None
    given = environ.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        return path
    if not private:
        return None
    _remove_orphans(Path(tempfile.gettempdir()))
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
    environ[ENV] = str(path)
    atexit.register(shutil.rmtree, path, True)
    log.debug("metrics of this process group are collected in %s", path)
    return path


def _remove_orphans(tmp: Path) -> None:
    # A process stopped by a signal never runs its exit handlers (uvicorn re-raises SIGTERM
    # after its graceful shutdown), so the next start removes directories of dead owners.
    for d in tmp.glob(f"{_PREFIX}*-*"):
        pid = d.name[len(_PREFIX) :].partition("-")[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True
