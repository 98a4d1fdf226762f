//! TLS with rustls (aws-lc-rs): the server certificate, optional client
//! certificate verification against a CA bundle, and reload without restart.
//!
//! A reloader task checks the files' modification times; a changed set is
//! parsed and, only if valid, becomes the configuration for new
//! connections. A broken file never replaces a working configuration.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds a rustls server configuration from the files.
pub fn load(tls: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| format!("{}: {e}", tls.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", tls.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", tls.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("{}: {e}", tls.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
            {
                let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no CA certificate found", ca.display()));
            }
            // Clients without a certificate may still present a token.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} / {}: {e}", tls.cert.display(), tls.key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn stamps(tls: &TlsConfig) -> Vec<Option<SystemTime>> {
    let mut out = vec![stamp(&tls.cert), stamp(&tls.key)];
    if let Some(ca) = &tls.client_ca {
        out.push(stamp(ca));
    }
    out
}

/// The current TLS configuration, shared by the accept loops.
pub type SharedTls = Arc<RwLock<Arc<ServerConfig>>>;

/// Watches the files and swaps in a new configuration when they change.
pub fn spawn_reloader(tls: TlsConfig, shared: SharedTls) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = stamps(&tls);
        let period = Duration::from_secs(tls.reload_seconds.max(1));
        loop {
            tokio::time::sleep(period).await;
            let now = stamps(&tls);
            if now == seen {
                continue;
            }
            match load(&tls) {
                Ok(config) => {
                    *shared.write().unwrap_or_else(|p| p.into_inner()) = config;
                    seen = now;
                    tracing::info!(cert = %tls.cert.display(), "TLS configuration reloaded");
                }
                Err(e) => {
                    // Keep serving with the old configuration; try again when
                    // the files change again.
                    seen = now;
                    tracing::error!(error = %e, "TLS files changed but do not load; keeping the previous configuration");
                }
            }
        }
    })
}

/// SHA-256 fingerprint (lowercase hex) of a certificate's DER bytes.
pub fn fingerprint(cert: &[u8]) -> String {
    crate::tokens::sha256_hex(cert)
}
