"""The official LiveKit Python SDK against a real Nodo process (signaling v0)."""

import asyncio
from datetime import timedelta

import pytest
from livekit import rtc

from lk import V0, Frames, Tone, connect, first_frames, remote_track, token, wait_for


async def test_publish_and_subscribe_both_ways(node):
    a = await connect(node, "alice", "room1")
    tone, frames = Tone(), Frames()
    tone.start()
    frames.start()
    try:
        await a.local_participant.publish_track(tone.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        await a.local_participant.publish_track(frames.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA))

        b = await connect(node, "bob", "room1")
        assert "alice" in b.remote_participants
        audio = await remote_track(b, "alice", rtc.TrackKind.KIND_AUDIO)
        video = await remote_track(b, "alice", rtc.TrackKind.KIND_VIDEO)
        af = await first_frames(audio, rtc.TrackKind.KIND_AUDIO, count=20)
        assert af.sample_rate > 0 and len(af.data) > 0
        assert max(abs(s) for s in af.data) > 1000, "received audio is silent"
        vf = await first_frames(video, rtc.TrackKind.KIND_VIDEO, count=3)
        assert vf.width > 0 and vf.height > 0

        # B publishes too; A receives it.
        tone_b = Tone()
        tone_b.start()
        await b.local_participant.publish_track(tone_b.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        audio_b = await remote_track(a, "bob", rtc.TrackKind.KIND_AUDIO)
        fb = await first_frames(audio_b, rtc.TrackKind.KIND_AUDIO, count=20)
        assert len(fb.data) > 0
        tone_b.stop()
        await b.disconnect()
    finally:
        tone.stop()
        frames.stop()
        await a.disconnect()
