"""/metrics after real traffic: the counters the benchmarks read move with
media from the Python SDK (packets in and out, forwarded per room), and the
exposition is OpenMetrics text that the Prometheus client's own parser reads."""

import aiohttp
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import start_node

import asyncio

from lk import connect, publish_av, receives_av


async def scrape_until(node, ok, what: str, timeout=20.0) -> dict:
    """Scrapes until `ok(metrics)` holds; the last scrape."""
    deadline = asyncio.get_event_loop().time() + timeout
    while True:
        m = await scrape(node)
        if ok(m):
            return m
        if asyncio.get_event_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {m}")
        await asyncio.sleep(0.2)


async def scrape(node) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{node.http_url}/metrics") as r:
            assert r.status == 200
            assert r.headers["content-type"].startswith("application/openmetrics-text")
            text = await r.text()
    assert text.rstrip().endswith("# EOF")
    out = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            key = sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items()))
            out[key] = sample.value
    return out


async def test_media_counters_move_with_a_call(tmp_path):
    node = start_node(tmp_path, env={"NODO_ROOM__DEPARTURE_TIMEOUT": "1"})
    try:
        await media_counters(node)
    finally:
        node.stop()


async def media_counters(node):
    before = await scrape(node)
    assert before["nodo_rooms"] == 0
    a = await connect(node, "alice", "metrics-room")
    b = await connect(node, "bob", "metrics-room")
    try:
        tone, frames = await publish_av(a)
        await receives_av(b, "alice")

        m = await scrape_until(
            node,
            lambda m: m.get("nodo_rtp_forwarded_packets_total|room=metrics-room", 0) > 100,
            "forwarded packets counted",
        )
        assert m["nodo_rooms"] == 1
        assert m["nodo_participants"] == 2
        assert m["nodo_published_tracks"] == 2
        assert m["nodo_participants_joined_total"] == 2
        assert m["nodo_rtp_received_packets_total|kind=audio"] > 0
        assert m["nodo_rtp_received_packets_total|kind=video"] > 0
        # Everything forwarded went out through the socket (plus RTCP, STUN, DTLS).
        assert m["nodo_udp_sent_packets_total"] >= m["nodo_rtp_forwarded_packets_total|room=metrics-room"]
        assert m["nodo_udp_received_packets_total"] > m["nodo_rtp_received_packets_total|kind=video"]
        assert m["nodo_udp_sent_bytes_total"] > m["nodo_rtp_forwarded_bytes_total|room=metrics-room"]
        tone.stop()
        frames.stop()
    finally:
        await a.disconnect()
        await b.disconnect()

    # A closed room's series go away; node totals stay.
    m = await scrape_until(node, lambda m: m["nodo_rooms"] == 0, "room closed", timeout=30)
    assert not any(k.startswith("nodo_rtp_forwarded_packets_total|room=") for k in m)
    assert m["nodo_udp_sent_packets_total"] > 0


async def test_chat_counters_move_with_messages(node):
    import socketio

    from test_hostile_durability import register

    async with aiohttp.ClientSession() as http:
        alice = await register(http, node, "met_a")
        bob = await register(http, node, "met_b")
    a = socketio.AsyncClient(reconnection=False)
    b = socketio.AsyncClient(reconnection=False)
    got = asyncio.Event()

    @b.on("receiveMessage")
    async def on_message(m):
        got.set()
        return {"ok": True}

    await a.connect(node.http_url, auth={"token": alice["token"]}, transports=["websocket"])
    await b.connect(node.http_url, auth={"token": bob["token"]}, transports=["websocket"])
    try:
        for i in range(5):
            ack = await a.call("sendMessage", {"id": f"met-{i}", "recipientChatPath": bob["id"], "content": "hi"}, timeout=10)
            assert ack.get("ok") is True, ack
        # A resend of an id already stored is counted as a duplicate.
        ack = await a.call("sendMessage", {"id": "met-0", "recipientChatPath": bob["id"], "content": "hi"}, timeout=10)
        assert ack.get("ok") is True, ack
        await asyncio.wait_for(got.wait(), 10)
        m = await scrape_until(node, lambda m: m.get("nodo_chat_confirmations_total", 0) >= 5, "confirmations")
        assert m["nodo_chat_messages_total|outcome=stored"] == 5
        assert m["nodo_chat_messages_total|outcome=duplicate"] == 1
        assert m["nodo_chat_deliveries_total"] >= 5
        assert m["nodo_chat_send_seconds_count"] == 5
        assert m["nodo_chat_sockets"] == 2
        assert m["nodo_chat_receipts_total"] >= 1
    finally:
        await a.disconnect()
        await b.disconnect()
