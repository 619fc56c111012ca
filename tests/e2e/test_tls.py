"""HTTPS: certificate files (verification, HSTS, the redirect port, wss://
URLs, the Python SDK over wss://, reloads, start-up errors, bad clients) and
ACME against Pebble (TLS-ALPN-01 and HTTP-01, renewal, an unreachable
directory). Every certificate is made here; nothing leaves the machine."""

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest
from livekit import rtc

from conftest import nodo_binary
from browser import BrowserClient
from lk import V0, Tone, first_frames, publish_av, receives_av, remote_track, token, wait_for
from tlsutil import (CA, CHALLTESTSRV, PEBBLE, Pebble, common_name, free_port, https_base, peer_cert, register,
                     request, start_tls_node, wait_log)

needs_pebble = pytest.mark.skipif(not (PEBBLE and CHALLTESTSRV), reason="Debian's pebble is not installed")


def file_node(tmp_path, ca: CA, cn="first", *extra, env=None):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf = ca.leaf(cert, key, cn=cn)
    node = start_tls_node(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), "--https-port", "0",
                          "--http-redirect-port", "0", *extra, env=env)
    return node, leaf, cert, key


async def sdk_connect(url: str, jwt: str) -> rtc.Room:
    room = rtc.Room()
    await asyncio.wait_for(room.connect(url, jwt, options=V0), 20)
    return room


async def exchange_audio(url: str, room_name: str, tokens=None):
    """Alice publishes a tone over `url`; Bob, joining after her, must hear it.
    Returns both rooms (connected) and the tone, for more checks."""
    ta, tb = tokens or (token("alice", room_name), token("bob", room_name))
    a = await sdk_connect(url, ta)
    tone = Tone()
    tone.start()
    await a.local_participant.publish_track(tone.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    b = await sdk_connect(url, tb)
    alice = a.local_participant.identity
    audio = await remote_track(b, alice, rtc.TrackKind.KIND_AUDIO)
    frame = await first_frames(audio, rtc.TrackKind.KIND_AUDIO, count=20)
    assert max(abs(s) for s in frame.data) > 1000, "received audio is silent"
    return a, b, tone


# ------------------------------------------------------------ certificate files


async def test_https_from_certificate_files(tmp_path, monkeypatch):
    """HTTPS verifies against the test CA, carries HSTS; the redirect port
    answers 301 to the same path; answers over TLS hand out wss:// URLs; the
    Python SDK joins over wss:// (CA trusted through SSL_CERT_FILE) and
    media flows."""
    ca = CA(tmp_path / "ca")
    node, leaf, _, _ = file_node(tmp_path, ca, "nodo-files-test")
    try:
        assert node.tls.startswith("files:nodo-files-test (valid "), node.tls
        https_port = int(node.https.rsplit(":", 1)[1])
        base = https_base(node)

        # Verified against the CA (SNI localhost, and the IP SAN), with HSTS.
        status, headers, body = request(base, "GET", "/healthz", cafile=ca.path)
        assert status == 200, body
        assert headers.get("strict-transport-security", "").startswith("max-age="), headers
        assert peer_cert(node.https, "localhost", cafile=ca.path).serial_number == leaf.serial_number
        status, _, _ = request(f"https://127.0.0.1:{https_port}", "GET", "/healthz", cafile=ca.path)
        assert status == 200
        # ... and not against another CA.
        with pytest.raises(ssl.SSLCertVerificationError):
            request(base, "GET", "/healthz", cafile=CA(tmp_path / "other-ca").path)
        # The plain port sends no HSTS.
        status, headers, _ = request(f"http://{node.http}", "GET", "/healthz")
        assert status == 200 and "strict-transport-security" not in headers

        # The redirect port: 301 to the same path and query over HTTPS.
        redirect_port = node.redirect.rsplit(":", 1)[1]
        for path in ["/", "/rooms/abc?x=1&y=%20z", "/rtc?access_token=t"]:
            status, headers, _ = request(f"http://localhost:{redirect_port}", "GET", path)
            assert status == 301, (path, status)
            assert headers["location"] == f"https://localhost:{https_port}{path}", headers
        status, _, _ = request(f"http://localhost:{redirect_port}", "GET", "/.well-known/acme-challenge/nothing")
        assert status == 404

        # Tokens fetched over HTTPS carry wss://; over plain HTTP, ws://.
        alice_id, alice_t = register(base, "alice", ca.path)
        bob_id, bob_t = register(base, "bob", ca.path)
        status, _, room = request(base, "POST", "/rooms", cafile=ca.path, token=alice_t,
                                  body={"name": "tls", "members": [bob_id]})
        assert status == 201, room
        status, _, ja = request(base, "POST", f"/rooms/{room['id']}/join", cafile=ca.path, token=alice_t)
        assert status == 200, ja
        assert ja["url"] == f"wss://localhost:{https_port}", ja
        status, _, jb = request(base, "POST", f"/rooms/{room['id']}/join", cafile=ca.path, token=bob_t)
        assert jb["url"] == ja["url"]
        status, _, lt = request(base, "POST", "/livekit/token", cafile=ca.path, token=alice_t,
                                body={"roomName": room["roomName"]})
        assert status == 200 and lt["url"] == ja["url"], lt
        status, _, plain = request(f"http://{node.http}", "POST", f"/rooms/{room['id']}/join", token=alice_t)
        assert plain["url"] == f"ws://{node.http}", plain
        # On the HTTPS port a client's X-Forwarded-Proto cannot turn wss:// into ws://.
        status, _, forged = request(base, "POST", f"/rooms/{room['id']}/join", cafile=ca.path, token=alice_t,
                                    headers={"x-forwarded-proto": "http"})
        assert forged["url"].startswith("wss://"), forged

        # The SDK over wss://, with the test CA as its only extra root.
        monkeypatch.setenv("SSL_CERT_FILE", str(ca.path))
        a, b, tone = await exchange_audio(ja["url"], room["roomName"], (ja["token"], jb["token"]))
        tone.stop()
        await b.disconnect()
        await a.disconnect()
    finally:
        node.stop()


async def test_sdk_refuses_an_untrusted_certificate(tmp_path, monkeypatch):
    """The SDK really verifies: with another CA in SSL_CERT_FILE, wss:// fails."""
    ca = CA(tmp_path / "ca")
    node, _, _, _ = file_node(tmp_path, ca)
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(CA(tmp_path / "other-ca").path))
        room = rtc.Room()
        t0 = time.monotonic()
        with pytest.raises(Exception):
            await asyncio.wait_for(room.connect(https_base(node).replace("https", "wss"), token("eve", "r"),
                                                options=V0), 30)
        print(f"# the SDK gave up after {time.monotonic() - t0:.1f} s")
        assert wait_log(node, r"https connection closed: TLS handshake failed \(SNI localhost\)", 5)
    finally:
        node.stop()


async def test_certificate_reload_on_change_and_on_sighup(tmp_path, monkeypatch):
    """New files are picked up within a few seconds, SIGHUP reloads at once;
    a participant connected before stays connected through both."""
    ca = CA(tmp_path / "ca")
    node, first, cert, key = file_node(tmp_path, ca, "first")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.path))
    url = https_base(node).replace("https", "wss")
    a = await sdk_connect(url, token("alice", "reload"))
    try:
        assert peer_cert(node.https, cafile=ca.path).serial_number == first.serial_number

        # 1. Replace the files: new connections get the new certificate.
        t0 = time.monotonic()
        second = ca.leaf(cert, key, cn="second")
        assert second.serial_number != first.serial_number
        while peer_cert(node.https, cafile=ca.path).serial_number != second.serial_number:
            assert time.monotonic() - t0 < 6, "the new certificate was not served within 6 s:\n" + "".join(node.lines[-20:])
            await asyncio.sleep(0.2)
        print(f"# file change picked up after {time.monotonic() - t0:.1f} s")
        wait_log(node, r"TLS certificate reloaded \(the files changed\): second \(valid \d+ more days\)", 5)

        # 2. SIGHUP: files changed behind the watcher's back (same mtimes).
        stamps = [(p, os.stat(p).st_mtime_ns) for p in (cert, key)]
        third = ca.leaf(cert, key, cn="third")
        for p, ns in stamps:
            os.utime(p, ns=(ns, ns))
        await asyncio.sleep(2.5)  # more than one watch interval: nothing changes on its own
        assert peer_cert(node.https, cafile=ca.path).serial_number == second.serial_number
        node.proc.send_signal(signal.SIGHUP)
        wait_log(node, r"TLS certificate reloaded \(SIGHUP\): third", 5)
        assert peer_cert(node.https, cafile=ca.path).serial_number == third.serial_number

        # 3. A broken pair is refused; the current certificate stays.
        ca.leaf(tmp_path / "other.pem", tmp_path / "other.key", cn="other")
        os.replace(tmp_path / "other.key", key)
        wait_log(node, r"TLS certificate not reloaded \(the files changed\), the previous one stays in use: .*"
                       + str(cert) + r".*" + str(key), 6)
        assert peer_cert(node.https, cafile=ca.path).serial_number == third.serial_number
        # ... until a good pair is back.
        fourth = ca.leaf(cert, key, cn="fourth")
        wait_log(node, r"TLS certificate reloaded \(the files changed\): fourth", 6)
        assert peer_cert(node.https, cafile=ca.path).serial_number == fourth.serial_number
        failed = [l for l in node.lines if "TLS certificate not reloaded" in l]
        print(f"# the broken pair was logged {len(failed)} times before it was fixed")

        # Alice's signal connection (opened under the first certificate) is alive:
        # she hears of Bob, who joins under the fourth.
        assert a.connection_state == rtc.ConnectionState.CONN_CONNECTED
        b = await sdk_connect(url, token("bob", "reload"))
        await wait_for(lambda: "bob" in a.remote_participants, 10, "alice sees bob")
        await b.disconnect()
        assert node.proc.poll() is None
    finally:
        await a.disconnect()
        node.stop()


def test_redirect_keeps_a_bare_ipv6_host(tmp_path):
    ca = CA(tmp_path / "ca")
    node, _, _, _ = file_node(tmp_path, ca)
    try:
        https_port = node.https.rsplit(":", 1)[1]
        status, headers, _ = request(f"http://{node.redirect}", "GET", "/p", headers={"host": "[::1]:8080"})
        assert headers["location"] == f"https://[::1]:{https_port}/p"
        status, headers, _ = request(f"http://{node.redirect}", "GET", "/p", headers={"host": "[::1]"})
        assert status == 301 and headers["location"] == f"https://[::1]:{https_port}/p", headers
    finally:
        node.stop()


@pytest.mark.parametrize("case", ["missing_cert", "missing_key", "not_pem", "mismatched_key"])
def test_bad_certificate_files_stop_startup(tmp_path, case):
    ca = CA(tmp_path / "ca")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.leaf(cert, key)
    named = [cert]
    if case == "missing_cert":
        cert = tmp_path / "nope.pem"
        named = [cert]
    elif case == "missing_key":
        key = tmp_path / "nope.key"
        named = [key]
    elif case == "not_pem":
        cert.write_text("this is not a certificate\n")
    else:
        ca.leaf(tmp_path / "b.pem", tmp_path / "b.key")
        key = tmp_path / "b.key"
        named = [cert, key]
    cmd = [str(nodo_binary()), "serve", "--dev", "--http-port", "0", "--rtc-udp-port", "0", "--rtc-tcp-port", "0",
           "--data-dir", str(tmp_path / "data"), "--tls-cert", str(cert), "--tls-key", str(key),
           "--https-port", "0", "--http-redirect-port", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "nodo listening" not in out, out
    for p in named:
        assert str(p) in out, out


async def test_bad_clients_on_the_https_port(tmp_path):
    """Plain HTTP, garbage and a silent (half-open) TCP connection on the HTTPS
    port are logged at info and dropped; the node keeps serving; a client
    without SNI still gets the certificate."""
    ca = CA(tmp_path / "ca")
    node, leaf, _, _ = file_node(tmp_path, ca)
    host, port = node.https.rsplit(":", 1)
    try:
        silent = socket.create_connection((host, int(port)))
        t0 = time.monotonic()
        # Plain HTTP, binary garbage, and a TLS record header followed by nonsense.
        for junk in [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 2, b"\x16\x03\x01\x00\x05hello"]:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
        wait_log(node, r"INFO .*https connection closed: not a TLS ClientHello", 5, count=3)

        # No SNI: the file certificate is served and verifies (by IP SAN / chain).
        assert peer_cert(node.https, None, cafile=ca.path).serial_number == leaf.serial_number
        status, _, _ = request(f"https://127.0.0.1:{port}", "GET", "/healthz", cafile=ca.path)
        assert status == 200
        # The half-open connection costs nothing; it is dropped after the handshake timeout.
        wait_log(node, r"INFO .*https connection closed: no TLS ClientHello within", 15)
        print(f"# silent connection dropped after {time.monotonic() - t0:.1f} s")
        silent.close()
        status, _, _ = request(https_base(node), "GET", "/healthz", cafile=ca.path)
        assert status == 200
        assert node.proc.poll() is None
        assert not [l for l in node.lines if " ERROR " in l or (" WARN " in l and "development mode" not in l)]
    finally:
        node.stop()


# ------------------------------------------------------------ ACME (Pebble)


def acme_node(tmp_path, pebble: Pebble, domain: str, https_port: int, redirect_port: int = 0, env=None):
    return start_tls_node(tmp_path, "--domain", domain, "--acme-email", "ops@example.org",
                          "--https-port", str(https_port), "--http-redirect-port", str(redirect_port),
                          "--acme-directory", pebble.directory, "--acme-ca-file", str(pebble.ca.path), env=env)


@needs_pebble
async def test_acme_tls_alpn_01_issue_serve_and_renew(tmp_path, monkeypatch):
    """The node answers Pebble's TLS-ALPN-01 validation on its HTTPS port,
    serves the certificate (chained to Pebble's root) for the domain, the SDK
    joins over wss://<domain> with that root trusted and so does livekit-client
    in Chromium (audio and video both ways); Pebble issues 30 s
    certificates, so rustls-acme renews after two thirds (~20 s) and the new
    one is served while the participants stay connected."""
    ca = CA(tmp_path / "ca")
    https_port = free_port()
    pebble = Pebble(tmp_path / "pebble", ca, tls_port=https_port, http_port=free_port(), validity_secs=30)
    domain = "localhost"  # the SDK must resolve it too (media.nodo.test below exists only in Pebble's DNS)
    node = None
    try:
        node = acme_node(tmp_path, pebble, domain, https_port)
        assert node.tls == f"acme:{domain}", node.tls
        assert node.https == f"127.0.0.1:{https_port}"
        wait_log(node, r"ACME: DeployedNewCert", 30)
        assert wait_log(node, r"answering an ACME TLS-ALPN-01 validation", 1)
        root = pebble.root(tmp_path / "pebble-root.pem")

        cert1 = peer_cert(node.https, domain, cafile=root)  # verifies the chain to Pebble's root and the name
        assert cert1.issuer != ca.cert.subject
        assert common_name(cert1) == domain
        assert "Pebble Intermediate CA" in cert1.issuer.rfc4514_string()
        with pytest.raises(ssl.SSLCertVerificationError):
            peer_cert(node.https, domain, cafile=ca.path)
        status, headers, _ = request(f"https://{domain}:{https_port}", "GET", "/healthz", cafile=root)
        assert status == 200 and "strict-transport-security" in headers
        # The URL handed out is the domain's (no --public-url), even asked over plain HTTP by IP.
        _, tok = register(f"http://{node.http}", "dora")
        status, _, room = request(f"http://{node.http}", "POST", "/rooms", token=tok, body={"name": "d"})
        status, _, joined = request(f"http://{node.http}", "POST", f"/rooms/{room['id']}/join", token=tok)
        assert status == 200 and joined["url"] == f"wss://{domain}:{https_port}", joined

        monkeypatch.setenv("SSL_CERT_FILE", str(root))
        a, b, tone = await exchange_audio(f"wss://{domain}:{https_port}", "acme-room")
        try:
            # Renewal: a second DeployedNewCert and a new serial on new connections.
            t0 = time.monotonic()
            wait_log(node, r"ACME: DeployedNewCert", 45, count=2)
            cert2 = peer_cert(node.https, domain, cafile=root)
            assert cert2.serial_number != cert1.serial_number
            assert cert2.not_valid_after_utc > cert1.not_valid_after_utc
            print(f"# renewed {time.monotonic() - t0:.1f} s after media started; "
                  f"first valid until {cert1.not_valid_after_utc:%H:%M:%S}, second from {cert2.not_valid_before_utc:%H:%M:%S}")
            assert a.connection_state == rtc.ConnectionState.CONN_CONNECTED
            assert b.connection_state == rtc.ConnectionState.CONN_CONNECTED
            c = await sdk_connect(f"wss://{domain}:{https_port}", token("carol", "acme-room"))
            await wait_for(lambda: "carol" in a.remote_participants, 10, "alice sees carol after renewal")
            await c.disconnect()
            # livekit-client in Chromium, trusting Pebble's root (NSS), exchanges audio
            # and video over wss://<domain> with a Python participant.
            sources = await publish_av(c := await sdk_connect(f"wss://{domain}:{https_port}", token("dan", "acme-room")))
            browser = await BrowserClient.start(f"wss://{domain}:{https_port}", token("chrome", "acme-room"),
                                                "dan", root, tmp_path)
            try:
                joined = await browser.event("joined", 30)
                assert joined["state"] == "connected", joined
                await receives_av(c, "chrome")
                media = await browser.event("media", 45)
                assert media["inbound"].get("video", {}).get("frames", 0) > 5, media
                assert media["inbound"].get("audio", {}).get("packets", 0) > 20, media
                await browser.close()
            finally:
                await browser.kill()
                for s in sources:
                    s.stop()
                await c.disconnect()
        finally:
            tone.stop()
            await b.disconnect()
            await a.disconnect()
        assert not [l for l in node.lines if "ACME failed" in l], "".join(node.lines)
    finally:
        if node:
            node.stop()
        pebble.stop()


@needs_pebble
def test_acme_http_01_on_the_redirect_port(tmp_path):
    """With tls.acme_challenge = http-01 Pebble validates on the redirect
    port; the domain (resolved by Pebble's DNS) is served by SNI and is the
    host of the URLs the node hands out."""
    ca = CA(tmp_path / "ca")
    https_port, redirect_port = free_port(), free_port()
    # tlsPort points at a closed port: only HTTP-01 can succeed.
    pebble = Pebble(tmp_path / "pebble", ca, tls_port=free_port(), http_port=redirect_port)
    domain = "media.nodo.test"
    node = None
    try:
        node = acme_node(tmp_path, pebble, domain, https_port, redirect_port,
                         env={"NODO_TLS__ACME_CHALLENGE": "http-01"})
        wait_log(node, r"ACME: DeployedNewCert", 30)
        assert not [l for l in node.lines if "TLS-ALPN-01" in l]
        # Pebble resolved the domain through its DNS (127.0.0.1) and fetched the token from the redirect port.
        probe = f"Attempting to validate w/ HTTP: http://{domain}:{redirect_port}/.well-known/acme-challenge/"
        assert [l for l in pebble.lines if probe in l], "".join(pebble.lines)
        root = pebble.root(tmp_path / "pebble-root.pem")
        cert = peer_cert(node.https, domain, cafile=root)
        assert common_name(cert) == domain
        assert "Pebble Intermediate CA" in cert.issuer.rfc4514_string()
        status, headers, body = request(f"https://{domain}:{https_port}", "GET", "/healthz", cafile=root,
                                        connect_to=node.https)
        assert status == 200 and "strict-transport-security" in headers, body
        # Redirects keep the Host's name.
        status, headers, _ = request(f"http://127.0.0.1:{redirect_port}", "GET", "/x?y=1", headers={"host": domain})
        assert status == 301 and headers["location"] == f"https://{domain}:{https_port}/x?y=1", headers
        # wss://<domain>:<port> in tokens, whatever host or scheme the request came with.
        _, tok = register(f"http://{node.http}", "dora")
        status, _, room = request(f"http://{node.http}", "POST", "/rooms", token=tok, body={"name": "d"})
        assert status == 201, room
        for base, kw in [(f"http://{node.http}", {}),
                         (f"https://{domain}:{https_port}", {"cafile": root, "connect_to": node.https})]:
            status, _, body = request(base, "POST", f"/rooms/{room['id']}/join", token=tok, **kw)
            assert status == 200 and body["url"] == f"wss://{domain}:{https_port}", (base, body)
    finally:
        if node:
            node.stop()
        pebble.stop()


def test_acme_directory_unreachable(tmp_path):
    """A closed port as the directory: the node starts, keeps serving plain
    HTTP, and logs why ACME failed (and retries)."""
    closed = free_port()
    ca = CA(tmp_path / "ca")
    node = start_tls_node(tmp_path, "--domain", "localhost", "--https-port", "0", "--http-redirect-port", "0",
                          "--acme-directory", f"https://127.0.0.1:{closed}/dir", "--acme-ca-file", str(ca.path))
    try:
        line = wait_log(node, r"ACME failed", 15)[0]
        assert f"127.0.0.1:{closed}" in line and "Connection refused" in line, line
        status, _, body = request(f"http://{node.http}", "GET", "/healthz")
        assert status == 200, body
        # No certificate yet: a TLS client is refused, the port stays open.
        with pytest.raises(ssl.SSLError):
            peer_cert(node.https, "localhost")
        wait_log(node, r"INFO .*https connection closed: TLS handshake failed \(SNI localhost\): .*no server certificate", 5)
        assert node.proc.poll() is None
    finally:
        node.stop()
