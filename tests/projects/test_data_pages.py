"""The Data acquisition pages: the explorer and a sample's page render for members, and in a real
browser three files uploaded through the page show their progress, one is relabelled, its chart drawn."""
from __future__ import annotations

import pytest

from projects.ingestion import Limits, parse_upload
from projects.models import Sample
from projects.services_samples import sample_create
from tests.conftest import login_page
from tests.helpers.samples import (
    accelerometer_values,
    csv_bytes,
    ei_document,
    ei_json_bytes,
    tone,
    wav_bytes,
)


@pytest.fixture(autouse=True)
def fresh_media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def make(project, name, data, label="idle", category="training"):
    parsed = parse_upload(data, file_name=name, content_type=None, hmac_key=None, require_signed=False,
                          limits=Limits())
    return sample_create(project=project, category=category, label=label, file_name=name, parsed=parsed,
                         raw_bytes=data, uploader=None, device=None, metadata={}, upload_source="test")


@pytest.mark.django_db
def test_data_page_shows_the_summary_and_upload_form_to_editors_only(client_for, project):
    make(project, "idle.1.json", ei_json_bytes(ei_document(accelerometer_values(20))))
    r = client_for("bob").get(f"/projects/{project.id}/data")
    assert r.status_code == 200
    html = r.content.decode()
    assert 'id="upload-card"' in html and "Data acquisition" in html and '"total": 1' in html
    r = client_for("vic").get(f"/projects/{project.id}/data")
    assert r.status_code == 200 and 'id="upload-card"' not in r.content.decode()
    assert client_for("charlie").get(f"/projects/{project.id}/data").status_code == 404


@pytest.mark.django_db
def test_sample_page_and_the_sample_link_other_pages_use(client_for, project):
    audio = make(project, "yes.1.wav", wav_bytes(tone(800)), label="yes")
    r = client_for("vic").get(f"/projects/{project.id}/data?sample={audio.id}&t=12.5")
    assert r.status_code == 302 and r["Location"] == f"/projects/{project.id}/data/{audio.id}?t=12.5"
    html = client_for("vic").get(r["Location"]).content.decode()
    assert "yes.1.wav" in html and 'id="sample-audio"' in html and "file?as=wav" in html
    assert 'id="edit-card"' not in html
    assert 'id="edit-card"' in client_for("bob").get(r["Location"]).content.decode()


@pytest.mark.slow
def test_upload_three_files_watch_progress_relabel_one_and_see_its_chart(asgi_server, project, page):
    base = asgi_server.url
    login_page(page, base, "bob")
    page.goto(f"{base}/projects/{project.id}/data")
    files = [
        {"name": "idle.01.json", "mimeType": "application/json",
         "buffer": ei_json_bytes(ei_document(accelerometer_values(200, seed=1)))},
        {"name": "wave.01.csv", "mimeType": "text/csv", "buffer": csv_bytes(accelerometer_values(150, seed=2))},
        {"name": "yes.01.wav", "mimeType": "audio/wav", "buffer": wav_bytes(tone(16000))},
    ]
    page.set_input_files("#upload-files", files)
    page.select_option("#upload-category", "training")
    page.click("#upload-start")
    page.wait_for_function("document.querySelectorAll('#upload-list tr[data-state]').length === 3")
    states = page.eval_on_selector_all("#upload-list tr", "els => els.map(e => [e.dataset.file, e.dataset.state, "
                                       "e.cells[2].textContent])")
    assert [s[1] for s in states] == ["done"] * 3, (states, asgi_server.output()[-2000:])
    assert page.inner_text("#upload-overall-text") == "3 of 3 files"
    assert page.eval_on_selector("#upload-overall-bar", "e => parseFloat(e.style.width)") == 100
    widths = page.eval_on_selector_all("#upload-list .progress > div", "els => els.map(e => e.style.width)")
    assert widths == ["100%", "100%", "100%"]
    page.wait_for_function("document.querySelectorAll('#sample-table tbody tr[data-sample-id]').length === 3")
    # The summary and the table reload side by side after the uploads: wait for both.
    page.wait_for_function("document.getElementById('total-count').textContent === '3'")
    labels = page.eval_on_selector_all("#sample-table td.label", "els => els.map(e => e.textContent).sort()")
    assert labels == ["idle", "wave", "yes"]

    page.click("#sample-table a:text('wave.01.csv')")
    page.wait_for_selector("#chart .uplot canvas")
    assert page.eval_on_selector("#chart", "e => e.dataset.ready") == "1"
    series = page.eval_on_selector_all("#chart .u-legend .u-series", "els => els.length")
    assert series == 4  # time + three axes
    page.fill("#edit-label", "circle")
    page.click("#save-label")
    page.wait_for_selector("#edit-ok:text('Label saved.')")
    assert page.inner_text("#sample-label") == "circle"
    assert Sample.objects.get(project=project, file_name="wave.01.csv").label == "circle"

    page.goto(f"{base}/projects/{project.id}/data")
    page.wait_for_selector("#label-table tr[data-label='circle']")
