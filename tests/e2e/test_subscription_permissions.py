"""Track subscription permissions: a publisher's allow-list set with the
Python SDK (`set_track_subscription_permissions`), enforced for SDK and raw
signal clients, with `subscription_permission_update` for whoever loses or
regains access."""

import asyncio

import aiohttp
from livekit import rtc

from lk import MIC, Tone, audible, connect, remote_track, token, wait_for
from test_signal_protocol import recv, recv_until


def allow_only(room: rtc.Room, identity: str):
    room.local_participant.set_track_subscription_permissions(
        allow_all_participants=False,
        participant_permissions=[rtc.ParticipantTrackPermission(participant_identity=identity, allow_all=True)],
    )


async def silent(track) -> bool:
    """No loud frame in 3 s of a track whose source never stops (or no
    frames at all)."""
    try:
        return not await audible(track, within_frames=300, timeout=8)
    except asyncio.TimeoutError:
        return True


def has_audio_from(room: rtc.Room, identity: str) -> bool:
    p = room.remote_participants.get(identity)
    return bool(p) and any(pub.track is not None and pub.kind == rtc.TrackKind.KIND_AUDIO
                           for pub in p.track_publications.values())


async def test_an_allow_list_is_enforced_and_announced(node):
    alice = await connect(node, "alice", "perm")
    tone = Tone()
    tone.start()
    pub = await alice.local_participant.publish_track(tone.track, MIC)
    allow_only(alice, "bob")
    await asyncio.sleep(0.5)

    # The allowed identity receives and hears the track.
    bob = await connect(node, "bob", "perm")
    assert await audible(await remote_track(bob, "alice", rtc.TrackKind.KIND_AUDIO)), "bob hears alice"

    # Another SDK client is not given the track; a raw signal client is told
    # why (its subscriber offer is never answered, so only messages count).
    dave = await connect(node, "dave", "perm")
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{node.url}/rtc", params={"access_token": token("carol", "perm"),
                                                           "protocol": "16", "auto_subscribe": "1"})
        j = (await recv(ws)).join
        alice_sid = next(p.sid for p in j.other_participants if p.identity == "alice")
        u = (await recv_until(ws, "subscription_permission_update")).subscription_permission_update
        assert (u.participant_sid, u.track_sid, u.allowed) == (alice_sid, pub.sid, False)
        await asyncio.sleep(2)
        assert not has_audio_from(dave, "alice"), "dave received a track he is not allowed"

        # Everyone allowed: both are given the track, the raw client is told.
        alice.local_participant.set_track_subscription_permissions(allow_all_participants=True)
        u = (await recv_until(ws, "subscription_permission_update")).subscription_permission_update
        assert (u.track_sid, u.allowed) == (pub.sid, True)
        assert await audible(await remote_track(dave, "alice", rtc.TrackKind.KIND_AUDIO)), "dave hears alice"

        # Only carol allowed: bob and dave stop receiving it (the Python SDK
        # keeps the publication; what it receives goes silent).
        bob_audio = await remote_track(bob, "alice", rtc.TrackKind.KIND_AUDIO)
        dave_audio = await remote_track(dave, "alice", rtc.TrackKind.KIND_AUDIO)
        resubscribed = []
        bob.on("track_subscribed", lambda track, *_: resubscribed.append(track))
        allow_only(alice, "carol")
        await asyncio.sleep(1.0)
        assert await silent(bob_audio), "bob still hears alice"
        assert await silent(dave_audio), "dave still hears alice"
        await ws.close()

    # Bob allowed again (by track sid this time): his subscription comes back.
    alice.local_participant.set_track_subscription_permissions(
        allow_all_participants=False,
        participant_permissions=[rtc.ParticipantTrackPermission(participant_identity="bob", allowed_track_sids=[pub.sid])],
    )
    await wait_for(lambda: resubscribed, 15, "bob's new subscription")
    assert await audible(resubscribed[-1]), "bob hears alice again"
    assert await silent(dave_audio), "dave hears alice"
    tone.stop()
    await dave.disconnect()
    await bob.disconnect()
    await alice.disconnect()
