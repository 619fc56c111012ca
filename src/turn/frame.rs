//! TURN over a stream (TCP, TLS): splits the bytes into whole STUN messages
//! and ChannelData messages (RFC 8656 §12.5: padded to four bytes on
//! streams; the padding is stripped here and added back on the way out).

/// The first two bits of a STUN message.
const STUN_BITS: u8 = 0b00;
/// The first two bits of a ChannelData message.
const CHANNEL_BITS: u8 = 0b01;

/// A stream that is not TURN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not STUN or ChannelData (first byte {0:#04x})")]
pub struct NotTurn(pub u8);

/// Splits a byte stream into messages.
#[derive(Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where the next message starts in `buf`: taking a message moves it
    /// instead of copying the rest, so a read of many small messages costs
    /// linear, not quadratic, work.
    start: usize,
}

impl Framer {
    /// Adds bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.drain(..self.start);
        self.start = 0;
        self.buf.extend_from_slice(data);
    }

    /// The next whole message (without stream padding), if one is buffered.
    pub fn next(&mut self) -> Result<Option<Vec<u8>>, NotTurn> {
        let buf = &self.buf[self.start..];
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        let (frame, padded) = match buf[0] >> 6 {
            STUN_BITS => (20 + len, 20 + len),
            // Channel numbers are 0x4000..=0x4FFF (RFC 8656 §12).
            CHANNEL_BITS if buf[0] < 0x50 => (4 + len, 4 + len.div_ceil(4) * 4),
            _ => return Err(NotTurn(buf[0])),
        };
        if buf.len() < padded {
            return Ok(None);
        }
        let msg = buf[..frame].to_vec();
        self.start += padded;
        Ok(Some(msg))
    }
}

/// Pads an outgoing ChannelData message for a stream.
pub fn pad_for_stream(mut msg: Vec<u8>) -> Vec<u8> {
    if msg.first().is_some_and(|b| b >> 6 == CHANNEL_BITS) {
        msg.resize(msg.len().div_ceil(4) * 4, 0);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_messages_and_strips_padding() {
        let stun = {
            let mut m = vec![0x00, 0x01, 0x00, 0x04];
            m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            m.extend_from_slice(&[7; 12]);
            m.extend_from_slice(&[1, 2, 3, 4]);
            m
        };
        let channel = vec![0x40, 0x00, 0x00, 0x03, 9, 9, 9];
        let mut stream = channel.clone();
        stream.push(0); // padding
        stream.extend_from_slice(&stun);
        let mut f = Framer::default();
        // Byte by byte: nothing comes out early.
        for (i, b) in stream.iter().enumerate() {
            f.push(&[*b]);
            let out = f.next().expect("turn");
            if i == 7 {
                assert_eq!(out, Some(channel.clone()));
            } else if i == stream.len() - 1 {
                assert_eq!(out, Some(stun.clone()));
            } else {
                assert_eq!(out, None, "at byte {i}");
            }
        }
        assert_eq!(pad_for_stream(channel).len(), 8);
        assert_eq!(pad_for_stream(stun.clone()), stun);
    }

    #[test]
    fn refuses_what_is_not_turn() {
        // Outside STUN (00…) and the channel numbers 0x4000..=0x4FFF.
        for first in [b'P', 0x80, 0xff] {
            let mut f = Framer::default();
            f.push(&[first, 0, 0, 0, 0]);
            assert_eq!(f.next(), Err(NotTurn(first)));
        }
    }
}
