//! str0m's crypto provider with a DTLS configuration built once.
//!
//! str0m's aws-lc-rs provider builds a fresh `dimpl::Config` for every peer
//! connection, and building one runs dimpl's self-test of its crypto
//! provider: a key exchange in each of X25519, P-256 and P-384 (six key pairs,
//! six ECDH) and an ECDSA verification per cipher suite. That was ~24 % of
//! the node's CPU while 1,000 participants joined a room (`perf`,
//! `bench/mass-join.sh`), against ~5 % for the DTLS handshakes themselves.
//! The configuration is the same for every connection (server cookies off:
//! ICE has verified the peer's address before DTLS starts; the MTU str0m
//! asks for), so it is built, and tested, once per MTU and shared. Everything
//! else (SRTP, hashes, STUN HMAC, certificates) is str0m's provider as is.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert};
use str0m::crypto::dtls::{
    DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::CryptoError;

/// The provider every peer connection of the node uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static DTLS: SharedConfigDtls = SharedConfigDtls {
        configs: Mutex::new(Vec::new()),
    };
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                dtls_provider: &DTLS,
                ..str0m::crypto::from_feature_flags()
            })
        })
        .clone()
}

/// dimpl over aws-lc-rs, with one `dimpl::Config` per MTU.
#[derive(Debug)]
struct SharedConfigDtls {
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
}

impl SharedConfigDtls {
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        // Held only to look up or insert; a panic while held (a bug) leaves
        // a list that is still valid.
        let mut configs = self.configs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, c)) = configs.iter().find(|(m, _)| *m == mtu) {
            return Ok(c.clone());
        }
        let mut builder = dimpl::Config::builder()
            .use_server_cookie(false)
            .with_crypto_provider(dimpl::crypto::aws_lc_rs::default_provider());
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))?,
        );
        configs.push((mtu, config.clone()));
        Ok(config)
    }
}

impl DtlsProvider for SharedConfigDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "unsupported DTLS version {other}"
                )))
            }
        };
        Ok(Box::new(Dtls(dtls)))
    }
}

/// One connection's DTLS state.
struct Dtls(dimpl::Dtls);

impl std::fmt::Debug for Dtls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dtls")
    }
}

impl DtlsInstance for Dtls {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_configuration_per_mtu_is_built_and_shared() {
        let dtls = SharedConfigDtls {
            configs: Mutex::new(Vec::new()),
        };
        let a = dtls.config(None).expect("config");
        let b = dtls.config(None).expect("config");
        assert!(Arc::ptr_eq(&a, &b));
        let c = dtls.config(Some(1200)).expect("config");
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.mtu(), 1200);
        assert!(!a.use_server_cookie());
        assert_eq!(dtls.configs.lock().expect("lock").len(), 2);
    }
}
