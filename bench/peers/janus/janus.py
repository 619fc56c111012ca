#!/usr/bin/env python3
"""Janus 1.1.2 (Debian `janus`) as the benchmark peer of Nodo.

Writes a minimal configuration into a temp dir and starts `janus -F <dir>`
pinned to a CPU with taskset (performance.md §4.4):

- janus.jcfg: ice_lite, one event loop, nack_optimizations, a fixed
  rtp_port_range, no STUN/TURN, host candidates on one IPv4 address only
  (Janus skips loopback interfaces, so it is the host's first global IPv4
  address, `local_ip()`; the generator binds its sockets to it as well),
  debug level 3 (warnings), only the VideoRoom plugin and the HTTP transport
  loaded, no event handlers or loggers, admin API off;
- janus.transport.http.jcfg: plain HTTP on 127.0.0.1:<port>/janus, compact
  JSON, admin off, a connection limit above one long poll per participant;
- janus.plugin.videoroom.jcfg: no static rooms (nodo-loadgen creates its room
  through the API: VP8 + Opus, simulcast as published, enough publishers).

Janus has no setting for its UDP socket buffers (libnice leaves them at the
system's rmem_default, 208 KiB here, where a 10x keyframe burst overflows
them); udpbuf.c, preloaded, gives them 4 MiB as Nodo's (--udp-buffer 0: off).

Usable as a module (run.py: `start(...)`, `stop(...)`) or by hand:
  bench/peers/janus/janus.py --cpu 0 --port 8088     # runs until Ctrl-C
then `nodo-loadgen --server janus --url http://127.0.0.1:8088/janus
--local-ip <the address it prints>`.
Install it first: apt-get install -y janus.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

JANUS = shutil.which("janus") or "/usr/bin/janus"
LIBDIR = "/usr/lib/x86_64-linux-gnu/janus"
KEEP_PLUGIN = "libjanus_videoroom.so"
KEEP_TRANSPORT = "libjanus_http.so"


def _others(folder, keep):
    """Every module of `folder` but `keep`, for a `disable` list."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".so"))
    except OSError:
        return ""
    return ",".join(n for n in names if n != keep)


def local_ip():
    """The host's first global IPv4 address (Janus ignores loopback)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    raise RuntimeError("no global IPv4 address for Janus' candidates")


def write_config(cfg, port, rtp_ports, ip, debug_level=3, libdir=LIBDIR):
    """Writes the three config files into `cfg`."""
    general = f"""general: {{
	configs_folder = "{cfg}"
	plugins_folder = "{libdir}/plugins"
	transports_folder = "{libdir}/transports"
	events_folder = "{libdir}/events"
	loggers_folder = "{libdir}/loggers"
	debug_level = {debug_level}
	session_timeout = 60
	event_loops = 1
	hide_dependencies = false
}}
certificates: {{
}}
media: {{
	rtp_port_range = "{rtp_ports}"
	nack_optimizations = true
}}
nat: {{
	nice_debug = false
	ice_lite = true
	ice_enforce_list = "{ip}"
	ignore_mdns = true
}}
plugins: {{
	disable = "{_others(libdir + '/plugins', KEEP_PLUGIN)}"
}}
transports: {{
	disable = "{_others(libdir + '/transports', KEEP_TRANSPORT)}"
}}
loggers: {{
	disable = "{_others(libdir + '/loggers', '')}"
}}
events: {{
	broadcast = false
}}
"""
    http = f"""general: {{
	events = false
	json = "compact"
	base_path = "/janus"
	http = true
	port = {port}
	ip = "127.0.0.1"
	https = false
	mhd_connection_limit = 20000
}}
admin: {{
	admin_http = false
	admin_https = false
}}
"""
    videoroom = """general: {
	events = false
}
"""
    for name, text in (("janus.jcfg", general),
                       ("janus.transport.http.jcfg", http),
                       ("janus.plugin.videoroom.jcfg", videoroom)):
        with open(os.path.join(cfg, name), "w") as f:
            f.write(text)


def info(url, timeout=1.0):
    """GET <url>/info: the server's version and dependencies, or None."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/info", timeout=timeout) as r:
            return json.load(r)
    except (OSError, ValueError):
        return None


UDP_BUFFER = 4 * 1024 * 1024


def udp_buffer_shim(cfg):
    """Builds udpbuf.c into `cfg`; returns the .so path, or None."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "udpbuf.c")
    out = os.path.join(cfg, "udpbuf.so")
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", out, src, "-ldl"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"janus.py: cannot build {src}, Janus keeps default UDP buffers: "
              f"{r.stderr.strip()}", file=sys.stderr)
        return None
    return out


def start(cpu, port, log_path, rtp_ports="20000-40000", debug_level=3, ip=None,
          udp_buffer=UDP_BUFFER):
    """Starts Janus; returns (process, API URL, config dir, media IP).
    `udp_buffer`: SO_RCVBUF/SO_SNDBUF for its UDP sockets (udpbuf.c through
    LD_PRELOAD; 0 = the system default)."""
    if not os.access(JANUS, os.X_OK):
        raise RuntimeError("janus is missing: apt-get install -y janus")
    ip = ip or local_ip()
    cfg = tempfile.mkdtemp(prefix="janus-bench-")
    write_config(cfg, port, rtp_ports, ip, debug_level)
    env = dict(os.environ)
    shim = udp_buffer_shim(cfg) if udp_buffer > 0 else None
    if shim:
        env["LD_PRELOAD"] = shim
        env["BENCH_UDP_BUFFER"] = str(udp_buffer)
    cmd = ["janus", "-F", cfg, "-C", os.path.join(cfg, "janus.jcfg"), "-o"]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env)
    url = f"http://127.0.0.1:{port}/janus"
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"janus exited at start; see {log_path}")
        if info(url) is not None:
            return proc, url, cfg, ip
        time.sleep(0.1)
    stop(proc, cfg)
    raise RuntimeError(f"janus did not answer on {url}; see {log_path}")


def stop_process(proc, sig, scratch):
    """Stops a server with `sig` (killed after 15 s) and removes its scratch dir."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(scratch, ignore_errors=True)


def stop(proc, cfg):
    stop_process(proc, signal.SIGINT, cfg)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", default="0", help="taskset CPU list ('' = unpinned)")
    p.add_argument("--port", type=int, default=8088)
    p.add_argument("--rtp-ports", default="20000-40000")
    p.add_argument("--debug-level", type=int, default=3)
    p.add_argument("--ip", help="media address (default: the first global IPv4)")
    p.add_argument("--udp-buffer", type=int, default=UDP_BUFFER,
                   help="SO_RCVBUF/SO_SNDBUF of its UDP sockets (0: system default)")
    p.add_argument("--log", default="/tmp/janus-bench.log")
    a = p.parse_args()
    proc, url, cfg, ip = start(a.cpu or None, a.port, a.log, a.rtp_ports, a.debug_level, a.ip,
                               a.udp_buffer)
    i = info(url) or {}
    print(f"janus pid {proc.pid} at {url}, media on {ip} (config {cfg}, log {a.log});"
          f" nodo-loadgen --server janus --url {url} --local-ip {ip}")
    print(json.dumps({k: i.get(k) for k in ("version_string", "dependencies")}))
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(proc, cfg)


if __name__ == "__main__":
    sys.exit(main())
