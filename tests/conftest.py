"""Shared fixtures: named users with roles, a project, API keys, a real Celery worker process, a real
ASGI server process, and a headless Chromium driven by Playwright.

alice owns the project, adam is an admin, bob an editor, vic a viewer, charlie an outsider.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery"


def _env_for_child(db_settings: dict) -> dict:
    env = dict(os.environ)
    engine = db_settings["ENGINE"]
    name = db_settings["NAME"]
    if engine.endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{name}"
    else:
        user = db_settings.get("USER") or ""
        host = db_settings.get("HOST") or "127.0.0.1"
        port = db_settings.get("PORT") or 5432
        password = db_settings.get("PASSWORD") or ""
        auth = f"{user}:{password}@" if password else f"{user}@" if user else ""
        env["DATABASE_URL"] = f"postgres://{auth}{host}:{port}/{name}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def users(db):
    from django.contrib.auth.models import User

    names = ["alice", "adam", "bob", "vic", "charlie"]
    return {n: User.objects.create_user(n, email=f"{n}@example.com", password=PASSWORD) for n in names}


@pytest.fixture
def project(users):
    from projects import services
    from projects.models import Membership

    p = services.project_create(owner=users["alice"], name="Gestures")
    Membership.objects.create(project=p, user=users["adam"], role="admin")
    Membership.objects.create(project=p, user=users["bob"], role="editor")
    Membership.objects.create(project=p, user=users["vic"], role="viewer")
    return p


@pytest.fixture
def other_project(users):
    from projects import services

    return services.project_create(owner=users["charlie"], name="Charlie's secret project")


@pytest.fixture
def api_keys(project, other_project, users):
    """Full keys by role for `project`, plus 'other' (admin key of charlie's project) and 'revoked'."""
    from projects import services

    actor = services.Actor(user=users["alice"])
    keys = {}
    for role in ["ingestion", "viewer", "editor", "admin"]:
        _, keys[role] = services.api_key_create(project=project, actor=actor, name=f"{role} key", role=role)
    _, keys["other"] = services.api_key_create(project=other_project, actor=services.Actor(user=users["charlie"]),
                                               name="charlie key", role="admin")
    revoked, keys["revoked"] = services.api_key_create(project=project, actor=actor, name="old", role="admin")
    services.api_key_revoke(project=project, actor=actor, key=revoked)
    return keys


@pytest.fixture
def client_for(client, users):
    """client_for('bob') -> a Django test client logged in as bob."""
    from django.test import Client

    def make(name: str | None, enforce_csrf: bool = False) -> Client:
        c = Client(enforce_csrf_checks=enforce_csrf)
        if name:
            c.force_login(users[name])
        return c

    return make


@pytest.fixture
def api(users):
    """api('bob') -> a DRF APIClient logged in as bob (session); api(key='...') -> with x-api-key."""
    from rest_framework.test import APIClient

    def make(name: str | None = None, key: str | None = None) -> APIClient:
        c = APIClient()
        if name:
            c.force_login(users[name])
        if key:
            c.credentials(HTTP_X_API_KEY=key)
        return c

    return make


class _Proc:
    def __init__(self, proc: subprocess.Popen, log: Path, url: str | None = None):
        self.proc, self.log, self.url = proc, log, url

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def start_celery_worker(tmp_path: Path, db_settings: dict, name: str = "w1", extra_env: dict | None = None,
                        concurrency: int = 1) -> _Proc:
    env = _env_for_child(db_settings) | (extra_env or {})
    env.setdefault("STUDIO_WORK_DIR", str(tmp_path / f"work-{name}"))
    log = tmp_path / f"celery-{name}.log"
    cmd = [sys.executable, "-m", "celery", "-A", "studio", "worker", "--loglevel", "INFO", "--concurrency",
           str(concurrency), "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    from studio.celery import app

    deadline = time.monotonic() + 60
    stale_connection_retries = 3
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited: {log.read_text()[-3000:]}")
        try:
            replies = app.control.ping(destination=[f"{name}@{os.uname().nodename}"], timeout=0.5)
        except Exception as exc:
            # A pooled broker connection from before a Redis restart (an earlier test's): reconnect, retry.
            import redis
            from kombu.exceptions import OperationalError

            stale = isinstance(exc, (redis.exceptions.ConnectionError, OperationalError, OSError))
            if not stale or stale_connection_retries == 0:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
            stale_connection_retries -= 1
            from studio.celery import reset_broker_pools

            reset_broker_pools()
            continue
        except BaseException:  # e.g. Redis unreachable: never leave the worker running behind the test
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        if replies:
            return _Proc(proc, log)
    proc.kill()
    raise RuntimeError(f"celery worker did not answer a ping: {log.read_text()[-3000:]}")


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path, settings):
    """A real Celery worker in its own process, on the test database and the test Redis."""
    from django.db import connection

    worker = start_celery_worker(tmp_path, connection.settings_dict)
    yield worker
    worker.stop()


def start_asgi_server(tmp_path: Path, db_settings: dict, extra_env: dict | None = None) -> _Proc:
    from studio.devservices import free_port, wait_for_port

    port = free_port()
    env = _env_for_child(db_settings) | (extra_env or {})
    log = tmp_path / "daphne.log"
    proc = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                             "studio.asgi:application"], cwd=ROOT, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout=60)
    except RuntimeError:
        proc.kill()
        raise RuntimeError(f"daphne did not start: {log.read_text()[-3000:]}")
    return _Proc(proc, log, url=f"http://127.0.0.1:{port}")


@pytest.fixture
def asgi_server(transactional_db, tmp_path):
    """The real ASGI server (daphne) in a subprocess: pages, API and websockets on a free port."""
    from django.db import connection

    server = start_asgi_server(tmp_path, connection.settings_dict)
    yield server
    server.stop()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture
def browser():
    """A headless Chromium for one test. Not session-wide: Playwright's sync API keeps an event loop
    running in the test thread while it is open, which would break later tests' asyncio.run()."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; `make test` installs Debian's chromium package")
        pytest.skip("chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def login_page(page, base_url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
