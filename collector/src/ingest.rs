//! The `Uplink` service: one long-lived stream per agent.
//!
//! The agent's identity and OPD come from its certificate, never from what it
//! says. After `Hello` the collector answers `Welcome` and the OPD's
//! inventory (again whenever a reload changes that OPD). Each `SampleBatch` is
//! checked against the OPD (samples for other devices are refused, counted
//! and logged), queued to the single writer, and acknowledged only once the
//! writer's transaction is durable. Acks leave in batch order; a few batches
//! may be in flight per stream so that commits of many agents group.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesOrdered;
use futures::{Future, StreamExt};
use prost::Message;
use siaga_proto::v1::agent_message::Msg as AgentMsg;
use siaga_proto::v1::collector_message::Msg as CollectorMsg;
use siaga_proto::v1::uplink_server::Uplink;
use siaga_proto::v1::{self, AgentMessage, CollectorMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::auth::peer;
use crate::hub::Hub;
use crate::inventory::Inventory;
use crate::metrics::AgentLabel;
use crate::pki::Identity;
use crate::store::{BatchOutcome, IngestBatch};

/// Batches of one stream waiting for their commit at most.
const MAX_IN_FLIGHT: usize = 8;
/// How long an agent has to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The uplink service.
#[derive(Debug, Clone)]
pub struct UplinkService {
    hub: Arc<Hub>,
}

impl UplinkService {
    /// A service on `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

fn msg(m: CollectorMsg) -> Result<CollectorMessage, Status> {
    Ok(CollectorMessage { msg: Some(m) })
}

fn projection(hub: &Hub, opd: &str) -> v1::Inventory {
    hub.inventory()
        .for_opd(opd)
        .unwrap_or_else(|| v1::Inventory {
            opd: opd.to_string(),
            revision: hub.inventory().revision,
            interval_ms: u64::try_from(hub.inventory().interval.as_millis()).unwrap_or(u64::MAX),
            ..Default::default()
        })
}

fn same_projection(a: &v1::Inventory, b: &v1::Inventory) -> bool {
    let mut a = a.clone();
    a.revision = b.revision;
    &a == b
}

/// Whether `s` names its device, or a link, with a control character
/// (NUL among them). Ids are keys of the store; PostgreSQL's `text` holds
/// no NUL at all, and no inventory id has a control character.
fn control_in_ids(s: &v1::Sample) -> bool {
    let bad = |id: &str| id.chars().any(char::is_control);
    bad(&s.device)
        || match &s.kind {
            Some(v1::sample::Kind::Snmp(r)) => r.interfaces.iter().any(|i| bad(&i.link_name)),
            Some(v1::sample::Kind::Event(e)) => bad(&e.link),
            Some(v1::sample::Kind::Icmp(_)) | None => false,
        }
}

/// `text` with each control character replaced by U+FFFD.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

type AckFuture = Pin<Box<dyn Future<Output = (u64, u32, Result<BatchOutcome, String>)> + Send>>;

#[tonic::async_trait]
impl Uplink for UplinkService {
    type StreamStream = ReceiverStream<Result<CollectorMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = peer(&request, &self.hub)?;
        let identity = peer.identity.clone();
        let (opd, id) = match &identity {
            Identity::Agent { opd, id } => (opd.clone(), id.clone()),
            Identity::User { name } => {
                warn!(user = %name, "a user certificate was used on the agent uplink; refused");
                return Err(Status::permission_denied(
                    "the uplink is for agents; this is a user certificate",
                ));
            }
        };
        let remote = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let mut hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(AgentMessage {
                msg: Some(AgentMsg::Hello(h)),
            }))) => h,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Status::deadline_exceeded("no Hello")),
            Ok(Ok(_)) => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        // What the agent says of itself is shown and stored as text: no
        // control characters (PostgreSQL's jsonb holds no NUL, a terminal
        // obeys escapes).
        for text in [
            &mut hello.agent_version,
            &mut hello.hostname,
            &mut hello.spool_error,
        ] {
            *text = plain(text);
        }
        if !siaga_proto::compatible(hello.protocol_major) {
            warn!(agent = %identity, major = hello.protocol_major, "incompatible protocol");
            return Err(Status::failed_precondition(format!(
                "protocol {}.{} is not supported by this collector (speaks {}.{})",
                hello.protocol_major,
                hello.protocol_minor,
                siaga_proto::PROTOCOL_MAJOR,
                siaga_proto::PROTOCOL_MINOR
            )));
        }
        if (!hello.agent_id.is_empty() && hello.agent_id != id)
            || (!hello.opd.is_empty() && hello.opd != opd)
        {
            warn!(agent = %identity, said_id = %hello.agent_id, said_opd = %hello.opd,
                "Hello names another agent than the certificate; the certificate wins");
        }
        if !self.hub.inventory().opds.contains_key(&opd) {
            warn!(agent = %identity, %opd, "agent's OPD is not in the inventory; it gets no devices");
        }
        let record = self.hub.with_agent(&id, &opd, |a| {
            a.streams += 1;
            a.cert_not_after_us = peer.not_after_us;
            a.record.version = hello.agent_version.clone();
            a.record.hostname = hello.hostname.clone();
            a.record.address = remote.clone();
            a.record.spool_depth = hello.spool_depth;
            a.record.dropped = hello.dropped;
            a.record.inventory_revision = hello.inventory_revision;
            a.record.spool_condition = hello.spool_condition;
            a.record.spool_error = hello.spool_error.clone();
            a.record.samples_cut = hello.samples_cut;
            a.record.samples_undeliverable = hello.samples_undeliverable;
            a.record.last_seen_us = now_us();
        });
        self.hub.metrics.agents_connected.inc();
        info!(agent = %identity, version = %hello.agent_version, %remote, spool_depth = hello.spool_depth, "agent connected");
        let _ = self.hub.writer.agent(record).await;

        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT * 2 + 8);
        let welcome = v1::Welcome {
            protocol_major: siaga_proto::PROTOCOL_MAJOR,
            protocol_minor: siaga_proto::PROTOCOL_MINOR,
            collector_version: env!("CARGO_PKG_VERSION").to_string(),
            agent_id: id.clone(),
            opd: opd.clone(),
        };
        let inventory = projection(&self.hub, &opd);
        let _ = tx.send(msg(CollectorMsg::Welcome(welcome))).await;
        let _ = tx
            .send(msg(CollectorMsg::Inventory(inventory.clone())))
            .await;
        let session = Session {
            hub: self.hub.clone(),
            identity,
            opd,
            id,
            tx,
            sent_inventory: inventory,
            serial: peer.serial.clone(),
            own_devices: None,
        };
        tokio::spawn(session.run(inbound));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Session {
    hub: Arc<Hub>,
    identity: Identity,
    opd: String,
    id: String,
    tx: mpsc::Sender<Result<CollectorMessage, Status>>,
    sent_inventory: v1::Inventory,
    /// Its certificate's serial: the stream ends when it is revoked.
    serial: String,
    /// The devices of its OPD in the inventory they were taken from:
    /// every sample is checked against them.
    own_devices: Option<(Arc<Inventory>, HashSet<String>)>,
}

impl Session {
    async fn run(mut self, mut inbound: Streaming<AgentMessage>) {
        // The stream is the route for measurements to this OPD from now on;
        // queued ones go down it behind the inventory.
        let measure = self.hub.measure.clone();
        let measure_session = measure.attach(&self.id, &self.opd, self.tx.clone()).await;
        let mut pending: FuturesOrdered<AckFuture> = FuturesOrdered::new();
        let mut inv_rx = self.hub.inventory.subscribe();
        let mut revoked_rx = self.hub.revoked.subscribe();
        // Revoked between the check at the start and now: seen at once.
        revoked_rx.mark_changed();
        let cancel = self.hub.cancel.clone();
        let mut reading = true;
        let reason: String = loop {
            if !reading && pending.is_empty() {
                break "ended".into();
            }
            tokio::select! {
                Some((batch_id, refused, outcome)) = pending.next(), if !pending.is_empty() => {
                    match outcome {
                        Ok(o) => {
                            self.hub.metrics.samples_stored.inc_by(u64::from(o.stored));
                            self.hub.metrics.samples_duplicate.inc_by(u64::from(o.duplicates));
                            self.hub.metrics.acks.inc();
                            let ack = v1::Ack { batch_id, stored: o.stored, duplicates: o.duplicates, refused };
                            if self.tx.send(msg(CollectorMsg::Ack(ack))).await.is_err() {
                                break "agent went away".into();
                            }
                        }
                        Err(e) => {
                            let _ = self.tx.send(Err(Status::unavailable(format!("store failed: {e}")))).await;
                            break format!("store failed: {e}");
                        }
                    }
                }
                _ = cancel.cancelled(), if reading => {
                    // Stop taking batches; answer those in flight, then close.
                    reading = false;
                }
                changed = revoked_rx.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    if revoked_rx.borrow_and_update().contains(&self.serial) {
                        warn!(agent = %self.identity, serial = %self.serial, "certificate revoked; ending its open stream");
                        let _ = self.tx.send(Err(Status::unauthenticated(format!(
                            "certificate {} ({}) has been revoked",
                            self.serial, self.identity
                        )))).await;
                        break "certificate revoked".into();
                    }
                }
                changed = inv_rx.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    let new = projection(&self.hub, &self.opd);
                    if !same_projection(&self.sent_inventory, &new) {
                        info!(agent = %self.identity, revision = new.revision, devices = new.devices.len(), "pushing new inventory");
                        self.sent_inventory = new.clone();
                        if self.tx.send(msg(CollectorMsg::Inventory(new))).await.is_err() {
                            break "agent went away".into();
                        }
                    }
                }
                m = inbound.message(), if reading && pending.len() < MAX_IN_FLIGHT => {
                    match m {
                        Ok(Some(AgentMessage { msg: Some(m) })) => {
                            if let Some(fut) = self.handle(m).await {
                                pending.push_back(fut);
                            }
                        }
                        Ok(Some(AgentMessage { msg: None })) => {}
                        Ok(None) => reading = false,
                        Err(e) => {
                            // Say why before the stream ends (e.g. a message
                            // over the cap): the agent then splits what it
                            // sent instead of sending the same bytes again.
                            warn!(agent = %self.identity, code = ?e.code(), error = %e.message(), "agent stream unreadable; ending it");
                            let refusal = v1::Refusal {
                                reason: format!("stream unreadable: {}", e.message()),
                                batch_id: 0,
                                samples: 0,
                            };
                            let _ = self.tx.send(msg(CollectorMsg::Refusal(refusal))).await;
                            let _ = self.tx.send(Err(e.clone())).await;
                            break format!("stream error: {}", e.message());
                        }
                    }
                }
            }
        };
        let record = self.hub.with_agent(&self.id, &self.opd, |a| {
            a.streams = a.streams.saturating_sub(1);
            a.record.last_seen_us = now_us();
        });
        // What ran on this stream is marked failed in the store: off the
        // async workers, before the agent counts as gone.
        let agent = self.id.clone();
        if let Err(e) =
            tokio::task::spawn_blocking(move || measure.detach(&agent, measure_session)).await
        {
            warn!(agent = %self.identity, error = %e, "marking the stream's measurements failed");
        }
        // Discoveries waiting on it end now, not at their deadline.
        self.hub.discover.detach(&self.id, measure_session);
        self.hub.metrics.agents_connected.dec();
        info!(agent = %self.identity, %reason, "agent disconnected");
        let _ = self.hub.writer.agent(record).await;
    }

    async fn handle(&mut self, m: AgentMsg) -> Option<AckFuture> {
        match m {
            AgentMsg::Batch(batch) => Some(self.batch(batch).await),
            AgentMsg::Heartbeat(hb) => {
                let now = now_us();
                let record = self.hub.with_agent(&self.id, &self.opd, |a| {
                    let r = &mut a.record;
                    r.last_seen_us = now;
                    // The heartbeat is stamped as it leaves the agent; its
                    // trip is far shorter than any offset that matters.
                    if hb.ts_us > 0 {
                        r.clock_offset_us = Some(now.saturating_sub(hb.ts_us));
                    }
                    r.spool_depth = hb.spool_depth;
                    r.dropped = hb.dropped;
                    r.inventory_revision = hb.inventory_revision;
                    r.spool_condition = hb.spool_condition;
                    r.spool_error = plain(&hb.spool_error);
                    r.samples_cut = hb.samples_cut;
                    r.samples_undeliverable = hb.samples_undeliverable;
                    if let Some(h) = &hb.host {
                        r.cpu_pct = h.cpu_pct;
                        r.mem_used_pct = h.mem_used_pct;
                        r.disk_used_pct = h.disk_used_pct;
                    }
                });
                let _ = self.hub.writer.agent(record).await;
                self.hub.health.handle.heartbeat(&self.opd);
                None
            }
            AgentMsg::Hello(_) => {
                debug!(agent = %self.identity, "repeated Hello ignored");
                None
            }
            AgentMsg::MeasureResult(r) => {
                let inventory = self.hub.inventory();
                let opd = self.opd.clone();
                // Figures only of this OPD's links and devices.
                let link_device = move |name: &str| {
                    inventory
                        .links
                        .iter()
                        .find(|l| l.name == name)
                        .filter(|l| {
                            inventory
                                .devices
                                .get(&l.device)
                                .is_some_and(|d| d.opd == opd)
                        })
                        .map(|l| l.device.clone())
                };
                // Off the async workers (it commits the figures), and
                // awaited: the stream's next message, its end too, comes after.
                let (measure, agent) = (self.hub.measure.clone(), self.id.clone());
                let answered =
                    tokio::task::spawn_blocking(move || measure.answer(&agent, &r, link_device));
                if let Err(e) = answered.await {
                    warn!(agent = %self.identity, error = %e, "storing a measure result failed");
                }
                None
            }
            AgentMsg::DiscoverResult(r) => {
                self.hub.discover.answer(&self.id, r).await;
                None
            }
        }
    }

    async fn batch(&mut self, batch: v1::SampleBatch) -> AckFuture {
        // The collector's own time of arrival, kept beside the agent's time.
        let received_us = now_us();
        let batch_id = batch.batch_id;
        let n = batch.samples.len();
        self.hub.metrics.samples_received.inc_by(n as u64);
        let inventory = self.hub.inventory();
        if !matches!(&self.own_devices, Some((of, _)) if Arc::ptr_eq(of, &inventory)) {
            let own = inventory
                .devices
                .iter()
                .filter(|(_, d)| d.opd == self.opd)
                .map(|(id, _)| id.clone())
                .collect();
            self.own_devices = Some((inventory.clone(), own));
        }
        let own = self.own_devices.as_ref().map(|(_, own)| own);
        let mut refused_devices: Vec<String> = Vec::new();
        let mut refused = 0u32;
        let mut future = 0u32;
        let horizon = received_us.saturating_add(
            self.hub
                .max_clock_skew_us
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let mut too_large = 0u32;
        let mut unplain = 0u32;
        let samples: Vec<v1::Sample> = batch
            .samples
            .into_iter()
            .filter(|s| {
                // First: such an id is neither logged nor looked up. It
                // would fail every commit to PostgreSQL (no NUL in `text`)
                // and so be sent again forever.
                if control_in_ids(s) {
                    refused += 1;
                    unplain += 1;
                    return false;
                }
                let ok = own.is_some_and(|own| own.contains(&s.device));
                if !ok {
                    refused += 1;
                    if !refused_devices.contains(&s.device) && refused_devices.len() < 16 {
                        refused_devices.push(s.device.clone());
                    }
                    return false;
                }
                // A sample over the size limit is refused alone; the rest
                // of its batch is stored.
                if s.encoded_len() > siaga_proto::MAX_SAMPLE_BYTES {
                    refused += 1;
                    too_large += 1;
                    return false;
                }
                if s.ts_us > horizon {
                    future += 1;
                    return false;
                }
                true
            })
            .collect();
        for (n, reason) in [
            (
                refused - too_large - unplain,
                "samples of devices outside the agent's OPD".to_string(),
            ),
            (
                unplain,
                "samples naming a device or link with a control character (such as NUL)"
                    .to_string(),
            ),
            (
                too_large,
                format!(
                    "samples over the {} byte sample size limit",
                    siaga_proto::MAX_SAMPLE_BYTES
                ),
            ),
            (
                future,
                "samples stamped further ahead of the collector's clock than ingest.max_clock_skew"
                    .to_string(),
            ),
        ] {
            if n == 0 {
                continue;
            }
            if too_large > 0 && n == too_large {
                warn!(agent = %self.identity, batch_id, samples = n, "refused samples over the size limit");
            }
            if unplain > 0 && n == unplain {
                warn!(agent = %self.identity, batch_id, samples = n, "refused samples naming a device or link with a control character");
            }
            let refusal = v1::Refusal {
                reason,
                batch_id,
                samples: n,
            };
            // Ahead of the batch's Ack, which follows its commit.
            let _ = self.tx.send(msg(CollectorMsg::Refusal(refusal))).await;
        }
        let record = self.hub.with_agent(&self.id, &self.opd, |a| {
            a.record.last_seen_us = now_us();
            a.record.refused += u64::from(refused);
            a.record.future_refused += u64::from(future);
        });
        let label = AgentLabel {
            agent: self.id.clone(),
            opd: self.opd.clone(),
        };
        if future > 0 {
            warn!(agent = %self.identity, samples = future, total = record.future_refused,
                "refused samples stamped further in the future than ingest.max_clock_skew; is the agent's clock right?");
            self.hub
                .metrics
                .samples_future
                .get_or_create(&label)
                .inc_by(u64::from(future));
        }
        if refused > 0 {
            for device in &refused_devices {
                warn!(agent = %self.identity, %device, "refused samples for a device outside the agent's OPD");
            }
            self.hub
                .metrics
                .samples_refused
                .get_or_create(&label)
                .inc_by(u64::from(refused));
        }
        if refused > 0 || future > 0 {
            let _ = self.hub.writer.agent(record).await;
        }
        // Refused samples are answered as refused: the agent drops them
        // rather than resending them forever.
        let refused = refused + future;
        if samples.is_empty() {
            return Box::pin(async move { (batch_id, refused, Ok(BatchOutcome::default())) });
        }
        // The health engine sees what is durable, after the commit.
        let samples: Arc<[v1::Sample]> = samples.into();
        let for_health = (self.hub.health.clone(), self.opd.clone(), samples.clone());
        let queued = self
            .hub
            .writer
            .store(IngestBatch::new(self.id.clone(), received_us, samples))
            .await;
        Box::pin(async move {
            let outcome = match queued {
                Ok(rx) => rx.await.unwrap_or_else(|_| Err("writer stopped".into())),
                Err(e) => Err(e.to_string()),
            };
            if outcome.is_ok() {
                let (h, opd, samples) = for_health;
                h.handle.samples(&opd, samples);
            }
            (batch_id, refused, outcome)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(device: &str, kind: Option<v1::sample::Kind>) -> v1::Sample {
        v1::Sample {
            seq: 1,
            ts_us: 1,
            device: device.into(),
            kind,
        }
    }

    fn snmp(link: &str) -> Option<v1::sample::Kind> {
        Some(v1::sample::Kind::Snmp(v1::SnmpResult {
            interfaces: vec![v1::Interface {
                if_descr: "free text\tmay hold anything".into(),
                link_name: link.into(),
                ..Default::default()
            }],
            ..Default::default()
        }))
    }

    fn event(link: &str) -> Option<v1::sample::Kind> {
        Some(v1::sample::Kind::Event(v1::Event {
            kind: "link_down".into(),
            link: link.into(),
            detail: "line one\nline two".into(),
            ..Default::default()
        }))
    }

    #[test]
    fn agent_text_loses_its_control_characters() {
        assert_eq!(plain("host-1 (Debian 13)"), "host-1 (Debian 13)");
        assert_eq!(
            plain("ho\0st\u{1b}[2J\n"),
            "ho\u{fffd}st\u{fffd}[2J\u{fffd}"
        );
        assert_eq!(plain(""), "");
    }

    #[test]
    fn ids_with_a_control_character_are_found() {
        let icmp = Some(v1::sample::Kind::Icmp(v1::IcmpResult::default()));
        let cases = [
            (sample("sw-1", icmp.clone()), false),
            (sample("sw-1", snmp("uplink")), false),
            (sample("sw-1", snmp("")), false),
            (sample("sw-1", event("uplink")), false),
            (sample("sw-1", None), false),
            (sample("sw-1\0", icmp.clone()), true),
            (sample("\0", None), true),
            (sample("sw\n1", icmp), true),
            (sample("sw-1", snmp("up\0link")), true),
            (sample("sw-1", snmp("up\u{7f}")), true),
            (sample("sw-1", event("up\u{1b}[31m")), true),
        ];
        for (s, want) in cases {
            assert_eq!(control_in_ids(&s), want, "{s:?}");
        }
    }
}
