"""`make run`: the whole studio under one supervisor (honcho): Redis (when REDIS_URL is unset), the
ASGI server (pages, API, websockets) and a Celery worker. Ctrl-C stops them all."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from honcho.manager import Manager
from honcho.printer import Printer

from studio.devservices import free_port, procfile_commands, redis_command


def main() -> int:
    base = Path(__file__).resolve().parent.parent
    var = Path(os.environ.get("STUDIO_VAR_DIR", base / "var"))
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # The Procfile's commands (daphne, celery) come from this interpreter's virtualenv.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    manager = Manager(Printer(sys.stdout))
    if not env.get("REDIS_URL"):
        port = int(env.get("STUDIO_REDIS_PORT") or free_port())
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        manager.add_process("redis", " ".join(redis_command(port, var / "redis")), env=env)
        print(f"Starting Redis on 127.0.0.1:{port} (data in {var / 'redis'})", flush=True)
    for name, command in procfile_commands(base / "Procfile").items():
        manager.add_process(name, command, env=env)
    host, port = env.get("HOST", "127.0.0.1"), env.get("PORT", "8000")
    print(f"Tiny Studio on http://{host}:{port}  (Ctrl-C stops everything)", flush=True)
    manager.loop()
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
