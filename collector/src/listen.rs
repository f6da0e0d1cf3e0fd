//! Listeners that a flood of connections cannot turn against the collector.
//!
//! A failed `accept` (most often `EMFILE`: out of file descriptors) leaves
//! the connection in the kernel's queue, so retrying at once fails again at
//! once: a loop that does so spins a core and writes a warning per try. Both
//! of the collector's listeners wait after a failure instead, with a delay
//! that grows to [`AcceptBackoff::CAP`] and resets on the next success, and
//! log through a [`RateLimitedLog`].

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;

/// Delay after a failed `accept`: doubling from [`AcceptBackoff::BASE`] to
/// [`AcceptBackoff::CAP`], back to the start after a success.
#[derive(Debug, Clone, Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    /// First delay.
    pub const BASE: Duration = Duration::from_millis(10);
    /// Longest delay.
    pub const CAP: Duration = Duration::from_secs(1);

    /// The delay before the next `accept`, after one more failure.
    pub fn failed(&mut self) -> Duration {
        let d = Self::BASE.saturating_mul(1u32 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        d.min(Self::CAP)
    }

    /// An `accept` succeeded.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Lets one log line through per period and counts the ones held back.
#[derive(Debug)]
pub struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        RateLimitedLog {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written
    /// at `now`, else `None` (and the line is counted as held back).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// Whether no line was let through for a period before `now` (forgetting
    /// it loses at most the count of lines held back).
    pub fn idle(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every)
    }
}

/// At most one "accept failed" line per listener in this period.
pub const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// The next connection of a listener that serves at most `permits` at once:
/// at the cap it waits for one to end before accepting another; a failed
/// accept backs off as `errors` says. `None` once `cancel` fires.
pub async fn next_connection(
    listener: &tokio::net::TcpListener,
    permits: &std::sync::Arc<tokio::sync::Semaphore>,
    errors: &mut AcceptErrors,
    cancel: &tokio_util::sync::CancellationToken,
) -> Option<(
    tokio::sync::OwnedSemaphorePermit,
    tokio::net::TcpStream,
    std::net::SocketAddr,
)> {
    let permit = tokio::select! {
        _ = cancel.cancelled() => return None,
        p = permits.clone().acquire_owned() => p.ok()?,
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    errors.accepted();
                    return Some((permit, stream, peer));
                }
                Err(e) => {
                    let delay = errors.failed(&e);
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            },
        }
    }
}

/// State of one listener's accept loop: its backoff, its log and its counter.
#[derive(Debug)]
pub struct AcceptErrors {
    listener: &'static str,
    backoff: AcceptBackoff,
    log: RateLimitedLog,
    counter: Counter,
}

impl AcceptErrors {
    /// For the listener named `listener` (in logs), counting into `counter`.
    pub fn new(listener: &'static str, counter: Counter) -> Self {
        AcceptErrors {
            listener,
            backoff: AcceptBackoff::default(),
            log: RateLimitedLog::new(ACCEPT_LOG_EVERY),
            counter,
        }
    }

    /// A connection was accepted.
    pub fn accepted(&mut self) {
        self.backoff.reset();
    }

    /// Counts and (rate-limited) logs `error`; returns how long to wait
    /// before the next `accept`.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.counter.inc();
        let delay = self.backoff.failed();
        if let Some(suppressed) = self.log.allow(Instant::now()) {
            tracing::warn!(
                listener = self.listener,
                %error,
                retry_in_ms = delay.as_millis() as u64,
                suppressed,
                "accept failed"
            );
        }
        delay
    }
}

/// The gRPC listener's connections, pausing after a failed `accept` (tonic
/// itself retries at once). Ends when `incoming` does.
pub fn with_backoff<S>(
    incoming: S,
    errors: AcceptErrors,
) -> impl Stream<Item = std::io::Result<TcpStream>> + Send + 'static
where
    S: Stream<Item = std::io::Result<TcpStream>> + Send + Unpin + 'static,
{
    futures::stream::unfold(
        (incoming, errors),
        |(mut incoming, mut errors)| async move {
            loop {
                match incoming.next().await? {
                    Ok(s) => {
                        errors.accepted();
                        return Some((Ok(s), (incoming, errors)));
                    }
                    Err(e) => {
                        let delay = errors.failed(&e);
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        },
    )
}

/// At most one "TLS handshake refused" line per peer address in this period.
pub const HANDSHAKE_LOG_EVERY: Duration = Duration::from_secs(60);
/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once; further connections wait in the kernel's queue.
pub const MAX_HANDSHAKES: usize = 256;
/// Peer addresses whose log state is kept; beyond it, quiet ones are forgotten.
const MAX_PEERS_TRACKED: usize = 4096;

/// Refused TLS handshakes: counted per reason, logged with the peer's
/// address and reason at most once per [`HANDSHAKE_LOG_EVERY`] per address
/// (with the number held back since).
#[derive(Debug)]
pub struct HandshakeRefusals {
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    logs: std::collections::HashMap<std::net::IpAddr, RateLimitedLog>,
}

impl HandshakeRefusals {
    /// Counting into `metrics`.
    pub fn new(metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        HandshakeRefusals {
            metrics,
            logs: std::collections::HashMap::new(),
        }
    }

    /// The handshake with `peer` failed with `error`.
    pub fn refused(&mut self, peer: Option<std::net::SocketAddr>, error: &std::io::Error) {
        let reason = siaga_proto::tls::refusal_reason(error);
        self.metrics
            .tls_handshakes_refused
            .get_or_create(&crate::metrics::ReasonLabel { reason })
            .inc();
        if reason == "closed" {
            // The peer hung up without a word (a port check, a balancer's
            // probe): nothing refused and nothing to act on, so it neither
            // warns nor uses up the peer's line of the minute.
            tracing::debug!(?peer, %error, "connection closed during the TLS handshake");
            return;
        }
        let now = Instant::now();
        let ip = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.ip());
        if self.logs.len() >= MAX_PEERS_TRACKED && !self.logs.contains_key(&ip) {
            self.logs.retain(|_, l| !l.idle(now));
        }
        let log = self
            .logs
            .entry(ip)
            .or_insert_with(|| RateLimitedLog::new(HANDSHAKE_LOG_EVERY));
        if let Some(suppressed) = log.allow(now) {
            let peer = peer.map_or("unknown".to_string(), |p| p.to_string());
            tracing::warn!(
                %peer,
                reason,
                %error,
                suppressed,
                "TLS handshake refused"
            );
        }
    }
}

/// The rustls configuration of the gRPC listener: the collector's
/// certificate, client certificates required and checked against `ca`, h2.
pub fn server_tls(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> Result<std::sync::Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the server certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("the server key: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        let ca = ca.map_err(|e| format!("the CA certificate: {e}"))?;
        roots
            .add(ca)
            .map_err(|e| format!("the CA certificate: {e}"))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .map_err(|e| format!("client verifier: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("the server certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(std::sync::Arc::new(config))
}

/// The TLS connections of `incoming`: each handshake runs beside the others
/// (at most [`MAX_HANDSHAKES`] at once, each within [`HANDSHAKE_TIMEOUT`]);
/// a failed one is counted and logged by `refusals` and left out.
pub fn tls_handshakes<S>(
    incoming: S,
    config: std::sync::Arc<rustls::ServerConfig>,
    mut refusals: HandshakeRefusals,
) -> impl Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>> + Send + 'static
where
    S: Stream<Item = std::io::Result<TcpStream>> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    incoming
        .map(move |conn| {
            let acceptor = acceptor.clone();
            async move {
                let tcp = conn.map_err(|e| (None, e))?;
                let peer = tcp.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => Ok(tls),
                    Ok(Err(e)) => Err((peer, e)),
                    Err(_) => Err((
                        peer,
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"),
                    )),
                }
            }
        })
        .buffer_unordered(MAX_HANDSHAKES)
        .filter_map(move |r| {
            let out = match r {
                Ok(tls) => Some(Ok(tls)),
                Err((peer, e)) => {
                    refusals.refused(peer, &e);
                    None
                }
            };
            std::future::ready(out)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = AcceptBackoff::default();
        let ms: Vec<u128> = (0..10).map(|_| b.failed().as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        for _ in 0..100 {
            assert_eq!(b.failed(), AcceptBackoff::CAP);
        }
        b.reset();
        assert_eq!(b.failed(), AcceptBackoff::BASE);
    }

    #[test]
    fn a_peer_that_hangs_up_is_counted_but_keeps_its_line_for_a_refusal() {
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        let mut refusals = HandshakeRefusals::new(metrics.clone());
        let peer = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 40000)));
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "tls handshake eof");
        refusals.refused(peer, &eof);
        assert!(refusals.logs.is_empty(), "a hang-up takes no line");
        let expired = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        refusals.refused(peer, &expired);
        assert_eq!(refusals.logs.len(), 1, "a refusal does");
        let text = metrics.encode();
        for reason in ["closed", "expired"] {
            let line =
                format!("siaga_collector_tls_handshakes_refused_total{{reason=\"{reason}\"}} 1");
            assert!(text.contains(&line), "{reason}: {text}");
        }
    }

    #[test]
    fn one_line_per_period_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut log = RateLimitedLog::new(Duration::from_secs(10));
        assert_eq!(log.allow(t0), Some(0));
        for ms in [1, 10, 5_000, 9_999] {
            assert_eq!(log.allow(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.allow(t0 + Duration::from_secs(10)), Some(4));
        assert_eq!(log.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(log.allow(t0 + Duration::from_secs(30)), Some(1));
    }
}
