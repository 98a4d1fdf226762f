//! TLS with rustls (aws-lc-rs): the server certificate, optional client
//! certificate verification against a CA bundle, and reload without restart.
//!
//! A reloader task checks the files' modification times; a changed set is
//! parsed and, only if valid, becomes the configuration for new
//! connections. A broken file never replaces a working configuration.
//! Each outcome is counted ([`ReloadCounters`], `stele_tls_reloads_total`
//! in `/metrics`) and logged, so that a change that did not take effect is
//! seen, not only one that did.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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

/// What identifies one version of a file: its modification time, and also
/// its inode and length, because a file replaced within the file system's
/// timestamp granularity (a few milliseconds), or copied with its old time
/// kept (`cp -p`, `rsync -a`), has the same modification time.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.ino(), meta.len()))
}

fn stamps(tls: &TlsConfig) -> Vec<Stamp> {
    let mut out = vec![stamp(&tls.cert), stamp(&tls.key)];
    if let Some(ca) = &tls.client_ca {
        out.push(stamp(ca));
    }
    out
}

/// The current TLS configuration, shared by the accept loops.
pub type SharedTls = Arc<RwLock<Arc<ServerConfig>>>;

/// What the reloader did each time it saw the files change.
#[derive(Debug, Default)]
pub struct ReloadCounters {
    /// The changed files loaded and became the configuration for new
    /// connections.
    pub loaded: AtomicU64,
    /// The changed files did not load; the previous configuration stays.
    pub failed: AtomicU64,
}

/// Watches the files and swaps in a new configuration when they change,
/// counting each outcome in `counters`.
pub fn spawn_reloader(
    tls: TlsConfig,
    shared: SharedTls,
    counters: Arc<ReloadCounters>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = stamps(&tls);
        let period = Duration::from_secs(tls.reload_seconds.max(1));
        loop {
            tokio::time::sleep(period).await;
            let now = stamps(&tls);
            if now == seen {
                continue;
            }
            let loaded = load(&tls);
            if stamps(&tls) != now {
                // A file changed while it was read: what loaded (or failed)
                // may mix two versions. Look again at the next tick.
                continue;
            }
            match loaded {
                Ok(config) => {
                    *shared.write().unwrap_or_else(|p| p.into_inner()) = config;
                    seen = now;
                    counters.loaded.fetch_add(1, Relaxed);
                    tracing::info!(cert = %tls.cert.display(), "TLS configuration reloaded");
                }
                Err(e) => {
                    // Keep serving with the old configuration; try again when
                    // the files change again.
                    seen = now;
                    counters.failed.fetch_add(1, Relaxed);
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
