//! TLS on the listener (rustls with the aws-lc-rs provider reqwest already uses). The certificate
//! and key are read from PEM files at start and again whenever either file changes (checked every
//! `HOOKD_TLS_RELOAD_SECS`), so a renewed certificate is served without a restart.
//!
//! Owns the certificate in use. A file that cannot be read or does not match its key never
//! replaces a working certificate: the old one stays and the error is logged. It must never log
//! key material.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {source}")]
    Cert {
        path: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("cannot read the TLS certificate {path}: no CERTIFICATE in the file")]
    NoCert { path: String },
    /// Only an I/O error is kept as the source: a key parser's error may quote the file.
    #[error("cannot read the TLS key {path}: {reason}")]
    Key {
        path: String,
        reason: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("the TLS key does not fit the certificate: {source}")]
    Mismatch { source: rustls::Error },
}

/// The acceptor and the certificate it presents.
pub struct TlsListener {
    acceptor: TlsAcceptor,
    resolver: Arc<Reloading>,
    config: TlsConfig,
}

#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("not poisoned").clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Read and check the pair of files.
fn load(config: &TlsConfig) -> Result<CertifiedKey, TlsError> {
    let shown = |p: &Path| p.display().to_string();
    let certs = CertificateDer::pem_file_iter(&config.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: shown(&config.cert),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: shown(&config.cert),
        });
    }
    // The error of a key parser may quote the file; say only what kind of problem it is.
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| {
        let (reason, source) = match e {
            rustls_pki_types::pem::Error::Io(io) => (io.to_string(), Some(io)),
            rustls_pki_types::pem::Error::NoItemsFound => {
                ("no PRIVATE KEY in the file".into(), None)
            }
            _ => ("not a PEM private key".into(), None),
        };
        TlsError::Key {
            path: shown(&config.key),
            reason,
            source,
        }
    })?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|source| TlsError::Mismatch { source })
}

fn modified(config: &TlsConfig) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&config.cert)?, m(&config.key)?))
}

impl TlsListener {
    pub fn new(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let resolver = Arc::new(Reloading {
            current: RwLock::new(Arc::new(load(config)?)),
        });
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Mismatch { source })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            resolver,
            config: config.clone(),
        }))
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Read the files again; keep the current certificate if they are not usable.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load(&self.config)?;
        *self.resolver.current.write().expect("not poisoned") = Arc::new(fresh);
        Ok(())
    }

    /// Check the files every reload interval and reload when either changed.
    pub async fn watch(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut seen = modified(&self.config);
        let every = self.config.reload.max(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let now = modified(&self.config);
            if now.is_none() || now == seen {
                continue;
            }
            match self.reload() {
                Ok(()) => {
                    seen = now;
                    tracing::info!(cert = %self.config.cert.display(), "TLS certificate reloaded");
                }
                // Perhaps half written: try again next time, keep serving the old one.
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate not reloaded; keeping the current one")
                }
            }
        }
    }
}
