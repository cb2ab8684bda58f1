"""Observers: bounded aggregates and samples of the event stream.

Each observer takes batches of events (``update_batch``), forgets everything
on ``reset`` (Dask's ``restart``) and describes itself as plain data with
``snapshot``. The pipeline assembles them; see :mod:`dask_monitor.pipeline`.

A batch is any sequence of events; the built-in observers turn it into a
columnar :class:`~dask_monitor.batch.Batch` (what the plugin's flush makes
already) and read its columns, making event objects only for what they keep.
"""

from __future__ import annotations

from dask_monitor.observers.durations import DurationsObserver
from dask_monitor.observers.errors import ErrorsObserver, ErrorsSnapshot
from dask_monitor.observers.eta import EtaEstimator, EtaSnapshot
from dask_monitor.observers.progress import ProgressObserver, ProgressSnapshot
from dask_monitor.observers.sampling import SamplingObserver
from dask_monitor.observers.sketch import LogHistogram
from dask_monitor.observers.throughput import ThroughputObserver
from dask_monitor.observers.workers import WorkersObserver

__all__ = [
    "DurationsObserver",
    "ErrorsObserver",
    "ErrorsSnapshot",
    "EtaEstimator",
    "EtaSnapshot",
    "LogHistogram",
    "ProgressObserver",
    "ProgressSnapshot",
    "SamplingObserver",
    "ThroughputObserver",
    "WorkersObserver",
]
