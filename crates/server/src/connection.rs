//! One client connection: the TLS handshake, HTTP/1 or HTTP/2 over it
//! (hyper-util's auto builder), and the time limits that keep a client
//! that stops sending from holding one of the `max_connections` slots.
//!
//! - A new connection must finish its TLS handshake and begin its first
//!   request within `timeouts.header_read_seconds` of being accepted.
//! - On HTTP/1, hyper also bounds each request's head by that time, which
//!   includes the wait for the next request on a kept-alive connection.
//! - A connection with no request in flight that reads and writes nothing
//!   for `timeouts.idle_seconds` is closed gracefully (HTTP/2: GOAWAY);
//!   one still open a whole idle period after that is dropped.
//! - Server shutdown closes every connection gracefully: requests in
//!   flight finish first.
//!
//! Request bodies have their own deadline, enforced by the handlers
//! (`api::read_body`, 408). This module knows nothing of routes or the log.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::Service as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::api::ConnInfo;
use crate::tls;

/// The time limits of one connection (from `[timeouts]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionTimeouts {
    /// For the TLS handshake and the first request to begin; on HTTP/1
    /// also for every request head.
    pub header_read: Duration,
    /// Without a request in flight and without a byte moving.
    pub idle: Duration,
}

impl ConnectionTimeouts {
    pub(crate) fn from_config(timeouts: &crate::config::Timeouts) -> ConnectionTimeouts {
        ConnectionTimeouts {
            header_read: Duration::from_secs(timeouts.header_read_seconds),
            idle: Duration::from_secs(timeouts.idle_seconds),
        }
    }
}

/// Serves one accepted connection until it closes, it times out, or
/// `stop` turns true (then it finishes its requests in flight first).
pub(crate) async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    router: axum::Router,
    tls: Option<tls::SharedTls>,
    timeouts: ConnectionTimeouts,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    match tls {
        Some(shared) => {
            let config = shared.read().unwrap_or_else(|p| p.into_inner()).clone();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let handshake = tokio::time::timeout_at(
                activity.opened + timeouts.header_read,
                acceptor.accept(stream),
            )
            .await;
            let Ok(Ok(tls_stream)) = handshake else {
                tracing::debug!(%remote, "TLS handshake failed or timed out");
                return;
            };
            let client_cert = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| tls::fingerprint(cert.as_ref()));
            let info = ConnInfo {
                remote,
                client_cert,
            };
            serve_http(tls_stream, info, router, timeouts, activity, stop).await;
        }
        None => {
            let info = ConnInfo {
                remote,
                client_cert: None,
            };
            serve_http(stream, info, router, timeouts, activity, stop).await;
        }
    }
}

/// HTTP/1 or HTTP/2 over `io`, watched for idleness and for `stop`.
async fn serve_http<T>(
    io: T,
    info: ConnInfo,
    router: axum::Router,
    timeouts: ConnectionTimeouts,
    activity: Arc<Activity>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = info.remote;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client may shut down its sending side once its request is out
    // (half-close) and still wait for the answer; without this the
    // connection would be dropped at that EOF, and an event it carried
    // could be stored with its receipt never sent.
    builder
        .http1()
        .timer(TokioTimer::new())
        .half_close(true)
        .header_read_timeout(timeouts.header_read);
    builder.http2().timer(TokioTimer::new());
    let inner = hyper_util::service::TowerToHyperService::new(router.layer(axum::Extension(info)));
    // Counts the requests in flight: a connection is idle only without one.
    let counter = activity.clone();
    let service = hyper::service::service_fn(move |request| {
        let in_flight = RequestInFlight::begin(&counter);
        let response = inner.call(request);
        async move {
            let response = response.await;
            drop(in_flight);
            response
        }
    });
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: activity.clone(),
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    let mut connection = std::pin::pin!(connection);
    // Set once the connection has been asked to close.
    let mut closing = false;
    if *stop.borrow_and_update() {
        connection.as_mut().graceful_shutdown();
        closing = true;
    }
    loop {
        // While a request is in flight there is no idle deadline; look
        // again an idle period later.
        let check_at = activity
            .idle_deadline(&timeouts)
            .unwrap_or_else(|| Instant::now() + timeouts.idle);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep_until(check_at) => {
                let idle = activity
                    .idle_deadline(&timeouts)
                    .is_some_and(|deadline| deadline <= Instant::now());
                if !idle {
                    continue;
                }
                if closing {
                    // Asked to close an idle period ago, and still idle:
                    // nothing is in flight, so nothing is lost.
                    tracing::debug!(%remote, "idle connection did not close; dropping it");
                    return;
                }
                tracing::debug!(%remote, "closing idle connection");
                connection.as_mut().graceful_shutdown();
                closing = true;
                // The close gets an idle period of its own.
                activity.closing();
            }
        }
    }
}

/// What a connection has done, shared by its IO and its service.
#[derive(Debug)]
struct Activity {
    /// When the connection was accepted.
    opened: Instant,
    /// Milliseconds after `opened` of the last byte read or written, or of
    /// the end of the last request.
    last_millis: AtomicU64,
    /// Requests whose response has not been produced yet.
    in_flight: AtomicUsize,
    /// Whether any request has begun.
    started: AtomicBool,
}

impl Activity {
    fn new(opened: Instant) -> Activity {
        Activity {
            opened,
            last_millis: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let millis = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(millis, Relaxed);
    }

    /// Restarts the idle clock, and lifts the first-request deadline, for
    /// a connection that has been asked to close.
    fn closing(&self) {
        self.started.store(true, Relaxed);
        self.touch();
    }

    /// When the connection counts as idle if nothing happens meanwhile:
    /// none while a request is in flight; before the first request, the
    /// header deadline counted from acceptance (bytes trickling in do not
    /// extend it); afterwards an idle period after the last activity.
    fn idle_deadline(&self, timeouts: &ConnectionTimeouts) -> Option<Instant> {
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        if !self.started.load(Relaxed) {
            return Some(self.opened + timeouts.header_read);
        }
        let last = Duration::from_millis(self.last_millis.load(Relaxed));
        Some(self.opened + last + timeouts.idle)
    }
}

/// One request in flight, from the call of the service to its response.
struct RequestInFlight(Arc<Activity>);

impl RequestInFlight {
    fn begin(activity: &Arc<Activity>) -> RequestInFlight {
        activity.started.store(true, Relaxed);
        activity.in_flight.fetch_add(1, Relaxed);
        RequestInFlight(activity.clone())
    }
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        // The idle period starts when the last response is ready.
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// An IO stream that records when bytes last moved.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TIMEOUTS: ConnectionTimeouts = ConnectionTimeouts {
        header_read: Duration::from_secs(2),
        idle: Duration::from_secs(5),
    };

    /// Before the first request the deadline counts from acceptance, and
    /// activity does not move it; a request in flight removes it; after a
    /// request, the idle period counts from the last activity.
    #[test]
    fn idle_deadline_follows_requests_and_activity() {
        let opened = Instant::now() - Duration::from_secs(1);
        let activity = Arc::new(Activity::new(opened));
        let first_request_by = Some(opened + TIMEOUTS.header_read);
        assert_eq!(activity.idle_deadline(&TIMEOUTS), first_request_by);
        activity.touch();
        assert_eq!(activity.idle_deadline(&TIMEOUTS), first_request_by);
        let request = RequestInFlight::begin(&activity);
        assert_eq!(activity.idle_deadline(&TIMEOUTS), None);
        let before = Instant::now();
        drop(request);
        let after = Instant::now();
        let deadline = activity.idle_deadline(&TIMEOUTS).unwrap();
        // Activity is kept in whole milliseconds.
        assert!(deadline + Duration::from_millis(1) >= before + TIMEOUTS.idle);
        assert!(deadline <= after + TIMEOUTS.idle);
    }
}
