"""Fixtures: a real `nodo serve` process on loopback with ephemeral ports."""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "devkey"
API_SECRET = "secret"
LISTEN_RE = re.compile(r"nodo listening http=(\S+) rtc_udp=(\S+) rtc_tcp=(\S+)")


def nodo_binary() -> Path:
    path = os.environ.get("NODO_BIN") or str(ROOT / "target" / "release" / "nodo")
    if not Path(path).exists():
        raise RuntimeError(f"{path} not found: build with `cargo build --release` first")
    return Path(path)


class Node:
    """A running node; `lines` collects its log output."""

    def __init__(self, proc, http, udp, tcp, lines):
        self.proc = proc
        self.http = http
        self.udp = udp
        self.tcp = tcp
        self.lines = lines

    @property
    def url(self) -> str:
        return f"ws://{self.http}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http}"

    def stop(self, sig=signal.SIGTERM, timeout=10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_node(tmp_path: Path, *extra: str, env: dict | None = None, http_port: int = 0) -> Node:
    cmd = [
        str(nodo_binary()), "serve", "--dev",
        "--http-port", str(http_port), "--rtc-udp-port", "0", "--rtc-tcp-port", "0",
        "--turn-udp-port", "0", "--turn-tls-port", "0",
        "--data-dir", str(tmp_path / "data"), *extra,
    ]
    full_env = {**os.environ, "RUST_LOG": os.environ.get("NODO_TEST_LOG", "info"), **(env or {})}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env)
    lines: list[str] = []
    found = {}
    ready = threading.Event()

    def pump():
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if os.environ.get("NODO_TEST_ECHO"):
                print("[nodo]", line, end="")
            m = LISTEN_RE.search(line)
            if m and not found:
                found.update(http=m.group(1), udp=m.group(2), tcp=m.group(3))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(30) or not found:
        proc.kill()
        raise RuntimeError("nodo did not start:\n" + "".join(lines))
    return Node(proc, found["http"], found["udp"], found["tcp"], lines)


@pytest.fixture
def node(tmp_path):
    n = start_node(tmp_path)
    yield n
    n.stop()
