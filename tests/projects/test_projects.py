"""Projects: creation rules, settings, the project_create command, the HMAC key kept encrypted."""
import json

import pytest
from django.core.management import call_command

from projects import services
from projects.models import Activity, Membership, Project

pytestmark = pytest.mark.django_db


def test_creating_a_project_makes_the_creator_its_owner(api, users):
    r = api("alice").post("/api/v1/projects", {"name": "Flowers"}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["name"] == "Flowers" and body["role"] == "owner"
    assert Membership.objects.get(project_id=body["id"], user=users["alice"]).role == "owner"
    assert Activity.objects.filter(project_id=body["id"], verb="project.created").exists()


@pytest.mark.parametrize("name, message", [("", "must not be empty"), ("   ", "must not be empty"),
                                           ("x" * 300, "300 characters"), ("a\x00b", "Null characters are not allowed"), ("a\x07b", "control characters")])
def test_a_bad_project_name_is_refused_and_nothing_is_saved(api, users, name, message):
    before = Project.objects.count()
    r = api("alice").post("/api/v1/projects", {"name": name}, format="json")
    assert r.status_code == 400
    assert message in r.json()["detail"] and r.json()["field"] == "name"
    assert Project.objects.count() == before


def test_the_page_form_refuses_an_empty_name(client_for, users):
    r = client_for("alice").post("/", {"name": ""})
    assert r.status_code == 400 and b"must not be empty" in r.content


def test_admins_change_settings_viewers_cannot(api, project):
    assert api("adam").patch(f"/api/v1/projects/{project.id}", {"name": "Renamed"}, format="json").status_code == 200
    r = api("vic").patch(f"/api/v1/projects/{project.id}", {"name": "Nope"}, format="json")
    assert r.status_code == 403 and "viewer" in r.json()["detail"]
    project.refresh_from_db()
    assert project.name == "Renamed"


def test_only_the_owner_deletes_a_project(api, project):
    assert api("adam").delete(f"/api/v1/projects/{project.id}").status_code == 403
    assert api("alice").delete(f"/api/v1/projects/{project.id}").status_code == 204
    assert not Project.objects.filter(pk=project.id).exists()


def test_the_hmac_key_is_stored_encrypted_and_shown_to_admins_only(api, project):
    key = services.project_hmac_key(project)
    assert len(key) == 32 and key not in project.hmac_key_encrypted
    assert api("adam").get(f"/api/v1/projects/{project.id}/hmac-key").json()["hmac_key"] == key
    assert api("bob").get(f"/api/v1/projects/{project.id}/hmac-key").status_code == 403


def test_project_create_command_prints_the_project_and_a_working_admin_key(users, capsys, api):
    call_command("project_create", "--owner", "bob", "--name", "Scripted")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    project = Project.objects.get(pk=out["id"])
    assert project.name == "Scripted"
    r = api(key=out["api_key"]).get(f"/api/v1/projects/{project.id}/members")
    assert r.status_code == 200 and r.json()[0]["username"] == "bob"


def test_project_create_command_with_an_unknown_owner_fails_clearly(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("project_create", "--owner", "nobody", "--name", "X")


def test_the_activity_log_is_shown_on_the_project_page(client_for, project):
    r = client_for("vic").get(f"/projects/{project.id}/")
    assert r.status_code == 200
    assert b"project.created" in r.content
