"""Room rules that need a node started with non-default settings."""

import asyncio

import aiohttp
import pytest
from livekit import rtc

from conftest import start_node
from lk import V0, connect, token


async def test_auto_create_off_refuses_missing_room(tmp_path):
    node = start_node(tmp_path, env={"NODO_ROOM__AUTO_CREATE": "false"})
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{node.http_url}/rtc/validate", params={"access_token": token("a", "nowhere")}) as r:
                assert r.status == 404
                assert "requested room does not exist" in await r.text()
        room = rtc.Room()
        with pytest.raises(Exception):
            await asyncio.wait_for(room.connect(node.url, token("a", "nowhere"), options=V0), 20)
        # A token with roomCreate may create it.
        r = await connect(node, "admin", "nowhere", room_create=True)
        await r.disconnect()
    finally:
        node.stop()


async def test_max_participants(tmp_path):
    node = start_node(tmp_path, env={"NODO_ROOM__MAX_PARTICIPANTS": "1"})
    try:
        a = await connect(node, "a", "small")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{node.http_url}/rtc", params={"access_token": token("b", "small")}, headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
                assert r.status == 403
                assert "full" in await r.text()
        await a.disconnect()
    finally:
        node.stop()


async def test_permissions_are_enforced(node):
    from lk import Tone, remote_track, wait_for

    viewer = await connect(node, "viewer", "perm", can_publish=False, can_publish_data=False)
    speaker = await connect(node, "speaker", "perm")
    deaf = await connect(node, "deaf", "perm", can_subscribe=False)
    tone = Tone()
    tone.start()
    got = []
    speaker.on("data_received", lambda p: got.append(p.data))
    try:
        # A viewer cannot publish media ...
        with pytest.raises(Exception):
            await asyncio.wait_for(viewer.local_participant.publish_track(
                tone.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)), 15)
        # ... nor data: its packets are dropped.
        for _ in range(10):
            try:
                await viewer.local_participant.publish_data(b"from viewer")
            except Exception:
                pass
            await asyncio.sleep(0.1)
        assert got == []
        # The speaker publishes; the viewer receives; the deaf participant does not.
        await speaker.local_participant.publish_track(
            tone.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        await remote_track(viewer, "speaker", rtc.TrackKind.KIND_AUDIO)
        await asyncio.sleep(1.5)
        pubs = deaf.remote_participants["speaker"].track_publications.values()
        assert all(p.track is None for p in pubs)
    finally:
        tone.stop()
        for r in (viewer, speaker, deaf):
            await r.disconnect()


async def test_duplicate_identity_replaces_the_old_session(node):
    first = await connect(node, "same", "dup")
    gone = asyncio.Event()
    first.on("disconnected", lambda reason: gone.set())
    second = await connect(node, "same", "dup")
    try:
        await asyncio.wait_for(gone.wait(), 10)
        assert second.connection_state == rtc.ConnectionState.CONN_CONNECTED
    finally:
        await second.disconnect()


async def test_room_closes_after_departure_timeout(tmp_path):
    node = start_node(tmp_path, env={"NODO_ROOM__DEPARTURE_TIMEOUT": "1"})

    async def rooms():
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{node.http_url}/metrics") as r:
                text = await r.text()
        return int(next(l.split()[1] for l in text.splitlines() if l.startswith("nodo_rooms ")))

    try:
        a = await connect(node, "a", "brief")
        assert await rooms() == 1
        await a.disconnect()
        await asyncio.sleep(0.5)
        assert await rooms() == 1, "closed before departure_timeout"
        await asyncio.sleep(2.0)
        assert await rooms() == 0
    finally:
        node.stop()
