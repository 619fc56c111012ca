//! Configuration of the app side: chat, calls and Web Push. The binary
//! layers defaults < `config.toml` < environment < flags and hands each
//! section here.

use serde::{Deserialize, Serialize};

use crate::limits::Rate;

/// Web Push (VAPID).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// VAPID contact (`mailto:` or `https:` URL) push services may use to reach the operator.
    pub subject: String,
    /// VAPID private key (raw P-256 scalar, base64url). Empty: generated once and kept in
    /// `<data-dir>/vapid_private_key`.
    pub vapid_private_key: String,
    /// Accept `http://` push endpoints and endpoints on non-public addresses
    /// (loopback, private, link-local: tests, local push services). Off: https
    /// only, and the host must resolve to public addresses, when subscribing
    /// and again when sending.
    pub allow_insecure_endpoints: bool,
    /// Retries of a failed push (network error, 429, 5xx), with exponential backoff.
    pub retries: u32,
    /// First backoff delay in milliseconds.
    pub retry_base_ms: u64,
    /// Push subscriptions a user may hold (one per browser or device); a new
    /// one beyond this replaces the one the user has not sent for the longest.
    pub max_subscriptions_per_user: usize,
    /// Subscribe and unsubscribe requests per user.
    pub subscribe_rate: Rate,
    /// Seconds one push request may take (connecting included) before it counts as failed.
    pub send_timeout_secs: u64,
    /// Push requests in flight at once, node-wide.
    pub max_concurrent_sends: usize,
    /// Notifications queued or in flight for one user before further ones
    /// (except incoming calls) are dropped.
    pub max_pending_per_user: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            subject: "mailto:admin@localhost".into(),
            vapid_private_key: String::new(),
            allow_insecure_endpoints: false,
            retries: 3,
            retry_base_ms: 500,
            max_subscriptions_per_user: 10,
            subscribe_rate: Rate::new(0.2, 10),
            send_timeout_secs: 10,
            max_concurrent_sends: 128,
            max_pending_per_user: 16,
        }
    }
}

/// One-to-one calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Seconds a call rings before it counts as missed.
    pub ring_timeout_secs: u64,
    /// Hours a room token handed out for a call or room stays valid.
    pub token_ttl_hours: u64,
    /// Seconds an accepted call may wait for both people to join its media
    /// room; then it ends, so nobody stays busy forever.
    pub connect_timeout_secs: u64,
    /// Seconds between two checks, on each node of a cluster (Redis and a
    /// shared database), that connected calls' media rooms are still open on
    /// some node. A call whose room is open nowhere at two checks in a row
    /// (its node died and nobody rejoined) ends, with reason `node_lost`.
    pub lost_room_check_secs: u64,
    /// Call and room actions per user (call initiate, accept, reject, cancel,
    /// end; room tokens; meeting joins, starts, ends, moderator changes), each kind
    /// counted on its own; socket and REST alike.
    pub action_rate: Rate,
    /// Calls one caller may start to the same person (per minute, all at once).
    pub rings_per_minute_per_callee: u32,
    /// Meetings ("rooms") a user may create.
    pub meeting_create_rate: Rate,
    /// AI assistants people can call like a person: each entry is the
    /// `agent_name` of a LiveKit Agents worker (registered on `/agent`), and
    /// the id a call is placed to (`recipientId`). Such a call rings while
    /// the agent is dispatched into the call's room, under that identity,
    /// and is answered when the agent joins. Empty: no assistants.
    pub assistants: Vec<String>,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            ring_timeout_secs: 30,
            token_ttl_hours: 2,
            connect_timeout_secs: 30,
            lost_room_check_secs: 20,
            action_rate: Rate::new(1.0, 10),
            rings_per_minute_per_callee: 3,
            meeting_create_rate: Rate::new(0.2, 10),
            assistants: Vec::new(),
        }
    }
}

impl CallsConfig {
    /// Checks what serde cannot; returns every problem found.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = [
            self.action_rate.problem("calls.action_rate"),
            self.meeting_create_rate
                .problem("calls.meeting_create_rate"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if self.rings_per_minute_per_callee == 0
            || self.connect_timeout_secs == 0
            || self.lost_room_check_secs == 0
        {
            problems.push(
                "calls: rings_per_minute_per_callee, connect_timeout_secs and \
                 lost_room_check_secs must be positive"
                    .into(),
            );
        }
        if self
            .assistants
            .iter()
            .any(|a| a.is_empty() || a.len() > crate::chat::MAX_ID_LEN)
        {
            problems.push(format!(
                "calls.assistants: every name must be 1 to {} bytes",
                crate::chat::MAX_ID_LEN
            ));
        }
        problems
    }
}

/// The chat socket, accounts and message limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Origins allowed to open the chat socket and call the API from a browser.
    /// Empty: any origin in `--dev`, same-origin only otherwise. `["*"]`: any.
    pub cors_origins: Vec<String>,
    /// Largest message (serialized payload) accepted, in bytes.
    pub max_message_bytes: usize,
    /// Largest attachment accepted, in bytes.
    pub max_attachment_bytes: usize,
    /// Messages per second a user may send, sustained.
    pub rate_per_sec: f64,
    /// Messages a user may send in a burst above the sustained rate.
    pub rate_burst: u32,
    /// Hours a session token from register/login stays valid.
    pub session_ttl_hours: u64,
    /// Milliseconds a typing indicator lasts without a refresh.
    pub typing_timeout_ms: u64,
    /// `markAsRead` (and `POST /api/chats/:id/read`) per user.
    pub read_rate: Rate,
    /// Typing events per user.
    pub typing_rate: Rate,
    /// Reactions added or removed per user.
    pub reaction_rate: Rate,
    /// Edits and deletes per user.
    pub edit_rate: Rate,
    /// Chats (groups, new direct chats) a user may create.
    pub chat_create_rate: Rate,
    /// Member additions and removals per user (each request counts once).
    pub member_add_rate: Rate,
    /// Most members of a group.
    pub max_group_members: usize,
    /// Most chats a user may be a member of.
    pub max_chats_per_user: usize,
    /// Most distinct emoji on one message.
    pub max_reaction_emojis: usize,
    /// Most reactions one user may put on one message.
    pub max_reactions_per_user: usize,
    /// Attachment bytes a user may upload per day (rolling 24 hours).
    pub attachment_bytes_per_day: u64,
    /// Rate-limit refusals a user may collect on the chat socket; a socket
    /// refused faster than this (a client ignoring `retryAfter`) is disconnected.
    pub refusal_rate: Rate,
    /// Socket events of one user handled at once; more wait their turn, so a
    /// user's flood queues behind itself rather than in front of other users
    /// at the database writer they all share.
    pub user_concurrency: usize,
    /// Seconds a recipient's client has to confirm a `receiveMessage` (its
    /// ack, or `messageReceived`). Unconfirmed, the message stays pending and
    /// is sent again when the recipient next connects.
    pub delivery_ack_timeout_secs: u64,
    /// Packets queued for one socket before it counts as a hopelessly slow
    /// consumer: it is disconnected, and what it missed stays pending in the
    /// store for its next connection (socketioxide's default is 128).
    pub socket_buffer_packets: usize,
    /// Seconds between the server's heartbeat pings on the chat socket.
    pub ping_interval_secs: u64,
    /// Seconds a client has to answer a ping; a socket that does not
    /// (half-open, stalled) is closed, and its unconfirmed messages wait for
    /// its next connection.
    pub ping_timeout_secs: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            cors_origins: Vec::new(),
            max_message_bytes: 16 * 1024,
            max_attachment_bytes: 10 * 1024 * 1024,
            rate_per_sec: 10.0,
            rate_burst: 20,
            session_ttl_hours: 24,
            typing_timeout_ms: 5000,
            read_rate: Rate::new(5.0, 20),
            typing_rate: Rate::new(2.0, 5),
            reaction_rate: Rate::new(5.0, 20),
            edit_rate: Rate::new(2.0, 10),
            chat_create_rate: Rate::new(0.2, 10),
            member_add_rate: Rate::new(1.0, 10),
            max_group_members: 1000,
            max_chats_per_user: 5000,
            max_reaction_emojis: 50,
            max_reactions_per_user: 10,
            attachment_bytes_per_day: 512 * 1024 * 1024,
            refusal_rate: Rate::new(20.0, 200),
            user_concurrency: 4,
            delivery_ack_timeout_secs: 30,
            socket_buffer_packets: 1024,
            ping_interval_secs: 25,
            ping_timeout_secs: 20,
        }
    }
}

impl ChatConfig {
    /// Checks what serde cannot; returns every problem found.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.rate_per_sec <= 0.0 || self.rate_burst == 0 {
            problems.push("chat: rate_per_sec and rate_burst must be positive".into());
        }
        if self.delivery_ack_timeout_secs == 0
            || self.ping_interval_secs == 0
            || self.ping_timeout_secs == 0
        {
            problems.push(
                "chat: delivery_ack_timeout_secs, ping_interval_secs and ping_timeout_secs \
                 must be positive"
                    .into(),
            );
        }
        if self.socket_buffer_packets < 16 {
            problems.push("chat: socket_buffer_packets must be at least 16".into());
        }
        problems.extend(
            [
                self.read_rate.problem("chat.read_rate"),
                self.typing_rate.problem("chat.typing_rate"),
                self.reaction_rate.problem("chat.reaction_rate"),
                self.edit_rate.problem("chat.edit_rate"),
                self.chat_create_rate.problem("chat.chat_create_rate"),
                self.member_add_rate.problem("chat.member_add_rate"),
                self.refusal_rate.problem("chat.refusal_rate"),
            ]
            .into_iter()
            .flatten(),
        );
        if self.max_group_members < 2 {
            problems.push("chat: max_group_members must be at least 2".into());
        }
        problems
    }
}

/// Who owns identity on this node (`[accounts] mode`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccountsMode {
    /// Only the node's own accounts: register and log in here; tokens an app
    /// mints are refused by the API and the chat socket (they still join
    /// rooms and call the server API, as LiveKit tokens).
    Local,
    /// Only the app's identities: registration and login are off (403), and
    /// a valid token the app mints for an identity creates that user.
    App,
    /// Both. An app token for an identity a local account holds (in any case
    /// or Unicode form) is refused, and a username an app identity uses can't
    /// be registered.
    #[default]
    Both,
}

/// Accounts: who owns identity, password hashing, sign-in throttling, sessions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// `local`, `app` or `both` (see [`AccountsMode`]). `both` keeps the
    /// node's own sign-up and an app's own login working side by side.
    pub mode: AccountsMode,
    /// Password hashes (argon2, ~19 MiB and tens of ms each) computed at
    /// once. 0: one per CPU core.
    pub hash_concurrency: usize,
    /// Password checks that may wait for a free hasher; beyond that, login
    /// and registration are refused at once with 429 and `Retry-After`.
    pub hash_queue: usize,
    /// Failed logins for one username before each next attempt must wait
    /// (1 s, doubling up to `max_backoff_secs`).
    pub login_free_failures: u32,
    /// Failed logins for one username that lock it for `lockout_secs`.
    pub login_lockout_failures: u32,
    /// Failed logins from one client address (IPv6: its /64) before each
    /// next attempt must wait.
    pub ip_free_failures: u32,
    /// Failed logins from one client address that lock it for `lockout_secs`.
    pub ip_lockout_failures: u32,
    /// Longest wait between two attempts before the lock, in seconds.
    pub max_backoff_secs: u64,
    /// How long a lock lasts, in seconds; failures are forgotten this long
    /// after the last one.
    pub lockout_secs: u64,
    /// Registrations per client address: sustained rate and burst.
    pub register_rate: Rate,
    /// Sign-in sessions one user keeps; a login beyond it ends the oldest.
    pub max_sessions_per_user: u32,
    /// Addresses or CIDR ranges of reverse proxies whose `X-Forwarded-For`
    /// names the client. Empty: the TCP peer is the client, and
    /// `X-Forwarded-For` is ignored.
    pub trusted_proxies: Vec<String>,
    /// Largest profile picture accepted (`POST /api/users/me/avatar`), in bytes.
    pub max_avatar_bytes: usize,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            mode: AccountsMode::Both,
            hash_concurrency: 0,
            hash_queue: 32,
            login_free_failures: 5,
            login_lockout_failures: 10,
            ip_free_failures: 20,
            ip_lockout_failures: 100,
            max_backoff_secs: 60,
            lockout_secs: 900,
            register_rate: Rate::new(0.01, 30),
            max_sessions_per_user: 20,
            trusted_proxies: Vec::new(),
            max_avatar_bytes: 2 * 1024 * 1024,
        }
    }
}

impl AccountsConfig {
    /// Checks what serde cannot; returns every problem found.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .register_rate
            .problem("accounts.register_rate")
            .into_iter()
            .collect();
        if self.login_free_failures >= self.login_lockout_failures
            || self.ip_free_failures >= self.ip_lockout_failures
        {
            problems.push("accounts: *_free_failures must be below *_lockout_failures".to_string());
        }
        if self.lockout_secs == 0 || self.max_backoff_secs == 0 {
            problems.push("accounts: lockout_secs and max_backoff_secs must be positive".into());
        }
        if self.max_sessions_per_user == 0 {
            problems.push("accounts: max_sessions_per_user must be at least 1".into());
        }
        for p in &self.trusted_proxies {
            if crate::accounts::parse_cidr(p).is_none() {
                problems.push(format!(
                    "accounts.trusted_proxies: {p:?} is not an IP address or CIDR range"
                ));
            }
        }
        problems
    }
}
