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


async def test_data_routing_and_leave(node):
    a = await connect(node, "alice", "data-room")
    b = await connect(node, "bob", "data-room")
    c = await connect(node, "carol", "data-room")
    got = {"bob": [], "carol": []}
    b.on("data_received", lambda p: got["bob"].append((p.participant.identity if p.participant else None, p.data, p.topic)))
    c.on("data_received", lambda p: got["carol"].append((p.participant.identity if p.participant else None, p.data, p.topic)))
    left = asyncio.Event()
    b.on("participant_disconnected", lambda p: p.identity == "alice" and left.set())
    try:
        await wait_for(lambda: len(a.remote_participants) == 2, what="alice sees both")
        # Wait until the data channels are up: a broadcast reaches both.
        for _ in range(100):
            await a.local_participant.publish_data(b"hello all", reliable=True, topic="t")
            await asyncio.sleep(0.1)
            if got["bob"] and got["carol"]:
                break
        assert ("alice", b"hello all", "t") in got["bob"]
        assert ("alice", b"hello all", "t") in got["carol"]
        got["bob"].clear()
        got["carol"].clear()

        await a.local_participant.publish_data(b"just bob", reliable=True, destination_identities=["bob"])
        await wait_for(lambda: got["bob"], what="addressed packet at bob")
        await asyncio.sleep(0.5)
        assert got["bob"] == [("alice", b"just bob", "")]
        assert got["carol"] == [], "carol received a packet addressed to bob"

        await a.disconnect()
        await asyncio.wait_for(left.wait(), 10)
        assert "alice" not in b.remote_participants
    finally:
        await b.disconnect()
        await c.disconnect()


@pytest.mark.parametrize(
    "case,needle",
    [
        ("expired", "expired"),
        ("bad_signature", "signature"),
        ("unknown_key", "API key"),
        ("no_join_grant", "roomJoin"),
    ],
)
async def test_bad_tokens_are_refused_with_a_reason(node, case, needle):
    import aiohttp

    if case == "expired":
        t = token("eve", "room1", ttl=timedelta(seconds=-120))
    elif case == "bad_signature":
        t = token("eve", "room1", secret="not-the-secret")
    elif case == "unknown_key":
        t = token("eve", "room1", key="nokey")
    else:
        from livekit import api
        t = api.AccessToken("devkey", "secret").with_identity("eve").with_grants(api.VideoGrants(room="room1")).to_jwt()
    # The SDK refuses to connect ...
    room = rtc.Room()
    with pytest.raises(Exception):
        await asyncio.wait_for(room.connect(node.url, t, options=V0), 20)
    # ... and the reason is given where clients read it.
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{node.http_url}/rtc/validate", params={"access_token": t}) as r:
            assert r.status == 401
            assert needle in await r.text()
        async with s.get(f"{node.http_url}/rtc", params={"access_token": t}, headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
            assert r.status == 401
            assert needle in await r.text()


async def test_token_for_another_room_lands_in_that_room(node):
    a = await connect(node, "alice", "room1")
    other = await connect(node, "mallory", "room2")
    try:
        await asyncio.sleep(0.5)
        assert "mallory" not in a.remote_participants
        assert other.name == "room2"
    finally:
        await a.disconnect()
        await other.disconnect()


async def test_validate_endpoint_semantics(node):
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(f"{node.http_url}/rtc/validate", params={"access_token": token("a", "r")}) as r:
            assert r.status == 200 and await r.text() == "success"
        async with s.get(f"{node.http_url}/rtc/validate") as r:
            assert r.status == 401
        # v1 needs its join_request (test_signal_v1.py covers the rest).
        async with s.get(f"{node.http_url}/rtc/v1/validate", params={"access_token": token("a", "r")}) as r:
            assert r.status == 400
            assert "join_request" in await r.text()
        async with s.get(f"{node.http_url}/rtc", params={"access_token": token("a", "r")}) as r:
            assert r.status == 404  # not a WebSocket request


async def test_media_over_ice_tcp_only(tmp_path):
    """With UDP candidates off, the SDK must reach the node over ICE-TCP (RFC 4571)."""
    from conftest import start_node

    node = start_node(tmp_path, env={"NODO_RTC__UDP_ENABLED": "false"})
    try:
        a = await connect(node, "alice", "tcp")
        tone = Tone()
        tone.start()
        await a.local_participant.publish_track(tone.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        b = await connect(node, "bob", "tcp")
        audio = await remote_track(b, "alice", rtc.TrackKind.KIND_AUDIO)
        af = await first_frames(audio, rtc.TrackKind.KIND_AUDIO, count=20)
        assert max(abs(s) for s in af.data) > 1000
        tone.stop()
        await a.disconnect()
        await b.disconnect()
    finally:
        node.stop()
