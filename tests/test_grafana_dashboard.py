"""The shipped Grafana dashboard queries only metrics a real scheduler serves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, wait

from dask_monitor import Monitor

from .conftest import make_cluster
from .test_prometheus import fail, make_nap, scrape

pytest.importorskip("prometheus_client")

DASHBOARD = Path(__file__).parents[1] / "docs" / "grafana" / "dask-monitor.json"
#: The sample names a family of each type serves, by suffix.
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def expressions(node: Any) -> list[str]:
    """Every PromQL text of a dashboard: targets' ``expr`` and variables' queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition", "query") and isinstance(value, str):
                found.append(value)
            else:
                found += expressions(value)
    elif isinstance(node, list):
        for item in node:
            found += expressions(item)
    return found


def test_the_dashboard_is_grafana_json_with_a_prometheus_datasource_variable() -> None:
    """Every panel queries through the ``datasource`` variable, a Prometheus one."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    queried = " ".join(expressions(dashboard))
    assert "histogram_quantile" in queried
    assert "dask_monitor_insights" in queried


def test_every_metric_the_dashboard_queries_is_on_a_real_schedulers_metrics() -> None:
    """Each ``dask_*`` name in the dashboard's PromQL (monitor's and Dask's own)
    is a sample a real scheduler serves, or the right suffix of a family it
    serves (a counter family without samples yet, such as alerts)."""
    names = set(
        re.findall(
            r"\bdask_\w+", " ".join(expressions(json.loads(DASHBOARD.read_text())))
        )
    )
    assert any(n.startswith("dask_monitor_") for n in names)
    with (
        make_cluster(n_workers=1) as cluster,
        Client(cluster) as client,
        Monitor.attach(client, interval="20ms") as monitor,
    ):
        client.gather(client.map(make_nap("nap"), [0.01] * 10, pure=False))
        wait(client.map(fail, range(2)))
        monitor.snapshot(flush=True)
        families = scrape(cluster)
    samples = {s.name for f in families.values() for s in f.samples}
    missing = []
    for name in sorted(names):
        if name in samples:
            continue
        served = any(
            name == family + suffix
            for family, f in families.items()
            for suffix in SUFFIXES.get(f.type, ())
        )
        if not served:
            missing.append(name)
    assert not missing, missing
