//! Web Push subscriptions.

use sqlx::Row;

use super::{now_ms, Store};
use crate::error::Error;

/// A stored browser subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubscription {
    pub endpoint: String,
    /// Base64url P-256 public key of the browser.
    pub p256dh: String,
    /// Base64url authentication secret.
    pub auth: String,
}

impl Store {
    /// Stores a subscription for `user`, replacing one with the same endpoint.
    pub async fn save_push_subscription(
        &self,
        user: &str,
        s: &StoredSubscription,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(endpoint) DO UPDATE SET user_id = excluded.user_id, p256dh = excluded.p256dh, auth = excluded.auth",
        )
        .bind(&s.endpoint)
        .bind(user)
        .bind(&s.p256dh)
        .bind(&s.auth)
        .bind(now_ms())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Removes a subscription of `user`; false when there was none.
    pub async fn delete_push_subscription(
        &self,
        user: &str,
        endpoint: &str,
    ) -> Result<bool, Error> {
        Ok(
            sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = ? AND user_id = ?")
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
        sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = ?")
            .bind(endpoint)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// How many subscriptions a user has.
    pub async fn push_subscription_count(&self, user: &str) -> Result<i64, Error> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM push_subscriptions WHERE user_id = ?")
                .bind(user)
                .fetch_one(self.pool())
                .await?
                .get(0),
        )
    }

    /// Every subscription of a user.
    pub async fn push_subscriptions(&self, user: &str) -> Result<Vec<StoredSubscription>, Error> {
        Ok(
            sqlx::query("SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = ?")
                .bind(user)
                .fetch_all(self.pool())
                .await?
                .into_iter()
                .map(|r| StoredSubscription {
                    endpoint: r.get(0),
                    p256dh: r.get(1),
                    auth: r.get(2),
                })
                .collect(),
        )
    }
}
