"""Calls through impaired networks: random loss per direction and a capped
downlink, made with network namespaces and nftables (tests/e2e/impair.py), with
LiveKit's Python SDK as publisher and subscriber.

Short windows for CI; bench/impair.py runs the long ones and prints the table
in the README. The bounds here are looser than the README's targets (a 12 s
window on a shared CI core is noisy); the mechanisms are asserted exactly:
the node NACKs the publisher and the publisher retransmits.
"""

import pytest

import impair
from conftest import start_node

WINDOW = 12.0


@pytest.fixture
def net():
    why = impair.unavailable()
    if why:
        pytest.skip(f"impairment tests skipped: {why}")
    with impair.Net() as n:
        yield n


@pytest.fixture
def node(tmp_path, net):
    n = start_node(tmp_path, "--bind", net.host)
    yield n
    n.stop()


def report(r: impair.Result):
    print(f"\n# {r.impairment.label()}: {r.fps:.1f} fps, longest freeze {r.longest_freeze:.2f} s, "
          f"publisher got {r.pub['video'].get('nack_count')} NACKs and sent "
          f"{r.pub['video'].get('retransmitted_packets_sent')} RTX, subscriber sent "
          f"{r.sub['video'].get('pli_count')} PLI, audio concealed {100 * r.concealed:.1f} %, "
          f"drops {r.drops}")


async def test_publisher_uplink_loss_is_recovered(node, net):
    """5 % loss on the way from the clients to the node: the node NACKs the
    publisher, the publisher retransmits, and the picture keeps moving."""
    clean = await impair.measure(node, net, impair.Impairment(), WINDOW, room="clean")
    report(clean)
    assert clean.fps >= 18, clean.summary()

    lossy = await impair.measure(node, net, impair.Impairment(up_loss=5), WINDOW, room="uplink")
    report(lossy)
    assert lossy.drops["pub"].get("up_loss", 0) > 20, "the loss rule dropped nothing"
    assert lossy.pub["video"]["nack_count"] > 0, "the node never NACKed the publisher"
    assert lossy.pub["video"]["retransmitted_packets_sent"] > 0, lossy.summary()
    assert lossy.fps >= 0.8 * clean.fps, lossy.summary()
    assert lossy.longest_freeze < 1.0, lossy.summary()


async def test_heavy_loss_both_ways_keeps_video_moving(node, net):
    """20 % loss on every hop. The node answers a fifth of the stream in
    resends, and asks the publisher for a keyframe as soon as an uplink loss
    is beyond repair, or when its request went unanswered: 6 to 12 fps and
    freezes of 0.7 to 2 s in 12 s windows (before: 1 to 7 fps, freezes of 3
    to 11 s, with subscribers waiting seconds for their own decoders to ask).
    The README's target (10 fps, < 20 % of audio concealed) is met in about
    half the runs; the bounds leave room for a loaded CI core."""
    r = await impair.measure(node, net, impair.Impairment(up_loss=20, down_loss=20), WINDOW)
    report(r)
    assert r.fps >= 3.0, r.summary()
    assert r.longest_freeze < 5.0, r.summary()
    assert r.concealed < 0.5, r.summary()


async def test_capped_subscriber_gets_the_low_layer_and_keeps_audio(node, net):
    """Three simulcast layers; the subscriber's downlink is capped at 300 kbit/s:
    it is moved to the low layer within seconds and its audio is untouched."""
    publish = impair.Publish(width=960, height=540, fps=15, max_bitrate=1_200_000)
    r = await impair.measure(node, net, impair.Impairment(sub_down_kbit=300), WINDOW, publish=publish,
                             settle=10.0)
    report(r)
    layers = r.pub["layers"]
    assert len(layers) == 3, f"the publisher sends {layers}"
    low = min(w for _, w in layers if w)
    # On this 2-core machine the estimate can still be short of the upper
    # layers when the cap goes on (see the README): then there is no move to
    # time, and what is checked is that the capped call keeps moving.
    print(f"# the subscriber was on {r.widths[0][1] if r.widths else None} px when the cap went on")
    first = r.time_to_first(low)
    stays = r.share_at_most(low, after=first or 0.0)
    print(f"# first low-layer frame ({low} px) after {first} s, then {stays:.0%} of frames on it; "
          f"widths seen: {sorted({w for _, w in r.widths})}")
    # 0.3-1.9 s in most runs; 5.0 s seen once on a clean-clone CI run of this machine.
    assert first is not None and first <= 6.0, r.summary()
    # After its hold the subscriber may try the next layer up, briefly.
    assert stays >= 0.6, r.summary()
    assert r.concealed < 0.05, r.summary()
    # Once there, it keeps moving (the publisher sends 15 fps). A freeze at
    # the switch can reach into this window: a full-suite run gave 6.9 fps
    # after 5 s with a 3.9 s freeze (README, "Calls through real networks").
    late = [t for t, _ in r.widths if t >= 5.0]
    assert len(late) >= 6 * (r.seconds - 5.0), f"video stalled on the low layer: {r.summary()}"


async def test_livekit_client_in_chromium_through_loss_both_ways(node, net):
    """livekit-client in headless Chromium subscribing to the Python SDK's
    camera through 10 % loss each way: the node repairs the publisher's losses
    and answers the browser's NACKs, and the picture keeps moving."""
    r = await impair.measure(node, net, impair.Impairment(up_loss=10, down_loss=10), WINDOW,
                             room="browser", kinds=("python", "browser"))
    report(r)
    assert r.pub["video"]["nack_count"] > 0, r.summary()
    assert r.sub["video"]["nack_count"] > 0 and r.sub["video"]["retransmitted_packets_received"] > 0, r.summary()
    assert r.fps >= 8, r.summary()
    assert r.longest_freeze < 4.0, r.summary()
