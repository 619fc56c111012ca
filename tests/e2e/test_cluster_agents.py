"""LiveKit Agents across nodes: a `livekit-agents` worker registered on node B
serves rooms that live on node A (Redis between them). A's dispatcher finds no
worker of its own for the agent, hands the dispatch to B, B's worker takes the
job and joins through B, which hands it to A; when the room closes on A, B ends
the job."""

import asyncio
import json
import subprocess

import aiohttp

from livekit import api

import lk
from conftest import API_KEY, API_SECRET
from test_agents import Worker, an_agent, ask, hears, workers  # noqa: F401  (fixture)
from test_cluster import cluster_node, lkapi, redis  # noqa: F401  (fixture)

FAST_CLOSE = {"NODO_ROOM__DEPARTURE_TIMEOUT": "2"}


def owner(redis, room):  # noqa: F811
    return subprocess.run(["redis-cli", "-p", str(redis.port), "GET", f"nodo:room:{room}"],
                          check=True, capture_output=True, text=True).stdout.strip()


async def test_a_worker_on_one_node_serves_rooms_on_the_other(tmp_path, redis, workers):  # noqa: F811
    a = cluster_node(tmp_path, redis, "ag-a", env=FAST_CLOSE)
    b = cluster_node(tmp_path, redis, "ag-b", env=FAST_CLOSE)
    try:
        unnamed = Worker(b)
        named = Worker(b, agent_name="helper")
        workers.extend([unnamed, named])
        unnamed_id = await unnamed.registered()
        named_id = await named.registered()
        # B's registry entry lists its workers' agents from its next heartbeat.
        await asyncio.sleep(5)

        human = await lk.connect(a, "alice", "far-room")
        try:
            assert owner(redis, "far-room") == "ag-a", "the room lives on A"
            agent = await an_agent(human)
            assert await hears(human, agent.identity), "the agent's tone is silent"
            assert await ask(human, agent.identity, "chat", "hello") == b"echo:hello"
            who = json.loads(await ask(human, agent.identity, "whoami", "?"))
            assert who["room"] == "far-room" and who["worker"] == unnamed_id

            # An explicit dispatch through A of an agent only B's workers serve.
            api_a = lkapi(a)
            try:
                d = await api_a.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(agent_name="helper", room="far-room"))
                assert d.agent_name == "helper" and d.room == "far-room"
            finally:
                await api_a.aclose()
            helper = await an_agent(human, other_than={agent.identity})
            who = json.loads(await ask(human, helper.identity, "whoami", "?"))
            assert who["worker"] == named_id

            # An agent nobody serves anywhere is still refused.
            api_a = lkapi(a)
            try:
                try:
                    await api_a.agent_dispatch.create_dispatch(
                        api.CreateAgentDispatchRequest(agent_name="nobody", room="far-room"))
                    raise AssertionError("a dispatch of an agent nobody serves was accepted")
                except api.TwirpError as e:
                    assert e.status in (400, 404, 412, 503), e
            finally:
                await api_a.aclose()
        finally:
            await human.disconnect()
        # The node-to-node endpoint takes no client's token, even a room admin's
        # under the identity nodes use: node tokens are signed with derived secrets.
        admin = (api.AccessToken(API_KEY, API_SECRET).with_identity("nodo-node")
                 .with_grants(api.VideoGrants(room_admin=True, room="far-room")).to_jwt())
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{b.http_url}/nodo/agents/dispatch",
                                 headers={"authorization": f"Bearer {admin}", "x-nodo-forwarded": "1"},
                                 json={"room": {"name": "far-room"}, "req": {"agentName": "helper"},
                                       "identity": "alice"}) as r:
                assert r.status in (401, 403), await r.text()
            async with http.post(f"{b.http_url}/nodo/agents/dispatch", data=b"{not json",
                                 headers={"x-nodo-forwarded": "1"}) as r:
                assert r.status == 400 and (await r.json())["code"] == "invalid_argument", await r.text()
        # The room closes on A: B hears it and its workers end their jobs.
        await unnamed.marker("JOB_END", timeout=30)
        await named.marker("JOB_END", timeout=30)
    finally:
        for n in (a, b):
            n.stop()
