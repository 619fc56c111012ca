"""Calls through impaired networks, long windows: the table in the README.

    sudo .venv/bin/python bench/impair.py [--seconds 20] [--only NAME ...] [--json FILE]
                                          [--clients python,browser]

A real node (target/release/nodo, or $NODO_BIN) in the root namespace on a
bridge; LiveKit's Python SDK publisher and subscriber each in its own
network namespace; nftables random loss per direction and a rate cap on the
subscriber's downlink (tests/netns/impair.sh). Every scenario is a fresh room:
the clients join, media settles for 3 s without impairment, then the rules go
on and the window is measured. Figures are the clients' own: decoded frames
as they leave the subscriber's decoder, and libwebrtc's RTP stats.
"""

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import impair  # noqa: E402
from conftest import start_node  # noqa: E402

# name -> (impairment, publish settings, target: (min share of the lossless fps, min fps,
# max freeze s, max audio concealment))
LOW = impair.Publish()
THREE = impair.Publish(width=960, height=540, fps=15, max_bitrate=1_200_000)
SCENARIOS = {
    "clean": (impair.Impairment(), LOW, None),
    "up5": (impair.Impairment(up_loss=5), LOW, (0.9, 0, 0.5, None)),
    "down5": (impair.Impairment(down_loss=5), LOW, (0.9, 0, 0.5, None)),
    "both5": (impair.Impairment(up_loss=5, down_loss=5), LOW, (0.9, 0, 0.5, None)),
    "up10": (impair.Impairment(up_loss=10), LOW, (0.75, 0, 1.0, None)),
    "down10": (impair.Impairment(down_loss=10), LOW, (0.75, 0, 1.0, None)),
    "both10": (impair.Impairment(up_loss=10, down_loss=10), LOW, (0.75, 0, 1.0, None)),
    "both20": (impair.Impairment(up_loss=20, down_loss=20), LOW, (0, 10, None, 0.2)),
    "cap300": (impair.Impairment(sub_down_kbit=300), THREE, None),
}


def verdict(name, r: impair.Result, clean_fps: float | None) -> str:
    target = SCENARIOS[name][2]
    if name == "cap300":
        layers = r.pub["layers"]
        low = min((w for _, w in layers if w), default=0)
        t = r.time_to_first(low)
        stays = r.share_at_most(low, after=t or 0.0)
        ok = t is not None and t <= 2.0 and r.longest_freeze <= 1.0 and r.concealed < 0.02
        return (f"{'met' if ok else 'MISSED'}: low layer ({low} px) after {t} s, {stays:.0%} of "
                f"frames on it after, longest freeze {r.longest_freeze:.2f} s")
    if not target:
        return ""
    share, min_fps, freeze, conceal = target
    misses = []
    if clean_fps and r.fps < share * clean_fps:
        misses.append(f"{r.fps / clean_fps:.0%} of lossless fps")
    if r.fps < min_fps:
        misses.append(f"{r.fps:.1f} fps")
    if freeze is not None and r.longest_freeze > freeze:
        misses.append(f"freeze {r.longest_freeze:.2f} s")
    if conceal is not None and r.concealed > conceal:
        misses.append(f"concealed {r.concealed:.0%}")
    return "met" if not misses else "MISSED: " + ", ".join(misses)


async def run(node, net, names, seconds, kinds):
    results = {}
    clean_fps = None
    for name in names:
        imp, publish, _ = SCENARIOS[name]
        r = await impair.measure(node, net, imp, seconds, publish=publish, room=f"impair-{name}",
                                 kinds=kinds, settle=10.0 if name == "cap300" else 5.0)
        if name == "clean":
            clean_fps = r.fps
        results[name] = (r, verdict(name, r, clean_fps))
        print(f"# {name}: {r.row()} {results[name][1]}", flush=True)
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--only", nargs="*", choices=list(SCENARIOS), default=None)
    p.add_argument("--json", type=Path)
    p.add_argument("--clients", default="python,python",
                   help="publisher,subscriber: python (LiveKit's Python SDK) or browser (livekit-client "
                        "in Chromium)")
    args = p.parse_args()
    why = impair.unavailable()
    if why:
        sys.exit(f"impairment bench needs: {why}")
    names = args.only or list(SCENARIOS)
    if "clean" not in names:
        names = ["clean", *names]
    with tempfile.TemporaryDirectory() as tmp, impair.Net() as net:
        node = start_node(Path(tmp), "--bind", net.host)
        try:
            kinds = tuple(args.clients.split(","))
            results = asyncio.run(run(node, net, names, args.seconds, kinds))
        finally:
            node.stop()
    print()
    head, rule = impair.TABLE_HEAD.split("\n")
    print(head + " target |")
    print(rule + "---|")
    for name in names:
        r, v = results[name]
        print(r.row() + f" {v} |")
    if args.json:
        args.json.write_text(json.dumps({n: {**r.summary(), "verdict": v} for n, (r, v) in results.items()},
                                        indent=1))


if __name__ == "__main__":
    main()
