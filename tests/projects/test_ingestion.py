"""Tests of upload parsing: every format round-trips, signatures verify the reference way, bad input
gets an IngestionError with the right status and message, and fuzzing raises nothing else."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from projects.ingestion import (
    IngestionError,
    Limits,
    ParsedSample,
    detect_format,
    label_from_file_name,
    parse_metadata_header,
    parse_upload,
    safe_file_name,
    split_category,
    validate_label,
)
from tests.helpers.samples import (
    HMAC_KEY,
    accelerometer_values,
    csv_bytes,
    ei_cbor_bytes,
    ei_document,
    ei_json_bytes,
    image_pixels,
    jpeg_bytes,
    png_bytes,
    tone,
    wav_bytes,
)
from workers.ml.samples import Image, TimeSeries, content_sha256, decode, encode, to_ei_json, to_wav

DATA = Path(__file__).resolve().parents[1] / "data" / "ingestion"
# The key the ingestion-sdk-c example signs with; the reference files in DATA use it too.
SDK_EXAMPLE_KEY = "fed53116f20684c067774ebf9e7bcbdc"
LIMITS = Limits()
CONTENT_TYPES = {
    "json": "application/json",
    "cbor": "application/cbor",
    "csv": "text/csv",
    "wav": "audio/wav",
    "jpeg": "image/jpeg",
    "png": "image/png",
}


def parse(
    data: bytes,
    content_type: str | None = None,
    *,
    file_name: str | None = None,
    hmac_key: str | None = None,
    require_signed: bool = False,
    limits: Limits = LIMITS,
) -> ParsedSample:
    return parse_upload(
        data,
        file_name=file_name,
        content_type=content_type,
        hmac_key=hmac_key,
        require_signed=require_signed,
        limits=limits,
    )


def rejected(data: bytes, content_type: str | None = None, **kwargs: Any) -> IngestionError:
    with pytest.raises(IngestionError) as caught:
        parse(data, content_type, **kwargs)
    return caught.value


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", [ei_json_bytes, ei_cbor_bytes], ids=["json", "cbor"])
def test_ei_acquisition_document_round_trips_values_sensors_and_device(encoder) -> None:
    values = accelerometer_values(40)
    parsed = parse(
        encoder(ei_document(values)),
        "application/json" if encoder is ei_json_bytes else "application/cbor",
    )
    assert parsed.kind == "time-series"
    assert isinstance(parsed.payload, TimeSeries)
    assert np.array_equal(parsed.payload.values, values)
    assert parsed.payload.interval_ms == 10
    assert [(s.name, s.units) for s in parsed.sensors] == [
        ("accX", "m/s2"),
        ("accY", "m/s2"),
        ("accZ", "m/s2"),
    ]
    assert parsed.device_name == "ac:87:a3:0a:2d:1b"
    assert parsed.device_type == "DISCO-L475VG-IOT01A"
    assert parsed.signed is False
    assert parsed.raw_extension == ("json" if encoder is ei_json_bytes else "cbor")
    assert decode(encode(parsed.payload)) == parsed.payload


def test_one_axis_values_may_be_flat_or_rows_and_give_the_same_sample() -> None:
    sensors = [("accZ", "g")]
    flat = parse(ei_json_bytes(ei_document([0.5, 1.5, -2], sensors=sensors)), "application/json")
    rows = parse(
        ei_json_bytes(ei_document([[0.5], [1.5], [-2]], sensors=sensors)), "application/json"
    )
    assert flat.payload == rows.payload
    assert flat.payload.values.shape == (3, 1)


def test_audio_in_the_acquisition_format_is_recognised_by_its_wav_units() -> None:
    doc = ei_document([1, 2, 3], sensors=[("audio", "wav")], interval_ms=0.0625)
    assert parse(ei_json_bytes(doc), "application/json").kind == "audio"


def test_csv_round_trips_and_hashes_like_the_same_json() -> None:
    values = accelerometer_values(30)
    parsed = parse(csv_bytes(values, interval_ms=10, t0=1000), "text/csv")
    assert parsed.kind == "time-series"
    assert parsed.raw_extension == "csv"
    assert parsed.payload.interval_ms == pytest.approx(10)
    assert parsed.payload.axes == ("accX", "accY", "accZ")
    assert np.array_equal(parsed.payload.values, values)
    from_json = parse(ei_json_bytes(ei_document(values)), "application/json")
    from_cbor = parse(ei_cbor_bytes(ei_document(values)), "application/cbor")
    assert content_sha256(parsed.payload) == content_sha256(from_json.payload)
    assert content_sha256(from_cbor.payload) == content_sha256(from_json.payload)


def test_csv_interval_with_float_noise_hashes_like_json_with_the_exact_interval() -> None:
    values = accelerometer_values(4)
    from_csv = parse(csv_bytes(values, interval_ms=0.1), "text/csv").payload
    from_json = parse(ei_json_bytes(ei_document(values, interval_ms=0.1)), "application/json")
    assert from_csv.interval_ms != from_json.payload.interval_ms  # (0.3 - 0) / 3 = 0.0999...
    assert content_sha256(from_csv) == content_sha256(from_json.payload)


def test_csv_with_whole_millisecond_timestamps_is_regular_enough() -> None:
    stamps = np.floor(np.arange(40) * 15.625)  # 64 Hz written as whole milliseconds
    body = "timestamp,accX\n" + "".join(f"{int(t)},{i}\n" for i, t in enumerate(stamps))
    parsed = parse(body.encode(), "text/csv")
    assert parsed.payload.interval_ms == pytest.approx(15.625, abs=0.05)


def test_csv_timestamp_column_may_be_anywhere_and_any_case() -> None:
    body = b"accX,TimeStamp,accY\n1,0,2\n3,20,4\n5,40,6\n"
    parsed = parse(body, "text/csv")
    assert parsed.payload.axes == ("accX", "accY")
    assert parsed.payload.values.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert parsed.payload.interval_ms == 20


@pytest.mark.parametrize("channels", [1, 2])
def test_wav_round_trips_pcm_rate_and_channels(channels: int) -> None:
    pcm = tone(800, channels=channels)
    parsed = parse(wav_bytes(pcm, 8000), "audio/wav")
    assert parsed.kind == "audio"
    assert parsed.raw_extension == "wav"
    assert parsed.payload.interval_ms == pytest.approx(0.125)
    assert np.array_equal(parsed.payload.values, pcm.reshape(800, channels).astype(np.float32))
    assert len(parsed.sensors) == channels
    assert all(s.units == "wav" for s in parsed.sensors)
    assert parse(to_wav(parsed.payload), "audio/wav").payload == parsed.payload


def test_extensible_wav_with_pcm_subformat_is_accepted() -> None:
    pcm = tone(100)
    data = bytearray(wav_bytes(pcm))
    fmt = (
        struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 32000, 2, 16, 22, 16, 4)
        + struct.pack("<H", 1)
        + bytes(14)
    )
    chunk = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body = b"WAVE" + chunk + bytes(data[36:])
    parsed = parse(b"RIFF" + struct.pack("<I", len(body)) + body, "audio/wav")
    assert np.array_equal(parsed.payload.values[:, 0], pcm.astype(np.float32))


def test_png_round_trips_pixels_exactly_for_rgb_and_grayscale() -> None:
    for channels in (3, 1):
        pixels = image_pixels(channels=channels)
        parsed = parse(png_bytes(pixels), "image/png")
        assert parsed.kind == "image"
        assert parsed.raw_extension == "png"
        assert isinstance(parsed.payload, Image)
        assert np.array_equal(parsed.payload.pixels.reshape(pixels.shape), pixels)
        assert decode(encode(parsed.payload)) == parsed.payload


def test_jpeg_decodes_close_to_the_original() -> None:
    y, x = np.mgrid[0:24, 0:32]
    pixels = np.stack([x * 8, y * 10, (x + y) * 4], axis=-1).astype(np.uint8)
    parsed = parse(jpeg_bytes(pixels, quality=95), "image/jpeg")
    assert parsed.raw_extension == "jpg"
    assert parsed.payload.pixels.shape == pixels.shape
    assert np.abs(parsed.payload.pixels.astype(int) - pixels).mean() < 4


def test_rgba_palette_and_16_bit_pngs_become_rgb_or_grayscale() -> None:
    rgba = PILImage.fromarray(image_pixels(channels=3)).convert("RGBA")
    palette = PILImage.fromarray(image_pixels(channels=3)).convert("P")
    wide = PILImage.frombytes("I;16", (8, 8), (np.arange(64, dtype="<u2") * 1000).tobytes())
    shapes = []
    for pil in (rgba, palette, wide):
        out = io.BytesIO()
        pil.save(out, format="PNG")
        shapes.append(parse(out.getvalue(), "image/png").payload.pixels.shape)
    assert shapes == [(24, 32, 3), (24, 32, 3), (8, 8, 1)]
    out = io.BytesIO()
    wide.save(out, format="PNG")
    gray = parse(out.getvalue(), "image/png").payload.pixels[:, :, 0]
    assert gray[0, 1] == round(1000 / 257) and gray[7, 7] == round(63000 / 257)


def test_exported_ei_json_re_imports_to_the_same_sample() -> None:
    original = parse(csv_bytes(accelerometer_values(25)), "text/csv").payload
    exported = json.dumps(to_ei_json(original, "dev", "PHONE")).encode()
    again = parse(exported, "application/json")
    assert again.payload.values.tolist() == original.values.tolist()
    assert again.device_type == "PHONE"
    assert content_sha256(again.payload) == content_sha256(original)


def test_shared_data_set_files_parse() -> None:
    gesture = parse(
        (DATA / "away.001.json").read_bytes(), "application/json", file_name="away.001.json"
    )
    assert gesture.kind == "time-series"
    assert gesture.payload.values.shape == (149, 1)
    assert gesture.payload.interval_ms == 10
    assert gesture.device_type == "NINTENDO_WIIMOTE"
    assert label_from_file_name("away.001.json") == "away"
    word = parse((DATA / "down.001.wav").read_bytes(), None, file_name="down.001.wav")
    assert word.kind == "audio"
    assert word.payload.values.shape == (16000, 1)
    assert word.payload.interval_ms == pytest.approx(1000 / 16000)
    assert np.abs(word.payload.values).max() > 1000


# --- format detection --------------------------------------------------------------------------


def test_format_comes_from_content_type_then_extension_then_bytes() -> None:
    doc = ei_json_bytes(ei_document(accelerometer_values(3)))
    assert (
        detect_format(doc, file_name=None, content_type="application/json; charset=utf-8") == "json"
    )
    assert detect_format(doc, file_name="x.json", content_type="application/octet-stream") == "json"
    assert detect_format(doc, file_name=None, content_type=None) == "json"
    cbor = ei_cbor_bytes(ei_document(accelerometer_values(3)))
    assert detect_format(cbor, file_name="upload.bin", content_type=None) == "cbor"
    assert (
        detect_format(csv_bytes(accelerometer_values(3)), file_name="a.CSV", content_type="")
        == "csv"
    )
    assert detect_format(wav_bytes(tone(10)), file_name=None, content_type=None) == "wav"


def test_a_jpeg_sent_as_png_is_decoded_as_the_jpeg_it_is() -> None:
    parsed = parse(jpeg_bytes(image_pixels()), "image/png", file_name="cat.png")
    assert parsed.raw_extension == "jpg"


def test_json_that_the_edgeimpulse_sdk_sends_as_cbor_is_parsed_as_json() -> None:
    # edgeimpulse.data.upload_samples posts json.dumps(asdict(DataAcquisition(...))) with the
    # part's content type "application/cbor"; iat, signature and device_name are null.
    body = {
        "protected": {"ver": "v1", "alg": "none", "iat": None},
        "payload": {
            "device_type": "EDGE_IMPULSE_PYTHON_SDK",
            "sensors": [{"name": "a", "units": "m/s2"}, {"name": "b", "units": "m/s2"}],
            "values": [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]],
            "interval_ms": 10,
            "device_name": None,
        },
        "signature": None,
    }
    parsed = parse(json.dumps(body).encode(), "application/cbor", file_name="d96c24ee53c78e8c.json")
    assert parsed.raw_extension == "json"
    assert parsed.device_name is None
    assert parsed.payload.values.tolist() == [[0, 1], [2, 3], [4, 5]]
    cbor = ei_cbor_bytes(ei_document(accelerometer_values(3)))
    assert parse(cbor, "application/json").raw_extension == "cbor"


def test_unsupported_content_type_is_415() -> None:
    error = rejected(b"GIF89a", "image/gif")
    assert error.status == 415
    assert "image/gif" in error.message


def test_unrecognisable_bytes_without_type_are_415() -> None:
    error = rejected(b"\x00\x01garbage", None, file_name="blob.xyz")
    assert error.status == 415


# --- signatures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "content_type"),
    [
        (lambda d, k: ei_json_bytes(d, k, style="js"), "application/json"),
        (lambda d, k: ei_json_bytes(d, k, style="python"), "application/json"),
        (ei_cbor_bytes, "application/cbor"),
    ],
    ids=["json-stringify", "python-json-dumps", "cbor-ingestion-sdk-c"],
)
def test_signed_documents_verify_and_any_changed_byte_fails(build, content_type) -> None:
    data = build(ei_document(accelerometer_values(20)), HMAC_KEY)
    parsed = parse(data, content_type, hmac_key=HMAC_KEY, require_signed=True)
    assert parsed.signed is True
    value_at = data.rfind(b"9") if content_type == "application/json" else len(data) - 3
    tampered = data[:value_at] + bytes([data[value_at] ^ 0x01]) + data[value_at + 1 :]
    error = rejected(tampered, content_type, hmac_key=HMAC_KEY)
    assert error.status == 400
    assert "HMAC" in error.message or "CBOR" in error.message


def test_cbor_printed_by_the_ingestion_sdk_c_example_verifies() -> None:
    data = (DATA / "ingestion-sdk-c-example.cbor").read_bytes()
    parsed = parse(data, "application/cbor", hmac_key=SDK_EXAMPLE_KEY, require_signed=True)
    assert parsed.signed is True
    assert parsed.device_name == "ac:87:a3:0a:2d:1b"
    assert parsed.device_type == "DISCO-L475VG-IOT01A"
    assert parsed.payload.interval_ms == 10
    expected = [[-9.81, 0.03, 1.21], [-9.83, 0.04, 1.28], [-9.12, 0.03, 1.23], [-9.14, 0.01, 1.25]]
    assert np.array_equal(parsed.payload.values, np.array(expected, dtype=np.float32))
    wrong_key = rejected(data, "application/cbor", hmac_key="my-hmac-sha256-key")
    assert wrong_key.message.startswith("wrong HMAC signature")
    last_value = data[:-3] + b"\x3d\x01" + data[-1:]  # 1.25 -> 1.2509765625 (half float)
    assert rejected(last_value, "application/cbor", hmac_key=SDK_EXAMPLE_KEY).status == 400


def test_json_signed_by_the_data_forwarder_algorithm_in_node_verifies() -> None:
    data = (DATA / "data-forwarder-example.json").read_bytes()
    parsed = parse(data, "application/json", hmac_key=SDK_EXAMPLE_KEY, require_signed=True)
    assert parsed.signed is True
    assert parsed.payload.interval_ms == 16
    assert parsed.payload.values[1].tolist() == [np.float32(1e-7), 12]
    tampered = data.replace(b"[1e-7,12]", b"[1e-7,13]")
    assert "wrong HMAC" in rejected(tampered, "application/json", hmac_key=SDK_EXAMPLE_KEY).message


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_documents_signed_live_by_node_verify() -> None:
    rng = np.random.default_rng(7)
    document = ei_document(np.round(rng.normal(0, 100, size=(30, 3)), 4).astype(np.float32))
    document["payload"]["values"][0] = [1e-7, 3, -0.0]
    key = "".join(rng.choice(list("0123456789abcdef"), size=32))
    signed = subprocess.run(
        [
            "node",
            str(Path(__file__).resolve().parents[1] / "helpers" / "data_forwarder_sign.js"),
            key,
        ],
        input=json.dumps(document).encode(),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert parse(signed, "application/json", hmac_key=key, require_signed=True).signed is True
    assert "wrong HMAC" in rejected(signed, "application/json", hmac_key=key[::-1]).message


def test_signature_made_with_another_key_is_rejected() -> None:
    data = ei_json_bytes(ei_document(accelerometer_values(5)), "another-key")
    error = rejected(data, "application/json", hmac_key=HMAC_KEY)
    assert error.message.startswith("wrong HMAC signature")


def test_changed_sample_value_in_signed_cbor_fails_verification() -> None:
    doc = ei_document([[1.5, 2.5, 3.5]] * 4)
    data = ei_cbor_bytes(doc, HMAC_KEY)
    changed = data.replace(cbor2.dumps(2.5, canonical=True), cbor2.dumps(2.75, canonical=True), 1)
    assert changed != data
    assert "wrong HMAC" in rejected(changed, "application/cbor", hmac_key=HMAC_KEY).message


def test_unsigned_document_is_rejected_when_the_project_requires_signing() -> None:
    error = rejected(
        ei_json_bytes(ei_document(accelerometer_values(3))),
        "application/json",
        hmac_key=HMAC_KEY,
        require_signed=True,
    )
    assert "requires signed data" in error.message
    assert "'none'" in error.message


def test_files_without_a_signature_are_rejected_when_signing_is_required() -> None:
    error = rejected(png_bytes(image_pixels()), "image/png", hmac_key=HMAC_KEY, require_signed=True)
    assert "requires signed data" in error.message


def test_signed_document_without_a_project_key_is_accepted_unverified_unless_required() -> None:
    data = ei_json_bytes(ei_document(accelerometer_values(3)), HMAC_KEY)
    assert parse(data, "application/json").signed is False
    assert "no HMAC key" in rejected(data, "application/json", require_signed=True).message


def test_malformed_signature_field_is_named() -> None:
    doc = ei_document(accelerometer_values(3), alg="HS256")
    doc["signature"] = "abc"
    error = rejected(json.dumps(doc).encode(), "application/json", hmac_key=HMAC_KEY)
    assert "'signature'" in error.message


# --- bad input ---------------------------------------------------------------------------------


def json_doc(**changes: Any) -> bytes:
    doc = ei_document(accelerometer_values(4))
    for key, value in changes.items():
        if value is ...:
            doc["payload"].pop(key, None)
        else:
            doc["payload"][key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b'{"protected": {"alg": "none"}, "payload": ', "application/json", "malformed JSON"),
        (b"\xff\xfe{}", "application/json", "malformed JSON: not UTF-8"),
        (b"[1, 2]", "application/json", "must be an object"),
        (b'{"protected": {"alg": "none"}}', "application/json", "missing 'payload'"),
        (b'{"protected": {"alg": "RS256"}, "payload": {}}', "application/json", "protected.alg"),
        (json_doc(sensors=...), "application/json", "missing 'payload.sensors'"),
        (json_doc(values=...), "application/json", "missing 'payload.values'"),
        (json_doc(interval_ms=...), "application/json", "missing 'payload.interval_ms'"),
        (json_doc(values=[]), "application/json", "'payload.values' is empty"),
        (json_doc(sensors=[]), "application/json", "non-empty list"),
        (json_doc(sensors=[{"name": "a"}]), "application/json", "sensors[0].units"),
        (
            json_doc(values=[[1, 2, 3], [1, 2]]),
            "application/json",
            "'payload.values[1]' has 2 values but there are 3 sensors",
        ),
        (json_doc(values=[[1, 2, 3], [1, "2", 3]]), "application/json", "non-numeric value '2'"),
        (json_doc(values=[[1, 2, 3], [1, True, 3]]), "application/json", "non-numeric value True"),
        (json_doc(values=[[1, 2, 3], [1, None, 3]]), "application/json", "non-numeric"),
        (
            json_doc(values=[[1, 2, 3], [1, 1e39, 3]]),
            "application/json",
            "'payload.values[1]' holds a NaN or infinite",
        ),
        (json_doc(values=[[1, 2, 3], 4]), "application/json", "'payload.values[1]' must be a list"),
        (json_doc(interval_ms=0), "application/json", "interval_ms' must be a finite number > 0"),
        (json_doc(interval_ms=-10), "application/json", "interval_ms' must be a finite number > 0"),
        (json_doc(interval_ms="10"), "application/json", "interval_ms' must be a number"),
        (json_doc(device_name=5), "application/json", "payload.device_name"),
    ],
)
def test_bad_acquisition_documents_are_400_with_the_problem_named(
    data: bytes, content_type: str, message: str
) -> None:
    error = rejected(data, content_type)
    assert error.status == 400
    assert message in error.message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_json_are_rejected(constant: str) -> None:
    data = json_doc().replace(b"[", b"[" + constant.encode() + b", ", 1)
    body = (
        json.dumps(ei_document([[1, 2, 3]]))
        .replace("[[1, 2, 3]]", f"[[1, {constant}, 3]]")
        .encode()
    )
    for candidate in (data, body):
        error = rejected(candidate, "application/json")
        assert "NaN" in error.message or "finite" in error.message or constant in error.message


def test_truncated_cbor_is_rejected_as_truncated() -> None:
    data = ei_cbor_bytes(ei_document(accelerometer_values(5)))
    for cut in (1, len(data) // 2, len(data) - 1):
        error = rejected(data[:cut], "application/cbor")
        assert error.status == 400
        assert "truncated CBOR" in error.message


def test_cbor_with_trailing_bytes_is_rejected() -> None:
    data = ei_cbor_bytes(ei_document(accelerometer_values(2))) + b"\x00"
    assert "after the document" in rejected(data, "application/cbor").message


def test_cbor_nan_values_are_rejected() -> None:
    doc = ei_document([[1.0, float("nan"), 2.0]])
    assert "NaN or infinite" in rejected(cbor2.dumps(doc), "application/cbor").message


def test_body_over_the_size_limit_is_413_before_parsing() -> None:
    error = rejected(b"{" * 2000, "application/json", limits=Limits(max_body_bytes=1000))
    assert error.status == 413
    assert "over the limit of 1000" in error.message


def test_more_values_than_the_limit_is_413() -> None:
    small = Limits(max_values=30)
    data = ei_json_bytes(ei_document(accelerometer_values(11)))
    assert rejected(data, "application/json", limits=small).status == 413
    assert rejected(csv_bytes(accelerometer_values(11)), "text/csv", limits=small).status == 413
    assert rejected(wav_bytes(tone(31)), "audio/wav", limits=small).status == 413


def test_limits_must_be_positive_integers() -> None:
    with pytest.raises(ValueError, match="max_values"):
        Limits(max_values=0)
    with pytest.raises(ValueError, match="max_axes"):
        Limits(max_axes=2.5)  # type: ignore[arg-type]


def test_more_axes_than_the_limit_is_413() -> None:
    few = Limits(max_axes=2)
    error = rejected(
        ei_json_bytes(ei_document(accelerometer_values(2))), "application/json", limits=few
    )
    assert error.status == 413
    assert "axes" in error.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"1,2,3\n4,5,6\n", "no header row"),
        (b"time_ms,accX\n0,1\n10,2\n", "no 'timestamp' column"),
        (
            b"timestamp,accX\n0,1\n10,2\n20,3\n45,4\n",
            "irregular: row 5 is 25 ms after the previous row, the usual interval is 10 ms",
        ),
        (b"timestamp,accX\n0,1\n10,2\n10,3\n", "must increase; row 4"),
        (b"timestamp,accX\n0,1\n10,abc\n", "row 3, column 'accX' is not a number"),
        (b"timestamp,accX\n0,1\n10,nan\n", "is not a number"),
        (b"timestamp,accX\n0,1\n10,1_000\n", "is not a number"),
        (b"timestamp,accX\n0,1\n10\n", "row 3 has 1 cells"),
        (b"timestamp,accX\n0,1\n", "at least two data rows"),
        (b"timestamp\n0\n10\n", "no value columns"),
        (b"timestamp,accX\n0,1\n10,1e400\n", "infinite"),
        (b"", "CSV is empty"),
        (b"timestamp,a,a\n0,1,2\n10,1,2\n", "repeats a column"),
        (b"timestamp;accX\n0;1\n10;2\n", "comma-separated"),
    ],
)
def test_bad_csv_is_400_with_the_problem_named(body: bytes, message: str) -> None:
    error = rejected(body, "text/csv")
    assert error.status == 400
    assert message in error.message


def test_wav_that_is_not_16_bit_pcm_is_rejected() -> None:
    eight_bit = wav_bytes(np.full(100, 128), bits=8)
    assert "not 16-bit PCM" in rejected(eight_bit, "audio/wav").message
    float_tag = wav_bytes(tone(100), tag=3)
    assert "format tag 3" in rejected(float_tag, "audio/wav").message


def test_truncated_wav_is_rejected() -> None:
    data = wav_bytes(tone(100))
    assert "truncated" in rejected(data[:-10], "audio/wav").message
    assert "truncated" in rejected(data[:30], "audio/wav").message
    assert "truncated" in rejected(data[:40], "audio/wav").message
    odd = (
        data[:4]
        + struct.pack("<I", len(data) - 7)
        + data[8:40]
        + struct.pack("<I", 199)
        + data[44:243]
    )
    assert "inside a frame" in rejected(odd, "audio/wav").message


def test_wav_without_riff_header_is_rejected() -> None:
    assert "RIFF" in rejected(b"not a wav at all", "audio/wav").message


@pytest.mark.parametrize("encoder", [png_bytes, jpeg_bytes], ids=["png", "jpeg"])
def test_corrupt_images_are_rejected(encoder) -> None:
    data = encoder(image_pixels(32, 32))
    name = "PNG" if encoder is png_bytes else "JPEG"
    content_type = CONTENT_TYPES[name.lower()]
    truncated = rejected(data[: len(data) // 2], content_type)
    assert f"corrupt {name}" in truncated.message
    assert truncated.status == 400
    assert f"corrupt {name}" in rejected(data[:20], content_type).message


def test_png_with_a_flipped_bit_fails_its_crc_check() -> None:
    data = bytearray(png_bytes(image_pixels(16, 16)))
    data[60] ^= 0x10
    assert "corrupt PNG" in rejected(bytes(data), "image/png").message


def test_decompression_bomb_png_is_413_before_any_pixel_is_decoded() -> None:
    # A 30000 x 30000 header with one tiny IDAT: decoding it would need 2.7 GB.
    bomb = bytearray(png_bytes(np.zeros((1, 1), dtype=np.uint8)))
    import zlib

    bomb[16:24] = struct.pack(">II", 30000, 30000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    error = rejected(bytes(bomb), "image/png")
    assert error.status == 413
    assert "30000x30000" in error.message


def test_image_over_the_pixel_limit_is_413() -> None:
    error = rejected(jpeg_bytes(image_pixels(40, 40)), "image/jpeg", limits=Limits(max_pixels=1000))
    assert error.status == 413
    assert "1600 pixels" in error.message


# --- names, labels, metadata, split ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../etc/passwd", "'..'"),
        ("a/../../b.json", "'..'"),
        ("..\\b.json", "'..'"),
        ("/etc/passwd", "absolute"),
        ("\\\\server\\share.json", "absolute"),
        ("C:\\data\\x.json", "absolute"),
        ("idle\x00.json", "NUL"),
        ("idle\n.json", "control"),
        ("gpj\u202e.exe", "control"),
        ("a" * 256, "over 255"),
        ("   ", "empty"),
        ("dir/", "no file part"),
    ],
)
def test_unsafe_file_names_are_rejected_by_name(name: str, message: str) -> None:
    with pytest.raises(
        IngestionError, match=message.replace("\\", "\\\\").replace(".", "\\.")
    ) as caught:
        safe_file_name(name)
    assert caught.value.status == 400


def test_safe_file_names_keep_their_last_component() -> None:
    assert safe_file_name("idle.01.json") == "idle.01.json"
    assert safe_file_name("walk/idle.01.json") == "idle.01.json"
    assert safe_file_name("  café.wav ") == "café.wav"
    assert safe_file_name("a" * 255) == "a" * 255


def test_label_is_the_text_before_the_first_dot() -> None:
    assert label_from_file_name("idle.01.json") == "idle"
    assert label_from_file_name("circle-left.003.json") == "circle-left"
    assert label_from_file_name("noise") == "noise"
    with pytest.raises(IngestionError, match="label is empty"):
        label_from_file_name(".json")


def test_labels_are_validated() -> None:
    assert validate_label(" wave ") == "wave"
    assert validate_label("👋 hello") == "👋 hello"
    assert validate_label("x" * 128) == "x" * 128
    for bad, message in [
        ("", "empty"),
        ("x" * 129, "over 128"),
        ("a\tb", "control"),
        ("a\x7fb", "control"),
    ]:
        with pytest.raises(IngestionError, match=message):
            validate_label(bad)


def test_metadata_header_must_be_a_json_object_of_strings() -> None:
    assert parse_metadata_header(None) == {}
    assert parse_metadata_header("") == {}
    assert parse_metadata_header('{"site": "lab", "run": "3"}') == {"site": "lab", "run": "3"}
    for bad, message in [
        ("{", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"run": 3}', "must be a string"),
        ('{"": "x"}', "key"),
        (json.dumps({str(i): "x" for i in range(65)}), "entries"),
        (json.dumps({"k": "x" * 1025}), "too long"),
    ]:
        with pytest.raises(IngestionError, match=message):
            parse_metadata_header(bad)


def test_split_is_stable_and_close_to_80_20() -> None:
    hashes = [
        content_sha256(
            TimeSeries(
                np.array([[float(i)]]),
                10,
                parse(csv_bytes(np.zeros((2, 1)), names=["a"]), "text/csv").sensors,
            )
        )
        for i in range(1000)
    ]
    categories = [split_category(h) for h in hashes]
    assert categories == [split_category(h) for h in hashes]
    assert 0.75 < categories.count("training") / 1000 < 0.85
    with pytest.raises(IngestionError):
        split_category("not-hex")


# --- fuzzing -----------------------------------------------------------------------------------

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = Limits(max_body_bytes=200_000, max_values=20_000, max_pixels=250_000, max_axes=16)


def parse_or_ingestion_error(
    data: bytes, content_type: str | None, file_name: str | None = None, key: str | None = HMAC_KEY
) -> None:
    try:
        result = parse(data, content_type, file_name=file_name, hmac_key=key, limits=SMALL)
    except IngestionError as error:
        assert error.status in (400, 413, 415)
        assert error.message
        return
    assert result.kind in ("time-series", "audio", "image")
    encode(result.payload)


@FUZZ
@given(
    st.binary(max_size=600),
    st.sampled_from([*CONTENT_TYPES.values(), None, "application/octet-stream"]),
)
def test_random_bytes_raise_only_ingestion_errors(data: bytes, content_type: str | None) -> None:
    parse_or_ingestion_error(data, content_type)


VALID = {
    "json": ei_json_bytes(ei_document(accelerometer_values(6)), HMAC_KEY),
    "cbor": ei_cbor_bytes(ei_document(accelerometer_values(6)), HMAC_KEY),
    "csv": csv_bytes(accelerometer_values(6)),
    "wav": wav_bytes(tone(40, channels=2)),
    "png": png_bytes(image_pixels(8, 8)),
    "jpeg": jpeg_bytes(image_pixels(8, 8)),
}


@FUZZ
@given(
    st.sampled_from(sorted(VALID)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 10_000),
)
def test_mutated_valid_files_raise_only_ingestion_errors(
    fmt: str, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(VALID[fmt])
    for position, value in flips:
        data[position % len(data)] = value
    parse_or_ingestion_error(bytes(data), CONTENT_TYPES[fmt])
    parse_or_ingestion_error(bytes(data[: cut % (len(data) + 1)]), CONTENT_TYPES[fmt])
    parse_or_ingestion_error(bytes(data), None, file_name=f"x.{fmt}")


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
payload_fields = st.fixed_dictionaries(
    {},
    optional={
        "device_name": json_values,
        "device_type": json_values,
        "interval_ms": json_values | st.floats(allow_nan=False),
        "sensors": json_values
        | st.lists(
            st.fixed_dictionaries({"name": st.text(max_size=5), "units": json_values}), max_size=4
        ),
        "values": json_values
        | st.lists(st.lists(st.floats(allow_nan=False) | st.integers(), max_size=4), max_size=6),
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "protected": json_values
        | st.fixed_dictionaries(
            {"ver": st.just("v1"), "alg": st.sampled_from(["HS256", "none", "x"])}
        ),
        "signature": json_values | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        "payload": json_values | payload_fields,
    },
)


@FUZZ
@given(documents | json_values, st.booleans())
def test_random_json_and_cbor_structures_raise_only_ingestion_errors(
    document: Any, as_cbor: bool
) -> None:
    if as_cbor:
        data, content_type = cbor2.dumps(document), "application/cbor"
    else:
        data, content_type = json.dumps(document).encode(), "application/json"
    parse_or_ingestion_error(data, content_type)
    parse_or_ingestion_error(data, content_type, key=None)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_random_names_labels_and_metadata_raise_only_ingestion_errors(text: str) -> None:
    for function in (safe_file_name, label_from_file_name, validate_label, parse_metadata_header):
        try:
            function(text)
        except IngestionError:
            pass
