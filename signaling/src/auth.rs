//! LiveKit-format access tokens: HS256 JWTs issued by a configured API key.
//!
//! Two uses of the one format are kept apart by the `aud` claim:
//!
//! - a **session token** (the node's own sign-in, `aud` =
//!   [`SESSION_AUDIENCE`], `jti` = the session id) identifies a person to the
//!   app API and the chat socket; it never joins a room or calls the server
//!   API: [`KeyStore::verify`], which `/rtc` and Twirp use, refuses it;
//! - every other token (room tokens, server API tokens, an app's own tokens)
//!   is a LiveKit token as LiveKit reads it. The app decides which of those it
//!   accepts as a session ([`KeyStore::verify_any`] leaves that to it).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, TokenError};

/// The `video` grant. Tri-state fields are `None` when the token leaves them unset.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct VideoGrant {
    #[serde(skip_serializing_if = "is_false")]
    pub room_create: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub room_list: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub room_record: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub room_admin: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub room_join: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub room: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_subscribe: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish_data: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub can_publish_sources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_update_own_metadata: Option<bool>,
    #[serde(skip_serializing_if = "is_false")]
    pub hidden: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub recorder: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub ingress_admin: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub agent: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl VideoGrant {
    pub fn can_publish(&self) -> bool {
        self.can_publish.unwrap_or(true)
    }
    pub fn can_subscribe(&self) -> bool {
        self.can_subscribe.unwrap_or(true)
    }
    pub fn can_publish_data(&self) -> bool {
        self.can_publish_data.unwrap_or_else(|| self.can_publish())
    }
    pub fn can_update_own_metadata(&self) -> bool {
        self.can_update_own_metadata.unwrap_or(false)
    }
}

/// The `aud` of the node's session tokens.
pub const SESSION_AUDIENCE: &str = "nodo:session";

/// The claims of a token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Claims {
    pub iss: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sub: String,
    /// Audiences: a string or an array in the JWT; [`SESSION_AUDIENCE`] marks
    /// a session token.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "audience::serialize",
        deserialize_with = "audience::deserialize"
    )]
    pub aud: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub jti: String,
    pub exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub attributes: HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoGrant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// `roomConfig`: settings for the room this token's join creates.
    #[serde(
        rename = "roomConfig",
        alias = "room_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub room_config: Option<RoomConfig>,
}

/// The part of a token's `roomConfig` (LiveKit's `RoomConfiguration`) Nodo
/// acts on; other fields are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RoomConfig {
    /// Agents dispatched into the room when this join creates it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<TokenAgentDispatch>,
}

/// One agent named in a token's `roomConfig.agents`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TokenAgentDispatch {
    #[serde(rename = "agentName", alias = "agent_name")]
    pub agent_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub metadata: String,
}

impl Claims {
    /// The participant identity: `sub`, else `jti` (as LiveKit).
    pub fn identity(&self) -> &str {
        if self.sub.is_empty() {
            &self.jti
        } else {
            &self.sub
        }
    }

    pub fn video(&self) -> VideoGrant {
        self.video.clone().unwrap_or_default()
    }

    /// Whether this is one of the node's session tokens.
    pub fn is_session(&self) -> bool {
        self.aud.iter().any(|a| a == SESSION_AUDIENCE)
    }
}

/// `aud` as JSON has it: one string or an array of them.
mod audience {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
        match aud {
            [one] => s.serialize_str(one),
            many => s.collect_seq(many),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Option::<OneOrMany>::deserialize(d)? {
            None => Vec::new(),
            Some(OneOrMany::One(a)) => vec![a],
            Some(OneOrMany::Many(a)) => a,
        })
    }
}

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;

/// Checks tokens against the configured API keys.
#[derive(Clone, Debug)]
pub struct KeyStore {
    keys: BTreeMap<String, String>,
}

impl KeyStore {
    pub fn new(keys: BTreeMap<String, String>) -> Self {
        KeyStore { keys }
    }

    /// Validates a token for the LiveKit side (`/rtc`, Twirp): as
    /// [`KeyStore::verify_any`], and not a session token (those identify a
    /// person to the app; they never join a room or call the server API).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = self.verify_any(token)?;
        if claims.is_session() {
            return Err(TokenError::Invalid(
                "a session token cannot join a room or call the server API; ask the app for a room token".into(),
            ));
        }
        Ok(claims)
    }

    /// Validates a token of any use: issuer must be a configured key, HS256
    /// signature, `exp` required, `nbf` honoured, both with 60 s leeway.
    pub fn verify_any(&self, token: &str) -> Result<Claims, TokenError> {
        let issuer = unverified_issuer(token)?;
        let secret = self.keys.get(&issuer).ok_or(TokenError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iss"]);
        v.set_issuer(&[issuer.as_str()]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &v)
                .map_err(|e| {
                    use jsonwebtoken::errors::ErrorKind as K;
                    match e.kind() {
                        K::ExpiredSignature => TokenError::Expired,
                        K::ImmatureSignature => TokenError::NotYetValid,
                        K::InvalidSignature => TokenError::BadSignature,
                        K::InvalidAlgorithm => TokenError::WrongAlgorithm,
                        K::MissingRequiredClaim(c) => TokenError::MissingClaim(c.clone()),
                        _ => TokenError::Invalid(e.to_string()),
                    }
                })?;
        Ok(data.claims)
    }

    /// Signs claims with the given key's secret.
    pub fn sign(&self, key: &str, claims: &Claims) -> Result<String, Error> {
        let secret = self
            .keys
            .get(key)
            .ok_or_else(|| Error::UnknownSigningKey(key.to_string()))?;
        sign_with(secret, claims)
    }

    /// The same keys with secrets derived for one `purpose` (node-to-node
    /// calls): a token signed for it never verifies as a client's, and no
    /// client's token (not even a room admin's) verifies for it.
    pub fn derived(&self, purpose: &str) -> KeyStore {
        use sha2::{Digest, Sha256};
        let keys = self
            .keys
            .iter()
            .map(|(k, secret)| {
                let digest = Sha256::digest(format!("{purpose}\n{secret}").as_bytes());
                (
                    k.clone(),
                    base64::engine::general_purpose::STANDARD.encode(digest),
                )
            })
            .collect();
        KeyStore::new(keys)
    }

    /// The first configured key (the node signs its own tokens with it).
    pub fn first_key(&self) -> Option<&str> {
        self.keys.keys().next().map(String::as_str)
    }

    /// Mints a token for `identity` signed with the node's first key: the
    /// one place the node makes tokens for its users.
    pub fn mint(
        &self,
        identity: &str,
        name: &str,
        ttl: Duration,
        video: Option<VideoGrant>,
    ) -> Result<String, Error> {
        let key = self.first_key().ok_or(Error::NoApiKey)?;
        let mut claims = claims_for(key, identity, ttl, video);
        claims.name = name.to_string();
        self.sign(key, &claims)
    }

    /// Mints a session token for `identity`: no grant, `aud` =
    /// [`SESSION_AUDIENCE`], `jti` = `session` (the id the app revokes it by).
    pub fn mint_session(
        &self,
        identity: &str,
        name: &str,
        ttl: Duration,
        session: &str,
    ) -> Result<String, Error> {
        let key = self.first_key().ok_or(Error::NoApiKey)?;
        let mut claims = claims_for(key, identity, ttl, None);
        claims.name = name.to_string();
        claims.aud = vec![SESSION_AUDIENCE.to_string()];
        claims.jti = session.to_string();
        self.sign(key, &claims)
    }
}

/// Signs claims with a secret (HS256).
pub fn sign_with(secret: &str, claims: &Claims) -> Result<String, Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(Error::Signing)
}

/// Builds claims valid from now for `ttl`.
pub fn claims_for(
    api_key: &str,
    identity: &str,
    ttl: Duration,
    video: Option<VideoGrant>,
) -> Claims {
    let now = unix_now();
    Claims {
        iss: api_key.to_string(),
        sub: identity.to_string(),
        nbf: Some(now),
        iat: Some(now),
        exp: now + ttl.as_secs(),
        video,
        ..Claims::default()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    #[derive(Deserialize)]
    struct Iss {
        #[serde(default)]
        iss: String,
    }
    let iss: Iss = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if iss.iss.is_empty() {
        return Err(TokenError::NoIssuer);
    }
    Ok(iss.iss)
}

/// Reads a bearer token from an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> KeyStore {
        KeyStore::new(BTreeMap::from([(
            "devkey".to_string(),
            "secret".to_string(),
        )]))
    }

    #[test]
    fn derived_keys_and_client_keys_never_accept_each_others_tokens() {
        let s = store();
        let node = s.derived("node calls");
        let admin = Some(VideoGrant {
            room_admin: true,
            room: "r".into(),
            ..VideoGrant::default()
        });
        let client = s
            .sign(
                "devkey",
                &claims_for(
                    "devkey",
                    "nodo-node",
                    Duration::from_secs(60),
                    admin.clone(),
                ),
            )
            .expect("sign");
        let inner = node
            .sign(
                "devkey",
                &claims_for("devkey", "nodo-node", Duration::from_secs(60), admin),
            )
            .expect("sign");
        assert!(
            node.verify(&client).is_err(),
            "a client's room admin token is no node token"
        );
        assert!(s.verify(&inner).is_err(), "a node token is no client token");
        assert!(node.verify(&inner).is_ok());
        assert!(s.derived("other purpose").verify(&inner).is_err());
    }

    fn join_grant(room: &str) -> Option<VideoGrant> {
        Some(VideoGrant {
            room_join: true,
            room: room.into(),
            ..VideoGrant::default()
        })
    }

    #[test]
    fn round_trip() {
        let s = store();
        let c = claims_for(
            "devkey",
            "alice",
            Duration::from_secs(600),
            join_grant("r1"),
        );
        let t = s.sign("devkey", &c).expect("sign");
        let back = s.verify(&t).expect("verify");
        assert_eq!(back.identity(), "alice");
        assert_eq!(back.video().room, "r1");
        assert!(back.video().can_publish());
        assert!(back.video().can_publish_data());
        assert!(!back.video().can_update_own_metadata());
    }

    #[test]
    fn refusals_have_reasons() {
        let s = store();
        let mut c = claims_for("devkey", "a", Duration::from_secs(600), join_grant("r"));
        c.exp = unix_now() - 3600;
        let t = s.sign("devkey", &c).expect("sign");
        assert!(s.verify(&t).unwrap_err().to_string().contains("expired"));

        let c = claims_for("devkey", "a", Duration::from_secs(600), None);
        let t = sign_with("wrong", &c).expect("sign");
        assert!(s.verify(&t).unwrap_err().to_string().contains("signature"));

        let c = claims_for("otherkey", "a", Duration::from_secs(600), None);
        let t = sign_with("secret", &c).expect("sign");
        assert!(s.verify(&t).unwrap_err().to_string().contains("API key"));

        assert!(s.verify("not.a.jwt").is_err());
        assert!(s.verify("").is_err());
    }

    #[test]
    fn session_tokens_are_not_livekit_tokens() {
        let s = store();
        let t = s
            .mint_session("ana", "Ana", Duration::from_secs(600), "sess1")
            .expect("mint");
        let e = s
            .verify(&t)
            .expect_err("a session token on the LiveKit side");
        assert!(e.to_string().contains("session token"), "{e}");
        let c = s.verify_any(&t).expect("the app reads it");
        assert!(c.is_session());
        assert_eq!((c.identity(), c.jti.as_str()), ("ana", "sess1"));
        // A room token is no session.
        let r = s
            .mint("ana", "Ana", Duration::from_secs(600), join_grant("r"))
            .expect("mint");
        assert!(!s.verify(&r).expect("room token").is_session());
        // `aud` as an array, as other issuers write it.
        let mut c = claims_for("devkey", "a", Duration::from_secs(600), None);
        c.aud = vec!["x".into(), SESSION_AUDIENCE.into()];
        let t = s.sign("devkey", &c).expect("sign");
        assert!(t.split('.').nth(1).is_some());
        assert!(s.verify(&t).is_err());
        assert_eq!(s.verify_any(&t).expect("verify").aud.len(), 2);
    }

    #[test]
    fn exp_is_required_and_leeway_applies() {
        let s = store();
        // Expired 30 s ago: inside the 60 s leeway.
        let mut c = claims_for("devkey", "a", Duration::from_secs(0), None);
        c.exp = unix_now() - 30;
        assert!(s.verify(&s.sign("devkey", &c).expect("sign")).is_ok());
        // No exp at all.
        #[derive(Serialize)]
        struct NoExp<'a> {
            iss: &'a str,
            sub: &'a str,
        }
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &NoExp {
                iss: "devkey",
                sub: "a",
            },
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("encode");
        assert!(s.verify(&t).is_err());
        // Not valid for another hour.
        let mut c = claims_for("devkey", "a", Duration::from_secs(7200), None);
        c.nbf = Some(unix_now() + 3600);
        assert!(s
            .verify(&s.sign("devkey", &c).expect("sign"))
            .unwrap_err()
            .to_string()
            .contains("not valid yet"));
    }
}
