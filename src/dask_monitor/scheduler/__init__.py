"""The scheduler side: the plugin on Dask's scheduler and what only it needs.

- :mod:`~dask_monitor.scheduler.plugin`: :class:`MonitorPlugin` (life cycle,
  hooks, flush, RPC handlers, attach);
- :mod:`~dask_monitor.scheduler.dashboard`: the one module that wires the
  plugin to the panel's pages.

This package's ``__init__`` imports nothing, so that importing one of its
modules does not import the others.
"""
