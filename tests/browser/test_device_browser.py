"""The "this browser" page in headless Chromium: synthetic devicemotion events stream into a recorded
sample, and a synthetic microphone and camera (a MediaStream made from an oscillator and a canvas)
upload audio and a snapshot through the ingestion API."""
import numpy as np
import pytest

from tests.conftest import login_page

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# getUserMedia answered by streams the page itself makes: a 440 Hz tone and a green 320x240 picture.
FAKE_MEDIA = """
navigator.mediaDevices.getUserMedia = async (constraints) => {
  if (constraints.audio) {
    const ctx = new AudioContext();
    await ctx.resume();
    const osc = ctx.createOscillator();
    osc.frequency.value = 440;
    const dst = ctx.createMediaStreamDestination();
    osc.connect(dst);
    osc.start();
    return dst.stream;
  }
  const canvas = document.createElement('canvas');
  canvas.width = 320; canvas.height = 240;
  const g = canvas.getContext('2d');
  const paint = () => { g.fillStyle = '#33aa77'; g.fillRect(0, 0, 320, 240); };
  paint(); setInterval(paint, 30);
  return canvas.captureStream(30);
};
"""

MOTION = """async (n) => {
  for (let i = 0; i < n; i++) {
    window.dispatchEvent(new DeviceMotionEvent('devicemotion',
      {accelerationIncludingGravity: {x: i, y: -i / 2, z: 9.81}, interval: 16}));
    await new Promise((r) => setTimeout(r, 16));
  }
}"""


def test_this_browser_streams_motion_into_a_recorded_sample_and_uploads_audio_and_a_snapshot(
        asgi_server, page, project, users):
    from projects.models import ApiKey, Device, Sample
    from projects.services_samples import sample_payload

    base = asgi_server.url
    login_page(page, base, "bob")
    page.add_init_script(FAKE_MEDIA)
    page.goto(f"{base}/projects/{project.id}/devices/this-browser")
    page.click("#bd-connect-btn")
    page.wait_for_selector("#bd-status.ok")
    page.fill("#bd-label", "wave")
    page.click("#bd-rec-start")
    page.wait_for_function("document.getElementById('bd-rec-status').textContent.startsWith('Recording')")
    page.evaluate(MOTION, 120)
    page.wait_for_function("document.getElementById('bd-acked').textContent === '120'")
    page.click("#bd-rec-stop")
    page.wait_for_function("document.getElementById('bd-rec-status').dataset.sampleId")
    sample_id = int(page.eval_on_selector("#bd-rec-status", "el => el.dataset.sampleId"))

    sample = Sample.objects.get(pk=sample_id)
    assert sample.label == "wave" and sample.project_id == project.id
    i = np.arange(120, dtype=np.float32)
    expected = np.stack([i, -i / 2, np.full(120, 9.81, dtype=np.float32)], axis=1).astype(np.float32)
    assert np.array_equal(sample_payload(sample).values, expected)
    device = Device.objects.get(pk=sample.device_id)
    assert device.device_type == "BROWSER" and device.device_id.startswith("browser-")
    key = ApiKey.objects.get(project=project, name__startswith=f"browser device {device.device_id}")
    assert key.role == "ingestion" and key.revoked_at is None

    page.fill("#bd-label", "tone")
    page.fill("#bd-audio-s", "0.5")
    page.click("#bd-audio")
    page.wait_for_function("document.getElementById('bd-media-status').dataset.uploaded === '1'", timeout=20_000)
    page.fill("#bd-label", "green")
    page.click("#bd-snapshot")
    page.wait_for_function("document.getElementById('bd-media-status').dataset.uploaded === '2'", timeout=20_000)

    audio = Sample.objects.get(project=project, label="tone")
    assert audio.kind == "audio" and audio.interval_ms == pytest.approx(1000 / 16000)
    assert audio.value_count == 8000
    tone = sample_payload(audio).values[:, 0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(tone - tone.mean()))
    assert abs(np.argmax(spectrum) * 16000 / len(tone) - 440) < 10
    snap = Sample.objects.get(project=project, label="green")
    assert snap.kind == "image" and (snap.width, snap.height) == (320, 240)
    r, g, b = (int(v) for v in sample_payload(snap).pixels[120, 160])
    assert abs(r - 0x33) < 20 and abs(g - 0xAA) < 20 and abs(b - 0x77) < 20


def test_a_viewer_cannot_get_a_key_but_may_paste_one(client_for, project):
    viewer = client_for("vic")
    page = viewer.get(f"/projects/{project.id}/devices/this-browser")
    assert page.status_code == 200 and b"bd-connect-btn" not in page.content and b"bd-key" in page.content
    assert viewer.post(f"/projects/{project.id}/devices/this-browser", {"browser_id": "browser-1234"},
                       content_type="application/json").status_code == 403
    editor = client_for("bob")
    first = editor.post(f"/projects/{project.id}/devices/this-browser", {"browser_id": "browser-1234"},
                        content_type="application/json").json()["api_key"]
    second = editor.post(f"/projects/{project.id}/devices/this-browser", {"browser_id": "browser-1234"},
                         content_type="application/json").json()["api_key"]
    from projects.models import ApiKey

    keys = ApiKey.objects.filter(project=project, name__startswith="browser device browser-1234")
    assert first != second and keys.count() == 2 and keys.filter(revoked_at__isnull=True).count() == 1
    bad = editor.post(f"/projects/{project.id}/devices/this-browser", {"browser_id": "../x"},
                      content_type="application/json")
    assert bad.status_code == 400 and bad.json()["field"] == "browser_id"
