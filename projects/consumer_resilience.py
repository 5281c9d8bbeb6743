"""Keeps a websocket consumer alive when its channel layer read fails: Redis restarting, or redis-py 8's
default 5 s socket timeout racing channels_redis' 5 s BZPOPMIN on an idle process (both end the read
with an exception which, unhandled, ends the consumer and drops its websocket)."""
from __future__ import annotations

import asyncio
import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, asyncio.TimeoutError, OSError)


class ResilientChannelReceive:
    """Mixin for Channels consumers (put it first in the bases). AsyncConsumer assigns
    `self.channel_receive` once and awaits it in a loop; this property wraps what it assigns, so a
    failed read is retried (with backoff while Redis is away) instead of ending the consumer."""

    @property
    def channel_receive(self):
        return self._receive_retrying

    @channel_receive.setter
    def channel_receive(self, receive) -> None:
        self._raw_channel_receive = receive

    async def _receive_retrying(self):
        delay = 0.05
        while True:
            try:
                return await self._raw_channel_receive()
            except TRANSIENT as exc:
                # A cancel that lands while redis-py's read timeout expires comes out as its TimeoutError
                # with the task still being cancelled (Task.cancelling() > 0): the consumer is closing,
                # so end the read instead of starting another (which kept closed consumers alive until
                # the server killed them).
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError() from exc
                if isinstance(exc, RedisTimeoutError):
                    continue  # an idle read timed out: nothing was lost, read again
                if delay == 0.05:  # once per outage, not once per retry
                    log.warning("channel layer read failed (%s); retrying until it answers", exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
