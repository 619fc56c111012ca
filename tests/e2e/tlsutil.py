"""Helpers for the TLS tests: a throwaway CA and leaves (Python `cryptography`),
a node started with TLS flags, plain-socket TLS probes, and Pebble (Debian's
ACME test server) with pebble-challtestsrv as its DNS."""

import datetime
import http.client
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import Node, start_node

# ---------------------------------------------------------------- certificates


class CA:
    """A self-signed CA that issues server certificates."""

    def __init__(self, directory: Path, name: str = "Nodo Test CA"):
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def leaf(self, cert_path: Path, key_path: Path, cn: str = "localhost", names=("localhost",),
             ips=("127.0.0.1",), days: int = 20) -> x509.Certificate:
        """Issues a server certificate; writes its PEM and key (key first, each
        by rename, so a watcher never reads a half-written file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        atomic_write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
        atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------- TLS probes


def client_context(cafile: Path | str | None) -> ssl.SSLContext:
    """Verifies against `cafile` only (or not at all when None)."""
    if cafile is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=str(cafile))


def peer_cert(addr: str, server_name: str | None = "localhost", cafile=None, timeout=5.0) -> x509.Certificate:
    """The certificate a fresh TLS connection to `addr` (host:port) gets. With
    `cafile` the chain (and the name, when `server_name` is set) is verified;
    `server_name=None` sends no SNI."""
    host, port = addr.rsplit(":", 1)
    ctx = client_context(cafile)
    if server_name is None:
        ctx.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))


def common_name(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def request(base: str, method: str, path: str, *, cafile=None, token: str | None = None, body=None,
            headers: dict | None = None, connect_to: str | None = None, timeout=10.0):
    """One HTTP(S) request without following redirects: (status, headers, body).
    `base` is http(s)://host:port; `connect_to` (host:port) overrides where
    the TCP connection goes while keeping base's host for SNI and Host."""
    scheme, rest = base.split("://", 1)
    host, port = rest.rstrip("/").rsplit(":", 1)
    ctx = client_context(cafile) if scheme == "https" else None
    if ctx:
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    if connect_to:
        h, p = connect_to.rsplit(":", 1)
        sock = socket.create_connection((h, int(p)), timeout=timeout)
        conn.sock = ctx.wrap_socket(sock, server_hostname=host) if ctx else sock
    hdrs = dict(headers or {})
    payload = None
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    if body is not None:
        payload = json.dumps(body).encode()
        hdrs["content-type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = data.decode(errors="replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed
    finally:
        conn.close()


# ---------------------------------------------------------------- nodes

FIELD_RE = re.compile(r"(\w+)=(\S+)")


def listening(node: Node) -> dict:
    """The fields of the start-up line; `tls` keeps its whole tail."""
    for line in node.lines:
        if "nodo listening " in line:
            head, _, tls = line.strip().partition(" tls=")
            fields = dict(FIELD_RE.findall(head))
            fields["tls"] = tls
            return fields
    raise AssertionError("no listening line:\n" + "".join(node.lines))


def start_tls_node(tmp_path: Path, *extra: str, env: dict | None = None) -> Node:
    """A node with TLS flags; adds `.https` and `.redirect` (host:port) and
    `.tls` (the tls= part of the start-up line)."""
    node = start_node(tmp_path, *extra, env=env)
    f = listening(node)
    node.https = f.get("https")
    node.redirect = f.get("http_redirect")
    node.tls = f["tls"]
    return node


def https_base(node: Node, host: str = "localhost") -> str:
    return f"https://{host}:{node.https.rsplit(':', 1)[1]}"


def wait_log(node: Node, pattern: str, timeout: float = 30.0, count: int = 1, start: int = 0) -> list[str]:
    """Waits until `count` log lines (from index `start`) match `pattern`."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        hits = [l for l in node.lines[start:] if rx.search(l)]
        if len(hits) >= count:
            return hits
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count}x /{pattern}/ in {timeout} s; log:\n" + "".join(node.lines[-60:]))
        if node.proc.poll() is not None:
            raise AssertionError(f"node exited {node.proc.returncode} waiting for /{pattern}/:\n" + "".join(node.lines))
        time.sleep(0.1)


def register(base: str, name: str, cafile=None) -> tuple[str, str]:
    """A new user over `base`; returns (id, session token)."""
    status, _, body = request(base, "POST", "/api/auth/register", cafile=cafile, body={
        "username": f"{name}{time.time_ns() % 10**9}", "name": name.title(), "password": "tls test password"})
    assert status == 201, body
    return body["user"]["id"], body["token"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- Pebble

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")


class Pebble:
    """Pebble (the ACME directory) and pebble-challtestsrv as its DNS server,
    which answers every A query with 127.0.0.1 (and no AAAA), so any test
    domain resolves to this machine. Pebble's own HTTPS uses `ca`'s leaf."""

    def __init__(self, directory: Path, ca: CA, *, tls_port: int, http_port: int, validity_secs: int | None = None,
                 env: dict | None = None):
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.dir_port, self.mgmt_port, dns_port, chall_mgmt = free_port(), free_port(), free_port(), free_port()
        cert, key = directory / "pebble.pem", directory / "pebble.key"
        ca.leaf(cert, key, cn="pebble", names=("localhost", "pebble"), ips=("127.0.0.1",))
        cfg = {
            "listenAddress": f"127.0.0.1:{self.dir_port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if validity_secs:
            cfg["certificateValidityPeriod"] = validity_secs
        (directory / "pebble.json").write_text(json.dumps({"pebble": cfg}))
        self.lines: list[str] = []
        self.procs = []
        self.procs.append(self._spawn("dns", [
            CHALLTESTSRV, "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
            "-management", f"127.0.0.1:{chall_mgmt}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
        ], {}))
        self.procs.append(self._spawn("pebble", [
            PEBBLE, "-config", str(directory / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}", "-strict=false",
        ], {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", **(env or {})}))
        self.directory = f"https://127.0.0.1:{self.dir_port}/dir"
        deadline = time.monotonic() + 15
        while True:
            try:
                status, _, _ = request(f"https://localhost:{self.dir_port}", "GET", "/dir", cafile=ca.path, timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError("pebble did not start:\n" + "".join(self.lines))
            time.sleep(0.1)

    def _spawn(self, name, cmd, env):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **env})

        def pump():
            for line in proc.stdout:
                self.lines.append(f"[{name}] {line}")
                if os.environ.get("NODO_TEST_ECHO"):
                    print(f"[{name}]", line, end="")

        threading.Thread(target=pump, daemon=True).start()
        return proc

    def root(self, path: Path) -> Path:
        """Pebble's issuing root (PEM), written to `path`."""
        status, _, body = request(f"https://localhost:{self.mgmt_port}", "GET", "/roots/0", cafile=self.ca.path)
        assert status == 200, body
        path.write_text(body)
        return path

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
