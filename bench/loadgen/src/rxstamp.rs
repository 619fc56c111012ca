//! Kernel receive timestamps (`SO_TIMESTAMPNS`) on the media sockets.
//!
//! The latency probe's receive side must not count the generator's own
//! scheduling: with thousands of datagrams a second on one current-thread
//! runtime, a datagram can sit in its socket for a millisecond before the
//! participant's task reads it. The kernel stamps each datagram when it is
//! queued on the socket; the gap between that stamp and the moment we read
//! it (`lag`) is the generator's, and the probe subtracts it.
//!
//! Linux turns receive stamping on a moment after the first socket asks for
//! it (a deferred static key); a datagram that arrives before that is
//! stamped when it is read, so its lag counts as 0, as it did before stamps.
//! Runs measure after a settle period, long after that moment.
//!
//! The kernel stamps with `CLOCK_REALTIME`, so the lag is measured against a
//! `CLOCK_REALTIME` read taken right after the datagram is read, which needs
//! no conversion between clocks.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use rustix::time::ClockId;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::clock::{now_ns, secs_nanos};

/// One datagram read from a socket.
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    pub len: usize,
    pub from: SocketAddr,
    /// Nanoseconds between the kernel queueing the datagram and our read
    /// (0 when the kernel gave no timestamp).
    pub lag_ns: u64,
}

/// Asks the kernel to stamp every datagram `sock` receives.
pub fn enable(sock: &UdpSocket) -> io::Result<()> {
    setsockopt(sock, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// Waits for the next datagram.
pub async fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    sock.async_io(Interest::READABLE, || read(sock, buf)).await
}

/// The next datagram if one is queued (`WouldBlock` otherwise).
pub fn try_recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    sock.try_io(Interest::READABLE, || read(sock, buf))
}

fn read(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut cmsg = nix::cmsg_space!(TimeSpec);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let now = now_ns(ClockId::Realtime);
    let mut lag_ns = 0;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmTimestampns(ts) = c {
            lag_ns = now.saturating_sub(secs_nanos(ts.tv_sec(), ts.tv_nsec()));
        }
    }
    let from = msg
        .address
        .as_ref()
        .and_then(to_socket_addr)
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    Ok(Datagram {
        len: msg.bytes,
        from,
        lag_ns,
    })
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    let v6 = a.as_sockaddr_in6()?;
    Some(SocketAddr::from((v6.ip(), v6.port())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_datagram_read_late_reports_its_lag() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        enable(&rx).unwrap();
        // Give the kernel its moment to turn stamping on (see above).
        std::thread::sleep(std::time::Duration::from_millis(200));
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        tx.send_to(b"probe", rx.local_addr().unwrap())
            .await
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut buf = [0u8; 64];
        let d = recv(&rx, &mut buf).await.unwrap();
        assert_eq!(&buf[..d.len], b"probe");
        assert_eq!(d.from, tx.local_addr().unwrap());
        assert!(d.lag_ns >= 20_000_000, "lag {} ns", d.lag_ns);
        assert!(matches!(
            try_recv(&rx, &mut buf).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        ));
    }
}
