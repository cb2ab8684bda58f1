"""``dask-monitor listen`` and ``dask-monitor send``: alerts on the command line.

``listen`` prints alerts from a scheduler (Dask pub/sub topic
``dask-monitor-alerts``) or from NATS; ``send`` publishes a test alert on
NATS. Connection problems end the command with one line on stderr and exit
code 1. Messages received from NATS are parsed as JSON only; an invalid one
gives a one-line warning and listening goes on.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from typing import Any

import click

from dask_monitor.events import Alert
from dask_monitor.text import safe_text

__all__ = ["format_alert", "listen", "send"]

#: Characters shown of one alert field (kind, key ...; four times for the message).
MAX_FIELD = 200


def format_alert(alert: Alert) -> str:
    """One line: time, kind, severity, message, and what it is about.

    Every field may come from anyone who can log a Dask event or publish on
    NATS: each is made safe for a terminal (:func:`~dask_monitor.text.safe_text`)
    and cut to ``MAX_FIELD`` characters.
    """
    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(alert.timestamp))
    except (ValueError, OverflowError, OSError):  # NaN, 1e300 ...
        when = f"t={safe_text(alert.timestamp, 24)}"
    about = " ".join(
        f"{name}={safe_text(value, MAX_FIELD)}"
        for name, value in (
            ("prefix", alert.prefix),
            ("key", alert.key),
            ("worker", alert.worker),
        )
        if value
    )
    line = (
        f"{when} {safe_text(alert.severity.upper(), 16):7} "
        f"{safe_text(alert.kind, MAX_FIELD)}: {safe_text(alert.message, 4 * MAX_FIELD)}"
    )
    return f"{line} [{about}]" if about else line


def _echo_alert(alert: Alert, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(alert.to_dict(), default=str, sort_keys=True))
    else:
        click.echo(format_alert(alert))


def _warn(message: str) -> None:
    click.echo(f"warning: {safe_text(message, 500)}", err=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@click.command()
@click.option(
    "--scheduler",
    "address",
    metavar="ADDRESS",
    help="Scheduler address (tcp://host:8786): alerts from Dask's event topics.",
)
@click.option("--nats", "nats_url", metavar="URL", help="NATS server URL.")
@click.option(
    "--on",
    "kind",
    metavar="KIND",
    default=None,
    help="Only alerts of this kind (stall, error-burst, straggler, worker-lost...).",
)
@click.option(
    "--cluster",
    default="*",
    show_default=True,
    help="With --nats: the cluster token of the subjects.",
)
@click.option("--json", "as_json", is_flag=True, help="Print alerts as JSON lines.")
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Exit after this many alerts.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the connection.",
)
def listen(
    address: str | None,
    nats_url: str | None,
    kind: str | None,
    cluster: str,
    as_json: bool,
    count: int | None,
    timeout: float,
) -> None:
    """Print alerts as they arrive (until Ctrl-C, or --count alerts)."""
    if (address is None) == (nats_url is None):
        raise click.UsageError("give exactly one of --scheduler ADDRESS or --nats URL")
    try:
        if address is not None:
            _listen_scheduler(address, kind, as_json, count, timeout)
        else:
            assert nats_url is not None
            asyncio.run(_listen_nats(nats_url, kind, cluster, as_json, count, timeout))
    except KeyboardInterrupt:
        pass


def _listen_scheduler(
    address: str, kind: str | None, as_json: bool, count: int | None, timeout: float
) -> None:
    from distributed import Client

    from dask_monitor.alerts.client import AlertHub

    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:
        raise click.ClickException(
            f"cannot connect to the scheduler at {address}: {_one_line(exc)}"
        ) from None
    done = threading.Event()
    seen = 0

    def on_alert(alert: Alert) -> None:
        nonlocal seen
        if done.is_set():
            return
        _echo_alert(alert, as_json)
        sys.stdout.flush()
        seen += 1
        if count is not None and seen >= count:
            done.set()

    try:
        unsubscribe = AlertHub.of(client).add(kind, on_alert)
        click.echo(f"listening for {kind or 'all'} alerts on {address}", err=True)
        while not done.wait(0.5):
            if client.status not in ("running", "connecting"):
                raise click.ClickException(f"lost the connection to {address}")
        unsubscribe()
    finally:
        client.close(timeout=2)


async def _listen_nats(
    url: str,
    kind: str | None,
    cluster: str,
    as_json: bool,
    count: int | None,
    timeout: float,
) -> None:
    from dask_monitor.alerts.client import _check_kind
    from dask_monitor.sinks.nats import alert_subject, connect, decode_alert, redact

    # A NATS server that goes away is said at once, and again when it is
    # back: listening goes on across restarts, but never silently.
    closing = False

    async def disconnected() -> None:
        if not closing:  # our own close disconnects too
            _warn(f"lost the connection to NATS at {redact(url)}; reconnecting")

    async def reconnected() -> None:
        click.echo(f"reconnected to NATS at {redact(url)}", err=True)

    try:
        nc = await connect(
            url,
            timeout=timeout,
            reconnect=True,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
        )
    except (OSError, ImportError) as exc:
        raise click.ClickException(_one_line(exc)) from None
    kind = _check_kind(kind)
    subject = alert_subject(cluster, kind or "*")
    done = asyncio.Event()
    seen = 0

    async def on_message(msg: Any) -> None:
        nonlocal seen
        if done.is_set():
            return
        try:
            alert = decode_alert(msg.data)
        except ValueError as exc:
            _warn(f"ignoring a message on {msg.subject}: {_one_line(exc)}")
            return
        _echo_alert(alert, as_json)
        sys.stdout.flush()
        seen += 1
        if count is not None and seen >= count:
            done.set()

    try:
        await nc.subscribe(subject, cb=on_message)
        await nc.flush(timeout=timeout)
        click.echo(f"listening for alerts on {subject}", err=True)
        await done.wait()
    finally:
        closing = True
        await nc.close()


@click.command()
@click.option("--nats", "nats_url", metavar="URL", required=True, help="NATS URL.")
@click.option("--on", "kind", metavar="KIND", required=True, help="Alert kind.")
@click.option(
    "--cluster",
    default="cli",
    show_default=True,
    help="Cluster token of the subject.",
)
@click.option(
    "--severity",
    type=click.Choice(["info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0)
@click.argument("message")
def send(
    nats_url: str,
    kind: str,
    cluster: str,
    severity: str,
    timeout: float,
    message: str,
) -> None:
    """Publish a test alert MESSAGE of kind KIND on NATS."""
    from dask_monitor.sinks.nats import alert_subject, encode_alert

    if kind in ("*", ">") or not kind:
        raise click.BadParameter("needs one kind, not a wildcard", param_hint="--on")
    alert = Alert(
        kind=kind,
        severity=severity,  # type: ignore[arg-type]
        message=message,
        timestamp=time.time(),
        details={"source": "dask-monitor send"},
    )
    subject = alert_subject(cluster, kind)

    async def publish() -> None:
        from dask_monitor.sinks.nats import connect

        try:
            nc = await connect(nats_url, timeout=timeout)
        except (OSError, ImportError) as exc:
            raise click.ClickException(_one_line(exc)) from None
        try:
            await nc.publish(subject, encode_alert(alert))
            await nc.flush(timeout=timeout)
        finally:
            await nc.close()

    asyncio.run(publish())
    click.echo(f"sent {kind} alert to {subject}", err=True)
