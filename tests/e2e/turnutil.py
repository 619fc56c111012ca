"""A tiny STUN/TURN client (RFC 8489 / RFC 8656) for protocol-level tests,
plus helpers for the TURN end-to-end tests: Nodo's credential formula, the
listening line's TURN ports, and a test CA made with openssl.

Messages are built by hand so a test can send exactly what it means to:
a request, optionally signed (MESSAGE-INTEGRITY with the long-term key
MD5(username:realm:password)) and FINGERPRINTed; answers are parsed into
`Msg` with the attributes the tests look at."""

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import socket
import ssl
import struct
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = 0x2112A442

# Methods
BINDING, ALLOCATE, REFRESH, CREATE_PERMISSION, CHANNEL_BIND = 0x001, 0x003, 0x004, 0x008, 0x009
# Classes
REQUEST, INDICATION, SUCCESS, ERROR = 0b00, 0b01, 0b10, 0b11

# Attributes
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_TRANSPORT = 0x0019
XOR_MAPPED_ADDRESS = 0x0020
FINGERPRINT = 0x8028

UDP = 17


def msg_type(method: int, cls: int) -> int:
    """Interleaves the class bits into the method (RFC 8489 §5)."""
    return (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) \
        | ((cls & 1) << 4) | ((cls & 2) << 7)


def split_type(t: int) -> tuple[int, int]:
    method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)
    cls = ((t >> 4) & 1) | ((t >> 7) & 2)
    return method, cls


def attr(kind: int, value: bytes) -> bytes:
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * pad


def xor_address(ip: str, port: int) -> bytes:
    """XOR-PEER-ADDRESS / XOR-RELAYED-ADDRESS value for an IPv4 address."""
    x_port = port ^ (MAGIC >> 16)
    x_ip = int(ipaddress.IPv4Address(ip)) ^ MAGIC
    return struct.pack("!BBHI", 0, 0x01, x_port, x_ip)


def parse_xor_address(value: bytes) -> tuple[str, int]:
    family, x_port, x_ip = value[1], struct.unpack("!H", value[2:4])[0], struct.unpack("!I", value[4:8])[0]
    assert family == 0x01, "IPv4 only"
    return str(ipaddress.IPv4Address(x_ip ^ MAGIC)), x_port ^ (MAGIC >> 16)


def long_term_key(username: str, realm: str, password: str) -> bytes:
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def build(method: int, attrs: list[bytes], *, cls=REQUEST, key: bytes | None = None,
          fingerprint=True, tid: bytes | None = None) -> tuple[bytes, bytes]:
    """A whole STUN message; returns (bytes, transaction id)."""
    tid = tid or os.urandom(12)
    body = b"".join(attrs)

    def header(length: int) -> bytes:
        return struct.pack("!HHI", msg_type(method, cls), length, MAGIC) + tid

    if key is not None:
        # The HMAC covers the message up to MESSAGE-INTEGRITY, with a length that counts it.
        mac = hmac.new(key, header(len(body) + 24) + body, hashlib.sha1).digest()
        body += attr(MESSAGE_INTEGRITY, mac)
    if fingerprint:
        crc = zlib.crc32(header(len(body) + 8) + body) ^ 0x5354554E
        body += attr(FINGERPRINT, struct.pack("!I", crc))
    return header(len(body)) + body, tid


@dataclass
class Msg:
    method: int
    cls: int
    tid: bytes
    attrs: dict[int, bytes] = field(default_factory=dict)

    @property
    def error(self) -> tuple[int, str] | None:
        v = self.attrs.get(ERROR_CODE)
        if v is None:
            return None
        return (v[2] & 0x7) * 100 + v[3], v[4:].decode("utf-8", "replace")

    def text(self, kind: int) -> str | None:
        v = self.attrs.get(kind)
        return None if v is None else v.decode("utf-8", "replace")

    def __repr__(self):
        names = {v: k for k, v in globals().items() if isinstance(v, int) and k.isupper() and k not in ("MAGIC", "UDP")}
        return f"Msg(method={self.method:#x}, class={self.cls}, error={self.error}, attrs={[names.get(a, hex(a)) for a in self.attrs]})"


def parse(data: bytes) -> Msg:
    t, length, magic = struct.unpack("!HHI", data[:8])
    assert magic == MAGIC, f"not STUN: {data[:20].hex()}"
    assert len(data) >= 20 + length, "truncated STUN message"
    method, cls = split_type(t)
    m = Msg(method, cls, data[8:20])
    pos = 20
    while pos + 4 <= 20 + length:
        kind, n = struct.unpack("!HH", data[pos:pos + 4])
        m.attrs.setdefault(kind, data[pos + 4:pos + 4 + n])
        pos += 4 + n + (4 - n % 4) % 4
    return m


class UdpTurn:
    """A TURN client over one UDP socket (one 5-tuple: one allocation)."""

    def __init__(self, server: tuple[str, int], timeout=3.0):
        self.server = server
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.realm = None
        self.nonce = None
        self.key = None
        self.username = None

    def close(self):
        self.sock.close()

    def send_raw(self, data: bytes):
        self.sock.sendto(data, self.server)

    def message(self, method: int, attrs: list[bytes], sign: bool) -> tuple[bytes, bytes]:
        """A request, signed with the current credentials when there are any."""
        attrs = list(attrs)
        key = None
        if sign and self.key is not None:
            attrs += [attr(USERNAME, self.username.encode()), attr(REALM, self.realm.encode()),
                      attr(NONCE, self.nonce.encode())]
            key = self.key
        return build(method, attrs, key=key)

    def request(self, method: int, attrs: list[bytes], *, sign=True) -> Msg:
        """Sends a request and returns the answer with the same transaction id."""
        data, tid = self.message(method, attrs, sign)
        # Retransmitted like any STUN client over UDP (RFC 8489 §6.2.1): a
        # datagram can be dropped, e.g. when the server's buffer is full.
        deadline = time.monotonic() + self.timeout
        rto = 0.25
        while time.monotonic() < deadline:
            self.send_raw(data)
            resend_at = min(deadline, time.monotonic() + rto)
            rto *= 2
            while (left := resend_at - time.monotonic()) > 0:
                self.sock.settimeout(left)
                try:
                    reply, _ = self.sock.recvfrom(4096)
                except TimeoutError:
                    break
                if reply[:1] < b"\x40" and len(reply) >= 20 and reply[8:20] == tid:
                    m = parse(reply)
                    if m.text(NONCE):
                        self.nonce = m.text(NONCE)
                    return m
        raise TimeoutError(f"no answer from {self.server} within {self.timeout} s")

    def challenge(self) -> Msg:
        """An unauthenticated Allocate: the server answers 401 with REALM and NONCE."""
        m = self.request(ALLOCATE, [attr(REQUESTED_TRANSPORT, bytes([UDP, 0, 0, 0]))], sign=False)
        self.realm = m.text(REALM)
        self.nonce = m.text(NONCE)
        return m

    def login(self, username: str, password: str):
        if self.realm is None:
            self.challenge()
        self.username = username
        self.key = long_term_key(username, self.realm, password)

    def allocate(self) -> Msg:
        m = self.request(ALLOCATE, [attr(REQUESTED_TRANSPORT, bytes([UDP, 0, 0, 0]))])
        if m.error and m.error[0] == 438:  # stale nonce: once more with the new one
            m = self.request(ALLOCATE, [attr(REQUESTED_TRANSPORT, bytes([UDP, 0, 0, 0]))])
        return m

    def create_permission(self, ip: str, port: int = 0) -> Msg:
        return self.request(CREATE_PERMISSION, [attr(XOR_PEER_ADDRESS, xor_address(ip, port))])

    def channel_bind(self, channel: int, ip: str, port: int) -> Msg:
        return self.request(CHANNEL_BIND, [attr(CHANNEL_NUMBER, struct.pack("!HH", channel, 0)),
                                           attr(XOR_PEER_ADDRESS, xor_address(ip, port))])

    def refresh(self, lifetime: int) -> Msg:
        return self.request(REFRESH, [attr(LIFETIME, struct.pack("!I", lifetime))])

    def binding(self) -> Msg:
        return self.request(BINDING, [], sign=False)


class StreamTurn(UdpTurn):
    """The same client over a stream (TLS): messages are self-delimiting."""

    def __init__(self, stream: socket.socket):
        self.sock = stream
        self.realm = self.nonce = self.key = self.username = None
        self._buf = b""

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def request(self, method, attrs, *, sign=True):
        data, tid = self.message(method, attrs, sign)
        self.send_raw(data)
        while True:
            while len(self._buf) < 4 or len(self._buf) < 20 + struct.unpack("!H", self._buf[2:4])[0]:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError("stream closed")
                self._buf += chunk
            n = 20 + struct.unpack("!H", self._buf[2:4])[0]
            frame, self._buf = self._buf[:n], self._buf[n:]
            m = parse(frame)
            if m.tid == tid:
                if m.text(NONCE):
                    self.nonce = m.text(NONCE)
                return m


# --- Nodo's credentials ----------------------------------------------------

def mint(participant: str, expires: int, key="devkey", secret="secret") -> tuple[str, str]:
    """username `<expiry>:<key>:<participant>`, password base64url(HMAC-SHA256(secret, username))."""
    username = f"{expires}:{key}:{participant}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha256).digest()
    return username, base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def listeners(node) -> dict[str, str]:
    """`name=addr` pairs of the node's listening line."""
    for line in node.lines:
        if "nodo listening" in line:
            return dict(re.findall(r"(\w+)=(\S+)", line))
    raise AssertionError("no listening line")


def hostport(s: str) -> tuple[str, int]:
    host, port = s.rsplit(":", 1)
    return host, int(port)


# --- a test CA ---------------------------------------------------------------

def make_ca(dir: Path, names=("nodo.test",), ips=()) -> dict[str, Path]:
    """A CA and a server certificate signed by it for `names` (and `ips`)."""
    dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (dir / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Nodo Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}")
    san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{i}" for i in ips])
    ext = dir / "ext.cnf"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)
    return {"ca": ca, "cert": cert, "key": key}


def tls_connect(addr: tuple[str, int], ca: Path, server_name: str, alpn: list[str] | None = None,
                timeout=5.0) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(addr, timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=server_name)
