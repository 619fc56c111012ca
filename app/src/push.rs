//! Web Push: VAPID keys, subscriptions, and a sender that encrypts with the
//! `web-push` crate (RFC 8291 aes128gcm + VAPID) and posts with a rustls
//! HTTP client. Sending runs on its own task: the request that caused a push
//! never waits for it. Subscriptions answered 404/410 are deleted; transient
//! failures are retried with exponential backoff.
//!
//! Hostile input is bounded here: endpoints must be public `https` URLs
//! ([`guard`]), keys must be a real P-256 point and a 16-byte secret, a user
//! holds at most `max_subscriptions_per_user` subscriptions and subscribes at
//! `subscribe_rate`, an endpoint can't be taken from its owner, and sending
//! is bounded: a timeout per request, no redirects, `max_concurrent_sends`
//! node-wide and `max_pending_per_user` notifications per user.

mod guard;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};
use web_push::{
    ContentEncoding, SubscriptionInfo, Urgency, VapidSignatureBuilder, WebPushMessageBuilder,
};

use crate::config::PushConfig;
use crate::error::Error;
use crate::limits::Limiter;
use crate::metrics::AppMetrics;
use crate::store::{Store, StoredSubscription};

pub use guard::is_public;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A browser `PushSubscription` as `JSON.stringify` gives it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Subscription {
    pub endpoint: String,
    pub keys: Keys,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Keys {
    pub p256dh: String,
    pub auth: String,
}

/// One notification for every subscription of a user.
struct Job {
    user: String,
    payload: Vec<u8>,
    ttl: u32,
    urgent: bool,
    /// Counts the job against its user until its last delivery ends.
    ticket: Arc<Ticket>,
}

/// Notifications queued or in flight, per user (only users with some).
#[derive(Default)]
struct Pending(Mutex<HashMap<String, usize>>);

impl Pending {
    /// Counts one more for `user` unless it already has `max` (and `force` is off).
    fn take(self: &Arc<Self>, user: &str, max: usize, force: bool) -> Option<Ticket> {
        // The map holds plain counters: a panic elsewhere can't leave it inconsistent.
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(user.to_string()).or_insert(0);
        if *n >= max && !force {
            return None;
        }
        *n += 1;
        Some(Ticket {
            pending: self.clone(),
            user: user.to_string(),
        })
    }
}

/// One pending notification of a user; dropping it gives the slot back.
struct Ticket {
    pending: Arc<Pending>,
    user: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut map = self.pending.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

/// How urgent a notification is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Priority {
    /// Incoming calls: TTL 30 s, urgency high.
    Ring,
    /// Missed calls and messages: kept a day, normal urgency.
    Normal,
}

pub struct Push {
    store: Store,
    /// Raw P-256 private scalar, base64url.
    private_key: String,
    public_key: String,
    config: PushConfig,
    queue: mpsc::Sender<Job>,
    /// Subscribe and unsubscribe requests, per user id.
    writes: Limiter<String>,
    pending: Arc<Pending>,
    /// Push requests in flight, node-wide.
    sends: Arc<Semaphore>,
    metrics: AppMetrics,
}

/// Notifications waiting to be sent before new ones are dropped (with a log line).
const QUEUE: usize = 10_000;

/// Longest endpoint URL accepted.
const MAX_ENDPOINT: usize = 2048;

/// Longest `keys.p256dh` and `keys.auth` accepted before decoding (base64 of
/// 65 and 16 bytes, with room for padding).
const MAX_P256DH: usize = 100;
const MAX_AUTH: usize = 32;

/// Largest plaintext the `web-push` crate encrypts (one aes128gcm record).
const MAX_PAYLOAD: usize = 3052;

/// Payload fields that are display text, shortened when a payload is too large.
const SHORTENABLE: [&str; 2] = ["preview", "callerName"];

impl Push {
    /// Loads the VAPID key from config, or from (creating once) `<data-dir>/vapid_private_key`.
    pub fn start(
        store: Store,
        config: PushConfig,
        data_dir: &Path,
        metrics: AppMetrics,
    ) -> Result<Arc<Push>, Error> {
        let private_key = if config.vapid_private_key.is_empty() {
            load_or_create_key(&data_dir.join("vapid_private_key"))?
        } else {
            config.vapid_private_key.clone()
        };
        let public_key = VapidSignatureBuilder::from_base64_no_sub(&private_key)
            .map_err(Error::Vapid)?
            .get_public_key();
        let (queue, rx) = mpsc::channel(QUEUE);
        let push = Arc::new(Push {
            store,
            private_key,
            public_key: B64.encode(public_key),
            writes: Limiter::new("push subscription changes", config.subscribe_rate),
            pending: Arc::default(),
            sends: Arc::new(Semaphore::new(config.max_concurrent_sends.max(1))),
            config,
            queue,
            metrics,
        });
        tokio::spawn(push.clone().run(rx));
        Ok(push)
    }

    /// The application server key browsers subscribe with (base64url, uncompressed point).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Stores a subscription for `user` (refreshing one with the same
    /// endpoint); over the cap, the user's least recently sent one goes.
    pub async fn subscribe(&self, user: &str, s: &Subscription) -> Result<(), Error> {
        self.writes
            .check(&user.to_string())
            .map_err(Error::RateLimited)?;
        if s.endpoint.len() > MAX_ENDPOINT {
            return Err(Error::invalid(format!(
                "endpoint is longer than {MAX_ENDPOINT} characters"
            )));
        }
        if s.keys.p256dh.len() > MAX_P256DH || s.keys.auth.len() > MAX_AUTH {
            return Err(Error::invalid(
                "keys.p256dh must be a P-256 point and keys.auth 16 bytes (base64url)",
            ));
        }
        let url = reqwest::Url::parse(&s.endpoint)
            .map_err(|_| Error::invalid("endpoint is not a URL"))?;
        let p256dh = B64
            .decode(s.keys.p256dh.trim_end_matches('='))
            .map_err(|_| Error::invalid("keys.p256dh is not base64url"))?;
        let auth = B64
            .decode(s.keys.auth.trim_end_matches('='))
            .map_err(|_| Error::invalid("keys.auth is not base64url"))?;
        if p256dh.len() != 65 || p256dh[0] != 4 || !on_p256(&p256dh)? {
            return Err(Error::invalid(
                "keys.p256dh must be an uncompressed P-256 point",
            ));
        }
        if auth.len() != 16 {
            return Err(Error::invalid("keys.auth must be 16 bytes"));
        }
        // Last: it may resolve the host.
        guard::check_endpoint(&url, self.config.allow_insecure_endpoints)
            .await
            .map_err(Error::invalid)?;
        let evicted = self
            .store
            .save_push_subscription(
                user,
                &StoredSubscription {
                    endpoint: s.endpoint.clone(),
                    // One encoding, so the same browser's keys compare equal.
                    p256dh: B64.encode(&p256dh),
                    auth: B64.encode(&auth),
                },
                self.config.max_subscriptions_per_user,
            )
            .await?;
        if evicted > 0 {
            tracing::info!(%user, evicted, "push subscription cap reached; dropped the stalest");
        }
        Ok(())
    }

    /// Removes a subscription of `user`; false when there was none.
    pub async fn unsubscribe(&self, user: &str, endpoint: &str) -> Result<bool, Error> {
        self.writes
            .check(&user.to_string())
            .map_err(Error::RateLimited)?;
        if endpoint.len() > MAX_ENDPOINT {
            return Ok(false); // never stored
        }
        self.store.delete_push_subscription(user, endpoint).await
    }

    /// How many subscriptions `user` has.
    pub async fn count(&self, user: &str) -> Result<i64, Error> {
        self.store.push_subscription_count(user).await
    }

    /// Queues a notification to every subscription of `user`; never waits for
    /// the network. Dropped (with a log line) when the queue is full, when the
    /// payload can't be made to fit, or when the user already has
    /// `max_pending_per_user` waiting (incoming calls always go).
    pub fn notify(&self, user: &str, payload: &Value, priority: Priority) {
        let (ttl, urgent) = match priority {
            Priority::Ring => (30, true),
            Priority::Normal => (86_400, false),
        };
        let Some(payload) = fit(payload) else {
            tracing::warn!(%user, "push payload too large; notification dropped");
            return;
        };
        let Some(ticket) = self
            .pending
            .take(user, self.config.max_pending_per_user, urgent)
        else {
            tracing::debug!(%user, "user has too many pushes pending; notification dropped");
            return;
        };
        let job = Job {
            user: user.to_string(),
            payload,
            ttl,
            urgent,
            ticket: Arc::new(ticket),
        };
        if self.queue.try_send(job).is_err() {
            tracing::warn!(%user, "push queue full; notification dropped");
        }
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Job>) {
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("push HTTP client: {e}");
                return;
            }
        };
        while let Some(job) = rx.recv().await {
            let subs = match self
                .store
                .push_subscriptions(&job.user, self.config.max_subscriptions_per_user)
                .await
            {
                Ok(subs) => subs,
                Err(e) => {
                    e.log_if_internal();
                    continue;
                }
            };
            let payload: Arc<[u8]> = job.payload.into();
            for sub in subs {
                // Waiting here for a slot keeps the backlog in the bounded queue.
                let Ok(permit) = self.sends.clone().acquire_owned().await else {
                    return;
                };
                let info = SubscriptionInfo::new(sub.endpoint, sub.p256dh, sub.auth);
                let me = self.clone();
                let client = client.clone();
                let payload = payload.clone();
                let ticket = job.ticket.clone();
                let (ttl, urgent) = (job.ttl, job.urgent);
                // Each subscription on its own task: a slow push service delays nobody else.
                tokio::spawn(async move {
                    me.deliver(&client, permit, info, &payload, ttl, urgent)
                        .await;
                    drop(ticket);
                });
            }
        }
    }

    /// The sending client: bounded in time, no redirects, no proxy, and
    /// (unless insecure endpoints are allowed) https to public addresses only.
    fn client(&self) -> reqwest::Result<reqwest::Client> {
        let timeout = Duration::from_secs(self.config.send_timeout_secs.max(1));
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(4);
        if self.config.allow_insecure_endpoints {
            builder.build()
        } else {
            builder
                .https_only(true)
                .dns_resolver(Arc::new(guard::PublicOnly))
                .build()
        }
    }

    /// Sends to one subscription, retrying; holds a send slot only while a
    /// request is in flight, not while backing off.
    async fn deliver(
        &self,
        client: &reqwest::Client,
        permit: tokio::sync::OwnedSemaphorePermit,
        info: SubscriptionInfo,
        payload: &[u8],
        ttl: u32,
        urgent: bool,
    ) {
        // Again at send time: the endpoint was stored under another config,
        // or is an address literal the resolver never sees.
        let allowed = reqwest::Url::parse(&info.endpoint)
            .map_err(|e| e.to_string())
            .and_then(|u| guard::check_url(&u, self.config.allow_insecure_endpoints));
        if let Err(why) = allowed {
            tracing::warn!(endpoint = %info.endpoint, "push not sent: {why}");
            return;
        }
        let mut first = Some(permit);
        let mut last = String::new();
        let mut delay = Duration::from_millis(self.config.retry_base_ms);
        for attempt in 0..=self.config.retries {
            let permit = match first.take() {
                Some(p) => p,
                None => match self.sends.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let sent = self.send_once(client, &info, payload, ttl, urgent).await;
            drop(permit);
            match sent {
                Ok(()) => {
                    self.metrics.push("sent");
                    return;
                }
                Err(Outcome::Gone) => {
                    self.metrics.push("gone");
                    tracing::info!(endpoint = %info.endpoint, "push subscription gone; deleting it");
                    if let Err(e) = self.store.forget_push_endpoint(&info.endpoint).await {
                        e.log_if_internal();
                    }
                    return;
                }
                Err(Outcome::Fatal(e)) => {
                    self.metrics.push("failed");
                    tracing::warn!(endpoint = %info.endpoint, "push refused: {e}");
                    return;
                }
                Err(Outcome::Retry(e)) => {
                    self.metrics.push("retry");
                    tracing::debug!(endpoint = %info.endpoint, attempt, "push failed, will retry: {e}");
                    last = e;
                    if attempt < self.config.retries {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        self.metrics.push("failed");
        tracing::warn!(endpoint = %info.endpoint, "push gave up after {} retries: {last}", self.config.retries);
    }

    async fn send_once(
        &self,
        client: &reqwest::Client,
        info: &SubscriptionInfo,
        payload: &[u8],
        ttl: u32,
        urgent: bool,
    ) -> Result<(), Outcome> {
        let mut sig = VapidSignatureBuilder::from_base64(&self.private_key, info)
            .map_err(|e| Outcome::Fatal(e.to_string()))?;
        sig.add_claim("sub", self.config.subject.as_str());
        // RFC 8292: the audience is the endpoint's origin, port included when not
        // the default (web-push itself leaves the port out).
        let origin = reqwest::Url::parse(&info.endpoint)
            .map(|u| u.origin().ascii_serialization())
            .map_err(|e| Outcome::Fatal(e.to_string()))?;
        sig.add_claim("aud", origin.as_str());
        let sig = sig.build().map_err(|e| Outcome::Fatal(e.to_string()))?;
        let mut builder = WebPushMessageBuilder::new(info);
        builder.set_payload(ContentEncoding::Aes128Gcm, payload);
        builder.set_ttl(ttl);
        builder.set_urgency(if urgent {
            Urgency::High
        } else {
            Urgency::Normal
        });
        builder.set_vapid_signature(sig);
        let msg = builder.build().map_err(|e| Outcome::Fatal(e.to_string()))?;
        let mut req = client
            .post(msg.endpoint.to_string())
            .header("TTL", msg.ttl.to_string())
            .header("Urgency", if urgent { "high" } else { "normal" });
        let body = match msg.payload {
            Some(p) => {
                for (k, v) in p.crypto_headers {
                    req = req.header(k, v);
                }
                req = req.header("Content-Encoding", p.content_encoding.to_str());
                req = req.header("Content-Type", "application/octet-stream");
                p.content
            }
            None => Vec::new(),
        };
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| Outcome::Retry(chain(&e)))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            404 | 410 => Err(Outcome::Gone),
            429 | 500..=599 => Err(Outcome::Retry(format!("HTTP {}", resp.status()))),
            s => Err(Outcome::Fatal(format!("HTTP {s}"))),
        }
    }
}

enum Outcome {
    Gone,
    Retry(String),
    Fatal(String),
}

/// An error with its causes ("error sending request: ... : no public address").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Whether `point` (SEC1 bytes) is a point on P-256.
fn on_p256(point: &[u8]) -> Result<bool, Error> {
    use openssl::bn::BigNumContext;
    use openssl::ec::{EcGroup, EcPoint};
    use openssl::nid::Nid;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let mut ctx = BigNumContext::new()?;
    Ok(EcPoint::from_bytes(&group, point, &mut ctx).is_ok())
}

/// The payload as bytes the encryption takes: display text shortened if the
/// whole is too large; `None` if even that does not fit.
fn fit(payload: &Value) -> Option<Vec<u8>> {
    let full = payload.to_string();
    if full.len() <= MAX_PAYLOAD {
        return Some(full.into_bytes());
    }
    let mut short = payload.clone();
    if let Value::Object(map) = &mut short {
        for key in SHORTENABLE {
            if let Some(Value::String(text)) = map.get_mut(key) {
                *text = text.chars().take(64).collect();
            }
        }
    }
    let short = short.to_string();
    (short.len() <= MAX_PAYLOAD).then(|| short.into_bytes())
}

fn load_or_create_key(path: &Path) -> Result<String, Error> {
    if let Ok(k) = std::fs::read_to_string(path) {
        return Ok(k.trim().to_string());
    }
    let encoded = new_key()?;
    write_private(path, &encoded).map_err(|source| Error::Io {
        context: "writing the VAPID key",
        source,
    })?;
    tracing::info!(path = %path.display(), "generated VAPID keys");
    Ok(encoded)
}

/// A new VAPID private key: a P-256 scalar, base64url.
fn new_key() -> Result<String, Error> {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = EcKey::generate(&group)?;
    let scalar = key.private_key().to_vec_padded(32)?;
    Ok(B64.encode(scalar))
}

/// The VAPID key every node of a shared database signs with: the one stored
/// there, else this node's file key (a node moving to the shared database
/// keeps its browsers' subscriptions), else a new one. The first node to
/// store one wins.
pub async fn shared_key(store: &Store, data_dir: &Path) -> Result<String, Error> {
    let candidate = match std::fs::read_to_string(data_dir.join("vapid_private_key")) {
        Ok(k) => k.trim().to_string(),
        Err(_) => new_key()?,
    };
    store.shared_setting("vapid_private_key", &candidate).await
}

#[cfg(unix)]
fn write_private(path: &Path, data: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &str) -> std::io::Result<()> {
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn oversized_payloads_are_shortened_or_dropped() {
        let small = json!({"type": "message", "preview": "hi"});
        assert_eq!(fit(&small), Some(small.to_string().into_bytes()));
        // Control characters escape to six bytes each: 1,000 of them is too much.
        let long = "\u{1}".repeat(1000);
        let big = json!({"type": "message", "chatId": "CH_1", "preview": long, "callerName": long});
        let out: Value = serde_json::from_slice(&fit(&big).expect("shortened")).expect("json");
        assert_eq!(out["preview"].as_str().map(|s| s.chars().count()), Some(64));
        assert_eq!(out["chatId"], "CH_1");
        let hopeless = json!({"type": "message", "chatId": "x".repeat(4000)});
        assert_eq!(fit(&hopeless), None);
    }

    #[test]
    fn keys_must_be_a_point_on_the_curve() {
        let key = openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                .expect("group"),
        )
        .expect("key");
        let mut ctx = openssl::bn::BigNumContext::new().expect("ctx");
        let point = key
            .public_key()
            .to_bytes(
                key.group(),
                openssl::ec::PointConversionForm::UNCOMPRESSED,
                &mut ctx,
            )
            .expect("bytes");
        assert!(on_p256(&point).expect("check"));
        let mut off = point.clone();
        off[64] ^= 1;
        assert!(!on_p256(&off).expect("check"));
        let mut zeros = vec![0u8; 65];
        zeros[0] = 4;
        assert!(!on_p256(&zeros).expect("check"));
    }

    #[test]
    fn pending_notifications_are_counted_per_user_and_given_back() {
        let pending = Arc::new(Pending::default());
        let a: Vec<_> = (0..2).map(|_| pending.take("a", 2, false)).collect();
        assert!(a.iter().all(Option::is_some));
        assert!(pending.take("a", 2, false).is_none());
        // Incoming calls go anyway; other users are not affected.
        let ring = pending.take("a", 2, true);
        assert!(ring.is_some());
        assert!(pending.take("b", 2, false).is_some());
        drop(a);
        drop(ring);
        assert!(pending.take("a", 2, false).is_some());
        // Users with nothing pending leave no state behind.
        assert!(pending.0.lock().expect("map").is_empty());
    }
}
