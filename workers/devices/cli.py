"""`studio-device`: run simulated devices or forward a serial board to a Tiny Studio server.

    studio-device simulate --url http://127.0.0.1:8000 --api-key KEY --devices 10 --rate 100 --axes 3 --label wave
    studio-device forward --port /dev/ttyACM0 --url http://127.0.0.1:8000 --api-key KEY [--axes accX,accY,accZ]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

from .protocol import DeviceClientError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("STUDIO_URL", "http://127.0.0.1:8000"),
                        help="the studio's address (http(s)://host:port); env STUDIO_URL")
    parser.add_argument("--api-key", default=os.environ.get("STUDIO_API_KEY"),
                        help="a project API key (ingestion role is enough); env STUDIO_API_KEY")
    parser.add_argument("--frame-ms", type=float, default=100.0, help="data per stream frame (default 100 ms)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio-device", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="simulated accelerometer devices streaming gesture-like signals")
    _common(sim)
    sim.add_argument("--devices", type=int, default=1)
    sim.add_argument("--rate", type=float, default=100.0, help="rows per second per device")
    sim.add_argument("--axes", type=int, default=3)
    sim.add_argument("--label", default="wave", help="gesture: idle, wave, circle, shake, updown (or any)")
    sim.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    sim.add_argument("--record", action="store_true", help="record the streamed data into a sample per device")
    sim.add_argument("--category", default="training")
    sim.add_argument("--cbor", action="store_true", help="speak CBOR instead of JSON")
    sim.add_argument("--prefix", default="sim", help="device ids are <prefix>-0000, <prefix>-0001, …")
    fwd = sub.add_parser("forward", help="forward a board's serial output (one reading per line)")
    _common(fwd)
    fwd.add_argument("--port", default="/dev/ttyACM0")
    fwd.add_argument("--baud", type=int, default=115200)
    fwd.add_argument("--axes", default=None, help="axis names, comma-separated (asked for when not given)")
    fwd.add_argument("--device-id", default=None)
    fwd.add_argument("--detect-seconds", type=float, default=1.0)
    return parser


async def _simulate(args) -> int:
    from .simulate import SimulationParams, simulate

    params = SimulationParams(devices=args.devices, rate_hz=args.rate, axes=args.axes, label=args.label,
                              seconds=args.seconds, record=args.record, frame_ms=args.frame_ms,
                              binary=args.cbor, device_prefix=args.prefix, category=args.category)
    devices = await simulate(args.url, args.api_key, params, progress=True)
    acked = sum(d.stats.rows_acked for d in devices)
    lost = sum(d.unacked for d in devices)
    print(f"{len(devices)} device(s): {acked} rows acknowledged, {lost} frame(s) not acknowledged")
    return 0 if lost == 0 else 1


async def _forward(args) -> int:
    from .forward import Forwarder, ForwardParams, SerialReader, axis_names_from

    reader = SerialReader(args.port, args.baud)
    reader.start()
    try:
        forwarder = Forwarder(reader, ForwardParams(port=args.port, baud=args.baud, detect_s=args.detect_seconds,
                                                    frame_ms=args.frame_ms, device_id=args.device_id))
        detected = await forwarder.detect()
        print(f"Detected {detected.axes} axes at {detected.frequency_hz:g} Hz on {args.port}", flush=True)
        text = args.axes
        if text is None:
            default = ",".join(["accX", "accY", "accZ"][: detected.axes]) if detected.axes <= 3 else ""
            text = await asyncio.get_running_loop().run_in_executor(
                None, lambda: input(f"Name the {detected.axes} axes (comma-separated) [{default}]: ")) or default
        names = axis_names_from(text, detected.axes)
        device = forwarder.connect(server=args.url, api_key=args.api_key, axis_names=names)
        print(f"Forwarding as device '{device.identity.device_id}' to {args.url} (Ctrl-C to stop)", flush=True)
        await device.run(asyncio.Event())
    finally:
        reader.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.api_key:
        print("studio-device: --api-key (or STUDIO_API_KEY) is required", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_simulate(args) if args.command == "simulate" else _forward(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from .forward import ForwarderError

        if isinstance(exc, (DeviceClientError, ForwarderError)):
            print(f"studio-device: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
