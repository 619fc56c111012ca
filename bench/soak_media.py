"""Media side of bench/soak.mjs: N LiveKit participants (Python SDK) in two
rooms; a quarter publish a tone, everyone subscribes. Prints `ready …` once
all have joined, then every 10 s a line with the audio frames received.

    python bench/soak_media.py ws://host:port N seconds
"""

import asyncio
import math
import sys
import time

from livekit import api, rtc


def token(identity: str, room: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return api.AccessToken("devkey", "secret").with_identity(identity).with_grants(grants).to_jwt()


async def tone(source: rtc.AudioSource) -> None:
    # One precomputed 10 ms frame of a 440 Hz sine, sent in real time.
    samples = 480
    frame = rtc.AudioFrame.create(48000, 1, samples)
    for i in range(samples):
        frame.data[i] = int(8000 * math.sin(2 * math.pi * 440 * i / 48000))
    while True:
        await source.capture_frame(frame)


async def main(url: str, n: int, seconds: float) -> None:
    received = {"frames": 0}
    rooms = []
    tasks = []

    async def count(track: rtc.Track) -> None:
        async for _ in rtc.AudioStream(track):
            received["frames"] += 1

    for i in range(n):
        room_name = f"soak-media-{i % 2}"
        room = rtc.Room()
        room.on("track_subscribed", lambda track, *_: tasks.append(asyncio.create_task(count(track)))
                if track.kind == rtc.TrackKind.KIND_AUDIO else None)
        await room.connect(url, token(f"m{i}", room_name), options=rtc.RoomOptions(auto_subscribe=True, single_peer_connection=False))
        if i % 4 == 0:
            source = rtc.AudioSource(48000, 1)
            track = rtc.LocalAudioTrack.create_audio_track("tone", source)
            await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
            tasks.append(asyncio.create_task(tone(source)))
        rooms.append(room)
    print(f"ready: {n} participants in 2 rooms, {len(range(0, n, 4))} publishing", flush=True)
    end = time.monotonic() + seconds
    last = 0
    while time.monotonic() < end:
        await asyncio.sleep(10)
        now = received["frames"]
        connected = sum(1 for r in rooms if r.connection_state == rtc.ConnectionState.CONN_CONNECTED)
        print(f"audio frames received in 10 s: {now - last}, connected {connected}/{n}", flush=True)
        last = now
    for r in rooms:
        await r.disconnect()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
    except KeyboardInterrupt:
        pass
