"""Web Push against a local push endpoint that plays the browser's part: it
makes its own P-256 keys and auth secret, subscribes through Nodo's API,
checks the VAPID JWT, decrypts with an independent RFC 8291 implementation
(http_ece), and answers 410 once to see the subscription removed."""

import asyncio
import base64
import json
import os
import time

import aiohttp
import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import start_node


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Browser:
    """A push service endpoint plus the subscriber's keys."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.received: list[dict] = []
        self.status = 201
        self.script: list[int] = []  # statuses to answer first, in order
        self.app = web.Application()
        self.app.router.add_post("/push/{id}", self.handle)
        self.runner = None
        self.base = ""

    async def start(self):
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self):
        await self.runner.cleanup()

    def subscription(self, sid: str) -> dict:
        pub = self.key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"{self.base}/push/{sid}", "keys": {"p256dh": b64u(pub), "auth": b64u(self.auth)}}

    async def handle(self, request: web.Request):
        body = await request.read()
        self.received.append({"headers": request.headers.copy(), "body": body, "path": request.path})
        status = self.script.pop(0) if self.script else self.status
        return web.Response(status=status)

    def decrypt(self, body: bytes) -> dict:
        return json.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"))


async def api(s, node, method, path, token=None, body=None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with s.request(method, node.http_url + path, json=body, headers=headers) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def register(s, node, name):
    status, body = await api(s, node, "POST", "/api/auth/register", body={"username": f"{name}{time.time_ns() % 10**9}", "name": name.title(), "password": "push test password"})
    assert status == 201, body
    return body["user"]["id"], body["token"]


async def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_push_for_calls_messages_and_gone_subscriptions(tmp_path):
    node = start_node(tmp_path, env={"NODO_PUSH__ALLOW_INSECURE_ENDPOINTS": "true", "NODO_CALLS__RING_TIMEOUT_SECS": "1", "NODO_PUSH__RETRY_BASE_MS": "50"})
    browser = Browser()
    await browser.start()
    try:
        async with aiohttp.ClientSession() as s:
            alice, alice_t = await register(s, node, "alice")
            bob, bob_t = await register(s, node, "bob")
            status, key = await api(s, node, "GET", "/api/push/vapid-public-key")
            assert status == 200
            vapid_pub = unb64u(key["publicKey"])
            assert len(vapid_pub) == 65 and vapid_pub[0] == 4

            # Malformed subscriptions are refused; nothing is stored.
            for bad in [{"endpoint": "not a url", "keys": {"p256dh": "x", "auth": "y"}},
                        {"endpoint": browser.base + "/push/x", "keys": {"p256dh": b64u(b"short"), "auth": b64u(browser.auth)}},
                        {"endpoint": browser.base + "/push/x"}]:
                status, _ = await api(s, node, "POST", "/api/push/subscribe", bob_t, bad)
                assert status == 400, bad
            assert (await api(s, node, "GET", "/api/push/subscriptions", bob_t))[1]["count"] == 0
            assert (await api(s, node, "POST", "/api/push/subscribe", None, browser.subscription("b")))[0] == 401

            status, _ = await api(s, node, "POST", "/api/push/subscribe", bob_t, browser.subscription("bob"))
            assert status == 201

            # An incoming call rings bob's browser: TTL 30, urgency high, VAPID, aes128gcm.
            status, call = await api(s, node, "POST", "/calls", alice_t, {"toUserId": bob, "callType": "video"})
            assert status == 200, call
            await wait_for(lambda: browser.received, what="the incoming-call push")
            push = browser.received[0]
            h = push["headers"]
            assert h["Content-Encoding"] == "aes128gcm"
            assert h["TTL"] == "30"
            assert h["Urgency"] == "high"
            scheme, _, params = h["Authorization"].partition(" ")
            assert scheme == "vapid"
            fields = dict(p.strip().split("=", 1) for p in params.split(","))
            assert unb64u(fields["k"]) == vapid_pub
            pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), vapid_pub)
            claims = jwt.decode(fields["t"], pub, algorithms=["ES256"], audience=browser.base)
            assert claims["sub"] == "mailto:admin@localhost"
            assert time.time() < claims["exp"] <= time.time() + 24 * 3600 + 60
            data = browser.decrypt(push["body"])
            assert data == {**data, "type": "incoming_call", "callId": call["call"]["id"], "callerId": alice,
                            "callerName": "Alice", "callType": "video", "roomName": call["call"]["roomName"]}

            # Nobody answers: a missed-call push follows.
            await wait_for(lambda: len(browser.received) >= 2, what="the missed-call push")
            missed = browser.decrypt(browser.received[1]["body"])
            assert missed["type"] == "missed_call" and missed["callId"] == call["call"]["id"]

            # A chat message to bob, who has no socket, is pushed too.
            status, chat = await api(s, node, "POST", "/api/chats", alice_t, {"type": "direct", "participants": [bob]})
            status, sent = await api(s, node, "POST", f"/api/chats/{chat['chat']['id']}/messages", alice_t, {"content": "are you there?"})
            assert status == 201, sent
            await wait_for(lambda: len(browser.received) >= 3, what="the message push")
            msg = browser.decrypt(browser.received[2]["body"])
            assert msg["type"] == "message" and msg["preview"] == "are you there?" and msg["senderId"] == alice

            # The push service says the subscription is gone: it is deleted, no more pushes.
            browser.status = 410
            await api(s, node, "POST", f"/api/chats/{chat['chat']['id']}/messages", alice_t, {"content": "hello?"})
            await wait_for(lambda: len(browser.received) >= 4, what="the push answered 410")
            for _ in range(100):
                if (await api(s, node, "GET", "/api/push/subscriptions", bob_t))[1]["count"] == 0:
                    break
                await asyncio.sleep(0.05)
            assert (await api(s, node, "GET", "/api/push/subscriptions", bob_t))[1]["count"] == 0
            browser.status = 201
            await api(s, node, "POST", f"/api/chats/{chat['chat']['id']}/messages", alice_t, {"content": "last"})
            await asyncio.sleep(0.5)
            assert len(browser.received) == 4

            # Transient failures are retried: 503 twice, then accepted; the subscription stays.
            await api(s, node, "POST", "/api/push/subscribe", bob_t, browser.subscription("bob2"))
            before = len(browser.received)
            browser.script = [503, 503]
            await api(s, node, "POST", f"/api/chats/{chat['chat']['id']}/messages", alice_t, {"content": "retry me"})
            await wait_for(lambda: len(browser.received) >= before + 3, what="two retries")
            assert browser.decrypt(browser.received[-1]["body"])["preview"] == "retry me"
            assert (await api(s, node, "GET", "/api/push/subscriptions", bob_t))[1]["count"] == 1
            # Unsubscribe removes it explicitly.
            status, _ = await api(s, node, "DELETE", "/api/push/subscribe", bob_t, {"endpoint": browser.subscription("bob2")["endpoint"]})
            assert status == 200
            status, _ = await api(s, node, "DELETE", "/api/push/subscribe", bob_t, {"endpoint": browser.subscription("bob2")["endpoint"]})
            assert status == 404
    finally:
        await browser.stop()
        node.stop()
