"""Hostile Web Push: endpoints that point into the operator's network (refused
at subscribe time, and again at send time after a rebinding or a config
change), subscriptions beyond the per-user cap, taking over another user's
endpoint, removing someone else's subscription, oversized and invalid keys,
subscription floods (429 with Retry-After), and a push service that stalls.
Every case ends with the node still serving a normal user."""

import asyncio
import base64
import os
import time

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import start_node
from still_serves import assert_still_serves
from test_web_push import Browser, api, b64u, register, wait_for

# A public address (TEST-NETs and private ranges are refused); nothing is ever sent to it.
PUBLIC_IP = "93.184.216.34"


def keys() -> dict:
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"p256dh": b64u(pub), "auth": b64u(os.urandom(16))}


async def chat_with(s, node, token, other) -> str:
    status, chat = await api(s, node, "POST", "/api/chats", token, {"type": "direct", "participants": [other]})
    assert status in (200, 201), chat
    return chat["chat"]["id"]


async def say(s, node, token, chat_id, text):
    status, body = await api(s, node, "POST", f"/api/chats/{chat_id}/messages", token, {"content": text})
    assert status == 201, body


async def test_endpoints_must_be_public_https(tmp_path):
    # Insecure endpoints are off by default, in --dev too.
    node = start_node(tmp_path, env={"NODO_PUSH__SUBSCRIBE_RATE__BURST": "100"})
    try:
        async with aiohttp.ClientSession() as s:
            _, bob_t = await register(s, node, "bob")
            inward = [
                ("http://push.example.com/x", "https"),
                (f"http://{PUBLIC_IP}/x", "https"),
                ("https://127.0.0.1/x", "not a public address"),
                ("https://127.0.0.1:8443/x", "not a public address"),
                ("https://localhost/x", "not a public address"),
                ("https://[::1]/x", "not a public address"),
                ("https://[::ffff:127.0.0.1]/x", "not a public address"),
                ("https://0x7f000001/x", "not a public address"),
                ("https://2130706433/x", "not a public address"),
                ("https://0.0.0.0/x", "not a public address"),
                ("https://[::]/x", "not a public address"),
                ("https://10.0.0.1/x", "not a public address"),
                ("https://172.16.5.4/x", "not a public address"),
                ("https://192.168.1.1/x", "not a public address"),
                ("https://169.254.169.254/latest/meta-data/", "not a public address"),
                ("https://100.64.0.1/x", "not a public address"),
                ("https://[fd00::1]/x", "not a public address"),
                ("https://[fe80::1]/x", "not a public address"),
                ("https://224.0.0.1/x", "not a public address"),
                ("https://192.0.2.1/x", "not a public address"),
                ("https://[2001:db8::1]/x", "not a public address"),
                ("https://[64:ff9b::a00:1]/x", "not a public address"),
                ("https://push.nodo-test.invalid/x", "does not resolve"),
                (f"https://user:pw@{PUBLIC_IP}/x", "credentials"),
                ("file:///etc/passwd", "https"),
            ]
            for endpoint, why in inward:
                status, body = await api(s, node, "POST", "/api/push/subscribe", bob_t, {"endpoint": endpoint, "keys": keys()})
                assert status == 400, (endpoint, status, body)
                assert body["error"] == "bad_request" and why in body["message"], (endpoint, body)
            assert (await api(s, node, "GET", "/api/push/subscriptions", bob_t))[1]["count"] == 0
            # A public https endpoint is accepted (and removed again: nothing is sent to it).
            ok = {"endpoint": f"https://{PUBLIC_IP}/push/ok", "keys": keys()}
            status, body = await api(s, node, "POST", "/api/push/subscribe", bob_t, ok)
            assert status == 201, body
            status, _ = await api(s, node, "DELETE", "/api/push/subscribe", bob_t, {"endpoint": ok["endpoint"]})
            assert status == 200
        await assert_still_serves(node)
    finally:
        node.stop()


async def test_stored_inward_endpoints_are_not_sent_to(tmp_path):
    """Endpoints stored while insecure endpoints were allowed (or a name that
    resolved publicly then, and inward now) get nothing once they are off: the
    sender checks the URL again and resolves through a public-only resolver."""
    browser = Browser()
    await browser.start()
    env = {"NODO_PUSH__RETRY_BASE_MS": "50"}
    node = start_node(tmp_path, env={**env, "NODO_PUSH__ALLOW_INSECURE_ENDPOINTS": "true"})
    try:
        async with aiohttp.ClientSession() as s:
            alice, alice_t = await register(s, node, "alice")
            bob, bob_t = await register(s, node, "bob")
            sub = browser.subscription("bob")
            port = browser.base.rsplit(":", 1)[1]
            # A name (not an address literal) that resolves to loopback, as a rebinding would.
            named = {**sub, "endpoint": f"https://localhost:{port}/push/named"}
            for x in (sub, named):
                status, body = await api(s, node, "POST", "/api/push/subscribe", bob_t, x)
                assert status == 201, body
            chat = await chat_with(s, node, alice_t, bob)
            await say(s, node, alice_t, chat, "while allowed")
            await wait_for(lambda: browser.received, what="the push while insecure endpoints are allowed")
        node.stop()
        browser.received.clear()

        node = start_node(tmp_path, env=env)
        async with aiohttp.ClientSession() as s:
            await say(s, node, alice_t, chat, "after the switch")
            await wait_for(lambda: any("push not sent" in l for l in node.lines), what="the refused plain-http push")
            await wait_for(lambda: any("push gave up" in l and "no public address" in l for l in node.lines),
                           what="the name resolved to no public address")
            assert browser.received == []
            # Nothing was deleted: the owner can move them to proper endpoints.
            assert (await api(s, node, "GET", "/api/push/subscriptions", bob_t))[1]["count"] == 2
        await assert_still_serves(node)
    finally:
        await browser.stop()
        node.stop()


class Stall:
    """A push service that answers only after `delay` seconds."""

    def __init__(self, delay: float):
        self.delay = delay
        self.hits = 0
        self.app = web.Application()
        self.app.router.add_post("/push/{id}", self.handle)

    async def handle(self, request):
        self.hits += 1
        await asyncio.sleep(self.delay)
        return web.Response(status=201)

    async def start(self):
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_subscriptions_are_capped_owned_checked_and_throttled(tmp_path):
    browser = Browser()
    await browser.start()
    stall = Stall(3.0)
    await stall.start()
    node = start_node(tmp_path, env={
        "NODO_PUSH__ALLOW_INSECURE_ENDPOINTS": "true",
        "NODO_PUSH__MAX_SUBSCRIPTIONS_PER_USER": "3",
        "NODO_PUSH__SUBSCRIBE_RATE__BURST": "8",
        "NODO_PUSH__MAX_PENDING_PER_USER": "2",
        "NODO_PUSH__RETRIES": "0",
    })
    try:
        async with aiohttp.ClientSession() as s:
            alice, alice_t = await register(s, node, "alice")
            bob, bob_t = await register(s, node, "bob")
            eve, eve_t = await register(s, node, "eve")

            # The cap: a fourth browser replaces the one unseen the longest (b0).
            for n in range(4):
                status, body = await api(s, node, "POST", "/api/push/subscribe", bob_t, browser.subscription(f"b{n}"))
                assert status == 201, body
                await asyncio.sleep(0.01)
            assert (await api(s, node, "GET", "/api/push/subscriptions", bob_t))[1]["count"] == 3
            chat = await chat_with(s, node, alice_t, bob)
            await say(s, node, alice_t, chat, "to every browser")
            await wait_for(lambda: len(browser.received) >= 3, what="three pushes")
            await asyncio.sleep(0.3)
            assert sorted(p["path"] for p in browser.received) == ["/push/b1", "/push/b2", "/push/b3"]

            # Eve knows bob's endpoint but not his keys: no takeover, bob keeps getting his pushes.
            stolen = {"endpoint": browser.subscription("b3")["endpoint"], "keys": keys()}
            status, body = await api(s, node, "POST", "/api/push/subscribe", eve_t, stolen)
            assert status == 409 and body["error"] == "conflict", body
            assert "another account" in body["message"]
            status, body = await api(s, node, "DELETE", "/api/push/subscribe", eve_t, {"endpoint": stolen["endpoint"]})
            assert status == 404 and body["error"] == "not_found", body
            assert (await api(s, node, "GET", "/api/push/subscriptions", eve_t))[1]["count"] == 0
            assert (await api(s, node, "GET", "/api/push/subscriptions", bob_t))[1]["count"] == 3
            browser.received.clear()
            await say(s, node, alice_t, chat, "still yours")
            await wait_for(lambda: len(browser.received) >= 3, what="bob's pushes after the attempt")
            b3 = [p for p in browser.received if p["path"] == "/push/b3"]
            assert len(b3) == 1 and browser.decrypt(b3[0]["body"])["preview"] == "still yours"

            # Oversized and invalid fields, each with its reason.
            good = browser.subscription("eve")
            off_curve = base64.urlsafe_b64encode(b"\x04" + b"\x00" * 64).rstrip(b"=").decode()
            bad = [
                ({**good, "endpoint": good["endpoint"] + "x" * 3000}, 400, "longer than"),
                ({**good, "keys": {**good["keys"], "p256dh": "A" * 12_000}}, 413, "at most"),
                ({**good, "keys": {**good["keys"], "p256dh": "A" * 2000}}, 400, "P-256"),
                ({**good, "keys": {**good["keys"], "auth": "A" * 2000}}, 400, "16 bytes"),
                ({**good, "keys": {**good["keys"], "p256dh": off_curve}}, 400, "P-256 point"),
                ({**good, "keys": {**good["keys"], "auth": b64u(os.urandom(15))}}, 400, "16 bytes"),
                ({**good, "keys": {**good["keys"], "p256dh": "not base64!"}}, 400, "base64url"),
            ]
            for sub, status_wanted, why in bad:
                status, body = await api(s, node, "POST", "/api/push/subscribe", eve_t, sub)
                assert status == status_wanted and why in body["message"], (status, body)
            assert (await api(s, node, "GET", "/api/push/subscriptions", eve_t))[1]["count"] == 0

            # A flood of subscription writes: 429 with Retry-After, for eve only.
            refused = None
            for n in range(20):
                headers = {"authorization": f"Bearer {eve_t}"}
                async with s.post(node.http_url + "/api/push/subscribe", json=browser.subscription(f"e{n}"), headers=headers) as r:
                    if r.status == 429:
                        refused = (int(r.headers["Retry-After"]), await r.json())
                        break
                    assert r.status == 201, await r.text()
            assert refused is not None, "twenty subscription writes were all accepted"
            assert refused[0] >= 1 and refused[1]["error"] == "rate_limited", refused
            status, body = await api(s, node, "DELETE", "/api/push/subscribe", eve_t, {"endpoint": browser.subscription("e0")["endpoint"]})
            assert status == 429, body
            status, body = await api(s, node, "POST", "/api/push/subscribe", bob_t, browser.subscription("b3"))
            assert status == 201, body

            # A push service that stalls: bob's notifications beyond the pending
            # bound are dropped instead of piling up; alice's still go at once.
            status, body = await api(s, node, "POST", "/api/push/subscribe", alice_t,
                                     {**browser.subscription("alice"), "endpoint": stall.base + "/push/alice"})
            assert status == 201, body
            back = await chat_with(s, node, bob_t, alice)
            for n in range(10):
                await say(s, node, bob_t, back, f"flood {n}")
            await asyncio.sleep(1.0)
            assert stall.hits == 2, stall.hits
            browser.received.clear()
            start = time.monotonic()
            await say(s, node, alice_t, chat, "others unaffected")
            await wait_for(lambda: len(browser.received) >= 3, timeout=2, what="bob's push while alice's service stalls")
            assert time.monotonic() - start < 2
        await assert_still_serves(node)
    finally:
        await browser.stop()
        await stall.runner.cleanup()
        node.stop()
