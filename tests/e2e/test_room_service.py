"""Twirp RoomService with livekit-api (protobuf) while a Python SDK client is connected."""

import asyncio

import aiohttp
from livekit import api, rtc

from conftest import API_KEY, API_SECRET
from lk import Tone, connect, wait_for


async def test_room_service_over_protobuf(node):
    lk = api.LiveKitAPI(url=node.http_url, api_key=API_KEY, api_secret=API_SECRET)
    try:
        room = await lk.room.create_room(api.CreateRoomRequest(name="svc", metadata="m0", empty_timeout=60, max_participants=10))
        assert room.name == "svc" and room.sid.startswith("RM_") and room.metadata == "m0"
        assert room.max_participants == 10
        listed = await lk.room.list_rooms(api.ListRoomsRequest())
        assert [r.name for r in listed.rooms] == ["svc"]

        carol = await connect(node, "carol", "svc")
        watcher = await connect(node, "watcher", "svc")
        tone = Tone()
        tone.start()
        pub = await carol.local_participant.publish_track(tone.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        parts = await lk.room.list_participants(api.ListParticipantsRequest(room="svc"))
        assert sorted(p.identity for p in parts.participants) == ["carol", "watcher"]
        p = await lk.room.get_participant(api.RoomParticipantIdentity(room="svc", identity="carol"))
        assert p.sid == carol.local_participant.sid

        # Mute: the watcher sees it muted.
        await wait_for(lambda: "carol" in watcher.remote_participants and watcher.remote_participants["carol"].track_publications, 10, "carol's track at the watcher")
        muted = asyncio.Event()
        watcher.on("track_muted", lambda part, publication: part.identity == "carol" and muted.set())
        res = await lk.room.mute_published_track(api.MuteRoomTrackRequest(room="svc", identity="carol", track_sid=pub.sid, muted=True))
        assert res.track.muted
        await asyncio.wait_for(muted.wait(), 10)

        # Metadata reaches the participant itself and the others.
        await lk.room.update_participant(api.UpdateParticipantRequest(room="svc", identity="carol", metadata="vip", name="Carol C."))
        await wait_for(lambda: carol.local_participant.metadata == "vip", 10, "carol's own metadata")
        await wait_for(lambda: watcher.remote_participants["carol"].name == "Carol C.", 10, "name at the watcher")

        # Data from the server to one participant.
        got = []
        carol.on("data_received", lambda d: got.append((d.data, d.topic)))
        for _ in range(20):
            await lk.room.send_data(api.SendDataRequest(room="svc", data=b"from server", kind=api.DataPacket.Kind.RELIABLE, destination_identities=["carol"], topic="srv"))
            await asyncio.sleep(0.1)
            if got:
                break
        assert (b"from server", "srv") in got

        # Room metadata: clients get room_update.
        await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room="svc", metadata="m1"))
        await wait_for(lambda: carol.metadata == "m1", 10, "room metadata at the client")

        # Revoking canPublish unpublishes carol's track.
        await lk.room.update_participant(api.UpdateParticipantRequest(room="svc", identity="carol", permission=api.ParticipantPermission(can_subscribe=True, can_publish=False, can_publish_data=True)))
        await wait_for(lambda: not watcher.remote_participants["carol"].track_publications, 10, "carol's track unpublished")

        # Remove: carol is disconnected.
        gone = asyncio.Event()
        carol.on("disconnected", lambda reason: gone.set())
        await lk.room.remove_participant(api.RoomParticipantIdentity(room="svc", identity="carol"))
        await asyncio.wait_for(gone.wait(), 10)
        tone.stop()

        # Errors: unknown participant, unknown room.
        try:
            await lk.room.get_participant(api.RoomParticipantIdentity(room="svc", identity="nobody"))
            raise AssertionError("expected not_found")
        except api.TwirpError as e:
            assert e.code == "not_found"

        # Delete: the watcher is disconnected with ROOM_DELETED and the room is gone.
        left = asyncio.Event()
        watcher.on("disconnected", lambda reason: left.set())
        await lk.room.delete_room(api.DeleteRoomRequest(room="svc"))
        await asyncio.wait_for(left.wait(), 10)
        listed = await lk.room.list_rooms(api.ListRoomsRequest())
        assert "svc" not in [r.name for r in listed.rooms]
    finally:
        await lk.aclose()


async def test_room_service_grants(node):
    async def call(method, token, body):
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{node.http_url}/twirp/livekit.RoomService/{method}", json=body,
                              headers={"Authorization": f"Bearer {token}"} if token else {}) as r:
                return r.status, await r.json()

    plain = api.AccessToken(API_KEY, API_SECRET).with_identity("x").with_grants(api.VideoGrants(room_join=True, room="r")).to_jwt()
    status, body = await call("ListRooms", plain, {})
    assert status == 401 and body["code"] == "unauthenticated"
    status, body = await call("CreateRoom", plain, {"name": "r"})
    assert (status, body["code"]) == (401, "unauthenticated")
    other_room = api.AccessToken(API_KEY, API_SECRET).with_grants(api.VideoGrants(room_admin=True, room="other")).to_jwt()
    status, body = await call("ListParticipants", other_room, {"room": "r"})
    assert (status, body["code"]) == (401, "unauthenticated")
    status, body = await call("ListRooms", None, {})
    assert (status, body["code"]) == (401, "unauthenticated")
    lister = api.AccessToken(API_KEY, API_SECRET).with_grants(api.VideoGrants(room_list=True)).to_jwt()
    status, body = await call("NoSuchMethod", lister, {})
    assert (status, body["code"]) == (404, "bad_route")
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{node.http_url}/twirp/livekit.RoomService/ListRooms", data=b"{", headers={"Authorization": f"Bearer {lister}", "Content-Type": "application/json"}) as r:
            assert r.status == 400 and (await r.json())["code"] == "malformed"


async def test_admission_limits(tmp_path):
    from conftest import start_node
    from lk import token

    node = start_node(tmp_path, env={"NODO_LIMIT__MAX_ROOMS": "1", "NODO_LIMIT__MAX_TRACKS": "1"})
    lk = api.LiveKitAPI(url=node.http_url, api_key=API_KEY, api_secret=API_SECRET)
    try:
        await lk.room.create_room(api.CreateRoomRequest(name="only"))
        try:
            await lk.room.create_room(api.CreateRoomRequest(name="second"))
            raise AssertionError("a second room was created past max_rooms")
        except api.TwirpError as e:
            assert e.code == "resource_exhausted"
        # Joining a new room is refused with 503, as LiveKit does at node limits.
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{node.http_url}/rtc", params={"access_token": token("x", "second")},
                             headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
                assert r.status == 503
                assert "limit" in await r.text()
        # One track per node: the second publish is refused.
        a = await connect(node, "a", "only")
        t1, t2 = Tone(), Tone()
        t1.start()
        t2.start()
        await a.local_participant.publish_track(t1.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        try:
            await asyncio.wait_for(a.local_participant.publish_track(t2.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO)), 15)
            raise AssertionError("a second track was published past max_tracks")
        except (asyncio.TimeoutError, Exception) as e:
            assert not isinstance(e, AssertionError)
        t1.stop()
        t2.stop()
        await a.disconnect()
    finally:
        await lk.aclose()
        node.stop()
