//! Synthetic media: VP8 frames (simulcast layers, periodic and on-demand
//! keyframes) and Opus packets, paced in real time, each packet carrying a
//! latency probe. Nothing here knows about str0m or signaling: sources hand
//! out [`OutPacket`]s that the media layer writes to its RTP streams.

use std::time::{Duration, Instant};

/// Marks a probe: the 4 bytes before the send time.
pub const MAGIC: [u8; 4] = *b"NdLg";
/// Probe length: magic, send time (ns, big endian), source tag.
pub const PROBE_LEN: usize = 16;
/// The low 4 bits of a probe tag: the layer index (0 = q, 1 = h, 2 = f;
/// a single-layer video is 2), or [`AUDIO_LAYER`]; the rest is the
/// publisher's tag.
pub const AUDIO_LAYER: u32 = 0xf;

/// The layer (or [`AUDIO_LAYER`]) of a probe tag.
pub fn tag_layer(tag: u32) -> u32 {
    tag & 0xf
}
/// Bytes after the VP8 payload descriptor reserved for the VP8 payload
/// header (the keyframe header is 10 bytes); the probe follows them.
const VP8_HEADER_AREA: usize = 10;
/// VP8 payload descriptor we write: X, I with a 15-bit picture id.
const VP8_DESCRIPTOR: usize = 4;
/// Opus: one TOC byte, then the probe.
const OPUS_TOC: u8 = 0xfc;
/// Largest RTP payload a video packet gets.
pub const VIDEO_MTU: usize = 1150;

/// One RTP packet for a send stream.
#[derive(Debug)]
pub struct OutPacket {
    /// Simulcast layer (`None`: not simulcast).
    pub rid: Option<&'static str>,
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// One simulcast layer of the synthetic camera.
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec {
    pub rid: &'static str,
    pub bitrate: u32,
    pub width: u16,
    pub height: u16,
}

/// The three layers LiveKit clients send for 720p (q/h/f).
pub const SIMULCAST: [LayerSpec; 3] = [
    LayerSpec {
        rid: "q",
        bitrate: 150_000,
        width: 320,
        height: 180,
    },
    LayerSpec {
        rid: "h",
        bitrate: 500_000,
        width: 640,
        height: 360,
    },
    LayerSpec {
        rid: "f",
        bitrate: 2_500_000,
        width: 1280,
        height: 720,
    },
];

/// Frame rate and keyframe shape of the synthetic camera.
#[derive(Debug, Clone, Copy)]
pub struct VideoParams {
    pub fps: u32,
    /// Seconds between periodic keyframes.
    pub keyframe_secs: f64,
    /// Keyframe size as a multiple of a delta frame.
    pub keyframe_factor: u32,
}

impl Default for VideoParams {
    fn default() -> Self {
        VideoParams {
            fps: 30,
            keyframe_secs: 3.0,
            keyframe_factor: 10,
        }
    }
}

#[derive(Debug)]
struct LayerState {
    spec: LayerSpec,
    seq: u64,
    picture_id: u16,
    keyframe_due: bool,
}

/// A VP8 camera: every layer sends a frame per tick.
#[derive(Debug)]
pub struct VideoSource {
    layers: Vec<LayerState>,
    simulcast: bool,
    fps: u32,
    /// Every this many frames all layers send a keyframe.
    keyframe_every: u64,
    keyframe_factor: usize,
    frame: u64,
    ts_base: u32,
    next: Instant,
    tag: u32,
}

impl VideoSource {
    /// `layers` in ascending quality; `simulcast` writes each with its rid.
    pub fn new(
        layers: &[LayerSpec],
        simulcast: bool,
        params: VideoParams,
        tag: u32,
        now: Instant,
    ) -> Self {
        let fps = params.fps.max(1);
        VideoSource {
            layers: layers
                .iter()
                .map(|&spec| LayerState {
                    spec,
                    seq: u64::from(rand::random::<u16>() >> 2),
                    picture_id: rand::random::<u16>() & 0x7fff,
                    keyframe_due: true,
                })
                .collect(),
            simulcast,
            fps,
            keyframe_every: ((f64::from(fps) * params.keyframe_secs).round() as u64).max(1),
            keyframe_factor: params.keyframe_factor.max(1) as usize,
            frame: 0,
            ts_base: rand::random::<u32>() >> 1,
            next: now,
            tag,
        }
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// Restarts pacing at `now` (e.g. once the connection is up).
    pub fn restart(&mut self, now: Instant) {
        self.next = now;
    }

    /// The next frame of a layer (`rid`, or every layer for `None`) is a keyframe.
    pub fn request_keyframe(&mut self, rid: Option<&str>) {
        for l in &mut self.layers {
            if rid.is_none_or(|r| r == l.spec.rid) {
                l.keyframe_due = true;
            }
        }
    }

    /// Appends the packets of every frame due at `now` to `out`; `ns` is the
    /// send time written into the probes.
    pub fn poll(&mut self, now: Instant, ns: u64, out: &mut Vec<OutPacket>) {
        let interval = Duration::from_secs(1) / self.fps;
        if now.saturating_duration_since(self.next) > Duration::from_secs(1) {
            // Far behind (a stall): skip ahead rather than burst.
            self.next = now;
        }
        while self.next <= now {
            self.next += interval;
            self.one_frame(ns, out);
        }
    }

    fn one_frame(&mut self, ns: u64, out: &mut Vec<OutPacket>) {
        let periodic = self.frame.is_multiple_of(self.keyframe_every);
        let ts = self
            .ts_base
            .wrapping_add((self.frame * 90_000 / u64::from(self.fps)) as u32);
        self.frame += 1;
        let top = self.layers.len().saturating_sub(1);
        for (index, l) in self.layers.iter_mut().enumerate() {
            // A single layer counts as the top (f) one.
            let layer = (2 - (top - index).min(2)) as u32;
            let tag = (self.tag << 4) | layer;
            let key = periodic || l.keyframe_due;
            l.keyframe_due = false;
            let mut size = (l.spec.bitrate / self.fps / 8) as usize;
            if key {
                size *= self.keyframe_factor;
            }
            let min = VP8_DESCRIPTOR + VP8_HEADER_AREA + PROBE_LEN;
            let count = size.div_ceil(VIDEO_MTU).max(1);
            let each = (size / count).max(min);
            for i in 0..count {
                let payload = vp8_payload(
                    l.picture_id,
                    i == 0,
                    key,
                    (l.spec.width, l.spec.height),
                    size as u32,
                    (ns, tag),
                    each,
                );
                out.push(OutPacket {
                    rid: self.simulcast.then_some(l.spec.rid),
                    seq: l.seq,
                    ts,
                    marker: i + 1 == count,
                    payload,
                });
                l.seq += 1;
            }
            l.picture_id = (l.picture_id + 1) & 0x7fff;
        }
    }
}

/// Opus at 50 packets/s (20 ms frames).
#[derive(Debug)]
pub struct AudioSource {
    seq: u64,
    ts: u32,
    size: usize,
    next: Instant,
    tag: u32,
}

impl AudioSource {
    pub fn new(size: usize, tag: u32, now: Instant) -> Self {
        AudioSource {
            seq: u64::from(rand::random::<u16>() >> 2),
            ts: rand::random::<u32>() >> 1,
            size: size.max(1 + PROBE_LEN),
            next: now,
            tag,
        }
    }

    pub fn next_due(&self) -> Instant {
        self.next
    }

    pub fn restart(&mut self, now: Instant) {
        self.next = now;
    }

    pub fn poll(&mut self, now: Instant, ns: u64, out: &mut Vec<OutPacket>) {
        let interval = Duration::from_millis(20);
        if now.saturating_duration_since(self.next) > Duration::from_secs(1) {
            self.next = now;
        }
        while self.next <= now {
            self.next += interval;
            let mut payload = vec![0u8; self.size];
            payload[0] = OPUS_TOC;
            write_probe(&mut payload[1..], ns, (self.tag << 4) | AUDIO_LAYER);
            out.push(OutPacket {
                rid: None,
                seq: self.seq,
                ts: self.ts,
                marker: false,
                payload,
            });
            self.seq += 1;
            self.ts = self.ts.wrapping_add(960);
        }
    }
}

/// One VP8 RTP payload (RFC 7741): descriptor with a 15-bit picture id, on
/// the first packet of a frame the VP8 frame header (key or inter frame),
/// then the probe, then filler up to `len`.
fn vp8_payload(
    picture_id: u16,
    start: bool,
    key: bool,
    (width, height): (u16, u16),
    frame_size: u32,
    (ns, tag): (u64, u32),
    len: usize,
) -> Vec<u8> {
    let mut p = vec![0u8; len.max(VP8_DESCRIPTOR + VP8_HEADER_AREA + PROBE_LEN)];
    // X=1, N=0, S=start, PID=0 | I=1 | M=1 + 15-bit picture id.
    p[0] = 0x80 | if start { 0x10 } else { 0 };
    p[1] = 0x80;
    let pid = 0x8000 | (picture_id & 0x7fff);
    p[2..4].copy_from_slice(&pid.to_be_bytes());
    if start {
        // Frame tag: P (bit 0) is 0 on keyframes; version 0; show_frame;
        // 19-bit first partition size.
        let first_part = (frame_size / 4).min(0x7_ffff);
        let tag_bits = (first_part << 5) | (1 << 4) | u32::from(!key);
        p[4..7].copy_from_slice(&tag_bits.to_le_bytes()[..3]);
        if key {
            p[7..10].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            p[10..12].copy_from_slice(&(width & 0x3fff).to_le_bytes());
            p[12..14].copy_from_slice(&(height & 0x3fff).to_le_bytes());
        }
    }
    let at = VP8_DESCRIPTOR + VP8_HEADER_AREA;
    write_probe(&mut p[at..], ns, tag);
    p
}

fn write_probe(buf: &mut [u8], ns: u64, tag: u32) {
    if buf.len() < PROBE_LEN {
        return;
    }
    buf[..4].copy_from_slice(&MAGIC);
    buf[4..12].copy_from_slice(&ns.to_be_bytes());
    buf[12..16].copy_from_slice(&tag.to_be_bytes());
}

/// A probe read back from a received payload: send time and source tag.
pub fn read_probe(video: bool, payload: &[u8]) -> Option<(u64, u32)> {
    let at = if video {
        vp8_descriptor_len(payload)? + VP8_HEADER_AREA
    } else {
        1
    };
    let p = payload.get(at..at + PROBE_LEN)?;
    if p[..4] != MAGIC {
        return None;
    }
    let ns = u64::from_be_bytes(p[4..12].try_into().ok()?);
    let tag = u32::from_be_bytes(p[12..16].try_into().ok()?);
    Some((ns, tag))
}

/// Length of a VP8 payload descriptor (RFC 7741 §4.2).
fn vp8_descriptor_len(p: &[u8]) -> Option<usize> {
    let b0 = *p.first()?;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            i += if p.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keyframe test Nodo's SFU applies (sfu/src/keyframe.rs), restated.
    fn starts_keyframe(p: &[u8]) -> bool {
        let Some(&b0) = p.first() else { return false };
        if b0 & 0x10 == 0 || b0 & 0x0f != 0 {
            return false;
        }
        vp8_descriptor_len(p)
            .and_then(|i| p.get(i))
            .is_some_and(|h| h & 1 == 0)
    }

    #[test]
    fn keyframes_and_probes() {
        let now = Instant::now();
        let mut v = VideoSource::new(&SIMULCAST, true, VideoParams::default(), 7, now);
        let mut out = Vec::new();
        v.poll(now, 123, &mut out);
        // First frame: keyframes on every layer, 10x size.
        let starts: Vec<_> = out.iter().filter(|p| p.payload[0] & 0x10 != 0).collect();
        assert_eq!(starts.len(), 3);
        assert!(starts.iter().all(|p| starts_keyframe(&p.payload)));
        let f: Vec<_> = out.iter().filter(|p| p.rid == Some("f")).collect();
        assert_eq!(f.len(), 91);
        assert!(f.last().is_some_and(|p| p.marker));
        assert!(f.iter().all(|p| p.payload.len() <= VIDEO_MTU));
        for p in &out {
            let layer = match p.rid {
                Some("q") => 0,
                Some("h") => 1,
                _ => 2,
            };
            assert_eq!(read_probe(true, &p.payload), Some((123, (7 << 4) | layer)));
        }
        out.clear();
        v.poll(now + Duration::from_millis(34), 456, &mut out);
        let starts: Vec<_> = out.iter().filter(|p| p.payload[0] & 0x10 != 0).collect();
        assert_eq!(starts.len(), 3);
        assert!(starts.iter().all(|p| !starts_keyframe(&p.payload)));
        v.request_keyframe(Some("h"));
        out.clear();
        v.poll(now + Duration::from_millis(67), 789, &mut out);
        let keys: Vec<_> = out.iter().filter(|p| starts_keyframe(&p.payload)).collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].rid, Some("h"));
    }

    #[test]
    fn audio_probe() {
        let now = Instant::now();
        let mut a = AudioSource::new(100, 9, now);
        let mut out = Vec::new();
        a.poll(now + Duration::from_millis(45), 5, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].seq, out[0].seq + 1);
        assert_eq!(
            read_probe(false, &out[0].payload),
            Some((5, (9 << 4) | AUDIO_LAYER))
        );
        assert_eq!(read_probe(false, &[0xfc, 1, 2]), None);
    }
}
