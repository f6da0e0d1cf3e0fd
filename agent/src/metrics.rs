//! The agent's Prometheus metrics and the endpoint that serves them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

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
    /// Probes run, by kind and outcome.
    pub probes: Family<ProbeLabels, Counter>,
    /// SNMP answers dropped per device: from another address or port, with
    /// an id no request of ours carried, or failing the message's checks.
    pub snmp_forged_answers: Family<DeviceLabels, Counter>,
    /// Traps refused per device: not authenticated as that device.
    pub traps_refused: Family<DeviceLabels, Counter>,
    /// Traps dropped per device by the storm limit (summarised in one event).
    pub traps_suppressed: Family<DeviceLabels, Counter>,
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
        r
    }
}

/// Binds `addr`, writes the bound address to `<data_dir>/metrics.addr` and
/// returns the task serving `/metrics` until `cancel` fires.
pub async fn serve(
    addr: SocketAddr,
    data_dir: &Path,
    metrics: &Metrics,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let path = data_dir.join("metrics.addr");
    std::fs::write(&path, format!("{bound}\n"))
        .map_err(|source| MetricsError::AddrFile { path, source })?;
    info!(%bound, "metrics endpoint listening");
    let registry = Arc::new(metrics.registry());
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = cancel.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "metrics accept failed");
                        continue;
                    }
                },
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let registry = registry.clone();
                    async move { Ok::<_, Infallible>(respond(&req, &registry)) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    debug!(%peer, error = %e, "metrics connection ended");
                }
            });
        }
    });
    Ok((bound, task))
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
