//! Prometheus metrics of the collector, served at `http://<metrics_listen>/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Label of per-agent series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AgentLabel {
    /// Agent id.
    pub agent: String,
    /// Its OPD.
    pub opd: String,
}

/// Every metric the collector exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Samples received from agents.
    pub samples_received: Counter,
    /// Samples newly stored.
    pub samples_stored: Counter,
    /// Samples dropped as duplicates (agent, seq).
    pub samples_duplicate: Counter,
    /// Samples refused (device outside the agent's OPD), per agent.
    pub samples_refused: Family<AgentLabel, Counter>,
    /// Samples refused because they were stamped beyond the clock-skew
    /// tolerance in the future, per agent.
    pub samples_future: Family<AgentLabel, Counter>,
    /// Acknowledgements sent.
    pub acks: Counter,
    /// Agents with an open stream.
    pub agents_connected: Gauge,
    /// Duration of ingest commits (group commits), seconds.
    pub commit_seconds: Histogram,
    /// Batches per group commit.
    pub commit_batches: Histogram,
    /// Inventory reloads rejected because the file was broken.
    pub inventory_rejected: Counter,
    /// Raw samples pruned by retention.
    pub samples_pruned: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The registry, for parts that register their own counters at start.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Registers all metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("siaga_collector");
        let m = Metrics {
            samples_received: Counter::default(),
            samples_stored: Counter::default(),
            samples_duplicate: Counter::default(),
            samples_refused: Family::default(),
            samples_future: Family::default(),
            acks: Counter::default(),
            agents_connected: Gauge::default(),
            commit_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            commit_batches: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            inventory_rejected: Counter::default(),
            samples_pruned: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "samples_received",
            "Samples received from agents",
            m.samples_received.clone(),
        );
        registry.register(
            "samples_stored",
            "Samples newly stored",
            m.samples_stored.clone(),
        );
        registry.register(
            "samples_duplicate",
            "Samples dropped as duplicates by (agent, seq)",
            m.samples_duplicate.clone(),
        );
        registry.register(
            "samples_refused",
            "Samples refused because the device is not in the agent's OPD",
            m.samples_refused.clone(),
        );
        registry.register(
            "samples_future_refused",
            "Samples refused because they were stamped further in the future than ingest.max_clock_skew",
            m.samples_future.clone(),
        );
        registry.register("acks", "Batch acknowledgements sent", m.acks.clone());
        registry.register(
            "agents_connected",
            "Agents with an open uplink stream",
            m.agents_connected.clone(),
        );
        registry.register(
            "ingest_commit_seconds",
            "Duration of durable ingest commits",
            m.commit_seconds.clone(),
        );
        registry.register(
            "ingest_commit_batches",
            "Batches per group commit",
            m.commit_batches.clone(),
        );
        registry.register(
            "inventory_rejected",
            "Inventory reloads rejected",
            m.inventory_rejected.clone(),
        );
        registry.register(
            "samples_pruned",
            "Raw samples removed by retention",
            m.samples_pruned.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut s, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        s
    }
}

/// Serves `/metrics` on `listener` until `cancel`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, cancel: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(metrics.encode())))
                    } else {
                        Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"not found\n")))
                    }
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
