"""The "New project" wizard: each kind gets a starting impulse that the engine accepts and lands on its page."""
import pytest

from projects.models import Impulse, Project
from projects.services_wizard import KINDS, starting_impulse
from workers.ml.pipeline import parse_impulse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", ["motion", "audio", "images"])
def test_a_data_project_gets_its_starting_impulse_and_opens_data_acquisition(client_for, users, kind):
    c = client_for("alice")
    r = c.post("/", {"name": f"My {kind}", "kind": kind})
    project = Project.objects.get(name=f"My {kind}")
    assert r.status_code == 302 and r["Location"] == f"/projects/{project.id}/data"
    assert project.kind == kind
    impulse = Impulse.objects.get(project=project)
    assert impulse.version == 1
    assert impulse.spec == parse_impulse(starting_impulse(kind)).spec
    assert "impulse.saved" in project.activities.values_list("verb", flat=True)


def test_motion_starts_from_the_demo_impulse_spectral_dense_and_kmeans(client_for, users):
    client_for("alice").post("/", {"name": "Wave", "kind": "motion"})
    spec = Impulse.objects.get(project__name="Wave").spec
    assert [d["block"] for d in spec["dsp"]] == ["spectral-analysis"]
    assert [b["block"] for b in spec["learn"]] == ["classifier", "anomaly"]


def test_bring_a_model_sets_no_impulse_and_opens_the_model_page(client_for, users):
    r = client_for("alice").post("/", {"name": "My ONNX", "kind": "model"})
    project = Project.objects.get(name="My ONNX")
    assert not Impulse.objects.filter(project=project).exists()
    assert r.status_code == 302
    assert r["Location"] in (f"/projects/{project.id}/models/upload", f"/projects/{project.id}/")


def test_no_kind_makes_an_empty_project_on_its_overview(client_for, users):
    r = client_for("alice").post("/", {"name": "Plain"})
    project = Project.objects.get(name="Plain")
    assert r["Location"] == f"/projects/{project.id}/" and not project.impulses.exists()


def test_an_unknown_kind_is_refused_and_nothing_is_created(client_for, users):
    r = client_for("alice").post("/", {"name": "Odd", "kind": "lidar"})
    assert r.status_code == 400 and "kind must be one of" in r.content.decode()
    assert not Project.objects.filter(name="Odd").exists()


def test_the_dashboard_offers_every_kind(client_for, users):
    html = client_for("alice").get("/").content.decode()
    for key in KINDS:
        assert f'value="{key}"' in html
