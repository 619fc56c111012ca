"""Test worker for Nodo's LiveKit Agents support, built on the real `livekit-agents`.

It registers over `<LIVEKIT_URL>/agent` with livekit-agents' own worker machinery
(AgentServer + the `start` CLI command, i.e. production mode, no hot reload) and,
for every job it is given:

* joins the room (`ctx.connect()`, with the token/url of the JobAssignment),
* publishes an audio track "tone": a continuous 440 Hz sine, 48 kHz mono, 10 ms frames,
* answers reliable data packets to their sender only, on the same topic:
  - topic "whoami": JSON {"identity", "job", "pid", "worker", "room", "agent_name"}
  - any other topic: b"echo:" + payload

Environment:
  LIVEKIT_URL          ws://127.0.0.1:PORT (required)
  LIVEKIT_API_KEY      (required)
  LIVEKIT_API_SECRET   (required)
  AGENT_NAME           "" (default) = automatic dispatch to every new room;
                       non-empty = explicit dispatch only
  AGENT_HTTP_PORT      port of livekit-agents' health HTTP server (default 0 = ephemeral)
  AGENT_DRAIN_TIMEOUT  seconds a SIGTERM/SIGINT waits for running jobs (default 5)
  AGENT_EXECUTOR       thread (default) or process: how livekit-agents runs each job
  AGENT_MAX_RETRY      failed /agent connection attempts before the worker exits (default
                       16; the waits between them are 0, 2, 4, 6, 8, then 10 s each)
  LIVEKIT_LOG_LEVEL    framework log level (default INFO)

Marker lines on stdout (one write each, flushed; framework logs go to stderr once the
worker has started, the few lines before that are JSON on stdout):
  STARTED <health_http_port>
  REGISTERED <worker_id>
  JOB <job_id> <room_name> <agent_identity>          entrypoint entered
  CONNECTED <job_id> <room_name> <agent_identity>    ctx.connect() returned
  PUBLISHED <job_id> <track_sid>                      tone track published
  JOB_END <job_id> <reason>                           job shutting down

Usage: python tone_agent.py [start]
"""

from __future__ import annotations

import os
import sys

# --- must run before livekit.agents is imported -----------------------------------
# No local inference models: livekit-agents' warm-up (ipc/_preload.py) otherwise loads
# the bundled VAD and the ~244 MB end-of-turn model into the worker/job process.
os.environ["LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE"] = "0"
# No LiveKit Cloud telemetry/observability endpoint, whatever the caller's environment.
os.environ.pop("LIVEKIT_OBSERVABILITY_URL", None)
# Hosted-agents (LiveKit Cloud) credentials would change the worker's behaviour.
os.environ.pop("LIVEKIT_WORKER_TOKEN", None)
os.environ.pop("LIVEKIT_AGENT_DEPLOYMENT", None)
# AGENT_NAME is the only source of the agent name (livekit-agents would otherwise also
# read these two).
os.environ.pop("LIVEKIT_AGENT_NAME", None)
os.environ.pop("LIVEKIT_AGENT_NAME_OVERRIDE", None)

import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
from typing import Any  # noqa: E402

from livekit import rtc  # noqa: E402
from livekit.agents import AgentServer, JobContext, JobExecutorType, cli  # noqa: E402

SAMPLE_RATE = 48000
NUM_CHANNELS = 1
FRAME_SAMPLES = SAMPLE_RATE // 100  # 10 ms
TONE_HZ = 440.0
AMPLITUDE = 0.3
WHOAMI_TOPIC = "whoami"

logger = logging.getLogger("tone-agent")
_stdout_lock = threading.Lock()


def marker(*fields: Any) -> None:
    """One marker line on stdout, written with a single call and flushed."""
    line = " ".join(str(f) for f in fields) + "\n"
    with _stdout_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def _tone_frames() -> list[bytes]:
    # 440 Hz at 48 kHz: 4.4 periods per 10 ms frame, so 5 frames (2400 samples) hold
    # exactly 22 periods; cycling them gives a phase-continuous tone.
    frames = []
    total = 5 * FRAME_SAMPLES
    samples = [
        int(AMPLITUDE * 32767 * math.sin(2 * math.pi * TONE_HZ * n / SAMPLE_RATE))
        for n in range(total)
    ]
    for i in range(5):
        chunk = samples[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
        frames.append(struct.pack(f"<{FRAME_SAMPLES}h", *chunk))
    return frames


TONE_FRAMES = _tone_frames()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _require_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.stderr.write(f"tone_agent: {name} must be set\n")
        sys.exit(2)
    return value


async def entrypoint(ctx: JobContext) -> None:
    job = ctx.job
    room = ctx.room
    try:
        planned_identity = ctx.token_claims().identity
    except Exception:  # malformed token: the connect below will fail and say why
        planned_identity = "?"
    marker("JOB", job.id, job.room.name, planned_identity or "?")

    background: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        background.add(task)
        task.add_done_callback(background.discard)
        return task

    async def reply(packet: rtc.DataPacket) -> None:
        sender = packet.participant
        if sender is None:
            logger.info("data packet without a sender (server API): not answered")
            return
        topic = packet.topic or ""
        if topic == WHOAMI_TOPIC:
            payload = json.dumps(
                {
                    "identity": room.local_participant.identity,
                    "job": job.id,
                    "pid": os.getpid(),
                    "worker": ctx.worker_id,
                    "room": job.room.name,
                    "agent_name": job.agent_name,
                }
            ).encode()
        else:
            payload = b"echo:" + packet.data
        try:
            await room.local_participant.publish_data(
                payload,
                reliable=True,
                destination_identities=[sender.identity],
                topic=topic,
            )
        except Exception:
            logger.exception("could not answer a data packet")

    def on_data(packet: rtc.DataPacket) -> None:
        spawn(reply(packet), "reply")

    # registered before connecting so no early packet is missed
    room.on("data_received", on_data)

    async def on_shutdown(reason: str) -> None:
        marker("JOB_END", job.id, (reason or "-").replace(" ", "_"))
        for task in list(background):
            task.cancel()

    ctx.add_shutdown_callback(on_shutdown)

    await ctx.connect()
    marker("CONNECTED", job.id, room.name, room.local_participant.identity)

    source = rtc.AudioSource(SAMPLE_RATE, NUM_CHANNELS, queue_size_ms=500)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)

    async def push_tone() -> None:
        # capture_frame waits while the source's 500 ms queue is full, so this loop
        # runs at real time once the queue has filled.
        i = 0
        try:
            while True:
                frame = rtc.AudioFrame(
                    TONE_FRAMES[i % 5], SAMPLE_RATE, NUM_CHANNELS, FRAME_SAMPLES
                )
                await source.capture_frame(frame)
                i += 1
        except asyncio.CancelledError:
            raise
        except Exception:
            if room.isconnected():
                logger.exception("tone loop stopped")

    spawn(push_tone(), "tone")

    @room.on("disconnected")
    def _on_disconnected(*_: Any) -> None:
        for task in list(background):
            task.cancel()

    publication = await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )
    marker("PUBLISHED", job.id, publication.sid)
    # The entrypoint returns here; the job lives on until the room disconnects (or the
    # worker shuts it down). The tasks above keep running on this job's event loop.


def _zero_load() -> float:
    # livekit-agents marks a worker FULL when its CPU load passes load_threshold; on a
    # loaded 2-core CI machine that would make it refuse jobs. Report no load instead.
    return 0.0


def _executor_type() -> JobExecutorType:
    # THREAD (default): jobs are threads of the worker process; no forkserver, no job
    # subprocess, so a SIGKILL of the worker ends every job's room connection at once.
    # AGENT_EXECUTOR=process selects livekit-agents' production default, for comparison.
    value = os.environ.get("AGENT_EXECUTOR", "thread").strip().lower()
    if value == "process":
        return JobExecutorType.PROCESS
    if value != "thread":
        sys.stderr.write("tone_agent: AGENT_EXECUTOR must be thread or process\n")
        sys.exit(2)
    return JobExecutorType.THREAD


def build_server() -> AgentServer:
    ws_url = _require_env("LIVEKIT_URL")
    api_key = _require_env("LIVEKIT_API_KEY")
    api_secret = _require_env("LIVEKIT_API_SECRET")
    agent_name = os.environ.get("AGENT_NAME", "")

    server = AgentServer(
        job_executor_type=_executor_type(),
        load_fnc=_zero_load,
        load_threshold=math.inf,
        num_idle_processes=1,
        drain_timeout=_env_int("AGENT_DRAIN_TIMEOUT", 5),
        max_retry=_env_int("AGENT_MAX_RETRY", 16),
        shutdown_process_timeout=5.0,
        initialize_process_timeout=30.0,
        ws_url=ws_url,
        api_key=api_key,
        api_secret=api_secret,
        host="127.0.0.1",
        port=_env_int("AGENT_HTTP_PORT", 0),
        http_proxy=None,
    )
    server.rtc_session(entrypoint, agent_name=agent_name)

    @server.on("worker_started")
    def _on_started() -> None:
        # From here on, framework logs go to stderr so stdout carries only markers.
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)
        marker("STARTED", server.worker_info.http_port)

    @server.on("worker_registered")
    def _on_registered(worker_id: str, *_: Any) -> None:
        marker("REGISTERED", worker_id)

    return server


def main() -> None:
    if len(sys.argv) == 1:
        sys.argv.append("start")
    if sys.argv[1] != "start":
        sys.stderr.write("tone_agent: only the `start` command is supported\n")
        sys.exit(2)
    cli.run_app(build_server())


if __name__ == "__main__":
    main()
