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
