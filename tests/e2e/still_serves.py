"""`assert_still_serves(node)`: the check every hostile test ends with.

After whatever a hostile client did, a normal user must still be served:
a chat message round trip between two accounts over Socket.IO (python-socketio,
an independent client implementation), and a LiveKit join with the official
Python SDK in which one participant's audio reaches the other.

The two accounts are registered once per node and reused, so that repeated
checks don't run into the node's own registration limits.
"""

import asyncio
import secrets
import uuid

import aiohttp
import socketio
from livekit import rtc

from lk import V0, Tone, connect, token

_accounts: dict[str, tuple[dict, dict]] = {}


async def _register(http: aiohttp.ClientSession, node, prefix: str) -> dict:
    username = f"{prefix}{secrets.token_hex(4)}"
    body = {"username": username, "name": f"{prefix} user", "password": "correct horse battery staple"}
    async with http.post(f"{node.http_url}/api/auth/register", json=body) as r:
        data = await r.json(content_type=None)
        assert r.status == 201, f"registration of a normal user refused: {r.status} {data}"
        return {"id": data["user"]["id"], "token": data["token"]}


async def _accounts_for(node) -> tuple[dict, dict]:
    key = node.http_url
    if key not in _accounts:
        async with aiohttp.ClientSession() as http:
            _accounts[key] = (await _register(http, node, "okA"), await _register(http, node, "okB"))
    return _accounts[key]


async def _socket(node, user: dict) -> tuple[socketio.AsyncClient, asyncio.Queue]:
    sio = socketio.AsyncClient(reconnection=False)
    inbox: asyncio.Queue = asyncio.Queue()

    async def on_message(data):
        await inbox.put(data)
        return {"ok": True}

    sio.on("receiveMessage", on_message)
    await asyncio.wait_for(
        sio.connect(node.http_url, auth={"token": user["token"]}, transports=["websocket"]), 10
    )
    return sio, inbox


async def chat_round_trip(node) -> None:
    alice, bob = await _accounts_for(node)
    a, _ = await _socket(node, alice)
    b, inbox = await _socket(node, bob)
    try:
        msg_id = f"ok-{uuid.uuid4()}"
        ack = await a.call(
            "sendMessage", {"id": msg_id, "recipientChatPath": bob["id"], "content": "still there?"}, timeout=10
        )
        assert ack.get("ok") is True, f"a normal message was refused: {ack}"
        while True:
            got = await asyncio.wait_for(inbox.get(), 10)
            if got.get("id") == msg_id:
                break
        assert got["content"] == "still there?"
    finally:
        await a.disconnect()
        await b.disconnect()


async def livekit_join(node) -> None:
    room = f"ok-{uuid.uuid4().hex[:8]}"
    pub = await connect(node, "ok-pub", room)
    sub = rtc.Room()
    heard = asyncio.Event()
    sub.on("track_subscribed", lambda track, *_: heard.set() if track.kind == rtc.TrackKind.KIND_AUDIO else None)
    tone = Tone()
    try:
        await pub.local_participant.publish_track(tone.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        tone.start()
        await asyncio.wait_for(sub.connect(node.url, token("ok-sub", room), options=V0), 20)
        await asyncio.wait_for(heard.wait(), 20)
    finally:
        tone.stop()
        await sub.disconnect()
        await pub.disconnect()


async def assert_still_serves(node) -> None:
    """A chat round trip and a LiveKit join with media both work."""
    assert node.proc.poll() is None, "the node exited:\n" + "".join(node.lines[-40:])
    await chat_round_trip(node)
    await livekit_join(node)
