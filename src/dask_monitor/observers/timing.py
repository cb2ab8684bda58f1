"""Per prefix timing: where the completions' time went, and their output bytes.

Each completion (``processing -> memory``) carries, from the worker's
``startstops``, its compute seconds, the seconds spent fetching dependencies
from other workers (``transfer``) and reading or writing spilled data
(``disk``), and the size of its result. They are read from the batch's
sparse details table (completions and errors only), never from event objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dask_monitor.batch import as_batch
from dask_monitor.events import Event
from dask_monitor.observers._common import (
    MEMORY,
    PROCESSING,
    BatchObserver,
    check_count,
)
from dask_monitor.snapshot import PrefixSeconds

__all__ = ["PrefixTimesObserver"]


class PrefixTimesObserver(BatchObserver):
    """Cumulative compute, transfer and disk seconds, and result bytes, per prefix.

    Parameters
    ----------
    max_prefixes
        Prefixes with a row of their own; the completions of further prefixes
        go to one internal catch-all row, and such prefixes are counted in
        :attr:`folded` (once per batch, like the durations observer's).

    Notes
    -----
    Not thread-safe: feed and read it from one thread (the pipeline's).
    Kept through Dask's ``restart``: what was spent stays spent.
    """

    name = "prefix-times"

    def __init__(self, *, max_prefixes: int = 10_000) -> None:
        self.max_prefixes = check_count("max_prefixes", max_prefixes)
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        #: prefix -> [compute, transfer, disk, nbytes]
        self._rows: dict[str, list[float]] = {}
        self._other = [0.0, 0.0, 0.0, 0.0]
        self.folded = 0

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events; only ``processing -> memory`` ones count."""
        if not events:
            return
        batch = as_batch(events)
        details = batch.details
        if not details:
            return
        starts = batch.starts
        finishes = batch.finishes
        prefixes = batch.prefixes
        rows = self._rows
        full = len(rows) >= self.max_prefixes
        folded: set[str] = set()
        for i, d in details.items():
            if finishes[i] != MEMORY or starts[i] != PROCESSING:
                continue
            p = prefixes[i]
            row = rows.get(p)
            if row is None:
                if full:
                    row = self._other
                    folded.add(p)
                else:
                    row = rows[p] = [0.0, 0.0, 0.0, 0.0]
                    full = len(rows) >= self.max_prefixes
            duration, _, _, nbytes, _, _, transfer, disk = d
            if duration is not None:
                row[0] += duration
            if transfer is not None:
                row[1] += transfer
            if disk is not None:
                row[2] += disk
            if nbytes is not None:
                row[3] += nbytes
        self.folded += len(folded)

    def seconds(self, prefix: str) -> PrefixSeconds:
        """Compute, transfer and disk seconds of a prefix (zeros if unknown)."""
        row = self._rows.get(prefix)
        if row is None:
            return {"compute": 0.0, "transfer": 0.0, "disk": 0.0}
        return {"compute": row[0], "transfer": row[1], "disk": row[2]}

    def nbytes(self, prefix: str) -> int:
        """Sum of the result sizes of a prefix's completions (0 if unknown)."""
        row = self._rows.get(prefix)
        return 0 if row is None else int(row[3])

    def snapshot(
        self, prefixes: Iterable[str] | None = None
    ) -> dict[str, tuple[PrefixSeconds, int]]:
        """``(seconds, nbytes)`` of the given prefixes (all with a row when
        ``None``); every requested name gets an entry."""
        names = self._rows if prefixes is None else prefixes
        return {name: (self.seconds(name), self.nbytes(name)) for name in names}
