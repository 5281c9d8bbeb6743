"""The data set's JSON API: list/filter/sort/page, summary and train/test ratio, edit, crop, split,
bulk actions, delete (files too), browser upload, export to a zip and import of it (and bad zips)."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings

from projects import services
from projects.ingestion import Limits, parse_upload
from projects.models import Activity, Sample
from projects.services_samples import sample_create, sample_payload
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

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def stored_files(project) -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT) / "projects" / str(project.id)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def make(project, name, *, label="idle", category="training", data=None, n=50, seed=0, user=None):
    data = data if data is not None else ei_json_bytes(ei_document(accelerometer_values(n, seed=seed)))
    parsed = parse_upload(data, file_name=name, content_type=None, hmac_key=None, require_signed=False,
                          limits=Limits())
    return sample_create(project=project, category=category, label=label, file_name=name, parsed=parsed,
                         raw_bytes=data, uploader=user, device=None, metadata={}, upload_source="test")


def url(project, suffix=""):
    return f"/api/v1/projects/{project.id}/samples{suffix}"


@pytest.fixture
def dataset(project, users):
    rows = [make(project, f"idle.{i}.json", label="idle", seed=i, user=users["bob"]) for i in range(4)]
    rows += [make(project, f"wave.{i}.json", label="wave", seed=10 + i, n=100) for i in range(3)]
    rows += [make(project, "wave.t.json", label="wave", category="testing", seed=20)]
    rows += [make(project, "odd.json", label="", category="anomaly", seed=30)]
    return rows


def test_list_filters_sorts_and_pages(api, project, dataset):
    client = api("vic")
    body = client.get(url(project)).json()
    assert body["count"] == 9 and len(body["results"]) == 9
    assert client.get(url(project), {"label": "wave"}).json()["count"] == 4
    assert client.get(url(project), {"label": ""}).json()["count"] == 1
    assert client.get(url(project), {"category": "testing"}).json()["count"] == 1
    assert client.get(url(project), {"q": "idle.2"}).json()["results"][0]["file_name"] == "idle.2.json"
    assert client.get(url(project), {"device": "ac:87:a3:0a:2d:1b"}).json()["count"] == 9
    assert client.get(url(project), {"device": "nope"}).json()["count"] == 0
    names = [r["file_name"] for r in client.get(url(project), {"ordering": "file_name"}).json()["results"]]
    assert names == sorted(names)
    longest = client.get(url(project), {"ordering": "-duration_ms"}).json()["results"][0]
    assert longest["duration_ms"] == 1000
    page = client.get(url(project), {"ordering": "id", "limit": 4, "offset": 4}).json()
    assert page["count"] == 9 and [r["id"] for r in page["results"]] == [s.id for s in dataset[4:8]]
    first = body["results"][-1]
    assert first["uploader"] == "bob" and first["kind"] == "time-series" and first["sensors"][0]["name"] == "accX"


def test_summary_counts_durations_and_warns_about_the_train_test_ratio(api, project, dataset):
    summary = api("vic").get(url(project, "/summary")).json()
    assert summary["total"] == 9
    labels = {e["label"]: e for e in summary["labels"]}
    assert labels["idle"]["count"] == 4 and labels["idle"]["duration_ms"] == 4 * 500
    assert labels["wave"]["training"] == 3 and labels["wave"]["testing"] == 1
    assert summary["train_ratio"] == pytest.approx(7 / 8)
    assert summary["ratio_warning"] is None
    Sample.objects.filter(project=project, label="idle").update(category="testing")
    summary = api("vic").get(url(project, "/summary")).json()
    assert summary["train_ratio"] == pytest.approx(3 / 8) and "between 70% and 90%" in summary["ratio_warning"]


def test_editor_relabels_moves_disables_and_it_is_logged(api, project, dataset):
    sample = dataset[0]
    r = api("bob").patch(url(project, f"/{sample.id}"), {"label": "rest", "category": "testing", "enabled": False},
                         format="json")
    assert r.status_code == 200, r.content
    sample.refresh_from_db()
    assert (sample.label, sample.category, sample.enabled) == ("rest", "testing", False)
    entry = Activity.objects.filter(project=project, verb="sample.updated").first()
    assert entry.detail["label"] == ["idle", "rest"] and entry.actor.username == "bob"
    r = api("bob").patch(url(project, f"/{sample.id}"), {"label": "bad\x01"}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "label"
    r = api("bob").patch(url(project, f"/{sample.id}"), {"category": "validation"}, format="json")
    assert r.status_code == 400 and "unknown category" in r.json()["detail"]
    assert api("vic").patch(url(project, f"/{sample.id}"), {"label": "x"}, format="json").status_code == 403
    assert api("charlie").get(url(project, f"/{sample.id}")).status_code == 404


def test_deleting_a_sample_deletes_its_files(api, project, dataset):
    sample = dataset[0]
    paths = [Path(django_settings.MEDIA_ROOT, sample.payload_path), Path(django_settings.MEDIA_ROOT, sample.raw_path)]
    assert all(p.exists() for p in paths)
    # The files go when the deletion commits; the test transaction never commits, so run the hooks.
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert api("bob").delete(url(project, f"/{sample.id}")).status_code == 204
    assert not Sample.objects.filter(pk=sample.pk).exists()
    assert not any(p.exists() for p in paths)


def test_bulk_relabel_move_disable_and_delete_touch_only_this_projects_samples(api, project, other_project,
                                                                              dataset, users):
    foreign = make(other_project, "x.json", seed=99)
    ids = [dataset[0].id, dataset[1].id, foreign.id]
    client = api("bob")
    assert client.post(url(project, "/bulk"), {"ids": ids, "action": "relabel", "label": "rest"},
                       format="json").json() == {"count": 2}
    assert set(Sample.objects.filter(id__in=ids[:2]).values_list("label", flat=True)) == {"rest"}
    foreign.refresh_from_db()
    assert foreign.label == "idle"
    assert client.post(url(project, "/bulk"), {"ids": ids, "action": "move", "category": "testing"},
                       format="json").json() == {"count": 2}
    assert client.post(url(project, "/bulk"), {"ids": ids, "action": "disable"}, format="json").json()["count"] == 2
    assert not Sample.objects.filter(id__in=ids[:2], enabled=True).exists()
    r = client.post(url(project, "/bulk"), {"ids": ids, "action": "move", "category": "nowhere"}, format="json")
    assert r.status_code == 400
    before = len(stored_files(project))
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert client.post(url(project, "/bulk"), {"ids": ids, "action": "delete"}, format="json").json() == {
            "count": 2}
    assert len(stored_files(project)) == before - 4
    assert Sample.objects.filter(pk=foreign.pk).exists()
    assert Activity.objects.filter(project=project, verb="samples.bulk").count() == 4


def test_chart_data_of_a_time_series_and_min_max_reduction_of_long_audio(api, project):
    sample = make(project, "w.json", n=50)
    body = api("vic").get(url(project, f"/{sample.id}/data")).json()
    assert body["length"] == 50 and len(body["t"]) == 50 and len(body["series"]) == 3
    assert body["t"][1] == 10 and body["series"][0][0] == pytest.approx(float(sample_payload(sample).values[0, 0]))
    pcm = tone(16000 * 3)
    audio = make(project, "yes.wav", data=wav_bytes(pcm))
    body = api("vic").get(url(project, f"/{audio.id}/data"), {"max_points": 1000}).json()
    assert body["downsampled"] and len(body["t"]) <= 1000 and body["kind"] == "audio"
    assert max(body["series"][0]) == pcm.max() and min(body["series"][0]) == pcm.min()


def test_files_of_a_sample_raw_json_wav_and_png(api, project):
    client = api("vic")
    raw = csv_bytes(accelerometer_values(20))
    series = make(project, "c.csv", data=raw)
    assert client.get(url(project, f"/{series.id}/file")).content == raw
    document = json.loads(client.get(url(project, f"/{series.id}/file"), {"as": "json"}).content)
    assert len(document["payload"]["values"]) == 20
    audio = make(project, "yes.wav", data=wav_bytes(tone(800)))
    r = client.get(url(project, f"/{audio.id}/file"), {"as": "wav"})
    assert r["Content-Type"] == "audio/wav" and r.content[:4] == b"RIFF"
    image = make(project, "cat.png", data=png_bytes(image_pixels()))
    r = client.get(url(project, f"/{image.id}/file"), {"as": "png"})
    assert r["Content-Type"] == "image/png" and r.content[:4] == b"\x89PNG"
    assert client.get(url(project, f"/{image.id}/file"), {"as": "wav"}).status_code == 400


def test_crop_keeps_a_time_range_and_split_makes_fixed_windows(api, project):
    sample = make(project, "long.json", n=100)
    values = sample_payload(sample).values
    client = api("bob")
    r = client.post(url(project, f"/{sample.id}/crop"), {"start_ms": 200, "end_ms": 800}, format="json")
    assert r.status_code == 200 and r.json()["duration_ms"] == 600
    assert np.array_equal(sample_payload(Sample.objects.get(pk=sample.id)).values, values[20:80])
    r = client.post(url(project, f"/{sample.id}/crop"), {"start_ms": 900, "end_ms": 950}, format="json")
    assert r.status_code == 400 and "keeps no values" in r.json()["detail"]
    r = client.post(url(project, f"/{sample.id}/split"), {"length_ms": 250}, format="json")
    assert r.status_code == 201, r.content
    windows = r.json()
    assert len(windows) == 2 and all(w["duration_ms"] == 250 and w["label"] == "idle" for w in windows)
    assert not Sample.objects.filter(pk=sample.id).exists()
    first = Sample.objects.get(pk=windows[0]["id"])
    assert np.array_equal(sample_payload(first).values, values[20:45])
    image = make(project, "cat.png", data=png_bytes(image_pixels()))
    assert client.post(url(project, f"/{image.id}/split"), {"length_ms": 10}, format="json").status_code == 400


def test_browser_upload_infers_label_or_takes_it_and_names_problems(api, project):
    client = api("bob")
    body = ei_json_bytes(ei_document(accelerometer_values(10)))
    r = client.generic("POST", url(project, "/upload?category=testing&file_name=jump.3.json"), body,
                       content_type="application/json")
    assert r.status_code == 201, r.content
    assert (r.json()["label"], r.json()["category"], r.json()["upload_source"]) == ("jump", "testing", "browser")
    r = client.generic("POST", url(project, "/upload?category=split&file_name=x.1.png&label=cat"),
                       png_bytes(image_pixels()), content_type="image/png")
    assert r.status_code == 201 and r.json()["label"] == "cat" and r.json()["kind"] == "image"
    r = client.generic("POST", url(project, "/upload?file_name=bad.json"), b"{nope", content_type="application/json")
    assert r.status_code == 400 and "malformed JSON" in r.json()["detail"]
    r = client.generic("POST", url(project, "/upload?file_name=../x.json"), body, content_type="application/json")
    assert r.status_code == 400 and "file name" in r.json()["detail"]
    assert Sample.objects.filter(project=project).count() == 2


def test_export_zip_reimports_into_another_project_as_the_same_samples(api, project, users, dataset):
    audio = make(project, "yes.1.wav", label="yes", data=wav_bytes(tone(400)))
    image = make(project, "cat.1.png", label="cat", category="testing", data=png_bytes(image_pixels()))
    Sample.objects.filter(pk=dataset[0].pk).update(enabled=False, metadata={"k": "v"})
    r = api("vic").get(url(project, "/export"))
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content)))
    assert "info.labels" in archive.namelist() and len(archive.namelist()) == 12
    target = services.project_create(owner=users["bob"], name="Copy")
    r = api("bob").generic("POST", f"/api/v1/projects/{target.id}/samples/import", archive.fp.getvalue(),
                           content_type="application/zip")
    assert r.status_code == 201, r.content
    assert r.json()["count"] == 11
    source = {(s.file_name, s.label, s.category, s.kind, s.sha256, s.enabled) for s in Sample.objects.filter(
        project=project)}
    copied = {(s.file_name, s.label, s.category, s.kind, s.sha256, s.enabled) for s in Sample.objects.filter(
        project=target)}
    assert copied == source
    assert Sample.objects.get(project=target, file_name="idle.0.json").metadata == {"k": "v"}
    assert audio.sha256 in {s.sha256 for s in Sample.objects.filter(project=target, kind="audio")}
    assert image.sha256 in {s.sha256 for s in Sample.objects.filter(project=target, kind="image")}
    assert Activity.objects.filter(project=target, verb="samples.uploaded").count() == 1


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("entry", ["../evil.json", "training/../../evil.json", "/abs/evil.json"])
def test_import_with_path_traversal_is_refused_and_nothing_stored(api, project, entry):
    body = ei_json_bytes(ei_document(accelerometer_values(5)))
    data = _zip({"training/ok.json": body, entry: body})
    r = api("bob").generic("POST", url(project, "/import"), data, content_type="application/zip")
    assert r.status_code == 400 and "evil.json" in r.json()["detail"]
    assert Sample.objects.filter(project=project).count() == 0 and stored_files(project) == []


def test_import_over_the_decompressed_size_limit_is_refused(api, project, settings):
    settings.STUDIO_MAX_IMPORT_BYTES = 100_000
    # 1 MB of zeros compresses to about 1 KB: the upload is small, the content is not.
    data = _zip({"training/bomb.json": b"0" * 1_000_000})
    assert len(data) < 10_000
    r = api("bob").generic("POST", url(project, "/import"), data, content_type="application/zip")
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    assert Sample.objects.filter(project=project).count() == 0 and stored_files(project) == []


def test_import_with_one_bad_file_stores_nothing_and_names_it(api, project):
    good = ei_json_bytes(ei_document(accelerometer_values(5)))
    data = _zip({"training/a.1.json": good, "training/b.1.json": ei_json_bytes(ei_document(accelerometer_values(
        5, seed=2))), "testing/broken.1.json": b"{"})
    r = api("bob").generic("POST", url(project, "/import"), data, content_type="application/zip")
    assert r.status_code == 400 and "testing/broken.1.json" in r.json()["detail"]
    assert Sample.objects.filter(project=project).count() == 0 and stored_files(project) == []
    r = api("bob").generic("POST", url(project, "/import"), b"not a zip", content_type="application/zip")
    assert r.status_code == 400 and "not a zip" in r.json()["detail"]


def test_import_of_folders_without_index_takes_labels_from_names(api, project):
    data = _zip({"training/up.1.json": ei_json_bytes(ei_document(accelerometer_values(5))),
                 "testing/down.1.csv": csv_bytes(accelerometer_values(5, seed=4)),
                 "README.txt": b"hello"})
    r = api("bob").generic("POST", url(project, "/import"), data, content_type="application/zip")
    assert r.status_code == 201, r.content
    assert r.json()["skipped"] == ["README.txt"]
    assert set(Sample.objects.filter(project=project).values_list("label", "category")) == {
        ("up", "training"), ("down", "testing")}


def test_deleting_a_project_deletes_all_its_sample_files(project, users, dataset):
    assert stored_files(project)
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        services.project_delete(project=project)
    assert stored_files(project) == []
    assert not Sample.objects.filter(project_id=project.id).exists()


def test_a_failed_create_leaves_no_file(project, monkeypatch):
    from projects import services_samples

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services_samples, "activity_log", broken)
    with pytest.raises(RuntimeError):
        make(project, "a.json")
    assert Sample.objects.filter(project=project).count() == 0 and stored_files(project) == []


def test_sample_create_without_a_label_takes_it_from_the_file_name(project):
    data = ei_json_bytes(ei_document(accelerometer_values(5)))
    parsed = parse_upload(data, file_name="walk.007.json", content_type=None, hmac_key=None, require_signed=False,
                          limits=Limits())
    sample = sample_create(project=project, category="training", label=None, file_name="walking/walk.007.json",
                           parsed=parsed)
    assert (sample.label, sample.file_name) == ("walk", "walk.007.json")
    unnamed = sample_create(project=project, category="testing", label=None, file_name=None, parsed=parsed)
    assert unnamed.label == "" and unnamed.file_name == f"sample.{unnamed.sha256[:12]}.json"
