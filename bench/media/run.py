#!/usr/bin/env python3
"""Media benchmark runner: for each N, start a fresh server pinned to CPU 0,
run nodo-loadgen pinned to CPU 1 against it, and print a markdown table.
With `--servers nodo,janus` every round runs each server in turn (the order
alternating round by round), each on a fresh process, and a second table
puts them side by side (medians over rounds, and the ratio).

Builds nothing: it uses target/release/nodo and target/release/nodo-loadgen
(`cargo build --release -p nodo -p nodo-loadgen` first). Each step gets
its own node (data dir in a temp dir, ephemeral ports read from the node's
`nodo listening` line), so RSS per participant starts from a clean process.

Examples:
  bench/media/run.py --scenario A --n 10,50,100,200
  bench/media/run.py --scenario C --n 4,8,16 --seconds 20
  bench/media/run.py --scenario D --n 5,10,20        # N = churn rate, joins/s
  bench/media/run.py --scenario A --n 50 -- --quality low --no-simulcast
  bench/media/run.py --servers nodo,janus --scenario A --n 10,50 --rounds 3
Everything after `--` goes to nodo-loadgen as is. Janus (Debian `janus`,
`apt-get install -y janus`) is started by bench/peers/janus/janus.py.
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "peers", "janus"))
import janus  # noqa: E402  (bench/peers/janus/janus.py)

SERVERS = ("nodo", "janus")


def start_node(nodo, cpu, log_path):
    """Starts a node; returns (process, http address, data dir)."""
    data = tempfile.mkdtemp(prefix="nodo-bench-")
    env = dict(os.environ)
    env.update({
        # One client address opens every connection: lift the per-IP caps.
        "NODO_SERVER__MAX_CONNECTIONS_PER_IP": "0",
        "NODO_SERVER__MAX_CONNECTIONS": "0",
        "NODO_LOG__LEVEL": env.get("NODO_LOG__LEVEL", "warn"),
    })
    cmd = ["taskset", "-c", cpu, nodo, "serve", "--dev", "--http-port", "0",
           "--rtc-udp-port", "0", "--rtc-tcp-port", "0", "--no-turn",
           "--data-dir", data]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited at start; see {log_path}")
        with open(log_path) as f:
            m = re.search(r"nodo listening http=(\S+)", f.read())
        if m:
            return proc, m.group(1), data
        time.sleep(0.1)
    stop_node(proc, data)
    raise RuntimeError(f"node did not print its listening line; see {log_path}")


def stop_node(proc, data):
    janus.stop_process(proc, signal.SIGTERM, data)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def host_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)


def wait_idle(max_wait, limit_pct=15.0):
    """Waits (up to max_wait s) until the host uses less than limit_pct of a
    core for a second; returns the last reading."""
    deadline = time.time() + max_wait
    while True:
        b0, t0 = host_busy_ticks()
        time.sleep(1.0)
        b1, t1 = host_busy_ticks()
        ncpu = os.cpu_count() or 1
        pct = (b1 - b0) * 100.0 * ncpu / max(t1 - t0, 1)
        if pct < limit_pct or time.time() >= deadline:
            return pct
        print(f"waiting for the host to be idle ({pct:.0f}% of a core busy)", file=sys.stderr)


# The node's own drop counters (`/metrics`), read after a run: where packets
# went missing inside the server rather than in the kernel or on the way.
NODE_DROPS = {
    "udp_send": "nodo_udp_send_dropped_packets_total",
    "room_inbox": "nodo_room_inbox_dropped_packets_total",
    "stale_backlog": "nodo_rtp_stale_backlog_dropped_packets_total",
}


# Timeouts the rooms handed to peer connections (each runs all of a
# connection's str0m timers) per datagram the node sent: the per-connection
# work behind each forwarded packet.
NODE_TIMEOUTS = "nodo_peer_timeouts_total"
NODE_SENT = "nodo_udp_sent_packets_total"


def node_drops(http):
    """The node's drop counters since its start (and `timeouts_per_sent`),
    or None if /metrics did not answer."""
    try:
        with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        values[name] = value
    out = {k: int(float(values.get(metric, "0"))) for k, metric in NODE_DROPS.items()}
    sent = float(values.get(NODE_SENT, "0"))
    out["timeouts_per_sent"] = float(values.get(NODE_TIMEOUTS, "0")) / sent if sent else None
    return out


def start_server(a, server, tag, log_dir):
    """Starts `server`; returns (pid, loadgen args, stop function, drop counters
    function: None for a server that has none)."""
    log = os.path.join(log_dir, f"{server}-{tag}.log")
    if server == "janus":
        proc, url, cfg, ip = janus.start(a.server_cpu, free_port(), log)
        return proc.pid, ["--server", "janus", "--url", url, "--local-ip", ip], \
            lambda: janus.stop(proc, cfg), lambda: None
    proc, http, data = start_node(a.nodo, a.server_cpu, log)
    return proc.pid, ["--url", f"http://{http}"], lambda: stop_node(proc, data), \
        lambda: node_drops(http)


def run_step(a, server, n, extra, log_dir, rnd=0):
    tag = f"{a.scenario}-{n}-r{rnd}"
    pid, target, stop, drops = start_server(a, server, tag, log_dir)
    try:
        cmd = ["taskset", "-c", a.loadgen_cpu, a.loadgen, *target,
               "--scenario", a.scenario.lower(),
               "--seconds", str(a.seconds), "--settle", str(a.settle),
               "--server-pid", str(pid)]
        if a.scenario.upper() == "C":
            cmd += ["--m", str(n)]
        elif a.scenario.upper() == "D":
            cmd += ["--ramp-rate", str(n)]
        else:
            cmd += ["--n", str(n), "--ramp-rate", str(a.ramp_rate)]
        if a.m is not None and a.scenario.upper() != "C":
            cmd += ["--m", str(a.m)]
        cmd += extra
        gen_log = os.path.join(log_dir, f"loadgen-{server}-{tag}.log")
        with open(gen_log, "w") as err:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err,
                                 text=True, timeout=a.timeout)
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"loadgen failed ({out.returncode}); see {gen_log}")
        r = json.loads(lines[-1])
        r["server"] = server
        # Whole run (joins and settling included), not the window alone.
        r["server_drops"] = drops()
        return r
    finally:
        stop()


def fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def table(scenario, rows, with_server=False):
    s = scenario.upper()
    head = ["N", "fwd pps", "user µs/pkt", "sys µs/pkt", "srv CPU %", "loss %",
            "NACK", "PLI", "RTX", "lat p50/p99/p99.9/max ms", "audio p50/p99 ms",
            "RSS MB", "RSS/part kB", "gen CPU %", "node drops send/inbox/backlog",
            "node timeouts/sent", "valid"]
    if s == "D":
        head[1:1] = ["joins/s", "CPU ms/join", "TTFM p50/p99 ms"]
    if with_server:
        head[1:1] = ["server"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, r in rows:
        lat = r.get("latency_ms", {})
        aud = r.get("latency_audio_ms", {})
        rss = r.get("server_rss_kb")
        cells = [
            str(n), fmt(r.get("forwarded_pps"), 0),
            fmt(r.get("server_user_us_per_pkt")), fmt(r.get("server_sys_us_per_pkt")),
            fmt(r.get("server_cpu_pct"), 1), fmt(r.get("loss_pct"), 3),
            fmt(r.get("nack")), fmt(r.get("pli")), fmt(r.get("rtx")),
            "/".join(fmt(lat.get(k)) for k in ("p50", "p99", "p999", "max")),
            "/".join(fmt(aud.get(k)) for k in ("p50", "p99")),
            fmt(rss / 1024 if rss else None, 1), fmt(r.get("rss_per_participant_kb"), 0),
            fmt(r.get("loadgen_cpu_pct"), 1),
            "/".join(str(d[k]) for k in NODE_DROPS) if (d := r.get("server_drops")) else "–",
            fmt((r.get("server_drops") or {}).get("timeouts_per_sent")),
            "yes" if r.get("valid") else "no: " + ",".join(r.get("invalid", [])),
        ]
        if s == "D":
            ttfm = r.get("first_media_ms", {})
            cells[1:1] = [fmt(r.get("joins_per_s"), 1), fmt(r.get("cpu_ms_per_join"), 2),
                          "/".join(fmt(ttfm.get(k), 0) for k in ("p50", "p99"))]
        if with_server:
            cells[1:1] = [r.get("server", "?")]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def get(r, path):
    for k in path.split("."):
        r = r.get(k) if isinstance(r, dict) else None
    return r


def median(rs, path):
    v = [x for x in (get(r, path) for r in rs) if isinstance(x, (int, float))]
    return statistics.median(v) if v else None


def total_us(r):
    u, s = r.get("server_user_us_per_pkt"), r.get("server_sys_us_per_pkt")
    return None if u is None or s is None else u + s


# The side-by-side metrics: (header, how to read one result, digits).
COMPARE = [
    ("fwd pps", "forwarded_pps", 0),
    ("µs/pkt user+sys", total_us, 2),
    ("user µs/pkt", "server_user_us_per_pkt", 2),
    ("sys µs/pkt", "server_sys_us_per_pkt", 2),
    ("loss %", "loss_pct", 3),
    ("lat p50 ms", "latency_ms.p50", 2),
    ("lat p99 ms", "latency_ms.p99", 2),
    ("lat p99.9 ms", "latency_ms.p999", 2),
    ("TTFM p50 ms", "first_media_ms.p50", 0),
    ("TTFM p99 ms", "first_media_ms.p99", 0),
    ("RSS/part kB", "rss_per_participant_kb", 0),
    ("CPU ms/join", "cpu_ms_per_join", 2),
]


def compare(scenario, rows, servers):
    """Medians over rounds, servers side by side: `a / b (b/a)`."""
    ns = sorted({n for n, _ in rows})
    by = {(n, sv): [r for m, r in rows if m == n and r.get("server") == sv]
          for n in ns for sv in servers}
    metrics = [c for c in COMPARE if scenario.upper() == "D" or c[0] != "CPU ms/join"]
    head = ["N", "rounds"] + [c[0] for c in metrics] + ["valid"]
    out = [f"{' / '.join(servers)}" + (f" ({servers[1]}/{servers[0]})" if len(servers) == 2 else ""),
           "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in ns:
        cells = [str(n), "/".join(str(len(by[(n, sv)])) for sv in servers)]
        for _, how, digits in metrics:
            vals = []
            for sv in servers:
                rs = by[(n, sv)]
                if callable(how):
                    v = [x for x in map(how, rs) if x is not None]
                    vals.append(statistics.median(v) if v else None)
                else:
                    vals.append(median(rs, how))
            cell = " / ".join(fmt(float(v) if v is not None else None, digits) for v in vals)
            if len(vals) == 2 and vals[0] and vals[1] is not None:
                cell += f" ({vals[1] / vals[0]:.1f}x)"
            cells.append(cell)
        cells.append(" / ".join(
            f"{sum(1 for r in by[(n, sv)] if r.get('valid'))}/{len(by[(n, sv)])}"
            for sv in servers))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    for sv in servers:
        ok = [n for n in ns if by[(n, sv)] and all(r.get("within_capacity") for r in by[(n, sv)])]
        out.append(f"- {sv}: largest N within capacity (loss < 0.1 %, p99 < 20 ms, "
                   f"no kernel drops, in every round): {max(ok) if ok else 'none'}")
    return "\n".join(out)


def runner_args(p, timeout, wait_idle):
    """The flags every runner shares: binaries, CPUs, limits, output."""
    p.add_argument("--nodo", default=os.path.join(ROOT, "target/release/nodo"))
    p.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/nodo-loadgen"))
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--loadgen-cpu", default="1")
    p.add_argument("--timeout", type=float, default=timeout, help="per step, seconds")
    p.add_argument("--wait-idle", type=float, default=wait_idle,
                   help="before each step, wait up to this many seconds for the host "
                        "to be idle (< 15 %% of a core busy)")
    p.add_argument("--json", help="append every result line to this file")
    p.add_argument("--log-dir", help="server and loadgen logs (default: a temp dir)")


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="A", help="A, B, C, D or E")
    p.add_argument("--servers", default="nodo",
                   help="comma-separated: nodo, janus (each round runs them in turn)")
    p.add_argument("--n", default="10,50,100,200",
                   help="comma-separated steps: N (A, B, E), M (C), joins/s (D)")
    p.add_argument("--m", type=int, help="publishers in B")
    p.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--ramp-rate", type=float, default=20.0, help="joins/s while ramping")
    p.add_argument("--rounds", type=int, default=1, help="runs per step (fresh server each)")
    runner_args(p, timeout=900, wait_idle=0)
    a = p.parse_args(argv)
    servers = [x.strip() for x in a.servers.split(",") if x.strip()]
    if not servers or any(sv not in SERVERS for sv in servers):
        sys.exit(f"--servers: pick from {', '.join(SERVERS)}")
    need = [a.loadgen] + ([a.nodo] if "nodo" in servers else [])
    for b in need:
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is missing: cargo build --release -p nodo -p nodo-loadgen")
    log_dir = a.log_dir or tempfile.mkdtemp(prefix="nodo-bench-logs-")
    os.makedirs(log_dir, exist_ok=True)
    rows = []
    for n in [int(x) for x in a.n.split(",") if x.strip()]:
        for rnd in range(a.rounds):
            # Alternate which server goes first, round by round.
            order = servers if rnd % 2 == 0 else servers[::-1]
            for server in order:
                if a.wait_idle > 0:
                    wait_idle(a.wait_idle)
                try:
                    r = run_step(a, server, n, extra, log_dir, rnd)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    print(f"{server} step {n}: {e}", file=sys.stderr)
                    continue
                rows.append((n, r))
                print(json.dumps(r), file=sys.stderr)
                if a.json:
                    with open(a.json, "a") as f:
                        f.write(json.dumps(r) + "\n")
    print(f"\nScenario {a.scenario.upper()}, window {a.seconds:g} s, logs in {log_dir}\n")
    print(table(a.scenario, rows, with_server=len(servers) > 1))
    if len(servers) > 1:
        print()
        print(compare(a.scenario, rows, servers))


if __name__ == "__main__":
    main()
