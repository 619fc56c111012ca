//! TURN credentials as LiveKit issues them: short-lived, per participant,
//! derived from an API secret, so the server checks them without storing
//! anything: `username = "<expiry>:<api key>:<participant sid>"`,
//! `password = base64url(HMAC-SHA256(secret, username))`.

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a TURN username is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("not a Nodo TURN username")]
    Malformed,
    #[error("issued by an unknown API key")]
    UnknownKey,
    #[error("expired")]
    Expired,
}

/// A username and the participant it was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub password: String,
    pub participant: String,
    /// Unix seconds after which new allocations are refused.
    pub expires: u64,
}

fn password(secret: &str, username: &str) -> String {
    // Unwrap is OK because HMAC takes keys of any length.
    #[allow(clippy::unwrap_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

/// Mints a username and password for `participant`, valid until `expires` (unix seconds).
pub fn mint(key: &str, secret: &str, participant: &str, expires: u64) -> (String, String) {
    let username = format!("{expires}:{key}:{participant}");
    let password = password(secret, &username);
    (username, password)
}

/// Checks a username against the node's keys: the password it implies, and
/// its participant. An expired username is reported as `Expired` only when
/// `now` is past it.
pub fn verify(
    keys: &BTreeMap<String, String>,
    username: &str,
    now: u64,
) -> Result<Issued, CredentialError> {
    let mut parts = username.splitn(3, ':');
    let (Some(expires), Some(key), Some(participant)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(CredentialError::Malformed);
    };
    let expires: u64 = expires.parse().map_err(|_| CredentialError::Malformed)?;
    if participant.is_empty() {
        return Err(CredentialError::Malformed);
    }
    let secret = keys.get(key).ok_or(CredentialError::UnknownKey)?;
    if now > expires {
        return Err(CredentialError::Expired);
    }
    Ok(Issued {
        password: password(secret, username),
        participant: participant.to_string(),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> BTreeMap<String, String> {
        BTreeMap::from([("devkey".to_string(), "secret".to_string())])
    }

    #[test]
    fn minted_credentials_verify_until_they_expire() {
        let (user, pass) = mint("devkey", "secret", "PA_abc", 1_000);
        let issued = verify(&keys(), &user, 999).expect("valid");
        assert_eq!(issued.password, pass);
        assert_eq!(issued.participant, "PA_abc");
        assert_eq!(verify(&keys(), &user, 1_001), Err(CredentialError::Expired));
        // Another secret gives another password: a forged username gets nowhere.
        let (_, other) = mint("devkey", "not-the-secret", "PA_abc", 1_000);
        assert_ne!(other, pass);
    }

    #[test]
    fn malformed_and_foreign_usernames_are_refused() {
        for bad in ["", "x", "12:devkey", "soon:devkey:PA_1", "12:devkey:"] {
            assert_eq!(
                verify(&keys(), bad, 0),
                Err(CredentialError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify(&keys(), "99:other:PA_1", 0),
            Err(CredentialError::UnknownKey)
        );
    }
}
