//! What each layer of a published track costs a subscriber, as the room's
//! bandwidth decisions need it (see `room::bandwidth`).
//!
//! A layer's frames between keyframes are averaged over a short window, so a
//! change in what the encoder sends shows within seconds. Its keyframes are
//! averaged over a longer one: a keyframe is several times a frame, and each
//! subscriber moving onto a layer asks the publisher for one. Averaged over
//! the short window, the keyframes that a round of layer switches brings
//! (a meeting's subscribers climbing at once) raised the layer's rate by up
//! to 70 %, which moved the same subscribers down again at the next tick.

/// Layer ticks a layer's frames between keyframes are averaged over (2 s at
/// 250 ms).
const RATE_TICKS: usize = 8;

/// Layer ticks its keyframes are averaged over (8 s at 250 ms).
const KEY_TICKS: usize = 32;

/// The keyframes' window never counts as shorter than this (the short
/// window's length): a young layer's keyframes, most of what it sent in its
/// first second, count as they would without the long window.
const KEY_WINDOW_MIN_SECS: f64 = 2.0;

/// What a packet costs on the wire beyond its payload, in bytes: the RTP
/// header with a few extensions (~24), the SRTP tag (16 with AES-GCM, 10
/// with HMAC-SHA1), UDP (8) and IPv4 (20). Counted per packet because it is
/// a fifth of an Opus packet or of a low layer's small packets, and a
/// twentieth of a full one.
const PACKET_OVERHEAD: usize = 64;

/// Bytes and bitrates per layer (index = `Layer as usize`; 0 for a track
/// without simulcast).
#[derive(Debug, Clone)]
pub(crate) struct LayerRates {
    /// Bits/s per layer, headers included: its frames between keyframes over
    /// the last `RATE_TICKS` ticks, plus its keyframes over the last
    /// `KEY_TICKS`.
    pub rate: [u64; 3],
    /// Bytes since the last tick: between keyframes, and of keyframes.
    delta: [u64; 3],
    key: [u64; 3],
    /// RTP timestamp of each layer's latest keyframe: the packets after its
    /// first with the same timestamp belong to it.
    key_ts: [Option<u32>; 3],
    /// Whether each layer has sent anything yet: a layer's time counts from
    /// its first packet, not from when the track was announced (a meeting's
    /// layers start up to a second later, and counting that second made them
    /// look a fraction of their rate).
    seen: [bool; 3],
    /// Per tick: bytes between keyframes, bytes of keyframes, and seconds
    /// per layer.
    window: [Tick; KEY_TICKS],
    pos: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tick {
    delta: [u64; 3],
    key: [u64; 3],
    secs: [f64; 3],
}

impl Default for LayerRates {
    fn default() -> Self {
        LayerRates {
            rate: [0; 3],
            delta: [0; 3],
            key: [0; 3],
            key_ts: [None; 3],
            seen: [false; 3],
            window: [Tick::default(); KEY_TICKS],
            pos: 0,
        }
    }
}

impl LayerRates {
    /// Counts one received packet of layer `idx`: `payload` bytes (its
    /// headers are added), its RTP timestamp, and whether it starts a
    /// keyframe.
    pub fn packet(&mut self, idx: usize, payload: usize, ts: u32, keyframe_start: bool) {
        if keyframe_start {
            self.key_ts[idx] = Some(ts);
        }
        self.seen[idx] = true;
        let bytes = (payload + PACKET_OVERHEAD) as u64;
        if self.key_ts[idx] == Some(ts) {
            self.key[idx] += bytes;
        } else {
            self.delta[idx] += bytes;
        }
    }

    /// Closes a tick of `elapsed` seconds and recomputes `rate`.
    pub fn tick(&mut self, elapsed: f64) {
        self.window[self.pos] = Tick {
            delta: self.delta,
            key: self.key,
            secs: self.seen.map(|seen| if seen { elapsed } else { 0.0 }),
        };
        self.pos = (self.pos + 1) % KEY_TICKS;
        self.delta = [0; 3];
        self.key = [0; 3];
        for (i, rate) in self.rate.iter_mut().enumerate() {
            // The last RATE_TICKS ticks, newest first.
            let (delta, secs) = (1..=RATE_TICKS)
                .map(|back| &self.window[(self.pos + KEY_TICKS - back) % KEY_TICKS])
                .fold((0, 0.0), |(b, s), t| (b + t.delta[i], s + t.secs[i]));
            let key: u64 = self.window.iter().map(|t| t.key[i]).sum();
            let key_secs: f64 = self.window.iter().map(|t| t.secs[i]).sum();
            let delta = if secs > 0.0 {
                delta as f64 * 8.0 / secs
            } else {
                0.0
            };
            let key = key as f64 * 8.0 / key_secs.max(KEY_WINDOW_MIN_SECS);
            *rate = (delta + key) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = 10_000;

    /// A frame of `size` payload bytes on the wire, in three packets.
    fn wire(size: usize) -> f64 {
        (size / 3 * 3 + 3 * PACKET_OVERHEAD) as f64
    }

    /// One 250 ms tick of a 32 fps layer with `FRAME`-byte frames, in three
    /// packets each; a keyframe (10 frames' payload) in place of the first
    /// frame when asked.
    fn tick(r: &mut LayerRates, ts: &mut u32, keyframe: bool) {
        for f in 0..8 {
            let key = keyframe && f == 0;
            let size = if key { FRAME * 10 } else { FRAME };
            for p in 0..3 {
                r.packet(2, size / 3, *ts, key && p == 0);
            }
            *ts += 3000;
        }
        r.tick(0.25);
    }

    /// Bits/s of the layer without keyframes.
    fn delta_bps() -> f64 {
        wire(FRAME) * 8.0 * 32.0
    }

    fn close(got: u64, want: f64) -> bool {
        (got as f64 - want).abs() / want < 0.001
    }

    #[test]
    fn a_steady_layer_is_its_frames_with_their_headers() {
        let mut r = LayerRates::default();
        let mut ts = 0;
        for _ in 0..40 {
            tick(&mut r, &mut ts, false);
        }
        assert!(close(r.rate[2], delta_bps()), "{}", r.rate[2]);
        assert_eq!(r.rate[0], 0);
    }

    #[test]
    fn keyframes_count_over_the_long_window() {
        let mut r = LayerRates::default();
        let mut ts = 0;
        for _ in 0..40 {
            tick(&mut r, &mut ts, false);
        }
        // Four keyframes within a second, as a round of layer switches asks.
        for _ in 0..4 {
            tick(&mut r, &mut ts, true);
        }
        // Over the short window they would add 4 x 9 frames per 2 s (+56 %);
        // over the long one, the four keyframes count over 8 s.
        let key = 4.0 * wire(FRAME * 10) * 8.0 / 8.0;
        let want = delta_bps() - 4.0 * wire(FRAME) * 8.0 / 2.0 + key;
        assert!(close(r.rate[2], want), "{} vs {want}", r.rate[2]);
        assert!((r.rate[2] as f64) < delta_bps() * 1.2, "{}", r.rate[2]);
        // Eight seconds later they are out of the window.
        for _ in 0..32 {
            tick(&mut r, &mut ts, false);
        }
        assert!(close(r.rate[2], delta_bps()), "{}", r.rate[2]);
    }

    #[test]
    fn a_layer_counts_from_its_first_packet() {
        let mut r = LayerRates::default();
        let mut ts = 0;
        // Announced, then silent for a second.
        for _ in 0..4 {
            r.tick(0.25);
        }
        for _ in 0..2 {
            tick(&mut r, &mut ts, false);
        }
        assert!(close(r.rate[2], delta_bps()), "{}", r.rate[2]);
    }

    #[test]
    fn a_keyframes_packets_count_as_keyframe_until_the_next_frame() {
        let mut r = LayerRates::default();
        r.packet(1, 1000, 90, true);
        r.packet(1, 1000, 90, false);
        r.packet(1, 500, 180, false);
        let o = PACKET_OVERHEAD as u64;
        assert_eq!((r.key[1], r.delta[1]), (2000 + 2 * o, 500 + o));
    }
}
