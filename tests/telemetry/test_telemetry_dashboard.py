"""deploy/grafana: every expression of the dashboard is valid PromQL (promtool parses it) and
reads only series the product exports or the rules record."""

from __future__ import annotations

from pathlib import Path

import yaml

from support.prometheus import (
    PROMETHEUS_SERIES,
    concrete,
    dashboard,
    dashboard_expressions,
    dashboard_panels,
    product_series,
    promtool,
    recording_rules,
    series_names,
    variable_series,
)


def test_every_dashboard_expression_names_known_series(tmp_path: Path) -> None:
    exprs = dashboard_expressions()
    assert len(exprs) >= 20
    known = product_series(tmp_path) | set(recording_rules()) | PROMETHEUS_SERIES
    unknown = {
        f"{title}: {expr}": sorted(series_names(expr) - known)
        for title, expr in exprs
        if series_names(expr) - known
    }
    assert unknown == {}
    assert all(series_names(e) for _, e in exprs), "an expression that reads no series"
    assert set(variable_series()) <= known


def test_every_dashboard_expression_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expression, as Grafana sends it (variables replaced)."""
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": concrete(expr)}
        for i, (_, expr) in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8"
    )
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_panels_use_the_datasource_variable_and_fit_the_grid() -> None:
    d = dashboard()
    assert d["uid"] == "stella-export-center"
    names = [v["name"] for v in d["templating"]["list"]]
    assert names[0] == "datasource"
    ids = []
    for p in dashboard_panels():
        ids.append(p["id"])
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
    assert len(ids) == len(set(ids))
