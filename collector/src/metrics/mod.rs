//! Prometheus metrics of the collector, served at `http://<metrics_listen>/metrics`:
//! its own counters (`siaga_collector_*`) and the network it watches
//! (`siaga_device_*`, `siaga_link_*`, `siaga_opd_*`, see [`network`]).

pub mod network;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Label of per-agent series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AgentLabel {
    /// Agent id.
    pub agent: String,
    /// Its OPD.
    pub opd: String,
}

/// The collector's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum Listener {
    /// The gRPC server (agents' uplink, admin API).
    Grpc,
    /// The Prometheus endpoint.
    Metrics,
    /// The web console.
    Web,
}

/// Label of per-listener series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ListenerLabel {
    /// Which listener.
    pub listener: Listener,
}

/// Label of the refused TLS handshakes: why, one of
/// [`siaga_proto::tls::REFUSAL_REASONS`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the handshake failed.
    pub reason: &'static str,
}

/// Every metric the collector exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The network's series, without the collector's prefix.
    network_registry: Registry,
    /// What the network's series are read from.
    network: network::NetworkCollector,
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
    /// Failed `accept`s (e.g. out of file descriptors), per listener.
    pub accept_errors: Family<ListenerLabel, Counter>,
    /// TLS handshakes on the gRPC listener that failed, per reason.
    pub tls_handshakes_refused: Family<ReasonLabel, Counter>,
    /// Web console logins, per outcome.
    pub web_logins: Family<OutcomeLabel, Counter>,
}

/// Label of the web console's logins: how one ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok`, `failed`, `locked_out`, `no_password` or `bad_form`.
    pub outcome: &'static str,
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
            accept_errors: Family::default(),
            tls_handshakes_refused: Family::default(),
            web_logins: Family::default(),
            registry: Registry::default(),
            network_registry: Registry::default(),
            network: network::NetworkCollector::default(),
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
        registry.register(
            "accept_errors",
            "Failed accepts (e.g. out of file descriptors), per listener",
            m.accept_errors.clone(),
        );
        registry.register(
            "tls_handshakes_refused",
            "TLS handshakes on the gRPC listener that failed, per reason",
            m.tls_handshakes_refused.clone(),
        );
        registry.register(
            "web_logins",
            "Web console logins, per outcome (ok, failed, locked_out, no_password, bad_form)",
            m.web_logins.clone(),
        );
        for reason in siaga_proto::tls::REFUSAL_REASONS {
            let _ = m
                .tls_handshakes_refused
                .get_or_create(&ReasonLabel { reason });
        }
        let mut network_registry = Registry::default();
        network_registry.register_collector(Box::new(m.network.clone()));
        Metrics {
            registry,
            network_registry,
            ..m
        }
    }

    /// Exports the network of `hub` (devices, links, open tickets) from now on.
    pub fn watch_network(&self, hub: &Arc<crate::hub::Hub>) {
        self.network.watch(hub);
    }

    /// The counter of failed accepts of `listener`.
    pub fn accept_errors_of(&self, listener: Listener) -> Counter {
        self.accept_errors
            .get_or_create(&ListenerLabel { listener })
            .clone()
    }

    /// The text exposition format. Blocking once the network is watched
    /// (it reads the store): call it off the async workers.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut s = String::new();
        if let Err(e) = encode_registry(&mut s, &self.registry)
            .and_then(|()| encode_registry(&mut s, &self.network_registry))
            .and_then(|()| encode_eof(&mut s))
        {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        s
    }
}

/// The exposition's media type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How many scrapes may be connected at once. Prometheus keeps one; beyond
/// this the listener stops accepting and further connections wait in the
/// kernel's queue, holding none of the collector's file descriptors.
pub const MAX_CONNECTIONS: usize = 32;
/// A client must have sent its request headers within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, idle or not (a scrape takes
/// milliseconds; Prometheus opens a new connection when it needs one).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Largest request head read (a scrape's is a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Serves `/metrics` on `listener` until `cancel`: at most
/// [`MAX_CONNECTIONS`] at once, each with a header-read timeout and a
/// lifetime; after a failed `accept` it waits (see [`crate::listen`]).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, cancel: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut errors =
        crate::listen::AcceptErrors::new("metrics", metrics.accept_errors_of(Listener::Metrics));
    while let Some((permit, stream, peer)) =
        crate::listen::next_connection(&listener, &permits, &mut errors, &cancel).await
    {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    if req.uri().path() == "/metrics" {
                        // The network's series read the store: not on an async worker.
                        match tokio::task::spawn_blocking(move || metrics.encode()).await {
                            // What prometheus-client writes is OpenMetrics (counters
                            // typed by their name without `_total`, `# EOF`).
                            Ok(text) => Response::builder()
                                .header("content-type", CONTENT_TYPE)
                                .body(Full::new(Bytes::from(text))),
                            Err(e) => {
                                tracing::warn!(error = %e, "encoding metrics failed");
                                Response::builder()
                                    .status(500)
                                    .body(Full::new(Bytes::from_static(b"encoding failed\n")))
                            }
                        }
                    } else {
                        Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"not found\n")))
                    }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_REQUEST_BYTES)
                .serve_connection(TokioIo::new(stream), svc);
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection"),
                Err(_) => tracing::debug!(%peer, "metrics connection closed after its lifetime"),
            }
        });
    }
}

/// Connections the kernel queues for the listener while it is at its cap
/// (they hold no descriptor of ours until accepted).
pub const BACKLOG: u32 = 1024;

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
