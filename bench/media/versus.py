#!/usr/bin/env python3
"""One command, one table: Nodo against the other SFUs on the figures issue 13
asks for, each server a fresh process on CPU 0 and nodo-loadgen on CPU 1,
the servers alternating step by step (which goes first alternating round by
round). Medians over rounds.

  bench/media/versus.py [--rounds 2] [--servers nodo,janus] [--capacity 100,150,200,300,400]
                        [--seconds 15] [--json out.jsonl]

The steps (each a run of bench/media/run.py's `run_step`):
  video    A: 1 simulcast publisher -> 50 subscribers asking for the high layer
           (CPU per forwarded video packet, added latency, RSS per video
           subscriber, time to first media);
  audio    B: 10 audio publishers -> 50 listeners (CPU per audio packet,
           audio latency);
  meeting  C: an 8 x 8 meeting, everyone publishing simulcast video and
           audio and receiving everyone else at the high layer (CPU per
           packet, latency, loss and RSS per participant in a meeting; the
           window starts --settle s after the joins, so it includes the
           subscribers' climb to the high layer);
  settled  C again, the window starting 12 s after the joins, past the
           climb: the meeting's latency and keyframe requests once every
           subscriber is on its layer;
  churn    D: 10 joins/s, each participant staying 3 s (CPU-ms per join,
           time to first media of the joins);
  idle     E: 300 idle participants (RSS per idle participant);
  capacity A at each --capacity N: the largest N whose every round lost less
           than 0.1 % of packets (before retransmission), with the kernel
           dropping nothing and the generator keeping up. Past the
           generator's own limit a step is invalid and the search stops;
           a round spoiled by other load on the host runs once more.
           A second row counts a step only while ≥ 90 % of the video
           still goes out on the high layer the subscribers asked for: a
           server that moves them down a layer as its core fills carries
           less at the same N, so this is the like-for-like figure.

floor    this machine's own floor per forwarded packet, with no SFU in the
           way (nodo-floor: a loopback send plus the SRTP seal, on the
           server's CPU), taken at the start of every round; a second table
           gives each server's CPU per packet as a multiple of it.

mediasoup is not run: its worker cannot be built on this machine (its build
fetches pinned sources from GitHub). Builds nothing: `cargo build --release
-p nodo -p nodo-loadgen` first; Janus from Debian (`apt-get install -y
janus`).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/media/run.py)

# name -> (scenario, N, M, extra loadgen flags)
STEPS = {
    "video": ("A", 50, None, []),
    "audio": ("B", 50, 10, []),
    "meeting": ("C", 8, None, []),
    "settled": ("C", 8, None, []),
    "churn": ("D", 10, None, ["--churn-life", "3"]),
    "idle": ("E", 300, None, []),
}


# Steps whose window starts later than --settle after the joins.
SETTLE = {"settled": 12.0}


def step_args(a, scenario, m, seconds, settle):
    return SimpleNamespace(
        scenario=scenario, m=m, seconds=seconds, settle=settle,
        ramp_rate=a.ramp_rate, nodo=a.nodo, loadgen=a.loadgen,
        server_cpu=a.server_cpu, loadgen_cpu=a.loadgen_cpu, timeout=a.timeout)


def run_one(a, server, name, scenario, n, m, extra, rnd, log_dir, retry_busy=False):
    """One round of one step. With `retry_busy`, a round spoiled by other
    load on the host (`host_busy`: neither the server's doing nor the
    generator's) runs once more; the spoiled one stays in --json, marked
    `superseded`, and `load` skips it."""
    seconds = a.seconds if scenario != "E" else min(a.seconds, 10.0)
    if a.wait_idle > 0:
        run.wait_idle(a.wait_idle)
    try:
        settle = SETTLE.get(name, a.settle)
        r = run.run_step(step_args(a, scenario, m, seconds, settle), server, n, extra, log_dir, rnd)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"{server} {name} N={n}: {e}", file=sys.stderr)
        return None
    r["step"] = name
    busy = retry_busy and "host_busy" in (r.get("invalid") or [])
    if busy:
        r["superseded"] = True
    print(f"{server} {name} N={n} round {rnd + 1}: " + json.dumps(r), file=sys.stderr)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(r) + "\n")
    if busy:
        print(f"{server} {name} N={n} round {rnd + 1}: the host was busy, once more",
              file=sys.stderr)
        return run_one(a, server, name, scenario, n, m, extra, rnd, log_dir) or r
    return r


def run_floor(a, rnd):
    """This machine's floor per forwarded packet (`nodo-floor --json`, next
    to nodo-loadgen), sender on the server's CPU: one line per round, so the
    servers' figures compare to a floor taken in the same run (this VM's
    speed moves from hour to hour)."""
    floor = os.path.join(os.path.dirname(os.path.abspath(a.loadgen)), "nodo-floor")
    if not os.access(floor, os.X_OK):
        print(f"{floor} is missing: no floor row (cargo build --release -p nodo-loadgen)",
              file=sys.stderr)
        return None
    if a.wait_idle > 0:
        run.wait_idle(a.wait_idle)
    cmd = [floor, "--json", "--seconds", "2", "--send-cpu", str(a.server_cpu),
           "--recv-cpu", str(a.loadgen_cpu)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as e:
        print(f"nodo-floor: {e}", file=sys.stderr)
        return None
    r.update(step="floor", server="machine", round=rnd + 1)
    print(f"floor round {rnd + 1}: " + json.dumps(r), file=sys.stderr)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(r) + "\n")
    return r


def floor_table(results, servers):
    """Each server's CPU per forwarded packet against this machine's floor
    measured in the same run."""
    floors = results.get(("machine", "floor"), [])
    if not floors:
        return ""
    out = ["| figure | this machine's floor (nodo-floor) | "
           + " | ".join(f"{sv}, × the floor" for sv in servers) + " | issue 13's target |",
           "|---|---:|" + "---:|" * len(servers) + "---:|"]
    for label, step, key, target in [
            ("CPU per forwarded video packet µs", "video", "floor_1200_us", 2.5),
            ("CPU per forwarded audio packet µs", "audio", "floor_160_us", 2.2)]:
        floor = med(floors, lambda r: r.get(key))
        cells = [label, run.fmt(floor, 2)]
        for sv in servers:
            v = med(results.get((sv, step), []), run.total_us)
            cells.append(f"{v:.2f} ({v / floor:.1f}x)" if v and floor else "–")
        cells.append(f"{target:g} ({target / floor:.1f}x)" if floor else f"{target:g}")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def med(rs, how):
    v = [x for x in (how(r) for r in rs) if isinstance(x, (int, float))]
    return statistics.median(v) if v else None


def lat(kind):
    key = {"all": "latency_ms", "audio": "latency_audio_ms", "video": "latency_video_ms"}[kind]
    return lambda q: (lambda r: run.get(r, f"{key}.{q}"))


def f_share(r):
    """Per cent of the video forwarded on the high (f) layer."""
    layers = r.get("video_layer_pps") or {}
    total = sum(layers.values())
    return 100.0 * layers.get("f", 0) / total if total else None


def keyframes_per_s(r):
    """Keyframe requests the server sent to publishers, per second of the window."""
    return r["pli_to_publishers"] / r["seconds"] if r.get("seconds") else None


def fits(r):
    """A capacity step passed: valid, < 0.1 % loss, no kernel drops."""
    return bool(r and r.get("valid") and (r.get("loss_pct") or 0) < 0.1
                and not r.get("udp_rcvbuf_errors") and not r.get("udp_in_errors"))


# The like-for-like capacity: the subscribers ask for the high layer, and a
# server that moves them down a layer as its core fills carries less at the
# same N. A step counts there only with this much of its video still on f.
F_SHARE_LIKE_FOR_LIKE = 90.0


def fits_on_f(r):
    """A capacity step passed with the video the subscribers asked for."""
    return fits(r) and (f_share(r) or 0.0) >= F_SHARE_LIKE_FOR_LIKE


# (label, step, how to read one result, digits, which way is better)
ROWS = [
    ("CPU per forwarded video packet, user + sys µs", "video", run.total_us, 2, "lower"),
    ("CPU per forwarded video packet, user µs", "video",
     lambda r: r.get("server_user_us_per_pkt"), 2, "lower"),
    ("CPU per forwarded video packet, sys µs", "video",
     lambda r: r.get("server_sys_us_per_pkt"), 2, "lower"),
    ("CPU per forwarded audio packet, user + sys µs", "audio", run.total_us, 2, "lower"),
    ("CPU per forwarded audio packet, user µs", "audio",
     lambda r: r.get("server_user_us_per_pkt"), 2, "lower"),
    ("CPU per forwarded audio packet, sys µs", "audio",
     lambda r: r.get("server_sys_us_per_pkt"), 2, "lower"),
    ("added latency p50, video + audio ms", "video", lat("all")("p50"), 2, "lower"),
    ("added latency p99 ms", "video", lat("all")("p99"), 2, "lower"),
    ("added latency p99.9 ms", "video", lat("all")("p999"), 2, "lower"),
    ("added latency p99, audio beside the video ms", "video", lat("audio")("p99"), 2, "lower"),
    ("added latency p50, audio only ms", "audio", lat("audio")("p50"), 2, "lower"),
    ("added latency p99, audio only ms", "audio", lat("audio")("p99"), 2, "lower"),
    ("added latency p99.9, audio only ms", "audio", lat("audio")("p999"), 2, "lower"),
    ("packets forwarded per second", "video", lambda r: r.get("forwarded_pps"), 0, "same"),
    ("loss before retransmission %", "video", lambda r: r.get("loss_pct"), 3, "lower"),
    ("meeting: CPU per forwarded packet, user + sys µs", "meeting", run.total_us, 2, "lower"),
    ("meeting: added latency p50 ms, video", "meeting", lat("video")("p50"), 2, "lower"),
    ("meeting: added latency p99 ms, video", "meeting", lat("video")("p99"), 2, "lower"),
    ("meeting: added latency p99 ms, audio", "meeting", lat("audio")("p99"), 2, "lower"),
    ("meeting: loss before retransmission %", "meeting", lambda r: r.get("loss_pct"), 3, "lower"),
    ("meeting: share of video on the high layer %", "meeting", f_share, 1, "higher"),
    ("meeting: keyframe requests to publishers per s", "meeting",
     keyframes_per_s, 1, "lower"),
    ("meeting: RSS per participant KB", "meeting",
     lambda r: r.get("rss_per_participant_kb"), 0, "lower"),
    ("meeting: time to first media p50 ms (ramp of 20/s)", "meeting",
     lambda r: run.get(r, "first_media_ms.p50"), 0, "lower"),
    ("meeting after the climb: added latency p99 ms, video", "settled",
     lat("video")("p99"), 2, "lower"),
    ("meeting after the climb: added latency p99.9 ms, video", "settled",
     lat("video")("p999"), 2, "lower"),
    ("meeting after the climb: keyframe requests to publishers per s", "settled",
     keyframes_per_s, 1, "lower"),
    ("RSS per video subscriber KB", "video",
     lambda r: r.get("rss_per_participant_kb"), 0, "lower"),
    ("RSS per participant, 10 speakers and 50 listeners of ten tracks KB", "audio",
     lambda r: r.get("rss_per_participant_kb"), 0, "lower"),
    ("RSS per idle participant KB", "idle",
     lambda r: r.get("rss_per_participant_kb"), 0, "lower"),
    ("CPU-ms per join (with its leave)", "churn", lambda r: r.get("cpu_ms_per_join"), 2, "lower"),
    ("time to first media p50 ms (joins at 10/s)", "churn",
     lambda r: run.get(r, "first_media_ms.p50"), 0, "lower"),
    ("time to first media p50 ms (ramp of 50)", "video",
     lambda r: run.get(r, "first_media_ms.p50"), 0, "lower"),
]


def where(step):
    s, n, m, extra = STEPS[step]
    return {"video": f"A N={n}", "audio": f"B {m}->{n}", "churn": f"D {n}/s",
            "idle": f"E N={n}", "meeting": f"C {n}x{n}",
            "settled": f"C {n}x{n} from {SETTLE['settled']:g} s"}[step]


def capacity_row(label, servers, capacity, cap_ns, generator_limit):
    cells = []
    for sv in servers:
        c = capacity.get(sv)
        if c is None:
            cells.append("below " + str(cap_ns[0]) if cap_ns else "–")
        else:
            cells.append(("≥ " if c == generator_limit.get(sv) else "") + str(c))
    ratios = []
    for sv in servers[1:]:
        a, b = capacity.get(servers[0]), capacity.get(sv)
        ratios.append(f"{b / a:.2f}x" if a and b else "–")
    return "| " + " | ".join(
        [label, "A, N = " + ",".join(map(str, cap_ns))] + cells + ratios + ["higher"]) + " |"


def table(results, servers, cap_ns):
    base = servers[0]
    others = servers[1:]
    head = ["figure", "step"] + servers + [f"{o} ÷ {base}" for o in others] + ["better"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 3) + "---|"]
    for label, step, how, digits, better in ROWS:
        vals = [med(results.get((sv, step), []), how) for sv in servers]
        cells = [label, where(step)] + [run.fmt(float(v) if v is not None else None, digits)
                                        for v in vals]
        for v in vals[1:]:
            ok = v is not None and vals[0]
            cells.append(f"{v / vals[0]:.2f}x" if ok else "–")
        cells.append(better)
        out.append("| " + " | ".join(cells) + " |")
    # A server at its search's last step may hold a larger N (the generator
    # or the search stopped first): "≥".
    capacity, limit = capacity_of(results, servers, cap_ns)
    out.append(capacity_row("capacity N at < 0.1 % loss", servers, capacity, cap_ns, limit))
    capacity, limit = capacity_of(results, servers, cap_ns, fits_on_f)
    out.append(capacity_row(
        f"the same with ≥ {F_SHARE_LIKE_FOR_LIKE:g} % of the video on the high layer",
        servers, capacity, cap_ns, limit))
    return "\n".join(out)


def search_capacity(a, servers, cap_ns, results, log_dir):
    """Steps A's N up while every round of a server fits (see `capacity_of`);
    a server that failed a step runs no larger one. A round the host's other
    load spoiled is run again once: one such round would otherwise end a
    server's search."""
    searching = set(servers)
    for n in cap_ns:
        for rnd in range(a.rounds):
            order = [sv for sv in (servers if rnd % 2 == 0 else servers[::-1]) if sv in searching]
            for sv in order:
                r = run_one(a, sv, f"capacity {n}", "A", n, None, [], rnd, log_dir,
                            retry_busy=True)
                results.setdefault((sv, f"cap{n}"), []).append(r)
        for sv in list(searching):
            if not all(fits(r) for r in results.get((sv, f"cap{n}"), [None])):
                searching.discard(sv)


def capacity_of(results, servers, cap_ns, ok=fits):
    """Per server, the largest N of the search whose every round fit (`ok`),
    and, where the search ended on a step the generator could not drive (or
    never failed), that N as a lower bound ("at least")."""
    capacity, limit = {}, {}
    for sv in servers:
        for n in cap_ns:
            rs = results.get((sv, f"cap{n}"), [])
            if rs and all(ok(r) for r in rs):
                capacity[sv] = n
                continue
            gen = any(r and set(r.get("invalid", [])) & {"loadgen_saturated", "loadgen_pacing"}
                      for r in rs)
            if (gen or not rs) and sv in capacity:
                limit[sv] = capacity[sv]
            break
        else:
            if sv in capacity:
                limit[sv] = capacity[sv]  # every step fit: at least the largest tried
    return capacity, limit


def capacity_steps(results, servers, cap_ns):
    """What each capacity step carried: a server that moves subscribers to a
    lower layer under load forwards fewer packets at the same N."""
    out = ["| A, N | server | packets forwarded /s | of them f layer | loss % | server CPU % | "
           "p99 ms | generator's receive lag p99 ms | fits |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for n in cap_ns:
        for sv in servers:
            rs = [r for r in results.get((sv, f"cap{n}"), []) if r]
            if not rs:
                continue
            def each(how, digits):
                return ", ".join(run.fmt(float(how(r)), digits) if how(r) is not None else "–"
                                 for r in rs)
            share = lambda r: 100.0 * run.get(r, "video_layer_pps.f") / max(r["video_pps"], 1)
            out.append("| " + " | ".join([
                str(n), sv, each(lambda r: r.get("forwarded_pps"), 0), each(share, 0) + " %",
                each(lambda r: r.get("loss_pct"), 3), each(lambda r: r.get("server_cpu_pct"), 0),
                each(lambda r: run.get(r, "latency_ms.p99"), 0),
                # Nodo's rounds with the most loss had the generator reading
                # its sockets late (no kernel drops on either side); Janus's
                # did not.
                each(lambda r: run.get(r, "rx_lag_ms.p99"), 1),
                ", ".join("yes" if fits(r) else "no" + (
                    " (" + ",".join(r.get("invalid", [])) + ")" if r.get("invalid") else "")
                    for r in rs)]) + " |")
    return "\n".join(out)


def load(path, servers):
    """Results as a run with --json wrote them; the capacity steps' Ns."""
    results, ns = {}, set()
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("superseded"):
                continue
            step, sv = r.get("step", ""), r.get("server")
            if step == "floor":
                results.setdefault(("machine", "floor"), []).append(r)
                continue
            if sv not in servers:
                continue
            if step.startswith("capacity "):
                n = int(step.split()[1])
                ns.add(n)
                step = f"cap{n}"
            results.setdefault((sv, step), []).append(r)
    return results, sorted(ns)


def run_all(a, servers, steps, cap_ns):
    """Runs every step, then the capacity search; returns (results, log dir)."""
    for b in [a.loadgen] + ([a.nodo] if "nodo" in servers else []):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is missing: cargo build --release -p nodo -p nodo-loadgen")
    if "janus" in servers and not os.access(run.janus.JANUS, os.X_OK):
        sys.exit("janus is missing: apt-get install -y janus (or --servers nodo)")
    log_dir = a.log_dir or tempfile.mkdtemp(prefix="nodo-versus-")
    os.makedirs(log_dir, exist_ok=True)
    results = {}
    for rnd in range(a.rounds):
        floor = run_floor(a, rnd)
        if floor:
            results.setdefault(("machine", "floor"), []).append(floor)
        order = servers if rnd % 2 == 0 else servers[::-1]
        for step in steps:
            scenario, n, m, extra = STEPS[step]
            for sv in order:
                r = run_one(a, sv, step, scenario, n, m, extra, rnd, log_dir)
                if r is not None:
                    results.setdefault((sv, step), []).append(r)
    search_capacity(a, servers, cap_ns, results, log_dir)
    return results, log_dir


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="nodo,janus",
                   help="comma-separated, the first is the base of the ratios")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", default="video,audio,meeting,settled,churn,idle",
                   help="which of video, audio, meeting, settled, churn, idle")
    p.add_argument("--capacity", default="100,150,200,300,400",
                   help="A's N steps for the capacity search ('' to skip)")
    p.add_argument("--seconds", type=float, default=15.0, help="measurement window")
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--ramp-rate", type=float, default=25.0, help="joins/s while ramping")
    run.runner_args(p, timeout=600, wait_idle=60)
    p.add_argument("--from-json", metavar="FILE",
                   help="run nothing: print the tables from lines a run wrote with --json")
    a = p.parse_args()
    servers = [x.strip() for x in a.servers.split(",") if x.strip()]
    if not servers or any(sv not in run.SERVERS for sv in servers):
        sys.exit(f"--servers: pick from {', '.join(run.SERVERS)}")
    steps = [x.strip() for x in a.steps.split(",") if x.strip()]
    if any(s not in STEPS for s in steps):
        sys.exit(f"--steps: pick from {', '.join(STEPS)}")
    cap_ns = sorted(int(x) for x in a.capacity.split(",") if x.strip())
    if a.from_json:
        results, cap_ns = load(a.from_json, servers)
        print(f"\nFrom {a.from_json}\n")
    else:
        results, log_dir = run_all(a, servers, steps, cap_ns)
        print(f"\n{a.rounds} round(s), {a.seconds:g} s windows, server on CPU {a.server_cpu}, "
              f"nodo-loadgen on CPU {a.loadgen_cpu}; logs in {log_dir}\n")
    print(table(results, servers, cap_ns))
    floors = floor_table(results, servers)
    if floors:
        print()
        print(floors)
    print()
    print(capacity_steps(results, servers, cap_ns))
    print("\nmediasoup: not run (its worker cannot be built on this machine: its build "
          "fetches pinned sources from GitHub).")
    invalid = sorted({f"{sv} {r['step']}: {','.join(r.get('invalid', []))}"
                      for (sv, _), rs in results.items() for r in rs
                      if r and sv != "machine" and not r.get("valid")})
    if invalid:
        print("\nInvalid runs (other load on the host, the generator behind, kernel drops):")
        for line in invalid:
            print(f"- {line}")


if __name__ == "__main__":
    main()
