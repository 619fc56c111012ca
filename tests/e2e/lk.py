"""Helpers around the official LiveKit Python SDKs (livekit, livekit-api)."""

import asyncio
import math
from datetime import timedelta

import aiohttp
from livekit import api, rtc
from livekit.protocol import rtc as sig

from conftest import API_KEY, API_SECRET

V0 = rtc.RoomOptions(auto_subscribe=True, single_peer_connection=False)


def token(identity: str, room: str, *, ttl=timedelta(hours=1), secret=API_SECRET, key=API_KEY,
          name: str | None = None, **grants) -> str:
    g = api.VideoGrants(room_join=True, room=room, **grants)
    t = api.AccessToken(key, secret).with_identity(identity).with_grants(g).with_ttl(ttl)
    if name:
        t = t.with_name(name)
    return t.to_jwt()


async def connect(node, identity: str, room: str, options=V0, **grants) -> rtc.Room:
    r = rtc.Room()
    await asyncio.wait_for(r.connect(node.url, token(identity, room, **grants), options=options), 20)
    return r


class Tone:
    """A 440 Hz sine published as a microphone track."""

    def __init__(self, rate=48000, channels=1):
        self.source = rtc.AudioSource(rate, channels)
        self.rate = rate
        self.track = rtc.LocalAudioTrack.create_audio_track("tone", self.source)
        self._task = None
        self._phase = 0

    async def _run(self):
        samples = self.rate // 100  # 10 ms frames
        while True:
            frame = rtc.AudioFrame.create(self.rate, 1, samples)
            data = frame.data
            for i in range(samples):
                data[i] = int(12000 * math.sin(2 * math.pi * 440 * (self._phase + i) / self.rate))
            self._phase += samples
            await self.source.capture_frame(frame)

    def start(self):
        self._task = asyncio.create_task(self._run())

    def stop(self):
        if self._task:
            self._task.cancel()


class Frames:
    """Generated RGBA frames (a moving gradient) published as a camera track."""

    def __init__(self, width=640, height=360, fps=15):
        self.w, self.h, self.fps = width, height, fps
        self.source = rtc.VideoSource(width, height)
        self.track = rtc.LocalVideoTrack.create_video_track("frames", self.source)
        self._task = None

    async def _run(self):
        n = 0
        while True:
            shade = (n * 8) % 256
            row = bytes([shade, 255 - shade, (n * 3) % 256, 255]) * self.w
            buf = bytearray(row * self.h)
            frame = rtc.VideoFrame(self.w, self.h, rtc.VideoBufferType.RGBA, buf)
            self.source.capture_frame(frame)
            n += 1
            await asyncio.sleep(1 / self.fps)

    def start(self):
        self._task = asyncio.create_task(self._run())

    def stop(self):
        if self._task:
            self._task.cancel()


async def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = asyncio.get_event_loop().time() + timeout
    while asyncio.get_event_loop().time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def remote_track(room: rtc.Room, identity: str, kind, timeout=20.0):
    """The first subscribed remote track of `kind` from `identity`."""
    found = {}

    def check():
        p = room.remote_participants.get(identity)
        if not p:
            return False
        for pub in p.track_publications.values():
            if pub.track is not None and pub.kind == kind:
                found["t"] = pub.track
                return True
        return False

    await wait_for(check, timeout, f"{kind} track from {identity}")
    return found["t"]


async def first_frames(track, kind, count=3, timeout=20.0):
    """Receives `count` decoded frames; returns the last."""
    stream = rtc.AudioStream(track) if kind == rtc.TrackKind.KIND_AUDIO else rtc.VideoStream(track)
    got = 0
    last = None

    async def pull():
        nonlocal got, last
        async for ev in stream:
            last = ev.frame
            got += 1
            if got >= count:
                return

    try:
        await asyncio.wait_for(pull(), timeout)
    finally:
        await stream.aclose()
    return last


MIC = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
CAM = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)


async def publish_av(room: rtc.Room):
    tone, frames = Tone(), Frames(320, 180)
    tone.start()
    frames.start()
    await room.local_participant.publish_track(tone.track, MIC)
    await room.local_participant.publish_track(frames.track, CAM)
    return tone, frames


async def audible(track, within_frames=400, timeout=20.0) -> bool:
    """Whether one of the first `within_frames` 10 ms frames is loud (Chromium's
    fake microphone beeps once a second; the Tone never stops)."""
    stream = rtc.AudioStream(track)

    async def pull():
        n = 0
        async for ev in stream:
            if max(abs(s) for s in ev.frame.data) > 1000:
                return True
            n += 1
            if n >= within_frames:
                return False
        return False

    try:
        return await asyncio.wait_for(pull(), timeout)
    finally:
        await stream.aclose()


async def receives_av(room: rtc.Room, sender: str):
    audio = await remote_track(room, sender, rtc.TrackKind.KIND_AUDIO)
    video = await remote_track(room, sender, rtc.TrackKind.KIND_VIDEO)
    assert await audible(audio), f"audio from {sender} is silent"
    vf = await first_frames(video, rtc.TrackKind.KIND_VIDEO, count=3)
    assert vf.width > 0 and vf.height > 0


async def recv(ws, timeout=10.0) -> sig.SignalResponse:
    """The next signal message on a raw signal WebSocket, decoded."""
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    r = sig.SignalResponse()
    r.ParseFromString(msg.data)
    return r
