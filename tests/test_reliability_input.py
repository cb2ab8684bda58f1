"""Bad input: odd task keys on a real cluster, damaged event logs.

Covered elsewhere and referenced in docs/reliability.md: invalid configuration
(tests/test_config.py, tests/test_plugin.py::TestAttach::
test_invalid_options_fail_at_attach_naming_the_setting), HTML/JS payloads in a
browser (tests/test_panel_live.py::TestBrowser::test_payloads_are_shown_as_text,
tests/test_panel_components.py::TestUntrustedText), empty/truncated/unknown
version logs (tests/test_eventlog.py::TestDamage), NATS messages that are not
JSON or not alerts (tests/test_cli_alerts.py::TestNatsCommands).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from dask_monitor import Monitor
from dask_monitor.events import TaskStatus
from dask_monitor.panel._data import error_columns, prefix_columns, summary_html
from dask_monitor.sinks.eventlog import (
    MAGIC,
    EventLogError,
    EventLogWarning,
    EventLogWriter,
    read_events,
)

from .conftest import make_cluster, prefix_states, snapshot_states

SCRIPT = "<script>window.__pwned=1</script>"
IMG = "<img src=x onerror=alert(1)>"

#: Every kind of key Dask accepts, and some nasty strings. (Dask 2026.8 no
#: longer accepts bytes keys: validate_key raises TypeError before we see them;
#: see test_bytes_keys_are_refused_by_dask.)
KEYS: list[Any] = [
    "plain-1",
    42,
    3.5,
    ("tuple", 0),
    ("nested", ("inner", 1), 2),
    ("mixed", 1.5, (7, "x")),
    "ключ-λ-🚀-3",
    "long-" + "x" * 10_000,
    f"html{IMG}-4",
    f"js{SCRIPT}-5",
    (f"tup{SCRIPT}", 6),
]


def one(x: int) -> int:
    return x


def fail(x: int) -> int:
    raise ValueError(f"bad {SCRIPT}{IMG} {x}")


@pytest.mark.slow
def test_every_kind_of_key_is_counted_and_escaped() -> None:
    """str, bytes, int, float, tuples, nested tuples, unicode, a 10 kB key,
    HTML and JS: counted as the scheduler counts them, snapshot JSON-safe,
    and the panel's text escapes the payloads."""
    dsk: dict[Any, Any] = {key: (one, i) for i, key in enumerate(KEYS)}
    dsk[f"err{SCRIPT}-7"] = (fail, 1)
    with (
        make_cluster(n_workers=1) as cluster,
        Client(cluster) as client,
        Monitor.attach(client) as monitor,
    ):
        futures = client.get(dsk, list(KEYS), sync=False)
        assert client.gather(futures) == list(range(len(KEYS)))
        bad = client.get(dsk, f"err{SCRIPT}-7", sync=False)
        with pytest.raises(ValueError, match="bad"):
            bad.result()
        snap = monitor.snapshot(flush=True)
        assert snapshot_states(snap) == prefix_states(cluster.scheduler)
        assert snap["totals"]["completed"] == len(KEYS)
        assert snap["totals"]["erred"] == 1
        json.dumps(snap)  # plain data, whatever the keys were
        keys = {e["key"] for e in snap["samples"]["recent"]}
        assert str(("nested", ("inner", 1), 2)) in keys and "42" in keys
        assert "long-" + "x" * 10_000 in keys  # kept whole in the sample
        # The panel's own HTML never carries a payload unescaped.
        html = summary_html(snap)
        assert "<script" not in html and "<img" not in html
        bars, _ = prefix_columns(snap, 50)
        errors = error_columns(snap, 20)
        shown = json.dumps([bars, errors])
        assert "window.__pwned" in shown  # present, as text for text-only models
        del futures, bad


def test_bytes_keys_are_refused_by_dask() -> None:
    """Dask itself rejects bytes keys, before any scheduler plugin sees them."""
    from dask.core import validate_key

    with pytest.raises(TypeError, match="bytes"):
        validate_key(b"bytes-key")


def _events(tag: str, n: int) -> list[TaskStatus]:
    return [
        TaskStatus(f"{tag}-{i}", tag, tag, "processing", "memory", 1000.0 + i)
        for i in range(n)
    ]


def _log(path: Path) -> bytes:
    writer = EventLogWriter(path, header={})
    for tag in ("first", "middle", "last"):
        writer.update_batch(_events(tag, 3))
    writer.close()
    return path.read_bytes()


def test_log_corrupted_in_the_middle_fails_clearly(tmp_path: Path) -> None:
    """Bytes damaged inside a middle record: records before it are read, then
    EventLogError names the byte offset (not a silent skip)."""
    path = tmp_path / "run.dmlog"
    data = _log(path)
    i = data.index(b"middle-1")
    path.write_bytes(data[:i] + b"\xc1" * 8 + data[i + 8 :])
    seen: list[Any] = []
    with pytest.raises(EventLogError, match="corrupt record at byte"):
        seen.extend(read_events(path))
    assert [e.key for e in seen] == ["first-0", "first-1", "first-2"]


def _record_offsets(data: bytes) -> list[int]:
    """Offsets of the length prefixes of the records after the preamble."""
    offsets, offset = [], len(MAGIC) + 1
    while offset < len(data):
        offsets.append(offset)
        (n,) = struct.unpack_from(">I", data, offset)
        offset += 4 + n
    return offsets


def test_log_with_a_damaged_length_in_the_middle_warns(tmp_path: Path) -> None:
    """A record length damaged in the middle cannot be told from a torn tail:
    the records before it are read and the rest is skipped with a warning."""
    path = tmp_path / "run.dmlog"
    data = _log(path)
    i = data.index(b"middle-0")
    start = max(o for o in _record_offsets(data) if o < i)
    path.write_bytes(data[:start] + b"\x7f\xff\xff\xff" + data[start + 4 :])
    with pytest.warns(EventLogWarning, match="torn"):
        keys = [e.key for e in read_events(path)]
    assert keys == ["first-0", "first-1", "first-2"]
