"""Event-log writer and reader: a local log against one in S3 (moto's server
on 127.0.0.1, through s3fs), 200,000 task events rotated every 1 MiB.

Run: ``PYTHONPATH=src:. python benchmarks/storage.py`` (a few seconds).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time

import fsspec
from moto.server import ThreadedMotoServer
from tests.test_eventlog import _events

from dask_monitor.sinks.eventlog import EventLogWriter, read_events


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_DEFAULT_REGION="us-east-1"
    )
    endpoint = f"http://127.0.0.1:{port}"
    fsspec.config.conf["s3"] = {"client_kwargs": {"endpoint_url": endpoint}}
    fsspec.filesystem("s3").mkdir("bench")
    batches = [_events(1000, t0=1000.0 + 2000 * i) for i in range(200)]
    local = os.path.join(tempfile.mkdtemp(), "a.dmlog")
    try:
        for target in (local, "s3://bench/a.dmlog"):
            t = time.perf_counter()
            writer = EventLogWriter(target, max_bytes=2**20, queue_size=10**7)
            for batch in batches:
                writer.update_batch(batch)
            queued = time.perf_counter() - t
            writer.close()
            written = time.perf_counter() - t
            t = time.perf_counter()
            n = sum(1 for _ in read_events(target))
            read = time.perf_counter() - t
            st = writer.stats()
            print(
                f"{target.split('/')[0] or 'local'}: 200,000 events queued in "
                f"{queued * 1e3:.0f} ms, written and closed in {written:.2f} s, "
                f"{st['segments']} segments, uploads {st.get('uploads', '-')}, "
                f"dropped {st['dropped']}; read back {n:,} in {read:.2f} s"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
