"""Prints the overhead of training through the studio's job against a bare Keras script, same data, network, epochs.

Usage:
    .venv/bin/python bench/train_overhead.py [--data DIR] [--epochs 40] [--repeats 2] [--increase-ms 250]

DIR holds ``training/`` EI JSON files named ``<label>.<n>.json`` (default: projects/demo_data/basicmotions,
the BasicMotions smartwatch set). The studio side runs on a throw-away SQLite database, media directory
and Redis (started here): upload through sample_create, save the impulse, run the features job, then time
the train job through the same task a Celery worker runs (claim, cached features, training with per-epoch
progress to the row and the channel group, model file, TrainedModel row). The bare side trains the same
dense network on the same feature matrix with plain ``keras.Model.fit`` on numpy arrays. Runs alternate
after a warm-up; the medians are compared. Goal: ratio ≤ 1.10.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "projects" / "demo_data" / "basicmotions")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--increase-ms", type=int, default=250)
    args = ap.parse_args()

    var = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    os.environ["STUDIO_VAR_DIR"] = str(var)
    os.environ["DATABASE_URL"] = f"sqlite:///{var / 'bench.sqlite3'}"
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdef0123456789")
    os.environ["DJANGO_SETTINGS_MODULE"] = "studio.settings"
    from studio.devservices import start_redis

    redis_proc, redis_url = start_redis(var / "redis")
    os.environ["REDIS_URL"] = redis_url
    try:
        run(args)
    finally:
        redis_proc.terminate()


def run(args) -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import keras
    import numpy as np

    from projects import services, services_training
    from projects.ingestion import Limits, parse_upload
    from projects.models import Job
    from projects.services import Actor
    from projects.services_impulse import impulse_save
    from projects.services_samples import sample_create
    from workers.ml.pipeline import learn_input
    from workers.tasks import run_job

    user = User.objects.create_user("bench")
    project = services.project_create(owner=user, name="bench")
    actor = Actor(user=user)
    files = sorted((args.data / "training").glob("*.json"))
    for f in files:
        parsed = parse_upload(
            f.read_bytes(),
            file_name=f.name,
            content_type="application/json",
            hmac_key=None,
            require_signed=False,
            limits=Limits(),
        )
        sample_create(
            project=project,
            category="training",
            label=f.name.split(".")[0],
            file_name=f.name,
            parsed=parsed,
            log_activity=False,
        )
    axes = [s["name"] for s in project.samples.first().sensors]
    rate = 1000.0 / project.samples.first().interval_ms
    layers, lr, batch, split = [20, 10], 0.005, 32, 0.2
    spec = {
        "input": {
            "type": "time-series",
            "window_size_ms": 5000,
            "window_increase_ms": args.increase_ms,
            "frequency_hz": rate,
            "zero_pad": True,
        },
        "dsp": [
            {
                "id": "spectral",
                "block": "spectral-analysis",
                "axes": axes,
                "params": {"filter_type": "none", "fft_length": 64, "spectral_power_edges": []},
            }
        ],
        "learn": [
            {
                "id": "classifier",
                "block": "classifier",
                "inputs": ["spectral"],
                "arch": {"kind": "dense", "layers": layers, "dropout": 0.0},
                "settings": {
                    "epochs": args.epochs,
                    "learning_rate": lr,
                    "batch_size": batch,
                    "validation_split": split,
                },
            }
        ],
    }
    impulse_save(project=project, actor=actor, spec=spec)
    features = services_training.features_start(project=project, actor=actor)
    run_job.run(features.id)
    features.refresh_from_db()
    assert features.status == "succeeded", features.error

    # The exact matrix the studio trains on, for the bare script.
    from projects.services_training import _stack, gather_features
    from workers.ml.pipeline import parse_impulse

    engine = parse_impulse(spec)
    items, _ = gather_features(features, engine, list(project.samples.order_by("id")), None)
    feats, labels, _ = _stack(items, engine)
    x = learn_input(feats, engine.classifier)
    names = sorted(set(labels))
    y = np.array([names.index(v) for v in labels])
    rng = np.random.default_rng(1)
    order = rng.permutation(len(x))
    n_val = round(len(x) * split)
    val, train = order[:n_val], order[n_val:]

    def bare() -> float:
        start = time.perf_counter()
        keras.utils.set_random_seed(1)
        inputs = keras.Input((x.shape[1],))
        h = inputs
        for units in layers:
            h = keras.layers.Dense(units, activation="relu")(h)
        model = keras.Model(inputs, keras.layers.Dense(len(names), activation="softmax")(h))
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(
            x[train],
            y[train],
            epochs=args.epochs,
            batch_size=batch,
            validation_data=(x[val], y[val]),
            verbose=0,
        )
        model.evaluate(x[val], y[val], verbose=0)
        return time.perf_counter() - start

    def studio() -> tuple[float, float]:
        job = services_training.train_start(project=project, actor=actor)
        start = time.perf_counter()
        run_job.run(job.id)
        took = time.perf_counter() - start
        job = Job.objects.get(pk=job.id)
        assert job.status == "succeeded", job.error
        return took, job.result["accuracy"]

    bare()  # warm-up: TensorFlow's first graph builds
    studio_times, bare_times, accuracies = [], [], []
    for _ in range(args.repeats):
        took, acc = studio()
        studio_times.append(took)
        accuracies.append(acc)
        bare_times.append(bare())
    s, b = statistics.median(studio_times), statistics.median(bare_times)
    print(
        f"data: {len(files)} training samples from {args.data}, {len(x)} windows x {x.shape[1]} features, "
        f"{len(names)} labels"
    )
    print(f"network: dense {layers}, {args.epochs} epochs, batch {batch}, validation {split:.0%}")
    print(
        f"studio job (train task, in-process): {', '.join(f'{t:.2f}' for t in studio_times)} s "
        f"(median {s:.2f} s), validation accuracy {statistics.median(accuracies):.3f}"
    )
    print(
        f"bare Keras fit on numpy:            {', '.join(f'{t:.2f}' for t in bare_times)} s (median {b:.2f} s)"
    )
    print(f"ratio studio / bare: {s / b:.2f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
