//! Web Push: VAPID keys, subscriptions, and a sender that encrypts with the
//! `web-push` crate (RFC 8291 aes128gcm + VAPID) and posts with a rustls
//! HTTP client. Sending runs on its own task: the request that caused a push
//! never waits for it. Subscriptions answered 404/410 are deleted; transient
//! failures are retried with exponential backoff.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use web_push::{
    ContentEncoding, SubscriptionInfo, Urgency, VapidSignatureBuilder, WebPushMessageBuilder,
};

use crate::config::PushConfig;
use crate::error::Error;
use crate::store::{Store, StoredSubscription};

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
}

/// Notifications waiting to be sent before new ones are dropped (with a log line).
const QUEUE: usize = 10_000;

impl Push {
    /// Loads the VAPID key from config, or from (creating once) `<data-dir>/vapid_private_key`.
    pub fn start(store: Store, config: PushConfig, data_dir: &Path) -> Result<Arc<Push>, Error> {
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
            config,
            queue,
        });
        tokio::spawn(push.clone().run(rx));
        Ok(push)
    }

    /// The application server key browsers subscribe with (base64url, uncompressed point).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Stores a subscription for `user` (replacing one with the same endpoint).
    pub async fn subscribe(&self, user: &str, s: &Subscription) -> Result<(), Error> {
        let url = reqwest::Url::parse(&s.endpoint)
            .map_err(|_| Error::invalid("endpoint is not a URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.config.allow_insecure_endpoints => {}
            _ => return Err(Error::invalid("endpoint must be an https URL")),
        }
        if s.endpoint.len() > 2048 {
            return Err(Error::invalid("endpoint is longer than 2048 characters"));
        }
        let p256dh = B64
            .decode(s.keys.p256dh.trim_end_matches('='))
            .map_err(|_| Error::invalid("keys.p256dh is not base64url"))?;
        let auth = B64
            .decode(s.keys.auth.trim_end_matches('='))
            .map_err(|_| Error::invalid("keys.auth is not base64url"))?;
        if p256dh.len() != 65 || p256dh[0] != 4 {
            return Err(Error::invalid(
                "keys.p256dh must be an uncompressed P-256 point",
            ));
        }
        if auth.len() != 16 {
            return Err(Error::invalid("keys.auth must be 16 bytes"));
        }
        self.store
            .save_push_subscription(
                user,
                &StoredSubscription {
                    endpoint: s.endpoint.clone(),
                    p256dh: s.keys.p256dh.clone(),
                    auth: s.keys.auth.clone(),
                },
            )
            .await
    }

    /// Removes a subscription of `user`; false when there was none.
    pub async fn unsubscribe(&self, user: &str, endpoint: &str) -> Result<bool, Error> {
        self.store.delete_push_subscription(user, endpoint).await
    }

    /// How many subscriptions `user` has.
    pub async fn count(&self, user: &str) -> Result<i64, Error> {
        self.store.push_subscription_count(user).await
    }

    /// Queues a notification to every subscription of `user`; never waits for the network.
    pub fn notify(&self, user: &str, payload: &Value, priority: Priority) {
        let (ttl, urgent) = match priority {
            Priority::Ring => (30, true),
            Priority::Normal => (86_400, false),
        };
        let job = Job {
            user: user.to_string(),
            payload: payload.to_string().into_bytes(),
            ttl,
            urgent,
        };
        if self.queue.try_send(job).is_err() {
            tracing::warn!(%user, "push queue full; notification dropped");
        }
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Job>) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("push HTTP client: {e}");
                return;
            }
        };
        while let Some(job) = rx.recv().await {
            let subs = match self.store.push_subscriptions(&job.user).await {
                Ok(subs) => subs,
                Err(e) => {
                    e.log_if_internal();
                    continue;
                }
            };
            for sub in subs {
                let info = SubscriptionInfo::new(sub.endpoint, sub.p256dh, sub.auth);
                let me = self.clone();
                let client = client.clone();
                let payload = job.payload.clone();
                let (ttl, urgent) = (job.ttl, job.urgent);
                // Each subscription on its own task: a slow push service delays nobody else.
                tokio::spawn(async move { me.deliver(&client, info, &payload, ttl, urgent).await });
            }
        }
    }

    async fn deliver(
        &self,
        client: &reqwest::Client,
        info: SubscriptionInfo,
        payload: &[u8],
        ttl: u32,
        urgent: bool,
    ) {
        let mut delay = Duration::from_millis(self.config.retry_base_ms);
        for attempt in 0..=self.config.retries {
            match self.send_once(client, &info, payload, ttl, urgent).await {
                Ok(()) => return,
                Err(Outcome::Gone) => {
                    tracing::info!(endpoint = %info.endpoint, "push subscription gone; deleting it");
                    if let Err(e) = self.store.forget_push_endpoint(&info.endpoint).await {
                        e.log_if_internal();
                    }
                    return;
                }
                Err(Outcome::Fatal(e)) => {
                    tracing::warn!(endpoint = %info.endpoint, "push refused: {e}");
                    return;
                }
                Err(Outcome::Retry(e)) => {
                    tracing::debug!(endpoint = %info.endpoint, attempt, "push failed, will retry: {e}");
                    if attempt < self.config.retries {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        tracing::warn!(endpoint = %info.endpoint, "push gave up after {} retries", self.config.retries);
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
            .map_err(|e| Outcome::Retry(e.to_string()))?;
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

fn load_or_create_key(path: &Path) -> Result<String, Error> {
    if let Ok(k) = std::fs::read_to_string(path) {
        return Ok(k.trim().to_string());
    }
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = EcKey::generate(&group)?;
    let scalar = key.private_key().to_vec_padded(32)?;
    let encoded = B64.encode(scalar);
    write_private(path, &encoded).map_err(|source| Error::Io {
        context: "writing the VAPID key",
        source,
    })?;
    tracing::info!(path = %path.display(), "generated VAPID keys");
    Ok(encoded)
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
