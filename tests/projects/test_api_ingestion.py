"""The Edge Impulse-compatible ingestion API: every format lands as the right sample, headers do what
EI documents, and every kind of bad input gets a 4xx naming the problem with no row and no file left."""
from __future__ import annotations

import json
from pathlib import Path

import cbor2
import numpy as np
import pytest
from django.conf import settings as django_settings

from projects.models import Activity, Device, Sample
from projects.services import project_hmac_key
from projects.services_samples import sample_payload
from tests.helpers.samples import (
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

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_media(settings, tmp_path):
    """Each test its own media directory: project ids repeat across tests, files would not."""
    settings.MEDIA_ROOT = str(tmp_path / "media")


def stored_files(project) -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT) / "projects" / str(project.id) / "samples"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def post_data(client, key, body: bytes, category="training", content_type="application/json", **headers):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    if key is not None:
        extra["HTTP_X_API_KEY"] = key
    return client.post(f"/api/{category}/data", data=body, content_type=content_type, **extra)


def multipart(files, field="data") -> tuple[bytes, str]:
    """A multipart body built by hand: Django's test client would strip directories from names."""
    boundary = "----tinystudio7MA4YWxkTrZu0gW"
    chunks = []
    for name, data, ct in files:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{quoted}"\r\n'
                      f"Content-Type: {ct}\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def post_files(client, key, files, category="training", **headers):
    """files: [(name, bytes, content_type)] sent as repeated multipart field 'data'."""
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    if key is not None:
        extra["HTTP_X_API_KEY"] = key
    body, content_type = multipart(files)
    return client.post(f"/api/{category}/files", data=body, content_type=content_type, **extra)


@pytest.fixture
def key(api_keys):
    return api_keys["ingestion"]


def assert_nothing_stored(project):
    assert Sample.objects.filter(project=project).count() == 0
    assert stored_files(project) == []


def still_serving(client, key, project):
    body = ei_json_bytes(ei_document(accelerometer_values(5, seed=99)))
    r = post_data(client, key, body, **{"x-file-name": "alive.json"})
    assert r.status_code == 200, r.content
    Sample.objects.filter(project=project, file_name="alive.json").delete()


# --- Happy paths ----------------------------------------------------------------------------------


def test_signed_ei_json_on_the_data_endpoint_is_stored_with_label_from_file_name(client, key, project):
    values = accelerometer_values(50)
    body = ei_json_bytes(ei_document(values), project_hmac_key(project))
    r = post_data(client, key, body, **{"x-file-name": "idle.01.json"})
    assert r.status_code == 200, r.content
    assert r["Content-Type"].startswith("text/plain")
    assert r.content.decode().strip() == "idle.01.json"
    sample = Sample.objects.get(project=project)
    assert (sample.label, sample.category, sample.kind, sample.signed) == ("idle", "training", "time-series", True)
    assert sample.sensors == [{"name": "accX", "units": "m/s2"}, {"name": "accY", "units": "m/s2"},
                              {"name": "accZ", "units": "m/s2"}]
    assert sample.interval_ms == 10 and sample.value_count == 150 and sample.duration_ms == 500
    assert sample.device.device_id == "ac:87:a3:0a:2d:1b" and sample.device_type == "DISCO-L475VG-IOT01A"
    assert np.array_equal(sample_payload(sample).values, values)
    assert len(stored_files(project)) == 2  # canonical .npz and the raw .json beside it
    assert Path(django_settings.MEDIA_ROOT, sample.raw_path).read_bytes() == body


def test_cbor_csv_wav_png_and_jpeg_bodies_become_samples_of_the_right_kind(client, key, project):
    hmac_key = project_hmac_key(project)
    values = accelerometer_values(20)
    uploads = [
        ("wave.1.cbor", ei_cbor_bytes(ei_document(values), hmac_key), "application/cbor", "time-series"),
        ("wave.2.csv", csv_bytes(values), "text/csv", "time-series"),
        ("yes.1.wav", wav_bytes(tone(800)), "audio/wav", "audio"),
        ("cat.1.png", png_bytes(image_pixels()), "image/png", "image"),
        ("cat.2.jpg", jpeg_bytes(image_pixels(seed=1)), "image/jpeg", "image"),
    ]
    for name, body, ct, _ in uploads:
        r = post_data(client, key, body, content_type=ct, **{"x-file-name": name})
        assert r.status_code == 200, (name, r.content)
    got = {s.file_name: s for s in Sample.objects.filter(project=project)}
    for name, _, _, kind in uploads:
        assert got[name].kind == kind
    assert got["yes.1.wav"].interval_ms == pytest.approx(1000 / 16000)
    assert (got["cat.1.png"].width, got["cat.1.png"].height) == (32, 24)
    # The same recording as CBOR and CSV is the same content.
    assert got["wave.1.cbor"].sha256 == got["wave.2.csv"].sha256


def test_files_endpoint_takes_many_files_and_answers_like_edge_impulse(client, key, project):
    files = [(f"up.{i}.json", ei_json_bytes(ei_document(accelerometer_values(10, seed=i))), "application/json")
             for i in range(5)]
    r = post_files(client, key, files, category="testing", **{"x-label": "updown"})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True and len(body["files"]) == 5
    assert all(f["success"] and isinstance(f["sampleId"], int) for f in body["files"])
    assert {f["fileName"] for f in body["files"]} == {f"up.{i}.json" for i in range(5)}
    assert set(Sample.objects.filter(project=project).values_list("category", "label")) == {("testing", "updown")}
    # The batch is one activity entry.
    entries = Activity.objects.filter(project=project, verb="samples.uploaded")
    assert entries.count() == 1 and entries.get().detail["count"] == 5


def test_split_category_assigns_about_eighty_percent_to_training_stably(client, key, project):
    files = [(f"s.{i}.json", ei_json_bytes(ei_document(accelerometer_values(4, seed=i))), "application/json")
             for i in range(60)]
    r = post_files(client, key, files, category="split")
    assert r.status_code == 200
    training = Sample.objects.filter(project=project, category="training").count()
    assert 36 <= training <= 57
    from projects.ingestion import split_category

    for s in Sample.objects.filter(project=project):
        assert s.category == split_category(s.sha256)


def test_headers_no_label_metadata_date_id_and_upload_source(client, key, project):
    body = ei_json_bytes(ei_document(accelerometer_values(8)))
    r = post_data(client, key, body, category="anomaly", **{
        "x-file-name": "odd.7.json", "x-no-label": "1", "x-add-date-id": "1",
        "x-metadata": json.dumps({"site": "lab", "person": "ann"}), "x-upload-source": "my-script"})
    assert r.status_code == 200, r.content
    sample = Sample.objects.get(project=project)
    assert sample.label == "" and sample.category == "anomaly"
    assert sample.metadata == {"site": "lab", "person": "ann"} and sample.upload_source == "my-script"
    assert sample.file_name.startswith("odd.7.") and sample.file_name.endswith(".json")
    assert sample.file_name != "odd.7.json" and r.content.decode().strip() == sample.file_name


def test_duplicates_are_refused_only_when_asked(client, key, project):
    body = ei_json_bytes(ei_document(accelerometer_values(8)))
    assert post_data(client, key, body, **{"x-file-name": "a.1.json"}).status_code == 200
    assert post_data(client, key, body, **{"x-file-name": "a.2.json"}).status_code == 200
    files_before = stored_files(project)
    r = post_data(client, key, body, **{"x-file-name": "a.3.json", "x-disallow-duplicates": "1"})
    assert r.status_code == 409 and "same data already exists" in r.content.decode()
    assert Sample.objects.filter(project=project).count() == 2 and stored_files(project) == files_before


def test_project_requiring_signed_data_refuses_unsigned_but_takes_signed(client, key, project):
    project.require_signed = True
    project.save()
    unsigned = ei_json_bytes(ei_document(accelerometer_values(8)))
    r = post_data(client, key, unsigned, **{"x-file-name": "a.json"})
    assert r.status_code == 400 and "requires signed data" in r.content.decode()
    assert_nothing_stored(project)
    signed = ei_json_bytes(ei_document(accelerometer_values(8)), project_hmac_key(project), style="python")
    assert post_data(client, key, signed, **{"x-file-name": "a.json"}).status_code == 200


# --- Bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which,fragment", [
    (None, "missing API key"), ("garbage", "invalid API key"), ("revoked", "revoked"),
    ("forged", "invalid API key"),
])
def test_missing_invalid_and_revoked_keys_get_401(client, api_keys, project, which, fragment):
    key = {"garbage": "not-a-key", "revoked": api_keys["revoked"], None: None,
           "forged": api_keys["ingestion"][:-3] + "xyz"}[which]
    body = ei_json_bytes(ei_document(accelerometer_values(8)))
    r = post_data(client, key, body)
    assert r.status_code == 401 and fragment in r.content.decode()
    r = post_files(client, key, [("a.json", body, "application/json")])
    assert r.status_code == 401 and fragment in r.json()["error"]
    assert_nothing_stored(project)


def test_another_projects_key_stores_in_that_project_never_in_ours(client, api_keys, project, other_project):
    body = ei_json_bytes(ei_document(accelerometer_values(8)))
    r = post_data(client, api_keys["other"], body, **{"x-file-name": "x.json"})
    assert r.status_code == 200
    assert_nothing_stored(project)
    assert Sample.objects.filter(project=other_project).count() == 1


def _doc(**payload_changes):
    document = ei_document(accelerometer_values(6))
    document["payload"].update(payload_changes)
    return document


def _without(section: str, key: str | None = None):
    document = ei_document(accelerometer_values(6))
    if key is None:
        del document[section]
    else:
        del document[section][key]
    return document


BAD_BODIES = [
    ("malformed json", b'{"protected": {"ver": "v1"', "application/json", 400, "malformed JSON"),
    ("truncated cbor", ei_cbor_bytes(ei_document(accelerometer_values(6)))[:-9], "application/cbor", 400,
     "truncated CBOR"),
    ("json without payload", json.dumps(_without("payload")).encode(), "application/json", 400, "payload"),
    ("cbor without payload", cbor2.dumps(_without("payload")), "application/cbor", 400, "payload"),
    ("json without sensors", json.dumps(_without("payload", "sensors")).encode(), "application/json", 400,
     "sensors"),
    ("cbor without values", cbor2.dumps(_without("payload", "values")), "application/cbor", 400, "values"),
    ("row length differs", json.dumps(_doc(values=[[1, 2, 3], [1, 2]])).encode(), "application/json", 400,
     "values[1]"),
    ("non-numeric", json.dumps(_doc(values=[[1, 2, 3], [1, "x", 3]])).encode(), "application/json", 400,
     "non-numeric"),
    ("nan", (b'{"protected":{"ver":"v1","alg":"none"},"signature":"","payload":{"device_type":"x",'
             b'"interval_ms":10,"sensors":[{"name":"a","units":"g"}],"values":[1,NaN]}}'), "application/json", 400,
     "NaN"),
    ("infinite", json.dumps(_doc(values=[[1, 2, 3], [1, 1e300, 3]])).encode(), "application/json", 400,
     "infinite"),
    ("interval zero", json.dumps(_doc(interval_ms=0)).encode(), "application/json", 400, "interval_ms"),
    ("interval negative", json.dumps(_doc(interval_ms=-5)).encode(), "application/json", 400, "interval_ms"),
    ("unsupported type", b"hello", "application/xml", 415, "unsupported content type"),
    ("wav not pcm", wav_bytes(tone(100), tag=3), "audio/wav", 400, "not 16-bit PCM"),
    ("wav truncated", wav_bytes(tone(400))[:-100], "audio/wav", 400, "truncated"),
    ("corrupt jpeg", jpeg_bytes(image_pixels())[:200] + b"\x00" * 100, "image/jpeg", 400, "corrupt JPEG"),
]


@pytest.mark.parametrize("name,body,content_type,status,fragment", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_are_rejected_with_the_problem_named_and_nothing_stored(client, key, project, name, body,
                                                                           content_type, status, fragment):
    r = post_data(client, key, body, content_type=content_type, **{"x-file-name": "bad.1.bin"})
    assert r.status_code == status, r.content
    assert fragment in r.content.decode()
    r = post_files(client, key, [("bad.2.bin", body, content_type)])
    assert r.status_code == status and fragment in r.json()["files"][0]["error"]
    assert_nothing_stored(project)
    still_serving(client, key, project)


def test_wrong_hmac_signature_is_rejected(client, key, project):
    body = ei_json_bytes(ei_document(accelerometer_values(6)), "0" * 32)
    r = post_data(client, key, body, **{"x-file-name": "a.json"})
    assert r.status_code == 400 and "signature" in r.content.decode().lower()
    assert_nothing_stored(project)


def test_more_values_than_the_limit_and_bodies_over_the_size_limit(client, key, project, settings):
    settings.STUDIO_MAX_VALUES = 100
    body = ei_json_bytes(ei_document(accelerometer_values(50)))
    r = post_data(client, key, body, **{"x-file-name": "a.json"})
    assert r.status_code == 413 and "limit of 100" in r.content.decode()
    settings.STUDIO_MAX_VALUES = 2_000_000
    settings.STUDIO_MAX_SAMPLE_BYTES = 1000
    r = post_data(client, key, body, **{"x-file-name": "a.json"})
    assert r.status_code == 413 and "over the limit of 1000" in r.content.decode()
    r = post_files(client, key, [("a.json", body, "application/json")])
    assert r.status_code == 413
    assert_nothing_stored(project)


def test_decompression_bomb_image_is_refused_before_decoding(client, key, project, settings):
    settings.STUDIO_MAX_IMAGE_PIXELS = 1000
    r = post_data(client, key, png_bytes(np.zeros((100, 100), np.uint8)), content_type="image/png",
                  **{"x-file-name": "big.png"})
    assert r.status_code == 413 and "pixels" in r.content.decode()
    assert_nothing_stored(project)


@pytest.mark.parametrize("name", ["../../etc/passwd.json", "/abs/path.json", "C:\\x\\y.json", "a\x00b.json",
                                  "x" * 300 + ".json"])
def test_dangerous_file_names_are_refused_in_header_and_multipart(client, key, project, name):
    body = ei_json_bytes(ei_document(accelerometer_values(6)))
    if "\x00" not in name:  # a NUL cannot travel in an HTTP header; it can in a multipart name
        r = post_data(client, key, body, **{"x-file-name": name})
        assert r.status_code == 400 and "file name" in r.content.decode()
    r = post_files(client, key, [(name, body, "application/json")])
    assert r.status_code == 400, r.content
    assert "file name" in r.json()["files"][0]["error"]
    assert_nothing_stored(project)


def test_label_with_control_characters_is_refused(client, key, project):
    body = ei_json_bytes(ei_document(accelerometer_values(6)))
    r = post_data(client, key, body, **{"x-file-name": "a.json", "x-label": "id\x07le"})
    assert r.status_code == 400 and "label" in r.content.decode()
    assert_nothing_stored(project)


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '{"a": 1}', '{"a": {"b": "c"}}'])
def test_metadata_header_must_be_a_json_object_of_strings(client, key, project, value):
    body = ei_json_bytes(ei_document(accelerometer_values(6)))
    r = post_data(client, key, body, **{"x-file-name": "a.json", "x-metadata": value})
    assert r.status_code == 400 and "x-metadata" in r.content.decode()
    r = post_files(client, key, [("a.json", body, "application/json")], **{"x-metadata": value})
    assert r.status_code == 400 and "x-metadata" in r.json()["error"]
    assert_nothing_stored(project)


def test_a_batch_with_one_bad_file_stores_the_good_ones_and_names_the_bad_one(client, key, project):
    good = ei_json_bytes(ei_document(accelerometer_values(6)))
    r = post_files(client, key, [("good.json", good, "application/json"),
                                 ("bad.json", b"{oops", "application/json")])
    assert r.status_code == 200
    files = r.json()["files"]
    assert files[0]["success"] and not files[1]["success"] and "malformed JSON" in files[1]["error"]
    assert files[1]["fileName"] == "bad.json"
    assert list(Sample.objects.filter(project=project).values_list("file_name", flat=True)) == ["good.json"]
    assert len(stored_files(project)) == 2


def test_unknown_category_and_wrong_method(client, key):
    body = ei_json_bytes(ei_document(accelerometer_values(6)))
    assert post_data(client, key, body, category="validation").status_code == 404
    assert client.get("/api/training/data", HTTP_X_API_KEY=key).status_code == 405


def test_rate_limit_per_key_answers_429(client, key, project, settings):
    settings.STUDIO_INGEST_RATE_PER_MINUTE = 2
    body = ei_json_bytes(ei_document(accelerometer_values(6)))
    codes = [post_data(client, key, body, **{"x-file-name": f"r.{i}.json"}).status_code for i in range(3)]
    assert codes == [200, 200, 429]
    r = post_data(client, key, body, **{"x-file-name": "r.json"})
    assert "rate limit" in r.content.decode()


def test_device_is_recorded_from_the_document(client, key, project):
    body = ei_json_bytes(ei_document(accelerometer_values(6), device_name="dev-42", device_type="NANO33"))
    assert post_data(client, key, body, **{"x-file-name": "a.json"}).status_code == 200
    device = Device.objects.get(project=project, device_id="dev-42")
    assert device.device_type == "NANO33" and device.samples.count() == 1


def test_utf8_label_and_file_name_headers_are_read_as_utf8(client, key, project):
    body = ei_json_bytes(ei_document(accelerometer_values(6)))
    as_sent = "münze.1.json".encode().decode("latin-1")  # what a server hands over for UTF-8 bytes
    r = post_data(client, key, body, **{"x-file-name": as_sent, "x-label": "Münze ☕".encode().decode("latin-1")})
    assert r.status_code == 200, r.content
    sample = Sample.objects.get(project=project)
    assert (sample.file_name, sample.label) == ("münze.1.json", "Münze ☕")


def test_structured_labels_part_of_the_sdk_is_left_out_not_failed(client, key, project):
    body = ei_json_bytes(ei_document(accelerometer_values(6)))
    r = post_files(client, key, [("a.1.json", body, "application/json"),
                                 ("structured_labels.labels", b'{"version": 1}', "application/json")])
    assert r.status_code == 200 and [f["fileName"] for f in r.json()["files"]] == ["a.1.json"]


def test_a_body_sent_by_curl_data_binary_is_read_by_its_bytes(client, key, project):
    body = ei_json_bytes(ei_document(accelerometer_values(6)))
    r = post_data(client, key, body, content_type="application/x-www-form-urlencoded", **{"x-file-name": "c.json"})
    assert r.status_code == 200, r.content
    assert Sample.objects.get(project=project).kind == "time-series"


def test_multipart_over_the_body_limit_or_with_too_many_files_gets_413(client, key, project, settings):
    body = ei_json_bytes(ei_document(accelerometer_values(6)))
    files = [(f"m.{i}.json", ei_json_bytes(ei_document(accelerometer_values(6, seed=i))), "application/json")
             for i in range(4)]
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    r = post_files(client, key, files)
    assert r.status_code == 413 and "too many files" in r.json()["error"]
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 1000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(body)
    r = post_files(client, key, files)
    assert r.status_code == 413 and "over the limit" in r.json()["error"]
    assert_nothing_stored(project)
