"""Sign-up, log-in, log-out with sessions and CSRF."""
import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db


def test_signup_creates_the_account_and_logs_in():
    c = Client()
    r = c.post("/signup", {"username": "dana", "email": "dana@example.com", "password1": "a-long-passphrase-9",
                           "password2": "a-long-passphrase-9"})
    assert r.status_code == 302 and r.url == "/"
    assert User.objects.filter(username="dana").exists()
    assert c.get("/").status_code == 200


def test_signup_with_a_taken_username_is_refused_with_a_message(users):
    c = Client()
    r = c.post("/signup", {"username": "alice", "password1": "a-long-passphrase-9",
                           "password2": "a-long-passphrase-9"})
    assert r.status_code == 400
    assert b"already exists" in r.content
    assert User.objects.filter(username="alice").count() == 1


def test_login_and_logout(users):
    c = Client()
    r = c.post("/login", {"username": "alice", "password": "correct-horse-battery"})
    assert r.status_code == 302
    assert c.get("/").status_code == 200
    c.post("/logout")
    assert c.get("/").status_code == 302


def test_wrong_password_does_not_log_in(users):
    c = Client()
    r = c.post("/login", {"username": "alice", "password": "nope"})
    assert r.status_code == 200 and b"didn" in r.content
    assert c.get("/").status_code == 302


def test_a_form_post_without_csrf_token_is_refused(users):
    c = Client(enforce_csrf_checks=True)
    c.force_login(users["alice"])
    r = c.post("/", {"name": "No token"})
    assert r.status_code == 403
    from projects.models import Project

    assert not Project.objects.filter(name="No token").exists()


def test_api_session_write_without_csrf_token_is_refused(users):
    from rest_framework.test import APIClient

    c = APIClient(enforce_csrf_checks=True)
    c.login(username="alice", password="correct-horse-battery")
    r = c.post("/api/v1/projects", {"name": "No token"}, format="json")
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]
