"""The impairment harness: a real node, LiveKit's Python SDK as publisher and
subscriber, each in its own network namespace on a bridge, with nftables loss
and rate caps per direction (tests/netns/impair.sh).

Used by tests/e2e/test_impairment.py (short windows, in CI) and by
bench/impair.py (long windows, the table in the README).
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "tests" / "netns" / "impair.sh")
CLIENT = str(Path(__file__).with_name("impair_client.py"))
BROWSER_CLIENT = str(ROOT / "tests" / "netns" / "impair-browser.mjs")
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables")):
        if not shutil.which(tool):
            return f"`{tool}` not found (Debian package {pkg})"
    probe = f"nip{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` does not work here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*args: str) -> str:
    r = subprocess.run([SCRIPT, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"impair.sh {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def remove_stale():
    """Namespaces and bridges of runs killed before their cleanup (named after their pid)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    for name in names:
        for prefix in ("nip", "nis"):
            if name.startswith(prefix) and name[3:].isdigit() and not Path(f"/proc/{name[3:]}").exists():
                sh("down", name)
    links = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True,
                           text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith("nib") and name[3:].isdigit() and not Path(f"/proc/{name[3:]}").exists():
            sh("unbridge", name)


class Net:
    """A bridge with the node's address, and two client namespaces: `pub` and `sub`."""

    def __init__(self):
        pid = os.getpid()
        k = pid % 250 + 1
        self.bridge = f"nib{pid}"
        self.host = f"10.79.{k}.1"
        self.ns = {"pub": f"nip{pid}", "sub": f"nis{pid}"}
        self.ips = {"pub": f"10.79.{k}.2", "sub": f"10.79.{k}.3"}

    def __enter__(self):
        remove_stale()
        self.__exit__()
        sh("bridge", self.bridge, self.host)
        for role, ns in self.ns.items():
            sh("up", self.bridge, ns, self.ips[role])
        return self

    def __exit__(self, *exc):
        for ns in self.ns.values():
            sh("down", ns)
        sh("unbridge", self.bridge)

    def set(self, role: str, up_loss=0, down_loss=0, up_kbit=0, down_kbit=0, burst_ms=250):
        sh("set", self.ns[role], str(up_loss), str(down_loss), str(up_kbit), str(down_kbit),
           str(burst_ms))

    def clear(self):
        for ns in self.ns.values():
            sh("clear", ns)

    def counters(self, role: str) -> dict:
        data = json.loads(sh("counters", self.ns[role]))
        return {c["counter"]["name"]: c["counter"]["packets"] for c in data["nftables"] if "counter" in c}


@dataclass
class Impairment:
    """Loss in percent on UDP leaving the clients' namespaces (`up`, towards the node) and
    entering them (`down`), on both clients; and an optional rate cap on the subscriber's
    downlink."""

    up_loss: int = 0
    down_loss: int = 0
    sub_down_kbit: int = 0
    # The cap's token bucket, in milliseconds of its rate.
    burst_ms: int = 250

    def label(self) -> str:
        parts = []
        if self.up_loss and self.up_loss == self.down_loss:
            parts.append(f"{self.up_loss} % both ways")
        else:
            if self.up_loss:
                parts.append(f"{self.up_loss} % clients -> node (publisher's uplink)")
            if self.down_loss:
                parts.append(f"{self.down_loss} % node -> clients (subscriber's downlink)")
        if self.sub_down_kbit:
            parts.append(f"subscriber downlink capped at {self.sub_down_kbit} kbit/s "
                         f"({self.burst_ms} ms bucket)")
        return ", ".join(parts) or "none"


@dataclass
class Publish:
    width: int = 640
    height: int = 360
    fps: int = 25
    max_bitrate: int = 1_200_000
    simulcast: bool = True


class Client:
    def __init__(self, proc):
        self.proc = proc
        self.stderr: list[str] = []

    @classmethod
    async def start(cls, ns: str, role: str, url: str, token: str, publish: Publish,
                    kind: str = "python"):
        """`kind`: "python" (LiveKit's Python SDK) or "browser" (livekit-client in Chromium)."""
        program = [PYTHON, CLIENT] if kind == "python" else ["node", BROWSER_CLIENT]
        args = ["ip", "netns", "exec", ns, *program, role, url, token]
        if role == "pub":
            args += ["--width", str(publish.width), "--height", str(publish.height), "--fps",
                     str(publish.fps), "--max-bitrate", str(publish.max_bitrate)]
            if not publish.simulcast:
                args.append("--no-simulcast")
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        c = cls(proc)
        asyncio.create_task(c._drain_stderr())
        return c

    async def _drain_stderr(self):
        assert self.proc.stderr
        async for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))
            del self.stderr[:-50]

    async def event(self, name: str, timeout: float) -> dict:
        assert self.proc.stdout
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"client exited before {name!r}:\n" + "".join(self.stderr))
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == name:
                return ev

    def send(self, cmd: str):
        assert self.proc.stdin
        self.proc.stdin.write((cmd + "\n").encode())

    async def close(self):
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class Result:
    impairment: Impairment
    seconds: float
    fps: float
    longest_freeze: float
    sub: dict
    pub: dict
    drops: dict = field(default_factory=dict)
    # The width the subscriber received over time: (seconds into the window, width).
    widths: list = field(default_factory=list)

    @property
    def concealed(self) -> float:
        a = self.sub["audio"]
        total = a.get("total_samples_received", 0)
        return a.get("concealed_samples", 0) / total if total else 1.0

    def time_to_first(self, max_width: int) -> float | None:
        """Seconds into the window of the first frame at most `max_width` wide."""
        return next((t for t, w in self.widths if w <= max_width), None)

    def share_at_most(self, max_width: int, after: float = 0.0) -> float:
        """Share of the frames from `after` seconds on that are at most `max_width` wide."""
        ws = [w for t, w in self.widths if t >= after]
        return sum(1 for w in ws if w <= max_width) / len(ws) if ws else 0.0

    def time_to_width(self, max_width: int) -> float | None:
        """Seconds into the window until every later frame is at most `max_width` wide."""
        last_wide = None
        for t, w in self.widths:
            if w > max_width:
                last_wide = t
        if not self.widths or self.widths[-1][1] > max_width:
            return None
        return 0.0 if last_wide is None else last_wide

    def row(self) -> str:
        v, p = self.sub["video"], self.pub["video"]
        return (f"| {self.impairment.label()} | {self.fps:.1f} | {self.longest_freeze:.2f} s | "
                f"{p.get('nack_count', 0)} / {p.get('retransmitted_packets_sent', 0)} | "
                f"{v.get('nack_count', 0)} / {v.get('retransmitted_packets_received', 0)} | "
                f"{v.get('pli_count', 0) + v.get('fir_count', 0)} / {p.get('pli_count', 0) + p.get('fir_count', 0)} | "
                f"{100 * self.concealed:.1f} % |")

    def summary(self) -> dict:
        return {"impairment": self.impairment.label(), "fps": round(self.fps, 2),
                "longest_freeze": round(self.longest_freeze, 3), "concealed": round(self.concealed, 4),
                "sub_video": self.sub["video"], "sub_audio": self.sub["audio"],
                "pub_video": self.pub["video"], "drops": self.drops}


TABLE_HEAD = ("| loss / cap | frames/s at the subscriber | longest freeze | NACKs to the publisher / "
              "RTX it sent | subscriber's NACKs / RTX it got | subscriber's PLI+FIR / publisher's | "
              "audio concealed |\n|---|---|---|---|---|---|---|")


def analyse(frames: list, seconds: float) -> tuple[float, float]:
    """Frames per second and the longest gap between decoded frames in the window (its edges
    count: a window that starts or ends frozen shows it)."""
    times = [t for t, _ in frames]
    fps = len(times) / seconds if seconds else 0.0
    edges = [0.0, *times, seconds]
    gap = max(b - a for a, b in zip(edges, edges[1:]))
    return fps, gap


async def measure(node, net: Net, imp: Impairment, seconds: float, *, publish: Publish | None = None,
                  room: str = "impair", settle: float = 5.0,
                  kinds: tuple[str, str] = ("python", "python")) -> Result:
    """Joins a publisher and a subscriber (`kinds`: which client each is, see
    `Client.start`), lets media settle, applies the impairment and measures for
    `seconds`."""
    from lk import token

    publish = publish or Publish()
    url = f"ws://{node.http}"
    clients = []
    try:
        pub = await Client.start(net.ns["pub"], "pub", url, token("pub", room), publish, kinds[0])
        clients.append(pub)
        await pub.event("ready", 30)
        sub = await Client.start(net.ns["sub"], "sub", url, token("sub", room), publish, kinds[1])
        clients.append(sub)
        await sub.event("ready", 45)
        await asyncio.sleep(settle)
        loss = dict(up_loss=imp.up_loss, down_loss=imp.down_loss)
        net.set("pub", **loss)
        net.set("sub", **loss, down_kbit=imp.sub_down_kbit, burst_ms=imp.burst_ms)
        for c in clients:
            c.send("start")
        await asyncio.sleep(seconds)
        for c in clients:
            c.send("stop")
        sub_res = await sub.event("result", 30)
        pub_res = await pub.event("result", 30)
        drops = {role: net.counters(role) for role in ("pub", "sub")}
        fps, freeze = analyse(sub_res["frames"], sub_res["seconds"])
        return Result(imp, sub_res["seconds"], fps, freeze, sub_res, pub_res, drops,
                      widths=sub_res["frames"])
    finally:
        net.clear()
        for c in clients:
            await c.close()


def main():
    """Quick manual run: `python tests/e2e/impair.py UP DOWN [CAP_KBIT] [SECONDS]`."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import start_node

    up, down = int(sys.argv[1]), int(sys.argv[2])
    cap = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 15
    with tempfile.TemporaryDirectory() as tmp, Net() as net:
        node = start_node(Path(tmp), "--bind", net.host)
        try:
            r = asyncio.run(measure(node, net, Impairment(up, down, cap), seconds))
            print(TABLE_HEAD)
            print(r.row())
            print(json.dumps(r.summary(), indent=1))
        finally:
            node.stop()


if __name__ == "__main__":
    main()
