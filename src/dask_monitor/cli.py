"""The ``dask-monitor`` command (also ``dask monitor``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from dask_monitor.alerts.cli import listen, send

if TYPE_CHECKING:
    from dask_monitor.config import MonitorConfig
    from dask_monitor.snapshot import Snapshot

__all__ = ["main"]


@click.group(name="monitor", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dask-monitor")
def main() -> None:
    """Watch Dask pipelines live, understand them, and keep the record."""


@main.command()
@click.option(
    "--scale",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Size of the sample pipeline (1.0 takes ~20 s on 2 cores).",
)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--linger",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds the cluster and its live panel stay up after the pipeline.",
)
@click.option(
    "--report",
    default="report.html",
    show_default=True,
    help="Write a standalone HTML report there at the end ('' for none).",
)
def demo(scale: float, workers: int, threads: int, linger: float, report: str) -> None:
    """Run a sample pipeline on a local cluster with the monitor attached."""
    from dask_monitor.demo import run_demo

    run_demo(
        scale=scale,
        workers=workers,
        threads=threads,
        echo=click.echo,
        linger=linger,
        report=report or None,
    )


# -- history: replay, report, export (logs written by Monitor.record) ----------------


class _LogPath(click.ParamType):  # type: ignore[type-arg]
    """A local event log (checked as ``click.Path`` does) or a URL, read
    through fsspec (its header read here: a missing or bad one is a usage
    error, not a traceback)."""

    name = "log"
    _local = click.Path(exists=True, dir_okay=False)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from dask_monitor.storage import is_url

        if is_url(value):
            from dask_monitor.config import ConfigError
            from dask_monitor.sinks.eventlog import EventLog, EventLogError

            try:
                EventLog.open(value)
            except (ConfigError, EventLogError, OSError) as e:
                self.fail(str(e), param, ctx)
            return value
        return self._local.convert(value, param, ctx)


_LOG = _LogPath()


class _DirectoryOrUrl(click.ParamType):  # type: ignore[type-arg]
    """A local directory (checked as ``click.Path`` does) or a URL directory
    (``s3://bucket/runs``): its protocol and form checked here, a usage
    error naming the argument, not a traceback."""

    name = "directory"
    _local = click.Path(exists=True, file_okay=False)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from dask_monitor.storage import check_url, is_url

        if is_url(value):
            from dask_monitor.config import ConfigError

            try:
                check_url(value, setting="the directory")
            except ConfigError as e:
                self.fail(str(e), param, ctx)
            return value
        return self._local.convert(value, param, ctx)


_DIRECTORY = _DirectoryOrUrl()


def _listing_failed(e: Exception, directory: str, hint: str) -> click.UsageError:
    """A usage error (exit 2) for a directory that could not be listed."""
    from dask_monitor.storage import show
    from dask_monitor.text import safe_text

    return click.BadParameter(
        safe_text(f"{show(directory)} cannot be listed: {show(str(e))}", 500),
        param_hint=hint,
    )


def _replay_or_fail(log: str) -> tuple[Snapshot, MonitorConfig]:
    """(snapshot, config) of a replayed log; a click error for a bad log."""
    from dask_monitor.replay import replay_pipeline
    from dask_monitor.sinks.eventlog import EventLogError

    try:
        pipeline = replay_pipeline(log)
    except EventLogError as e:
        raise click.ClickException(str(e)) from e
    return pipeline.snapshot(), pipeline.config


@main.command()
@click.argument("log", type=_LOG)
@click.option("--serve", is_flag=True, help="Serve the panel for the run (Bokeh).")
@click.option(
    "--port",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Port of --serve (0: a free one).",
)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Address --serve listens on.",
)
def replay(log: str, serve: bool, port: int, address: str) -> None:
    """Replay an event log: print its summary, or serve its panel (--serve)."""
    from dask_monitor.text import format_line, format_summary

    snapshot, config = _replay_or_fail(log)
    click.echo(format_line(snapshot))
    click.echo(format_summary(snapshot))
    if not serve:
        return
    from dask_monitor.panel import serve_snapshot
    from dask_monitor.replay import run_info

    server = serve_snapshot(
        snapshot, config=config, port=port, address=address, **run_info(log)
    )
    click.echo(f"Serving the panel of {log} at http://{address}:{server.port}/")
    click.echo("Press Ctrl+C to stop.")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@main.command()
@click.argument("log", type=_LOG)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    required=True,
    help="HTML file to write.",
)
@click.option("--title", default=None, help="Title of the page.")
def report(log: str, output: str, title: str | None) -> None:
    """Write the standalone HTML report (the panel, offline) of an event log."""
    from dask_monitor.panel import write_report
    from dask_monitor.replay import run_info

    snapshot, config = _replay_or_fail(log)
    write_report(snapshot, output, title=title, config=config, **run_info(log))
    click.echo(f"Wrote {output}")


@main.command()
@click.argument("log", type=_LOG)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    required=True,
    help="File to write: .parquet (needs pyarrow), .csv, .json or .jsonl; "
    "another extension needs --format.",
)
@click.option(
    "--kind",
    type=click.Choice(["tasks", "workers", "alerts", "resources"]),
    default="tasks",
    show_default=True,
    help="Which events to export.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv", "json", "jsonl"]),
    default=None,
    help="Format; by default from the file name's extension.",
)
def export(log: str, output: str, kind: str, fmt: str | None) -> None:
    """Export the events of an event log as a table (Parquet, CSV, JSON) for pandas."""
    from dask_monitor.replay import export_events, export_format
    from dask_monitor.sinks.eventlog import EventLogError

    if fmt is None:  # refused before the log is read
        try:
            export_format(output)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'-o' / '--output'") from e
    try:
        _, used, rows = export_events(log, output, kind=kind, fmt=fmt)
    except (EventLogError, ImportError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"Wrote {rows:,} {kind} events to {output} ({used})")


main.add_command(listen)
main.add_command(send)


@main.command()
@click.argument("address")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Prefixes shown.",
)
@click.option("--span", default=None, help="Only this Dask span (id or name).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the scheduler before saying it is unreachable or gone.",
)
def watch(
    address: str,
    interval: float,
    once: bool,
    top: int,
    span: str | None,
    timeout: float,
) -> None:
    """Live terminal view of the cluster at ADDRESS (tcp://host:8786)."""
    import logging

    from dask_monitor.pipeline import UnknownSpanError
    from dask_monitor.text import safe_text
    from dask_monitor.watch import SchedulerGone
    from dask_monitor.watch import watch as run_watch

    # Dask's client logs its lost connections itself; the view says it once.
    logging.disable(logging.ERROR)
    try:
        run_watch(
            address, interval=interval, once=once, top=top, span=span, timeout=timeout
        )
    except SchedulerGone as e:
        raise click.ClickException(str(e)) from None
    except UnknownSpanError as e:  # a typo: say so, without a traceback
        raise click.ClickException(safe_text(e, 2000)) from e


# -- diff: compare two recorded runs -------------------------------------------------


def _configured_directory() -> str | None:
    """Dask config ``monitor.record.directory``, where runs are recorded by
    default: the history directory ``diff`` looks run names up in."""
    import dask

    record = dask.config.get("monitor.record", None)
    found = record.get("directory") if isinstance(record, dict) else None
    return os.fspath(found) if isinstance(found, str | os.PathLike) and found else None


def _run_log(ctx: Any, name: str, value: str, directory: str | None, index: Any) -> str:
    """The log the argument ``name`` (``value``) names: a log's path or URL,
    or a run's name in the history ``directory`` (through ``index``)."""
    from dask_monitor.config import ConfigError
    from dask_monitor.diff import resolve_run
    from dask_monitor.text import safe_text

    param = next(p for p in ctx.command.params if p.name == name)
    if index is not None:
        try:
            value = os.fspath(resolve_run(value, index))
        except LookupError as e:
            hint = ""
            if not ctx.params.get("directory"):
                hint = " (Dask config monitor.record.directory; --dir names another)"
            raise click.BadParameter(
                safe_text(f"{e}{hint}", 1000), ctx=ctx, param=param
            ) from None
        except (OSError, ConfigError) as e:
            raise _listing_failed(e, directory or "", "'--dir'") from e
    return str(_LOG.convert(value, param, ctx))


@click.command(name="diff")
@click.argument("a")
@click.argument("b")
@click.option(
    "--dir",
    "directory",
    type=_DIRECTORY,
    default=None,
    help="History directory (local or a URL) where A and B may be run names "
    "or file names (default: Dask config monitor.record.directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write an HTML page with the two runs side by side.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["slower", "errors", "any"]),
    default=None,
    help="Exit 1 when a prefix is slower, when b has new error types, or either.",
)
@click.option(
    "--min-ratio",
    type=click.FloatRange(min=1, min_open=True),
    default=None,
    help="Smallest p50 ratio called slower or faster (default 1.5).",
)
@click.option(
    "--min-seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="Smallest change of a p50 in seconds called a change (default 0.01).",
)
@click.option(
    "--min-count",
    type=click.IntRange(min=1),
    default=None,
    help="Timed tasks needed in both runs to judge a prefix (default 5).",
)
def diff_command(
    a: str,
    b: str,
    directory: str | None,
    as_json: bool,
    output: str | None,
    fail_on: str | None,
    min_ratio: float | None,
    min_seconds: float | None,
    min_count: int | None,
) -> None:
    """Compare run B against run A: which prefixes got slower.

    A and B are event logs (paths or URLs) or the names of runs recorded in
    the history directory (--dir).
    """
    import json

    from dask_monitor import diff
    from dask_monitor.runs import RunIndex
    from dask_monitor.sinks.eventlog import EventLogError

    ctx = click.get_current_context()
    where = directory or _configured_directory()
    index = None if where is None else RunIndex(where)
    a = _run_log(ctx, "a", a, where, index)
    b = _run_log(ctx, "b", b, where, index)
    try:
        result = diff.compare(
            _replay_or_fail(a)[0],
            _replay_or_fail(b)[0],
            min_ratio=diff.MIN_RATIO if min_ratio is None else min_ratio,
            min_seconds=diff.MIN_SECONDS if min_seconds is None else min_seconds,
            min_count=diff.MIN_COUNT if min_count is None else min_count,
        )
    except EventLogError as e:  # pragma: no cover - _replay_or_fail says it first
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(result, indent=1))
    else:
        click.echo(diff.format_diff(result))
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(diff.diff_html(result, label_a=a, label_b=b))
        if not as_json:
            click.echo(f"Wrote {output}")
    slower = bool(result["verdicts"]["slower"])
    errors = bool(result["new_errors"])
    failed = {"slower": slower, "errors": errors, "any": slower or errors}
    if fail_on is not None and failed[fail_on]:
        raise SystemExit(1)


main.add_command(diff_command)

# -- history list: the runs recorded in a directory -------------------------------


@main.group()
def history() -> None:
    """Browse the runs recorded in a directory of event logs."""


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@history.command(name="list")
@click.argument("directory", type=_DIRECTORY)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Runs shown, at most.",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Runs skipped first (the next page: --offset LIMIT).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
def history_list(directory: str, limit: int, offset: int, as_json: bool) -> None:
    """List the runs recorded in DIRECTORY (its *.dmlog files), newest first.

    DIRECTORY is a local directory or a URL (s3://bucket/runs), read through
    fsspec.
    """
    import datetime
    import json

    from dask_monitor.runs import list_runs
    from dask_monitor.text import safe_text

    try:
        runs = list_runs(directory, limit=limit, offset=offset)
    except OSError as e:
        raise _listing_failed(e, directory, "'DIRECTORY'") from e
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in runs], indent=2))
        return
    if not runs:
        click.echo(f"No runs in {safe_text(directory)}")
        return
    rows = [("NAME", "START (UTC)", "DURATION", "TASKS", "ERRORS", "CLUSTER", "TAGS")]
    for r in runs:
        if r.error is not None:
            name = safe_text(os.path.basename(r.path), 40)
            rows.append(
                (name, "-", "unreadable", "-", "-", "-", safe_text(r.error, 60))
            )
            continue
        start = (
            datetime.datetime.fromtimestamp(r.started, datetime.UTC).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
            if r.started is not None
            else "-"
        )
        duration = _duration_text(r.seconds)
        if not r.complete:
            duration += " (in progress/unknown)"
        tags = ",".join(f"{k}={v}" for k, v in sorted(r.tags.items()))
        rows.append(
            (
                safe_text(r.run or os.path.basename(r.path), 40),
                start,
                duration,
                f"{r.tasks:,}",
                f"{r.erred:,}",
                safe_text(r.cluster or "-", 30),
                safe_text(tags or "-", 60),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


@history.command(name="serve")
@click.argument("directory")
@click.option(
    "--port",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Port to listen on (0: a free one, printed).",
)
@click.option(
    "--address", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--page-size",
    type=click.IntRange(min=1, max=500),
    default=25,
    show_default=True,
    help="Runs on a page of the list.",
)
def history_serve(directory: str, port: int, address: str, page_size: int) -> None:
    """Serve the runs recorded in DIRECTORY (a local directory or a URL such as
    s3://bucket/runs): the list of runs, and each run's panel and report."""
    from dask_monitor.config import ConfigError
    from dask_monitor.storage import check_url, is_url, show

    if is_url(directory):
        try:
            check_url(directory, setting="DIRECTORY")
        except ConfigError as e:
            raise click.BadParameter(str(e), param_hint="'DIRECTORY'") from e
    elif not os.path.isdir(directory):
        raise click.BadParameter(
            f"{directory!r} is not a directory", param_hint="'DIRECTORY'"
        )
    from dask_monitor.panel.history import History, serve_history

    try:  # an unreachable bucket is said now, not on the first page load
        History(directory).page(1, 1)
    except (OSError, ConfigError, ValueError) as e:
        raise click.ClickException(
            f"cannot list the runs in {show(directory)}: {e}"
        ) from e
    server = serve_history(directory, port=port, address=address, page_size=page_size)
    click.echo(
        f"Serving the runs in {show(directory)} at http://{address}:{server.port}/"
    )
    click.echo("Press Ctrl+C to stop.")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
