"""monitor.progress(): a tqdm bar for the work submitted inside the block."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from distributed import Client

from dask_monitor import Monitor

from .conftest import make_cluster

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("tqdm")


def boom(x: int) -> int:
    raise ValueError(x)


def slow(x: int) -> int:
    time.sleep(0.02)
    return x


@pytest.fixture(scope="module")
def monitor() -> Iterator[Monitor]:
    with (
        make_cluster() as cluster,
        Client(cluster) as client,
        Monitor.attach(client, interval="20ms") as m,
    ):
        yield m


def test_dataframe_compute_reaches_100_percent(monitor: Monitor) -> None:
    """Around a real dataframe computation: the bar ends full and closed."""
    client = monitor.client
    client.gather(client.map(slow, range(30)))  # before the block: not counted
    pdf = pd.DataFrame({"k": [i % 7 for i in range(5_000)], "x": range(5_000)})
    ddf = dd.from_pandas(pdf, npartitions=16)
    out = io.StringIO()
    with monitor.progress(file=out, desc="groupby", interval=0.05) as bar:
        result = ddf.groupby("k").x.sum().compute()
    assert len(result) == 7
    assert bar.total > 16
    assert bar.done == bar.total
    assert bar.bar.n == bar.bar.total == bar.total
    assert bar.bar.disable or getattr(bar.bar, "closed", True)
    text = out.getvalue()
    assert "100%" in text and "groupby" in text
    assert "slow" not in bar.snapshot["prefixes"]  # type: ignore[index]


def test_persisted_collections_and_futures(monitor: Monitor) -> None:
    """persist() and client.map inside the block are counted."""
    client = monitor.client
    out = io.StringIO()
    with monitor.progress(file=out, interval=0.05) as bar:
        futures = client.map(slow, range(20), pure=False)
        client.gather(futures)
    assert bar.done == bar.total == 20


def test_errors_close_the_bar_and_propagate(monitor: Monitor) -> None:
    """A failing computation: the exception propagates, the bar is closed."""
    client = monitor.client
    out = io.StringIO()
    with pytest.raises(ValueError), monitor.progress(file=out, interval=0.05) as bar:
        client.gather(client.map(boom, range(3)))
    assert not bar._thread.is_alive()
    assert bar.bar.disable or getattr(bar.bar, "closed", True)


def test_keyboard_interrupt_closes_the_bar(monitor: Monitor) -> None:
    """KeyboardInterrupt inside the block: bar closed, thread stopped, re-raised."""
    out = io.StringIO()
    with (
        pytest.raises(KeyboardInterrupt),
        monitor.progress(file=out, interval=0.05) as bar,
    ):
        raise KeyboardInterrupt
    assert not bar._thread.is_alive()
