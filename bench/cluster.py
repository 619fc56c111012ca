#!/usr/bin/env python3
"""What handing signaling over to another node costs: two nodes on one Redis,
the room placed on node A, and nodo-loadgen's participants joining either
through A itself ("direct") or through node B, which pipes every signal
WebSocket to A ("through B"). Media always flows straight to A.

Prints one table: per join path, what the generator saw (joined, loss,
latency, time to first media) and what node B spent (CPU over the window, RSS
per handed-over connection).

  bench/cluster.py [--scenario e --n 300] [--scenario a --n 50] [--seconds 15]

Builds nothing: target/release/nodo and target/release/nodo-loadgen.
Needs Debian's redis-server. Each run gets fresh nodes and a fresh Redis.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return cpu, rss


def start_node(nodo, name, redis_port, data):
    port = free_port()
    env = dict(os.environ, NODO_SERVER__MAX_CONNECTIONS_PER_IP="0", NODO_SERVER__MAX_CONNECTIONS="0",
               NODO_LOG__LEVEL="warn")
    log = open(os.path.join(data, f"{name}.log"), "w")
    proc = subprocess.Popen(
        [nodo, "serve", "--dev", "--http-port", str(port), "--rtc-udp-port", "0", "--rtc-tcp-port", "0",
         "--no-turn", "--data-dir", os.path.join(data, name), "--redis-url", f"redis://127.0.0.1:{redis_port}",
         "--node-id", name, "--node-url", f"http://127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"node {name} did not start; see {data}/{name}.log")


def create_room(port, room):
    sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
    import asyncio
    from livekit import api

    async def go():
        lk = api.LiveKitAPI(url=f"http://127.0.0.1:{port}", api_key="devkey", api_secret="secret")
        try:
            await lk.room.create_room(api.CreateRoomRequest(name=room, empty_timeout=600))
        finally:
            await lk.aclose()
    asyncio.run(go())


def run(a, path):
    data = tempfile.mkdtemp(prefix="nodo-cluster-bench-")
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", data],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes = []
    try:
        time.sleep(0.3)
        na, pa = start_node(a.nodo, "node-a", rport, data)
        nodes.append(na)
        # The room is placed before B exists: A holds it.
        create_room(pa, "bench")
        nb, pb = start_node(a.nodo, "node-b", rport, data)
        nodes.append(nb)
        target = pa if path == "direct" else pb
        cmd = [a.loadgen, "--url", f"http://127.0.0.1:{target}", "--room", "bench",
               "--scenario", a.scenario, "--n", str(a.n), "--seconds", str(a.seconds),
               "--settle", str(a.settle), "--server-pid", str(na.pid)]
        b_before = proc_stat(nb.pid)
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             timeout=a.seconds + a.settle + 300)
        b_after = proc_stat(nb.pid)
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"loadgen failed ({out.returncode})")
        r = json.loads(lines[-1])
        r["b_cpu_s"] = b_after[0] - b_before[0]
        r["b_rss_delta_kb"] = b_after[1] - b_before[1]
        return r
    finally:
        for n in nodes:
            n.send_signal(signal.SIGTERM)
            try:
                n.wait(10)
            except subprocess.TimeoutExpired:
                n.kill()
        redis.kill()
        redis.wait()
        shutil.rmtree(data, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="e")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--settle", type=int, default=3)
    p.add_argument("--nodo", default=os.path.join(ROOT, "target/release/nodo"))
    p.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/nodo-loadgen"))
    a = p.parse_args()
    rows = []
    for path in ("direct", "through B"):
        r = run(a, path)
        rows.append((path, r))
        print(json.dumps({"path": path, **r}), file=sys.stderr)
    print(f"\nScenario {a.scenario.upper()}, N={a.n}, window {a.seconds} s; the room on node A\n")
    print("| joined through | joined | loss % | latency p50 / p99 ms | first media p50 ms | node A RSS per participant | node B CPU s over the run | node B RSS growth per connection |")
    print("|---|---|---|---|---|---|---|---|")
    for path, r in rows:
        lat = r.get("latency_ms", {})
        fm = r.get("first_media_ms", {})
        per = r["b_rss_delta_kb"] / max(1, r.get("joined", 1))
        print(f"| {path} | {r.get('joined')} | {r.get('loss_pct', 0):.3f} | {lat.get('p50', 0):.2f} / {lat.get('p99', 0):.2f} "
              f"| {fm.get('p50', 0):.0f} | {r.get('rss_per_participant_kb', 0):.0f} KB | {r['b_cpu_s']:.2f} | {per:.1f} KB |")


if __name__ == "__main__":
    main()
