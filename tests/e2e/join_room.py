"""Helper for the JS call tests: joins a LiveKit room with the Python SDK,
prints `joined`, then `disconnected <reason>` when the server ends it."""

import asyncio
import sys

from livekit import rtc


async def main(url: str, token: str, seconds: float) -> None:
    room = rtc.Room()
    gone = asyncio.Event()
    room.on("disconnected", lambda reason: (print(f"disconnected {reason}", flush=True), gone.set()))
    await room.connect(url, token, options=rtc.RoomOptions(single_peer_connection=False))
    print(f"joined {room.name} metadata={room.metadata}", flush=True)
    try:
        await asyncio.wait_for(gone.wait(), seconds)
    except asyncio.TimeoutError:
        print("timeout", flush=True)
        await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 30))
