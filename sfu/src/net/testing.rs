//! A [`Transport`] for tests (feature `test-util`): it records what a room
//! sends and registers instead of touching sockets, and hands the test the
//! room inboxes so it can play the network.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use str0m::net::{Protocol, Transmit};

use super::{NetPacket, RoomInbox, Transport};
use crate::ids::PeerId;
use crate::peer::LocalCandidates;

/// One packet a room put on the (fake) wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub data: Vec<u8>,
}

#[derive(Default)]
struct Recorded {
    sent: Vec<Sent>,
    registered: Vec<(PeerId, String)>,
    inboxes: HashMap<PeerId, RoomInbox>,
    unregistered: Vec<PeerId>,
}

/// Records every call; advertises one UDP host candidate.
pub struct RecordingTransport {
    address: SocketAddr,
    recorded: Mutex<Recorded>,
}

impl RecordingTransport {
    /// A transport whose peers advertise `address` (UDP) as their candidate.
    pub fn new(address: SocketAddr) -> Arc<RecordingTransport> {
        Arc::new(RecordingTransport {
            address,
            recorded: Mutex::new(Recorded::default()),
        })
    }

    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The advertised address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Takes every packet sent so far.
    pub fn take_sent(&self) -> Vec<Sent> {
        std::mem::take(&mut self.recorded().sent)
    }

    /// Every `(peer, ufrag)` registered so far, in order.
    pub fn registered(&self) -> Vec<(PeerId, String)> {
        self.recorded().registered.clone()
    }

    /// Every peer unregistered so far, in order.
    pub fn unregistered(&self) -> Vec<PeerId> {
        self.recorded().unregistered.clone()
    }

    /// Hands a packet from `source` to the room that registered `peer`, as
    /// the network driver would; false when no room registered it.
    pub fn deliver(&self, peer: PeerId, source: SocketAddr, data: Vec<u8>) -> bool {
        let inbox = self.recorded().inboxes.get(&peer).cloned();
        let Some(inbox) = inbox else {
            return false;
        };
        inbox
            .try_send(NetPacket {
                peer,
                proto: Protocol::Udp,
                source,
                destination: self.address,
                data,
            })
            .is_ok()
    }
}

impl Transport for RecordingTransport {
    fn send(&self, t: &Transmit) {
        self.recorded().sent.push(Sent {
            proto: t.proto,
            source: t.source,
            destination: t.destination,
            data: t.contents.to_vec(),
        });
    }

    fn register(&self, ufrag: &str, peer: PeerId, inbox: RoomInbox) {
        let mut r = self.recorded();
        r.registered.push((peer, ufrag.to_string()));
        r.inboxes.insert(peer, inbox);
    }

    fn unregister(&self, peer: PeerId) {
        let mut r = self.recorded();
        r.unregistered.push(peer);
        r.inboxes.remove(&peer);
    }

    fn candidates(&self) -> LocalCandidates {
        LocalCandidates {
            udp: vec![self.address],
            tcp: Vec::new(),
        }
    }
}
