"""The Deployment page in a real browser: pick a model and a target, build, watch the job live over its
websocket, then the bundle appears with its green report and a download whose sha256 matches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from projects.models import Deployment
from tests.conftest import login_page, start_asgi_server, start_celery_worker
from tests.projects.test_deploy import model_row

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_deployment_built_on_the_page_shows_progress_a_green_report_and_downloads(
    page, project, users, settings, tmp_path
):
    from django.db import connection

    settings.MEDIA_ROOT = str(tmp_path / "media")
    model = model_row(project, users)
    env = {"MEDIA_ROOT": settings.MEDIA_ROOT}
    worker = start_celery_worker(tmp_path, connection.settings_dict, extra_env=env)
    server = start_asgi_server(tmp_path, connection.settings_dict, extra_env=env)
    try:
        base = server.url
        login_page(page, base, "bob")
        page.goto(f"{base}/projects/{project.id}/deployment")
        page.select_option("[data-testid=deploy-model]", str(model.id))
        page.select_option("[data-testid=deploy-target]", "tflite-int8")
        page.click("[data-testid=deploy-build]")
        status = page.locator("[data-testid=job-status]")
        status.wait_for()
        page.wait_for_function(
            "document.querySelector('[data-testid=job-status]').textContent === 'succeeded'",
            timeout=120_000,
        )
        row = page.locator("tr[data-target=tflite-int8]")
        row.wait_for()
        assert row.locator("[data-testid=deploy-verdict]").text_content() == "verified"
        assert (
            row.locator("[data-step=tflite_micro_vs_litert]").get_attribute("data-status") == "ok"
        )
        with page.expect_download() as info:
            row.locator("[data-testid=deploy-download]").click()
        download = info.value
        dep = Deployment.objects.get()
        assert download.suggested_filename == dep.file_name
        assert hashlib.sha256(Path(download.path()).read_bytes()).hexdigest() == dep.sha256
        # the sidebar has the section, and the model page links back
        assert page.locator("nav a", has_text="Deployment").count() >= 1
        page.goto(f"{base}/projects/{project.id}/models/{model.id}/")
        assert page.locator("#deployments-table tr[data-target=tflite-int8]").count() == 1
    finally:
        server.stop()
        worker.stop()
