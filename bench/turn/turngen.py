#!/usr/bin/env python3
"""TURN/UDP load generator and peer sink for bench/turn/run.py (standard library only).

send: allocates a UDP relay with a long-term credential (Nodo's or coturn's
      TURN REST flavour), binds channel 0x4000 to the peer, then sends
      ChannelData at a fixed rate: a warm-up, then a measured window. At the
      window's edges it reads the server's CPU (/proc/PID/stat), its own, the
      cores' idle time (/proc/stat) and the UDP counters of the network namespace
      (/proc/net/snmp, /proc/net/udp); it prints one JSON line.
sink: a UDP socket that counts what reaches it (by default without reading
      during the run); prints the count on SIGTERM.

The payload of each relayed datagram starts with 0x80 (an RTP header's first
byte), so a media server classifies it the way it classifies real media.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import struct
import sys
import time

MAGIC = 0x2112A442
ALLOCATE, CHANNEL_BIND, BINDING = 0x0003, 0x0009, 0x0001
A_USERNAME, A_MI, A_ERROR, A_CHANNEL, A_LIFETIME = 0x0006, 0x0008, 0x0009, 0x000C, 0x000D
A_PEER, A_REALM, A_NONCE, A_RELAYED, A_TRANSPORT = 0x0012, 0x0014, 0x0015, 0x0016, 0x0019
CHANNEL = 0x4000


# ---------------------------------------------------------------- STUN/TURN


def attr(kind, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * pad


def xor_addr(addr, txid):
    ip, port = addr
    raw = socket.inet_aton(ip)
    xip = bytes(a ^ b for a, b in zip(raw, struct.pack("!I", MAGIC)))
    return struct.pack("!BBH", 0, 1, port ^ (MAGIC >> 16)) + xip


def parse_xor_addr(value):
    port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC >> 16)
    ip = bytes(a ^ b for a, b in zip(value[4:8], struct.pack("!I", MAGIC)))
    return socket.inet_ntoa(ip), port


def message(method, attrs, key=None):
    """A request; signed with MESSAGE-INTEGRITY (HMAC-SHA1) when `key` is given."""
    txid = os.urandom(12)
    body = b"".join(attrs(txid) if callable(attrs) else attrs)
    if key is not None:
        length = len(body) + 24
        head = struct.pack("!HHI", method, length, MAGIC) + txid
        mac = hmac.new(key, head + body, hashlib.sha1).digest()
        body += attr(A_MI, mac)
    return struct.pack("!HHI", method, len(body), MAGIC) + txid + body, txid


def parse(data):
    kind, length, magic = struct.unpack("!HHI", data[:8])
    if magic != MAGIC:
        raise ValueError("not STUN")
    txid, attrs, i = data[8:20], {}, 20
    while i + 4 <= 20 + length:
        t, n = struct.unpack("!HH", data[i : i + 4])
        attrs.setdefault(t, data[i + 4 : i + 4 + n])
        i += 4 + n + (4 - n % 4) % 4
    return kind, txid, attrs


def credential(auth, secret):
    """(username, password) for a credential valid one hour."""
    expiry = int(time.time()) + 3600
    if auth == "nodo":  # src/turn/credentials.rs: base64url(HMAC-SHA256(secret, username))
        user = f"{expiry}:devkey:PA_bench{os.getpid()}"
        mac = hmac.new(secret.encode(), user.encode(), hashlib.sha256).digest()
        return user, base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    # coturn --use-auth-secret (TURN REST API): base64(HMAC-SHA1(secret, username))
    user = f"{expiry}:bench{os.getpid()}"
    mac = hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()
    return user, base64.b64encode(mac).decode()


class Client:
    def __init__(self, server, auth, secret):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(server)
        self.sock.settimeout(1.0)
        self.user, self.password = credential(auth, secret)
        self.realm = self.nonce = self.key = None
        self.replies = 0  # STUN answers received (each one a message the server routed)

    def transact(self, msg, txid):
        for _ in range(5):
            self.sock.send(msg)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    data = self.sock.recv(2048)
                except socket.timeout:
                    break
                try:
                    kind, rtx, attrs = parse(data)
                except (ValueError, struct.error):
                    continue
                if rtx == txid:
                    self.replies += 1
                    return kind, attrs
        raise SystemExit("no answer from the TURN server")

    def signed(self, method, extra):
        def attrs(txid):
            return (
                extra(txid)
                + [attr(A_USERNAME, self.user.encode()), attr(A_REALM, self.realm), attr(A_NONCE, self.nonce)]
            )

        return message(method, attrs, self.key)

    def allocate(self):
        transport = [attr(A_TRANSPORT, bytes([17, 0, 0, 0])), attr(A_LIFETIME, struct.pack("!I", 600))]
        kind, attrs = self.transact(*message(ALLOCATE, transport))
        if kind != 0x0113 or A_NONCE not in attrs:
            raise SystemExit(f"unexpected answer to the first Allocate: {kind:#06x}")
        self.realm, self.nonce = attrs[A_REALM], attrs[A_NONCE]
        self.key = hashlib.md5(f"{self.user}:{self.realm.decode()}:{self.password}".encode()).digest()
        kind, attrs = self.transact(*self.signed(ALLOCATE, lambda _t: list(transport)))
        if kind != 0x0103:
            raise SystemExit(f"Allocate refused: {kind:#06x} {attrs.get(A_ERROR, b'')[4:]!r}")
        return parse_xor_addr(attrs[A_RELAYED])

    def channel_bind(self, peer):
        extra = lambda txid: [attr(A_CHANNEL, struct.pack("!HH", CHANNEL, 0)), attr(A_PEER, xor_addr(peer, txid))]
        kind, attrs = self.transact(*self.signed(CHANNEL_BIND, extra))
        if kind != 0x0109:
            raise SystemExit(f"ChannelBind refused: {kind:#06x} {attrs.get(A_ERROR, b'')[4:]!r}")


# ---------------------------------------------------------------- counters


def proc_cpu(pid):
    """utime, stime of a whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2 :].split()
    return int(fields[11]), int(fields[12])


def switches(pid):
    """Context switches of all the threads of a process (voluntary ones are
    mostly sleeps: a thread that ran out of work and will be woken)."""
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except OSError:
            pass
    return vol, invol


def idle_ticks():
    """Idle + iowait ticks of every core (/proc/stat)."""
    out = []
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                cols = line.split()
                out.append(int(cols[4]) + int(cols[5]))
    return out


def snmp_udp():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], (int(x) for x in rows[1][1:])))


def udp_drops(ports):
    """Kernel drops of the UDP sockets bound to these ports (summed per port)."""
    out = {str(p): 0 for p in ports}
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            port = str(int(cols[1].split(":")[1], 16))
            if port in out:
                out[port] += int(cols[-1])
    return out


def cpu_stall():
    """Microseconds some runnable task waited for a CPU (PSI), or None."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


def snapshot(pid, ports):
    return {
        "t": time.monotonic(),
        "stall": cpu_stall(),
        "server": proc_cpu(pid),
        "switches": switches(pid),
        "gen": proc_cpu(os.getpid()),
        "idle": idle_ticks(),
        "udp": snmp_udp(),
        "drops": udp_drops(ports),
    }


# ---------------------------------------------------------------- commands


def send(args):
    server = (args.server.split(":")[0], int(args.server.split(":")[1]))
    peer = (args.peer.split(":")[0], int(args.peer.split(":")[1]))
    client = Client(server, args.auth, args.secret)
    relayed = client.allocate()
    client.channel_bind(peer)
    sock = client.sock
    sock.setblocking(False)
    payload = b"\x80" + bytes(range(256)) * (args.size // 256 + 1)
    packet = struct.pack("!HH", CHANNEL, args.size) + payload[: args.size]
    ports = [server[1], peer[1]]
    blocked = 0
    sent = 0
    before = snapshot(args.pid, ports)  # delivery counters span the whole send
    start = time.perf_counter()
    w_start = start + args.warmup
    end = w_start + args.seconds
    win0 = win1 = None
    sent_at_w0 = 0
    s = sock.send
    while True:
        now = time.perf_counter()
        if win0 is None and now >= w_start:
            win0, sent_at_w0 = snapshot(args.pid, ports), sent
        if now >= end:
            win1 = snapshot(args.pid, ports)
            break
        due = min(int((now - start) * args.rate) + 1, int((end - start) * args.rate))
        while sent < due:
            try:
                s(packet)
            except BlockingIOError:
                blocked += 1
            sent += 1
        # Each packet leaves when it is due: sleep through long gaps, spin
        # through short ones (a sleep overshoots by ~0.1 ms and would send
        # bursts). Core 1 is the generator's alone.
        gap = (sent / args.rate) - (time.perf_counter() - start)
        if gap > 0.0003:
            time.sleep(gap - 0.00015)
    sent_window = sent - sent_at_w0
    time.sleep(args.drain)
    after = snapshot(args.pid, ports)
    json.dump(
        {
            "relayed": f"{relayed[0]}:{relayed[1]}",
            "size": args.size,
            "rate": args.rate,
            "sent": sent - blocked,
            "sent_window": sent_window,
            "send_blocked": blocked,
            "control_replies": client.replies,
            "before": before,
            "window": [win0, win1],
            "after": after,
        },
        sys.stdout,
    )
    print()


def sink(args):
    """Counts what reaches the peer socket. `idle` (the default) never reads
    during the run, so the relay never pays for waking a reader (a remote
    peer costs it no wake-up either): on SIGTERM the queue is drained and
    counted, and the socket's kernel drops (queue full) are added. `read`
    reads and counts as packets arrive."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", args.port))
    count = [0, 0]

    def done(*_):
        sock.setblocking(False)
        while True:
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                break
            count[0] += 1
            count[1] += n
        dropped = udp_drops([args.port])[str(args.port)]
        out = {"read": count[0], "dropped": dropped, "packets": count[0] + dropped, "bytes_read": count[1]}
        print(json.dumps(out), flush=True)
        os._exit(0)

    buf = bytearray(4096)
    signal.signal(signal.SIGTERM, done)
    print("ready", flush=True)
    if args.mode == "idle":
        while True:
            signal.pause()
    recv = sock.recv_into
    while True:
        n = recv(buf)
        count[0] += 1
        count[1] += n


def probe(args):
    """Exit 0 once something answers a STUN Binding request at host:port."""
    host, port = args.server.split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.2)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        msg, _ = message(BINDING, [])
        sock.sendto(msg, (host, int(port)))
        try:
            sock.recv(2048)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers STUN at {args.server}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--server", required=True, help="TURN/UDP address ip:port")
    s.add_argument("--peer", required=True, help="peer the channel is bound to, ip:port")
    s.add_argument("--auth", choices=["nodo", "coturn"], required=True)
    s.add_argument("--secret", default="secret")
    s.add_argument("--size", type=int, default=1200, help="relayed payload bytes (ChannelData is 4 more)")
    s.add_argument("--rate", type=float, default=20000, help="packets per second")
    s.add_argument("--warmup", type=float, default=2)
    s.add_argument("--seconds", type=float, default=15)
    s.add_argument("--drain", type=float, default=0.5, help="seconds to wait before the delivery counters")
    s.add_argument("--pid", type=int, required=True, help="server process whose CPU is read")
    s.set_defaults(fn=send)
    k = sub.add_parser("sink")
    k.add_argument("--port", type=int, required=True)
    k.add_argument("--mode", choices=["idle", "read"], default="idle")
    k.set_defaults(fn=sink)
    b = sub.add_parser("probe")
    b.add_argument("--server", required=True)
    b.add_argument("--timeout", type=float, default=10)
    b.set_defaults(fn=probe)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
