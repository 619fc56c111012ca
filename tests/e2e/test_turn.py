"""The embedded TURN server: media through it with the official Python SDK
forced relay-only, the protocol's refusals with a hand-built STUN client,
the per-participant cap, TURN/TLS on the HTTPS port, and a call from a
network namespace where only TCP to the HTTPS port gets through."""

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import impair
from livekit import rtc

from conftest import ROOT, start_node
from browser import BrowserClient
from lk import connect, publish_av, receives_av, token
from turnutil import (
    ALLOCATE, NONCE, REALM, XOR_RELAYED_ADDRESS, StreamTurn, UdpTurn, attr, build, hostport, listeners,
    make_ca, mint, parse_xor_address, tls_connect,
)

RELAY_ONLY = rtc.RoomOptions(
    auto_subscribe=True,
    single_peer_connection=False,
    rtc_config=rtc.RtcConfiguration(ice_transport_type=rtc.IceTransportType.TRANSPORT_RELAY),
)


async def selected_local_candidates(room: rtc.Room) -> list:
    """The local candidate of each transport's selected pair (publisher and subscriber)."""
    stats = await room.get_rtc_stats()
    out = []
    for report in (stats.publisher_stats, stats.subscriber_stats):
        by_id = {getattr(s, s.WhichOneof("stats")).rtc.id: s for s in report}
        for s in report:
            if s.WhichOneof("stats") != "transport" or not s.transport.transport.selected_candidate_pair_id:
                continue
            pair = by_id[s.transport.transport.selected_candidate_pair_id].candidate_pair.candidate_pair
            out.append(by_id[pair.local_candidate_id].local_candidate.candidate)
    return out


# --- (a) media through TURN/UDP ------------------------------------------------

@pytest.mark.parametrize("in_process", ["true", "false"])
async def test_relay_only_participants_exchange_audio_and_video_over_turn_udp(tmp_path, in_process):
    """Both relay paths to the SFU: handed over in process (the default) and through the kernel."""
    node = start_node(tmp_path, env={"NODO_TURN__IN_PROCESS": in_process})
    t0 = time.monotonic()
    a = b = None
    sources = []
    try:
        a = await connect(node, "alice", "turn-room", options=RELAY_ONLY)
        b = await connect(node, "bob", "turn-room", options=RELAY_ONLY)
        sources += await publish_av(a)
        sources += await publish_av(b)
        await receives_av(b, "alice")
        await receives_av(a, "bob")
        print(f"# relay-only call (in_process={in_process}): both received audio+video "
              f"{time.monotonic() - t0:.1f} s after the first connect")
        turn_udp = hostport(listeners(node)["turn_udp"])
        for who, room in (("alice", a), ("bob", b)):
            cands = await selected_local_candidates(room)
            assert len(cands) == 2, f"{who}: expected a publisher and a subscriber transport, got {cands}"
            for c in cands:
                assert c.candidate_type == rtc.stats.IceCandidateType.RELAY, f"{who} not relayed: {c}"
                assert c.relay_protocol == rtc.stats.IceServerTransportProtocol.TRANSPORT_UDP, c
                assert c.url.startswith(f"turn:{turn_udp[0]}:{turn_udp[1]}"), c.url
    finally:
        for s in sources:
            s.stop()
        for r in (a, b):
            if r:
                await r.disconnect()
        node.stop()


# --- (b) the protocol, refusals and bad input ------------------------------------

def test_turn_udp_protocol_refusals_and_garbage(node):
    ports = listeners(node)
    server = hostport(ports["turn_udp"])
    media_ip, media_port = hostport(ports["rtc_udp"])
    now = int(time.time())

    c = UdpTurn(server)
    try:
        # No credentials: 401 with the realm and a nonce to sign with.
        m = c.challenge()
        assert m.error[0] == 401, m
        assert m.text(REALM) == "nodo" and m.text(NONCE), m

        # A Nodo username signed with a wrong password.
        username, password = mint("PA_turntest", now + 300)
        c.login(username, "not-the-password")
        m = c.allocate()
        assert m.error and m.error[0] == 401, m
        assert XOR_RELAYED_ADDRESS not in m.attrs

        # A username whose expiry has passed, correctly signed: refused with the reason.
        old_user, old_pass = mint("PA_turntest", now - 60)
        c.login(old_user, old_pass)
        m = c.allocate()
        assert m.error == (401, "credential expired"), m

        # A username signed by another secret (forged) gets nowhere either.
        forged_user, forged_pass = mint("PA_turntest", now + 300, secret="guess")
        c.login(forged_user, forged_pass)
        assert c.allocate().error[0] == 401

        # Valid: an allocation on the node's own address.
        c.login(username, password)
        m = c.allocate()
        assert m.error is None, m
        relayed_ip, relayed_port = parse_xor_address(m.attrs[XOR_RELAYED_ADDRESS])
        assert relayed_ip == media_ip and relayed_port > 0

        # Permissions and channels only toward the SFU's media sockets.
        m = c.create_permission("10.1.2.3")
        assert m.error and m.error[0] == 403, m
        m = c.channel_bind(0x4000, "10.1.2.3", 5000)
        assert m.error and m.error[0] == 403, m
        m = c.create_permission(media_ip, media_port)
        assert m.error is None, m
        m = c.channel_bind(0x4001, media_ip, media_port)
        assert m.error is None, m

        # Garbage: not STUN, truncated, lying lengths, bad attributes, a bad
        # MESSAGE-INTEGRITY, ChannelData on an unbound channel, an oversized datagram.
        header_only, _ = build(ALLOCATE, [], fingerprint=False)
        lying = bytearray(header_only)
        lying[2:4] = (400).to_bytes(2, "big")
        bad_attr = header_only[:2] + (8).to_bytes(2, "big") + header_only[4:] + b"\x00\x19\xff\xff" + b"\0" * 4
        signed, _ = build(ALLOCATE, [attr(0x0006, username.encode()), attr(REALM, b"nodo"), attr(NONCE, c.nonce.encode())],
                          key=b"0123456789abcdef")
        junk = [b"", b"\x00", b"GET / HTTP/1.1\r\n\r\n", os.urandom(19), header_only[:12], bytes(lying), bad_attr,
                signed, b"\x4f\xff\x00\x10" + os.urandom(16), b"\x40\x00\xff\xff" + os.urandom(8),
                os.urandom(1400), b"\xff" * 2000]
        for j in junk * 5:
            c.send_raw(j)
        for _ in range(200):
            c.send_raw(os.urandom(64))

        # Still answering, the existing allocation still alive, HTTP still up.
        m = c.create_permission(media_ip, media_port)
        assert m.error is None, m
        d = UdpTurn(server)
        try:
            assert d.challenge().error[0] == 401
        finally:
            d.close()
        assert node.proc.poll() is None, "node exited:\n" + "".join(node.lines[-30:])
        with urllib.request.urlopen(f"{node.http_url}/rtc/validate?access_token={token('x', 'r')}") as r:
            assert r.status == 200
    finally:
        c.close()


# --- (c) the per-participant cap --------------------------------------------------

def test_third_allocation_for_one_participant_is_refused(tmp_path):
    node = start_node(tmp_path, env={"NODO_TURN__MAX_ALLOCATIONS_PER_PARTICIPANT": "2"})
    clients = []
    try:
        server = hostport(listeners(node)["turn_udp"])
        username, password = mint("PA_capped", int(time.time()) + 300)
        for _ in range(3):
            c = UdpTurn(server)
            clients.append(c)
            c.challenge()
            c.login(username, password)
        first, second, third = (c.allocate() for c in clients)
        assert first.error is None and second.error is None, (first, second)
        assert third.error and third.error[0] == 508, third
        deadline = time.monotonic() + 3  # the log is read by another thread
        while not any("at the cap" in l and "PA_capped" in l for l in node.lines):
            assert time.monotonic() < deadline, "no log line for the refusal"
            time.sleep(0.05)

        # Another participant is not affected; a released allocation frees a slot.
        other = UdpTurn(server)
        clients.append(other)
        other.challenge()
        other.login(*mint("PA_other", int(time.time()) + 300))
        assert other.allocate().error is None
        assert clients[0].refresh(0).error is None
        deadline = time.monotonic() + 5
        while (m := clients[2].allocate()).error and time.monotonic() < deadline:
            time.sleep(0.2)
        assert m.error is None, f"slot not freed after a release: {m}"
    finally:
        for c in clients:
            c.close()
        node.stop()


# --- TURN/TLS on the HTTPS port, at the protocol level -------------------------------

def test_turn_over_tls_on_the_https_port(tmp_path):
    certs = make_ca(tmp_path / "pki", names=("nodo.test",))
    node = start_node(tmp_path, "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]),
                      "--https-port", "0", "--http-redirect-port", "0")
    try:
        ports = listeners(node)
        https = hostport(ports["https"])
        media_ip, media_port = hostport(ports["rtc_udp"])
        username, password = mint("PA_tls", int(time.time()) + 300)
        # By ALPN (RFC 7443) and, without ALPN, by the first byte.
        for alpn in (["stun.turn"], None):
            with tls_connect(https, certs["ca"], "nodo.test", alpn) as s:
                c = StreamTurn(s)
                assert c.challenge().error[0] == 401
                c.login(username, password)
                m = c.allocate()
                assert m.error is None, (alpn, m)
                assert parse_xor_address(m.attrs[XOR_RELAYED_ADDRESS])[0] == media_ip
                assert c.create_permission("10.1.2.3").error[0] == 403
                assert c.create_permission(media_ip, media_port).error is None
        # The dedicated TURN/TLS port too.
        with tls_connect(hostport(ports["turn_tls"]), certs["ca"], "nodo.test") as s:
            c = StreamTurn(s)
            assert c.challenge().error[0] == 401
        # A TURN/TLS client that sends bytes that are neither STUN nor ChannelData is dropped.
        with tls_connect(https, certs["ca"], "nodo.test", ["stun.turn"]) as s:
            s.sendall(b"\x00\x03\x00\x00" + b"\xff" * 16 + b"\xc0" * 64)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except (ConnectionError, ssl.SSLError):
                pass
            except TimeoutError:
                pytest.fail("the node kept a TURN/TLS stream of garbage open")
        # HTTP on the same port still works.
        with tls_connect(https, certs["ca"], "nodo.test", ["http/1.1"]) as s:
            s.sendall(b"GET /rtc/validate HTTP/1.1\r\nHost: nodo.test\r\nConnection: close\r\n\r\n")
            head = s.recv(200)
            assert head.startswith(b"HTTP/1.1 401"), head
    finally:
        node.stop()


# --- a strict network: only TCP to the HTTPS port ------------------------------------

NETNS = ROOT / "tests" / "netns"


def strict_net_unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip netns`, no nftables), or None."""
    return impair.unavailable()


def remove_stale_namespaces(script: str):
    """Namespaces left by a run that was killed before its cleanup (named after its pid)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    for name in names:
        if name.startswith("nds") and name[3:].isdigit() and not Path(f"/proc/{name[3:]}").exists():
            subprocess.run([script, "down", name], capture_output=True)


@pytest.fixture
def strict_net():
    """A namespace for the client, joined to this one by a veth pair; removed even on failure."""
    why = strict_net_unavailable()
    if why:
        pytest.skip(f"strict-network test skipped: {why}")
    # Packages, not the environment: missing ones fail the test.
    for tool, pkg in (("nft", "nftables"), ("certutil", "libnss3-tools"), ("node", "nodejs")):
        assert shutil.which(tool), f"`{tool}` not found: install Debian's {pkg}"
    assert (ROOT / "tests" / "js" / "node_modules" / "playwright-core").exists(), "run `npm ci` in tests/js"
    script = str(NETNS / "strict-net.sh")
    remove_stale_namespaces(script)
    pid = os.getpid()
    k = pid % 250 + 1
    net = {"ns": f"nds{pid}", "host": f"10.77.{k}.1", "client": f"10.77.{k}.2", "name": "nodo.test",
           "script": script}
    subprocess.run([script, "down", net["ns"]], check=True)
    try:
        subprocess.run([script, "up", net["ns"], net["host"], net["client"], net["name"]], check=True,
                       capture_output=True, text=True)
        yield net
    finally:
        subprocess.run([script, "down", net["ns"]], check=True)


async def test_call_from_a_network_that_only_allows_tcp_to_the_https_port(tmp_path, strict_net):
    """Chromium in a namespace where all UDP and all TCP but to the HTTPS port
    is dropped joins with the node's own ICE servers and default policy; it
    and a participant outside receive each other's audio and video, the
    browser's media over TURN/TLS on the HTTPS port."""
    net = strict_net
    certs = make_ca(tmp_path / "pki", names=(net["name"],))
    node = start_node(tmp_path, "--bind", net["host"], "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"]),
                      "--https-port", "0", "--http-redirect-port", "0")
    browser = None
    outside = None
    sources = []
    try:
        https_port = hostport(listeners(node)["https"])[1]
        subprocess.run([net["script"], "firewall", net["ns"], net["host"], str(https_port)], check=True)

        outside = await connect(node, "outside", "strict")
        sources += await publish_av(outside)

        browser = await BrowserClient.start(f"wss://{net['name']}:{https_port}", token("inside", "strict"),
                                            "outside", certs["ca"], tmp_path, netns=net["ns"])

        joined = await browser.event("joined", 30)
        assert joined["state"] == "connected", joined
        # The outside participant receives the browser's camera and microphone ...
        await receives_av(outside, "inside")
        # ... and the browser the outside participant's, over TURN/TLS to the HTTPS port.
        media = await browser.event("media", 45)
        print(f"# strict network: browser joined in {joined['ms']} ms, first remote frame "
              f"{media['firstFrameMs']} ms after room.connect(); selected {media['selected']}")
        assert media["inbound"].get("video", {}).get("frames", 0) > 5, media
        assert media["inbound"].get("audio", {}).get("packets", 0) > 20, media
        # One transport in the default single-peer-connection mode (v1), two in v0.
        assert len(media["selected"]) in (1, 2), media
        for s in media["selected"]:
            assert s["type"] == "relay" and s["relayProtocol"] == "tls", s
            assert s["url"] == f"turns:{net['name']}:{https_port}?transport=tcp", s

        # The firewall did its part: the browser tried UDP (TURN/UDP, host
        # candidates) and other TCP ports, and all of it was dropped.
        counters = json.loads(subprocess.run([net["script"], "counters", net["ns"]], check=True,
                                             capture_output=True, text=True).stdout)
        packets = {c["counter"]["name"]: c["counter"]["packets"] for c in counters["nftables"] if "counter" in c}
        print(f"# dropped in the namespace: {packets}")
        assert packets["udp_out"] > 0, packets

        await browser.close()
    finally:
        for s in sources:
            s.stop()
        if outside:
            await outside.disconnect()
        if browser:
            await browser.kill()
        node.stop()
