//! RFC 2198 redundant audio (RED), as browsers send Opus in it: a packet
//! carries the current frame (the primary block, last) after earlier frames
//! (redundant blocks), so a lost packet's frame arrives with the next one.
//!
//! Nodo forwards RED untouched to subscribers that negotiated it and, for
//! the others, the primary block alone as plain Opus. The block headers
//! name the payload type of each block's codec; when a subscriber numbers
//! Opus differently from the publisher, they are rewritten.

use std::sync::Arc;

/// Header of one block (`F` bit, payload type; redundant blocks also carry
/// a timestamp offset and a length).
const F_BIT: u8 = 0x80;

/// Where the blocks of a RED payload are: the header length, the redundant
/// blocks' total length, and the primary block's payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    header_len: usize,
    redundant_len: usize,
    primary_pt: u8,
}

fn layout(payload: &[u8]) -> Option<Layout> {
    let mut pos = 0;
    let mut redundant_len = 0usize;
    loop {
        let first = *payload.get(pos)?;
        if first & F_BIT == 0 {
            let header_len = pos + 1;
            if header_len + redundant_len > payload.len() {
                return None;
            }
            return Some(Layout {
                header_len,
                redundant_len,
                primary_pt: first & 0x7f,
            });
        }
        let h = payload.get(pos..pos + 4)?;
        // Block length: the low 10 bits of the 4-byte header.
        redundant_len += (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        pos += 4;
    }
}

/// The primary block of a RED payload, if it is well formed and its payload
/// type is `primary_pt` (the negotiated Opus); `None` means drop the packet.
pub fn primary(payload: &[u8], primary_pt: u8) -> Option<&[u8]> {
    let l = layout(payload)?;
    if l.primary_pt != primary_pt {
        return None;
    }
    payload.get(l.header_len + l.redundant_len..)
}

/// The redundant blocks of a RED payload that carry `primary_pt` (earlier
/// frames of the same codec), oldest first, each with its timestamp offset
/// back from the primary's. Empty when malformed.
pub fn redundant(payload: &[u8], primary_pt: u8) -> Vec<(u32, &[u8])> {
    let Some(l) = layout(payload) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut data = l.header_len;
    let mut pos = 0;
    while pos + 4 <= l.header_len {
        let h = &payload[pos..pos + 4];
        let offset = (u32::from(h[1]) << 6) | (u32::from(h[2]) >> 2);
        let len = (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        if h[0] & 0x7f == primary_pt && len > 0 {
            out.push((offset, &payload[data..data + len]));
        }
        data += len;
        pos += 4;
    }
    out
}

/// Most packets in a row a RED packet is searched for (browsers carry one
/// or two earlier frames).
const MAX_GAP: u64 = 4;

/// The packets lost between `last` (the highest sequence number received,
/// timestamp `last_ts`) and the RED packet `seq` (timestamp `ts`) that its
/// redundant blocks carry, as `(seq, ts, Opus payload)`, oldest first. A
/// block's place comes from its timestamp offset over the packets' steady
/// frame length (whatever redundancy distances the sender uses); when the
/// gap's timestamps are not a whole number of equal frames (DTX, a new
/// stream), nothing is recovered.
pub fn recover(
    (last, last_ts): (u64, u32),
    seq: u64,
    ts: u32,
    payload: &[u8],
    opus: u8,
) -> Vec<(u64, u32, Arc<[u8]>)> {
    let gap = seq.saturating_sub(last);
    if !(2..=MAX_GAP + 1).contains(&gap) {
        return Vec::new();
    }
    let span = u64::from(ts.wrapping_sub(last_ts));
    if span == 0 || span % gap != 0 {
        return Vec::new();
    }
    let frame = span / gap;
    let mut out: Vec<(u64, u32, Arc<[u8]>)> = Vec::new();
    for (offset, data) in redundant(payload, opus) {
        let offset = u64::from(offset);
        if offset % frame != 0 {
            continue;
        }
        let distance = offset / frame;
        if distance == 0 || distance >= gap {
            continue;
        }
        let at = seq - distance;
        if out.iter().all(|(s, _, _)| *s != at) {
            out.push((at, ts.wrapping_sub(offset as u32), data.into()));
        }
    }
    out.sort_by_key(|(s, _, _)| *s);
    out
}

/// A copy of a RED payload whose block headers say `to` where they said
/// `from` (a subscriber numbering Opus otherwise). `None` when malformed.
pub fn renumber(payload: &[u8], from: u8, to: u8) -> Option<Vec<u8>> {
    let l = layout(payload)?;
    let mut out = payload.to_vec();
    let mut pos = 0;
    while pos < l.header_len {
        if out[pos] & 0x7f == from {
            out[pos] = (out[pos] & F_BIT) | to;
        }
        pos += if out[pos] & F_BIT != 0 { 4 } else { 1 };
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RED payload: redundant blocks `(pt, ts offset, data)` then the primary.
    fn red(redundant: &[(u8, u16, &[u8])], primary_pt: u8, primary: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (pt, offset, data) in redundant {
            let len = data.len() as u32;
            let word = (u32::from(*offset) << 10) | len;
            out.push(F_BIT | pt);
            out.extend_from_slice(&word.to_be_bytes()[1..]);
        }
        out.push(primary_pt);
        for (_, _, data) in redundant {
            out.extend_from_slice(data);
        }
        out.extend_from_slice(primary);
        out
    }

    #[test]
    fn the_primary_block_is_found_after_the_redundant_ones() {
        let p = red(
            &[(111, 960, &[1; 40]), (111, 1920, &[2; 300])],
            111,
            &[9, 8, 7],
        );
        assert_eq!(primary(&p, 111), Some(&[9u8, 8, 7][..]));
        let p = red(&[], 111, &[5; 20]);
        assert_eq!(primary(&p, 111), Some(&[5u8; 20][..]));
        // An empty primary (DTX) is still a primary.
        let p = red(&[(111, 960, &[1; 10])], 111, &[]);
        assert_eq!(primary(&p, 111), Some(&[][..]));
    }

    #[test]
    fn malformed_or_foreign_payloads_are_refused() {
        assert_eq!(primary(&[], 111), None);
        // A redundant header cut short.
        assert_eq!(primary(&[F_BIT | 111, 0, 4], 111), None);
        // Blocks longer than the packet.
        let mut p = red(&[(111, 960, &[1; 40])], 111, &[1]);
        p.truncate(30);
        assert_eq!(primary(&p, 111), None);
        // A primary of another codec (PCMU) is not passed off as Opus.
        assert_eq!(primary(&red(&[], 0, &[1, 2]), 111), None);
        // Only headers with F set, to the end: no primary header.
        assert_eq!(
            primary(&[F_BIT | 111, 0, 0, 0, F_BIT | 111, 0, 0, 0], 111),
            None
        );
    }

    #[test]
    fn redundant_blocks_come_with_their_offsets() {
        let p = red(
            &[
                (111, 1920, &[1; 40]),
                (0, 960, &[7; 3]),
                (111, 960, &[2; 300]),
            ],
            111,
            &[9],
        );
        let r = redundant(&p, 111);
        assert_eq!(r.len(), 2, "the PCMU block is left out");
        assert_eq!(r[0], (1920, &[1u8; 40][..]));
        assert_eq!(r[1], (960, &[2u8; 300][..]));
        assert!(redundant(&red(&[], 111, &[9]), 111).is_empty());
        assert!(redundant(&[F_BIT | 111, 0, 4], 111).is_empty());
    }

    #[test]
    fn lost_packets_are_recovered_from_the_next_ones_redundancy() {
        // Two levels: the packet before last (offset 1920) and the last (960).
        let p = red(&[(111, 1920, &[1; 5]), (111, 960, &[2; 6])], 111, &[3; 7]);
        let at = |last: u64| (last, 10_000u32.wrapping_sub(960 * (100 - last) as u32));
        // Nothing lost: nothing recovered.
        assert!(recover(at(99), 100, 10_000, &p, 111).is_empty());
        // One lost (99): the last block.
        let r = recover(at(98), 100, 10_000, &p, 111);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].0, r[0].1, &r[0].2[..]),
            (99, 10_000 - 960, &[2u8; 6][..])
        );
        // Two lost (98, 99): both, oldest first.
        let r = recover(at(97), 100, 10_000, &p, 111);
        let got: Vec<(u64, u32, usize)> = r.iter().map(|(s, t, d)| (*s, *t, d.len())).collect();
        assert_eq!(got, [(98, 10_000 - 1920, 5), (99, 10_000 - 960, 6)]);
        // Three lost: only what the redundancy carries.
        assert_eq!(recover(at(96), 100, 10_000, &p, 111).len(), 2);
        // A jump too far (a new stream, a long outage) or a late packet: nothing.
        assert!(recover(at(10), 100, 10_000, &p, 111).is_empty());
        assert!(recover((150, 0), 100, 10_000, &p, 111).is_empty());
        // Timestamps wrap.
        let r = recover((98, 500u32.wrapping_sub(1920)), 100, 500, &p, 111);
        assert_eq!(r[0].1, 500u32.wrapping_sub(960));
    }

    #[test]
    fn blocks_are_placed_by_their_timestamps_not_their_order() {
        // Distances 1 and 3 (str0m's `red_distances` can send such): with
        // 98 and 99 lost, only the block one frame back belongs to them.
        let p = red(&[(111, 2880, &[3; 4]), (111, 960, &[1; 4])], 111, &[0; 4]);
        let r = recover((97, 10_000 - 2880), 100, 10_000, &p, 111);
        let got: Vec<(u64, u32)> = r.iter().map(|(s, t, _)| (*s, *t)).collect();
        assert_eq!(got, [(99, 10_000 - 960)]);
        // A gap whose timestamps are not whole frames (DTX): nothing.
        assert!(recover((97, 10_000 - 5000), 100, 10_000, &p, 111).is_empty());
    }

    #[test]
    fn block_headers_are_renumbered_and_the_data_kept() {
        let p = red(&[(111, 960, &[1; 4])], 111, &[9, 9]);
        let r = renumber(&p, 111, 96).expect("well formed");
        assert_eq!(primary(&r, 96), Some(&[9u8, 9][..]));
        assert_eq!(r[0], F_BIT | 96);
        assert_eq!(r[4], 96);
        assert_eq!(&r[5..9], &[1; 4]);
        assert_eq!(r.len(), p.len());
        assert_eq!(renumber(&[F_BIT], 111, 96), None);
    }
}
