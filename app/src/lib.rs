//! nodo-app: the app backend the seed frontends talk to, beside the LiveKit
//! side (nodo-signaling) that it uses but that knows nothing of it.
//!
//! # Layout
//!
//! - Domain services, one per concern, each told what it needs when built:
//!   [`access`] (who gets a token for which room; the one place tokens are
//!   minted), [`accounts`], [`chat`], [`calls`], [`meetings`] and [`push`].
//! - [`store`]: the store, on SQLite or PostgreSQL. Every SQL statement lives under it.
//! - Two transports over the services: the REST API ([`router`], in `http`)
//!   and the Socket.IO chat socket ([`chat::socket`]). Neither holds rules of
//!   its own, and neither calls into the other.
//!
//! The node's binary builds the services in dependency order (store, push,
//! webhooks, calls, chat, ...) and hands them to [`App`].
//!
//! # Rooms, calls and meetings
//!
//! A LiveKit room (nodo-signaling) is where media flows. A **call** owns one
//! (`call-<id>`) for two people; a **meeting** owns one (`meeting-<id>`) for
//! its members. Seed frontends call meetings "rooms" (`POST /rooms`); in this
//! crate they are meetings.

pub mod access;
pub mod accounts;
pub mod calls;
pub mod chat;
pub mod config;
pub mod error;
pub mod fanout;
pub mod files;
mod http;
pub mod limits;
pub mod meetings;
pub mod metrics;
pub mod push;
pub mod store;

use std::sync::Arc;

use socketioxide::SocketIo;

pub use error::Error;

/// Every service of the app side, shared by its two transports.
pub struct App {
    pub store: store::Store,
    pub access: Arc<access::Access>,
    pub accounts: Arc<accounts::Accounts>,
    pub chat: Arc<chat::Chat>,
    pub calls: Arc<calls::Calls>,
    pub meetings: Arc<meetings::Meetings>,
    pub push: Arc<push::Push>,
    /// Profile pictures.
    pub avatars: Arc<accounts::avatars::Avatars>,
    /// The Socket.IO server handle the services emit through.
    pub io: SocketIo,
    /// The same, for events every node's sockets get.
    pub fanout: Arc<fanout::Fanout>,
    /// The node's webhook sender.
    pub webhooks: Arc<nodo_signaling::webhook::Webhooks>,
}

impl App {
    /// Registers the chat socket's handlers on `io` (the handle the services
    /// were built with) and returns the app, ready for [`router`].
    pub fn attach(self) -> Arc<App> {
        let app = Arc::new(self);
        chat::socket::attach(&app.io, app.clone());
        app
    }

    /// Applies what another node (`from`) asks of this node's sockets.
    pub async fn on_shared(&self, from: &str, event: fanout::Shared) {
        use fanout::Shared;
        let presence = self.chat.presence();
        match event {
            Shared::Deliver { .. } => self.chat.deliver_relayed(&event),
            Shared::Presence { user, online } => presence.set_elsewhere(from, &user, online),
            Shared::Present { users } => presence.replace_elsewhere(from, users),
            Shared::Hello => self.fanout.publish(Shared::Present {
                users: presence.here(),
            }),
            Shared::Emit { .. } | Shared::Disconnect { .. } => self.fanout.apply(event).await,
        }
    }

    /// Node `to` (this one) takes over the webhook deliveries node `from`
    /// queued (it is gone) and sends them now; returns how many.
    pub async fn take_over_webhooks(&self, from: &str, to: &str) -> Result<u64, Error> {
        let n = self.store.adopt_webhooks(from, to).await?;
        if n > 0 {
            self.webhooks.wake();
        }
        Ok(n)
    }

    /// These nodes are gone (dead or left): what they said about presence is
    /// dropped, and their users online nowhere now are announced offline to
    /// this node's sockets (every node does the same for its own).
    pub async fn forget_nodes(&self, nodes: &[String]) {
        let presence = self.chat.presence();
        for node in nodes {
            for user in presence.forget_node(node) {
                let _ = self.io.emit("contact_offline", &user).await;
            }
        }
    }
}

pub use http::router;
