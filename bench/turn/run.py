#!/usr/bin/env python3
"""CPU cost per relayed packet: Nodo's TURN relay (in-process hand-off and
kernel path) side by side with coturn, on loopback. Run through run.sh, which
puts it in a network namespace of its own so the kernel's UDP counters count
only this benchmark.

Each point starts a fresh server pinned to core 0, runs turngen.py pinned to
core 1 (Allocate, ChannelBind, then ChannelData at a fixed rate: a warm-up,
then the measured window), and stops the server. Servers alternate point by
point, in an order rotated every round; the table shows medians over rounds.

Where the relayed packets go:
  nodo-*  the SFU's own media socket (rtc_udp), the only peer Nodo's relays
          reach; the SFU drops these unknown packets (no ICE session has that
          source), and that drop is part of Nodo's cost.
  coturn  a sink socket on loopback (turngen.py sink).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "turngen.py")
ROOT = os.path.dirname(os.path.dirname(HERE))
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
SERVERS = ["nodo-inproc", "nodo-kernel", "coturn"]
# Lines Nodo logs (at trace/debug for nodo::turn::server) when it loses a packet.
NODO_LOSS = {
    "inbox_full": "turn inbox full",
    "relay_send_error": "relay send:",
    "refused": "relay to a peer that is not the media node refused",
}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


class Nodo:
    def __init__(self, binary, tmp, in_process):
        self.name = "nodo-inproc" if in_process else "nodo-kernel"
        data = tempfile.mkdtemp(dir=tmp, prefix="nodo-data-")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NODO_TURN__IN_PROCESS": "true" if in_process else "false",
            # Only the TURN actor's loss paths; library logs stay off (src/serve.rs).
            "NODO_LOG__LEVEL": "info,nodo::turn::server=trace",
        }
        cmd = ["taskset", "-c", "0", binary, "serve", "--dev", "--http-port", "0", "--rtc-udp-port", "0",
               "--rtc-tcp-port", "0", "--turn-udp-port", "0", "--data-dir", data]
        self.proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.pid = self.proc.pid  # taskset execs nodo: same pid
        self.losses = dict.fromkeys(NODO_LOSS, 0)
        self.lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"rtc_udp=(\S+) .*turn_udp=(\S+)", line)
            if m:
                self.peer, self.turn = m.group(1), m.group(2)
                break
            self.lines.append(line)
        else:
            line = ""
        if not line:
            self.proc.kill()
            raise SystemExit("nodo did not start:\n" + "".join(self.lines))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.auth = "nodo"

    def _read(self):
        for line in self.proc.stdout:
            for key, text in NODO_LOSS.items():
                if text in line:
                    self.losses[key] += 1

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(2)
        return {}


class Coturn:
    name = "coturn"

    def __init__(self, tmp, sink_mode):
        port = free_port()
        self.turn = f"127.0.0.1:{port}"
        d = tempfile.mkdtemp(dir=tmp, prefix="coturn-")
        cmd = ["taskset", "-c", "0", "turnserver", "-n", "--no-cli", "--lt-cred-mech", "--use-auth-secret",
               "--static-auth-secret=secret", "--realm", "nodo", "--listening-ip", "127.0.0.1",
               "--listening-port", str(port), "--relay-ip", "127.0.0.1", "--min-port", "49152",
               "--max-port", "65535", "--allow-loopback-peers", "--no-tls", "--no-dtls",
               "--no-software-attribute", "--userdb", os.path.join(d, "turndb"),
               "--pidfile", os.path.join(d, "turnserver.pid"), "--log-file", os.path.join(d, "turn.log"),
               "--simple-log", "--no-stdout-log"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        subprocess.run([sys.executable, GEN, "probe", "--server", self.turn], check=True)
        sink_port = free_port()
        self.peer = f"127.0.0.1:{sink_port}"
        self.sink = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, GEN, "sink", "--port", str(sink_port), "--mode", sink_mode],
            stdout=subprocess.PIPE, text=True)
        if self.sink.stdout.readline().strip() != "ready":
            raise SystemExit("sink did not start")
        self.auth = "coturn"
        self.losses = {}

    def stop(self):
        self.sink.send_signal(signal.SIGTERM)
        out = json.loads(self.sink.stdout.readline())
        self.sink.wait()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return out


def start(name, args, tmp):
    if name == "coturn":
        return Coturn(tmp, args.sink)
    return Nodo(args.nodo_copy, tmp, name == "nodo-inproc")


def send(server, size, rate, warmup, seconds):
    cmd = ["taskset", "-c", "1", sys.executable, GEN, "send", "--server", server.turn, "--peer", server.peer,
           "--auth", server.auth, "--size", str(size), "--rate", str(rate), "--warmup", str(warmup),
           "--seconds", str(seconds), "--pid", str(server.pid)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def point(name, size, rate, args, tmp):
    server = start(name, args, tmp)
    time.sleep(0.5)  # start-up work out of the way
    g = send(server, size, rate, args.warmup, args.seconds)
    sink = server.stop()
    w0, w1 = g["window"]
    dt = w1["t"] - w0["t"]
    n = g["sent_window"]
    user = (w1["server"][0] - w0["server"][0]) * TICK_US
    sys_ = (w1["server"][1] - w0["server"][1]) * TICK_US
    gen_cpu = (sum(w1["gen"]) - sum(w0["gen"])) * TICK_US
    # Core 0 busy (elapsed - idle): the server's time plus what the kernel spends
    # there outside any process, chiefly entering and leaving idle around each
    # sleep of the server, and interrupts.
    core0 = dt * 1e6 - (w1["idle"][0] - w0["idle"][0]) * TICK_US
    # Core 1 busy time not the generator's: something else ran there (the idle
    # sink uses nothing), e.g. a build on the machine. Ticks: +-2 % or so.
    core1 = dt * 1e6 - (w1["idle"][1] - w0["idle"][1]) * TICK_US
    other = max(0.0, core1 - gen_cpu) / (dt * 1e6)
    # Time some task waited for a CPU (PSI), for the JSON only: the spinning
    # generator makes it a few % even on a quiet machine.
    stall = (w1["stall"] - w0["stall"]) / (dt * 1e6) if w0["stall"] is not None else float("nan")
    sent = g["sent"]
    b, a = g["before"], g["after"]
    turn_port, peer_port = server.turn.split(":")[1], server.peer.split(":")[1]
    d_in = a["udp"]["InDatagrams"] - b["udp"]["InDatagrams"]
    drops_turn = a["drops"][turn_port] - b["drops"][turn_port]
    drops_peer = a["drops"][peer_port] - b["drops"][peer_port]
    at_turn = sent - drops_turn  # loopback loses nothing else on the way in
    # Datagrams the kernel put on a socket other than the TURN port's.
    beyond = d_in - at_turn
    row = {
        "server": name, "size": size, "rate": rate, "achieved": n / dt,
        "us": (user + sys_) / n, "user": user / n, "sys": sys_ / n, "core0_us": core0 / n,
        "other": other, "stall": stall,
        "sleeps": (w1["switches"][0] - w0["switches"][0]) / n,
        "preempted": (w1["switches"][1] - w0["switches"][1]) / n,
        "server_load": (user + sys_) / (dt * 1e6),
        "gen_load": gen_cpu / (dt * 1e6),
        "sent": sent, "drops_turn_socket": drops_turn, "kernel_beyond_turn": beyond,
        "losses": dict(server.losses), "loadavg": loadavg(), "window": g["window"],
    }
    if name == "coturn":
        row["delivered"] = sink["packets"] / sent
        row["how"] = f"sink socket got {sink['packets']} (read {sink['read']}, dropped when full {sink['dropped']})"
    elif name == "nodo-kernel":
        # Relay socket -> SFU socket crosses the kernel: the namespace's counter sees it.
        row["delivered"] = beyond / sent
        row["how"] = f"SFU socket got {beyond} from the kernel, dropped {drops_peer} (socket full)"
    else:
        # In process nothing crosses the kernel after the TURN socket: what the TURN
        # socket took and the actor did not drop was handed to the SFU.
        lost = sum(server.losses.values())
        row["delivered"] = (at_turn - lost) / sent
        row["how"] = (f"TURN socket took {at_turn}, actor dropped {lost}, "
                      f"kernel saw {beyond} datagrams beyond the TURN socket (expected 0)")
    return row


def tracer(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0


def verify(args, tmp):
    """Counts, with gdb, the calls of the TURN actor's `route` (one per packet it
    puts on its way: relayed data and its own answers) while 2,000 ChannelData go
    through each Nodo mode. Slow (every call traps), so never during a measurement."""
    if not (shutil.which("gdb") and shutil.which("nm")):
        print("verify: gdb or nm missing, skipped")
        return
    syms = subprocess.run(["nm", args.nodo_copy], stdout=subprocess.PIPE, text=True).stdout
    m = re.search(r" [tT] (_ZN4nodo4turn6server5Actor5route17h[0-9a-f]+E)$", syms, re.M)
    if not m:
        print("verify: symbol nodo::turn::server::Actor::route not found, skipped")
        return
    script = os.path.join(tmp, "gdb.cmd")
    with open(script, "w") as f:
        f.write("set pagination off\nset confirm off\nhandle SIGWINCH stop print nopass\n"
                f"break *{m.group(1)}\ncommands\nsilent\ncontinue\nend\n"
                "continue\ninfo breakpoints\ndetach\nquit\n")
    for name in ("nodo-inproc", "nodo-kernel"):
        server = start(name, args, tmp)
        gdb = subprocess.Popen(["gdb", "-q", "-batch", "-p", str(server.pid), "-x", script],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and tracer(server.pid) == 0:
            time.sleep(0.1)
        time.sleep(1)  # attached; the breakpoint is set right after
        g = send(server, 160, 1000, 0, 2)
        time.sleep(0.5)
        os.kill(server.pid, signal.SIGWINCH)  # ignored by nodo; gdb stops on it and reports
        out = gdb.communicate(timeout=30)[0]
        server.stop()
        hits = re.search(r"already hit (\d+) time", out)
        hits = int(hits.group(1)) if hits else None
        b, a = g["before"], g["after"]
        beyond = a["udp"]["InDatagrams"] - b["udp"]["InDatagrams"] - g["sent"]
        expect = g["sent"] + g["control_replies"]
        ok = "OK" if hits == expect else "MISMATCH"
        print(f"verify {name}: Actor::route called {hits} times for {g['sent']} ChannelData + "
              f"{g['control_replies']} answers to the client = {expect} [{ok}]; kernel carried "
              f"{beyond} of them to the SFU socket")


def fmt_table(rows, args):
    out = []
    head = ("server", "size B", "rate/s", "sent/s", "CPU us/pkt (min-max)", "user", "sys", "core 0 us/pkt",
            "server load", "sleeps/pkt", "delivered", "core 1 shared")
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    groups = {}
    for r in rows:
        groups.setdefault((r["size"], r["rate"], r["server"]), []).append(r)
    med = {}
    for size in args.sizes:
        for rate in args.rates:
            for name in args.servers:
                rs = groups.get((size, rate, name))
                if not rs:
                    continue
                rs = sorted(rs, key=lambda r: r["us"])
                mid = rs[(len(rs) - 1) // 2] if len(rs) % 2 else None
                us = statistics.median(r["us"] for r in rs)
                user = mid["user"] if mid else statistics.median(r["user"] for r in rs)
                sys_ = mid["sys"] if mid else statistics.median(r["sys"] for r in rs)
                med[(size, rate, name)] = us
                med[(size, rate, name, "core0")] = statistics.median(r.get("core0_us", float("nan")) for r in rs)
                spread = f" ({rs[0]['us']:.2f}-{rs[-1]['us']:.2f})" if len(rs) > 1 else ""
                out.append(
                    f"| {name} | {size} | {rate} | {statistics.median(r['achieved'] for r in rs):.0f} | "
                    f"**{us:.2f}**{spread} | {user:.2f} | {sys_:.2f} | "
                    f"{statistics.median(r.get('core0_us', float('nan')) for r in rs):.2f} | "
                    f"{100 * statistics.median(r['server_load'] for r in rs):.0f} % | "
                    f"{statistics.median(r['sleeps'] for r in rs):.2f} | "
                    f"{min(r['delivered'] for r in rs):.4f} | "
                    f"{100 * max(r['other'] for r in rs):.0f} % |")
    out.append("")
    pairs = [("nodo-inproc", "coturn"), ("nodo-kernel", "coturn"), ("nodo-inproc", "nodo-kernel")]
    pairs = [p for p in pairs if p[0] in args.servers and p[1] in args.servers]
    if pairs:
        out.append("Ratios of the medians, server CPU (and core 0 busy time):")
        out.append("")
        out.append("| size B | rate/s | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |")
        out.append("|" + "---|" * (2 + len(pairs)))
        for size in args.sizes:
            for rate in args.rates:
                cells = []
                for a, b in pairs:
                    if (size, rate, a) in med and (size, rate, b) in med:
                        cells.append(f"{med[(size, rate, a)] / med[(size, rate, b)]:.2f} "
                                     f"({med[(size, rate, a, 'core0')] / med[(size, rate, b, 'core0')]:.2f})")
                    else:
                        cells.append("-")
                out.append(f"| {size} | {rate} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sizes", default="1200,160", help="relayed payload bytes, comma-separated")
    p.add_argument("--rates", default="5000,20000,50000,100000", help="packets per second, comma-separated")
    p.add_argument("--seconds", type=float, default=15, help="measured window per point")
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--nodo", default=os.path.join(ROOT, "target", "release", "nodo"))
    p.add_argument("--sink", choices=["idle", "read"], default="idle", help="coturn's peer socket (see turngen.py)")
    p.add_argument("--no-verify", action="store_true", help="skip the gdb check of Nodo's relay path")
    p.add_argument("--json", help="also write every point here")
    p.add_argument("--table", metavar="JSON", help="only print the table of a run saved with --json")
    args = p.parse_args()
    if args.table:
        with open(args.table) as f:
            rows = json.load(f)
        uniq = lambda k: list(dict.fromkeys(r[k] for r in rows))
        args.sizes, args.rates, args.servers = uniq("size"), uniq("rate"), uniq("server")
        args.servers = [s for s in SERVERS if s in args.servers]
        print(fmt_table(rows, args))
        return
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.rates = [int(x) for x in args.rates.split(",")]
    args.servers = args.servers.split(",")
    for s in args.servers:
        if s not in SERVERS:
            raise SystemExit(f"unknown server {s}")
    if os.cpu_count() < 2:
        raise SystemExit("needs two cores (server on 0, load on 1)")
    netns = os.environ.get("TURN_BENCH_IN_NETNS") == "1"
    if not netns:
        print("warning: not in a network namespace of its own (run.sh does that as root): "
              "the UDP counters include every other UDP packet of this host")
    tmp = tempfile.mkdtemp(prefix="turn-bench-")
    # A copy, so a rebuild during the run does not swap binaries between points.
    if any(s.startswith("nodo") for s in args.servers):
        args.nodo_copy = os.path.join(tmp, "nodo")
        shutil.copy2(args.nodo, args.nodo_copy)
        st = os.stat(args.nodo)
        print(f"nodo: {args.nodo} ({time.strftime('%Y-%m-%d %H:%M', time.localtime(st.st_mtime))}, "
              f"{st.st_size // 1024} KiB)")
    if "coturn" in args.servers:
        v = subprocess.run(["turnserver", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(f"coturn: {v.stdout.strip().splitlines()[-1]}")
    print(f"load average at start: {loadavg()}; {args.rounds} rounds x {len(args.sizes) * len(args.rates)} points"
          f" x {len(args.servers)} servers, {args.seconds:g} s windows")
    try:
        if not args.no_verify and any(s.startswith("nodo") for s in args.servers):
            verify(args, tmp)
        rows = []
        for r in range(args.rounds):
            order = args.servers[r % len(args.servers):] + args.servers[: r % len(args.servers)]
            for size in args.sizes:
                for rate in args.rates:
                    for name in order:
                        row = point(name, size, rate, args, tmp)
                        row["round"] = r + 1
                        rows.append(row)
                        flag = f" (core 1 shared: {100 * row['other']:.0f} %!)" if row["other"] > 0.05 else ""
                        print(f"round {r + 1} {name:11} {size:5} B {rate:6}/s: sent {row['achieved']:7.0f}/s, "
                              f"{row['us']:6.2f} us/pkt ({row['user']:.2f} user + {row['sys']:.2f} sys), "
                              f"core 0 {row['core0_us']:.2f} us/pkt, {row['sleeps']:.2f} sleeps/pkt, "
                              f"delivered {row['delivered']:.4f}: {row['how']}; load {row['loadavg']}{flag}",
                              flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        print(f"\nload average at end: {loadavg()}\n")
        print(fmt_table(rows, args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
