//! The embedded TURN server: TURN/UDP, TURN/TLS on its own port and on the
//! HTTPS port, over the sans-IO `turn-server-proto` crate. Credentials are
//! per participant and short-lived, derived from the API secret and handed
//! out in LiveKit's join answer; relays reach only the SFU's own media
//! sockets, with caps per participant and in total.

mod credentials;
// Public for the fuzz tests (tests/fuzz_stun_turn.rs). `Framer::next` is
// fallible, so it is not an `Iterator`.
#[doc(hidden)]
#[allow(clippy::should_implement_trait)]
pub mod frame;
mod policy;
mod server;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use livekit_protocol as proto;
use nodo_signaling::ids::ParticipantSid;
use nodo_signaling::room::IceServers;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

pub use credentials::{mint, verify, CredentialError};
pub use server::{RelayConfig, TurnActor, REALM};

use crate::tls::{Tls, TlsStream, TurnStreams};

/// How long a client gets to finish the TLS handshake on the TURN/TLS port.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses `"30000-40000"`.
pub fn parse_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("relay ports must look like 30000-40000, got {s:?}"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .map_err(|_| format!("bad relay port range {s:?}"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .map_err(|_| format!("bad relay port range {s:?}"))?;
    if lo == 0 || lo > hi {
        return Err(format!("bad relay port range {s:?}: need 1 <= low <= high"));
    }
    Ok(lo..=hi)
}

/// The TURN servers participants are told about, with their credentials.
pub struct TurnIce {
    /// `(key, secret)` that signs the credentials.
    signer: (String, String),
    ttl: Duration,
    urls: Vec<String>,
}

impl TurnIce {
    pub fn new(
        keys: &BTreeMap<String, String>,
        ttl: Duration,
        urls: Vec<String>,
    ) -> Option<TurnIce> {
        let (k, s) = keys.iter().next()?;
        Some(TurnIce {
            signer: (k.clone(), s.clone()),
            ttl,
            urls,
        })
    }
}

impl IceServers for TurnIce {
    fn for_participant(&self, participant: &ParticipantSid) -> Vec<proto::IceServer> {
        let expires = nodo_signaling::auth::unix_now() + self.ttl.as_secs();
        let (username, credential) = mint(
            &self.signer.0,
            &self.signer.1,
            participant.as_str(),
            expires,
        );
        vec![proto::IceServer {
            urls: self.urls.clone(),
            username,
            credential,
        }]
    }
}

/// TURN clients arriving on the HTTPS port.
pub struct HttpsTurn {
    actor: TurnActor,
    listener: SocketAddr,
}

impl HttpsTurn {
    pub fn new(actor: TurnActor, listener: SocketAddr) -> HttpsTurn {
        HttpsTurn { actor, listener }
    }
}

impl TurnStreams for HttpsTurn {
    fn serve(&self, stream: Box<dyn TlsStream>, client: SocketAddr, _local: SocketAddr) {
        self.actor.serve_stream(stream, self.listener, client);
    }
}

/// Accepts TURN/TLS on its own port until `shutdown` changes.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Tls,
    actor: TurnActor,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(key) = listener.local_addr() else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    loop {
        let (tcp, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("turn/tls accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let acceptor = acceptor.clone();
        let actor = actor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => actor.serve_stream(stream, key, client),
                Ok(Err(e)) => tracing::info!(%client, "turn/tls handshake failed: {e}"),
                Err(_) => tracing::info!(%client, "turn/tls handshake took longer than 10 s"),
            }
        });
    }
}

/// Everything needed to start the TURN actor.
pub struct TurnSetup {
    pub keys: BTreeMap<String, String>,
    pub udp: Option<UdpSocket>,
    /// Keys of the stream listeners (TURN/TLS port, HTTPS port).
    pub stream_listeners: Vec<SocketAddr>,
    pub relay: RelayConfig,
}

/// Starts the TURN actor.
pub fn start(setup: TurnSetup) -> Result<TurnActor, String> {
    let allowed: HashSet<IpAddr> = setup.relay.media.iter().map(SocketAddr::ip).collect();
    let policy = policy::Policy::new(setup.keys, allowed, REALM);
    TurnActor::start(policy, setup.relay, setup.udp, &setup.stream_listeners)
        .map_err(|e| format!("cannot start TURN: {e}"))
}
