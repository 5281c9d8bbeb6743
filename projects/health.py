"""/healthz: the database, Redis and one Celery worker, each checked for real."""
from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def _check_redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def _check_worker() -> str:
    from studio.celery import app

    replies = app.control.ping(timeout=2.0)
    if not replies:
        raise RuntimeError("no Celery worker answered a ping within 2 s")
    return f"ok ({len(replies)} worker{'s' if len(replies) != 1 else ''})"


def healthz(request):
    checks = {"database": _check_database, "redis": _check_redis, "worker": _check_worker}
    states: dict[str, str] = {}
    down = []
    for name, check in checks.items():
        if name == "worker" and "redis" in down:
            states[name] = "unknown: the broker (Redis) is down"
            down.append(name)
            continue
        try:
            states[name] = check()
        except Exception as exc:  # any failure is a state to report, never a 500
            states[name] = f"down: {exc.__class__.__name__}: {exc}"[:300]
            down.append(name)
    body = {"status": "ok" if not down else "down", "checks": states}
    if down:
        body["down"] = down
    return JsonResponse(body, status=503 if down else 200)
