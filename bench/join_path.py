"""The join path, measured: how long a LiveKit Python SDK client takes from
`Room.connect()` (the signal WebSocket opens at its start) to joined, and to
its first decoded frame of a publisher already in the room, in the SDK's
default mode and with signaling v0 forced. Rounds alternate the modes (ABBA),
half a second apart.

    .venv/bin/python bench/join_path.py [--rounds 10] [--bin target/release/nodo]

The default mode of current SDKs is signaling v1 (`/rtc/v1`, one peer
connection, the first offer inside the join request); v0 is the older
two-connection path.
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from livekit import rtc  # noqa: E402

from lk import CAM, MIC, Frames, Tone, token  # noqa: E402

MODES = {
    "default": rtc.RoomOptions(auto_subscribe=True),
    "v0": rtc.RoomOptions(auto_subscribe=True, single_peer_connection=False),
}


def start_node(binary: str, data: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [binary, "serve", "--dev", "--http-port", "0", "--rtc-udp-port", "0", "--rtc-tcp-port", "0",
         "--turn-udp-port", "0", "--turn-tls-port", "0", "--data-dir", data],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "nodo listening http=" in line:
            http = line.split("http=")[1].split()[0]
            return proc, f"ws://{http}"
    raise SystemExit("nodo did not start")


async def first_video_frame(room: rtc.Room, sender: str) -> None:
    got = asyncio.Event()
    track = {}

    def on_sub(t, _pub, p):
        if p.identity == sender and t.kind == rtc.TrackKind.KIND_VIDEO:
            track["t"] = t
            got.set()

    room.on("track_subscribed", on_sub)
    for p in room.remote_participants.values():
        for pub in p.track_publications.values():
            if p.identity == sender and pub.track is not None and pub.kind == rtc.TrackKind.KIND_VIDEO:
                track["t"] = pub.track
                got.set()
    await got.wait()
    stream = rtc.VideoStream(track["t"])
    try:
        async for _ in stream:
            return
    finally:
        await stream.aclose()


async def one_join(url: str, mode: str, n: int) -> tuple[float, float]:
    room = rtc.Room()
    t0 = time.perf_counter()
    await asyncio.wait_for(room.connect(url, token(f"viewer-{mode}-{n}", "join-path"), options=MODES[mode]), 20)
    t1 = time.perf_counter()
    await asyncio.wait_for(first_video_frame(room, "publisher"), 20)
    t2 = time.perf_counter()
    await room.disconnect()
    return (t1 - t0) * 1000, (t2 - t0) * 1000


def summary(xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
    return f"{statistics.median(xs):7.0f} {p90:7.0f}"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "nodo"))
    ap.add_argument("--raw", action="store_true", help="also print every join's figures")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as data:
        proc, url = start_node(args.bin, data)
        try:
            pub = rtc.Room()
            await pub.connect(url, token("publisher", "join-path"), options=MODES["v0"])
            tone, frames = Tone(), Frames(320, 180)
            tone.start()
            frames.start()
            await pub.local_participant.publish_track(tone.track, MIC)
            await pub.local_participant.publish_track(frames.track, CAM)
            await asyncio.sleep(1)
            results = {m: ([], []) for m in MODES}
            for n in range(args.rounds):
                # ABBA order, and a pause between joins longer than the
                # node's keyframe-request throttle (300 ms per publisher
                # layer): otherwise the join that always comes second waits
                # for the throttle the first one started.
                order = list(MODES) if n % 2 == 0 else list(reversed(MODES))
                for mode in order:
                    joined, frame = await one_join(url, mode, n)
                    results[mode][0].append(joined)
                    results[mode][1].append(frame)
                    await asyncio.sleep(0.5)
            print(f"join path, {args.rounds} joins per mode (ms; median, p90)")
            print(f"{'mode':8} {'joined':>15} {'first frame':>15}")
            for mode, (joined, frame) in results.items():
                print(f"{mode:8} {summary(joined)} {summary(frame)}")
            if args.raw:
                for mode, (joined, frame) in results.items():
                    print(f"{mode} joined: {' '.join(f'{x:.0f}' for x in joined)}")
                    print(f"{mode} first frame: {' '.join(f'{x:.0f}' for x in frame)}")
            tone.stop()
            frames.stop()
            await pub.disconnect()
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
