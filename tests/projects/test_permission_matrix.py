"""Every project-scoped URL against anonymous / outsider / viewer / editor / admin / owner.

Each URL pattern that takes an id must have a rule in RULES (method -> the lowest role allowed), so a
new URL without a rule fails here. Outsiders get 404, too-low roles 403, anonymous users 401 (API) or a
redirect to the log-in page (pages); allowed roles get past the gate (any status but 401/403/404).
Each request runs in a savepoint that is rolled back, so a DELETE does not change the next request.
"""
from __future__ import annotations

import re

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "charlie", "vic", "bob", "adam", "alice"]
RANK = {"anonymous": -1, "charlie": -1, "vic": 1, "bob": 2, "adam": 3, "alice": 4}
NEED = {"viewer": 1, "editor": 2, "admin": 3, "owner": 4}

RULES: dict[str, dict[str, str]] = {
    # pages
    "project": {"GET": "viewer"},
    "members": {"GET": "viewer", "POST": "admin"},
    "api-keys-page": {"GET": "admin", "POST": "admin"},
    "project-settings": {"GET": "viewer", "POST": "admin"},
    "project-delete": {"POST": "owner"},
    "deployment": {"GET": "viewer"},
    "model": {"GET": "viewer"},
    "byom": {"GET": "viewer"},
    "uploaded-model": {"GET": "viewer"},
    "impulse": {"GET": "viewer"},
    "training": {"GET": "viewer"},
    "model-testing": {"GET": "viewer"},
    "jobs": {"GET": "viewer"},
    "job": {"GET": "viewer"},
    # JSON API
    "api-project": {"GET": "viewer", "PATCH": "admin", "DELETE": "owner"},
    "api-members": {"GET": "viewer", "POST": "admin"},
    "api-member": {"PATCH": "admin", "DELETE": "admin"},
    "api-keys": {"GET": "admin", "POST": "admin"},
    "api-key-revoke": {"POST": "admin"},
    "api-hmac-key": {"GET": "admin", "POST": "admin"},
    "api-activity": {"GET": "viewer"},
    "api-model-optimize": {"POST": "editor"},
    "api-model-variants": {"GET": "viewer"},
    "api-deployments": {"GET": "viewer", "POST": "editor"},
    "api-deployment": {"GET": "viewer"},
    "api-deployment-download": {"GET": "viewer"},
    "api-uploaded-models": {"GET": "viewer", "POST": "editor"},
    "api-uploaded-model": {"GET": "viewer", "DELETE": "editor"},
    "api-impulse": {"GET": "viewer", "PUT": "editor"},
    "api-features": {"GET": "viewer"},
    "api-jobs": {"GET": "viewer", "POST": "editor"},
    "api-job": {"GET": "viewer"},
    "api-job-cancel": {"POST": "editor"},
    "api-trained-models": {"GET": "viewer"},
    "api-trained-model": {"GET": "viewer"},
    "data": {"GET": "viewer"},
    "sample": {"GET": "viewer"},
    "api-samples": {"GET": "viewer"},
    "api-samples-summary": {"GET": "viewer"},
    "api-samples-bulk": {"POST": "editor"},
    "api-samples-upload": {"POST": "editor"},
    "api-samples-export": {"GET": "viewer"},
    "api-samples-import": {"POST": "editor"},
    "api-sample": {"GET": "viewer", "PATCH": "editor", "DELETE": "editor"},
    "api-sample-data": {"GET": "viewer"},
    "api-sample-file": {"GET": "viewer"},
    "api-sample-crop": {"POST": "editor"},
    "api-sample-split": {"POST": "editor"},
    # devices (issue 4)
    "devices": {"GET": "viewer"},
    "device": {"GET": "viewer"},
    "device-this-browser": {"GET": "viewer", "POST": "editor"},
    "live-classification": {"GET": "viewer"},
    "api-devices": {"GET": "viewer"},
    "api-device": {"GET": "viewer", "PATCH": "editor", "DELETE": "editor"},
    "api-device-sample": {"POST": "editor"},
    "api-device-recording": {"POST": "editor"},
}

# URLs outside the matrix, each with the reason; their own tests cover their access rules.
EXEMPT = {
    "ingest-data": "Edge Impulse ingestion: the API key names the project (tests/projects/test_api_ingestion*.py)",
    "ingest-files": "Edge Impulse ingestion: the API key names the project (tests/projects/test_api_ingestion*.py)",
}


def _objects(project, users):
    """Factories for every id a URL can take; add one when a URL takes a new kind of id."""
    from projects import models as m

    def sample():
        return m.Sample.objects.create(project=project, category="training", label="idle", file_name="idle.1",
                                       kind="time-series", sha256="0" * 64, payload_path="missing").id

    def job():
        return m.Job.objects.create(project=project, kind="train", status="succeeded").id

    def trained_model():
        return m.TrainedModel.objects.create(project=project, labels=["a", "b"]).id

    def deployment():
        tm = m.TrainedModel.objects.create(project=project, labels=["a", "b"])
        return m.Deployment.objects.create(project=project, model=tm, target="tflite-int8").id

    def device():
        return m.Device.objects.create(project=project, device_id="dev-1", name="board").id

    def uploaded_model():
        return m.UploadedModel.objects.create(project=project, name="m.onnx", kind="onnx", path="x",
                                              sha256="0" * 64).id

    def impulse():
        return m.Impulse.objects.create(project=project, version=1, spec={}).version

    return {
        "project_id": lambda: project.id,
        "member_id": lambda: m.Membership.objects.get(project=project, user=users["bob"]).id,
        "key_id": lambda: m.ApiKey.objects.create(project=project, name="k", role="viewer", prefix="p" * 10,
                                                  key_hash="0" * 64).id,
        "sample_id": sample,
        "job_id": job,
        "model_id": trained_model,
        "deployment_id": deployment,
        "device_id": device,
        "device_pk": device,
        "uploaded_model_id": uploaded_model,
        "upload_id": uploaded_model,
        "version": impulse,
    }


def _walk(resolver, prefix=""):
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry, route)
        elif isinstance(entry, URLPattern):
            yield entry.name, route


def scoped_urls():
    for name, route in _walk(get_resolver()):
        if route.startswith("admin/") or name in EXEMPT:
            continue
        kwargs = re.findall(r"<(?:\w+:)?(\w+)>", route)
        if kwargs:
            yield name, route, kwargs


def test_every_url_that_takes_an_id_has_a_rule():
    missing = [f"{name} ({route})" for name, route, _ in scoped_urls() if name not in RULES]
    assert not missing, "add these URL names to RULES in this file: " + ", ".join(missing)


def test_every_rule_names_a_url_that_exists():
    names = {name for name, _, _ in scoped_urls()}
    assert not set(RULES) - names, f"rules for URLs that no longer exist: {set(RULES) - names}"


def _expected(role: str, needed: str, is_api: bool):
    if role == "anonymous":
        return {401} if is_api else {302}
    if role == "charlie":
        return {404}
    return {403} if RANK[role] < NEED[needed] else None  # None: anything but 401/403/404


def test_the_matrix(project, other_project, users, client):
    from django.test import Client

    factories = _objects(project, users)
    clients = {}
    for role in ROLES:
        c = Client()
        if role != "anonymous":
            c.force_login(users[role])
        clients[role] = c
    failures = []
    checked = 0
    for name, route, kwargs in scoped_urls():
        rules = RULES.get(name, {})
        for method, needed in rules.items():
            for role in ROLES:
                with transaction.atomic():
                    values = {}
                    for k in kwargs:
                        if k not in factories:
                            pytest.fail(f"URL {name} takes <{k}>: add a factory for it in _objects()")
                        values[k] = factories[k]()
                    path = "/" + route
                    for k, v in values.items():
                        path = re.sub(rf"<(?:\w+:)?{k}>", str(v), path)
                    is_api = path.startswith("/api/")
                    call = getattr(clients[role], method.lower())
                    if method in ("GET", "DELETE"):
                        response = call(path)
                    else:
                        response = call(path, data="{}" if is_api else {},
                                        **({"content_type": "application/json"} if is_api else {}))
                    status = response.status_code
                    expected = _expected(role, needed, is_api)
                    ok = status not in (401, 403, 404) if expected is None else status in expected
                    if not ok:
                        failures.append(f"{method} {path} as {role}: {status}, expected "
                                        f"{sorted(expected) if expected else 'not 401/403/404'}")
                    checked += 1
                    transaction.set_rollback(True)
    assert checked >= len(RULES) * len(ROLES)
    assert not failures, "\n".join(failures)
