"""One media client for the impairment harness, run inside a network namespace.

    impair_client.py pub URL TOKEN [--width W --height H --fps F --no-simulcast]
    impair_client.py sub URL TOKEN

It talks to the harness in JSON lines: it prints `{"event": "ready"}` once
media flows (the publisher: published; the subscriber: video frames decoded),
then reads commands from stdin:

    start   the measurement window begins: stats are sampled
    stop    the window ends: stats are sampled again and the result printed
            as `{"event": "result", ...}`, and the client leaves

Everything it reports comes from the LiveKit SDK's own view: decoded frames
as they leave the decoder (their arrival times and widths), and libwebrtc's
inbound/outbound RTP stats (NACK, PLI, FIR, retransmissions, freezes, audio
concealment), as deltas over the window.
"""

import asyncio
import json
import math
import sys
import time

import numpy as np
from livekit import rtc

V0 = rtc.RoomOptions(auto_subscribe=True, single_peer_connection=False)


def emit(**kw):
    print(json.dumps(kw), flush=True)


async def lines():
    """stdin, line by line, without blocking the loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        yield line.decode().strip()


# ---- stats ------------------------------------------------------------------------------------

INBOUND_VIDEO = ("frames_decoded", "key_frames_decoded", "freeze_count", "total_freeze_duration",
                 "nack_count", "pli_count", "fir_count", "retransmitted_packets_received",
                 "frames_dropped")
INBOUND_AUDIO = ("concealed_samples", "silent_concealed_samples", "total_samples_received",
                 "concealment_events")
OUTBOUND = ("nack_count", "pli_count", "fir_count", "retransmitted_packets_sent", "frames_encoded",
            "key_frames_encoded")


def _sum(stats, which, kind, fields):
    out = {f: 0 for f in fields}
    if which == "inbound":
        out["packets_lost"] = 0
        out["packets_received"] = 0
    else:
        out["packets_sent"] = 0
        out["bytes_sent"] = 0
    for s in stats:
        if which == "inbound" and s.HasField("inbound_rtp"):
            st = s.inbound_rtp
            if st.stream.kind != kind:
                continue
            out["packets_lost"] += st.received.packets_lost
            out["packets_received"] += st.received.packets_received
            src = st.inbound
        elif which == "outbound" and s.HasField("outbound_rtp"):
            st = s.outbound_rtp
            if st.stream.kind != kind:
                continue
            out["packets_sent"] += st.sent.packets_sent
            out["bytes_sent"] += st.sent.bytes_sent
            src = st.outbound
        else:
            continue
        for f in fields:
            out[f] += getattr(src, f, 0)
    return out


def delta(a: dict, b: dict) -> dict:
    return {k: round(b[k] - a.get(k, 0), 3) for k in b}


# ---- publisher --------------------------------------------------------------------------------

class Scene:
    """Camera-like frames: a smooth, slowly scrolling colour field with a bar
    and a grid of soft blobs sweeping across it. Every frame differs and the
    encoder has real motion to code, at the bitrates a webcam scene costs; a
    noise texture would make libwebrtc's frame dropper starve the low layers."""

    def __init__(self, w, h):
        self.w, self.h = w, h
        y, x = np.mgrid[0:h, 0 : 2 * w].astype(np.float32)
        field = np.stack([
            128 + 90 * np.sin(x / 37.0) * np.cos(y / 23.0),
            128 + 90 * np.sin((x + y) / 51.0),
            128 + 90 * np.cos(x / 29.0 - y / 41.0),
        ], axis=-1)
        self.field = field.clip(0, 255).astype(np.uint8)
        self.frame = np.full((h, w, 4), 255, dtype=np.uint8)

    def render(self, n):
        x = (n * 4) % self.w
        self.frame[:, :, :3] = self.field[:, x : x + self.w]
        bar = (n * 7) % max(1, self.w - 24)
        self.frame[:, bar : bar + 24, :3] = (n * 5) % 256
        top = (n * 3) % max(1, self.h - 40)
        self.frame[top : top + 40, self.w // 3 : self.w // 3 + 40, :3] = (40, 200, 90)
        return rtc.VideoFrame(self.w, self.h, rtc.VideoBufferType.RGBA, self.frame.tobytes())


async def run_pub(url, token, args):
    room = rtc.Room()
    await room.connect(url, token, options=V0)
    w, h, fps = args.width, args.height, args.fps
    vsrc = rtc.VideoSource(w, h)
    vtrack = rtc.LocalVideoTrack.create_video_track("camera", vsrc)
    opts = rtc.TrackPublishOptions(
        source=rtc.TrackSource.SOURCE_CAMERA,
        simulcast=args.simulcast,
        video_encoding=rtc.VideoEncoding(max_bitrate=args.max_bitrate, max_framerate=fps),
        video_codec=rtc.VideoCodec.VP8,
    )
    await room.local_participant.publish_track(vtrack, opts)
    asrc = rtc.AudioSource(48000, 1)
    atrack = rtc.LocalAudioTrack.create_audio_track("mic", asrc)
    await room.local_participant.publish_track(
        atrack, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE, dtx=False))

    async def video():
        scene = Scene(w, h)
        n = 0
        t0 = time.monotonic()
        while True:
            vsrc.capture_frame(scene.render(n))
            n += 1
            await asyncio.sleep(max(0.0, t0 + n / fps - time.monotonic()))

    async def audio():
        # A 440 Hz tone with a slow tremolo: speech-like level changes, never silence.
        rate, samples, phase = 48000, 480, 0
        while True:
            frame = rtc.AudioFrame.create(rate, 1, samples)
            t = (phase + np.arange(samples)) / rate
            env = 0.6 + 0.4 * np.sin(2 * math.pi * 3 * t)
            np.frombuffer(frame.data, dtype=np.int16)[:] = (9000 * env * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
            phase += samples
            await asrc.capture_frame(frame)

    tasks = [asyncio.create_task(video()), asyncio.create_task(audio())]
    emit(event="ready", role="pub")
    before = None
    async for line in lines():
        if line == "start":
            before = await pub_stats(vtrack, atrack)
        elif line == "stop":
            after = await pub_stats(vtrack, atrack)
            emit(event="result", role="pub",
                 video=delta(before["video"], after["video"]) if before else after["video"],
                 audio=delta(before["audio"], after["audio"]) if before else after["audio"],
                 layers=after["layers"],
                 per_layer={rid: {**(delta(before["per_layer"].get(rid, {}), v) if before else v),
                                  "target_bitrate": v["target_bitrate"], "limited_by": v["limited_by"]}
                            for rid, v in after["per_layer"].items()})
            break
    for t in tasks:
        t.cancel()
    await room.disconnect()


async def pub_stats(vtrack, atrack):
    vs = await vtrack.get_stats()
    as_ = await atrack.get_stats()
    layers = sorted(
        (s.outbound_rtp.outbound.rid, s.outbound_rtp.outbound.frame_width)
        for s in vs if s.HasField("outbound_rtp"))
    per_layer = {
        s.outbound_rtp.outbound.rid or "-": {
            "frames_encoded": s.outbound_rtp.outbound.frames_encoded,
            "bytes_sent": s.outbound_rtp.sent.bytes_sent,
            "target_bitrate": s.outbound_rtp.outbound.target_bitrate,
            "limited_by": s.outbound_rtp.outbound.quality_limitation_reason,
        }
        for s in vs if s.HasField("outbound_rtp")}
    return {"video": _sum(vs, "outbound", "video", OUTBOUND),
            "audio": _sum(as_, "outbound", "audio", ("nack_count",)),
            "layers": layers, "per_layer": per_layer}


# ---- subscriber -------------------------------------------------------------------------------

async def run_sub(url, token, args):
    room = rtc.Room()
    tracks: dict[str, rtc.RemoteTrack] = {}
    frames: list[tuple[float, int]] = []
    got_video = asyncio.Event()

    async def consume_video(track):
        async for ev in rtc.VideoStream(track):
            frames.append((time.monotonic(), ev.frame.width))
            if len(frames) >= 10:
                got_video.set()

    async def consume_audio(track):
        # Pulling the audio makes the jitter buffer decode (and conceal) it.
        async for _ in rtc.AudioStream(track, sample_rate=48000, num_channels=1):
            pass

    tasks = []

    def on_sub(track, pub, participant):
        tracks[track.kind] = track
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            tasks.append(asyncio.create_task(consume_video(track)))
        elif track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.append(asyncio.create_task(consume_audio(track)))

    room.on("track_subscribed", on_sub)
    await room.connect(url, token, options=V0)
    await asyncio.wait_for(got_video.wait(), 30)
    emit(event="ready", role="sub")

    start = None
    before = None
    async for line in lines():
        if line == "start":
            start = time.monotonic()
            before = await sub_stats(tracks)
        elif line == "stop":
            end = time.monotonic()
            after = await sub_stats(tracks)
            start = start or end
            window = [(t - start, wd) for t, wd in frames if start <= t <= end]
            emit(event="result", role="sub", seconds=round(end - start, 3),
                 frames=[(round(t, 4), wd) for t, wd in window],
                 video=delta(before["video"], after["video"]),
                 audio=delta(before["audio"], after["audio"]))
            break
    for t in tasks:
        t.cancel()
    await room.disconnect()


async def sub_stats(tracks):
    out = {"video": {}, "audio": {}}
    if rtc.TrackKind.KIND_VIDEO in tracks:
        out["video"] = _sum(await tracks[rtc.TrackKind.KIND_VIDEO].get_stats(), "inbound", "video",
                            INBOUND_VIDEO)
    if rtc.TrackKind.KIND_AUDIO in tracks:
        out["audio"] = _sum(await tracks[rtc.TrackKind.KIND_AUDIO].get_stats(), "inbound", "audio",
                            INBOUND_AUDIO)
    return out


def main():
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["pub", "sub"])
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--max-bitrate", type=int, default=1_200_000)
    p.add_argument("--no-simulcast", dest="simulcast", action="store_false")
    args = p.parse_args()
    run = run_pub if args.role == "pub" else run_sub
    asyncio.run(run(args.url, args.token, args))


if __name__ == "__main__":
    main()
