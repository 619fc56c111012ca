//! RFC 2198 redundant audio (RED), as browsers send Opus in it: a packet
//! carries the current frame (the primary block, last) after earlier frames
//! (redundant blocks), so a lost packet's frame arrives with the next one.
//!
//! Nodo forwards RED untouched to subscribers that negotiated it and, for
//! the others, the primary block alone as plain Opus. The block headers
//! name the payload type of each block's codec; when a subscriber numbers
//! Opus differently from the publisher, they are rewritten.

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
