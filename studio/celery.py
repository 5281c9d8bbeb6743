"""The Celery application: broker and results on Redis, tasks in workers/tasks.py."""
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")

app = Celery("studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")


@app.task(name="studio.ping")
def ping() -> str:
    """Round-trip check used by /healthz and the tests."""
    return "pong"


@signals.worker_ready.connect
def _start_lost_worker_check(sender=None, **kwargs):
    """Each worker watches for jobs left "running" by a worker that died (workers/reaper.py)."""
    from workers import reaper

    reaper.start(app)


def reset_broker_pools() -> None:
    """Forget this process's pooled broker connections (after Redis restarted, they all point at the
    old server); Celery and kombu make fresh ones lazily on next use."""
    from kombu import pools

    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
