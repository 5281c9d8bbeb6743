"""docker-compose.yml, Procfile, .env.example and settings.py agree (no Docker engine runs here)."""
import re
from pathlib import Path

import yaml

from studio.devservices import procfile_commands

ROOT = Path(__file__).resolve().parent.parent


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def settings_env_vars() -> set[str]:
    text = (ROOT / "studio" / "settings.py").read_text()
    return set(re.findall(r'env(?:_bool|_int|_list)?\("([A-Z0-9_]+)"', text))


def test_compose_has_the_production_services():
    services = compose()["services"]
    for name in ["db", "redis", "minio", "web", "worker"]:
        assert name in services, name
    assert services["db"]["image"].startswith("postgres")
    # Scalable workers: no fixed container name, no published port, no local volume.
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker and "volumes" not in worker


def test_every_variable_compose_sets_is_one_settings_reads():
    known = settings_env_vars() | {"HOST", "PORT", "WORKER_CONCURRENCY", "WORKER_NAME"}  # Procfile's
    for name, service in compose()["services"].items():
        env = service.get("environment") or {}
        if name in {"web", "worker", "migrate"}:
            unknown = set(env) - known
            assert not unknown, f"{name} sets variables settings.py never reads: {unknown}"


def test_env_example_lists_every_variable_settings_reads():
    listed = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = settings_env_vars() - listed - {"STUDIO_TEST_DB", "STUDIO_FAST_PASSWORD_HASHING"}
    assert not missing, f".env.example does not list: {missing}"


def test_web_and_worker_run_the_procfile_commands_that_make_run_uses():
    procs = procfile_commands(ROOT / "Procfile")
    services = compose()["services"]
    for name in ["web", "worker"]:
        command = services[name]["command"]
        assert command[:2] == ["sh", "-c"]
        # `$$` is compose's escape for a `$` the container's shell expands.
        assert command[2].replace("$$", "$") == procs[name]
    assert "studio.run" in (ROOT / "Makefile").read_text()


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
