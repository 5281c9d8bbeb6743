"""The channel-layer read retry of every websocket consumer (projects/consumer_resilience.py).

The Redis restart itself is exercised end to end in test_device_server.py; these cases pin the retry's
two edges with a read function standing in for channels_redis' (the only stand-in: what redis-py raises
is reproduced, not mocked away)."""
from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from projects.consumer_resilience import ResilientChannelReceive


class Consumer(ResilientChannelReceive):
    pass


def test_an_idle_read_timeout_is_read_again_without_losing_the_next_message():
    consumer, calls = Consumer(), []

    async def raw():
        calls.append(1)
        if len(calls) < 3:
            raise RedisTimeoutError("Timeout reading from 127.0.0.1:6379")
        return {"type": "device.command"}

    consumer.channel_receive = raw
    assert asyncio.run(consumer.channel_receive()) == {"type": "device.command"}
    assert len(calls) == 3


def test_a_cancel_that_redis_turns_into_a_read_timeout_ends_the_read():
    # redis-py can swallow a cancel that lands while it connects and surface it later as its own
    # TimeoutError, with the task still being cancelled: the retry must end, not read again (it kept
    # closed consumers alive until the server killed them).
    consumer, calls = Consumer(), []

    async def raw():
        calls.append(1)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise RedisTimeoutError("Timeout reading from 127.0.0.1:6379") from None

    consumer.channel_receive = raw

    async def scenario():
        read = asyncio.ensure_future(consumer.channel_receive())
        await asyncio.sleep(0.05)
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(read, 5)

    asyncio.run(scenario())
    assert calls == [1]
