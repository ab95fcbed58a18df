"""deploy/prometheus: promtool checks the rules and the example configuration, runs the rules'
unit tests, and every alert is tested firing and quiet, documented in the runbook, and built
only from series the product exports or the rules record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from support.prometheus import (
    EXAMPLE_CONFIG,
    PROMETHEUS_SERIES,
    RULE_TESTS,
    RULES,
    RUNBOOK,
    alert_rules,
    product_series,
    promtool,
    recording_rules,
    rule_groups,
    scrape_config,
    series_names,
)


def test_promtool_checks_the_rules_and_the_example_configuration() -> None:
    rules = promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    n = len(recording_rules()) + len(alert_rules())
    assert f"SUCCESS: {n} rules found" in rules.stdout
    config = promtool("check", "config", str(EXAMPLE_CONFIG))
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert RULE_TESTS, "no deploy/prometheus/tests/*.test.yml"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The harness: a wrong expectation in a copy of a test file makes promtool fail."""
    source = RULE_TESTS[0]
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    doc["rule_files"] = [str((source.parent / f).resolve()) for f in doc["rule_files"]]
    case = next(c for t in doc["tests"] for c in t.get("alert_rule_test", []) if c["exp_alerts"])
    case["exp_alerts"][0]["exp_labels"]["severity"] = "not-this-one"
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = promtool("test", "rules", str(broken))
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def _alert_cases() -> dict[str, list[bool]]:
    """Alert name -> for each unit test case of it: does it expect the alert to fire?"""
    out: dict[str, list[bool]] = {}
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                out.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    return out


@pytest.mark.parametrize("alert", sorted(alert_rules()))
def test_every_alert_is_unit_tested_firing_and_quiet(alert: str) -> None:
    cases = _alert_cases().get(alert, [])
    assert True in cases, f"{alert}: no unit test where it fires"
    assert False in cases, f"{alert}: no unit test where it stays quiet"


def test_unit_tests_name_only_existing_alerts() -> None:
    assert set(_alert_cases()) <= set(alert_rules())


@pytest.mark.parametrize("alert", sorted(alert_rules()))
def test_every_alert_has_a_severity_a_summary_and_its_runbook_section(alert: str) -> None:
    rule = alert_rules()[alert]
    assert rule["labels"]["severity"] in {"page", "ticket", "info"}
    assert rule["annotations"]["summary"]
    anchor = f"docs/runbook.md#{alert.lower()}"
    assert rule["annotations"]["runbook"] == anchor
    headings = re.findall(r"^#### (\w+)$", RUNBOOK.read_text(encoding="utf-8"), re.MULTILINE)
    assert alert in headings, f"docs/runbook.md has no '#### {alert}' section"


def test_the_runbook_documents_no_alert_that_is_not_shipped() -> None:
    headings = re.findall(r"^#### (Export\w+)$", RUNBOOK.read_text(encoding="utf-8"), re.MULTILINE)
    assert set(headings) == set(alert_rules())


def test_rules_read_only_series_the_product_exports_or_the_rules_record(tmp_path: Path) -> None:
    known = product_series(tmp_path) | set(recording_rules()) | PROMETHEUS_SERIES
    exprs = list(recording_rules().items()) + [(n, r["expr"]) for n, r in alert_rules().items()]
    unknown = {name: sorted(series_names(e) - known) for name, e in exprs}
    assert {k: v for k, v in unknown.items() if v} == {}
    # Every recording rule is used by an alert or by the dashboard.
    from support.prometheus import dashboard_expressions

    used = set().union(*(series_names(e) for _, e in exprs))
    used |= set().union(*(series_names(e) for _, e in dashboard_expressions()))
    assert set(recording_rules()) - used == set()


def test_series_names_reads_promql_like_prometheus() -> None:
    """The name extraction the checks above rely on."""
    expr = (
        'sum by (reason) (increase(export_run_retries_total{reason=~"a|b"}[30m]))'
        " >= 3 and on () sum(export:runs:increase30m offset 5m) > 0.1 * (vector(0))"
        ' or histogram_quantile(0.9, rate(x_bucket{le="1.0"}[$__rate_interval])) / 1e3'
    )
    assert series_names(expr) == {
        "export_run_retries_total",
        "export:runs:increase30m",
        "x_bucket",
    }


def test_the_scrape_configuration_takes_a_bearer_token_file(tmp_path: Path) -> None:
    """For a /metrics that asks for a token: the shipped configuration with the token file
    promtool accepts (the same function builds the configuration of the real scrape test)."""
    token = tmp_path / "stella-metrics.token"
    token.write_text("stl_example\n", encoding="utf-8")
    config = scrape_config(serve="127.0.0.1:8080", node="127.0.0.1:9100", bearer_token_file=token)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    serve = next(j for j in config["scrape_configs"] if j["job_name"] == "stella-serve")
    assert serve["authorization"] == {"type": "Bearer", "credentials_file": str(token)}


def test_alerts_follow_the_records_they_read_in_one_group() -> None:
    """Groups are evaluated independently: an alert in another group than its records sees
    them one evaluation late (or not, depending on which group runs first). Within a group
    rules run in order at one timestamp."""
    records = set(recording_rules())
    for group in rule_groups():
        seen: set[str] = set()
        for rule in group["rules"]:
            used = series_names(rule["expr"]) & records
            assert used <= seen, f"{rule.get('alert') or rule.get('record')} reads {used - seen}"
            if "record" in rule:
                seen.add(rule["record"])
