//! The wiring: every service of a node, built in dependency order from the
//! configuration. Nothing is bound late except where noted, and no service
//! looks a dependency up at run time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nodo_app::access::{Access, AccessConfig};
use nodo_app::accounts::avatars::Avatars;
use nodo_app::accounts::Accounts;
use nodo_app::calls::Calls;
use nodo_app::chat::{Chat, Outlets, Presence};
use nodo_app::fanout::Fanout;
use nodo_app::files::Files;
use nodo_app::meetings::Meetings;
use nodo_app::push::Push;
use nodo_app::store::{Backend, Store, StoreOptions};
use nodo_app::App;
use nodo_sfu::net::Transport;
use nodo_signaling::agents::Agents;
use nodo_signaling::auth::KeyStore;
use nodo_signaling::room::IceServers;
use nodo_signaling::webhook::Webhooks;
use nodo_signaling::{LiveKit, RoomManager};
use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;

use crate::metrics::NodeMetrics;
use crate::Config;

/// A running node's parts, ready to be served.
pub struct Node {
    pub config: Config,
    /// The LiveKit side.
    pub livekit: Arc<LiveKit>,
    /// The app side.
    pub app: Arc<App>,
    /// The Socket.IO layer of the chat socket (served on the HTTP port).
    pub socket_layer: SocketIoLayer,
    /// The counters `/metrics` exports.
    pub metrics: NodeMetrics,
    /// The cluster this node is part of (`[cluster]`), if any.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Node {
    /// Opens the store and builds every service. `transport` is the media
    /// plane's network: the node's sockets, or a fake in tests.
    /// `ice` tells participants about the node's TURN server, if it runs one.
    /// Services count into `metrics` (the network counts into its media part).
    pub async fn build(
        config: Config,
        transport: Arc<dyn Transport>,
        ice: Option<Arc<dyn IceServers>>,
        metrics: NodeMetrics,
    ) -> Result<Node, String> {
        let data_dir = Path::new(&config.data.dir);
        let keys = KeyStore::new(config.keys.clone());

        // The LiveKit side: rooms first, they only need the network.
        let rooms = RoomManager::with_ice_servers(
            transport,
            config.room.clone(),
            config.limit.clone(),
            ice,
            metrics.media.clone(),
            metrics.signal.clone(),
        );
        rooms.set_token_keys(keys.clone());

        // Store, then push (it reads subscriptions from the store).
        let options = StoreOptions {
            wal_limit: config.data.wal_limit_mib << 20,
        };
        let store = if config.data.database_url.is_empty() {
            Store::open_with(data_dir, options)
                .await
                .map_err(|e| format!("cannot open the store in {}: {e}", config.data.dir))?
        } else {
            Store::open_postgres(&config.data.database_url, options)
                .await
                .map_err(|e| {
                    format!(
                        "cannot open the store on PostgreSQL at {}: {e}",
                        redact_password(&config.data.database_url)
                    )
                })?
        };
        let mut push_config = config.push.clone();
        if store.backend() == Backend::Postgres && push_config.vapid_private_key.is_empty() {
            // Browsers' subscriptions are bound to one key: every node signs with it.
            push_config.vapid_private_key = nodo_app::push::shared_key(&store, data_dir)
                .await
                .map_err(|e| format!("web push: the shared VAPID key: {e}"))?;
        }
        let push = Push::start(store.clone(), push_config, data_dir, metrics.app.clone())
            .map_err(|e| format!("web push: {e}"))?;

        // Webhooks: the LiveKit side's sender over the store's durable queue.
        let webhooks = Webhooks::start(
            keys.clone(),
            &config.webhook,
            // Several nodes on one database: each delivers what it queued.
            Arc::new(
                store.webhook_queue(&if config.data.database_url.is_empty() {
                    String::new()
                } else {
                    crate::cluster::node_id(&config.cluster)
                }),
            ),
            rooms.subscribe(),
            metrics.signal.clone(),
        );

        // The Socket.IO handle the services emit through; its handlers are
        // registered once every service exists (`App::attach`).
        // One cap for a polling payload and a WebSocket message or frame
        // (engineioxide's WebSocket default is 64 MiB): the largest chat
        // message, JSON-escaped, with room for its envelope.
        let max_packet = config.chat.max_message_bytes as u64 * 4 + 4096;
        let (socket_layer, io) = SocketIo::builder()
            .max_payload(max_packet)
            .ws_max_message_size(max_packet as usize)
            .ws_max_frame_size(max_packet as usize)
            // Each socket's WebSocket read buffer starts at 1 KiB (engineioxide's
            // default is 4 KiB) and grows only for a larger message: chat
            // frames are small, and an idle socket is most sockets. Paired
            // runs: 0.92x RSS per idle socket, CPU per message unchanged
            // (bench/README.md, chat-vs).
            .ws_read_buffer_size(1024)
            // A socket whose queue is full is a hopelessly slow consumer: the
            // chat disconnects it and keeps what it missed pending (chat::delivery).
            .max_buffer_size(config.chat.socket_buffer_packets)
            // The heartbeat notices a half-open or stalled socket and closes it.
            .ping_interval(Duration::from_secs(config.chat.ping_interval_secs))
            .ping_timeout(Duration::from_secs(config.chat.ping_timeout_secs))
            .build_layer();

        let access = Arc::new(Access::new(
            keys.clone(),
            store.clone(),
            AccessConfig {
                session_ttl: Duration::from_secs(config.chat.session_ttl_hours * 3600),
                room_ttl: Duration::from_secs(config.calls.token_ttl_hours * 3600),
                public_url: config.server.public_url.clone(),
            },
        ));
        let presence = Presence::new();
        let fanout = Fanout::new(io.clone());
        let accounts = Accounts::start(
            store.clone(),
            access.clone(),
            presence.clone(),
            fanout.clone(),
            webhooks.clone(),
            config.accounts.clone(),
        )
        .await
        .map_err(|e| format!("accounts: {e}"))?;
        // The agent dispatcher: workers on `/agent`; the app calls
        // assistants through it.
        let agents = Agents::start(rooms.clone(), keys.clone());
        let calls = Calls::start(
            store.clone(),
            fanout.clone(),
            rooms.clone(),
            push.clone(),
            webhooks.clone(),
            agents.clone(),
            &config.calls,
        );
        let meetings = Meetings::new(
            store.clone(),
            rooms.clone(),
            access.clone(),
            fanout.clone(),
            webhooks.clone(),
            config.calls.meeting_create_rate,
            config.calls.action_rate,
        );
        let webhooks_for_app = webhooks.clone();
        let store_for_avatars = store.clone();
        let chat = Chat::new(
            store.clone(),
            fanout.clone(),
            presence,
            Outlets {
                push: push.clone(),
                webhooks,
                metrics: metrics.app.clone(),
            },
            config.chat.clone(),
            data_dir.join("attachments"),
        );
        let app = App {
            store,
            access,
            accounts,
            chat,
            calls,
            meetings,
            push,
            avatars: Arc::new(Avatars::new(
                Files::new(data_dir.join("avatars"), &store_for_avatars, "avatar"),
                config.accounts.max_avatar_bytes,
            )),
            io,
            fanout,
            webhooks: webhooks_for_app,
        }
        .attach();
        let livekit = Arc::new(LiveKit::new(keys, rooms, agents));
        Ok(Node {
            config,
            livekit,
            app,
            socket_layer,
            metrics,
            cluster: None,
        })
    }
}

/// A database or Redis URL fit for a log line: its password (in the
/// authority or a `password=` parameter) replaced.
pub(crate) fn redact_password(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let query = query.map(|q| {
        q.split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let base = redact_authority(url);
    match query {
        Some(q) => format!("{base}?{q}"),
        None => base,
    }
}

fn redact_authority(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (auth, host),
        None => return url.to_string(),
    };
    let user = auth.split_once(':').map_or(auth, |(user, _)| user);
    let hidden = if auth.contains(':') { ":***" } else { "" };
    format!("{scheme}://{user}{hidden}@{host}")
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn passwords_leave_urls_before_they_are_logged() {
        assert_eq!(
            redact_password("postgres://nodo:s3cret@db:5432/nodo"),
            "postgres://nodo:***@db:5432/nodo"
        );
        assert_eq!(
            redact_password("postgres://db/nodo?user=nodo&password=s3cret&sslmode=disable"),
            "postgres://db/nodo?user=nodo&password=***&sslmode=disable"
        );
        assert_eq!(
            redact_password("redis://:s3cret@10.0.0.5:6379"),
            "redis://:***@10.0.0.5:6379"
        );
        assert_eq!(
            redact_password("redis://10.0.0.5:6379"),
            "redis://10.0.0.5:6379"
        );
        assert_eq!(redact_password("no scheme"), "(not a URL)");
    }
}
