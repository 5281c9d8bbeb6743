"""Settings for the workers of tests/test_production.py: the production settings, with Redis scanning for
messages of dead workers every 2 s instead of every 100 s (kombu: unacked_restore_interval 10 s x
unacked_restore_throttle 10), so a test sees a killed worker's job move within seconds of the
visibility timeout."""
from studio.settings import *  # noqa: F403
from studio.settings import CELERY_BROKER_TRANSPORT_OPTIONS

CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "unacked_restore_interval": 2,
                                   "unacked_restore_throttle": 1}
