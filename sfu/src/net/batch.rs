//! Batched UDP sends: on Linux, one `sendmmsg(2)` carries up to [`BATCH`] datagrams,
//! each to its own destination. A room's turn usually ends with one packet
//! for each of its subscribers (an audio frame fanned out to 50 listeners is
//! 50 datagrams to 50 addresses), so a batch saves a system call per packet;
//! UDP GSO would not, since it needs one destination for the whole batch.

use std::io::{self, IoSlice};
use std::net::SocketAddr;

#[cfg(target_os = "linux")]
use rustix::net::addr::SocketAddrArg;
#[cfg(target_os = "linux")]
use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
use tokio::net::UdpSocket;

/// Most datagrams handed to the kernel in one call (Linux's own cap,
/// `UIO_MAXIOV`, is 1024; this keeps the scratch space small).
pub const BATCH: usize = 64;

/// What became of a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams dropped: the socket buffer was full, or the kernel refused
    /// that one datagram (an unreachable or mismatched destination).
    pub dropped: usize,
}

/// Sends every `(payload, destination)` on `socket` without blocking. When
/// the socket buffer fills, the rest of the batch is dropped, as a congested
/// link would; a datagram the kernel refuses on its own is dropped alone and
/// the batch goes on.
pub fn send_many(socket: &UdpSocket, packets: &[(&[u8], SocketAddr)]) -> Sent {
    let mut out = Sent::default();
    let mut rest = packets;
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(BATCH)];
        match send_chunk(socket, chunk) {
            Ok(n) => {
                // sendmmsg returns at least 1 on success.
                let n = n.clamp(1, chunk.len());
                out.sent += n;
                rest = &rest[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                out.dropped += rest.len();
                break;
            }
            Err(e) => {
                // The first datagram of the chunk failed on its own.
                if let Some((_, dst)) = rest.first() {
                    tracing::debug!(%dst, "udp send: {e}");
                }
                out.dropped += 1;
                rest = &rest[1..];
            }
        }
    }
    out
}

#[cfg(target_os = "linux")]
fn send_chunk(socket: &UdpSocket, chunk: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
    let addrs: Vec<SocketAddrAny> = chunk.iter().map(|(_, a)| a.as_any()).collect();
    let iovs: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(d, _)| [IoSlice::new(d)]).collect();
    let mut control: Vec<SendAncillaryBuffer<'_, '_, '_>> = chunk
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iovs)
        .zip(control.iter_mut())
        .map(|((addr, iov), ctl)| MMsgHdr::new_with_addr(addr, iov, ctl))
        .collect();
    // Straight to the kernel, not through tokio's `try_io`: nothing awaits
    // this socket's write readiness, and tokio's cached readiness would
    // refuse a send before the reactor first saw the socket writable.
    // MSG_DONTWAIT keeps it non-blocking either way.
    sendmmsg(socket, &mut msgs, SendFlags::DONTWAIT).map_err(io::Error::from)
}

/// Elsewhere, one datagram per call (the first of the chunk).
#[cfg(not(target_os = "linux"))]
fn send_chunk(socket: &UdpSocket, chunk: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
    match chunk.first() {
        Some((data, dst)) => socket.try_send_to(data, *dst).map(|_| 1),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn receiver() -> (UdpSocket, SocketAddr) {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = s.local_addr().unwrap();
        (s, a)
    }

    #[tokio::test]
    async fn a_batch_reaches_each_destination_in_order() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (r1, a1) = receiver().await;
        let (r2, a2) = receiver().await;
        // More than one chunk, alternating destinations, distinct payloads.
        let payloads: Vec<Vec<u8>> = (0..(BATCH * 2 + 5) as u32)
            .map(|i| i.to_be_bytes().repeat(1 + (i as usize % 7)))
            .collect();
        let packets: Vec<(&[u8], SocketAddr)> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_slice(), if i % 2 == 0 { a1 } else { a2 }))
            .collect();
        let r = send_many(&tx, &packets);
        assert_eq!(
            r,
            Sent {
                sent: packets.len(),
                dropped: 0
            }
        );
        let mut buf = [0u8; 64];
        for (i, p) in payloads.iter().enumerate() {
            let rx = if i % 2 == 0 { &r1 } else { &r2 };
            let (n, from) = rx.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], p.as_slice(), "datagram {i}");
            assert_eq!(from, tx.local_addr().unwrap());
        }
    }

    #[tokio::test]
    async fn a_refused_datagram_is_dropped_alone() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (rx, a) = receiver().await;
        // An IPv6 destination on an IPv4 socket: the kernel refuses that one.
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let packets: Vec<(&[u8], SocketAddr)> =
            vec![(b"one", a), (b"bad", v6), (b"two", a), (b"bad", v6)];
        let r = send_many(&tx, &packets);
        assert_eq!(
            r,
            Sent {
                sent: 2,
                dropped: 2
            }
        );
        let mut buf = [0u8; 8];
        let (n, _) = rx.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"one");
        let (n, _) = rx.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"two");
    }

    #[tokio::test]
    async fn nothing_to_send_is_no_call() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(send_many(&tx, &[]), Sent::default());
    }
}
