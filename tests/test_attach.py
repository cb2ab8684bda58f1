"""Attaching and detaching: one operation each, nothing left behind."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from distributed import Client

from dask_monitor import Monitor
from dask_monitor.scheduler.plugin import get_plugin
from tests.conftest import make_cluster
from tests.workloads import inc


class TestAttachments:
    """Attachments are owned by clients and cleaned up with them."""

    def test_a_token_in_use_is_refused(self, client: Client) -> None:
        """A second attachment under a token in use cannot take over the first."""
        with Monitor.attach(client) as monitor:
            plugin = get_plugin(client.cluster.scheduler)  # type: ignore[union-attr]
            assert plugin is not None
            with pytest.raises(ValueError, match="exists already"):
                plugin.attach(monitor.token, client="someone-else")
            assert plugin.attachments[monitor.token][0] == client.id

    def test_many_attaches_leave_no_entries(self, client: Client) -> None:
        """Attach and detach a hundred times: no attachment is left."""
        scheduler = client.cluster.scheduler  # type: ignore[union-attr]
        keep = Monitor.attach(client)
        for _ in range(100):
            Monitor.attach(client).detach()
        plugin = get_plugin(scheduler)
        assert plugin is not None and list(plugin.attachments) == [keep.token]
        keep.detach()
        assert get_plugin(scheduler) is None

    def test_a_client_that_leaves_ends_its_attachments(
        self, client: Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A client closed without detaching and not back within the grace
        period: its observers go, then the plugin."""
        from dask_monitor.scheduler import plugin as plugin_module

        monkeypatch.setattr(plugin_module, "ORPHAN_GRACE", 0.2)
        scheduler = client.cluster.scheduler  # type: ignore[union-attr]
        other = Client(client.cluster)
        Monitor.attach(other, observers=[lambda event: None])
        plugin = get_plugin(scheduler)
        assert plugin is not None and len(plugin.attachments) == 1
        other.close()
        deadline = time.monotonic() + 30
        while get_plugin(scheduler) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get_plugin(scheduler) is None
        assert plugin.pipeline is not None
        assert plugin.pipeline.snapshot()["monitor"]["dispatch"] == {}

    def test_a_client_that_reconnects_keeps_its_attachment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A dropped connection that Dask re-establishes ends nothing."""
        from dask_monitor.scheduler import plugin as plugin_module

        monkeypatch.setattr(plugin_module, "ORPHAN_GRACE", 0.5)
        with make_cluster(n_workers=1) as cluster, Client(cluster) as client:
            monitor = Monitor.attach(client)
            client.sync(client.scheduler_comm.comm.close)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                client.status == "running" and client.scheduler_comm is not None
            ):
                time.sleep(0.05)
            time.sleep(1.5)  # past the grace period: flushes looked at it
            plugin = get_plugin(cluster.scheduler)
            assert plugin is not None and monitor.token in plugin.attachments
            client.gather(client.map(inc, range(5)))
            assert monitor.snapshot(flush=True)["totals"]["completed"] == 5
            monitor.detach()

    def test_snapshot_after_detach_is_a_clear_error(self, client: Client) -> None:
        """A detached handle says so instead of returning None."""
        monitor = Monitor.attach(client)
        monitor.detach()
        with pytest.raises(RuntimeError, match="detached"):
            monitor.snapshot()

    def test_concurrent_attaches_and_detaches_all_succeed(self) -> None:
        """Handles attaching while others detach the last attachment all work."""

        async def main() -> dict[str, Any]:
            async with (
                make_cluster(n_workers=1, asynchronous=True) as cluster,
                Client(cluster, asynchronous=True) as client,
            ):

                async def cycle() -> None:
                    monitor = await Monitor.attach(client)  # type: ignore[misc]
                    await asyncio.sleep(0)
                    await monitor.detach()

                for _ in range(10):
                    await asyncio.gather(*(cycle() for _ in range(8)))
                monitor = await Monitor.attach(client)  # type: ignore[misc]
                await client.gather(client.map(inc, range(9000, 9010)))
                snap = await monitor.snapshot(flush=True)  # type: ignore[misc]
                plugin = get_plugin(cluster.scheduler)
                left = 0 if plugin is None else len(plugin.attachments)
                await monitor.detach()
                return {"completed": snap["totals"]["completed"], "left": left}

        assert asyncio.run(main()) == {"completed": 10, "left": 1}
