"""Run a coroutine to completion from a test, even when the test thread already has a running event
loop (Playwright's sync API keeps one for the whole session once a browser test has run)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor


def run(coro):
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-asyncio") as pool:
        return pool.submit(asyncio.run, coro).result()
