//! Codec-aware inspection of RTP payloads: does this packet start a keyframe?
//!
//! The SFU forwards RTP without depacketizing; it only needs to know where a
//! subscriber may safely start (or switch simulcast layer) without artefacts.

use str0m::format::Codec;

/// True when `payload` is the first packet of a keyframe for `codec`.
/// Audio codecs have no keyframes: every packet is a valid start.
pub fn starts_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8(payload),
        Codec::H264 => h264(payload),
        Codec::Vp9 => vp9(payload),
        Codec::Av1 => av1(payload),
        Codec::Opus | Codec::PCMU | Codec::PCMA => true,
        _ => false,
    }
}

/// RFC 7741: payload descriptor, then the VP8 header whose P bit is 0 on key frames.
fn vp8(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let start_of_partition = b0 & 0x10 != 0;
    let partition_id = b0 & 0x0f;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// RFC 6184: an IDR slice or SPS, alone, aggregated (STAP-A) or fragmented (FU-A start).
fn h264(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let is_key = |t: u8| t == 5 || t == 7;
    match b0 & 0x1f {
        24 => {
            let mut i = 1;
            while i + 2 < p.len() {
                let len = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                if is_key(p[i + 2] & 0x1f) {
                    return true;
                }
                i += 2 + len;
            }
            false
        }
        28 => p.get(1).is_some_and(|h| h & 0x80 != 0 && is_key(h & 0x1f)),
        t => is_key(t),
    }
}

/// VP9 payload descriptor (draft-ietf-payload-vp9): P=0 (not inter-predicted) and B=1 (frame start).
fn vp9(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x40 == 0 && b & 0x08 != 0)
}

/// AV1 RTP aggregation header: Z=0 (starts an OBU) and N=1 (new coded video sequence).
fn av1(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x80 == 0 && b & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_and_delta() {
        // X=1, S=1, PID=0; I=1 with a 15-bit picture id; then the VP8 header.
        assert!(starts_keyframe(Codec::Vp8, &[0x90, 0x80, 0x81, 0x23, 0x10]));
        assert!(!starts_keyframe(
            Codec::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x11]
        ));
        // Not the start of the partition.
        assert!(!starts_keyframe(
            Codec::Vp8,
            &[0x80, 0x80, 0x81, 0x23, 0x10]
        ));
        // Minimal descriptor.
        assert!(starts_keyframe(Codec::Vp8, &[0x10, 0x9c]));
        assert!(!starts_keyframe(Codec::Vp8, &[]));
    }

    #[test]
    fn h264_idr_stapa_fua() {
        assert!(starts_keyframe(Codec::H264, &[0x65, 0x00]));
        assert!(!starts_keyframe(Codec::H264, &[0x41, 0x00]));
        // STAP-A with an SPS inside.
        assert!(starts_keyframe(
            Codec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42]
        ));
        // FU-A start of IDR, and a middle fragment.
        assert!(starts_keyframe(Codec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(Codec::H264, &[0x7c, 0x05, 0x00]));
    }

    #[test]
    fn vp9_and_av1() {
        assert!(starts_keyframe(Codec::Vp9, &[0x08]));
        assert!(!starts_keyframe(Codec::Vp9, &[0x48]));
        assert!(starts_keyframe(Codec::Av1, &[0x18]));
        assert!(!starts_keyframe(Codec::Av1, &[0x10]));
        assert!(starts_keyframe(Codec::Opus, &[0x00]));
    }
}
