"""Per prefix timing: where the completions' time went, and their output bytes.

Each completion (``processing -> memory``) carries, from the worker's
``startstops``, its compute seconds, the seconds spent fetching dependencies
from other workers (``transfer``) and reading or writing spilled data
(``disk``), and the size of its result. They are read from the batch's
sparse details table (completions and errors only), never from event objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter

from dask_monitor.batch import Details, as_batch, uniform
from dask_monitor.events import Event
from dask_monitor.observers._common import (
    BatchObserver,
    check_count,
)
from dask_monitor.snapshot import PrefixSeconds

__all__ = ["PrefixTimesObserver"]

# Fields of Details by position, found by name: ``itemgetter`` runs at C
# speed in ``map``, where an ``attrgetter`` costs more.
_DURATION, _NBYTES, _TRANSFER, _DISK = (
    itemgetter(Details._fields.index(name))
    for name in ("duration", "nbytes", "transfer", "disk")
)


class PrefixTimesObserver(BatchObserver):
    """Cumulative compute, transfer and disk seconds, and result bytes, per prefix.

    Parameters
    ----------
    max_prefixes
        Prefixes with a row of their own; the completions of further prefixes
        go to one internal catch-all row, and such prefixes are counted in
        :attr:`folded` (each once while at most ``max(max_prefixes, 10,000)``
        names are remembered; beyond, each batch counts them again).

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
        self._folded: set[str] = set()  # names, to count each once (bounded)
        self.folded = 0

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events; only ``processing -> memory`` ones count.

        A batch of one prefix (the usual ``client.map``) has each figure
        summed at C speed (``sum(filter(None, map(itemgetter(k), details)))``:
        a missing or zero figure adds nothing); others go event by event.
        """
        if not events:
            return
        batch = as_batch(events)
        details = batch.details
        if not details:
            return
        done = batch.timed_completions()
        if not done:
            return
        prefixes = batch.prefixes
        if uniform(prefixes):
            row = self._row(prefixes[0])
            ds = [details[i] for i in done]
            row[0] += sum(filter(None, map(_DURATION, ds)))
            row[1] += sum(filter(None, map(_TRANSFER, ds)))
            row[2] += sum(filter(None, map(_DISK, ds)))
            row[3] += sum(filter(None, map(_NBYTES, ds)))
            return
        rows = self._rows
        row_of = self._row
        for i in done:
            row = rows.get(prefixes[i]) or row_of(prefixes[i])
            # Unpacked into names: cheaper than four attribute reads.
            duration, _begin, _end, nbytes, _exc, _tb, transfer, disk = details[i]
            if duration:
                row[0] += duration
            if transfer:
                row[1] += transfer
            if disk:
                row[2] += disk
            if nbytes:
                row[3] += nbytes

    def _row(self, prefix: str) -> list[float]:
        """The row of a prefix, new if there is room, else the catch-all."""
        rows = self._rows
        row = rows.get(prefix)
        if row is not None:
            return row
        if len(rows) >= self.max_prefixes:
            folded = self._folded
            if prefix not in folded:
                self.folded += 1
                if len(folded) < max(self.max_prefixes, 10_000):
                    folded.add(prefix)
            return self._other
        row = rows[prefix] = [0.0, 0.0, 0.0, 0.0]
        return row

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
