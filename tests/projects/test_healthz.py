"""/healthz checks the database, Redis and a Celery worker for real, and a task round-trips."""
import pytest

pytestmark = pytest.mark.slow


def test_healthz_is_ok_with_a_real_worker_and_a_task_round_trips(celery_worker_process, client):
    r = client.get("/healthz")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "ok"
    assert body["checks"]["worker"].startswith("ok")
    from studio.celery import ping

    assert ping.delay().get(timeout=30) == "pong"


@pytest.mark.django_db
def test_healthz_names_the_worker_when_none_answers(client):
    # The test Redis is up but no worker is running in this test.
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["down"] == ["worker"]
    assert "no Celery worker" in r.json()["checks"]["worker"]


@pytest.mark.django_db
def test_healthz_names_redis_when_it_is_down(client, settings):
    from studio.devservices import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    r = client.get("/healthz")
    assert r.status_code == 503
    assert "redis" in r.json()["down"]
    assert r.json()["checks"]["redis"].startswith("down:")
