"""Hostile account clients with independent implementations (issue 10, item 4):
the official Python SDKs (livekit, livekit-api) and python-socketio.

- A session token cannot join a room with the real LiveKit client, nor call
  the server API through livekit-api's RoomService client.
- A room token (what `/rtc?access_token=` URLs and proxy logs carry) opens no
  chat socket and no API call.
- A revoked session's python-socketio socket is disconnected at once.

The tests in tests/js/hostile-accounts.test.mjs cover the rest (throttling,
the hash pool, usernames, modes). After each case a normal user is still served.
"""

import asyncio
import secrets

import aiohttp
import pytest
import socketio
from livekit import api, rtc

from conftest import API_KEY, API_SECRET
from lk import V0, token
from still_serves import assert_still_serves

PASSWORD = "correct horse battery staple"


async def register(http: aiohttp.ClientSession, node, prefix: str) -> dict:
    body = {"username": f"{prefix}{secrets.token_hex(4)}", "password": PASSWORD}
    async with http.post(f"{node.http_url}/api/auth/register", json=body) as r:
        data = await r.json()
        assert r.status == 201, data
        return {"id": data["user"]["id"], "token": data["token"], "username": body["username"]}


async def socket_for(node, tok: str) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    await asyncio.wait_for(sio.connect(node.http_url, auth={"token": tok}, transports=["websocket"]), 10)
    return sio


async def test_a_session_token_joins_no_room_and_calls_no_server_api(node):
    async with aiohttp.ClientSession() as http:
        ana = await register(http, node, "ana")
    room = rtc.Room()
    with pytest.raises(Exception) as refused:
        await asyncio.wait_for(room.connect(node.url, ana["token"], options=V0), 20)
    assert "session token" in str(refused.value) or "401" in str(refused.value), refused.value
    async with api.LiveKitAPI(node.http_url, API_KEY, API_SECRET) as lk:
        # The SDK signs its own API tokens: those work, as in LiveKit.
        await lk.room.list_rooms(api.ListRoomsRequest())
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{node.http_url}/twirp/livekit.RoomService/ListRooms",
            json={},
            headers={"authorization": f"Bearer {ana['token']}"},
        ) as r:
            assert r.status == 401, await r.text()
    await assert_still_serves(node)


async def test_a_room_token_opens_no_chat_socket_or_api_call(node):
    room_token = token(f"eve{secrets.token_hex(3)}", "some-room")
    sio = socketio.AsyncClient(reconnection=False)
    reasons = []
    sio.on("connect_error", lambda data: reasons.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await asyncio.wait_for(
            sio.connect(node.http_url, auth={"token": room_token}, transports=["websocket"]), 10
        )
    assert any("not a session" in str(r) for r in reasons), reasons
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{node.http_url}/api/chats", headers={"authorization": f"Bearer {room_token}"}
        ) as r:
            body = await r.json()
            assert r.status == 401 and "not a session" in body["message"], body
    await assert_still_serves(node)


async def test_a_revoked_sessions_socket_is_disconnected_at_once(node):
    async with aiohttp.ClientSession() as http:
        bob = await register(http, node, "bob")
        sio = await socket_for(node, bob["token"])
        gone = asyncio.Event()
        sio.on("disconnect", lambda *_: gone.set())
        async with http.post(
            f"{node.http_url}/api/auth/logout-all", headers={"authorization": f"Bearer {bob['token']}"}
        ) as r:
            assert r.status == 200, await r.text()
        await asyncio.wait_for(gone.wait(), 3)
        async with http.get(
            f"{node.http_url}/api/users/me", headers={"authorization": f"Bearer {bob['token']}"}
        ) as r:
            assert r.status == 401
        with pytest.raises(socketio.exceptions.ConnectionError):
            await socket_for(node, bob["token"])
        # Signing in again opens a new session.
        async with http.post(
            f"{node.http_url}/api/auth/login", json={"username": bob["username"], "password": PASSWORD}
        ) as r:
            assert r.status == 200
            fresh = (await r.json())["token"]
        again = await socket_for(node, fresh)
        await again.disconnect()
    await assert_still_serves(node)
