//! The stream to the collector: samples and heartbeats up; acknowledgements,
//! inventory and commands down.
//!
//! Delivery: samples are read from the spool oldest first and sent in
//! batches, with at most [`UplinkSettings::window`] batches unacknowledged
//! at a time. An `Ack` deletes exactly its batch's sequence numbers from the
//! spool. When the stream breaks, nothing is deleted: the next session starts
//! from the oldest unacknowledged sample again, and the collector drops what
//! it already has by (agent, seq). New samples need no special path: they
//! have higher sequence numbers and follow the replay.
//!
//! Size: a batch holds as many samples as fit in
//! [`UplinkSettings::batch_bytes`] encoded (one sample is at most
//! [`siaga_proto::MAX_SAMPLE_BYTES`], the spool cuts larger ones), far under
//! the message cap, and the batches in flight hold at most twice that.
//!
//! Failover: with several collectors listed the uplink streams to one at a
//! time. Whenever a session ends for any reason but a refusal (connection
//! refused or reset, TLS handshake failed, stream ended, HTTP/2 keep-alive or
//! acknowledgement timed out) the next attempt, after the usual backoff,
//! goes to the next collector in the list, wrapping around. The replay rule
//! above makes that safe: the new collector gets every unacknowledged
//! sample, oldest first. A collector that works is kept: there is no return
//! to the first of the list while the stream holds, so agents spread over
//! the collectors that stay up instead of all moving back at once.
//!
//! Refusals: the collector acknowledges samples it refuses (counted in
//! `Ack.refused`, the reason in a `Refusal`); they are deleted like the
//! others. If it cannot even read a batch and ends the stream for it, the
//! batches are split ([`Splitter`]) until the sample it refuses is alone,
//! and that one is given up and counted as undeliverable: the same refused
//! bytes are never sent again and again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use siaga_proto::v1::{
    AgentMessage, DiscoverResult, Heartbeat, Hello, Inventory, MeasureResult, SampleBatch,
    agent_message, collector_message, uplink_client::UplinkClient,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::AgentConfig;
use crate::error::UplinkError;
use crate::host::{HostSampler, hostname};
use crate::metrics::{CollectorLabels, Metrics, RateLimitedLog};
use crate::probe::discover::Discoverer;
use crate::probe::measure::Measurer;
use crate::scheduler::cycle_interval;
use crate::spool::{Spool, SpoolStats, now_us};

/// Answer to a measurement request when the uplink was built without a
/// [`Measurer`] (no ICMP sockets to measure with).
pub const MEASURE_UNSUPPORTED: &str = "this agent cannot take measurements";
/// Answer to a discovery when the uplink was built without a
/// [`Discoverer`].
pub const DISCOVER_UNSUPPORTED: &str = "this agent cannot discover (no ICMP sockets)";

/// Longest wait for the acknowledgement of a batch before reconnecting.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the collector's Welcome once the stream is open (the
/// collector stores the agent's record before it answers).
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a TCP and TLS connection to a collector.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on the stream, also while idle: a collector host that
/// vanishes without closing the connection is noticed after this plus
/// [`KEEPALIVE_TIMEOUT`].
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// Longest wait for the answer to an HTTP/2 ping before the stream counts
/// as lost.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two warnings about refused samples.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// Least time between two warnings with the same TLS diagnosis (the
/// retries in between are logged at debug level and counted).
const TLS_ADVICE_EVERY: Duration = Duration::from_secs(60);

/// Whether a stream ended because the collector refused what it was sent
/// (too large, unreadable) rather than because the network or the
/// collector went away.
pub fn is_refusal(e: &UplinkError) -> bool {
    match e {
        UplinkError::Status(s) => matches!(
            s.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument
        ),
        _ => false,
    }
}

/// Splits batches after a refused stream until the refused sample is alone.
///
/// I/O-free: the uplink tells it which batch was oldest in flight when the
/// collector refused the stream, and asks it how many samples the next
/// batch may hold and how many batches may be in flight.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Splitter {
    suspect: Option<Suspect>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Suspect {
    /// The sequence numbers the refused batch covered.
    first: u64,
    last: u64,
    /// Most samples per batch until past `last`.
    samples: usize,
}

/// What to do after a refused stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send again in smaller batches.
    Split {
        /// Samples per batch from now on, over the suspect range.
        samples: usize,
    },
    /// This sample was refused alone: give it up (delete and count).
    GiveUp(u64),
}

impl Splitter {
    /// The collector refused the stream while `oldest` (the seqs of the
    /// oldest batch in flight) was unacknowledged.
    pub fn refused(&mut self, oldest: &[u64]) -> Option<Verdict> {
        let (&first, &last) = (oldest.first()?, oldest.last()?);
        if oldest.len() == 1 {
            self.suspect = self
                .suspect
                .take()
                .filter(|s| s.last > first)
                .map(|s| Suspect {
                    first: first + 1,
                    ..s
                });
            return Some(Verdict::GiveUp(first));
        }
        let samples = oldest.len().div_ceil(2);
        self.suspect = Some(Suspect {
            first,
            last,
            samples,
        });
        Some(Verdict::Split { samples })
    }

    /// A batch ending at `last` was acknowledged.
    pub fn acked(&mut self, last: u64) {
        if self.suspect.as_ref().is_some_and(|s| last >= s.last) {
            self.suspect = None;
        }
    }

    /// Most samples for the next batch, which starts after `cursor`.
    pub fn batch_samples(&self, cursor: u64, normal: usize) -> usize {
        match &self.suspect {
            Some(s) if cursor < s.last => s.samples.min(normal),
            _ => normal,
        }
    }

    /// Most batches in flight: one while isolating a refused sample, so
    /// that a refusal names its batch.
    pub fn window(&self, normal: usize) -> usize {
        if self.suspect.is_some() { 1 } else { normal }
    }
}

/// Everything the uplink needs to know.
#[derive(Debug, Clone)]
pub struct UplinkSettings {
    /// Agent id (informative in Hello; identity is the certificate).
    pub agent_id: String,
    /// OPD (informative in Hello).
    pub opd: String,
    /// The collectors, in the order they are tried (at least one).
    pub collectors: Vec<CollectorTarget>,
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Agent certificate (PEM).
    pub cert: PathBuf,
    /// Agent private key (PEM).
    pub key: PathBuf,
    /// Heartbeat interval until the inventory names a cycle.
    pub default_interval: Duration,
    /// Most samples per batch.
    pub batch_samples: usize,
    /// About the most bytes per batch.
    pub batch_bytes: usize,
    /// Most unacknowledged batches in flight.
    pub window: usize,
    /// Reconnect policy.
    pub backoff: Backoff,
    /// Directory whose filesystem usage heartbeats report.
    pub data_dir: PathBuf,
}

/// One collector the uplink may stream to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorTarget {
    /// `https://host:port` of the collector.
    pub url: String,
    /// Name the collector's certificate must carry.
    pub tls_name: String,
}

impl UplinkSettings {
    /// Settings from the agent's configuration, with default batching.
    pub fn from_config(cfg: &AgentConfig) -> Result<Self, UplinkError> {
        let collectors = cfg
            .collector
            .iter()
            .map(|url| {
                let tls_name = cfg.tls_name(url).map_err(|message| UplinkError::Address {
                    url: url.clone(),
                    message,
                })?;
                Ok(CollectorTarget {
                    url: url.clone(),
                    tls_name,
                })
            })
            .collect::<Result<Vec<_>, UplinkError>>()?;
        if collectors.is_empty() {
            return Err(UplinkError::Address {
                url: String::new(),
                message: "no collector listed".into(),
            });
        }
        Ok(UplinkSettings {
            agent_id: cfg.id.clone(),
            opd: cfg.opd.clone(),
            collectors,
            ca: cfg.tls.ca.clone(),
            cert: cfg.tls.cert.clone(),
            key: cfg.tls.key.clone(),
            default_interval: cfg.interval,
            batch_samples: 500,
            batch_bytes: 4 * 1024 * 1024,
            window: 8,
            backoff: Backoff::reconnect(),
            data_dir: cfg.data_dir.clone(),
        })
    }
}

/// The uplink task.
pub struct Uplink {
    settings: UplinkSettings,
    spool: Spool,
    inventory: watch::Sender<Option<Arc<Inventory>>>,
    metrics: Metrics,
    host: Option<HostSampler>,
    measurer: Option<Measurer>,
    discoverer: Option<Discoverer>,
    splitter: Splitter,
    /// Samples given up after a refusal (reported in heartbeats).
    undeliverable: u64,
    last_refusal_log: Option<tokio::time::Instant>,
    /// The TLS problem last told, and when it may be told again.
    tls_told: TlsTold,
    /// Index in `settings.collectors` of the collector tried or streamed to.
    current: usize,
    /// The collector that last welcomed this agent (a failover is a welcome
    /// from another one).
    streamed_to: Option<usize>,
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("collector", &self.target().url)
            .finish()
    }
}

/// How a session ended.
enum End {
    /// Cancelled: stop for good.
    Shutdown,
}

impl Uplink {
    /// An uplink that hands received inventories to `inventory`.
    pub fn new(
        settings: UplinkSettings,
        spool: Spool,
        inventory: watch::Sender<Option<Arc<Inventory>>>,
        metrics: Metrics,
    ) -> Self {
        let host = match HostSampler::new(&settings.data_dir) {
            Ok(h) => Some(h),
            Err(e) => {
                warn!(error = %e, "host metrics unavailable; heartbeats carry none");
                None
            }
        };
        for c in &settings.collectors {
            // Every listed collector has its series from the start, at 0.
            metrics
                .uplink_collector
                .get_or_create(&CollectorLabels { url: c.url.clone() })
                .set(0);
        }
        Uplink {
            settings,
            spool,
            inventory,
            metrics,
            host,
            measurer: None,
            discoverer: None,
            splitter: Splitter::default(),
            undeliverable: 0,
            last_refusal_log: None,
            tls_told: TlsTold::default(),
            current: 0,
            streamed_to: None,
        }
    }

    /// Takes the collector's discovery commands with `discoverer`.
    pub fn with_discoverer(mut self, discoverer: Discoverer) -> Self {
        self.discoverer = Some(discoverer);
        self
    }

    /// The collector tried or streamed to now.
    fn target(&self) -> &CollectorTarget {
        let c = &self.settings.collectors;
        &c[self.current.min(c.len().saturating_sub(1))]
    }

    /// The gauge of the collector at `index` in the list.
    fn collector_gauge(&self, index: usize) -> Option<prometheus_client::metrics::gauge::Gauge> {
        let url = self.settings.collectors.get(index)?.url.clone();
        Some(
            self.metrics
                .uplink_collector
                .get_or_create(&CollectorLabels { url })
                .clone(),
        )
    }

    /// Takes the collector's measurement commands with `measurer`
    /// (without one, each is answered with [`MEASURE_UNSUPPORTED`]).
    pub fn with_measurer(mut self, measurer: Measurer) -> Self {
        self.measurer = Some(measurer);
        self
    }

    /// Connects, streams, and reconnects with backoff until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        if self.settings.collectors.is_empty() {
            warn!("no collector to stream to; the spool keeps every sample");
            return;
        }
        let mut first = true;
        loop {
            if !first {
                self.metrics.reconnects.inc();
            }
            first = false;
            let mut inflight = BTreeMap::new();
            let result = self.session(&cancel, &mut inflight).await;
            self.metrics.stream_connected.set(0);
            if let Some(g) = self.collector_gauge(self.current) {
                g.set(0);
            }
            match result {
                Ok(End::Shutdown) => return,
                Err(e) => {
                    if is_refusal(&e) {
                        // Never the same refused bytes again: split, or give
                        // the sample up; and try again soon.
                        if let Err(e) = self.after_refusal(&e, &inflight).await {
                            warn!(error = %e, "cannot drop a refused sample from the spool");
                        }
                        self.settings.backoff.reset();
                    }
                    let delay = self.settings.backoff.next_delay();
                    let tried = self.target().clone();
                    let failed = &tried.url;
                    // A refusal is about the samples, not the collector:
                    // the smaller batches go to the same one.
                    if !is_refusal(&e) && self.settings.collectors.len() > 1 {
                        self.current = (self.current + 1) % self.settings.collectors.len();
                    }
                    let problem = siaga_proto::tls::diagnose(&e).or_else(|| revoked(&e));
                    match problem {
                        Some(p) => match self.tls_told.due(p, std::time::Instant::now()) {
                            Some(attempts_since) => warn!(
                                collector = %failed,
                                next = %self.target().url,
                                error = %chain(&e),
                                retry_in = %humantime::format_duration(round_ms(delay)),
                                attempts_since,
                                "uplink to the collector refused: {}",
                                tls_advice(p, &self.settings, &tried)
                            ),
                            None => debug!(
                                collector = %failed,
                                next = %self.target().url,
                                error = %chain(&e),
                                retry_in = %humantime::format_duration(round_ms(delay)),
                                "uplink to the collector refused again"
                            ),
                        },
                        None => warn!(
                            collector = %failed,
                            next = %self.target().url,
                            error = %chain(&e),
                            retry_in = %humantime::format_duration(round_ms(delay)),
                            "uplink to the collector down"
                        ),
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Result<Channel, UplinkError> {
        let s = &self.settings;
        let target = self.target();
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| UplinkError::Tls(format!("{}: {e}", p.display())))
        };
        // TLS done by the connector, so that the collector refusing this
        // agent's certificate is a connect error that can be diagnosed.
        let connector = siaga_proto::dial::Connector::new(
            &target.url,
            &read(&s.ca)?,
            &read(&s.cert)?,
            &read(&s.key)?,
            Some(&target.tls_name),
        )
        .map_err(UplinkError::Tls)?;
        let endpoint = Endpoint::from_shared(connector.endpoint_uri())
            .map_err(|e| UplinkError::Address {
                url: target.url.clone(),
                message: e.to_string(),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        Ok(endpoint.connect_with_connector(connector).await?)
    }

    fn heartbeat(&mut self) -> AgentMessage {
        let st: SpoolStats = self.spool.stats();
        let health = self.spool.health();
        let revision = self.inventory.borrow().as_ref().map_or(0, |i| i.revision);
        AgentMessage {
            msg: Some(agent_message::Msg::Heartbeat(Heartbeat {
                ts_us: now_us(),
                spool_depth: st.depth,
                spool_bytes: st.bytes,
                dropped: st.dropped,
                host: self.host.as_mut().map(HostSampler::sample),
                inventory_revision: revision,
                spool_condition: health.condition as i32,
                spool_error: health.error,
                samples_cut: st.cut,
                samples_undeliverable: self.undeliverable,
                spool_file_bytes: st.file_bytes,
                samples_in_memory: st.in_memory,
            })),
        }
    }

    /// The collector refused the stream: split the oldest batch in flight,
    /// or give up its only sample.
    async fn after_refusal(
        &mut self,
        e: &UplinkError,
        inflight: &BTreeMap<u64, Batch>,
    ) -> Result<(), UplinkError> {
        let Some(oldest) = inflight.values().next() else {
            warn!(error = %e, "collector refused the stream with nothing in flight");
            return Ok(());
        };
        match self.splitter.refused(&oldest.seqs) {
            Some(Verdict::Split { samples }) => {
                warn!(error = %e, was = oldest.seqs.len(), now = samples,
                    "collector refused a batch; sending it again in smaller batches");
            }
            Some(Verdict::GiveUp(seq)) => {
                let n = self.spool.ack(vec![seq]).await?;
                self.undeliverable += n;
                self.metrics.samples_undeliverable.inc_by(n);
                warn!(error = %e, seq, total = self.undeliverable,
                    "collector refused this sample alone; it is given up and counted");
            }
            None => {}
        }
        Ok(())
    }

    fn heartbeat_every(&self) -> Duration {
        cycle_interval(
            self.inventory.borrow().as_deref(),
            self.settings.default_interval,
        )
    }

    async fn session(
        &mut self,
        cancel: &CancellationToken,
        inflight: &mut BTreeMap<u64, Batch>,
    ) -> Result<End, UplinkError> {
        let channel = tokio::select! {
            () = cancel.cancelled() => return Ok(End::Shutdown),
            c = self.connect() => c?,
        };
        let mut client = UplinkClient::new(channel)
            .max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(siaga_proto::MAX_MESSAGE_BYTES);

        // Bounded by the window: at most `window` batches plus a few
        // heartbeats and answers are ever queued.
        let (tx, rx) = mpsc::channel::<AgentMessage>(self.settings.window + 8);
        let st = self.spool.stats();
        let hello = Hello {
            protocol_major: siaga_proto::PROTOCOL_MAJOR,
            protocol_minor: siaga_proto::PROTOCOL_MINOR,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            agent_id: self.settings.agent_id.clone(),
            opd: self.settings.opd.clone(),
            inventory_revision: self.inventory.borrow().as_ref().map_or(0, |i| i.revision),
            spool_depth: st.depth,
            dropped: st.dropped,
            hostname: hostname(),
            spool_condition: self.spool.health().condition as i32,
            spool_error: self.spool.health().error,
            samples_cut: st.cut,
            samples_undeliverable: self.undeliverable,
        };
        send(
            &tx,
            AgentMessage {
                msg: Some(agent_message::Msg::Hello(hello)),
            },
        )
        .await?;
        // The first heartbeat right behind the Hello, so that the collector
        // knows the host's figures from the start.
        let first_heartbeat = self.heartbeat();
        send(&tx, first_heartbeat).await?;
        let mut inbound = tokio::select! {
            () = cancel.cancelled() => return Ok(End::Shutdown),
            r = client.stream(ReceiverStream::new(rx)) => r?.into_inner(),
        };
        // No batch before the Welcome: a collector that refuses this agent
        // refuses it before any sample is sent, and a stream that ends
        // early has always told which collector welcomed it (so a move to
        // the next one is counted as the failover it is).
        let first = tokio::select! {
            () = cancel.cancelled() => return Ok(End::Shutdown),
            r = tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()) => r,
        };
        match first {
            Ok(Ok(Some(siaga_proto::v1::CollectorMessage {
                msg: Some(m @ collector_message::Msg::Welcome(_)),
            }))) => self.handle(m, &tx, inflight, &cancel.child_token()).await?,
            Ok(Ok(Some(_))) => {
                return Err(UplinkError::NoWelcome("another message came first".into()));
            }
            Ok(Ok(None)) => return Err(UplinkError::Closed),
            Ok(Err(status)) => return Err(status.into()),
            Err(_) => {
                return Err(UplinkError::NoWelcome(format!(
                    "none within {} s",
                    WELCOME_TIMEOUT.as_secs()
                )));
            }
        }
        self.metrics.stream_connected.set(1);
        // A TLS problem that comes back after this is told at once.
        self.tls_told = TlsTold::default();
        debug!(collector = %self.target().url, "stream open");
        // Measurements of this session stop with it: their answer could
        // only go down this stream (the collector marks them failed).
        let measurements = cancel.child_token();
        let _stop_measurements = measurements.clone().drop_guard();

        let mut sent_at: BTreeMap<u64, tokio::time::Instant> = BTreeMap::new();
        let mut cursor = 0u64;
        let mut next_batch = 1u64;
        // A backlog is being replayed: a page came back full. Once it is
        // all delivered, the memory its batches took is handed back.
        let mut replaying = false;
        let mut caught_up = false;
        let mut committed = self.spool.watch_committed();
        let mut hb_every = self.heartbeat_every();
        let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + hb_every, hb_every);
        hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            // Fill the window, oldest unacknowledged first.
            committed.borrow_and_update();
            while self.window_open(inflight) {
                let want = self
                    .splitter
                    .batch_samples(cursor, self.settings.batch_samples);
                let page = self
                    .spool
                    .read_after(cursor, want, self.settings.batch_bytes)
                    .await?;
                caught_up = page.seqs.len() < want && page.bytes < self.settings.batch_bytes / 2;
                replaying |= !caught_up;
                let Some(&last) = page.seqs.last() else { break };
                cursor = last;
                if page.samples.is_empty() {
                    // Only unreadable records: nothing to send, drop them.
                    self.spool.ack(page.seqs).await?;
                    continue;
                }
                let batch_id = next_batch;
                next_batch += 1;
                debug!(
                    batch_id,
                    samples = page.samples.len(),
                    first = page.seqs.first().copied().unwrap_or(0),
                    last,
                    "sending batch"
                );
                inflight.insert(
                    batch_id,
                    Batch {
                        seqs: page.seqs,
                        bytes: page.bytes,
                    },
                );
                sent_at.insert(batch_id, tokio::time::Instant::now());
                let batch = AgentMessage {
                    msg: Some(agent_message::Msg::Batch(SampleBatch {
                        batch_id,
                        samples: page.samples,
                    })),
                };
                if tx.send(batch).await.is_err() {
                    // The stream is closing. Acknowledgements may still be
                    // buffered ahead of the final status: apply them, so
                    // that only the unacknowledged are sent again.
                    return Err(self.drain(&mut inbound, inflight).await);
                }
            }

            let window_open = self.window_open(inflight);
            tokio::select! {
                () = cancel.cancelled() => {
                    // Stop sending; take the acknowledgements of what is in
                    // flight so that fewer samples are sent twice later.
                    drop(tx);
                    self.drain(&mut inbound, inflight).await;
                    return Ok(End::Shutdown);
                }
                m = inbound.message() => {
                    let m = match m {
                        Ok(Some(m)) => m,
                        Ok(None) => return Err(UplinkError::Closed),
                        Err(status) => return Err(status.into()),
                    };
                    let Some(m) = m.msg else { continue };
                    match self.handle(m, &tx, inflight, &measurements).await {
                        Ok(()) => {}
                        // Our side of the stream is gone; acknowledgements
                        // may still be buffered ahead of the final status.
                        Err(UplinkError::Closed) => {
                            return Err(self.drain(&mut inbound, inflight).await);
                        }
                        Err(e) => return Err(e),
                    }
                    if replaying && caught_up && inflight.is_empty() {
                        replaying = false;
                        let released = crate::memory::release_free();
                        debug!(released, "replay delivered; free memory handed back");
                    }
                    let every = self.heartbeat_every();
                    if every != hb_every {
                        hb_every = every;
                        hb = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                        hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                r = committed.changed(), if window_open => {
                    if r.is_err() {
                        return Err(UplinkError::Spool(crate::error::SpoolError::Closed));
                    }
                }
                _ = hb.tick() => {
                    // A collector that takes batches but never acknowledges
                    // them would stall the window for good: start over.
                    sent_at.retain(|id, _| inflight.contains_key(id));
                    if let Some(t) = sent_at.values().next()
                        && t.elapsed() > ACK_TIMEOUT
                    {
                        return Err(UplinkError::AckTimeout(ACK_TIMEOUT));
                    }
                    // A heartbeat that does not fit now is skipped, not queued.
                    if tx.try_send(self.heartbeat()).is_err() {
                        debug!("heartbeat skipped: stream busy");
                    }
                }
            }
        }
    }

    async fn handle(
        &mut self,
        m: collector_message::Msg,
        tx: &mpsc::Sender<AgentMessage>,
        inflight: &mut BTreeMap<u64, Batch>,
        measurements: &CancellationToken,
    ) -> Result<(), UplinkError> {
        match m {
            collector_message::Msg::Welcome(w) => {
                if !siaga_proto::compatible(w.protocol_major) {
                    return Err(UplinkError::Version {
                        major: w.protocol_major,
                        minor: w.protocol_minor,
                        ours: format!(
                            "{}.{}",
                            siaga_proto::PROTOCOL_MAJOR,
                            siaga_proto::PROTOCOL_MINOR
                        ),
                    });
                }
                self.settings.backoff.reset();
                let failover = self.streamed_to.is_some_and(|c| c != self.current);
                if failover {
                    self.metrics.uplink_failovers.inc();
                }
                self.streamed_to = Some(self.current);
                if let Some(g) = self.collector_gauge(self.current) {
                    g.set(1);
                }
                info!(
                    collector = %self.target().url,
                    failover,
                    failovers = self.metrics.uplink_failovers.get(),
                    collector_version = %w.collector_version,
                    agent = %w.agent_id,
                    opd = %w.opd,
                    spool_depth = self.spool.stats().depth,
                    "connected to the collector"
                );
            }
            collector_message::Msg::Ack(a) => match inflight.remove(&a.batch_id) {
                Some(Batch { seqs, .. }) => {
                    if a.refused > 0 {
                        self.metrics.samples_refused.inc_by(u64::from(a.refused));
                        if self.refusal_log_due() {
                            warn!(
                                batch_id = a.batch_id,
                                refused = a.refused,
                                "collector refused samples of this batch"
                            );
                        }
                    }
                    if let Some(&last) = seqs.last() {
                        self.splitter.acked(last);
                    }
                    let n = self.spool.ack(seqs).await?;
                    debug!(
                        batch_id = a.batch_id,
                        deleted = n,
                        stored = a.stored,
                        duplicates = a.duplicates,
                        "batch acknowledged"
                    );
                }
                None => warn!(batch_id = a.batch_id, "ack for a batch not in flight"),
            },
            collector_message::Msg::Inventory(inv) => {
                info!(
                    revision = inv.revision,
                    devices = inv.devices.len(),
                    interval_ms = inv.interval_ms,
                    "inventory received"
                );
                if let Err(e) = self.spool.save_inventory(&inv).await {
                    warn!(error = %e, "cannot cache the inventory");
                }
                self.inventory.send_replace(Some(Arc::new(inv)));
            }
            collector_message::Msg::Refusal(r) => {
                if self.refusal_log_due() {
                    warn!(reason = %r.reason, batch_id = r.batch_id, samples = r.samples, "collector refused");
                } else {
                    debug!(reason = %r.reason, batch_id = r.batch_id, samples = r.samples, "collector refused");
                }
            }
            collector_message::Msg::Measure(cmd) => {
                let Some(measurer) = self.measurer.clone() else {
                    warn!(id = %cmd.id, ticket = %cmd.ticket, "measurement requested; this agent cannot take measurements");
                    return send(
                        tx,
                        AgentMessage {
                            msg: Some(agent_message::Msg::MeasureResult(MeasureResult {
                                id: cmd.id,
                                samples: vec![],
                                error: MEASURE_UNSUPPORTED.into(),
                            })),
                        },
                    )
                    .await;
                };
                // Its own task: a measurement takes seconds and must hold up
                // neither the stream nor the regular probing. A weak sender,
                // so that a running measurement does not keep a dead
                // session's stream open.
                let tx = tx.downgrade();
                let stop = measurements.clone();
                tokio::spawn(async move {
                    let id = cmd.id.clone();
                    let result = tokio::select! {
                        () = stop.cancelled() => {
                            info!(%id, "measurement abandoned: the stream to the collector closed");
                            return;
                        }
                        r = measurer.measure(&cmd) => r,
                    };
                    let answer = AgentMessage {
                        msg: Some(agent_message::Msg::MeasureResult(result)),
                    };
                    match tx.upgrade() {
                        Some(tx) if tx.send(answer).await.is_ok() => {}
                        _ => {
                            warn!(%id, "measurement done but the stream to the collector closed; the answer is lost")
                        }
                    }
                });
            }
            collector_message::Msg::Discover(cmd) => {
                let Some(discoverer) = self.discoverer.clone() else {
                    warn!(id = %cmd.id, "discovery requested; this agent cannot discover");
                    return send(
                        tx,
                        AgentMessage {
                            msg: Some(agent_message::Msg::DiscoverResult(DiscoverResult {
                                id: cmd.id,
                                done: true,
                                error: DISCOVER_UNSUPPORTED.into(),
                                ..DiscoverResult::default()
                            })),
                        },
                    )
                    .await;
                };
                // Its own task, as a measurement; its parts go up as they
                // come, through a small channel (the sweep waits on a busy
                // stream rather than piling hosts up in memory).
                let tx = tx.downgrade();
                let stop = measurements.clone();
                tokio::spawn(async move {
                    let id = cmd.id.clone();
                    let (parts_tx, mut parts) = mpsc::channel(4);
                    let run = discoverer.run(&cmd, parts_tx);
                    let forward = async {
                        while let Some(part) = parts.recv().await {
                            let Some(tx) = tx.upgrade() else {
                                return false;
                            };
                            let m = AgentMessage {
                                msg: Some(agent_message::Msg::DiscoverResult(part)),
                            };
                            if tx.send(m).await.is_err() {
                                return false;
                            }
                        }
                        true
                    };
                    tokio::select! {
                        () = stop.cancelled() => {
                            info!(%id, "discovery abandoned: the stream to the collector closed");
                        }
                        (_, delivered) = futures::future::join(run, forward) => {
                            if !delivered {
                                warn!(%id, "discovery stopped: the stream to the collector closed");
                            }
                        }
                    }
                });
            }
        }
        Ok(())
    }

    /// Reads what the collector still sends (for at most a few seconds)
    /// and applies its acknowledgements; returns why the stream ended.
    async fn drain(
        &mut self,
        inbound: &mut tonic::Streaming<siaga_proto::v1::CollectorMessage>,
        inflight: &mut BTreeMap<u64, Batch>,
    ) -> UplinkError {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !inflight.is_empty() {
            match tokio::time::timeout_at(deadline, inbound.message()).await {
                Ok(Ok(Some(siaga_proto::v1::CollectorMessage {
                    msg: Some(collector_message::Msg::Ack(a)),
                }))) => {
                    if let Some(Batch { seqs, .. }) = inflight.remove(&a.batch_id)
                        && let Err(e) = self.spool.ack(seqs).await
                    {
                        return e.into();
                    }
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return UplinkError::Closed,
                Ok(Err(status)) => return status.into(),
                Err(_) => break,
            }
        }
        UplinkError::Closed
    }
}

impl Uplink {
    /// Whether another batch may go out: fewer than the window, and the
    /// batches in flight hold less than two batches' worth of bytes.
    fn window_open(&self, inflight: &BTreeMap<u64, Batch>) -> bool {
        let bytes: usize = inflight.values().map(|b| b.bytes).sum();
        inflight.len() < self.splitter.window(self.settings.window)
            && bytes < 2 * self.settings.batch_bytes
    }

    fn refusal_log_due(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let due = self
            .last_refusal_log
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY);
        if due {
            self.last_refusal_log = Some(now);
        }
        due
    }
}

/// The TLS problem the uplink last told: a new problem is told at once, the
/// same one again once per [`TLS_ADVICE_EVERY`] (the retries in between
/// counted), so a retrying agent does not fill its log.
#[derive(Debug, Default)]
struct TlsTold(Option<(siaga_proto::tls::TlsProblem, RateLimitedLog)>);

impl TlsTold {
    /// `Some(attempts met by it since it was last told)` when problem `p`
    /// is to be told at `now`.
    fn due(&mut self, p: siaga_proto::tls::TlsProblem, now: std::time::Instant) -> Option<u64> {
        match &mut self.0 {
            Some((told, log)) if *told == p => log.allow(now),
            _ => {
                let mut log = RateLimitedLog::new(TLS_ADVICE_EVERY);
                let due = log.allow(now);
                self.0 = Some((p, log));
                due
            }
        }
    }
}

/// A batch in flight.
#[derive(Debug)]
pub struct Batch {
    /// Sequence numbers it covers.
    seqs: Vec<u64>,
    /// Encoded bytes of its samples.
    bytes: usize,
}

async fn send(tx: &mpsc::Sender<AgentMessage>, m: AgentMessage) -> Result<(), UplinkError> {
    tx.send(m).await.map_err(|_| UplinkError::Closed)
}

/// A call refused because this agent's certificate is revoked (the
/// collector checks its revocation list after the handshake).
fn revoked(e: &UplinkError) -> Option<siaga_proto::tls::TlsProblem> {
    let UplinkError::Status(s) = e else {
        return None;
    };
    let said = s.metadata().get(siaga_proto::REFUSAL_KEY)?;
    (said.as_bytes() == siaga_proto::REFUSAL_REVOKED.as_bytes())
        .then_some(siaga_proto::tls::TlsProblem::OursRevoked)
}

/// When the certificate in `pem` stops being valid, as `YYYY-MM-DD HH:MM UTC`.
fn not_after(pem: &std::path::Path) -> Option<String> {
    let bytes = std::fs::read(pem).ok()?;
    let (_, p) = x509_parser::pem::parse_x509_pem(&bytes).ok()?;
    let cert = p.parse_x509().ok()?;
    let t = cert.validity().not_after.to_datetime();
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    ))
}

/// One sentence for a TLS problem of the uplink, ending in what to do.
fn tls_advice(
    p: siaga_proto::tls::TlsProblem,
    s: &UplinkSettings,
    target: &CollectorTarget,
) -> String {
    use siaga_proto::tls::TlsProblem::*;
    let (url, id, cert) = (&target.url, &s.agent_id, s.cert.display());
    match p {
        PeerNotSignedByOurCa => format!(
            "the collector at {url} presents a certificate not signed by the CA in agent.toml \
             ({}): copy ca.pem from the collector's directory over that file",
            s.ca.display()
        ),
        PeerWrongName => format!(
            "the collector's certificate is not valid for the name {:?}: set server_name in \
             agent.toml to a name given to `siaga-collector init --host`",
            target.tls_name
        ),
        PeerExpired => format!(
            "the collector at {url} presents an expired certificate (or this host's clock is \
             wrong): the collector's admin must renew the server certificate"
        ),
        OursExpired => format!(
            "this agent's certificate ({cert}) expired{}: renew it on the collector \
             (siaga-collector renew --dir COLLECTOR_DIR --agent {id} --out DIR) and copy \
             agent.pem and agent.key here",
            not_after(&s.cert).map_or(String::new(), |d| format!(" on {d}"))
        ),
        OursRevoked => format!(
            "this agent's certificate ({cert}) was revoked: enroll the agent again on the \
             collector (siaga-collector enroll agent --dir COLLECTOR_DIR --opd {} --out DIR)",
            s.opd
        ),
        OursNotSignedByTheirCa | OursRefused => format!(
            "the collector at {url} refused this agent's certificate ({cert}): it is not signed \
             by this collector's CA: enroll the agent on this collector \
             (siaga-collector enroll agent --dir COLLECTOR_DIR --opd {} --out DIR)",
            s.opd
        ),
    }
}

/// An error with its causes: "connect: transport error: tcp connect error: Connection refused".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test]
    fn a_tls_problem_is_told_once_a_minute_and_a_new_one_at_once() {
        use siaga_proto::tls::TlsProblem::{OursRevoked, PeerNotSignedByOurCa};
        let t0 = std::time::Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut told = TlsTold::default();
        let seen: Vec<Option<u64>> = [
            (PeerNotSignedByOurCa, 0),
            (PeerNotSignedByOurCa, 1),
            (PeerNotSignedByOurCa, 15),
            (PeerNotSignedByOurCa, 60),
            (OursRevoked, 61),
            (PeerNotSignedByOurCa, 62),
            (PeerNotSignedByOurCa, 63),
        ]
        .into_iter()
        .map(|(p, s)| told.due(p, at(s)))
        .collect();
        assert_eq!(seen, [Some(0), None, None, Some(2), Some(0), Some(0), None]);
    }

    /// Plays a collector that refuses any batch holding `bad`: batches of
    /// the spool's seqs `1..=n` go out as the uplink would build them,
    /// oldest first; returns the seqs given up and the refusals it took.
    fn isolate(n: u64, bad: &[u64], batch: usize) -> (Vec<u64>, usize) {
        let mut spool: Vec<u64> = (1..=n).collect();
        let mut split = Splitter::default();
        let mut given_up = vec![];
        let mut refusals = 0;
        let mut cursor = 0;
        while let Some(pos) = spool.iter().position(|&s| s > cursor) {
            let want = split.batch_samples(cursor, batch);
            let b: Vec<u64> = spool[pos..].iter().copied().take(want).collect();
            if b.iter().any(|s| bad.contains(s)) {
                refusals += 1;
                assert!(refusals < 100, "no end: the same bytes again and again");
                match split.refused(&b) {
                    Some(Verdict::GiveUp(seq)) => {
                        spool.retain(|&s| s != seq);
                        given_up.push(seq);
                    }
                    Some(Verdict::Split { samples }) => assert!(samples < b.len()),
                    None => panic!("no verdict"),
                }
                // A new session replays from the oldest unacknowledged.
                cursor = 0;
            } else {
                let last = *b.last().expect("non-empty");
                split.acked(last);
                spool.retain(|s| !b.contains(s));
                cursor = last;
            }
        }
        (given_up, refusals)
    }

    #[test_case(500, &[1], 500 ; "first of a full batch")]
    #[test_case(500, &[500], 500 ; "last of a full batch")]
    #[test_case(500, &[250], 500 ; "middle")]
    #[test_case(1200, &[7, 900], 500 ; "two in different batches")]
    #[test_case(3, &[1, 2, 3], 500 ; "all refused")]
    #[test_case(1, &[1], 1 ; "alone from the start")]
    fn a_refused_sample_is_isolated_and_given_up(n: u64, bad: &[u64], batch: usize) {
        let (given_up, refusals) = isolate(n, bad, batch);
        assert_eq!(given_up, bad.to_vec(), "only the refused are given up");
        // Halving: about log2(batch) refusals per bad sample.
        let bound = bad.len() * (usize::BITS - batch.leading_zeros() + 1) as usize;
        assert!(refusals <= bound, "{refusals} refusals > {bound}");
    }

    #[test]
    fn one_batch_in_flight_while_isolating() {
        let mut s = Splitter::default();
        assert_eq!(s.window(8), 8);
        assert_eq!(
            s.refused(&[10, 11, 12, 13]),
            Some(Verdict::Split { samples: 2 })
        );
        assert_eq!(s.window(8), 1);
        assert_eq!(s.batch_samples(9, 500), 2);
        s.acked(13);
        assert_eq!((s.window(8), s.batch_samples(13, 500)), (8, 500));
        assert_eq!(s.refused(&[]), None);
    }

    #[test]
    fn refusal_codes() {
        for (code, refusal) in [
            (tonic::Code::OutOfRange, true),
            (tonic::Code::ResourceExhausted, true),
            (tonic::Code::InvalidArgument, true),
            (tonic::Code::Unavailable, false),
            (tonic::Code::Internal, false),
        ] {
            let e = UplinkError::Status(tonic::Status::new(code, "x"));
            assert_eq!(is_refusal(&e), refusal, "{code:?}");
        }
        assert!(!is_refusal(&UplinkError::Closed));
    }
}
