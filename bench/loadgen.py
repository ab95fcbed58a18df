"""A fixed-rate, open-loop HTTP load generator, run as a process of its own.

    python -m bench.loadgen SPEC.json

Sends ``rate`` requests per second for ``seconds`` seconds at fixed times (request ``i`` is due
at ``t0 + i / rate``), whatever the server does: a slow answer does not slow the sending down,
so the rate is the one asked for, and a request's latency runs from the time it was *due* to
the last byte of its answer. A request that waits for a free connection (or the generator
itself) counts that wait as latency: the figures cannot flatter the server (no "coordinated
omission", which a closed loop of N clients suffers from: it can never show a latency below
N / throughput).

The generator is cheap on purpose, so that it does not take the CPU the server needs on the
same machine: pre-rendered HTTP/1.1 requests on keep-alive connections, a minimal response
parser (status line, ``Content-Length`` or chunked body), asyncio (uvloop when installed).

SPEC (JSON): ``{"url": "http://127.0.0.1:PORT", "rate": 200, "seconds": 20, "seed": 1,
"connections": 64, "timeout": 10, "requests": [{"kind": "get run", "weight": 40,
"method": "GET", "paths": ["/api/...", ...], "headers": {...}, "body": null}, ...]}``;
each request picks a kind by weight and one of its paths, with a seeded RNG.

Prints one JSON line: requests sent and answered, errors (status >= 400, or no answer), the
achieved rate, latency percentiles (all requests and per kind, ms) and the generator's own
CPU seconds. Only loopback addresses are accepted; the run is bounded by ``rate * seconds``
requests and ``seconds + timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import re
import resource
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[ \t]*chunked", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)


@dataclass(frozen=True)
class Kind:
    name: str
    weight: float
    requests: tuple[bytes, ...]  # rendered, one per path


def render(host: str, method: str, path: str, headers: dict[str, str], body: Any) -> bytes:
    payload = b"" if body is None else orjson.dumps(body)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.usable = True

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        if m := _LENGTH.search(head):
            await self.reader.readexactly(int(m.group(1)))
        elif _CHUNKED.search(head):
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if _CLOSE.search(head):
            self.usable = False
        return status

    def close(self) -> None:
        self.writer.close()


class Pool:
    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[Connection] = []
        self.open = 0
        self.freed = asyncio.Condition()

    async def get(self) -> Connection:
        async with self.freed:
            while not self.idle and self.open >= self.limit:
                await self.freed.wait()
            if self.idle:
                return self.idle.pop()
            self.open += 1
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            async with self.freed:
                self.open -= 1
                self.freed.notify()
            raise
        return Connection(reader, writer)

    async def put(self, conn: Connection) -> None:
        async with self.freed:
            if conn.usable:
                self.idle.append(conn)
            else:
                conn.close()
                self.open -= 1
            self.freed.notify()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    url = urlsplit(spec["url"])
    host, port = url.hostname or "", url.port or 80
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"loopback only, not {host}")
    rate, seconds = float(spec["rate"]), float(spec["seconds"])
    timeout = float(spec.get("timeout", 10))
    kinds = [
        Kind(
            k["kind"],
            float(k["weight"]),
            tuple(
                render(f"{host}:{port}", k["method"], p, k.get("headers", {}), k.get("body"))
                for p in k["paths"]
            ),
        )
        for k in spec["requests"]
    ]
    rng = random.Random(spec.get("seed", 1))
    total = int(rate * seconds)
    plan = [
        (kind.name, rng.choice(kind.requests))
        for kind in rng.choices(kinds, [k.weight for k in kinds], k=total)
    ]
    pool = Pool(host, port, int(spec.get("connections", 64)))
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    loop = asyncio.get_running_loop()

    async def one(due: float, kind: str, request: bytes) -> None:
        conn: Connection | None = None
        try:
            async with asyncio.timeout(timeout):
                conn = await pool.get()
                status = await conn.exchange(request)
            latencies[kind].append(loop.time() - due)
            if status >= 400:
                errors[f"{kind}: HTTP {status}"] += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as e:
            errors[f"{kind}: {type(e).__name__}"] += 1
            if conn is not None:
                conn.usable = False
        finally:
            if conn is not None:
                await pool.put(conn)

    tasks = []
    start = loop.time() + 0.05
    late = 0.0
    for i, (kind, request) in enumerate(plan):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late = max(late, -delay)
        tasks.append(asyncio.create_task(one(due, kind, request)))
    sent_in = loop.time() - start
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    for conn in pool.idle:
        conn.close()
    everything = [x for v in latencies.values() for x in v]
    usage = resource.getrusage(resource.RUSAGE_SELF)

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "n": len(values),
            "p50_ms": percentile(values, 0.50) * 1000,
            "p90_ms": percentile(values, 0.90) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
            "max_ms": max(values, default=0.0) * 1000,
        }

    return {
        "rate_asked": rate,
        "sent": total,
        "answered": len(everything),
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        # Requests sent per second (the last one goes out 1/rate before the window ends).
        "achieved_rate": total / (sent_in + 1 / rate) if total else 0.0,
        "elapsed_s": elapsed,
        "generator_late_max_ms": late * 1000,
        "connections_opened": pool.open,
        "all": stats(everything),
        "kinds": {k: stats(v) for k, v in sorted(latencies.items())},
        "generator_cpu_s": usage.ru_utime + usage.ru_stime,
    }


def main() -> None:
    spec = orjson.loads(Path(sys.argv[1]).read_bytes())
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    t = time.perf_counter()
    result = runner(run(spec))
    result["wall_s"] = time.perf_counter() - t
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
