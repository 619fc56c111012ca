"""Chat across two nodes: Debian's `postgresql` and `redis-server`, two `nodo
serve` processes sharing both (or the database alone: then the nodes find
each other and share chat through PostgreSQL, LISTEN/NOTIFY), and socket.io
clients (python-socketio) connected to different nodes. Messages, acks,
receipts, typing, presence and rings cross nodes; a killed node leaves chat
working on the other, with no acknowledged message lost."""

import asyncio
import json
import signal
import time

import aiohttp
import pytest
import socketio
from aiohttp import web

from conftest import start_node
from test_cluster import Redis, lkapi
from test_hostile_durability import history_ids, register
from test_postgres import UNLIMITED, Postgres, pg  # noqa: F401  (fixture)
from test_web_push import Browser, unb64u
from tlsutil import free_port


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path / "redis")
    yield r
    r.stop()


def node(tmp_path, redis, pg, node_id, *extra):
    """A node on `pg`, and on `redis` unless it is None (the database alone)."""
    port = free_port()
    cluster = [] if redis is None else ["--redis-url", redis.url, "--node-url", f"http://127.0.0.1:{port}"]
    return start_node(tmp_path / node_id, *cluster, "--node-id", node_id, "--database-url", pg.url, *extra,
                      http_port=port, env={**UNLIMITED, "NODO_PUSH__ALLOW_INSECURE_ENDPOINTS": "true",
                                           "NODO_WEBHOOK__APP_EVENTS": "true",
                                           "NODO_CALLS__LOST_ROOM_CHECK_SECS": "1"})


@pytest.fixture(params=["redis", "postgres-only"])
def two(request, tmp_path, pg):  # noqa: F811
    redis = request.getfixturevalue("redis") if request.param == "redis" else None
    a = node(tmp_path, redis, pg, "chat-a")
    b = node(tmp_path, redis, pg, "chat-b")
    yield a, b
    for n in (a, b):
        n.stop()


class Client:
    """A socket.io client that records every event it gets."""

    def __init__(self, user):
        self.user = user
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, object]] = []

        @self.sio.on("*")
        async def any_event(event, data=None):
            self.events.append((event, data))
            return True  # the ack of receiveMessage confirms it

    async def connect(self, node):
        await asyncio.wait_for(self.sio.connect(node.http_url, auth={"token": self.user["token"]},
                                                transports=["websocket"]), 10)
        return self

    async def call(self, event, data):
        return await self.sio.call(event, data, timeout=10)

    async def wait(self, event, pred=lambda d: True, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e, d in self.events:
                if e == event and pred(d):
                    return d
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.user['id']} got no {event}; got {[e for e, _ in self.events]}")


async def test_chat_crosses_nodes(two):
    a, b = two
    async with aiohttp.ClientSession() as http:
        alice = await Client(await register(http, a, "x_alice")).connect(a)
        bob_user = await register(http, b, "x_bob")
        bob = await Client(bob_user).connect(b)
        # Presence: alice on a hears bob come online on b.
        await alice.wait("contact_online", lambda d: d == bob_user["id"])

        ack = await alice.call("sendMessage", {"id": "x-1", "recipientChatPath": bob_user["id"], "content": "hi"})
        assert ack.get("ok") is True, ack
        chat_id = ack["chatId"]
        got = await bob.wait("receiveMessage", lambda d: d["id"] == "x-1")
        assert got["content"] == "hi" and got["chatId"] == chat_id
        # bob's client confirmed it on b: alice hears it on a.
        receipt = await alice.wait("messageDelivered", lambda d: d["id"] == "x-1")
        assert receipt["to"] == bob_user["id"]

        # Typing and read receipts go the other way.
        assert (await bob.call("typing", {"chatId": chat_id, "isTyping": True})).get("ok") is True
        await alice.wait("typing", lambda d: d.get("isTyping") is True and d.get("chatId") == chat_id)
        assert (await bob.call("markAsRead", {"chatId": chat_id})).get("ok") is True
        read = await alice.wait("messagesRead", lambda d: d["chatId"] == chat_id)
        assert read["messageIds"] == ["x-1"]

        # A reply from b reaches alice's socket on a.
        ack = await bob.call("sendMessage", {"id": "x-2", "chatId": chat_id, "content": "hello back"})
        assert ack.get("ok") is True, ack
        await alice.wait("receiveMessage", lambda d: d["id"] == "x-2")
        await bob.wait("messageDelivered", lambda d: d["id"] == "x-2")

        # A third user on a sees everyone online, wherever they are connected.
        carol = await Client(await register(http, a, "x_carol")).connect(a)
        online = await carol.wait("online_users")
        assert {alice.user["id"], bob_user["id"], carol.user["id"]} <= set(online), online

        # bob leaves b: alice hears it on a.
        await bob.sio.disconnect()
        await alice.wait("contact_offline", lambda d: d == bob_user["id"])
        for c in (alice, carol):
            await c.sio.disconnect()


async def test_a_call_rings_across_nodes(two):
    a, b = two
    async with aiohttp.ClientSession() as http:
        alice = await Client(await register(http, a, "r_alice")).connect(a)
        bob_user = await register(http, b, "r_bob")
        bob = await Client(bob_user).connect(b)
        out = await alice.call("initiateCall", {"recipientId": bob_user["id"], "callType": "audio"})
        assert out.get("ok") is True, out
        ring = await bob.wait("incomingCall")
        assert ring["callerId"] == alice.user["id"]
        accepted = await bob.call("acceptCall", {"callId": ring["callId"]})
        assert accepted.get("ok") is True, accepted
        got = await alice.wait("callAccepted", lambda d: d["callId"] == ring["callId"])
        assert got["recipientId"] == bob_user["id"]
        for c in (alice, bob):
            await c.sio.disconnect()


async def test_a_killed_node_leaves_chat_working_and_loses_nothing(two):
    a, b = two
    async with aiohttp.ClientSession() as http:
        alice_user = await register(http, a, "k_alice")
        alice = await Client(alice_user).connect(a)
        bob_user = await register(http, b, "k_bob")
        bob = await Client(bob_user).connect(b)
        acked = []
        chat_id = ""
        for i in range(20):
            ack = await alice.call("sendMessage", {"id": f"k-{i}", "recipientChatPath": bob_user["id"],
                                                   "content": f"m{i}"})
            assert ack.get("ok") is True, ack
            acked.append(ack["id"])
            chat_id = ack["chatId"]
        a.stop(signal.SIGKILL)
        # alice comes back through b; chat goes on there.
        alice2 = await Client(alice_user).connect(b)
        ack = await alice2.call("sendMessage", {"id": "k-after", "chatId": chat_id, "content": "still here"})
        assert ack.get("ok") is True, ack
        acked.append("k-after")
        await bob.wait("receiveMessage", lambda d: d["id"] == "k-after")
        await alice2.wait("messageDelivered", lambda d: d["id"] == "k-after")
        assert await history_ids(http, b, bob_user, chat_id) == set(acked)
        for c in (alice2, bob):
            await c.sio.disconnect()


async def test_pushes_are_sent_once_with_the_key_every_node_shares(two):
    a, b = two
    browser = Browser()
    await browser.start()
    try:
        async with aiohttp.ClientSession() as http:
            keys = []
            for n in (a, b):
                async with http.get(f"{n.http_url}/api/push/vapid-public-key") as r:
                    keys.append((await r.json())["publicKey"])
            assert keys[0] == keys[1], "both nodes sign with one VAPID key"
            alice = await Client(await register(http, a, "p_alice")).connect(a)
            bob_user = await register(http, b, "p_bob")
            async with http.post(f"{b.http_url}/api/push/subscribe", json=browser.subscription("bob"),
                                 headers={"authorization": f"Bearer {bob_user['token']}"}) as r:
                assert r.status == 201, await r.text()

            # bob has no socket anywhere: one push for the message, signed with the shared key.
            ack = await alice.call("sendMessage", {"id": "p-1", "recipientChatPath": bob_user["id"], "content": "ping"})
            assert ack.get("ok") is True, ack
            deadline = time.time() + 10
            while not browser.received and time.time() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)
            assert len(browser.received) == 1, browser.received
            assert browser.decrypt(browser.received[0]["body"])["messageId"] == "p-1"
            auth = dict(p.strip().split("=", 1) for p in
                        browser.received[0]["headers"]["Authorization"].partition(" ")[2].split(","))
            assert unb64u(auth["k"]) == unb64u(keys[0])

            # bob online on b: a message stored on a is delivered there, not pushed.
            bob = await Client(bob_user).connect(b)
            await alice.wait("contact_online", lambda d: d == bob_user["id"])
            ack = await alice.call("sendMessage", {"id": "p-2", "recipientChatPath": bob_user["id"], "content": "pong"})
            assert ack.get("ok") is True, ack
            await bob.wait("receiveMessage", lambda d: d["id"] == "p-2")
            await asyncio.sleep(1.5)
            assert len(browser.received) == 1, "no push to a user online on another node"
            for c in (alice, bob):
                await c.sio.disconnect()
    finally:
        await browser.stop()


@pytest.mark.parametrize("mode", ["redis", "postgres-only"])
async def test_webhooks_are_delivered_once_and_survive_their_node(request, tmp_path, pg, mode):  # noqa: F811
    redis = request.getfixturevalue("redis") if mode == "redis" else None
    got: list[dict] = []
    status = {"code": 200}

    async def hook(request):
        body = json.loads(await request.text())
        if status["code"] == 200:  # what the receiver accepted
            got.append(body)
        return web.Response(status=status["code"])

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"
    a = node(tmp_path, redis, pg, "hook-a", "--webhook-url", url)
    b = node(tmp_path, redis, pg, "hook-b", "--webhook-url", url)
    try:
        async with aiohttp.ClientSession() as http:
            alice = await Client(await register(http, a, "h_alice")).connect(a)
            bob_user = await register(http, b, "h_bob")

            def sent(msg_id):
                return [e for e in got if e.get("event") == "message_sent"
                        and e.get("data", {}).get("message", {}).get("id") == msg_id]

            ack = await alice.call("sendMessage", {"id": "h-1", "recipientChatPath": bob_user["id"], "content": "x"})
            assert ack.get("ok") is True, ack
            deadline = time.time() + 10
            while not sent("h-1") and time.time() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(2)
            assert len(sent("h-1")) == 1, got

            # The receiver fails while a queues; a dies; b takes a's queue over
            # and delivers it once the receiver is back.
            status["code"] = 503
            ack = await alice.call("sendMessage", {"id": "h-2", "recipientChatPath": bob_user["id"], "content": "y"})
            assert ack.get("ok") is True, ack
            await asyncio.sleep(0.5)
            a.stop(signal.SIGKILL)
            status["code"] = 200
            deadline = time.time() + 40
            while not [e for e in sent("h-2")] and time.time() < deadline:
                await asyncio.sleep(0.2)
            assert len(sent("h-2")) >= 1, "the dead node's queued webhook is delivered by the survivor"
            await asyncio.sleep(2)
            assert pg.sql("SELECT count(*) FROM webhook_queue") == "0", (pg.sql("SELECT node, attempts, body FROM webhook_queue"), [e.get("event") for e in got])
            assert any("webhook deliveries of a node that is gone" in line for line in b.lines)
    finally:
        for n in (a, b):
            n.stop()
        await runner.cleanup()


async def test_without_redis_a_large_message_crosses_and_a_late_node_is_greeted(tmp_path, pg):  # noqa: F811
    """The database alone: an event over PostgreSQL's 8,000-byte notification
    limit crosses as a row; a node that starts after users connected on the
    other learns who is online and leaves its ringing call alone; a second
    process with a live node's id is refused."""
    a = node(tmp_path, None, pg, "solo-a")
    b = None
    try:
        async with aiohttp.ClientSession() as http:
            alice = await Client(await register(http, a, "l_alice")).connect(a)
            bob_user = await register(http, a, "l_bob")
            # A call ringing on a when b starts: b leaves it alone (a node
            # alone would end the calls a previous run left).
            out = await alice.call("initiateCall", {"recipientId": bob_user["id"], "callType": "audio"})
            assert out.get("ok") is True, out
            call_id = out["call"]["id"]
            b = node(tmp_path, None, pg, "solo-b")
            # a published nothing while alone; b said hello before it served,
            # so a message to b's first socket crosses at once.
            dave_user = await register(http, b, "l_dave")
            dave = await Client(dave_user).connect(b)
            ack = await alice.call("sendMessage", {"id": "l-0", "recipientChatPath": dave_user["id"], "content": "first"})
            assert ack.get("ok") is True, ack
            await dave.wait("receiveMessage", lambda d: d["id"] == "l-0", timeout=5)
            assert pg.sql(f"SELECT status FROM calls WHERE id = '{call_id}'") == "ringing"
            carol = await Client(await register(http, b, "l_carol")).connect(b)
            online = await carol.wait("online_users")
            assert alice.user["id"] in online, online
            bob = await Client(bob_user).connect(b)
            await alice.wait("contact_online", lambda d: d == bob_user["id"])
            big = "é" * 6000  # 12,000 bytes of UTF-8
            ack = await alice.call("sendMessage", {"id": "l-1", "recipientChatPath": bob_user["id"], "content": big})
            assert ack.get("ok") is True, ack
            got = await bob.wait("receiveMessage", lambda d: d["id"] == "l-1")
            assert got["content"] == big
            await alice.wait("messageDelivered", lambda d: d["id"] == "l-1")
            assert pg.sql("SELECT count(*) FROM bus_payloads") != "0"
            for c in (alice, bob, carol, dave):
                await c.sio.disconnect()
        with pytest.raises(RuntimeError, match="in use by a live node"):
            node(tmp_path / "again", None, pg, "solo-a")
    finally:
        for n in (a, b):
            if n is not None:
                n.stop()


async def test_without_redis_a_lost_listening_connection_is_made_again(tmp_path, pg):  # noqa: F811
    """The database ends every node's listening connection: each listens
    again, and chat keeps crossing."""
    a = node(tmp_path, None, pg, "relisten-a")
    b = node(tmp_path, None, pg, "relisten-b")
    try:
        async with aiohttp.ClientSession() as http:
            alice = await Client(await register(http, a, "t_alice")).connect(a)
            bob_user = await register(http, b, "t_bob")
            bob = await Client(bob_user).connect(b)
            await alice.wait("contact_online", lambda d: d == bob_user["id"])
            ended = pg.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE query LIKE 'LISTEN%'")
            assert ended == "2", ended
            deadline = time.time() + 15
            while pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'") != "2":
                assert time.time() < deadline, "the nodes did not listen again"
                await asyncio.sleep(0.2)
            ack = await alice.call("sendMessage", {"id": "t-1", "recipientChatPath": bob_user["id"], "content": "again"})
            assert ack.get("ok") is True, ack
            await bob.wait("receiveMessage", lambda d: d["id"] == "t-1")
            await alice.wait("messageDelivered", lambda d: d["id"] == "t-1")
            for c in (alice, bob):
                await c.sio.disconnect()
    finally:
        for n in (a, b):
            n.stop()


async def test_a_connected_call_whose_room_is_gone_ends(tmp_path, redis, pg):  # noqa: F811
    """A call connected in a media room whose node died (nobody rejoined)
    ends with reason node_lost; one whose room is open on a node goes on."""
    from livekit import api
    a = node(tmp_path, redis, pg, "lost-a")
    b = node(tmp_path, redis, pg, "lost-b")
    try:
        async with aiohttp.ClientSession() as http:
            calls = []
            for pair in ("x", "y"):
                alice = await Client(await register(http, a, f"{pair}_caller")).connect(a)
                bob_user = await register(http, b, f"{pair}_callee")
                bob = await Client(bob_user).connect(b)
                out = await alice.call("initiateCall", {"recipientId": bob_user["id"], "callType": "audio"})
                assert out.get("ok") is True, out
                ring = await bob.wait("incomingCall")
                assert (await bob.call("acceptCall", {"callId": ring["callId"]})).get("ok") is True
                calls.append((out["call"]["id"], out["call"]["roomName"]))
                for c in (alice, bob):
                    await c.sio.disconnect()
            (lost, _), (kept, kept_room) = calls
            # Both connected, as when both people had joined; the room of the
            # second is open (on a), the first's is on no node any more.
            for call_id, _ in calls:
                pg.sql(f"UPDATE calls SET status = 'connected', connected_at = answered_at WHERE id = '{call_id}'")
            lk = lkapi(a)
            try:
                await lk.room.create_room(api.CreateRoomRequest(name=kept_room, empty_timeout=300))
            finally:
                await lk.aclose()
            deadline = time.time() + 15
            while pg.sql(f"SELECT status FROM calls WHERE id = '{lost}'") != "ended":
                assert time.time() < deadline, "the call whose room is gone was not ended"
                await asyncio.sleep(0.2)
            assert pg.sql(f"SELECT end_reason FROM calls WHERE id = '{lost}'") == "node_lost"
            await asyncio.sleep(3)
            assert pg.sql(f"SELECT status FROM calls WHERE id = '{kept}'") == "connected"
    finally:
        for n in (a, b):
            n.stop()
