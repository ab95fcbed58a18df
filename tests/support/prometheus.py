"""Prometheus in the tests: the shipped deploy/ files, the names their PromQL uses, and the
real server (Debian's ``prometheus``) and node_exporter started on 127.0.0.1 only."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from support.service import free_port
from support.tools import need_tool

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "stella-export-center.rules.yml"
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.test.yml"))
EXAMPLE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "stella-export-center.json"
RUNBOOK = REPO / "docs" / "runbook.md"

#: Series Prometheus itself makes: scrape health and the alerts it evaluates.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})

# ---- the shipped files ----------------------------------------------------------------------


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return groups


def recording_rules() -> dict[str, str]:
    return {r["record"]: r["expr"] for g in rule_groups() for r in g["rules"] if "record" in r}


def alert_rules() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_panels(panels: list[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for p in dashboard()["panels"] if panels is None else panels:
        yield p
        yield from dashboard_panels(p.get("panels") or [])


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    return [
        (p["title"], t["expr"])
        for p in dashboard_panels()
        for t in p.get("targets", [])
        if "expr" in t
    ]


_LABEL_VALUES = re.compile(r"^label_values\(\s*(?:(?P<series>[^,{]+?)\s*(?:\{[^}]*\})?\s*,)?")


def variable_series() -> list[str]:
    """Series the dashboard's template variables query (``label_values(series, label)``)."""
    out = []
    for var in dashboard()["templating"]["list"]:
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = _LABEL_VALUES.match(query)
        assert m is not None, f"variable {var['name']}: unexpected query {query!r}"
        if m.group("series"):
            out.append(m.group("series").strip())
    return out


def concrete(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced as Grafana would."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


# ---- PromQL: which series an expression reads ------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"' + r"|'(?:\\.|[^'\\])*'" + r"|`[^`]*`")
_BRACES = re.compile(r"\{[^}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "inf", "nan"}
    | {"group_left", "group_right", "atan2"}
)


def series_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects (functions and keywords left out)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        if text[m.end() :].lstrip().startswith("("):
            continue  # a function or aggregation
        if m.group().lower() not in _KEYWORDS:
            names.add(m.group())
    return names


def product_series(tmp: Path) -> set[str]:
    """Every series name the product exports: the registry of :class:`Metrics` (with its
    queue collector) and a real import-metrics file of the disconnected side."""
    from prometheus_client.parser import text_string_to_metric_families

    from export_center.importer.telemetry import record_import
    from export_center.runtime.metrics import Metrics

    metrics = Metrics()
    metrics.watch_queue(dict)
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum"),
    }
    names = {
        family.name + suffix
        for family in metrics.registry.collect()
        for suffix in suffixes[family.type]
    }
    now = datetime.now(UTC)
    record_import(tmp, "mirror", "refused", now=now, reason="verification_failed")
    prom = record_import(tmp, "trivy", "imported", now=now)
    for family in text_string_to_metric_families(prom.read_text(encoding="utf-8")):
        names |= {sample.name for sample in family.samples}
    return names


# ---- promtool ---------------------------------------------------------------------------------


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    tool = need_tool("promtool", "prometheus")
    return subprocess.run(
        [tool, *args], input=stdin, capture_output=True, text=True, check=False, timeout=120
    )


# ---- the real server --------------------------------------------------------------------------


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: the process exited:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready in {timeout} s")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Prometheus:
    """A Prometheus server of the test, on 127.0.0.1, with its storage in a temp directory."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, work: Path, config: dict[str, Any]) -> Prometheus:
        binary = need_tool("prometheus")
        work.mkdir(parents=True, exist_ok=True)
        (work / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        port = free_port()
        log = work / "prometheus.log"
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_http(f"{url}/-/ready", proc, log, timeout=60)
        except BaseException:
            _stop(proc)
            raise
        return cls(url, proc, log)

    def stop(self) -> None:
        _stop(self.proc)

    def _api(self, path: str, **params: str) -> Any:
        r = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = r.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now (an error in the expression fails the test)."""
        data = self._api("query", query=expr, time=f"{datetime.now(UTC).timestamp():.3f}")
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result

    def values(self, expr: str) -> dict[frozenset[tuple[str, str]], float]:
        return {frozenset(s["metric"].items()): float(s["value"][1]) for s in self.query(expr)}

    def wait(
        self,
        expr: str,
        check: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 90.0,
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``check`` accepts its result (bounded; no timing asserted)."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while True:
            last = self.query(expr)
            if check(last):
                return last
            if time.monotonic() > deadline:
                targets = self._api("targets")["activeTargets"]
                health = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets]
                raise AssertionError(f"{expr}: still {last} after {timeout} s; targets {health}")
            time.sleep(0.25)

    def firing(self) -> set[tuple[str, frozenset[tuple[str, str]]]]:
        """(alert name, labels) of the alerts firing now."""
        return {
            (a["labels"]["alertname"], frozenset(a["labels"].items()))
            for a in self._api("alerts")["alerts"]
            if a["state"] == "firing"
        }

    def rule_health(self) -> list[tuple[str, str, str]]:
        """(rule name, health, last error) of every loaded rule."""
        return [
            (r["name"], r["health"], r.get("lastError", ""))
            for g in self._api("rules")["groups"]
            for r in g["rules"]
        ]


@dataclass
class NodeExporter:
    """node_exporter with only its textfile collector, on 127.0.0.1."""

    address: str
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, work: Path, textfile_dir: Path) -> NodeExporter:
        binary = need_tool("prometheus-node-exporter")
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        address = f"127.0.0.1:{port}"
        log = work / "node-exporter.log"
        proc = subprocess.Popen(
            [
                binary,
                f"--web.listen-address={address}",
                "--collector.disable-defaults",
                "--collector.textfile",
                f"--collector.textfile.directory={textfile_dir}",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_http(f"http://{address}/metrics", proc, log, timeout=30)
        except BaseException:
            _stop(proc)
            raise
        return cls(address, proc)

    def stop(self) -> None:
        _stop(self.proc)


def scrape_config(
    *,
    serve: str,
    node: str | None = None,
    interval: str = "1s",
    bearer_token_file: Path | None = None,
) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with this test's targets and intervals.

    The shipped file is the base: its jobs, its rule file (by absolute path), its scrape
    settings; only addresses and intervals change (and the optional token file).
    """
    config: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(EXAMPLE_CONFIG.parent / f) for f in config["rule_files"]]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    jobs["stella-serve"]["static_configs"] = [{"targets": [serve]}]
    if bearer_token_file is not None:
        jobs["stella-serve"]["authorization"] = {
            "type": "Bearer",
            "credentials_file": str(bearer_token_file),
        }
    del jobs["stella-worker"]  # workers report through stella serve's /metrics here
    if node is None:
        del jobs["node"]
    else:
        jobs["node"]["static_configs"] = [{"targets": [node]}]
    config["scrape_configs"] = list(jobs.values())
    return config
