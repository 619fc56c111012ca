//! Web Push subscriptions.

use sqlx::Row;

use super::{now_ms, Store};
use crate::error::Error;

/// A stored browser subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubscription {
    pub endpoint: String,
    /// Base64url (unpadded) P-256 public key of the browser.
    pub p256dh: String,
    /// Base64url (unpadded) authentication secret.
    pub auth: String,
}

impl Store {
    /// Stores (or refreshes) a subscription of `user`, then keeps only the
    /// user's `max` most recently sent ones; returns how many older ones
    /// made room. An endpoint another user holds stays theirs (a conflict)
    /// unless the keys match. Keys are compared as stored: pass them in one
    /// canonical encoding.
    pub async fn save_push_subscription(
        &self,
        user: &str,
        s: &StoredSubscription,
        max: usize,
    ) -> Result<u64, Error> {
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        // The upsert's WHERE makes an endpoint of another user a no-op (0 rows)
        // unless the request carries the same keys, auth secret included: then
        // it comes from that browser, now signed in as someone else, and the
        // subscription follows. Knowing an endpoint URL alone takes nothing.
        let stored = sqlx::query(
            "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth, created_at, seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT(endpoint) DO UPDATE SET user_id = excluded.user_id, \
             p256dh = excluded.p256dh, auth = excluded.auth, seen_at = excluded.seen_at \
             WHERE push_subscriptions.user_id = excluded.user_id \
             OR (push_subscriptions.p256dh = excluded.p256dh AND push_subscriptions.auth = excluded.auth)",
        )
        .bind(&s.endpoint)
        .bind(user)
        .bind(&s.p256dh)
        .bind(&s.auth)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if stored == 0 {
            return Err(Error::conflict(
                "this push endpoint is subscribed by another account; it must unsubscribe first",
            ));
        }
        let evicted = sqlx::query(
            "DELETE FROM push_subscriptions WHERE user_id = $1 AND endpoint NOT IN \
             (SELECT endpoint FROM push_subscriptions WHERE user_id = $2 \
              ORDER BY seen_at DESC, rowid DESC LIMIT $3)",
        )
        .bind(user)
        .bind(user)
        .bind(i64::try_from(max.max(1)).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(evicted)
    }

    /// Removes a subscription of `user`; false when there was none.
    pub async fn delete_push_subscription(
        &self,
        user: &str,
        endpoint: &str,
    ) -> Result<bool, Error> {
        Ok(
            sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = $1 AND user_id = $2")
                .bind(endpoint)
                .bind(user)
                .execute(self.writer())
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Removes a subscription the push service says is gone.
    pub async fn forget_push_endpoint(&self, endpoint: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = $1")
            .bind(endpoint)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// How many subscriptions a user has.
    pub async fn push_subscription_count(&self, user: &str) -> Result<i64, Error> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM push_subscriptions WHERE user_id = $1")
                .bind(user)
                .fetch_one(self.pool())
                .await?
                .get(0),
        )
    }

    /// A user's subscriptions, at most `max`, the most recently sent first.
    pub async fn push_subscriptions(
        &self,
        user: &str,
        max: usize,
    ) -> Result<Vec<StoredSubscription>, Error> {
        Ok(sqlx::query(
            "SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = $1 \
                 ORDER BY seen_at DESC, rowid DESC LIMIT $2",
        )
        .bind(user)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(|r| StoredSubscription {
            endpoint: r.get(0),
            p256dh: r.get(1),
            auth: r.get(2),
        })
        .collect())
    }
}

impl Store {
    /// The value of setting `name` all nodes share: `candidate` if none was
    /// stored yet, else the stored one (whichever node stored first).
    pub async fn shared_setting(&self, name: &str, candidate: &str) -> Result<String, Error> {
        sqlx::query(
            "INSERT INTO shared_settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .execute(self.writer())
        .await?;
        Ok(
            sqlx::query_scalar::<_, String>("SELECT value FROM shared_settings WHERE name = $1")
                .bind(name)
                .fetch_one(self.writer())
                .await?,
        )
    }
}
