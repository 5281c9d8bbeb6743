"""Checks a generated C bundle by building and running it: host gcc, Cortex-M4 size, Arduino stub, QEMU."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from workers.ml.export.c_bundle import (
    ANOMALY_ATOL,
    ANOMALY_RTOL,
    ARDUINO_STUB_DIR,
    test_vectors_header,
)

DEFAULT_TIMEOUT = 180.0  # seconds per step; QEMU gets the same bound


class VerifyError(ValueError):
    """The bundle or the expected values are malformed (names the problem)."""


_WINDOW_LINE = re.compile(
    r"window (\d+): label (-?\d+) expected (-?\d+) features (\w+) int8 (\w+) engine (\w+) scores((?: -?\d+)*)"
)
_ANOMALY_LINE = re.compile(
    r"window (\d+) anomaly (\S+) engine (\S+) expected (\S+) shift (\S+) engine (\w+) pipeline (\w+)"
)
_SUMMARY = re.compile(
    r"summary: windows (\d+) top1 (\d+) engine_exact (\d+) pipeline_exact (\d+) "
    r"worst_feature_error (\S*) failures (\d+)"
)


def _missing(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def _run(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return -1, f"{out}\n[timed out after {timeout:.0f} s]"
    return proc.returncode, (proc.stdout + proc.stderr)


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def _parse_selftest(output: str) -> dict[str, Any]:
    windows = []
    for m in _WINDOW_LINE.finditer(output):
        windows.append(
            {
                "window": int(m.group(1)),
                "label": int(m.group(2)),
                "expected": int(m.group(3)),
                "features_ok": m.group(4) == "ok",
                "int8_ok": m.group(5) == "ok",
                "engine_ok": m.group(6) == "ok",
                "scores": [int(v) for v in m.group(7).split()],
            }
        )
    anomaly = [
        {
            "window": int(m.group(1)),
            "score": float(m.group(2)),
            "engine_score": float(m.group(3)),
            "expected": float(m.group(4)),
            "shift": float(m.group(5)),
            "engine_ok": m.group(6) == "ok",
            "pipeline_ok": m.group(7) == "ok",
        }
        for m in _ANOMALY_LINE.finditer(output)
    ]
    summary: dict[str, Any] = {}
    m = _SUMMARY.search(output)
    if m:
        worst = m.group(5)
        summary = {
            "windows": int(m.group(1)),
            "top1_agreement": int(m.group(2)) / max(int(m.group(1)), 1),
            "engine_exact": int(m.group(3)),
            "pipeline_exact": int(m.group(4)),
            "worst_feature_error": float(worst) if worst else None,
            "failures": int(m.group(6)),
        }
    return {"summary": summary, "windows": windows, "anomaly": anomaly}


def _parse_sizes(output: str) -> dict[str, dict[str, int]]:
    """arm-none-eabi-size (Berkeley) lines -> {file name: text, data, bss, flash, ram}."""
    sizes = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 6 or not parts[0].isdigit():
            continue
        text, data, bss = int(parts[0]), int(parts[1]), int(parts[2])
        sizes[Path(parts[-1]).name] = {
            "text": text,
            "data": data,
            "bss": bss,
            "flash": text + data,
            "ram": data + bss,
        }
    return sizes


def _step(report: dict, name: str, status: str, output: str = "", **extra: Any) -> dict:
    entry = {"name": name, "status": status, "output": _tail(output), **extra}
    report["steps"].append(entry)
    return entry


def _markdown(report: dict) -> str:
    lines = [
        f"# Verification of {report['bundle']}",
        "",
        f"Overall: **{'ok' if report['ok'] else 'FAILED'}**",
        "",
    ]
    lines += ["| step | status | seconds | note |", "|---|---|---|---|"]
    for s in report["steps"]:
        note = s.get("reason") or s.get("note") or ""
        lines.append(f"| {s['name']} | {s['status']} | {s.get('seconds', '')} | {note} |")
    if report.get("anomaly_block"):
        lines += [
            "",
            "The impulse's k-means anomaly block is included: run_classifier sets result.anomaly. "
            "The C score of the Python features must match the Python engine's within "
            f"{report['anomaly_atol']:g} + {report['anomaly_rtol']:g} x |score|; run_classifier's "
            "score (C features) within that plus the distance between the C and Python features "
            "in the block's scaled space (see anomaly in host and qemu below).",
        ]
    for key in ("host", "qemu"):
        res = report.get(key)
        if res:
            lines += ["", f"## {key}", "", "```", json.dumps(res, indent=1), "```"]
    if report.get("arm"):
        arm = report["arm"]
        lines += [
            "",
            "## Cortex-M4 footprint (arm-none-eabi-gcc -Os, impulse minus an empty program)",
            "",
            f"flash (text+data): {arm['flash']} bytes; static RAM (data+bss): {arm['ram']} bytes",
        ]
        if report.get("qemu_elf"):
            e = report["qemu_elf"]
            lines.append(
                f"whole QEMU self-test ELF with newlib: flash {e['flash']}, RAM {e['ram']} bytes"
            )
    return "\n".join(lines) + "\n"


def verify_c_bundle(
    zip_bytes: bytes,
    *,
    windows: np.ndarray,
    expected_features: np.ndarray,
    expected_int8_outputs: np.ndarray,
    workdir: Path | str,
    max_windows: int = 20,
    feature_atol: float = 1e-4,
    feature_rtol: float = 1e-3,
    expected_anomaly: np.ndarray | None = None,
    anomaly_atol: float = ANOMALY_ATOL,
    anomaly_rtol: float = ANOMALY_RTOL,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict:
    """Build and run an Arduino or C++ bundle on the first `max_windows` windows; return a report.

    The report (JSON-serialisable) has one entry per step with status ok / failed / skipped
    (a missing tool is "skipped" with the reason, never "ok"), the host and QEMU results
    (features within atol + rtol*|expected|, int8 outputs identical, top-1 agreement), and the
    Cortex-M4 flash/RAM of the library. REPORT.json and REPORT.md are written into the bundle
    tree and a re-zipped copy is saved as report["bundle_with_report"].

    A bundle with an anomaly block (STUDIO_HAS_ANOMALY 1) needs expected_anomaly, the Python
    engine's score per window: the C score of the Python features must lie within anomaly_atol +
    anomaly_rtol * |expected| on host and QEMU, and run_classifier's (C features) within that plus
    the distance of the C features from Python's in the block's scaled space (a distance moves by
    no more than its end point).
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except zipfile.BadZipFile as exc:
        raise VerifyError(f"zip_bytes is not a zip archive: {exc}") from exc
    roots = {n.split("/", 1)[0] for n in zf.namelist()}
    if len(roots) != 1:
        raise VerifyError(f"the bundle must hold one top-level folder, it holds {sorted(roots)}")
    root_name = roots.pop()
    extract = work / "bundle"
    if extract.exists():
        shutil.rmtree(extract)
    zf.extractall(extract)
    root = extract / root_name
    if not (root / "Makefile").exists() or not (root / "src").is_dir():
        raise VerifyError("the bundle has no Makefile or src/ folder")
    has_anomaly = any(
        "#define STUDIO_HAS_ANOMALY 1" in h.read_text() for h in (root / "src").glob("*.h")
    )

    n = min(max_windows, len(windows))
    win = np.asarray(windows, dtype=np.float32)[:n]
    feats = np.asarray(expected_features, dtype=np.float32)[:n]
    outs = np.asarray(expected_int8_outputs).astype(np.int64)[:n]
    if len(feats) != n or len(outs) != n:
        raise VerifyError(
            f"expected_features ({len(expected_features)}) and expected_int8_outputs "
            f"({len(expected_int8_outputs)}) must have one row per window ({len(windows)})"
        )
    if np.any(outs < -128) or np.any(outs > 127):
        raise VerifyError("expected_int8_outputs must be int8 values")
    anomaly = None
    if has_anomaly:
        if expected_anomaly is None:
            raise VerifyError(
                "the bundle has an anomaly block: give expected_anomaly (the Python engine's scores)"
            )
        anomaly = np.asarray(expected_anomaly, dtype=np.float64).reshape(-1)[:n]
        if len(anomaly) != n:
            raise VerifyError(
                f"expected_anomaly ({len(expected_anomaly)}) must have one score per window "
                f"({len(windows)})"
            )
    elif expected_anomaly is not None:
        raise VerifyError("expected_anomaly was given but the bundle has no anomaly block")
    (root / "extras").mkdir(exist_ok=True)
    (root / "extras" / "test_vectors.h").write_text(
        test_vectors_header(
            win,
            feats,
            outs,
            feature_atol=feature_atol,
            feature_rtol=feature_rtol,
            anomaly=anomaly,
            anomaly_atol=anomaly_atol,
            anomaly_rtol=anomaly_rtol,
        )
    )

    report: dict[str, Any] = {
        "bundle": root_name,
        "windows": n,
        "feature_atol": feature_atol,
        "feature_rtol": feature_rtol,
        "anomaly_block": has_anomaly,
        "steps": [],
    }
    if has_anomaly:
        report |= {"anomaly_atol": anomaly_atol, "anomaly_rtol": anomaly_rtol}
    expected_top = outs.argmax(axis=1) if n else np.zeros(0, int)

    def judge(parsed: dict) -> dict:
        scores = np.array([w["scores"] for w in parsed["windows"]], dtype=np.int64)
        res = dict(parsed["summary"])
        if len(scores) == n and n:
            res["int8_mismatches"] = int((scores != outs).sum())
            res["top1_agreement"] = float((scores.argmax(axis=1) == expected_top).mean())
        res["features_ok"] = all(w["features_ok"] for w in parsed["windows"])
        res["engine_outputs_identical"] = all(w["engine_ok"] for w in parsed["windows"])
        res["pipeline_outputs_identical"] = all(w["int8_ok"] for w in parsed["windows"])
        if has_anomaly:
            rows = parsed["anomaly"]
            c = np.array([a["score"] for a in rows])
            exp = anomaly if anomaly is not None else np.zeros(0)
            res["anomaly"] = {
                "windows": len(rows),
                "within_tolerance": len(rows) == n
                and all(a["engine_ok"] and a["pipeline_ok"] for a in rows),
                "max_abs_error": float(np.abs(c - exp).max()) if len(c) == n and n else None,
                "max_abs_error_from_python_features": float(
                    np.abs(np.array([a["engine_score"] for a in rows]) - exp).max()
                )
                if len(c) == n and n
                else None,
                "max_feature_shift": max((a["shift"] for a in rows), default=None),
                "scores": [a["score"] for a in rows],
            }
        return res

    def passed(res: dict) -> bool:
        return (
            res.get("windows") == n
            and res.get("failures") == 0
            and res["features_ok"]
            and res["engine_outputs_identical"]
            and res.get("top1_agreement") == 1.0
            and (not has_anomaly or res["anomaly"]["within_tolerance"])
        )

    # 1. host gcc: build and run the self-test
    host_parsed: dict[str, Any] | None = None
    missing = _missing("make", "gcc")
    if missing:
        _step(report, "host_build", "skipped", reason=f"not installed: {', '.join(missing)}")
        _step(report, "host_run", "skipped", reason="no host build")
    else:
        t = time.monotonic()
        rc, out = _run(["make", "build/selftest"], root, timeout)
        st = _step(
            report,
            "host_build",
            "ok" if rc == 0 else "failed",
            out,
            seconds=round(time.monotonic() - t, 2),
        )
        if st["status"] == "ok":
            t = time.monotonic()
            rc, out = _run(["./build/selftest"], root, timeout)
            host_parsed = _parse_selftest(out)
            res = judge(host_parsed)
            report["host"] = res
            ok = rc == 0 and passed(res)
            _step(
                report,
                "host_run",
                "ok" if ok else "failed",
                out,
                seconds=round(time.monotonic() - t, 2),
                exit_code=rc,
            )
        else:
            _step(report, "host_run", "skipped", reason="host build failed")

    # 2. Cortex-M4 cross build of the library objects and their size
    missing = _missing("make", "arm-none-eabi-gcc", "arm-none-eabi-size")
    if missing:
        _step(report, "arm_build", "skipped", reason=f"not installed: {', '.join(missing)}")
    else:
        t = time.monotonic()
        rc, out = _run(["make", "arm"], root, timeout)
        sizes = _parse_sizes(out) if rc == 0 else {}
        base, full = sizes.get("baseline.elf"), sizes.get("impulse.elf")
        if base and full:
            report["arm"] = {
                "flash": full["flash"] - base["flash"],
                "ram": full["ram"] - base["ram"],
                "impulse_elf": full,
                "baseline_elf": base,
            }
        _step(
            report,
            "arm_build",
            "ok" if rc == 0 and base and full else "failed",
            out,
            seconds=round(time.monotonic() - t, 2),
        )

    # 3. Arduino examples against the API stub
    examples = sorted(root.glob("examples/*/*.ino"))
    missing = _missing("make", "gcc", "g++")
    if not examples:
        _step(report, "arduino_stub", "skipped", reason="the bundle has no Arduino examples")
    elif missing:
        _step(report, "arduino_stub", "skipped", reason=f"not installed: {', '.join(missing)}")
    else:
        stub = root / "extras" / "arduino_stub"
        if not stub.is_dir():
            shutil.copytree(ARDUINO_STUB_DIR, stub)
        t = time.monotonic()
        rc, out = _run(["make", "arduino-stub"], root, timeout)
        note = "compiled against the minimal Arduino API stub (no Arduino core installable)"
        if rc == 0:
            sketch = root / "build" / "stub" / "static_buffer"
            if sketch.exists():
                rc2, out2 = _run([str(sketch)], root, timeout)
                out += "\n$ static_buffer\n" + out2
                rc = rc or rc2
        _step(
            report,
            "arduino_stub",
            "ok" if rc == 0 else "failed",
            out,
            seconds=round(time.monotonic() - t, 2),
            note=note,
        )

    # 4. the self-test on an emulated Cortex-M4
    missing = _missing("make", "arm-none-eabi-gcc", "qemu-system-arm")
    if missing:
        _step(report, "qemu_build", "skipped", reason=f"not installed: {', '.join(missing)}")
        _step(report, "qemu_run", "skipped", reason="no QEMU build")
    else:
        t = time.monotonic()
        rc, out = _run(["make", "build/selftest.elf"], root, timeout)
        st = _step(
            report,
            "qemu_build",
            "ok" if rc == 0 else "failed",
            out,
            seconds=round(time.monotonic() - t, 2),
        )
        elf_size = _parse_sizes(out).get("selftest.elf")
        if elf_size:
            report["qemu_elf"] = elf_size
        if st["status"] == "ok":
            t = time.monotonic()
            cmd = [
                "qemu-system-arm",
                "-M",
                "mps2-an386",
                "-nographic",
                "-semihosting",
                "-kernel",
                "build/selftest.elf",
            ]
            rc, out = _run(cmd, root, timeout)
            qemu_parsed = _parse_selftest(out)
            res = judge(qemu_parsed)
            report["qemu"] = res
            ok = rc == 0 and passed(res)
            if host_parsed is not None:
                host_scores = [w["scores"] for w in host_parsed["windows"]]
                qemu_scores = [w["scores"] for w in qemu_parsed["windows"]]
                res["same_as_host"] = host_scores == qemu_scores
                if has_anomaly:
                    # The k-means code alone is IEEE float32 arithmetic: bit-identical on both. The
                    # pipeline scores may differ in the last digits (newlib's libm in the DSP).
                    res["anomaly"]["engine_same_as_host"] = [
                        a["engine_score"] for a in host_parsed["anomaly"]
                    ] == [a["engine_score"] for a in qemu_parsed["anomaly"]]
            _step(
                report,
                "qemu_run",
                "ok" if ok else "failed",
                out,
                seconds=round(time.monotonic() - t, 2),
                exit_code=rc,
            )
        else:
            _step(report, "qemu_run", "skipped", reason="QEMU build failed")

    report["ok"] = all(s["status"] != "failed" for s in report["steps"]) and any(
        s["status"] == "ok" for s in report["steps"]
    )
    (root / "REPORT.json").write_text(json.dumps(report, indent=1))
    (root / "REPORT.md").write_text(_markdown(report))
    shutil.rmtree(root / "build", ignore_errors=True)
    out_zip = work / f"{root_name}_verified.zip"
    with zipfile.ZipFile(out_zip, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                z.write(p, f"{root_name}/{p.relative_to(root)}")
    report["bundle_with_report"] = str(out_zip)
    return report
