"""Signaling v1 (`/rtc/v1`, one peer connection): the Python SDK in its
default mode, mixed with v0 clients, and hostile join requests."""

import asyncio
import base64
import gzip

import aiohttp
from livekit import rtc
from livekit.protocol import rtc as sig

from lk import V0, connect, publish_av, receives_av, recv, token, wait_for

V1 = rtc.RoomOptions(auto_subscribe=True)


def joined_single(node, identity: str) -> bool:
    return any(
        "participant joined" in l and f"participant={identity}" in l and "single_pc=true" in l
        for l in node.lines
    )


async def data_between(sender: rtc.Room, receiver: rtc.Room, payload: bytes):
    got = asyncio.Event()

    def on_data(packet: rtc.DataPacket):
        if packet.data == payload:
            got.set()

    receiver.on("data_received", on_data)
    for _ in range(20):
        await sender.local_participant.publish_data(payload, reliable=True)
        try:
            await asyncio.wait_for(got.wait(), 0.5)
            return
        except asyncio.TimeoutError:
            pass
    raise AssertionError(f"{payload!r} never arrived")


async def test_default_mode_clients_join_on_v1_and_exchange_media_and_data(node):
    assert V1.single_peer_connection is None  # the SDK's own default
    a = await connect(node, "v1-a", "v1room", options=V1)
    b = await connect(node, "v1-b", "v1room", options=V1)
    try:
        # Both joined with one peer connection, with no fallback to /rtc.
        assert joined_single(node, "v1-a") and joined_single(node, "v1-b"), "".join(node.lines[-30:])
        tone, frames = await publish_av(a)
        await receives_av(b, "v1-a")
        tone2, frames2 = await publish_av(b)
        await receives_av(a, "v1-b")
        await data_between(a, b, b"to b over v1")
        await data_between(b, a, b"to a over v1")
        for t in (tone, frames, tone2, frames2):
            t.stop()
    finally:
        await a.disconnect()
        await b.disconnect()


async def test_v0_and_v1_clients_in_one_room_see_and_hear_each_other(node):
    old = await connect(node, "v0-client", "mixed", options=V0)
    new = await connect(node, "v1-client", "mixed", options=V1)
    try:
        assert joined_single(node, "v1-client")
        assert not joined_single(node, "v0-client")
        t1 = await publish_av(old)
        t2 = await publish_av(new)
        await receives_av(new, "v0-client")
        await receives_av(old, "v1-client")
        await data_between(old, new, b"v0 to v1")
        await data_between(new, old, b"v1 to v0")
        # A late v1 joiner gets both publishers' four tracks.
        late = await connect(node, "v1-late", "mixed", options=V1)
        try:
            await receives_av(late, "v0-client")
            await receives_av(late, "v1-client")
        finally:
            await late.disconnect()
        for t in (*t1, *t2):
            t.stop()
    finally:
        await old.disconnect()
        await new.disconnect()


async def test_more_tracks_than_first_offered_sections(node):
    # Four publishers: eight tracks for a viewer whose first offer had three
    # audio and three video sections. The node asks for more, the client
    # offers them, and every track arrives.
    pubs = [await connect(node, f"p{i}", "many", options=V1) for i in range(4)]
    sources = [await publish_av(p) for p in pubs]
    viewer = await connect(node, "many-viewer", "many", options=V1)
    try:
        for i in range(4):
            await receives_av(viewer, f"p{i}")
        asked = [l for l in node.lines if "more media sections" in l]
        assert asked, "the node never asked for more sections"
    finally:
        for src in sources:
            for t in src:
                t.stop()
        await viewer.disconnect()
        for p in pubs:
            await p.disconnect()


async def test_unpublished_track_leaves_and_a_new_one_arrives(node):
    a = await connect(node, "pub", "churn", options=V1)
    b = await connect(node, "sub", "churn", options=V1)
    try:
        # Four rounds through the three audio and three video sections of
        # the viewer's first offer: freed sections are taken again.
        for _ in range(4):
            tone, frames = await publish_av(a)
            await receives_av(b, "pub")
            sids = [p.sid for p in a.local_participant.track_publications.values()]
            for sid in sids:
                await a.local_participant.unpublish_track(sid)
            await wait_for(lambda: not b.remote_participants["pub"].track_publications, 10, "unpublish")
            tone.stop()
            frames.stop()
        assert not any("more media sections" in l for l in node.lines), "".join(node.lines[-20:])
    finally:
        await a.disconnect()
        await b.disconnect()


async def test_v1_client_resumes_after_a_signal_drop(node):
    a = await connect(node, "resumer", "resume-v1", options=V1)
    b = await connect(node, "peer", "resume-v1", options=V1)
    try:
        ta = await publish_av(a)
        await receives_av(b, "resumer")
        reconnected = asyncio.Event()
        a.on("reconnected", lambda: reconnected.set())
        await a.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT)
        await asyncio.wait_for(reconnected.wait(), 20)
        assert any("signal resumed" in l and "resumer" in l for l in node.lines)
        # Same session: media and data go on, and a new publisher arrives.
        await data_between(a, b, b"after resume")
        tb = await publish_av(b)
        await receives_av(a, "peer")
        for t in (*ta, *tb):
            t.stop()
    finally:
        await a.disconnect()
        await b.disconnect()


def wrapped(req: sig.JoinRequest, compress=False) -> str:
    raw = req.SerializeToString()
    w = sig.WrappedJoinRequest(
        compression=sig.WrappedJoinRequest.GZIP if compress else sig.WrappedJoinRequest.NONE,
        join_request=gzip.compress(raw) if compress else raw,
    )
    return base64.urlsafe_b64encode(w.SerializeToString()).decode()


async def test_raw_v1_join_plain_and_gzip(node):
    req = sig.JoinRequest(connection_settings=sig.ConnectionSettings(auto_subscribe=True))
    async with aiohttp.ClientSession() as s:
        for compress in (False, True):
            ident = f"raw-{compress}"
            params = {"access_token": token(ident, "rawv1"), "join_request": wrapped(req, compress)}
            async with s.get(f"{node.http_url}/rtc/v1/validate", params=params) as r:
                assert r.status == 200, await r.text()
            ws = await s.ws_connect(f"{node.url}/rtc/v1", params=params)
            first = await recv(ws)
            assert first.WhichOneof("message") == "join"
            # One connection, offered by the client: the server offers nothing.
            assert not first.join.subscriber_primary
            await ws.close()


async def test_malformed_join_requests_get_clear_errors(node):
    tok = token("bad", "badv1")
    cases = {
        "missing": {},
        "not base64": {"join_request": "%%%not-base64%%%"},
        "not protobuf": {"join_request": base64.urlsafe_b64encode(b"\xff\xff\xff\xff").decode()},
        "bad gzip": {
            "join_request": base64.urlsafe_b64encode(
                sig.WrappedJoinRequest(compression=sig.WrappedJoinRequest.GZIP,
                                       join_request=b"not gzip").SerializeToString()
            ).decode()
        },
        "gzip bomb": {
            "join_request": base64.urlsafe_b64encode(
                sig.WrappedJoinRequest(compression=sig.WrappedJoinRequest.GZIP,
                                       join_request=gzip.compress(b"\x00" * (8 << 20))).SerializeToString()
            ).decode()
        },
    }
    async with aiohttp.ClientSession() as s:
        for what, extra in cases.items():
            for path in ("/rtc/v1/validate", "/rtc/v1"):
                headers = {"Connection": "Upgrade", "Upgrade": "websocket",
                           "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
                async with s.get(f"{node.http_url}{path}", params={"access_token": tok, **extra},
                                 headers=headers) as r:
                    # Plain text, as on /rtc (livekit-client reads the text).
                    body = await r.text()
                    assert r.status == 400, (what, path, r.status, body)
                    assert "join_request" in body, body
        # A bad token is still a 401, join request or not.
        async with s.get(f"{node.http_url}/rtc/v1/validate",
                         params={"access_token": "nope", "join_request": wrapped(sig.JoinRequest())}) as r:
            assert r.status == 401
    # The node is still serving.
    room = await connect(node, "after", "badv1", options=V1)
    await room.disconnect()
