"""API keys: shown once, stored hashed, revocable, last used, scoped to a project and a role."""
import hashlib

import pytest

from projects.models import ApiKey

pytestmark = pytest.mark.django_db


def test_a_new_key_is_shown_once_and_only_its_hash_is_stored(api, project):
    r = api("adam").post(f"/api/v1/projects/{project.id}/keys", {"name": "ci", "role": "editor"}, format="json")
    assert r.status_code == 201
    full = r.json()["api_key"]
    row = ApiKey.objects.get(pk=r.json()["id"])
    assert full.startswith(f"ts_{row.prefix}_")
    assert row.key_hash == hashlib.sha256(full.encode()).hexdigest()
    assert full not in str(ApiKey.objects.filter(pk=row.pk).values().first())
    listing = api("adam").get(f"/api/v1/projects/{project.id}/keys").json()
    assert all("api_key" not in k for k in listing)


def test_a_key_authenticates_and_records_its_last_use(api, project, api_keys):
    r = api(key=api_keys["editor"]).get(f"/api/v1/projects/{project.id}")
    assert r.status_code == 200 and r.json()["role"] == "editor"
    assert ApiKey.objects.get(name="editor key").last_used_at is not None


@pytest.mark.parametrize("which, status, message", [
    ("revoked", 401, "revoked"),
    ("wrong", 401, "invalid API key"),
    ("garbage", 401, "invalid API key"),
])
def test_bad_keys_are_refused(api, project, api_keys, which, status, message):
    key = {"revoked": api_keys["revoked"], "wrong": api_keys["admin"][:-3] + "abc", "garbage": "hello"}[which]
    r = api(key=key).get(f"/api/v1/projects/{project.id}")
    assert r.status_code == status and message in r.json()["detail"]


def test_no_key_and_no_session_is_401(api, project):
    assert api().get(f"/api/v1/projects/{project.id}").status_code == 401


def test_another_projects_key_sees_404(api, project, api_keys):
    assert api(key=api_keys["other"]).get(f"/api/v1/projects/{project.id}").status_code == 404


def test_a_viewers_key_cannot_write(api, project, api_keys):
    r = api(key=api_keys["viewer"]).patch(f"/api/v1/projects/{project.id}", {"name": "x"}, format="json")
    assert r.status_code == 403 and "viewer" in r.json()["detail"]


def test_an_ingestion_key_cannot_read_the_json_api(api, project, api_keys):
    assert api(key=api_keys["ingestion"]).get(f"/api/v1/projects/{project.id}").status_code == 403


def test_revoking_a_key_stops_it_at_once(api, project, api_keys):
    key = ApiKey.objects.get(name="editor key")
    assert api("adam").post(f"/api/v1/projects/{project.id}/keys/{key.id}/revoke").status_code == 200
    assert api(key=api_keys["editor"]).get(f"/api/v1/projects/{project.id}").status_code == 401


def test_a_key_role_that_does_not_exist_is_refused(api, project):
    r = api("adam").post(f"/api/v1/projects/{project.id}/keys", {"name": "x", "role": "root"}, format="json")
    assert r.status_code == 400 and "unknown key role" in r.json()["detail"]
    assert not ApiKey.objects.filter(name="x").exists()


def test_the_keys_page_shows_a_new_key_once(client_for, project):
    c = client_for("alice")
    r = c.post(f"/projects/{project.id}/keys", {"name": "laptop", "role": "ingestion"})
    assert r.status_code == 200 and b"shown only once" in r.content
    assert b"shown only once" not in c.get(f"/projects/{project.id}/keys").content
