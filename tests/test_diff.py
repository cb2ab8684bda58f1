"""compare(a, b): the verdict rules, on snapshots of synthetic runs.

The recorded real runs are in tests/test_diff_cluster.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from dask_monitor import compare
from dask_monitor.diff import MIN_COUNT, MIN_RATIO, MIN_SECONDS, diff_html, format_diff
from dask_monitor.testing import make_insight, make_snapshot


@pytest.fixture(scope="module")
def base() -> Any:
    """A finished synthetic run of 12 prefixes with errors."""
    return make_snapshot(progress=1.0, seed=3, now=10_000.0)


def scaled(snapshot: Any, prefix: str, factor: float) -> Any:
    """A copy of ``snapshot`` with the durations of ``prefix`` times ``factor``."""
    out = copy.deepcopy(snapshot)
    d = out["prefixes"][prefix]["durations"]
    for q in ("mean", "p50", "p90", "p99", "max"):
        d[q] = d[q] * factor
    return out


def with_p50(snapshot: Any, prefix: str, p50: float) -> Any:
    """A copy of ``snapshot`` whose ``prefix`` has median ``p50``."""
    out = copy.deepcopy(snapshot)
    out["prefixes"][prefix]["durations"]["p50"] = p50
    return out


def verdicts(result: dict[str, Any]) -> dict[str, str]:
    return {row["prefix"]: row["verdict"] for row in result["prefixes"]}


def test_the_same_run_twice_is_unchanged_everywhere(base: Any) -> None:
    """Identical runs: every prefix unchanged, no new errors, ratios 1."""
    result = compare(base, copy.deepcopy(base))
    assert set(verdicts(result).values()) == {"unchanged"}
    assert result["new_errors"] == [] and result["fixed_errors"] == []
    assert result["ratios"]["run_seconds"] == pytest.approx(1.0)
    assert len(result["prefixes"]) == len(base["prefixes"])


def test_a_prefix_twice_as_slow_is_slower_and_listed_first(base: Any) -> None:
    """Durations x2 for one prefix: only it is slower, and it comes first."""
    name = "getitem"
    result = compare(base, scaled(base, name, 2.0))
    v = verdicts(result)
    assert v.pop(name) == "slower"
    assert set(v.values()) == {"unchanged"}
    assert result["prefixes"][0]["prefix"] == name
    assert result["prefixes"][0]["ratios"]["p50"] == pytest.approx(2.0)
    assert result["verdicts"]["slower"] == [name]


def test_a_prefix_twice_as_fast_is_faster(base: Any) -> None:
    """Durations / 2: faster, the mirror of slower."""
    assert verdicts(compare(base, scaled(base, "add", 0.5)))["add"] == "faster"
    assert verdicts(compare(scaled(base, "add", 0.5), base))["add"] == "slower"


def test_a_ratio_within_the_sketch_error_of_the_threshold_is_not_called(
    base: Any,
) -> None:
    """A p50 ratio just above min_ratio but within the sketches' error of it
    stays unchanged; clearly beyond it, slower."""
    p50 = base["prefixes"]["add"]["durations"]["p50"]
    error = base["prefixes"]["add"]["durations"]["relative_error"]
    slack = (1 + error) / (1 - error)
    just_above = with_p50(base, "add", p50 * MIN_RATIO * (1 + (slack - 1) / 2))
    assert verdicts(compare(base, just_above))["add"] == "unchanged"
    beyond = with_p50(base, "add", p50 * MIN_RATIO * slack * 1.01)
    assert verdicts(compare(base, beyond))["add"] == "slower"


def test_tiny_tasks_need_an_absolute_change_too(base: Any) -> None:
    """2 ms -> 6 ms is x3 but under min_seconds: unchanged, unless the floor
    is lowered."""
    a = with_p50(base, "inc", 0.002)
    b = with_p50(base, "inc", 0.006)
    assert MIN_SECONDS > 0.004
    assert verdicts(compare(a, b))["inc"] == "unchanged"
    assert verdicts(compare(a, b, min_seconds=0.001))["inc"] == "slower"


def test_too_few_tasks_are_not_judged(base: Any) -> None:
    """A prefix with fewer than min_count timed tasks in a run stays unchanged."""
    b = scaled(base, "inc", 3.0)
    b["prefixes"]["inc"]["durations"]["count"] = MIN_COUNT - 1
    row = next(r for r in compare(base, b)["prefixes"] if r["prefix"] == "inc")
    assert row["verdict"] == "unchanged"
    assert "fewer than" in row["reason"]
    assert verdicts(compare(base, b, min_count=1))["inc"] == "slower"


def test_new_and_gone_prefixes(base: Any) -> None:
    """A prefix only in b is new, one only in a is gone."""
    b = copy.deepcopy(base)
    b["prefixes"]["brand-new"] = b["prefixes"].pop("add")
    v = verdicts(compare(base, b))
    assert v["brand-new"] == "new" and v["add"] == "gone"
    assert set(v.values()) == {"new", "gone", "unchanged"}


def test_new_error_types_are_listed_first(base: Any) -> None:
    """An error type of b not in a is in new_errors, on its prefix's row,
    which comes first, before slower prefixes."""
    b = scaled(base, "getitem", 3.0)
    err = dict(b["errors"][0], prefix="sum-aggregate", type="OSError", count=4)
    b["errors"].append(err)
    result = compare(base, b)
    assert [(e["prefix"], e["type"]) for e in result["new_errors"]] == [
        ("sum-aggregate", "OSError")
    ]
    first, second = result["prefixes"][:2]
    assert first["prefix"] == "sum-aggregate"
    assert first["new_error_types"] == ["OSError"]
    assert second["prefix"] == "getitem" and second["verdict"] == "slower"
    text = format_diff(result)
    assert text.index("OSError") < text.index("getitem")
    assert compare(b, base)["fixed_errors"][0]["type"] == "OSError"


def test_insights_in_one_run_only(base: Any) -> None:
    """Insights present in one run and not the other are listed by side."""
    a = make_snapshot(
        progress=1.0, seed=3, now=10_000.0, insights=[make_insight("tiny-tasks")]
    )
    b = make_snapshot(
        progress=1.0,
        seed=3,
        now=10_000.0,
        insights=[make_insight("memory-pressure", subject="cluster")],
    )
    result = compare(a, b)
    assert [i["kind"] for i in result["insights"]["only_a"]] == ["tiny-tasks"]
    assert [i["kind"] for i in result["insights"]["only_b"]] == ["memory-pressure"]


def test_peak_memory_from_recorded_resources(base: Any) -> None:
    """Peak memory is the largest cluster sample; None without resources."""
    a = copy.deepcopy(base)
    a["resources"] = {
        "interval": 1.0,
        "workers": {},
        "cluster": {"memory": 100, "history": {"memory": [50, 300, 100]}},
        "folded": 0,
    }
    b = copy.deepcopy(base)
    b.pop("resources", None)
    result = compare(a, b)
    assert result["runs"]["a"]["peak_memory"] == 300
    assert result["runs"]["b"]["peak_memory"] is None
    assert result["ratios"]["peak_memory"] is None


def test_the_result_is_plain_json(base: Any) -> None:
    """The result survives a JSON round trip unchanged."""
    result = compare(base, scaled(base, "add", 2.0))
    assert json.loads(json.dumps(result)) == result


def test_thresholds_are_checked_and_reported(base: Any) -> None:
    """Bad thresholds raise ValueError; the ones used are in the result."""
    for bad in ({"min_ratio": 1.0}, {"min_seconds": -1.0}, {"min_count": 0}):
        with pytest.raises(ValueError):
            compare(base, base, **bad)  # type: ignore[arg-type]
    t = compare(base, base, min_ratio=2.0)["thresholds"]
    assert t["min_ratio"] == 2.0 and t["min_count"] == MIN_COUNT
    assert t["relative_error"] == base["prefixes"]["add"]["durations"]["relative_error"]


def test_hostile_names_are_escaped_in_html_and_text(base: Any) -> None:
    """A prefix named with markup and terminal controls is inert in both views."""
    hostile = '<script>alert("x")</script>\x1b[2J'
    b = copy.deepcopy(base)
    b["prefixes"][hostile] = b["prefixes"]["add"]
    result = compare(base, b)
    page = diff_html(result, label_a="<a>", label_b="b.dmlog")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<a>" not in page
    text = format_diff(result)
    assert "\x1b" not in text and "\\x1b[2J" in text
