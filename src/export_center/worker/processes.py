"""Worker processes of ``stella serve``: the exports run beside the API, not inside it.

An export is CPU work (building lines, hashing, feeding the compressor) that holds the GIL for
much of its time; run in a thread of the API process, it took about 40 % of that process's CPU
and delayed every request queued behind it. ``stella serve`` therefore starts ``stella worker``
processes (one by default) and supervises them: one command still runs everything, and the
workers are the same as those an operator starts on other hosts.

- Each child runs ``python -m export_center worker --parent-pid <pid>``: it inherits the
  environment (so the settings), the standard streams (so its logs go where the server's go),
  and stops (draining its running exports) when the server stops or disappears.
- The children run at a lower CPU priority (``--nice``, 10 from ``stella serve``): when the
  host's cores are busy, a request is answered before an export gets the next time slice;
  when the API is idle, exports have every core.
- A child that exits on its own is restarted after a pause that doubles up to a minute (a
  crash loop does not spin); a child that stays up a minute resets the pause.
- Stopping sends SIGTERM (the worker drains: running exports finish, up to its drain time),
  then SIGKILL after ``kill_after`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

__all__ = ["WorkerProcesses", "worker_command"]

_MAX_PAUSE = 60.0
_STABLE_AFTER = 60.0


def worker_command(
    *,
    concurrency: int | None = None,
    log_level: str = "info",
    drain_seconds: float | None = None,
    maintenance: bool = True,
    nice: int = 0,
    parent_pid: int | None = None,
) -> list[str]:
    """The command line of one worker process (this interpreter, this package)."""
    cmd = [sys.executable, "-m", "export_center", "worker", "--log-level", log_level]
    if nice:
        cmd += ["--nice", str(nice)]
    if concurrency is not None:
        cmd += ["--concurrency", str(concurrency)]
    if drain_seconds is not None:
        cmd += ["--drain-seconds", str(drain_seconds)]
    if not maintenance:
        cmd.append("--no-maintenance")
    cmd += ["--parent-pid", str(os.getpid() if parent_pid is None else parent_pid)]
    return cmd


@dataclass
class _Child:
    slot: int
    proc: subprocess.Popen[bytes]
    started: float
    pause: float = 1.0


class WorkerProcesses:
    """``count`` worker processes running ``command``, restarted when they exit."""

    def __init__(
        self,
        count: int,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        kill_after: float = 90.0,
    ) -> None:
        self.count = count
        self._command = list(command)
        self._env = dict(os.environ if env is None else env)
        self._kill_after = kill_after
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def _spawn(self, slot: int, pause: float = 1.0) -> _Child:
        proc = subprocess.Popen(self._command, env=self._env)
        log.info("worker process %d started (pid %d)", slot, proc.pid)
        return _Child(slot, proc, time.monotonic(), pause)

    def start(self) -> None:
        with self._lock:
            self._children = [self._spawn(n) for n in range(self.count)]
        self._watcher = threading.Thread(target=self._watch, name="worker-processes", daemon=True)
        self._watcher.start()

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [c.proc.pid for c in self._children]

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                exited = [c for c in self._children if c.proc.poll() is not None]
            for child in exited:
                code = child.proc.returncode
                if self._stopping.is_set():
                    return
                pause = 1.0 if time.monotonic() - child.started > _STABLE_AFTER else child.pause
                log.error(
                    "worker process %d (pid %d) exited with %s; restarting in %.0f s",
                    child.slot,
                    child.proc.pid,
                    code,
                    pause,
                )
                if self._stopping.wait(pause):
                    return
                with self._lock:
                    if self._stopping.is_set():
                        return
                    fresh = self._spawn(child.slot, min(pause * 2, _MAX_PAUSE))
                    self._children = [fresh if c is child else c for c in self._children]

    def stop(self) -> None:
        """SIGTERM every worker (they drain), then SIGKILL what is left after ``kill_after``."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        with self._lock:
            children = list(self._children)
        for child in children:
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._kill_after
        for child in children:
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process %d did not stop; killing it", child.proc.pid)
                child.proc.kill()
                child.proc.wait()
