"""Tests of the canonical sample payload: encoding, decoding, hashing, WAV and EI JSON export."""

from __future__ import annotations

import io
import json
import wave
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.ml.samples import (
    Image,
    SampleError,
    Sensor,
    TimeSeries,
    canonical_extension,
    content_sha256,
    decode,
    encode,
    to_ei_json,
    to_wav,
)

ACC = (Sensor("accX", "m/s2"), Sensor("accY", "m/s2"), Sensor("accZ", "m/s2"))


def series(n: int = 20, seed: int = 0) -> TimeSeries:
    values = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    return TimeSeries(values=values, interval_ms=10, sensors=ACC)


def test_time_series_round_trips_through_npz_bit_for_bit() -> None:
    ts = series()
    data = encode(ts)
    assert data[:4] == b"PK\x03\x04"
    back = decode(data)
    assert isinstance(back, TimeSeries)
    assert back == ts
    assert back.values.dtype == np.float32
    assert back.sensors == ACC
    assert canonical_extension(ts) == "npz"


def test_encoding_is_deterministic_so_equal_payloads_give_equal_files() -> None:
    assert encode(series()) == encode(series())
    assert encode(series()) != encode(series(seed=1))


def test_image_round_trips_through_png_for_rgb_and_grayscale() -> None:
    rng = np.random.default_rng(0)
    for shape in [(9, 13, 3), (9, 13, 1)]:
        image = Image(pixels=rng.integers(0, 256, size=shape, dtype=np.uint8))
        data = encode(image)
        assert data.startswith(b"\x89PNG")
        assert decode(data) == image
        assert canonical_extension(image) == "png"


def test_two_dimensional_pixels_become_one_channel() -> None:
    image = Image(pixels=np.zeros((4, 5), dtype=np.uint8))
    assert image.pixels.shape == (4, 5, 1)
    assert (image.width, image.height, image.channels) == (5, 4, 1)


def test_time_series_properties_describe_the_recording() -> None:
    ts = TimeSeries(
        values=np.zeros(16000), interval_ms=1000 / 16000, sensors=(Sensor("audio", "wav"),)
    )
    assert ts.values.shape == (16000, 1)
    assert ts.frequency_hz == pytest.approx(16000)
    assert ts.duration_ms == pytest.approx(1000)
    assert ts.is_audio
    assert not series().is_audio
    assert series().axes == ("accX", "accY", "accZ")


@pytest.mark.parametrize(
    ("values", "interval", "sensors", "message"),
    [
        (np.zeros((3, 2)), 10, ACC, "3 sensors"),
        (np.zeros((3, 3)), 0, ACC, "interval_ms"),
        (np.zeros((3, 3)), float("nan"), ACC, "interval_ms"),
        (np.array([[1, np.inf, 0]]), 10, ACC, "NaN or infinite"),
        (np.zeros((0, 3)), 10, ACC, "shape"),
        (np.zeros((2, 2, 2)), 10, ACC, "shape"),
    ],
)
def test_invalid_time_series_is_refused_with_the_reason(values, interval, sensors, message) -> None:
    with pytest.raises(SampleError, match=message):
        TimeSeries(values=values, interval_ms=interval, sensors=sensors)


def test_invalid_images_are_refused() -> None:
    with pytest.raises(SampleError, match="uint8"):
        Image(pixels=np.zeros((2, 2, 3), dtype=np.float32))
    with pytest.raises(SampleError, match="1 or 3"):
        Image(pixels=np.zeros((2, 2, 4), dtype=np.uint8))


def test_payload_arrays_are_read_only() -> None:
    ts = series()
    with pytest.raises(ValueError):
        ts.values[0, 0] = 1


def test_content_hash_depends_on_values_interval_and_axis_names_but_not_units() -> None:
    ts = series()
    assert content_sha256(ts) == content_sha256(series())
    other_units = TimeSeries(ts.values, 10, tuple(Sensor(s.name, "") for s in ACC))
    assert content_sha256(other_units) == content_sha256(ts)
    assert content_sha256(TimeSeries(ts.values, 20, ACC)) != content_sha256(ts)
    renamed = TimeSeries(ts.values, 10, (Sensor("x", ""), Sensor("y", ""), Sensor("z", "")))
    assert content_sha256(renamed) != content_sha256(ts)
    changed = ts.values.copy()
    changed[3, 1] += 1e-3
    assert content_sha256(TimeSeries(changed, 10, ACC)) != content_sha256(ts)


def test_content_hash_of_images_tells_shapes_apart() -> None:
    flat = Image(pixels=np.zeros((2, 6, 1), dtype=np.uint8))
    tall = Image(pixels=np.zeros((6, 2, 1), dtype=np.uint8))
    assert content_sha256(flat) != content_sha256(tall)
    assert len(content_sha256(flat)) == 64


def test_wav_export_plays_back_in_the_standard_library_reader() -> None:
    pcm = (8000 * np.sin(np.arange(1600) / 5)).astype(np.int16)
    ts = TimeSeries(pcm.reshape(-1, 1), 1000 / 16000, (Sensor("audio", "wav"),))
    with wave.open(io.BytesIO(to_wav(ts))) as reader:
        assert reader.getframerate() == 16000
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        frames = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    assert np.array_equal(frames, pcm)


def test_wav_export_clips_values_beyond_int16_and_keeps_channels() -> None:
    ts = TimeSeries(
        np.array([[40000.0, -40000.0], [1.4, -1.6]]),
        1000 / 8000,
        (Sensor("l", "wav"), Sensor("r", "wav")),
    )
    with wave.open(io.BytesIO(to_wav(ts))) as reader:
        assert reader.getnchannels() == 2
        frames = np.frombuffer(reader.readframes(2), dtype="<i2").reshape(2, 2)
    assert frames.tolist() == [[32767, -32768], [1, -2]]


def test_ei_json_export_keeps_float32_values_short_and_exact() -> None:
    values = np.array([[0.077, -9.81, 1e-7], [3.0, 2.5, 100.125]], dtype=np.float32)
    doc = to_ei_json(TimeSeries(values, 10, ACC), "dev-1", "WIIMOTE")
    assert doc["protected"]["alg"] == "none"
    assert doc["signature"] == "0" * 64
    payload = doc["payload"]
    assert payload["device_name"] == "dev-1"
    assert payload["device_type"] == "WIIMOTE"
    assert payload["values"][0][0] == 0.077
    assert np.array_equal(np.array(payload["values"], dtype=np.float32), values)
    json.dumps(doc, allow_nan=False)


def test_ei_json_export_of_audio_is_a_flat_list_of_integers() -> None:
    ts = TimeSeries(np.array([1, -2, 3]), 0.0625, (Sensor("audio", "wav"),))
    doc = to_ei_json(ts, None, "MIC")
    assert doc["payload"]["values"] == [1, -2, 3]
    assert all(type(v) is int for v in doc["payload"]["values"])
    assert "device_name" not in doc["payload"]


def test_decode_refuses_garbage_and_pickled_arrays() -> None:
    with pytest.raises(SampleError, match="neither"):
        decode(b"hello")
    with pytest.raises(SampleError):
        decode(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(SampleError):
        decode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    pickled = io.BytesIO()
    np.savez(pickled, values=np.array([object()], dtype=object), header=np.zeros(2, np.uint8))
    with pytest.raises(SampleError, match="cannot be read"):
        decode(pickled.getvalue())


def test_decode_refuses_an_npz_with_other_arrays() -> None:
    out = io.BytesIO()
    np.savez(out, values=np.zeros((2, 1), np.float32))
    with pytest.raises(SampleError, match="arrays"):
        decode(out.getvalue())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_decode_of_random_bytes_raises_only_sample_error(data: bytes) -> None:
    for candidate in (data, b"PK\x03\x04" + data, b"\x89PNG\r\n\x1a\n" + data):
        try:
            decode(candidate)
        except SampleError:
            pass


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.binary(min_size=1, max_size=4))
def test_decode_of_corrupted_canonical_files_raises_only_sample_error(
    pos: int, junk: bytes
) -> None:
    for data in (encode(series(5)), encode(Image(pixels=np.full((3, 3, 3), 7, np.uint8)))):
        index = pos % len(data)
        corrupted = data[:index] + junk + data[index + len(junk) :]
        try:
            decode(corrupted)
        except SampleError:
            pass
        try:
            decode(data[:index])
        except SampleError:
            pass


def test_decode_refuses_an_unknown_header_version() -> None:
    header = json.dumps({"version": 9, "interval_ms": 10, "sensors": [{"name": "a", "units": ""}]})
    out = io.BytesIO()
    np.savez(
        out,
        values=np.zeros((2, 1), np.float32),
        header=np.frombuffer(header.encode(), dtype=np.uint8),
    )
    with pytest.raises(SampleError, match="version 9"):
        decode(out.getvalue())


def test_npz_files_carry_fixed_timestamps() -> None:
    with zipfile.ZipFile(io.BytesIO(encode(series()))) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
