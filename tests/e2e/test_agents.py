"""LiveKit Agents on Nodo, with real `livekit-agents` workers (tests/agents/tone_agent.py,
in its own venv: livekit-agents pins its own rtc SDK). A worker registers on `/agent`, is
dispatched into rooms (automatically, by a token's roomConfig, by `CreateDispatch`, by a call
to an assistant), joins, publishes a 440 Hz tone and answers data; a human participant (the
Python SDK) hears it and talks to it. A worker killed mid-job has its job taken over by
another worker."""

import asyncio
import json
import os
import signal
import subprocess
import threading
import time

import aiohttp
import pytest
from livekit import api, rtc

import lk
from conftest import API_KEY, API_SECRET, ROOT, start_node

AGENT_PYTHON = ROOT / "tests" / "agents" / ".venv" / "bin" / "python"
TONE_AGENT = ROOT / "tests" / "agents" / "tone_agent.py"
AGENT_KIND = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


class Worker:
    """A tone_agent.py worker process (its own process group, so a kill takes all of it)."""

    def __init__(self, node, agent_name=""):
        env = {**os.environ, "LIVEKIT_URL": node.url, "LIVEKIT_API_KEY": API_KEY,
               "LIVEKIT_API_SECRET": API_SECRET, "AGENT_NAME": agent_name, "AGENT_DRAIN_TIMEOUT": "1",
               "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen([str(AGENT_PYTHON), str(TONE_AGENT), "start"], env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if os.environ.get("NODO_TEST_ECHO"):
                print("[agent]", line, end="")

    async def marker(self, word: str, timeout=60.0) -> list[str]:
        """The fields of the first `word ...` line on the worker's stdout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(word + " "):
                    return line.split()[1:]
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}): {self.lines[-10:]}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {word} line from the worker: {self.lines[-10:]}")

    async def registered(self) -> str:
        return (await self.marker("REGISTERED"))[0]

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def agents_in(room: rtc.Room) -> list[rtc.RemoteParticipant]:
    return [p for p in room.remote_participants.values() if p.kind == AGENT_KIND]


async def an_agent(room: rtc.Room, timeout=40.0, other_than=()) -> rtc.RemoteParticipant:
    found = {}

    def check():
        for p in agents_in(room):
            if p.identity not in other_than:
                found["p"] = p
                return True
        return False

    await lk.wait_for(check, timeout, "an agent in the room")
    return found["p"]


async def ask(room: rtc.Room, agent: str, topic: str, text: str, timeout=15.0) -> bytes:
    """Sends `text` to the agent on `topic` and returns its answer."""
    answer: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_data(packet: rtc.DataPacket):
        if packet.participant and packet.participant.identity == agent and not answer.done():
            answer.set_result(packet.data)

    room.on("data_received", on_data)
    try:
        await room.local_participant.publish_data(text.encode(), reliable=True, topic=topic,
                                                  destination_identities=[agent])
        return await asyncio.wait_for(answer, timeout)
    finally:
        room.off("data_received", on_data)


async def hears(room: rtc.Room, agent: str) -> bool:
    track = await lk.remote_track(room, agent, rtc.TrackKind.KIND_AUDIO, timeout=30)
    return await lk.audible(track)


async def test_an_unnamed_agent_joins_every_new_room_talks_and_answers(tmp_path, workers):
    node = start_node(tmp_path, env={"NODO_ROOM__DEPARTURE_TIMEOUT": "2"})
    try:
        w = Worker(node)
        workers.append(w)
        worker_id = await w.registered()
        assert any("agent worker registered" in l and worker_id in l for l in node.lines)
        human = await lk.connect(node, "alice", "lobby")
        try:
            agent = await an_agent(human)
            assert agent.identity.startswith("agent-AJ_"), agent.identity
            assert await hears(human, agent.identity), "the agent's tone is silent"
            assert await ask(human, agent.identity, "chat", "hello") == b"echo:hello"
            who = json.loads(await ask(human, agent.identity, "whoami", "?"))
            assert who["room"] == "lobby" and who["worker"] == worker_id
            # The dispatch and its running job, as the server API lists them.
            lkapi = api.LiveKitAPI(node.http_url, API_KEY, API_SECRET)
            try:
                listed = await lkapi.agent_dispatch.list_dispatch("lobby")
            finally:
                await lkapi.aclose()
            assert len(listed) == 1 and listed[0].agent_name == ""
            job = listed[0].state.jobs[0]
            assert job.id == who["job"] and job.state.worker_id == worker_id
            assert job.state.participant_identity == agent.identity
            assert job.state.status == api.JobStatus.JS_RUNNING
        finally:
            await human.disconnect()
        # The agent alone does not keep the room open: it closes after the
        # departure timeout and the worker is told to end the job.
        await w.marker("JOB_END", timeout=20)
        lkapi = api.LiveKitAPI(node.http_url, API_KEY, API_SECRET)
        try:
            rooms = (await lkapi.room.list_rooms(api.ListRoomsRequest())).rooms
        finally:
            await lkapi.aclose()
        assert [r.name for r in rooms] == [], rooms
        assert any("room closed" in l and "lobby" in l for l in node.lines)
    finally:
        node.stop()


async def test_a_named_agent_comes_by_dispatch_and_a_second_worker_takes_over_a_killed_one(tmp_path, workers):
    node = start_node(tmp_path)
    lkapi = api.LiveKitAPI(node.http_url, API_KEY, API_SECRET)
    try:
        first = Worker(node, "helper")
        workers.append(first)
        await first.registered()
        human = await lk.connect(node, "bob", "desk")
        try:
            # A named agent is not sent into a room nobody asked it into.
            await asyncio.sleep(1.5)
            assert agents_in(human) == []
            d = await lkapi.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(agent_name="helper", room="desk", metadata="m1"))
            assert d.id.startswith("AD_") and d.agent_name == "helper"
            agent = await an_agent(human)
            assert await hears(human, agent.identity)
            who = json.loads(await ask(human, agent.identity, "whoami", "?"))
            assert who["pid"] == first.proc.pid and who["agent_name"] == "helper"

            second = Worker(node, "helper")
            workers.append(second)
            await second.registered()
            killed_at = time.monotonic()
            first.kill()
            # The lost job's participant is removed, and another worker's agent joins.
            replacement = await an_agent(human, timeout=30, other_than=(agent.identity,))
            await lk.wait_for(lambda: agent.identity not in human.remote_participants, 30,
                              "the killed worker's agent to leave")
            took = time.monotonic() - killed_at
            who2 = json.loads(await ask(human, replacement.identity, "whoami", "?"))
            assert who2["pid"] == second.proc.pid, who2
            assert await hears(human, replacement.identity), "the replacement agent is silent"
            jobs = (await lkapi.agent_dispatch.list_dispatch("desk"))[0].state.jobs
            statuses = {j.id: j.state.status for j in jobs}
            assert statuses[who["job"]] == api.JobStatus.JS_FAILED, statuses
            assert statuses[who2["job"]] == api.JobStatus.JS_RUNNING, statuses
            assert took < 20, f"takeover took {took:.1f} s"

            # Deleting the dispatch stops its agent.
            await lkapi.agent_dispatch.delete_dispatch(d.id, "desk")
            await lk.wait_for(lambda: not agents_in(human), 15, "the agent to leave after DeleteDispatch")
            assert await lkapi.agent_dispatch.list_dispatch("desk") == []
        finally:
            await human.disconnect()
    finally:
        await lkapi.aclose()
        node.stop()


async def test_a_tokens_room_config_dispatches_its_agents_when_it_creates_the_room(tmp_path, workers):
    node = start_node(tmp_path)
    try:
        w = Worker(node, "concierge")
        workers.append(w)
        await w.registered()
        tok = (api.AccessToken(API_KEY, API_SECRET).with_identity("carol")
               .with_grants(api.VideoGrants(room_join=True, room="hall"))
               .with_room_config(api.RoomConfiguration(agents=[
                   api.RoomAgentDispatch(agent_name="concierge", metadata="{\"greet\": true}")]))
               .to_jwt())
        human = rtc.Room()
        await asyncio.wait_for(human.connect(node.url, tok, options=lk.V0), 20)
        try:
            agent = await an_agent(human)
            assert await ask(human, agent.identity, "chat", "hi") == b"echo:hi"
        finally:
            await human.disconnect()
    finally:
        node.stop()


async def test_bad_agent_input_gets_clear_errors(tmp_path, workers):
    node = start_node(tmp_path)
    lkapi = api.LiveKitAPI(node.http_url, API_KEY, API_SECRET)
    try:
        async with aiohttp.ClientSession() as s:
            # A token without the agent grant, and no token.
            join_only = lk.token("mallory", "x")
            async with s.get(node.http_url + "/agent", headers={"Authorization": f"Bearer {join_only}"}) as r:
                assert r.status == 401
                assert await r.json() == {"error": "unauthorized", "message": "token has no agent grant"}
            async with s.get(node.http_url + "/agent") as r:
                assert r.status == 401 and (await r.json())["error"] == "unauthorized"
            agent_token = api.AccessToken(API_KEY, API_SECRET).with_grants(api.VideoGrants(agent=True)).to_jwt()
            headers = {"Authorization": f"Bearer {agent_token}"}
            # Not protobuf, not a registration, a job type Nodo does not run.
            from livekit.protocol import agent as agent_pb
            cases = [
                (lambda ws: ws.send_str("hello"), 1003, "expected binary protobuf messages"),
                (lambda ws: ws.send_bytes(b"\xff\xff\xff"), 1003, "malformed WorkerMessage"),
                (lambda ws: ws.send_bytes(agent_pb.WorkerMessage(ping=agent_pb.WorkerPing(timestamp=1))
                                          .SerializeToString()), 1008, "first message must be a register"),
                (lambda ws: ws.send_bytes(agent_pb.WorkerMessage(register=agent_pb.RegisterWorkerRequest(
                    type=agent_pb.JT_PUBLISHER)).SerializeToString()), 1003, "JT_PUBLISHER is not supported"),
            ]
            for send, code, reason in cases:
                async with s.ws_connect(node.url + "/agent", headers=headers) as ws:
                    await send(ws)
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
                    assert (msg.data, reason in msg.extra) == (code, True), msg
        # A dispatch to an agent nobody serves, and a dispatch that does not exist.
        with pytest.raises(api.TwirpError) as e:
            await lkapi.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(agent_name="ghost", room="r"))
        assert e.value.code == "failed_precondition" and "ghost" in e.value.message
        assert e.value.status == 412
        human = await lk.connect(node, "dave", "r")
        try:
            with pytest.raises(api.TwirpError) as e:
                await lkapi.agent_dispatch.delete_dispatch("AD_nope", "r")
            assert e.value.code == "not_found"
        finally:
            await human.disconnect()
        # A non-admin token may not dispatch.
        async with aiohttp.ClientSession() as s:
            url = node.http_url + "/twirp/livekit.AgentDispatchService/CreateDispatch"
            headers = {"Authorization": f"Bearer {lk.token('dave', 'r')}", "Content-Type": "application/json"}
            async with s.post(url, json={"agent_name": "x", "room": "r"}, headers=headers) as r:
                assert r.status == 401 and (await r.json())["code"] == "unauthenticated"
    finally:
        await lkapi.aclose()
        node.stop()


async def app_api(s, node, method, path, token=None, body=None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with s.request(method, node.http_url + path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_calling_an_assistant_rings_and_the_agent_answers(tmp_path, workers):
    config = tmp_path / "nodo.toml"
    config.write_text('[calls]\nassistants = ["helper"]\n')
    node = start_node(tmp_path, "--config", str(config))
    try:
        async with aiohttp.ClientSession() as s:
            status, body = await app_api(s, node, "POST", "/api/auth/register", body={
                "username": f"erin{time.time_ns() % 10**9}", "name": "Erin", "password": "assistant test pw"})
            assert status == 201, body
            erin, session = body["user"]["id"], body["token"]
            # The assistant's name is reserved: nobody registers as it.
            status, body = await app_api(s, node, "POST", "/api/auth/register", body={
                "username": "Helper", "name": "Fake", "password": "assistant test pw"})
            assert status == 409, body
            # Nobody serves the assistant yet: the call is refused with a reason.
            status, body = await app_api(s, node, "POST", "/api/calls/initiate", session,
                                         {"recipientId": "helper", "callType": "audio"})
            assert status == 409 and "helper" in body["message"], (status, body)

            w = Worker(node, "helper")
            workers.append(w)
            await w.registered()
            status, body = await app_api(s, node, "POST", "/api/calls/initiate", session,
                                         {"recipientId": "helper", "callType": "audio"})
            assert status == 200, body
            call, room_token = body["call"], body["token"]
            assert call["status"] == "ringing" and call["toUserId"] == "helper"
            # The agent is dispatched under the assistant's id and answers.
            await w.marker("JOB")

            async def status_of():
                _, b = await app_api(s, node, "GET", f"/api/calls/{call['id']}", session)
                return b["call"]["status"]

            deadline = time.monotonic() + 30
            while await status_of() == "ringing" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert await status_of() == "accepted"
            human = rtc.Room()
            await asyncio.wait_for(human.connect(body["url"] if body.get("url", "").startswith("ws") else node.url,
                                                 room_token, options=lk.V0), 20)
            try:
                agent = await an_agent(human)
                assert agent.identity == "helper"
                assert await hears(human, "helper")
                assert await ask(human, "helper", "chat", "are you there?") == b"echo:are you there?"
                deadline = time.monotonic() + 15
                while await status_of() != "connected" and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert await status_of() == "connected"
            finally:
                await human.disconnect()
            # The caller hung up: the call ends and the agent's job is terminated.
            deadline = time.monotonic() + 20
            while await status_of() != "ended" and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert await status_of() == "ended"
            await w.marker("JOB_END", timeout=20)
            assert erin.startswith("erin")
    finally:
        node.stop()
