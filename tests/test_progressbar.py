"""monitor.progress(): a tqdm bar for the work submitted inside the block."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def test_progress_is_a_widget_in_a_notebook(tmp_path: Path, monkeypatch: Any) -> None:
    """In a Jupyter kernel, progress() draws an ipywidgets bar that reaches 100%."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    from tests.test_panel_notebook import KERNEL, install_kernel

    install_kernel(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    code = """
from distributed import Client, LocalCluster
from dask_monitor import Monitor
cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=None)
client = Client(cluster)
monitor = Monitor.attach(client)
with monitor.progress() as bar:
    client.gather(client.map(lambda x: x + 1, range(20)))
import tqdm.notebook
print("bar", isinstance(bar.bar, tqdm.notebook.tqdm), bar.bar.n, bar.bar.total)
monitor.detach(); client.close(); cluster.close()
"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(nb, timeout=120, kernel_name=KERNEL).execute()
    outputs = nb.cells[0].outputs
    widgets = [
        o
        for o in outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widgets, outputs
    [line] = [
        o["text"]
        for o in outputs
        if o.get("name") == "stdout" and "bar" in o.get("text", "")
    ]
    widget, n, total = line.split()[1:4]
    assert widget == "True"
    assert n == total == "20"
