//! Certificates from files: loaded at start, reloaded when the files change
//! (checked every few seconds) or on SIGHUP, without touching open
//! connections. A reload that fails keeps the certificate in use and logs why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// What a certificate says, for the start-up line and the logs.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    /// The subject's common name, or the first DNS name.
    pub subject: String,
    /// DNS names it is valid for.
    pub names: Vec<String>,
    /// Unix seconds after which it is no longer valid.
    pub not_after: i64,
}

impl std::fmt::Display for CertInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days = (self.not_after - nodo_signaling::auth::unix_now() as i64) / 86_400;
        write!(f, "{} (valid {} more days)", self.subject, days)
    }
}

/// Reads what a DER certificate says.
pub fn describe(cert: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, x) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let names: Vec<String> = x
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let subject = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .or_else(|| names.first().cloned())
        .unwrap_or_else(|| "(no name)".into());
    Ok(CertInfo {
        subject,
        names,
        not_after: x.validity().not_after.timestamp(),
    })
}

/// Loads a certificate chain and its key; checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, CertInfo), String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{}: no certificate in it", cert.display()))?;
    let info = describe(leaf).map_err(|e| format!("{}: {e}", cert.display()))?;
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let certified = CertifiedKey::from_der(chain, der, &provider).map_err(|e| {
        format!(
            "{} and {} do not make a usable pair: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok((Arc::new(certified), info))
}

/// A certificate served from files, swapped in place on reload.
#[derive(Debug)]
pub struct FileCerts {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, CertInfo, Option<SystemTime>)>,
}

fn modified(cert: &Path, key: &Path) -> Option<SystemTime> {
    let c = std::fs::metadata(cert).and_then(|m| m.modified()).ok()?;
    let k = std::fs::metadata(key).and_then(|m| m.modified()).ok()?;
    Some(c.max(k))
}

impl FileCerts {
    /// Loads the files; an error names the file and what is wrong with it.
    pub fn open(cert: &Path, key: &Path) -> Result<Arc<FileCerts>, String> {
        let stamp = modified(cert, key);
        let (certified, info) = load(cert, key)?;
        Ok(Arc::new(FileCerts {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new((certified, info, stamp)),
        }))
    }

    /// What the served certificate says.
    pub fn info(&self) -> CertInfo {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            .clone()
    }

    /// Reloads the files; keeps the current certificate when they are not
    /// usable (and does not retry them until they change again).
    pub fn reload(&self) -> Result<CertInfo, String> {
        let stamp = modified(&self.cert, &self.key);
        let (certified, info) = load(&self.cert, &self.key).inspect_err(|_| {
            self.current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .2 = stamp;
        })?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (certified, info.clone(), stamp);
        Ok(info)
    }

    fn changed(&self) -> bool {
        let stamp = modified(&self.cert, &self.key);
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .2;
        stamp.is_some() && stamp != current
    }

    /// Reloads on file changes and on SIGHUP, until the process ends.
    pub fn watch(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<()>();
                let why = tokio::select! {
                    _ = tick.tick() => {
                        if !me.changed() {
                            continue;
                        }
                        "the files changed"
                    }
                    _ = hangup => "SIGHUP",
                };
                match me.reload() {
                    Ok(info) => tracing::info!("TLS certificate reloaded ({why}): {info}"),
                    Err(e) => tracing::error!(
                        "TLS certificate not reloaded ({why}), the previous one stays in use: {e}"
                    ),
                }
            }
        });
    }
}

impl ResolvesServerCert for FileCerts {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}
