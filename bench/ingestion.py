"""Upload parsing speed: parse, canonical encode and content hash for each format at realistic sizes.

Run: .venv/bin/python bench/ingestion.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from projects.ingestion import Limits, parse_upload
from tests.helpers.samples import (
    HMAC_KEY,
    accelerometer_values,
    csv_bytes,
    ei_cbor_bytes,
    ei_document,
    ei_json_bytes,
    image_pixels,
    jpeg_bytes,
    png_bytes,
    tone,
    wav_bytes,
)
from workers.ml.samples import content_sha256, encode


def bench(name: str, data: bytes, content_type: str, key: str | None = None) -> None:
    start = time.perf_counter()
    parsed = parse_upload(
        data,
        file_name=None,
        content_type=content_type,
        hmac_key=key,
        require_signed=False,
        limits=Limits(),
    )
    parsed_at = time.perf_counter()
    canonical = encode(parsed.payload)
    content_sha256(parsed.payload)
    done = time.perf_counter()
    print(
        f"{name:30s} {len(data) / 1e6:6.2f} MB  parse {1000 * (parsed_at - start):7.1f} ms  "
        f"encode+hash {1000 * (done - parsed_at):6.1f} ms  canonical {len(canonical) / 1e6:.2f} MB"
    )


def main() -> None:
    values = accelerometer_values(100_000)  # 16.7 min of 3 axes at 100 Hz
    document = ei_document(values)
    bench(
        "EI JSON signed, 100k x 3", ei_json_bytes(document, HMAC_KEY), "application/json", HMAC_KEY
    )
    bench(
        "EI CBOR signed, 100k x 3", ei_cbor_bytes(document, HMAC_KEY), "application/cbor", HMAC_KEY
    )
    bench("CSV, 100k x 3", csv_bytes(values), "text/csv")
    flat = np.round(np.random.default_rng(0).normal(size=1_000_000), 3).tolist()
    one_axis = ei_document(flat, sensors=[("a", "g")])
    bench("EI JSON 1 axis, 1M values", ei_json_bytes(one_axis), "application/json")
    bench("WAV 60 s 16 kHz mono", wav_bytes(tone(960_000)), "audio/wav")
    bench("PNG 1024x768 RGB (noise)", png_bytes(image_pixels(768, 1024)), "image/png")
    bench("JPEG 1024x768 RGB (noise)", jpeg_bytes(image_pixels(768, 1024)), "image/jpeg")


if __name__ == "__main__":
    main()
