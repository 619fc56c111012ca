"""Helper for the JS tests: joins a LiveKit room with the Python SDK, waits
for `sender`'s audio and prints `audible True|False` (whether a loud frame
arrives within the first 4 s), then leaves."""

import asyncio
import sys

from livekit import rtc

from lk import audible, remote_track


async def main(url: str, token: str, sender: str) -> None:
    room = rtc.Room()
    await room.connect(url, token, options=rtc.RoomOptions(single_peer_connection=False))
    print("joined", flush=True)
    track = await remote_track(room, sender, rtc.TrackKind.KIND_AUDIO, timeout=30)
    print(f"audible {await audible(track, timeout=30)}", flush=True)
    await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
