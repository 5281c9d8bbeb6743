"""Members and roles: invite, change role, remove, and the last-owner rule."""
import pytest

from projects.models import Activity, Membership

pytestmark = pytest.mark.django_db


def members_url(project):
    return f"/api/v1/projects/{project.id}/members"


def test_an_admin_invites_an_existing_user_by_username_or_email(api, project, users):
    from django.contrib.auth.models import User

    User.objects.create_user("erin", email="erin@example.com", password="x-long-password")
    User.objects.create_user("finn", email="finn@example.com", password="x-long-password")
    r = api("adam").post(members_url(project), {"user": "erin", "role": "editor"}, format="json")
    assert r.status_code == 201 and r.json()["role"] == "editor"
    r = api("adam").post(members_url(project), {"user": "FINN@example.com", "role": "viewer"}, format="json")
    assert r.status_code == 201 and r.json()["username"] == "finn"
    assert Activity.objects.filter(project=project, verb="member.invited").count() == 2


def test_inviting_an_unknown_user_says_so(api, project):
    r = api("alice").post(members_url(project), {"user": "ghost", "role": "editor"}, format="json")
    assert r.status_code == 404 and "no user 'ghost'" in r.json()["detail"]


def test_inviting_an_existing_member_is_a_conflict(api, project):
    r = api("alice").post(members_url(project), {"user": "bob", "role": "viewer"}, format="json")
    assert r.status_code == 409 and "already a member" in r.json()["detail"]
    assert Membership.objects.get(project=project, user__username="bob").role == "editor"


def test_a_role_that_does_not_exist_is_refused(api, project, users):
    r = api("alice").post(members_url(project), {"user": "charlie", "role": "superuser"}, format="json")
    assert r.status_code == 400 and "unknown role 'superuser'" in r.json()["detail"]
    assert not Membership.objects.filter(project=project, user=users["charlie"]).exists()


def test_editors_cannot_invite(api, project):
    r = api("bob").post(members_url(project), {"user": "charlie", "role": "viewer"}, format="json")
    assert r.status_code == 403


def test_the_last_owner_cannot_be_removed_or_demoted(api, project, users):
    owner = Membership.objects.get(project=project, user=users["alice"])
    r = api("alice").delete(f"{members_url(project)}/{owner.id}")
    assert r.status_code == 409 and "last owner" in r.json()["detail"]
    r = api("alice").patch(f"{members_url(project)}/{owner.id}", {"role": "admin"}, format="json")
    assert r.status_code == 409 and "last owner" in r.json()["detail"]
    owner.refresh_from_db()
    assert owner.role == "owner"


def test_with_a_second_owner_the_first_may_step_down(api, project, users):
    adam = Membership.objects.get(project=project, user=users["adam"])
    assert api("alice").patch(f"{members_url(project)}/{adam.id}", {"role": "owner"}, format="json").status_code == 200
    alice = Membership.objects.get(project=project, user=users["alice"])
    assert api("alice").patch(f"{members_url(project)}/{alice.id}", {"role": "editor"},
                              format="json").status_code == 200


def test_an_admin_cannot_make_an_owner_or_remove_one(api, project, users):
    bob = Membership.objects.get(project=project, user=users["bob"])
    r = api("adam").patch(f"{members_url(project)}/{bob.id}", {"role": "owner"}, format="json")
    assert r.status_code == 403


def test_removing_a_member_takes_away_access(api, project, users):
    bob = Membership.objects.get(project=project, user=users["bob"])
    assert api("adam").delete(f"{members_url(project)}/{bob.id}").status_code == 204
    assert api("bob").get(f"/api/v1/projects/{project.id}").status_code == 404


def test_the_members_page_invites_and_shows_errors(client_for, project, users):
    c = client_for("alice")
    r = c.post(f"/projects/{project.id}/members", {"action": "invite", "user": "ghost", "role": "viewer"})
    assert r.status_code == 404 and b"no user" in r.content
    r = c.post(f"/projects/{project.id}/members", {"action": "invite", "user": "charlie", "role": "viewer"})
    assert r.status_code == 302
    assert Membership.objects.filter(project=project, user=users["charlie"], role="viewer").exists()
