#!/usr/bin/env python3
"""Media benchmark runner: for each N, start a fresh node pinned to CPU 0,
run nodo-loadgen pinned to CPU 1 against it, and print a markdown table.

Builds nothing: it uses target/release/nodo and target/release/nodo-loadgen
(`cargo build --release --bin nodo -p nodo-loadgen` first). Each step gets
its own node (data dir in a temp dir, ephemeral ports read from the node's
`nodo listening` line), so RSS per participant starts from a clean process.

Examples:
  bench/media/run.py --scenario A --n 10,50,100,200
  bench/media/run.py --scenario C --n 4,8,16 --seconds 20
  bench/media/run.py --scenario D --n 5,10,20        # N = churn rate, joins/s
  bench/media/run.py --scenario A --n 50 -- --quality low --no-simulcast
Everything after `--` goes to nodo-loadgen as is.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


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
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(data, ignore_errors=True)


def run_step(a, n, extra, log_dir):
    node_log = os.path.join(log_dir, f"node-{a.scenario}-{n}.log")
    proc, http, data = start_node(a.nodo, a.server_cpu, node_log)
    try:
        cmd = ["taskset", "-c", a.loadgen_cpu, a.loadgen,
               "--url", f"http://{http}", "--scenario", a.scenario.lower(),
               "--seconds", str(a.seconds), "--settle", str(a.settle),
               "--server-pid", str(proc.pid)]
        if a.scenario.upper() == "C":
            cmd += ["--m", str(n)]
        elif a.scenario.upper() == "D":
            cmd += ["--ramp-rate", str(n)]
        else:
            cmd += ["--n", str(n), "--ramp-rate", str(a.ramp_rate)]
        if a.m is not None and a.scenario.upper() != "C":
            cmd += ["--m", str(a.m)]
        cmd += extra
        gen_log = os.path.join(log_dir, f"loadgen-{a.scenario}-{n}.log")
        with open(gen_log, "w") as err:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err,
                                 text=True, timeout=a.timeout)
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"loadgen failed ({out.returncode}); see {gen_log}")
        return json.loads(lines[-1])
    finally:
        stop_node(proc, data)


def fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def table(scenario, rows):
    s = scenario.upper()
    head = ["N", "fwd pps", "user µs/pkt", "sys µs/pkt", "srv CPU %", "loss %",
            "NACK", "PLI", "RTX", "lat p50/p99/p99.9/max ms", "audio p50/p99 ms",
            "RSS MB", "RSS/part kB", "gen CPU %", "valid"]
    if s == "D":
        head[1:1] = ["joins/s", "CPU ms/join", "TTFM p50/p99 ms"]
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
            "yes" if r.get("valid") else "no: " + ",".join(r.get("invalid", [])),
        ]
        if s == "D":
            ttfm = r.get("first_media_ms", {})
            cells[1:1] = [fmt(r.get("joins_per_s"), 1), fmt(r.get("cpu_ms_per_join"), 2),
                          "/".join(fmt(ttfm.get(k), 0) for k in ("p50", "p99"))]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="A", help="A, B, C, D or E")
    p.add_argument("--n", default="10,50,100,200",
                   help="comma-separated steps: N (A, B, E), M (C), joins/s (D)")
    p.add_argument("--m", type=int, help="publishers in B")
    p.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--ramp-rate", type=float, default=20.0, help="joins/s while ramping")
    p.add_argument("--rounds", type=int, default=1, help="runs per step (fresh node each)")
    p.add_argument("--nodo", default=os.path.join(ROOT, "target/release/nodo"))
    p.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/nodo-loadgen"))
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--loadgen-cpu", default="1")
    p.add_argument("--timeout", type=float, default=900, help="per step, seconds")
    p.add_argument("--json", help="append every result line to this file")
    p.add_argument("--log-dir", help="node and loadgen logs (default: a temp dir)")
    a = p.parse_args(argv)
    for b in (a.nodo, a.loadgen):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is missing: cargo build --release --bin nodo -p nodo-loadgen")
    log_dir = a.log_dir or tempfile.mkdtemp(prefix="nodo-bench-logs-")
    os.makedirs(log_dir, exist_ok=True)
    rows = []
    for n in [int(x) for x in a.n.split(",") if x.strip()]:
        for _ in range(a.rounds):
            try:
                r = run_step(a, n, extra, log_dir)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"step {n}: {e}", file=sys.stderr)
                continue
            rows.append((n, r))
            print(json.dumps(r), file=sys.stderr)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(json.dumps(r) + "\n")
    print(f"\nScenario {a.scenario.upper()}, window {a.seconds:g} s, logs in {log_dir}\n")
    print(table(a.scenario, rows))


if __name__ == "__main__":
    main()
