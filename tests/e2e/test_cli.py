"""The `nodo` command line: token create, config default/check, health, refusing to serve without keys."""

import asyncio
import subprocess

from livekit import rtc

from conftest import nodo_binary, start_node
from lk import V0


def run(*args, env=None, timeout=20):
    return subprocess.run([str(nodo_binary()), *args], capture_output=True, text=True, timeout=timeout, env=env)


async def test_token_create_mints_a_working_token(node):
    r = run("token", "create", "--api-key", "devkey", "--api-secret", "secret",
            "--identity", "cli-user", "--room", "cli", "--join", "--valid-for", "10m")
    assert r.returncode == 0, r.stderr
    room = rtc.Room()
    await asyncio.wait_for(room.connect(node.url, r.stdout.strip(), options=V0), 20)
    assert room.local_participant.identity == "cli-user"
    await room.disconnect()
    bad = run("token", "create", "--api-key", "k", "--api-secret", "s", "--identity", "x", "--valid-for", "soon")
    assert bad.returncode != 0 and "valid-for" in bad.stderr


def test_config_default_and_check(tmp_path):
    r = run("config", "default")
    assert r.returncode == 0 and "[rtc]" in r.stdout
    # The shipped defaults name no API key: `serve` would refuse them, so `check` does too.
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "NODO_"))}
    bare = tmp_path / "bare.toml"
    bare.write_text(r.stdout)
    r_bare = run("config", "check", str(bare), env=env)
    assert r_bare.returncode == 1 and "no API keys" in r_bare.stderr
    good = tmp_path / "good.toml"
    good.write_text(r.stdout.replace('# mykey = "replace-me-with-32-or-more-random-chars"',
                                     'mykey = "replace-me-with-32-or-more-random-chars"'))
    assert run("config", "check", str(good), env=env).returncode == 0
    short = tmp_path / "short.toml"
    short.write_text(r.stdout.replace('# mykey = "replace-me-with-32-or-more-random-chars"',
                                      'mykey = "only-25-characters-long!!"'))
    r_short = run("config", "check", str(short), env=env)
    assert r_short.returncode == 1
    assert "keys.mykey: the secret has 25 characters" in r_short.stderr
    assert "openssl rand -base64 32" in r_short.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nhttp_port = \"seventy\"\n")
    r = run("config", "check", str(bad))
    assert r.returncode == 1 and "http_port" in r.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text("[room]\nempty_timout = 5\n")
    r = run("config", "check", str(typo))
    assert r.returncode == 1 and "empty_timout" in r.stderr


def test_serve_without_keys_refuses(tmp_path):
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "NODO_"))}
    r = run("serve", "--http-port", "0", "--data-dir", str(tmp_path), env=env)
    assert r.returncode != 0
    assert "--keys" in r.stderr and "LIVEKIT_KEYS" in r.stderr


def test_serve_refuses_a_short_secret_outside_dev(tmp_path):
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "NODO_"))}
    r = run("serve", "--http-port", "0", "--data-dir", str(tmp_path), "--keys", "k: secret", env=env)
    assert r.returncode != 0
    assert "keys.k: the secret has 6 characters" in r.stderr and "openssl rand" in r.stderr


def test_health(tmp_path):
    node = start_node(tmp_path)
    try:
        assert run("health", "--url", node.http_url).returncode == 0
    finally:
        node.stop()
    assert run("health", "--url", node.http_url).returncode == 1
