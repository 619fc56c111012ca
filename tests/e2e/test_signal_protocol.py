"""Signal protocol details checked with a raw WebSocket and LiveKit's own
protobuf definitions (the livekit-protocol package)."""

import asyncio
import signal as os_signal
from datetime import timedelta

import aiohttp
from livekit.protocol import models, rtc as sig

from lk import recv, token


async def recv_until(ws, kind: str, timeout=10.0) -> sig.SignalResponse:
    deadline = asyncio.get_event_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_event_loop().time()
        r = await recv(ws, max(left, 0.01))
        if r.WhichOneof("message") == kind:
            return r


async def send(ws, req: sig.SignalRequest):
    await ws.send_bytes(req.SerializeToString())


async def test_join_response_ping_and_resume(node):
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{node.url}/rtc", params={"access_token": token("raw", "proto"), "protocol": "16", "auto_subscribe": "1"})
        first = await recv(ws)
        assert first.WhichOneof("message") == "join"
        j = first.join
        assert j.room.sid.startswith("RM_") and j.room.name == "proto"
        assert j.participant.sid.startswith("PA_") and j.participant.identity == "raw"
        assert j.participant.permission.can_publish and j.participant.permission.can_subscribe
        assert j.ping_interval == 5 and j.ping_timeout == 15
        assert j.subscriber_primary
        assert j.server_info.protocol >= 12
        # The server offers the subscriber connection with LiveKit's data channels.
        offer = await recv_until(ws, "offer")
        assert "webrtc-datachannel" in offer.offer.sdp
        await send(ws, sig.SignalRequest(ping_req=sig.Ping(timestamp=1234, rtt=5)))
        pong = await recv_until(ws, "pong_resp")
        assert pong.pong_resp.last_ping_timestamp == 1234 and pong.pong_resp.timestamp > 0
        await send(ws, sig.SignalRequest(ping=99))
        assert (await recv_until(ws, "pong")).pong > 0

        # A second participant sees the first.
        other = await s.ws_connect(f"{node.url}/rtc", params={"access_token": token("watcher", "proto")})
        oj = (await recv(other)).join
        assert [p.identity for p in oj.other_participants] == ["raw"]

        # Drop the signal socket without a leave, then resume with the same sid.
        sid = j.participant.sid
        await ws.close()
        await asyncio.sleep(0.5)
        ws2 = await s.ws_connect(f"{node.url}/rtc", params={"access_token": token("raw", "proto"), "reconnect": "1", "sid": sid})
        r = await recv(ws2)
        assert r.WhichOneof("message") == "reconnect"
        upd = await recv_until(ws2, "update")
        assert any(p.identity == "watcher" for p in upd.update.participants)
        # ICE restart: a fresh subscriber offer follows.
        await recv_until(ws2, "offer")
        # The watcher never saw raw leave.
        try:
            while True:
                u = await recv(other, 0.5)
                if u.WhichOneof("message") == "update":
                    for p in u.update.participants:
                        assert not (p.identity == "raw" and p.state == models.ParticipantInfo.DISCONNECTED)
        except asyncio.TimeoutError:
            pass

        # Resuming an unknown session is answered with leave/RECONNECT.
        ws3 = await s.ws_connect(f"{node.url}/rtc", params={"access_token": token("ghost", "proto"), "reconnect": "1", "sid": "PA_unknown"})
        r = await recv(ws3)
        assert r.WhichOneof("message") == "leave"
        assert r.leave.action == sig.LeaveRequest.RECONNECT
        assert r.leave.reason == models.STATE_MISMATCH

        # A client leave is reported to others as DISCONNECTED.
        await send(ws2, sig.SignalRequest(leave=sig.LeaveRequest(reason=models.CLIENT_INITIATED)))
        while True:
            u = await recv_until(other, "update")
            if any(p.identity == "raw" and p.state == models.ParticipantInfo.DISCONNECTED for p in u.update.participants):
                break
        await other.close()


async def test_a_join_response_larger_than_a_frame_arrives_whole(node):
    """Messages over 4 KiB go out in fragments (so no connection keeps a write
    buffer the size of its largest message); the client gets them whole."""
    async with aiohttp.ClientSession() as s:
        socks = []
        try:
            for i in range(30):
                name = f"guest {i} " + "x" * 400
                ws = await s.ws_connect(f"{node.url}/rtc", params={"access_token": token(f"g{i}", "big", name=name)})
                socks.append(ws)
                j = (await recv(ws)).join
                assert len(j.other_participants) == i
            assert j.ByteSize() > 12_000
            assert sorted(p.identity for p in j.other_participants) == sorted(f"g{i}" for i in range(29))
            assert all(p.name.endswith("x" * 400) for p in j.other_participants)
            # The socket goes on after the fragmented message.
            await send(socks[-1], sig.SignalRequest(ping_req=sig.Ping(timestamp=42, rtt=0)))
            assert (await recv_until(socks[-1], "pong_resp")).pong_resp.last_ping_timestamp == 42
        finally:
            for ws in socks:
                await ws.close()


async def test_json_text_frames(node):
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{node.url}/rtc", params={"access_token": token("jsonc", "json")})
        await recv(ws)  # the join, before the client chose text
        await ws.send_str('{"pingReq": {"timestamp": "77", "rtt": "0"}}')
        while True:
            msg = await asyncio.wait_for(ws.receive(), 10)
            if msg.type == aiohttp.WSMsgType.TEXT and "pongResp" in msg.data:
                assert '"lastPingTimestamp":"77"' in msg.data.replace(" ", "")
                break
        await ws.close()


async def test_garbage_frames_do_not_break_the_session(node):
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{node.url}/rtc", params={"access_token": token("fuzz", "fuzz")})
        await recv(ws)
        await ws.send_bytes(b"\xff\x00\x13garbage")
        await send(ws, sig.SignalRequest(offer=sig.SessionDescription(type="offer", sdp="v=0 nonsense", id=3)))
        await send(ws, sig.SignalRequest(trickle=sig.TrickleRequest(candidateInit="{bad", target=sig.PUBLISHER)))
        await send(ws, sig.SignalRequest(ping_req=sig.Ping(timestamp=5)))
        assert (await recv_until(ws, "pong_resp")).pong_resp.last_ping_timestamp == 5
        # Malformed JSON is ignored too; the session keeps answering (in JSON now).
        await ws.send_str("{not json")
        await ws.send_str('{"pingReq": {"timestamp": "6"}}')
        while True:
            msg = await asyncio.wait_for(ws.receive(), 10)
            if msg.type == aiohttp.WSMsgType.TEXT and "pongResp" in msg.data:
                break
        await ws.close()


async def test_sigterm_sends_server_shutdown(node):
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{node.url}/rtc", params={"access_token": token("stay", "shutdown")})
        await recv(ws)
        node.proc.send_signal(os_signal.SIGTERM)
        r = await recv_until(ws, "leave", 10)
        assert r.leave.reason == models.SERVER_SHUTDOWN
        await asyncio.get_event_loop().run_in_executor(None, node.proc.wait, 10)
        assert node.proc.returncode == 0


async def test_refresh_token_outlives_the_join_token(node):
    """LiveKit sends `refresh_token` at join (and every 5 minutes): the client
    resumes with it once the token it joined with has expired. The join token
    here expired 58 s ago, inside the node's 60 s leeway."""
    from livekit import api
    from conftest import API_KEY, API_SECRET

    joined_with = token("refresher", "refresh", ttl=timedelta(seconds=-58), name="Ref")
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{node.url}/rtc", params={"access_token": joined_with, "protocol": "16"})
        j = (await recv(ws)).join
        fresh = (await recv_until(ws, "refresh_token")).refresh_token
        # LiveKit's own verifier accepts it: same key, identity, name and room grant.
        claims = api.TokenVerifier(API_KEY, API_SECRET).verify(fresh)
        assert claims.identity == "refresher" and claims.name == "Ref"
        assert claims.video.room == "refresh" and claims.video.room_join
        await ws.close()
        await asyncio.sleep(3)
        # The join token is now past the leeway: a resume with it is refused...
        async with s.get(f"{node.url}/rtc/validate", params={"access_token": joined_with}) as r:
            assert r.status == 401, await r.text()
        # ...and the refreshed one resumes the same session.
        ws2 = await s.ws_connect(f"{node.url}/rtc", params={"access_token": fresh, "reconnect": "1",
                                                            "sid": j.participant.sid})
        r = await recv(ws2)
        assert r.WhichOneof("message") == "reconnect"
        # A resumed session gets a fresh token too.
        again = (await recv_until(ws2, "refresh_token")).refresh_token
        assert api.TokenVerifier(API_KEY, API_SECRET).verify(again).identity == "refresher"
        await ws2.close()
