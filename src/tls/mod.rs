//! HTTPS: the node's own TLS, from certificate files or over ACME, on one
//! port that also carries TURN/TLS, plus the plain-HTTP port that redirects
//! to it and answers HTTP-01 challenges.

mod certs;
mod listener;
mod prefixed;
mod redirect;

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::ResolvesServerCert;
use rustls::ServerConfig;
use rustls_acme::caches::DirCache;
use rustls_acme::{AcmeConfig, ResolvesServerCertAcme, UseChallenge};

pub use certs::{describe, load, CertInfo, FileCerts};
pub use listener::{serve_https, HttpsContext, TlsStream, TurnStreams};
pub use prefixed::Prefixed;
pub use redirect::redirect_router;

use crate::config::TlsConfig;

/// The ALPN ids the HTTPS port speaks: HTTP/1.1, and TURN (RFC 7443).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// TURN over TLS, as RFC 7443 names it.
pub const ALPN_TURN: &[u8] = b"stun.turn";

/// Where the served certificate comes from, for the start-up line.
#[derive(Clone)]
pub enum CertSource {
    /// Files, reloaded on change.
    Files(Arc<FileCerts>),
    /// ACME for a domain; the certificate arrives asynchronously.
    Acme {
        domain: String,
        resolver: Arc<ResolvesServerCertAcme>,
    },
}

/// The node's TLS state.
#[derive(Clone)]
pub struct Tls {
    /// For HTTPS, WSS and TURN/TLS connections.
    pub server: Arc<ServerConfig>,
    /// For ACME TLS-ALPN-01 validation connections.
    pub challenge: Option<Arc<ServerConfig>>,
    pub source: CertSource,
}

impl Tls {
    /// Loads the certificate files, or starts obtaining (and renewing) a
    /// certificate over ACME in the background. Errors name what is wrong.
    pub fn start(config: &TlsConfig, data_dir: &Path) -> Result<Tls, String> {
        install_crypto_provider();
        if !config.cert_file.is_empty() {
            let files = FileCerts::open(Path::new(&config.cert_file), Path::new(&config.key_file))?;
            files.watch();
            let server = server_config(files.clone());
            return Ok(Tls {
                server,
                challenge: None,
                source: CertSource::Files(files),
            });
        }
        let domain = config.domain.clone();
        let mut acme = if config.acme_ca_file.is_empty() {
            AcmeConfig::new([domain.as_str()])
        } else {
            AcmeConfig::new_with_client_config(
                [domain.as_str()],
                acme_client(&config.acme_ca_file)?,
            )
        }
        .directory(&config.acme_directory)
        .challenge_type(if config.acme_challenge == "http-01" {
            UseChallenge::Http01
        } else {
            UseChallenge::TlsAlpn01
        });
        if !config.acme_email.is_empty() {
            let contact = if config.acme_email.starts_with("mailto:") {
                config.acme_email.clone()
            } else {
                format!("mailto:{}", config.acme_email)
            };
            acme = acme.contact_push(contact);
        }
        let mut state = acme.cache(DirCache::new(data_dir.join("acme"))).state();
        let resolver = state.resolver();
        let challenge = state.challenge_rustls_config();
        let directory = config.acme_directory.clone();
        let name = domain.clone();
        tokio::spawn(async move {
            // The state machine orders, caches and renews (well before
            // expiry), backing off after failures; each step is logged here.
            while let Some(event) = state.next().await {
                match event {
                    Ok(ok) => tracing::info!(domain = %name, "ACME: {ok:?}"),
                    Err(e) => tracing::error!(
                        domain = %name, %directory,
                        "ACME failed, retrying with backoff (the node keeps serving): {e}"
                    ),
                }
            }
        });
        Ok(Tls {
            server: server_config(resolver.clone()),
            challenge: Some(challenge),
            source: CertSource::Acme { domain, resolver },
        })
    }

    /// The certificate state, for the start-up line.
    pub fn state(&self) -> String {
        match &self.source {
            CertSource::Files(f) => format!("files:{}", f.info()),
            CertSource::Acme { domain, .. } => format!("acme:{domain}"),
        }
    }

    /// The DNS name clients reach this certificate under: the ACME domain,
    /// or the certificate file's first name.
    pub fn host(&self) -> String {
        match &self.source {
            CertSource::Files(f) => {
                let info = f.info();
                info.names.first().cloned().unwrap_or(info.subject)
            }
            CertSource::Acme { domain, .. } => domain.clone(),
        }
    }

    /// The ACME resolver, whose HTTP-01 tokens the redirect port answers.
    pub fn acme_resolver(&self) -> Option<Arc<ResolvesServerCertAcme>> {
        match &self.source {
            CertSource::Acme { resolver, .. } => Some(resolver.clone()),
            CertSource::Files(_) => None,
        }
    }
}

/// rustls needs one process-wide crypto provider; the node uses aws-lc-rs
/// (which str0m already builds).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec(), ALPN_TURN.to_vec()];
    Arc::new(config)
}

/// A TLS client trusting the CA(s) in `ca_file` (a private ACME directory).
fn acme_client(ca_file: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("cannot read {ca_file}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{ca_file}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{ca_file}: no certificate in it"));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("{ca_file}: not a usable CA certificate: {e}"))?;
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
