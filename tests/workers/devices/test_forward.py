"""The serial data forwarder fed by a pseudo-terminal pair at a known rate: it detects the frequency
and the axes, then its streamed values land in a recorded sample and it answers remote sampling."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import tty

import numpy as np
import pytest

from tests.helpers.aio import run
from workers.devices.forward import (
    Detected,
    Forwarder,
    ForwarderError,
    ForwardParams,
    SerialReader,
    axis_names_from,
    detect,
    parse_line,
)


def test_lines_split_on_commas_tabs_or_spaces_and_banners_are_skipped():
    assert parse_line("1.5,-2,3e2\r\n") == [1.5, -2.0, 300.0]
    assert parse_line("1.5\t-2\t3") == [1.5, -2.0, 3.0]
    assert parse_line("  1.5  -2 3 ") == [1.5, -2.0, 3.0]
    assert parse_line("1, 2, 3,") == [1.0, 2.0, 3.0]
    assert parse_line("Booting LSM9DS1...") is None
    assert parse_line("") is None
    assert parse_line("1,nan,3") is None


def test_detection_snaps_to_a_common_rate_and_takes_the_usual_column_count():
    rows = [(i / 62.3, [0.0, 1.0, 2.0]) for i in range(63)] + [(1.02, [0.0, 1.0])]
    assert detect(rows) == Detected(axes=3, frequency_hz=62.5)
    odd = [(i / 37.0, [1.0]) for i in range(38)]
    assert detect(odd).frequency_hz == 37.0


def test_detection_says_what_is_wrong():
    with pytest.raises(ForwarderError, match="only 1 line"):
        detect([(0.0, [1.0])])
    with pytest.raises(ForwarderError, match="differing numbers of values"):
        detect([(i / 10, [1.0] * (1 + i % 3)) for i in range(10)])
    with pytest.raises(ForwarderError, match="2 axis name"):
        axis_names_from("accX, accY", 3)
    with pytest.raises(ForwarderError, match="must differ"):
        axis_names_from("a,a", 2)
    assert axis_names_from("accX accY,accZ", 3) == ["accX", "accY", "accZ"]


class Board:
    """A thread writing lines of `i, i/2, -i` to the master end of a pty at `rate_hz`."""

    def __init__(self, rate_hz: float, separator: str = ","):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.rate_hz, self.separator = rate_hz, separator
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        os.write(self.master, b"LSM9DS1 ready\r\n")
        start, i = time.monotonic(), 0
        while not self.stop.is_set():
            line = self.separator.join(f"{v:g}" for v in (i, i / 2, -i)) + "\r\n"
            os.write(self.master, line.encode())
            i += 1
            time.sleep(max(0.0, start + i / self.rate_hz - time.monotonic()))

    def close(self):
        self.stop.set()
        self.thread.join(2)
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.parametrize("separator", [",", "\t", " "], ids=["comma", "tab", "space"])
def test_the_forwarder_detects_frequency_and_axes_from_a_pty(separator):
    board = Board(50, separator)
    reader = SerialReader(board.port, 115200)
    reader.start()
    board.start()
    try:
        forwarder = Forwarder(reader, ForwardParams(port=board.port, detect_s=1.0))
        detected = run(forwarder.detect())
    finally:
        reader.close()
        board.close()
    assert detected == Detected(axes=3, frequency_hz=50.0)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_forwarded_values_land_in_a_recorded_sample_and_remote_sampling_records_from_serial(
        asgi_server, api_keys, project, api):
    from projects.models import Device, Sample
    from projects.services_samples import sample_payload

    board = Board(50)
    reader = SerialReader(board.port, 115200)
    reader.start()
    board.start()

    async def scenario():
        forwarder = Forwarder(reader, ForwardParams(port=board.port, device_id="uno-1", frame_ms=100))
        detected = await forwarder.detect()
        device = forwarder.connect(server=asgi_server.url, api_key=api_keys["ingestion"],
                                   axis_names=["accX", "accY", "accZ"])
        stop = asyncio.Event()
        runner = asyncio.create_task(device.run(stop))
        started = await device.mark("start", "wave")
        await asyncio.sleep(1.5)
        stopped = await device.mark("stop")
        loop = asyncio.get_running_loop()
        pk = await loop.run_in_executor(None, lambda: Device.objects.get(device_id="uno-1").pk)
        response = await loop.run_in_executor(None, lambda: api("bob").post(
            f"/api/v1/projects/{project.id}/devices/{pk}/sample",
            {"label": "idle", "length_ms": 1000, "interval_ms": 20, "sensor": device.identity.sensors[0].name},
            format="json"))
        assert response.status_code == 202, response.json()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if await loop.run_in_executor(None, lambda: Sample.objects.filter(label="idle").exists()):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await runner
        return detected, started, stopped

    try:
        detected, started, stopped = run(scenario())
    finally:
        reader.close()
        board.close()
    assert detected == Detected(axes=3, frequency_hz=50.0)
    assert started["recording"] is True and stopped["recording"] is False
    recorded = sample_payload(Sample.objects.get(pk=stopped["sampleId"])).values
    # 1.5 s at 50 Hz, every row once and in order: the board's counter goes up by one per row.
    assert 60 <= len(recorded) <= 100
    counter = recorded[:, 0]
    assert np.array_equal(np.diff(counter), np.ones(len(counter) - 1))
    assert np.array_equal(recorded[:, 1], counter / 2) and np.array_equal(recorded[:, 2], -counter)
    sampled = Sample.objects.get(label="idle")
    assert sampled.signed and sampled.interval_ms == 20
    values = sample_payload(sampled).values
    assert len(values) == 50 and np.array_equal(np.diff(values[:, 0]), np.ones(49))
