"""Durability against a hostile environment: the disk under the data
directory fills up (a tmpfs of a few MiB, mounted by the test).

Writes are refused with a clear error (ack code and REST `error`
`storage_full`, HTTP 507), nothing acknowledged is lost, nothing refused is
stored, the node recovers without a restart once space is freed, shuts down
cleanly (no WAL left) and the database passes `PRAGMA integrity_check`.
"""

import asyncio
import os
import sqlite3
import subprocess
import uuid
from pathlib import Path

import aiohttp
import pytest
import socketio

from conftest import start_node
from still_serves import assert_still_serves

UNLIMITED = {"NODO_CHAT__RATE_PER_SEC": "1000000", "NODO_CHAT__RATE_BURST": "1000000"}


def mount_tmpfs(path: Path, mib: int) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root")
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")


def fill(path: Path) -> None:
    """Writes zeros until the file system is full."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 16, 512):
            chunk = b"\0" * size
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass


async def register(http: aiohttp.ClientSession, node, prefix: str) -> dict:
    body = {"username": f"{prefix}{uuid.uuid4().hex[:8]}", "name": prefix, "password": "correct horse battery staple"}
    async with http.post(f"{node.http_url}/api/auth/register", json=body) as r:
        data = await r.json(content_type=None)
        assert r.status == 201, data
        return {"id": data["user"]["id"], "token": data["token"]}


async def history_ids(http: aiohttp.ClientSession, node, user: dict, chat_id: str) -> set[str]:
    ids: set[str] = set()
    cursor = ""
    while True:
        url = f"{node.http_url}/api/chats/{chat_id}/messages?limit=200" + (f"&before={cursor}" if cursor else "")
        async with http.get(url, headers={"authorization": f"Bearer {user['token']}"}) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        ids.update(m["id"] for m in page["messages"])
        cursor = page.get("nextCursor") or ""
        if not cursor:
            return ids


async def post_rest(http: aiohttp.ClientSession, node, user: dict, chat_id: str, msg_id: str):
    async with http.post(
        f"{node.http_url}/api/chats/{chat_id}/messages",
        json={"id": msg_id, "content": "r" * 2000},
        headers={"authorization": f"Bearer {user['token']}"},
    ) as r:
        return r.status, await r.json(content_type=None)


async def test_a_full_disk_refuses_writes_loses_nothing_and_recovers(tmp_path):
    mnt = tmp_path / "mnt"
    mount_tmpfs(mnt, 24)
    node = None
    try:
        node = start_node(mnt, env=UNLIMITED)
        async with aiohttp.ClientSession() as http:
            alice = await register(http, node, "full_a")
            bob = await register(http, node, "full_b")
            sio = socketio.AsyncClient(reconnection=False)
            await asyncio.wait_for(
                sio.connect(node.http_url, auth={"token": alice["token"]}, transports=["websocket"]), 10
            )

            async def send(msg_id: str) -> dict:
                return await sio.call(
                    "sendMessage", {"id": msg_id, "recipientChatPath": bob["id"], "content": "y" * 2000}, timeout=15
                )

            acked: list[str] = []
            chat_id = ""
            for i in range(20):
                ack = await send(f"before-{i}")
                assert ack.get("ok") is True, ack
                chat_id = ack["chatId"]
                acked.append(ack["id"])

            filler = mnt / "filler"
            fill(filler)

            # Sends go on while SQLite's log still has room, then are refused.
            refused: list[str] = []
            for i in range(3000):
                ack = await send(f"full-{i}")
                if ack.get("ok") is True:
                    acked.append(ack["id"])
                    continue
                assert ack.get("code") == "storage_full", ack
                refused.append(f"full-{i}")
                if len(refused) == 5:
                    break
            assert len(refused) == 5, "no send was refused on a full disk"
            status, body = await post_rest(http, node, alice, chat_id, "rest-full")
            assert (status, body.get("error")) == (507, "storage_full"), (status, body)
            refused.append("rest-full")
            assert any("storage full" in line for line in node.lines), "the node logs the full disk"

            # Reads work on the full disk: every acknowledged message is there, no refused one.
            ids = await history_ids(http, node, alice, chat_id)
            assert set(acked) <= ids, set(acked) - ids
            assert not ids & set(refused), ids & set(refused)

            # Space returns: writes work again without a restart.
            filler.unlink()
            ack = await send("after")
            assert ack.get("ok") is True, ack
            acked.append("after")
            status, body = await post_rest(http, node, alice, chat_id, "rest-after")
            assert status == 201, (status, body)
            acked.append("rest-after")
            await sio.disconnect()

        await assert_still_serves(node)

        assert node.stop() == 0
        db = mnt / "data" / "nodo.db"
        wal = Path(f"{db}-wal")
        assert not wal.exists() or wal.stat().st_size == 0, "a clean shutdown leaves no WAL"
        con = sqlite3.connect(db)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {r[0] for r in con.execute("SELECT id FROM messages")}
        finally:
            con.close()
        assert set(acked) <= stored
        assert not stored & set(refused)
    finally:
        if node is not None:
            node.stop()
        subprocess.run(["umount", "-l", str(mnt)], check=False)
