"""Two `nodo serve` processes sharing rooms through a real Debian `redis-server`:
official LiveKit SDK clients on different nodes meet in one room, the server API
acts on either node's rooms from either node, a killed node's rooms move to the
survivor, and a lost Redis shows on /readyz without stopping calls."""

import asyncio
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import aiohttp
import pytest
from livekit import api, rtc

from conftest import API_KEY, API_SECRET, nodo_binary, start_node
from lk import Tone, connect, first_frames, publish_av, receives_av, remote_track, token, wait_for
from test_metrics import scrape_until
from tlsutil import free_port


class Redis:
    def __init__(self, directory, port=None):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path / "redis")
    yield r
    r.stop()


def cluster_node(tmp_path, redis, node_id, env=None):
    port = free_port()
    return start_node(tmp_path / node_id, "--redis-url", redis.url, "--node-id", node_id,
                      "--node-url", f"http://127.0.0.1:{port}", http_port=port, env=env)


@pytest.fixture
def two(tmp_path, redis):
    a = cluster_node(tmp_path, redis, "node-a")
    b = cluster_node(tmp_path, redis, "node-b")
    yield a, b
    for n in (a, b):
        n.stop()


def lkapi(node):
    return api.LiveKitAPI(url=node.http_url, api_key=API_KEY, api_secret=API_SECRET)


def readyz(node):
    try:
        with urllib.request.urlopen(node.http_url + "/readyz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


async def rooms_via(node):
    lk = lkapi(node)
    try:
        return {r.name: r.num_participants for r in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms}
    finally:
        await lk.aclose()


async def participants_via(node, room):
    lk = lkapi(node)
    try:
        parts = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
        return sorted(p.identity for p in parts.participants)
    finally:
        await lk.aclose()


def test_start_is_refused_without_redis(tmp_path):
    port = free_port()  # nothing listens there
    r = subprocess.run(
        [str(nodo_binary()), "serve", "--dev", "--http-port", "0", "--data-dir", str(tmp_path / "d"),
         "--redis-url", f"redis://127.0.0.1:{port}", "--node-url", "http://127.0.0.1:1"],
        capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "cannot reach Redis" in r.stderr, r.stderr
    assert "nodo listening" not in r.stdout


@pytest.mark.parametrize("extra", [[], ["--node-url", "https://10.0.0.2"], ["--node-url", "10.0.0.2:7880"]])
def test_a_plain_http_node_url_is_required(tmp_path, redis, extra):
    r = subprocess.run(
        [str(nodo_binary()), "serve", "--dev", "--http-port", "0", "--data-dir", str(tmp_path / "d"),
         "--redis-url", redis.url, *extra],
        capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "node_url" in r.stderr, r.stderr


def redis_cli(redis, *args):
    return subprocess.run(["redis-cli", "-p", str(redis.port), "--raw", *args],
                          capture_output=True, text=True, check=True).stdout


async def test_callers_without_the_grant_leave_no_trace_in_redis(two, redis):
    a, b = two
    # A participant's join token may not create rooms through the API.
    lk = api.LiveKitAPI(url=b.http_url, api_key=API_KEY, api_secret=API_SECRET)
    joiner = token("mallory", "lobby")
    try:
        for name in ["evil", "x" * 5000]:
            req = api.CreateRoomRequest(name=name)
            with pytest.raises(api.TwirpError) as e:
                await lk.room._client.request("RoomService", "CreateRoom", req,
                                              {"Authorization": f"Bearer {joiner}"}, api.Room)
            assert e.value.code in ("unauthenticated", "invalid_argument"), e.value
        assert redis_cli(redis, "KEYS", "nodo:room:*").strip() == ""
    finally:
        await lk.aclose()


async def test_a_node_stopped_cleanly_hands_its_rooms_on_at_once(two, redis):
    a, b = two
    alice = await connect(a, "alice", "handover")
    assert redis_cli(redis, "GET", "nodo:room:handover").strip() == "node-a"
    assert a.stop(signal.SIGTERM) == 0
    # SIGTERM left the registry and freed the pin before the node went away
    # (Alice's SDK, told the server is going away, may already have
    # rejoined through A and been handed to B).
    assert redis_cli(redis, "GET", "nodo:room:handover").strip() in ("", "node-b")
    assert redis_cli(redis, "EXISTS", "nodo:node:node-a").strip() == "0"
    start = time.monotonic()
    bob = await connect(b, "bob", "handover")
    assert time.monotonic() - start < 5
    try:
        assert "bob" in (await participants_via(b, "handover"))
        assert redis_cli(redis, "GET", "nodo:room:handover").strip() == "node-b"
    finally:
        await bob.disconnect()
        await alice.disconnect()


def test_a_live_node_id_is_not_taken_twice(tmp_path, redis):
    a = cluster_node(tmp_path, redis, "same")
    try:
        with pytest.raises(RuntimeError, match="in use by a live node"):
            cluster_node(tmp_path / "second", redis, "same")
    finally:
        a.stop()


async def test_clients_on_two_nodes_meet_in_one_room(two):
    a, b = two
    await wait_for(lambda: any("nodo cluster node=node-b" in l and "node-a=" in l for l in b.lines),
                   10, "node-b's cluster line naming node-a")
    alice = await connect(a, "alice", "meet")
    tone, frames = await publish_av(alice)
    bob = await connect(b, "bob", "meet")
    try:
        # Both ended up in the same room, served once.
        await wait_for(lambda: "alice" in bob.remote_participants, 10, "bob sees alice")
        await wait_for(lambda: "bob" in alice.remote_participants, 10, "alice sees bob")
        await receives_av(bob, "alice")

        # Bob's audio and data reach Alice.
        tone_b = Tone()
        tone_b.start()
        await bob.local_participant.publish_track(tone_b.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        audio_b = await remote_track(alice, "bob", rtc.TrackKind.KIND_AUDIO)
        fb = await first_frames(audio_b, rtc.TrackKind.KIND_AUDIO, count=20)
        assert max(abs(s) for s in fb.data) > 1000
        got = []
        alice.on("data_received", lambda p: got.append(p.data))
        for _ in range(100):
            await bob.local_participant.publish_data(b"across nodes", reliable=True)
            await asyncio.sleep(0.1)
            if got:
                break
        assert b"across nodes" in got
        tone_b.stop()

        # B's /metrics counts the hand-over and sees both nodes.
        m = await scrape_until(b, lambda m: m.get("nodo_cluster_nodes") == 2, "B to see two nodes")
        assert m["nodo_cluster_redis_up"] == 1
        assert m["nodo_cluster_handovers_total|kind=signal|outcome=ok"] >= 1

        # Either node's API sees the one room with both participants.
        assert await rooms_via(a) == {"meet": 2}
        assert await rooms_via(b) == {"meet": 2}
        for n in (a, b):
            lk = lkapi(n)
            try:
                parts = await lk.room.list_participants(api.ListParticipantsRequest(room="meet"))
                assert sorted(p.identity for p in parts.participants) == ["alice", "bob"]
            finally:
                await lk.aclose()
    finally:
        tone.stop()
        frames.stop()
        await bob.disconnect()
        await alice.disconnect()


async def test_the_server_api_acts_on_rooms_of_the_other_node(two):
    a, b = two
    la, lb = lkapi(a), lkapi(b)
    try:
        # Created through B, placed on the less loaded node; visible and deletable through A.
        created = await lb.room.create_room(api.CreateRoomRequest(name="svc-x", metadata="m1"))
        assert created.name == "svc-x" and created.metadata == "m1"
        again = await la.room.create_room(api.CreateRoomRequest(name="svc-x"))
        assert again.sid == created.sid, "the second create reached another copy of the room"
        await la.room.update_room_metadata(api.UpdateRoomMetadataRequest(room="svc-x", metadata="m2"))
        listed = (await lb.room.list_rooms(api.ListRoomsRequest(names=["svc-x"]))).rooms
        assert [(r.name, r.metadata) for r in listed] == [("svc-x", "m2")]
        await la.room.delete_room(api.DeleteRoomRequest(room="svc-x"))
        assert "svc-x" not in await rooms_via(b)
        with pytest.raises(api.TwirpError) as e:
            await lb.room.list_participants(api.ListParticipantsRequest(room="svc-x"))
        assert e.value.code == "not_found"
    finally:
        await la.aclose()
        await lb.aclose()


async def test_a_killed_nodes_rooms_move_to_the_survivor(two, redis):
    a, b = two
    # Joined through A first: A holds the room (equal load, the deciding node wins).
    alice = await connect(a, "alice", "doomed")
    bob = await connect(b, "bob", "doomed")
    await wait_for(lambda: "alice" in bob.remote_participants, 10, "bob sees alice")
    a.stop(signal.SIGKILL)
    await alice.disconnect()
    await bob.disconnect()
    # Rejoining through the survivor lands in a fresh room there once A's entry lapses.
    start = time.monotonic()
    carol = None
    while time.monotonic() - start < 30:
        try:
            carol = await connect(b, "carol", "doomed")
            break
        except Exception:
            await asyncio.sleep(0.5)
    assert carol is not None, "no rejoin through the survivor within 30 s"
    try:
        assert await rooms_via(b) == {"doomed": 1}
        assert readyz(b) == 200
    finally:
        await carol.disconnect()


async def test_losing_redis_fails_readyz_and_calls_go_on(tmp_path, redis):
    b = cluster_node(tmp_path, redis, "node-b")
    try:
        alice = await connect(b, "alice", "steady")
        tone, frames = await publish_av(alice)
        bob = await connect(b, "bob", "steady")
        try:
            await receives_av(bob, "alice")
            assert readyz(b) == 200
            redis.stop()
            await wait_for(lambda: readyz(b) == 503, 15, "/readyz to fail without Redis")
            # The call on the node keeps its media.
            await receives_av(bob, "alice")
            # A room the node cannot place is refused with a reason, not hung.
            with pytest.raises(Exception):
                await connect(b, "carol", "new-room")
            redis.start()
            await wait_for(lambda: readyz(b) == 200, 20, "/readyz to recover with Redis")
        finally:
            tone.stop()
            frames.stop()
            await bob.disconnect()
            await alice.disconnect()
    finally:
        b.stop()


async def test_hundreds_of_rooms_stay_pinned_past_the_pin_lifetime(tmp_path, redis):
    a = cluster_node(tmp_path, redis, "node-a")
    lk = lkapi(a)
    try:
        names = [f"many-{i}" for i in range(600)]
        await asyncio.gather(*(lk.room.create_room(api.CreateRoomRequest(name=n, empty_timeout=300)) for n in names))

        def owners():
            out = subprocess.run(["redis-cli", "-p", str(redis.port), "--raw", "MGET",
                                  *(f"nodo:room:{n}" for n in names)], capture_output=True, text=True, check=True)
            return out.stdout.split("\n")[:len(names)]

        assert set(owners()) == {"node-a"}
        # A pin lives 15 s unless renewed: the heartbeat renews all of them (in chunks).
        await asyncio.sleep(17)
        assert set(owners()) == {"node-a"}
        ttl = subprocess.run(["redis-cli", "-p", str(redis.port), "PTTL", "nodo:room:many-599"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert 10_000 < int(ttl) <= 15_000, ttl
        # Closing rooms frees their pins.
        await asyncio.gather(*(lk.room.delete_room(api.DeleteRoomRequest(room=n)) for n in names[:100]))
        await wait_for(lambda: owners()[:100] == [""] * 100, 10, "pins of deleted rooms released")
        assert set(owners()[100:]) == {"node-a"}
    finally:
        await lk.aclose()
        a.stop()


async def test_without_auto_create_a_room_open_on_the_other_node_is_joinable(tmp_path, redis):
    env = {"NODO_ROOM__AUTO_CREATE": "false"}
    a = cluster_node(tmp_path, redis, "node-a", env)
    b = cluster_node(tmp_path, redis, "node-b", env)
    la = lkapi(a)
    try:
        await la.room.create_room(api.CreateRoomRequest(name="made"))
        async with aiohttp.ClientSession() as s:
            for room, status in [("made", 200), ("missing", 404)]:
                url = f"{b.http_url}/rtc/validate?access_token={token('vic', room)}"
                async with s.get(url) as r:
                    assert r.status == status, (room, await r.text())
        # A join token without roomCreate, through B, lands in A's room.
        vic = await connect(b, "vic", "made")
        try:
            assert await participants_via(a, "made") == ["vic"]
        finally:
            await vic.disconnect()
        with pytest.raises(Exception):
            await connect(b, "vic", "missing")
        assert redis_cli(redis, "GET", "nodo:room:missing").strip() == ""
    finally:
        await la.aclose()
        a.stop()
        b.stop()


async def test_a_signal_drop_resumes_through_the_other_node(two):
    """The raw signal protocol through a hand-over: join through B (room on A),
    drop the socket, resume through A itself, then again through B; pings pass."""
    from livekit.protocol import rtc as sig
    from lk import recv
    from test_signal_protocol import recv_until, send

    a, b = two
    async with aiohttp.ClientSession() as s:
        owner = await s.ws_connect(f"{a.url}/rtc", params={"access_token": token("host", "resume")})
        assert (await recv(owner)).WhichOneof("message") == "join"
        ws = await s.ws_connect(f"{b.url}/rtc", params={"access_token": token("raw", "resume"), "protocol": "16"})
        j = (await recv(ws)).join
        assert [p.identity for p in j.other_participants] == ["host"]
        await send(ws, sig.SignalRequest(ping_req=sig.Ping(timestamp=42, rtt=1)))
        assert (await recv_until(ws, "pong_resp")).pong_resp.last_ping_timestamp == 42
        sid = j.participant.sid
        for via in (a, b):
            await ws.close()
            await asyncio.sleep(0.3)
            ws = await s.ws_connect(f"{via.url}/rtc", params={"access_token": token("raw", "resume"),
                                                              "reconnect": "1", "sid": sid})
            assert (await recv(ws)).WhichOneof("message") == "reconnect", via.http
            await recv_until(ws, "offer")
        # A clean leave through the hand-over reaches the owner.
        await send(ws, sig.SignalRequest(leave=sig.LeaveRequest()))
        await wait_for_async(lambda: participants_via(a, "resume"), ["host"], 10)
        await ws.close()
        await owner.close()


async def wait_for_async(get, want, timeout):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = await get()
        if got == want:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"wanted {want}, last {got}")
