"""The ``dask-monitor`` command (also ``dask monitor``)."""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group(name="monitor", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dask-monitor")
def main() -> None:
    """Watch Dask pipelines live, understand them, and keep the record."""


@main.command()
@click.option("--scale", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Size of the sample pipeline (1.0 takes ~20 s on 2 cores).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
def demo(scale: float, workers: int, threads: int) -> None:
    """Run a sample pipeline on a local cluster with the monitor attached."""
    from dask_monitor.demo import run_demo

    run_demo(scale=scale, workers=workers, threads=threads, echo=click.echo)


if __name__ == "__main__":  # pragma: no cover
    main()
