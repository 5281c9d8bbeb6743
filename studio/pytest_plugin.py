"""Pytest plugin (loaded with -p before Django starts): gives the test run its own Redis, media and
database directory, so the suite runs on a fresh machine with nothing installed but the virtualenv."""
from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

_var = Path(tempfile.mkdtemp(prefix="studio-test-"))
os.environ.setdefault("STUDIO_VAR_DIR", str(_var))
os.environ.setdefault("SECRET_KEY", "test-secret-key-for-the-suite-0123456789abcdef")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
os.environ.setdefault("STUDIO_FAST_PASSWORD_HASHING", "1")
# Playwright's sync API keeps an event loop in the test thread; Django would then refuse the test's own
# (synchronous) database work. The server under test runs in its own process, unaffected.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
os.environ.setdefault("STUDIO_PRETRAINED_DIR", str(_var / "pretrained"))

if not os.environ.get("REDIS_URL"):
    from studio.devservices import start_redis

    _redis_proc, _redis_url = start_redis(_var / "redis")
    os.environ["REDIS_URL"] = _redis_url
    os.environ["STUDIO_TEST_REDIS_PID"] = str(_redis_proc.pid)

    def _stop_redis() -> None:
        _redis_proc.terminate()
        try:
            _redis_proc.wait(timeout=10)
        except Exception:
            _redis_proc.kill()

    atexit.register(_stop_redis)
