"""Hostile clients at the transport: slow and idle HTTP clients, connection
floods from one address and from many, oversized WebSocket messages on the
chat socket and on /rtc, ICE-TCP floods, /metrics without its token. Each is
refused or cut off, and the node then still serves a normal user."""

import asyncio
import socket
import time

import aiohttp
import pytest

from conftest import start_node
from lk import token
from still_serves import assert_still_serves

pytestmark = pytest.mark.asyncio


def host_port(addr: str) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


async def open_conn(addr: str, source: str = "127.0.0.1"):
    host, port = host_port(addr)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return await asyncio.open_connection(sock=sock)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[bool, bytes]:
    """Reads until EOF; (closed, what was read) after at most `seconds`."""
    got = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), deadline - time.monotonic())
        except (asyncio.TimeoutError, TimeoutError):
            return False, got
        except ConnectionError:
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


async def send_quietly(ws, data):
    """Sends; the node may cut the connection off before it has all of it."""
    try:
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_str(data)
    except ConnectionError:
        pass


async def cut_off(ws, data=None) -> bool:
    """Sends `data` (if any), then whether the node closes the WebSocket."""
    if data is not None:
        await send_quietly(ws, data)
    while True:
        try:
            msg = await ws.receive(timeout=10)
        except (asyncio.TimeoutError, TimeoutError):
            return False
        except ConnectionError:
            return True
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return True


@pytest.fixture
def tight(tmp_path):
    n = start_node(tmp_path, env={
        "NODO_SERVER__HTTP_IDLE_TIMEOUT_SECS": "2",
        "NODO_SERVER__MAX_CONNECTIONS_PER_IP": "6",
        "NODO_SERVER__MAX_CONNECTIONS": "10",
        "NODO_SERVER__METRICS_TOKEN": "a-metrics-token-for-the-test",
        "NODO_RTC__TCP_MAX_CONNECTIONS_PER_IP": "4",
    })
    yield n
    n.stop()


async def test_slow_and_idle_http_clients_are_disconnected(tight):
    # Slowloris: a request head that never ends.
    r, w = await open_conn(tight.http)
    w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await w.drain()
    start = time.monotonic()
    closed, _ = await closed_within(r, 6)
    assert closed, "a client trickling its headers kept its connection"
    assert time.monotonic() - start >= 1.5
    w.close()

    # Connected and silent.
    r, w = await open_conn(tight.http)
    closed, _ = await closed_within(r, 6)
    assert closed, "a silent connection stayed open"
    w.close()

    # Kept alive after a response, then idle.
    r, w = await open_conn(tight.http)
    w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await w.drain()
    closed, got = await closed_within(r, 6)
    assert got.startswith(b"HTTP/1.1 200"), got
    assert closed, "an idle kept-alive connection stayed open"
    w.close()

    # A body that stalls: the request ends instead of waiting forever.
    r, w = await open_conn(tight.http)
    w.write(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"user")
    await w.drain()
    closed, got = await closed_within(r, 8)
    assert closed or got.startswith(b"HTTP/1.1 4"), f"a stalled body held its request: {got!r}"
    w.close()

    await assert_still_serves(tight)


async def test_connection_caps_per_address_and_overall(tight):
    held = []
    # Six open connections from 127.0.0.1 are allowed, the seventh is not.
    for _ in range(6):
        held.append(await open_conn(tight.http))
    r, w = await open_conn(tight.http)
    closed, got = await closed_within(r, 3)
    assert closed
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), got
    assert b"retry-after: 5" in head.lower()
    assert b'"error":"too_many_connections"' in body
    w.close()

    # Another address still gets in, up to the overall cap of ten.
    for _ in range(4):
        held.append(await open_conn(tight.http, "127.0.0.2"))
    r, w = await open_conn(tight.http, "127.0.0.3")
    closed, got = await closed_within(r, 3)
    assert closed and got.startswith(b"HTTP/1.1 503"), got
    w.close()

    # Closing them frees every place.
    for _, hw in held:
        hw.close()
    await asyncio.sleep(0.3)
    await assert_still_serves(tight)


async def test_open_websockets_count_against_the_cap(tight):
    async with aiohttp.ClientSession() as s:
        sockets = []
        for _ in range(6):
            sockets.append(await s.ws_connect(f"{tight.url}/socket.io/?EIO=4&transport=websocket"))
        async with s.get(f"{tight.http_url}/healthz") as resp:
            assert resp.status == 503
            assert resp.headers["retry-after"] == "5"
            assert (await resp.json())["error"] == "too_many_connections"
        for ws in sockets:
            await ws.close()
    await asyncio.sleep(0.3)
    await assert_still_serves(tight)


async def test_oversized_websocket_messages_are_refused(node):
    async with aiohttp.ClientSession() as s:
        # The chat socket: far above the largest chat message.
        ws = await s.ws_connect(f"{node.url}/socket.io/?EIO=4&transport=websocket",
                                max_msg_size=0)
        open_packet = await ws.receive(timeout=5)
        assert open_packet.data.startswith("0{")
        await ws.send_str("40")
        await send_quietly(ws, '42["sendMessage",{"content":"' + "x" * (8 * 1024 * 1024) + '"}]')
        assert await cut_off(ws), "the chat socket took an 8 MiB message"

        # /rtc: a 4 MiB signal frame from a joined participant.
        t = token("big", "hostile-rtc")
        rtc = await s.ws_connect(f"{node.url}/rtc?access_token={t}&protocol=15&auto_subscribe=1",
                                 max_msg_size=0)
        first = await rtc.receive(timeout=10)
        assert first.type == aiohttp.WSMsgType.BINARY  # the join response
        assert await cut_off(rtc, b"\x00" * (4 * 1024 * 1024)), "/rtc took a 4 MiB frame"
    await assert_still_serves(node)


async def test_ice_tcp_floods_are_capped(tight):
    held = []
    for _ in range(4):
        held.append(await open_conn(tight.tcp))
    r, w = await open_conn(tight.tcp)
    closed, _ = await closed_within(r, 3)
    assert closed, "a fifth ICE-TCP connection from one IP stayed open"
    w.close()
    # The held ones never complete ICE: closed at the ICE deadline (10 s).
    results = await asyncio.gather(*(closed_within(hr, 15) for hr, _ in held))
    assert all(c for c, _ in results), "ICE-TCP connections without ICE stayed open"
    for _, hw in held:
        hw.close()
    await assert_still_serves(tight)


async def test_metrics_needs_its_bearer_token(tight):
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{tight.http_url}/metrics") as r:
            assert r.status == 401
            assert r.headers["www-authenticate"] == "Bearer"
            assert (await r.json())["error"] == "unauthorized"
        bad = {"authorization": "Bearer a-metrics-token-for-the-tesT"}
        async with s.get(f"{tight.http_url}/metrics", headers=bad) as r:
            assert r.status == 401
        good = {"authorization": "Bearer a-metrics-token-for-the-test"}
        async with s.get(f"{tight.http_url}/metrics", headers=good) as r:
            assert r.status == 200
            assert "nodo_rooms" in await r.text()
    await assert_still_serves(tight)


async def test_new_connections_per_address_are_rate_limited(tmp_path):
    node = start_node(tmp_path, env={
        "NODO_SERVER__NEW_CONNECTIONS_PER_IP_BURST": "20",
        "NODO_SERVER__NEW_CONNECTIONS_PER_IP_PER_SEC": "5",
    })
    try:
        # A reconnect storm: open and close as fast as possible.
        refused = 0
        for _ in range(40):
            r, w = await open_conn(node.http)
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await w.drain()
            _, got = await closed_within(r, 3)
            w.close()
            if got.startswith(b"HTTP/1.1 503"):
                assert b'"error":"too_many_connections"' in got and b"too fast" in got
                refused += 1
            else:
                assert got.startswith(b"HTTP/1.1 200"), got
        assert 15 <= refused <= 22, f"{refused} of 40 refused with a burst of 20"
        # Another address is not affected.
        r, w = await open_conn(node.http, "127.0.0.2")
        w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await w.drain()
        _, got = await closed_within(r, 3)
        assert got.startswith(b"HTTP/1.1 200"), got
        w.close()
        # The bucket refills: a normal user is served again.
        await asyncio.sleep(4)
        await assert_still_serves(node)
    finally:
        node.stop()
