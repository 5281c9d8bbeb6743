"""The real `edgeimpulse` Python SDK, pointed at our server by EI_INGESTION_ENDPOINT only, uploads
JSON, CSV, WAV, PNG, numpy arrays and a pandas data frame that land as the right samples."""

from __future__ import annotations

import importlib
import io
import json
import sys

import numpy as np
import pytest

from projects.models import Sample
from projects.services_samples import sample_payload
from tests.helpers.samples import (
    accelerometer_values,
    csv_bytes,
    ei_document,
    ei_json_bytes,
    image_pixels,
    png_bytes,
    tone,
    wav_bytes,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def ei(asgi_server, api_keys, monkeypatch):
    monkeypatch.setenv("EI_INGESTION_ENDPOINT", asgi_server.url)
    monkeypatch.setenv("EI_API_KEY", api_keys["ingestion"])
    if "tensorflow" not in sys.modules:
        # The SDK imports TensorFlow only for its model tools; hiding it halves the import time.
        monkeypatch.setitem(sys.modules, "tensorflow", None)
    import edgeimpulse

    # The SDK reads both variables when it is imported: re-read them for this server.
    edgeimpulse = importlib.reload(edgeimpulse)
    assert edgeimpulse.INGESTION_ENDPOINT == asgi_server.url
    return edgeimpulse


def test_upload_samples_of_json_csv_wav_and_png_land_as_the_right_samples(ei, project, asgi_server):
    from edgeimpulse.data import Sample as EiSample
    from edgeimpulse.data import upload_samples
    from edgeimpulse.data.sample_type import DataAcquisition, Payload, Protected, Sensor

    values = accelerometer_values(30)
    other = accelerometer_values(30, seed=1)
    acquisition = DataAcquisition(
        protected=Protected(),
        payload=Payload(
            device_type="SDK_TEST",
            interval_ms=10,
            values=other.tolist(),
            sensors=[Sensor(name=n, units="m/s2") for n in ("accX", "accY", "accZ")],
        ),
    )
    samples = [
        EiSample(
            filename="wave.01.json",
            data=io.BytesIO(ei_json_bytes(ei_document(values))),
            category="training",
            label="wave",
            metadata={"site": "lab"},
        ),
        EiSample(filename="object.01.json", data=acquisition, category="testing", label="object"),
        EiSample(
            filename="idle.01.csv",
            data=io.BytesIO(csv_bytes(accelerometer_values(20, seed=3))),
            category="training",
            label="idle",
        ),
        EiSample(
            filename="yes.01.wav",
            data=io.BytesIO(wav_bytes(tone(1600))),
            category="testing",
            label="yes",
        ),
        EiSample(
            filename="cat.01.png",
            data=io.BytesIO(png_bytes(image_pixels())),
            category="anomaly",
            label="cat",
        ),
    ]
    response = upload_samples(samples)
    assert len(response.fails) == 0, (
        [(str(f.sample), f.error) for f in response.fails],
        asgi_server.output()[-3000:],
    )
    assert len(response.successes) == 5
    ids = {s.sample.filename: s.sample.sample_id for s in response.successes}
    rows = {s.file_name: s for s in Sample.objects.filter(project=project)}
    assert set(rows) == set(ids)
    expect = {
        "wave.01.json": ("training", "wave", "time-series"),
        "object.01.json": ("testing", "object", "time-series"),
        "idle.01.csv": ("training", "idle", "time-series"),
        "yes.01.wav": ("testing", "yes", "audio"),
        "cat.01.png": ("anomaly", "cat", "image"),
    }
    for name, (category, label, kind) in expect.items():
        row = rows[name]
        assert (row.category, row.label, row.kind) == (category, label, kind), name
        assert row.id == ids[name] and row.upload_source == "EDGE_IMPULSE_PYTHON_SDK"
    assert rows["wave.01.json"].metadata == {"site": "lab"}
    assert np.array_equal(sample_payload(rows["object.01.json"]).values, other)
    # The SDK refuses duplicates by default (x-disallow-duplicates): a second upload fails cleanly.
    again = upload_samples(
        [
            EiSample(
                filename="wave.02.json",
                data=io.BytesIO(ei_json_bytes(ei_document(values))),
                category="training",
                label="wave",
            )
        ]
    )
    assert len(again.successes) == 0 and "already exists" in json.dumps(again.fails[0].error)
    assert Sample.objects.filter(project=project).count() == 5


def test_upload_numpy_and_upload_pandas_land_as_time_series(ei, project):
    import pandas as pd
    from edgeimpulse.data import upload_numpy, upload_pandas_sample

    data = np.stack([accelerometer_values(40, seed=s) for s in range(4)])
    response = upload_numpy(
        data=data,
        labels=["up", "down", "up", "down"],
        sample_rate_ms=20,
        sensors=[{"name": n, "units": "m/s2"} for n in ("ax", "ay", "az")],
        metadata={"rig": "A"},
        category="training",
    )
    assert len(response.fails) == 0, [f.error for f in response.fails]
    rows = list(Sample.objects.filter(project=project).order_by("id"))
    assert [r.label for r in rows] == ["up", "down", "up", "down"] or sorted(
        r.label for r in rows
    ) == ["down", "down", "up", "up"]
    for row in rows:
        assert row.interval_ms == 20 and row.value_count == 120 and row.metadata == {"rig": "A"}
        assert [s["name"] for s in row.sensors] == ["ax", "ay", "az"]
    by_id = {r.id: r for r in rows}
    for success in response.successes:
        payload = sample_payload(by_id[success.sample.sample_id]).values
        assert any(np.array_equal(payload, d) for d in data)

    frame = pd.DataFrame(accelerometer_values(25, seed=9), columns=["accX", "accY", "accZ"])
    response = upload_pandas_sample(
        frame, label="circle", sample_rate_ms=10, filename="circle01", category="testing"
    )
    assert len(response.fails) == 0, [f.error for f in response.fails]
    row = Sample.objects.get(project=project, file_name="circle01.csv")
    assert (row.label, row.category, row.interval_ms, row.value_count) == (
        "circle",
        "testing",
        10,
        75,
    )
    assert np.array_equal(sample_payload(row).values, frame.to_numpy(dtype=np.float32))
