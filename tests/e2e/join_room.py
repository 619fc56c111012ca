"""Helper for the JS call tests: joins a LiveKit room with the Python SDK,
prints `joined`, then `disconnected <reason>` when the server ends it."""

import asyncio
import sys

from livekit import rtc


async def publish_silence(room: rtc.Room) -> None:
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    print("published", flush=True)
    while True:
        await source.capture_frame(rtc.AudioFrame.create(48000, 1, 480))


async def main(url: str, token: str, seconds: float, publish: bool) -> None:
    room = rtc.Room()
    gone = asyncio.Event()
    room.on("disconnected", lambda reason: (print(f"disconnected {reason}", flush=True), gone.set()))
    await room.connect(url, token, options=rtc.RoomOptions(single_peer_connection=False))
    print(f"joined {room.name} metadata={room.metadata}", flush=True)
    if publish:
        asyncio.create_task(publish_silence(room))
    try:
        await asyncio.wait_for(gone.wait(), seconds)
    except asyncio.TimeoutError:
        print("timeout", flush=True)
        await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 30, "publish" in sys.argv[4:]))
