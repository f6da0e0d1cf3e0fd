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
    /// Samples refused (device outside the agent's OPD, over the size
    /// limit, an id with a control character), per agent.
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
    /// Discoveries refused because one of the same OPD was running.
    pub discoveries_busy: Counter,
    /// Availability device-days replayed and cached in the background.
    pub availability_days_prepared: Counter,
    /// Seconds spent preparing them.
    pub availability_prepare_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
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
            discoveries_busy: Counter::default(),
            availability_days_prepared: Counter::default(),
            availability_prepare_seconds: Counter::default(),
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
            "Samples refused: the device is not in the agent's OPD, the sample is over the size limit, or an id has a control character",
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
            // Not `…_days_…`: promtool reads a unit there and wants seconds.
            "availability_prepared",
            "Availability device-days replayed and cached in the background",
            m.availability_days_prepared.clone(),
        );
        registry.register(
            "availability_prepare_seconds",
            "Seconds spent preparing availability days in the background",
            m.availability_prepare_seconds.clone(),
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
        registry.register(
            "discoveries_busy",
            "Discoveries refused because one of the same OPD was running (an agent runs one at a time)",
            m.discoveries_busy.clone(),
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
                        let gzip = accepts_gzip(req.headers());
                        // The network's series read the store, and a
                        // province's exposition is megabytes to compress:
                        // neither on an async worker.
                        let work = move || {
                            let text = metrics.encode();
                            if gzip {
                                gzipped(text.as_bytes()).map(Bytes::from)
                            } else {
                                Ok(Bytes::from(text))
                            }
                        };
                        match tokio::task::spawn_blocking(work).await {
                            // What prometheus-client writes is OpenMetrics (counters
                            // typed by their name without `_total`, `# EOF`).
                            Ok(Ok(body)) => {
                                let mut res = Response::builder()
                                    .header("content-type", CONTENT_TYPE)
                                    .header("vary", "accept-encoding");
                                if gzip {
                                    res = res.header("content-encoding", "gzip");
                                }
                                res.body(Full::new(body))
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "compressing metrics failed");
                                Response::builder()
                                    .status(500)
                                    .body(Full::new(Bytes::from_static(b"encoding failed\n")))
                            }
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

/// Whether the scraper takes gzip (`Accept-Encoding: gzip`, as Prometheus
/// and VictoriaMetrics send): `gzip` or `*` listed without `q=0`.
fn accepts_gzip(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(hyper::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// `body` gzipped at the default level (6): a province's exposition, mostly
/// repeated names and labels, shrinks about 15-fold.
fn gzipped(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::default(),
    );
    z.write_all(body)?;
    z.finish()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test_case("gzip", true ; "gzip")]
    #[test_case("gzip, deflate, br", true ; "prometheus and browsers")]
    #[test_case("GZIP", true ; "any case")]
    #[test_case("deflate, gzip;q=0.5", true ; "gzip with a weight")]
    #[test_case("*", true ; "anything")]
    #[test_case("gzip;q=0", false ; "gzip refused")]
    #[test_case("identity", false ; "identity only")]
    #[test_case("br, deflate", false ; "others only")]
    #[test_case("", false ; "empty")]
    fn gzip_is_sent_when_the_scraper_takes_it(accept: &str, want: bool) {
        let mut h = hyper::HeaderMap::new();
        h.insert(hyper::header::ACCEPT_ENCODING, accept.parse().unwrap());
        assert_eq!(accepts_gzip(&h), want);
    }

    /// One HTTP/1.1 GET on a new connection: the response's headers
    /// (lower-cased names) and its body.
    async fn get(addr: SocketAddr, extra: &str) -> (Vec<(String, String)>, Vec<u8>) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..end].to_vec()).unwrap();
        let mut lines = head.lines();
        assert!(lines.next().unwrap().starts_with("HTTP/1.1 200"), "{head}");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (headers, raw[end + 4..].to_vec())
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn a_scrape_that_takes_gzip_gets_the_same_exposition_gzipped() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Arc::new(Metrics::new()), cancel.clone()));

        let (plain_headers, plain) = get(addr, "").await;
        assert_eq!(header(&plain_headers, "content-encoding"), None);
        let plain = String::from_utf8(plain).unwrap();
        assert!(plain.ends_with("# EOF\n"), "{plain}");
        assert!(plain.contains("# TYPE "), "{plain}");

        let (headers, body) = get(addr, "Accept-Encoding: gzip, deflate\r\n").await;
        assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
        assert_eq!(header(&headers, "content-type"), Some(CONTENT_TYPE));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)
            .unwrap();
        assert_eq!(text, plain);

        let (headers, body) = get(addr, "Accept-Encoding: gzip;q=0, identity\r\n").await;
        assert_eq!(header(&headers, "content-encoding"), None);
        assert_eq!(String::from_utf8(body).unwrap(), plain);

        cancel.cancel();
        server.await.unwrap();
    }
}
