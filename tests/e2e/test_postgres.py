"""The store on Debian's PostgreSQL (`--database-url`): accounts, chats and
history on the server, shared by two nodes; a lost database refuses writes
with a clear error, changes nothing, and the node recovers without a restart."""

import asyncio
import shutil
import tempfile
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import pytest
import socketio

from conftest import ROOT, nodo_binary, start_node
from test_hostile_durability import history_ids, post_rest, register
from tlsutil import free_port

PG_SCRATCH = str(ROOT / "scripts" / "pg-scratch")
UNLIMITED = {"NODO_CHAT__RATE_PER_SEC": "100000", "NODO_CHAT__RATE_BURST": "100000"}


class Postgres:
    """A throwaway server (scripts/pg-scratch) with one fresh database."""

    def __init__(self, directory):
        self.dir = directory
        self.port = free_port()
        self.server = subprocess.run(
            [PG_SCRATCH, "start", str(directory), str(self.port)], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.name = f"nodo_{uuid.uuid4().hex[:12]}"
        subprocess.run(["psql", f"{self.server}/postgres", "-qc", f"CREATE DATABASE {self.name}"], check=True)

    @property
    def url(self):
        return f"{self.server}/{self.name}"

    def sql(self, query: str) -> str:
        return subprocess.run(
            ["psql", self.url, "-Atc", query], check=True, capture_output=True, text=True
        ).stdout.strip()

    def kill(self):
        subprocess.run([PG_SCRATCH, "kill", str(self.dir)], check=True)

    def start(self):
        subprocess.run([PG_SCRATCH, "start", str(self.dir), str(self.port)], check=True, capture_output=True)

    def stop(self):
        subprocess.run([PG_SCRATCH, "stop", str(self.dir)], check=False, capture_output=True)


@pytest.fixture
def pg():
    # Not under tmp_path: the server runs as the `postgres` user, which cannot
    # enter pytest's per-user directory.
    directory = Path(tempfile.mkdtemp(prefix="nodo-pg-"))
    directory.chmod(0o755)
    p = Postgres(directory / "data")
    yield p
    p.stop()
    shutil.rmtree(directory, ignore_errors=True)


def readyz(node) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{node.http_url}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def chat_socket(node, user) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    await asyncio.wait_for(sio.connect(node.http_url, auth={"token": user["token"]}, transports=["websocket"]), 10)
    return sio


async def test_two_nodes_share_accounts_chats_and_history(tmp_path, pg):
    a = start_node(tmp_path / "a", "--database-url", pg.url, "--node-id", "pg-a", env=UNLIMITED)
    b = start_node(tmp_path / "b", "--database-url", pg.url, "--node-id", "pg-b", env=UNLIMITED)
    try:
        async with aiohttp.ClientSession() as http:
            alice = await register(http, a, "pg_a")
            bob = await register(http, b, "pg_b")
            # Accounts live in the database: alice signs in on b.
            async with http.get(f"{b.http_url}/api/users/me",
                                headers={"authorization": f"Bearer {alice['token']}"}) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["user"]["id"] == alice["id"]
            # A session ended on one node is ended on the other, though b
            # had just seen it live.
            spare = await register(http, a, "pg_spare")
            auth = {"authorization": f"Bearer {spare['token']}"}
            async with http.get(f"{b.http_url}/api/users/me", headers=auth) as r:
                assert r.status == 200
            async with http.post(f"{a.http_url}/api/auth/logout", headers=auth) as r:
                assert r.status in (200, 204), await r.text()
            async with http.get(f"{b.http_url}/api/users/me", headers=auth) as r:
                assert r.status == 401, await r.text()
            # alice sends on a while bob is offline.
            sio = await chat_socket(a, alice)
            acked = []
            chat_id = ""
            for i in range(30):
                ack = await sio.call("sendMessage", {"id": f"pg-{i}", "recipientChatPath": bob["id"],
                                                     "content": f"hello number {i} zebra"}, timeout=10)
                assert ack.get("ok") is True, ack
                chat_id = ack["chatId"]
                acked.append(ack["id"])
            # A resend of an acknowledged id through the other node is the same message.
            sio_b = await chat_socket(b, alice)
            again = await sio_b.call("sendMessage", {"id": "pg-0", "recipientChatPath": bob["id"],
                                                     "content": "hello number 0 zebra"}, timeout=10)
            assert again.get("ok") is True and again["id"] == "pg-0", again
            await sio_b.disconnect()
            await sio.disconnect()

            # bob connects to b: what a stored on the way is delivered there.
            got = []
            bob_sio = socketio.AsyncClient(reconnection=False)
            bob_sio.on("receiveMessage", lambda m: got.append(m["id"]) or True)
            await asyncio.wait_for(bob_sio.connect(b.http_url, auth={"token": bob["token"]},
                                                   transports=["websocket"]), 10)
            deadline = time.time() + 10
            while len(set(got)) < len(acked) and time.time() < deadline:
                await asyncio.sleep(0.1)
            await bob_sio.disconnect()
            assert set(got) == set(acked)
            # An attachment uploaded through a, and a profile picture set
            # through b, are served by the other node.
            png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
            form = aiohttp.FormData()
            form.add_field("content", "the diagram")
            form.add_field("file", png, filename="d.png", content_type="application/octet-stream")
            async with http.post(f"{a.http_url}/api/chats/{chat_id}/messages", data=form,
                                 headers={"authorization": f"Bearer {alice['token']}"}) as r:
                assert r.status == 201, await r.text()
                att = (await r.json())["message"]["attachment"]
                acked.append((await r.json())["message"]["id"])
            async with http.get(f"{b.http_url}/api/attachments/{att['id']}",
                                headers={"authorization": f"Bearer {bob['token']}"}) as r:
                assert r.status == 200, await r.text()
                assert await r.read() == png
            async with http.post(f"{b.http_url}/api/users/me/avatar", data=png,
                                 headers={"authorization": f"Bearer {bob['token']}"}) as r:
                assert r.status == 200, await r.text()
                avatar = (await r.json())["user"]["avatar"]
            async with http.get(f"{a.http_url}{avatar}") as r:
                assert r.status == 200, await r.text()
                assert await r.read() == png
            assert pg.sql("SELECT count(*) FROM files") == "2"
            # History and search read the same rows through either node.
            assert await history_ids(http, b, bob, chat_id) == set(acked)
            async with http.get(f"{b.http_url}/api/messages/search?q=number+7+zebra",
                                headers={"authorization": f"Bearer {bob['token']}"}) as r:
                assert r.status == 200, await r.text()
                found = await r.json()
            hits = found["messages"]
            assert [m["id"] for m in hits] == ["pg-7"], found
    finally:
        a.stop()
        b.stop()
    assert pg.sql("SELECT count(*) FROM messages") == str(len(acked))


async def test_a_lost_database_refuses_writes_changes_nothing_and_recovers(tmp_path, pg):
    node = start_node(tmp_path, "--database-url", pg.url, env=UNLIMITED)
    try:
        async with aiohttp.ClientSession() as http:
            alice = await register(http, node, "lost_a")
            bob = await register(http, node, "lost_b")
            sio = await chat_socket(node, alice)

            async def send(msg_id):
                return await sio.call("sendMessage", {"id": msg_id, "recipientChatPath": bob["id"],
                                                      "content": "x"}, timeout=30)

            acked = []
            for i in range(10):
                ack = await send(f"before-{i}")
                assert ack.get("ok") is True, ack
                acked.append(ack["id"])
            chat_id = ack["chatId"]
            assert readyz(node)[0] == 200

            pg.kill()
            status, body = readyz(node)
            assert status == 503 and "PostgreSQL" in body, (status, body)
            refused = []
            for i in range(3):
                ack = await send(f"lost-{i}")
                assert ack.get("ok") is not True and ack.get("code") == "unavailable", ack
                assert "database is unreachable" in ack.get("error", ""), ack
                refused.append(f"lost-{i}")
            status, body = await post_rest(http, node, alice, chat_id, "lost-rest")
            assert (status, body.get("error")) == (503, "unavailable"), (status, body)
            refused.append("lost-rest")
            assert "postgres://" not in str(body), "the error names no server"
            # The node itself stays up.
            with urllib.request.urlopen(f"{node.http_url}/healthz", timeout=5) as r:
                assert r.status == 200

            pg.start()
            deadline = time.time() + 20
            while readyz(node)[0] != 200 and time.time() < deadline:
                time.sleep(0.2)
            assert readyz(node)[0] == 200
            ack = await send("after")
            assert ack.get("ok") is True, ack
            acked.append("after")
            await sio.disconnect()
            ids = await history_ids(http, node, alice, chat_id)
            assert ids == set(acked), (ids ^ set(acked))
        assert not set(refused) & set(pg.sql("SELECT id FROM messages").split())
    finally:
        node.stop()


def test_a_bad_or_unreachable_database_is_refused_at_start(tmp_path):
    dead = free_port()
    for url, says in [
        ("mysql://db/nodo", "must be empty (SQLite) or start with postgres://"),
        (f"postgres://nodo:s3cret@127.0.0.1:{dead}/nodo", "cannot open the store on PostgreSQL"),
    ]:
        run = subprocess.run(
            [str(nodo_binary()), "serve", "--dev", "--http-port", "0", "--rtc-udp-port", "0",
             "--rtc-tcp-port", "0", "--turn-udp-port", "0", "--turn-tls-port", "0",
             "--data-dir", str(tmp_path / "data"), "--database-url", url],
            capture_output=True, text=True, timeout=30,
        )
        out = run.stdout + run.stderr
        assert run.returncode != 0, out
        assert says in out, out
        assert "s3cret" not in out, "the password is not logged"
