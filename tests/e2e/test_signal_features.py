"""Signal features seen through the Python SDK: speakers, quality, mute,
metadata, manual subscription."""

import asyncio

from livekit import rtc

from lk import Frames, Tone, connect, remote_track, wait_for


async def test_speakers_quality_and_mute(node):
    a = await connect(node, "alice", "feat")
    b = await connect(node, "bob", "feat")
    tone = Tone()
    tone.start()
    speakers: list[list[str]] = []
    quality: dict[str, rtc.ConnectionQuality] = {}
    muted = asyncio.Event()
    unmuted = asyncio.Event()
    b.on("active_speakers_changed", lambda ps: speakers.append([p.identity for p in ps]))
    b.on("connection_quality_changed", lambda p, q: quality.__setitem__(p.identity, q))
    b.on("track_muted", lambda p, pub: p.identity == "alice" and muted.set())
    b.on("track_unmuted", lambda p, pub: p.identity == "alice" and unmuted.set())
    try:
        pub = await a.local_participant.publish_track(
            tone.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        await remote_track(b, "alice", rtc.TrackKind.KIND_AUDIO)
        await wait_for(lambda: any("alice" in s for s in speakers), 15, "alice among active speakers")
        await wait_for(lambda: "alice" in quality, 15, "a connection quality update for alice")
        assert quality["alice"] in (rtc.ConnectionQuality.QUALITY_EXCELLENT, rtc.ConnectionQuality.QUALITY_GOOD)

        pub.track.mute()
        await asyncio.wait_for(muted.wait(), 10)
        rp = b.remote_participants["alice"].track_publications[pub.sid]
        assert rp.muted
        pub.track.unmute()
        await asyncio.wait_for(unmuted.wait(), 10)
        # Silence: once the tone stops, alice leaves the speaker list.
        tone.stop()
        await wait_for(lambda: speakers and "alice" not in speakers[-1], 15, "alice to stop speaking")
    finally:
        tone.stop()
        await a.disconnect()
        await b.disconnect()


async def test_metadata_needs_the_grant(node):
    a = await connect(node, "alice", "meta", can_update_own_metadata=True)
    b = await connect(node, "bob", "meta")
    changed = asyncio.Event()
    b.on("participant_metadata_changed", lambda p, old, new: p.identity == "alice" and new == "hello" and changed.set())
    try:
        await a.local_participant.set_metadata("hello")
        await asyncio.wait_for(changed.wait(), 10)
        assert b.remote_participants["alice"].metadata == "hello"
        await a.local_participant.set_name("Alice A.")
        await wait_for(lambda: b.remote_participants["alice"].name == "Alice A.", 10, "name change")
        # Bob's token lacks canUpdateOwnMetadata: refused, nothing changes.
        try:
            await asyncio.wait_for(b.local_participant.set_metadata("nope"), 10)
        except Exception:
            pass
        await asyncio.sleep(0.5)
        assert a.remote_participants["bob"].metadata == ""
    finally:
        await a.disconnect()
        await b.disconnect()


async def test_manual_subscription(node):
    a = await connect(node, "alice", "manual")
    frames = Frames()
    frames.start()
    try:
        await a.local_participant.publish_track(frames.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA))
        b = await connect(node, "bob", "manual", options=rtc.RoomOptions(auto_subscribe=False, single_peer_connection=False))
        await wait_for(lambda: "alice" in b.remote_participants and b.remote_participants["alice"].track_publications, 10, "publication")
        pub = next(iter(b.remote_participants["alice"].track_publications.values()))
        await asyncio.sleep(1.0)
        assert pub.track is None, "subscribed without asking"
        pub.set_subscribed(True)
        track = await remote_track(b, "alice", rtc.TrackKind.KIND_VIDEO)
        assert track is not None
        pub.set_subscribed(False)
        await wait_for(lambda: pub.track is None, 10, "unsubscribe")
        await b.disconnect()
    finally:
        frames.stop()
        await a.disconnect()


async def test_default_options_fall_back_to_v0(node):
    """The SDK's default (single peer connection) tries /rtc/v1, gets 404, uses /rtc."""
    r = rtc.Room()
    from lk import token
    await asyncio.wait_for(r.connect(node.url, token("dflt", "dflt")), 20)
    assert r.connection_state == rtc.ConnectionState.CONN_CONNECTED
    await r.disconnect()
