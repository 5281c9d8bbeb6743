"""Samples in S3 through django-storages, against a real S3 API server (moto_server) on a local port:
upload, read back, delete the sample, delete the project."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from projects import services
from projects.ingestion import Limits, parse_upload
from projects.models import Sample
from projects.services import Actor
from projects.services_samples import sample_create, sample_delete, sample_payload
from tests.helpers.samples import (
    accelerometer_values,
    ei_document,
    ei_json_bytes,
    image_pixels,
    png_bytes,
)

BUCKET = "tiny-studio-test"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    from studio.devservices import free_port, wait_for_port

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    moto = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def s3(s3_server, settings):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
    bucket = f"{BUCKET}-{int(time.time() * 1000)}"
    client.create_bucket(Bucket=bucket)
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": bucket, "endpoint_url": s3_server, "access_key": "test", "secret_key": "test",
                    "region_name": "us-east-1", "default_acl": None, "file_overwrite": False},
    }}
    from django.core.files.storage import default_storage

    assert default_storage.bucket_name == bucket  # the setting change reached the default storage

    def keys() -> list[str]:
        return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))

    return keys


def make(project, name, data):
    parsed = parse_upload(data, file_name=name, content_type=None, hmac_key=None, require_signed=False,
                          limits=Limits())
    return sample_create(project=project, category="training", label="idle", file_name=name, parsed=parsed,
                         raw_bytes=data, uploader=None, device=None, metadata={}, upload_source="test")


@pytest.mark.django_db
def test_samples_are_written_read_back_and_deleted_in_s3(s3, project, users):
    from django.test import TestCase

    values = accelerometer_values(40)
    raw = ei_json_bytes(ei_document(values))
    series = make(project, "idle.1.json", raw)
    image = make(project, "cat.1.png", png_bytes(image_pixels()))
    keys = s3()
    assert series.payload_path in keys and series.raw_path in keys and image.payload_path in keys
    assert all(k.startswith(f"projects/{project.id}/samples/") for k in keys) and len(keys) == 4
    assert np.array_equal(sample_payload(Sample.objects.get(pk=series.pk)).values, values)
    assert np.array_equal(sample_payload(image).pixels, image_pixels())

    with TestCase.captureOnCommitCallbacks(execute=True):
        sample_delete(sample=series, actor=Actor(user=users["alice"]))
    assert s3() == sorted([image.payload_path, image.raw_path])

    with TestCase.captureOnCommitCallbacks(execute=True):
        services.project_delete(project=project)
    assert s3() == []


@pytest.mark.django_db
def test_a_failed_create_leaves_nothing_in_s3(s3, project, monkeypatch):
    from projects import services_samples

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services_samples, "activity_log", broken)
    with pytest.raises(RuntimeError):
        make(project, "a.json", ei_json_bytes(ei_document(accelerometer_values(5))))
    assert s3() == [] and not Sample.objects.filter(project=project).exists()
