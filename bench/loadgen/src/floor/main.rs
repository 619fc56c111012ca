//! `nodo-floor`: what forwarding one packet costs this machine at the least,
//! with no SFU in the way: the kernel's part of sending a datagram to a
//! subscriber over loopback (one `sendto` per packet, or `sendmmsg` batches
//! spread over the subscribers as a fan-out turn would be), and the SRTP
//! AEAD-AES-256-GCM seal of its payload (aws-lc-rs, str0m's provider here).
//! Their sum is the floor the SFU's µs per forwarded packet compares to.
//! For chat, the same for one write of a Socket.IO frame to each of many
//! loopback TCP connections (`TCP_NODELAY`, as the node's sockets): the
//! kernel's part of one delivery.
//!
//! The sender runs on one CPU (`--send-cpu`) at a fixed rate; a thread on
//! another CPU (`--recv-cpu`) drains the subscribers' sockets, so what the
//! sender's thread spends is what a node pinned to one core would. CPU time
//! is the sending thread's own (`CLOCK_THREAD_CPUTIME_ID`, user and sys
//! together: the kernel's split of a thread's time is by timer tick, and a
//! sender that sleeps between 1 ms turns is in phase with the tick).

#[path = "../sysinfo.rs"]
#[allow(dead_code)]
mod sysinfo;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use clap::Parser;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrIn};
use nix::time::{clock_gettime, ClockId};
use std::io::IoSlice;
use std::os::fd::AsRawFd;

#[derive(Parser, Debug)]
#[command(about = "The kernel's and SRTP's cost of one forwarded packet on this machine")]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Datagram sizes in bytes (a video packet, an audio packet).
    #[arg(long, value_delimiter = ',', default_value = "1200,160")]
    sizes: Vec<usize>,
    /// Subscribers (receiving sockets) the packets are spread over.
    #[arg(long, default_value_t = 50)]
    subscribers: usize,
    /// Packets per second the sender keeps to (below what the receiver drains).
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Datagrams per `sendmmsg` call.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 0)]
    send_cpu: usize,
    #[arg(long, default_value_t = 1)]
    recv_cpu: usize,
    /// TCP connections for the chat row (a group's members).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Bytes of one chat frame (a `receiveMessage` event with its envelope).
    #[arg(long, default_value_t = 300)]
    frame: usize,
    /// One JSON line (`<what>_<bytes>_us` fields) instead of the table.
    #[arg(long)]
    json: bool,
}

/// How the chat row's reader waits for data.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    /// Spins over the connections: the writer never has a reader to wake.
    Spin,
    /// Sleeps in `epoll_wait`, as a client's event loop does: a write may
    /// have to wake it.
    Epoll,
}

impl Args {
    /// Refuses what would divide by zero, never end, or not be a duration.
    fn check(&self) -> Result<(), String> {
        if !(self.seconds.is_finite() && self.seconds > 0.0) {
            return Err(format!("--seconds must be above 0, not {}", self.seconds));
        }
        for (name, v) in [
            ("--subscribers", self.subscribers),
            ("--batch", self.batch),
            ("--connections", self.connections),
            ("--frame", self.frame),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// The calling thread's CPU time (user and sys), in µs.
fn thread_cpu() -> f64 {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as f64 * 1e6 + t.tv_nsec() as f64 / 1e3)
        .unwrap_or(f64::NAN)
}

/// µs of the sending thread's CPU per packet.
#[derive(Debug, Clone, Copy)]
struct Cost {
    us: f64,
    packets: u64,
}

/// Runs `step` (which sends some packets and says how many) at `rate`
/// packets per second for `seconds`, in 1 ms turns.
fn paced(args: &Args, mut step: impl FnMut(usize) -> u64) -> Cost {
    let per_turn = (args.rate / 1000).max(1) as usize;
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let t0 = thread_cpu();
    let mut sent = 0;
    let mut next = Instant::now();
    while Instant::now() < end {
        sent += step(per_turn);
        next += Duration::from_millis(1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Cost {
        us: (thread_cpu() - t0) / sent.max(1) as f64,
        packets: sent,
    }
}

/// The subscribers' sockets and the thread that drains them.
struct Sinks {
    addrs: Vec<SocketAddr>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sinks {
    fn open(n: usize, cpu: usize) -> std::io::Result<Sinks> {
        let mut socks = Vec::with_capacity(n);
        for _ in 0..n {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_nonblocking(true)?;
            let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
            socks.push(s);
        }
        let addrs = socks
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<_, _>>()?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            pin(cpu);
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                for s in &socks {
                    while s.recv(&mut buf).is_ok() {
                        r.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Sinks {
            addrs,
            received,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send_each(args: &Args, sinks: &Sinks, size: usize) -> std::io::Result<Cost> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(4 << 20);
    let payload = vec![0x5au8; size];
    let mut i = 0;
    Ok(paced(args, |n| {
        let mut sent = 0;
        for _ in 0..n {
            if sock.send_to(&payload, sinks.addrs[i]).is_ok() {
                sent += 1;
            }
            i = (i + 1) % sinks.addrs.len();
        }
        sent
    }))
}

fn send_batched(args: &Args, sinks: &Sinks, size: usize) -> std::io::Result<Cost> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(4 << 20);
    let payload = vec![0x5au8; size];
    let addrs: Vec<Option<SockaddrIn>> = sinks
        .addrs
        .iter()
        .map(|a| match a {
            SocketAddr::V4(v4) => Some(SockaddrIn::from(*v4)),
            SocketAddr::V6(_) => None,
        })
        .collect();
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(args.batch, None);
    let mut i = 0;
    Ok(paced(args, |n| {
        let mut sent = 0;
        let mut left = n;
        while left > 0 {
            let k = left.min(args.batch);
            let iovs: Vec<[IoSlice<'_>; 1]> = (0..k).map(|_| [IoSlice::new(&payload)]).collect();
            let to: Vec<Option<SockaddrIn>> =
                (0..k).map(|j| addrs[(i + j) % addrs.len()]).collect();
            i = (i + k) % addrs.len();
            if let Ok(r) = sendmmsg(
                sock.as_raw_fd(),
                &mut headers,
                &iovs,
                &to,
                [],
                MsgFlags::empty(),
            ) {
                sent += r.count() as u64;
            }
            left -= k;
        }
        sent
    }))
}

/// One seal of a `size`-byte payload in place, as SRTP's AEAD mode does
/// (12-byte header as additional data, 16-byte tag), on one thread.
fn seal(args: &Args, size: usize) -> Cost {
    let key = match UnboundKey::new(&AES_256_GCM, &[7u8; 32]) {
        Ok(k) => LessSafeKey::new(k),
        Err(_) => {
            return Cost {
                us: f64::NAN,
                packets: 0,
            }
        }
    };
    let header = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
    let mut buf = vec![0x5au8; size.saturating_sub(header.len())];
    let t0 = thread_cpu();
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut n = 0u64;
    let mut iv = [0u8; 12];
    while Instant::now() < end {
        for _ in 0..1000 {
            iv[4..12].copy_from_slice(&n.to_be_bytes());
            if key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(&header),
                    &mut buf,
                )
                .is_ok()
            {
                n += 1;
            }
        }
    }
    Cost {
        us: (thread_cpu() - t0) / n.max(1) as f64,
        packets: n,
    }
}

/// One `frame`-byte write to each connection in turn, paced like the sends;
/// a thread on the other CPU reads every connection.
fn tcp_writes(args: &Args, wait: Wait) -> std::io::Result<(Cost, u64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut writers = Vec::with_capacity(args.connections);
    let mut readers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let w = TcpStream::connect(addr)?;
        w.set_nodelay(true)?;
        let (r, _) = listener.accept()?;
        r.set_nonblocking(true)?;
        writers.push(w);
        readers.push(r);
    }
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (got, st, cpu) = (received.clone(), stop.clone(), args.recv_cpu);
    let epoll = Epoll::new(EpollCreateFlags::empty()).map_err(std::io::Error::from)?;
    if wait == Wait::Epoll {
        for (k, r) in readers.iter().enumerate() {
            epoll
                .add(r, EpollEvent::new(EpollFlags::EPOLLIN, k as u64))
                .map_err(std::io::Error::from)?;
        }
    }
    let reader = std::thread::spawn(move || {
        pin(cpu);
        let mut buf = [0u8; 65536];
        let mut events = vec![EpollEvent::empty(); 256];
        while !st.load(Ordering::Relaxed) {
            if wait == Wait::Spin {
                for r in readers.iter_mut() {
                    if let Ok(n) = r.read(&mut buf) {
                        got.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                continue;
            }
            let Ok(n) = epoll.wait(&mut events, EpollTimeout::from(100u16)) else {
                continue;
            };
            for e in &events[..n] {
                if let Some(r) = readers.get_mut(e.data() as usize) {
                    while let Ok(k) = r.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        got.fetch_add(k as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    let frame = vec![b'x'; args.frame];
    let mut i = 0;
    let cost = paced(args, |n| {
        let mut sent = 0;
        for _ in 0..n {
            if writers[i].write_all(&frame).is_ok() {
                sent += 1;
            }
            i = (i + 1) % writers.len();
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    Ok((cost, received.load(Ordering::Relaxed)))
}

/// One row of the output: what was timed, its cost, and the share of what
/// was sent that arrived (for the sends).
struct Row {
    bytes: usize,
    what: String,
    key: String,
    us: f64,
    delivered_pct: Option<f64>,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if let Err(e) = args.check() {
        eprintln!("nodo-floor: {e}");
        std::process::exit(2);
    }
    sysinfo::raise_nofile();
    pin(args.send_cpu);
    let mut rows = Vec::new();
    for &size in &args.sizes {
        let c = seal(&args, size);
        rows.push(Row {
            bytes: size,
            what: "SRTP AEAD-AES-256-GCM seal (aws-lc-rs)".into(),
            key: format!("seal_{size}"),
            us: c.us,
            delivered_pct: None,
        });
        let mut best = f64::INFINITY;
        for batched in [false, true] {
            let sinks = Sinks::open(args.subscribers, args.recv_cpu)?;
            let c = if batched {
                send_batched(&args, &sinks, size)?
            } else {
                send_each(&args, &sinks, size)?
            };
            std::thread::sleep(Duration::from_millis(100));
            let got = sinks.received.load(Ordering::Relaxed);
            let (what, key) = if batched {
                (
                    format!("`sendmmsg`, {} per call", args.batch),
                    format!("sendmmsg_{size}"),
                )
            } else {
                ("`sendto`, one per packet".into(), format!("sendto_{size}"))
            };
            best = best.min(c.us);
            rows.push(Row {
                bytes: size,
                what,
                key,
                us: c.us,
                delivered_pct: Some(got as f64 * 100.0 / c.packets.max(1) as f64),
            });
        }
        rows.push(Row {
            bytes: size,
            what: "**floor: seal + the cheaper send**".into(),
            key: format!("floor_{size}"),
            us: best + c.us,
            delivered_pct: None,
        });
    }
    for (wait, how, key) in [
        (Wait::Spin, "a reader spinning", "tcp_write_spin"),
        (Wait::Epoll, "a reader in `epoll_wait`", "tcp_write_epoll"),
    ] {
        let (c, bytes) = tcp_writes(&args, wait)?;
        rows.push(Row {
            bytes: args.frame,
            what: format!(
                "TCP `write` of one chat frame, {} connections, {how}",
                args.connections
            ),
            key: key.into(),
            us: c.us,
            delivered_pct: Some(
                bytes as f64 * 100.0 / (c.packets.max(1) * args.frame as u64) as f64,
            ),
        });
    }
    if args.json {
        let mut line = serde_json::Map::new();
        line.insert("tool".into(), "nodo-floor".into());
        for r in &rows {
            line.insert(format!("{}_us", r.key), r.us.into());
        }
        println!("{}", serde_json::Value::Object(line));
        return Ok(());
    }
    println!(
        "# nodo-floor: {} subscribers, {} pps, {} s per row, sender on CPU {}, receiver on CPU {}",
        args.subscribers, args.rate, args.seconds, args.send_cpu, args.recv_cpu
    );
    println!("| bytes | what | CPU µs per packet | delivered |");
    println!("|---:|---|---:|---:|");
    for r in &rows {
        let delivered = r
            .delivered_pct
            .map(|d| format!("{d:.2} %"))
            .unwrap_or_default();
        println!("| {} | {} | {:.3} | {delivered} |", r.bytes, r.what, r.us);
    }
    Ok(())
}
