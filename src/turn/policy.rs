//! What the node allows TURN clients, checked on each request before the
//! TURN server sees it: credentials derived from an API secret (registered
//! with the server on first use), no new allocation on an expired
//! credential, and permissions only toward Nodo's own media addresses.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use turn_server_proto::stun::types::attribute::{ErrorCode, Realm, Username};
use turn_server_proto::stun::types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite,
    MessageWriteExt, MessageWriteVec,
};
use turn_server_proto::types::attribute::XorPeerAddress;
use turn_server_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION};

use super::credentials::{verify, CredentialError, Issued};

/// What to do with a client's message.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Hand it to the TURN server.
    Pass,
    /// Answer with this message instead (an error response).
    Reply(Vec<u8>),
}

/// What inspecting a message found.
#[derive(Debug, PartialEq)]
pub struct Inspection {
    pub verdict: Verdict,
    /// A valid username not seen before, to register with the servers.
    pub new_user: Option<(String, Issued)>,
    /// An Allocate request by this username (for the per-participant cap).
    pub allocate_by: Option<String>,
}

/// The node's TURN rules.
pub struct Policy {
    keys: BTreeMap<String, String>,
    /// IPs of the SFU's media sockets: the only peers a relay may reach.
    allowed: HashSet<IpAddr>,
    realm: String,
}

impl Policy {
    pub fn new(keys: BTreeMap<String, String>, allowed: HashSet<IpAddr>, realm: &str) -> Policy {
        Policy {
            keys,
            allowed,
            realm: realm.to_string(),
        }
    }

    /// Whether a relay may exchange packets with `ip`.
    pub fn peer_allowed(&self, ip: IpAddr) -> bool {
        self.allowed.contains(&ip)
    }

    /// Checks one message from a client. `known` says whether a username is
    /// already registered with the servers.
    pub fn inspect(&self, data: &[u8], now: u64, known: impl Fn(&str) -> bool) -> Inspection {
        let pass = Inspection {
            verdict: Verdict::Pass,
            new_user: None,
            allocate_by: None,
        };
        let Ok(msg) = Message::from_bytes(data) else {
            return pass; // ChannelData, or something the server will refuse itself
        };
        if !msg.has_class(MessageClass::Request) {
            return pass;
        }
        let Some(username) = msg
            .attribute::<Username>()
            .ok()
            .map(|u| u.username().to_string())
        else {
            return pass; // unauthenticated first try: the server answers 401 with a nonce
        };
        let checked = verify(&self.keys, &username, now);
        let credentials = match &checked {
            Ok(i) => Some(LongTermKeyCredentials::new(
                username.clone(),
                i.password.clone(),
                self.realm.clone(),
            )),
            Err(_) => None,
        };
        let method = msg.method();
        if method == ALLOCATE && checked == Err(CredentialError::Expired) {
            return Inspection {
                verdict: Verdict::Reply(self.error(&msg, 401, "credential expired", None)),
                ..pass
            };
        }
        if method == CREATE_PERMISSION || method == CHANNEL_BIND {
            let tid = msg.transaction_id();
            let refused = (0..8)
                .map_while(|n| msg.nth_attribute::<XorPeerAddress>(n).ok())
                .any(|a| !self.peer_allowed(a.addr(tid).ip()));
            if refused {
                return Inspection {
                    verdict: Verdict::Reply(self.error(
                        &msg,
                        403,
                        "this relay only reaches the media node",
                        credentials.as_ref(),
                    )),
                    ..pass
                };
            }
        }
        let new_user = match checked {
            Ok(issued) if !known(&username) => Some((username.clone(), issued)),
            _ => None,
        };
        Inspection {
            verdict: Verdict::Pass,
            new_user,
            allocate_by: (method == ALLOCATE).then_some(username),
        }
    }

    /// An error response to `msg`, signed when the credentials are known.
    fn error(
        &self,
        msg: &Message<'_>,
        code: u16,
        reason: &str,
        credentials: Option<&LongTermKeyCredentials>,
    ) -> Vec<u8> {
        let mut out = Message::builder_error(msg, MessageWriteVec::new());
        // Unwraps are OK because the code is in range and each attribute is
        // added once, before integrity and fingerprint.
        #[allow(clippy::unwrap_used)]
        {
            out.add_attribute(&ErrorCode::builder(code).reason(reason).build().unwrap())
                .unwrap();
            if code == 401 {
                out.add_attribute(&Realm::new(&self.realm).unwrap())
                    .unwrap();
            }
            if let Some(c) = credentials {
                out.add_message_integrity(&c.clone().into(), IntegrityAlgorithm::Sha1)
                    .unwrap();
            }
            out.add_fingerprint().unwrap();
        }
        out.finish()
    }
}
