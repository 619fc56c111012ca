"""livekit-client in headless Chromium as a subprocess (tests/netns/browser-client.mjs),
driven from pytest: it joins, publishes camera and microphone, and reports as JSON
lines what it received and which ICE candidates it selected."""

import asyncio
import json
from pathlib import Path

from conftest import ROOT

CLIENT = ROOT / "tests" / "netns" / "browser-client.mjs"


class BrowserClient:
    def __init__(self, proc):
        self.proc = proc

    @classmethod
    async def start(cls, url: str, tok: str, sender: str, ca: Path, workdir: Path, netns: str | None = None):
        """Joins `url` with `tok`, trusting `ca` (an NSS database in a fresh HOME under
        `workdir`), and waits for `sender`'s media; inside `netns` when given."""
        cmd = ["node", str(CLIENT), url, tok, sender, str(ca), str(workdir)]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        return cls(proc)

    async def event(self, name: str, timeout: float) -> dict:
        """The next JSON event called `name` (other output is echoed)."""
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise AssertionError(f"browser client exited before {name!r}")
            try:
                ev = json.loads(line)
            except ValueError:
                print("[browser]", line.decode().rstrip())
                continue
            assert ev.get("event") != "error", ev
            if ev.get("event") == name:
                return ev

    async def close(self):
        """Asks the page to leave and waits for Chromium to exit."""
        self.proc.stdin.write(b"bye\n")
        await self.proc.stdin.drain()
        await asyncio.wait_for(self.proc.wait(), 20)

    async def kill(self):
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
