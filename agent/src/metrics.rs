//! The agent's Prometheus metrics and the endpoint that serves them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::{Backoff, Jitter};
use crate::error::MetricsError;

/// Labels of the per-kind probe counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// "icmp", "snmp", "trap", ...
    pub kind: String,
    /// "ok" or "error" (the probe could not run, or got no answer at all).
    pub outcome: String,
}

/// Labels of the per-device counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    /// Inventory device id.
    pub device: String,
}

/// Labels of the per-collector uplink gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectorLabels {
    /// The collector's URL, as listed in `agent.toml`.
    pub url: String,
}

/// Labels of the per-cycle metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CycleLabels {
    /// "icmp" or "snmp".
    pub probe: String,
}

/// Bounds (seconds) of the cycle lateness histogram: fine below 100 ms,
/// where a cycle on time lies, coarse above.
pub const LATENESS_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

fn lateness_histogram() -> Histogram {
    Histogram::new(LATENESS_BUCKETS)
}

/// How late each probe cycle started, per probe kind.
#[derive(Clone, Debug)]
pub struct CycleLateness(pub Family<CycleLabels, Histogram, fn() -> Histogram>);

impl Default for CycleLateness {
    fn default() -> Self {
        Self(Family::new_with_constructor(lateness_histogram))
    }
}

/// Every metric of the agent. Cheap to clone: all handles share their values.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Samples committed to the spool.
    pub samples_spooled: Counter,
    /// Samples the collector acknowledged (and the spool deleted).
    pub samples_acked: Counter,
    /// Samples dropped from the spool because of its bounds (persisted total).
    pub samples_dropped: Counter,
    /// Samples in the spool, unacknowledged.
    pub spool_depth: Gauge,
    /// Bytes of the samples in the spool.
    pub spool_bytes: Gauge,
    /// 1 while the stream to the collector is up.
    pub stream_connected: Gauge,
    /// Connection attempts after the first.
    pub reconnects: Counter,
    /// Streams opened on another collector than the one streamed to before.
    pub uplink_failovers: Counter,
    /// Per listed collector: 1 for the one the stream is on, else 0.
    pub uplink_collector: Family<CollectorLabels, Gauge>,
    /// Probes run, by kind and outcome.
    pub probes: Family<ProbeLabels, Counter>,
    /// SNMP answers dropped per device: from another address or port, with
    /// an id no request of ours carried, or failing the message's checks.
    pub snmp_forged_answers: Family<DeviceLabels, Counter>,
    /// Traps refused per device: not authenticated as that device.
    pub traps_refused: Family<DeviceLabels, Counter>,
    /// Traps dropped per device by the storm limit (summarised in one event).
    pub traps_suppressed: Family<DeviceLabels, Counter>,
    /// Failed `accept`s on the metrics listener (e.g. out of file descriptors).
    pub metrics_accept_errors: Counter,
    /// Samples cut (or replaced by a marker) to the sample size limit.
    pub samples_cut: Counter,
    /// Samples held in memory because the spool cannot write.
    pub samples_in_memory: Gauge,
    /// Size of the spool file.
    pub spool_file_bytes: Gauge,
    /// 1 while the spool writes to disk, 0 while it keeps samples in memory.
    pub spool_writable: Gauge,
    /// Spool writes that failed (each one puts the spool in memory).
    pub spool_write_errors: Counter,
    /// Samples given up after the collector refused them even alone.
    pub samples_undeliverable: Counter,
    /// Samples the collector refused (acknowledged as refused).
    pub samples_refused: Counter,
    /// How late each cycle started against its rhythm (seconds).
    pub cycle_lateness: CycleLateness,
    /// Cycles that ran past the start of the next one, by probe kind.
    pub cycle_overruns: Family<CycleLabels, Counter>,
}

impl Metrics {
    /// Counts one probe of `kind`.
    pub fn probe(&self, kind: &str, ok: bool) {
        self.probes
            .get_or_create(&ProbeLabels {
                kind: kind.to_string(),
                outcome: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    /// The lateness histogram and overrun counter of the `probe` cycle.
    pub fn cycle(&self, probe: &str) -> (Histogram, Counter) {
        let labels = CycleLabels {
            probe: probe.to_string(),
        };
        (
            self.cycle_lateness.0.get_or_create(&labels).clone(),
            self.cycle_overruns.get_or_create(&labels).clone(),
        )
    }

    /// The counter of `family` for `device`.
    pub fn of(family: &Family<DeviceLabels, Counter>, device: &str) -> Counter {
        family
            .get_or_create(&DeviceLabels {
                device: device.to_string(),
            })
            .clone()
    }

    /// A registry holding every metric, prefixed `siaga_agent_`.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("siaga_agent");
        r.register(
            "samples_spooled",
            "Samples committed to the spool",
            self.samples_spooled.clone(),
        );
        r.register(
            "samples_acked",
            "Samples acknowledged by the collector",
            self.samples_acked.clone(),
        );
        r.register(
            "samples_dropped",
            "Samples dropped because the spool was full or too old",
            self.samples_dropped.clone(),
        );
        r.register(
            "spool_depth",
            "Unacknowledged samples in the spool",
            self.spool_depth.clone(),
        );
        r.register(
            "spool_bytes",
            "Bytes of unacknowledged samples in the spool",
            self.spool_bytes.clone(),
        );
        r.register(
            "stream_connected",
            "1 while the stream to the collector is up",
            self.stream_connected.clone(),
        );
        r.register(
            "reconnects",
            "Reconnection attempts to the collector",
            self.reconnects.clone(),
        );
        r.register(
            "uplink_failovers",
            "Streams opened on another collector of the list than the one streamed to before",
            self.uplink_failovers.clone(),
        );
        r.register(
            "uplink_collector",
            "1 for the collector the stream is on, 0 for the other collectors listed",
            self.uplink_collector.clone(),
        );
        r.register(
            "samples_cut",
            "Samples cut or replaced by a marker because they were over the sample size limit",
            self.samples_cut.clone(),
        );
        r.register(
            "samples_in_memory",
            "Samples held in memory because the spool cannot write",
            self.samples_in_memory.clone(),
        );
        r.register(
            "spool_file_bytes",
            "Size of the spool file (bounded by spool.max_bytes)",
            self.spool_file_bytes.clone(),
        );
        r.register(
            "spool_writable",
            "1 while the spool writes to disk, 0 while samples are kept in memory",
            self.spool_writable.clone(),
        );
        r.register(
            "spool_write_errors",
            "Spool writes that failed",
            self.spool_write_errors.clone(),
        );
        r.register(
            "samples_undeliverable",
            "Samples given up after the collector refused the stream that carried them alone",
            self.samples_undeliverable.clone(),
        );
        r.register(
            "samples_refused",
            "Samples the collector acknowledged as refused",
            self.samples_refused.clone(),
        );
        r.register(
            "probes",
            "Probes run, by kind and outcome",
            self.probes.clone(),
        );
        r.register(
            "snmp_forged_answers",
            "SNMP answers dropped per device (wrong source, unknown request id, failed checks)",
            self.snmp_forged_answers.clone(),
        );
        r.register(
            "traps_refused",
            "Traps refused per device (not authenticated as that device)",
            self.traps_refused.clone(),
        );
        r.register(
            "traps_suppressed",
            "Traps dropped per device by the trap-storm limit",
            self.traps_suppressed.clone(),
        );
        r.register(
            "metrics_accept_errors",
            "Failed accepts on the metrics listener",
            self.metrics_accept_errors.clone(),
        );
        r.register(
            "cycle_lateness_seconds",
            "How late each probe cycle started against its rhythm, by probe kind",
            self.cycle_lateness.0.clone(),
        );
        r.register(
            "cycle_overruns",
            "Probe cycles that ran past the start of the next one, by probe kind",
            self.cycle_overruns.clone(),
        );
        r
    }
}

/// How many scrapes may be connected at once. Prometheus keeps one; beyond
/// this the listener stops accepting and further connections wait in the
/// kernel's queue, holding none of the agent's file descriptors.
pub const MAX_CONNECTIONS: usize = 16;
/// A client must have sent its request headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, idle or not (a scrape takes
/// milliseconds; Prometheus opens a new connection when it needs one).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Binds `addr`, writes the bound address to `<data_dir>/metrics.addr` and
/// returns the task serving `/metrics` until `cancel` fires.
///
/// The listener cannot starve the agent: at most [`MAX_CONNECTIONS`]
/// connections, each with a header-read timeout and a lifetime, and after a
/// failed `accept` (e.g. `EMFILE`, out of file descriptors) it waits with a
/// growing delay instead of retrying at once, logging at most one line per
/// [`RateLimitedLog`] period.
pub async fn serve(
    addr: SocketAddr,
    data_dir: &Path,
    metrics: &Metrics,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    let listener = bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let path = data_dir.join("metrics.addr");
    std::fs::write(&path, format!("{bound}\n"))
        .map_err(|source| MetricsError::AddrFile { path, source })?;
    info!(%bound, "metrics endpoint listening");
    let registry = Arc::new(metrics.registry());
    let accept_errors = metrics.metrics_accept_errors.clone();
    let task = tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut backoff = accept_backoff();
        let mut log = RateLimitedLog::new(ACCEPT_LOG_EVERY);
        loop {
            // At the cap, wait for a connection to end before accepting.
            let permit = tokio::select! {
                () = cancel.cancelled() => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                () = cancel.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => {
                        backoff.reset();
                        x
                    }
                    Err(e) => {
                        accept_errors.inc();
                        let delay = backoff.next_delay();
                        if let Some(suppressed) = log.allow(Instant::now()) {
                            warn!(
                                error = %e,
                                retry_in_ms = delay.as_millis() as u64,
                                suppressed,
                                "metrics accept failed"
                            );
                        }
                        tokio::select! {
                            () = cancel.cancelled() => break,
                            () = tokio::time::sleep(delay) => {}
                        }
                        continue;
                    }
                },
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let registry = registry.clone();
                    async move { Ok::<_, Infallible>(respond(&req, &registry)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(MAX_REQUEST_BYTES)
                    .serve_connection(TokioIo::new(stream), svc);
                match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(%peer, error = %e, "metrics connection ended"),
                    Err(_) => debug!(%peer, "metrics connection closed after its lifetime"),
                }
            });
        }
    });
    Ok((bound, task))
}

/// Connections the kernel queues while the listener is at its cap (they
/// hold no descriptor of ours until accepted).
const BACKLOG: u32 = 1024;

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Largest request head the endpoint reads (a scrape's is a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// At most one "accept failed" line per this period.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// After a failed `accept`: 10 ms growing to 1 s. Without a pause a
/// listener out of file descriptors retries at once, forever, on a full core.
fn accept_backoff() -> Backoff {
    Backoff::new(
        Duration::from_millis(10),
        Duration::from_secs(1),
        Jitter::Full,
    )
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
}

fn respond<B>(req: &Request<B>, registry: &Registry) -> Response<Full<Bytes>> {
    let mut builder = Response::builder();
    let body = if req.uri().path() == "/metrics" {
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, registry) {
            Ok(()) => {
                builder = builder.header(
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                );
                text
            }
            Err(e) => {
                builder = builder.status(500);
                format!("encoding failed: {e}\n")
            }
        }
    } else {
        builder = builder.status(404);
        "not found: try /metrics\n".to_string()
    };
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"internal error\n"))))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn accept_backoff_grows_to_its_cap_and_resets() {
        let mut b = accept_backoff();
        let delays: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        assert_eq!(b.cap(), Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(10));
    }
}
