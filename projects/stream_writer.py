"""Group commit of device stream frames: every connection in a server process hands its frames to one
writer, which stores what has queued up in a single transaction and then wakes each connection to
acknowledge. One commit per batch instead of one per device keeps acknowledgement latency flat as
devices are added (a commit costs about the same for 1 frame or 1,000).

The writer has its own thread and keeps its database connection open: database_sync_to_async closes
and reopens the connection around every call when CONN_MAX_AGE is 0, which costs SQLite 15-30 ms, more
than the commit itself (bench/ingest_ws.py)."""
from __future__ import annotations

import asyncio
import weakref
from concurrent.futures import ThreadPoolExecutor

from . import services_devices as devices

MAX_BATCH_FRAMES = 5000
_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-writer")


def _store(items: list) -> None:
    from django.db import connection

    try:
        devices.stream_store_many(items=items)
    except Exception:
        connection.close()  # never reuse a connection that failed (database restarted, locked, …)
        raise


class StreamWriter:
    def __init__(self) -> None:
        self.queue: list[tuple[int, list, asyncio.Future]] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def store(self, device_pk: int, chunks: list[tuple[int, int, bytes]]) -> None:
        """Return once the chunks are committed; raise what the database raised if they were not."""
        future = asyncio.get_running_loop().create_future()
        self.queue.append((device_pk, chunks, future))
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        await future

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch, frames = [], 0
                while self.queue and frames < MAX_BATCH_FRAMES:
                    item = self.queue.pop(0)
                    batch.append(item)
                    frames += len(item[1])
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        _thread, _store, [(pk, chunks) for pk, chunks, _ in batch])
                except Exception as exc:  # noqa: BLE001 (each waiting connection retries)
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for *_, future in batch:
                        if not future.done():
                            future.set_result(None)


_writers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def writer() -> StreamWriter:
    """The writer of the running event loop (one per server process; tests run several loops)."""
    loop = asyncio.get_running_loop()
    if loop not in _writers:
        _writers[loop] = StreamWriter()
    return _writers[loop]
