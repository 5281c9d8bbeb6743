"""The demo project `make run` creates: the BasicMotions smartwatch data set (projects/demo_data/)
uploaded through the normal sample service, and an impulse ready to train (spectral analysis +
dense classifier + k-means anomaly detection)."""
from __future__ import annotations

from pathlib import Path

from .ingestion import Limits, parse_upload
from .models import Project, Sample
from .services import Actor

DATA = Path(__file__).resolve().parent / "demo_data" / "basicmotions"

DEMO_IMPULSE = {
    "input": {"type": "time-series", "window_size_ms": 5000, "window_increase_ms": 1000, "frequency_hz": 10,
              "zero_pad": True},
    "dsp": [{"id": "spectral", "block": "spectral-analysis",
             "axes": ["accX", "accY", "accZ", "gyrX", "gyrY", "gyrZ"],
             "params": {"filter_type": "none", "fft_length": 64, "spectral_power_edges": [0.5, 1.5, 3.0, 5.0],
                        "spectral_peaks_count": 3}}],
    "learn": [{"id": "classifier", "block": "classifier", "inputs": ["spectral"],
               "arch": {"kind": "dense", "layers": [20, 10], "dropout": 0.1},
               "settings": {"epochs": 30, "learning_rate": 0.005}},
              {"id": "anomaly", "block": "anomaly", "inputs": ["spectral"], "clusters": 8}],
}


def demo_populate(*, project: Project, user) -> int:
    """Upload the demo data once (idempotent); returns how many samples were added."""
    from .services_samples import sample_create

    if Sample.objects.filter(project=project).exists():
        return 0
    actor = Actor(user=user)
    added = 0
    files = sorted(DATA.glob("*/*.json"))
    for i, path in enumerate(files, 1):
        parsed = parse_upload(path.read_bytes(), file_name=path.name, content_type="application/json",
                              hmac_key=None, require_signed=False, limits=Limits())
        sample_create(project=project, category=path.parent.name, label=None, file_name=path.name, parsed=parsed,
                      raw_bytes=path.read_bytes(), uploader=user, upload_source="demo", actor=actor,
                      log_activity=False)
        added += 1
        print(f"\r  uploading the demo data set: {i}/{len(files)}", end="", flush=True)
    print()
    try:
        from .services_impulse import impulse_save

        impulse_save(project=project, actor=actor, spec=DEMO_IMPULSE)
    except Exception as exc:  # the data is there; the user can design the impulse by hand
        print(f"  (demo impulse not set: {exc})")
    return added
