//! The health task: feeds the engine, turns its decisions into tickets (the
//! detection is the OPD's request: the system completes step 1 with the
//! evidence and the ticket waits on step 2), keeps the event list, and tells
//! people.
//!
//! Ingest never waits on it: samples arrive over a bounded channel; when it
//! is full the batch is skipped for health (it is stored all the same),
//! counted and logged.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use siaga_proto::v1::Sample;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::store::{
    HealthEvent, HealthEventKind, OpenIncident, Published, PublishedState, TicketHealth,
    TicketNote, TicketStore,
};
use crate::error::StoreError;
use crate::health::reason::Note;
use crate::health::state::{DeviceNode, LinkNode};
use crate::health::{
    Decision, Engine, Health, HealthRules, Output, StateChange, Subject, Topology,
};
use crate::inventory::Inventory;
use crate::notify::{EventKind, Notifier, TicketEvent};
use crate::sop::Lang;
use crate::sop::store::{SopStore, SopTicket};
use crate::sop::workflow::{Action, Actor, Origin, TicketInfo, Workflow};

/// The state of one subject as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectView {
    /// Visible state.
    pub health: Health,
    /// Flapping.
    pub flapping: bool,
    /// Since when, µs.
    pub since_us: i64,
}

/// What the health task shares with the admin API.
#[derive(Debug, Default)]
pub struct Shared {
    /// Visible state per subject.
    pub states: RwLock<BTreeMap<Subject, SubjectView>>,
    /// Sample batches skipped because the health queue was full (exported
    /// as `siaga_collector_health_skipped_batches_total`).
    pub skipped_batches: Counter,
    /// linkDown traps that the next poll contradicted, per device, since the
    /// collector started (`siaga device`).
    pub unconfirmed_traps: RwLock<BTreeMap<String, u64>>,
    /// The same, exported as `siaga_collector_traps_not_confirmed_total`.
    pub unconfirmed_traps_metric: Family<DeviceLabel, Counter>,
    /// Each event as it is recorded, for the people who follow the log.
    pub feed: EventFeed,
}

/// Recorded events as they come (a follower that falls behind reads the
/// rest from the store: the feed drops the oldest for it).
#[derive(Debug)]
pub struct EventFeed(tokio::sync::broadcast::Sender<(crate::ticket::store::EventKey, HealthEvent)>);

impl Default for EventFeed {
    fn default() -> Self {
        EventFeed(tokio::sync::broadcast::channel(1024).0)
    }
}

impl EventFeed {
    /// The events recorded from now on.
    pub fn subscribe(
        &self,
    ) -> tokio::sync::broadcast::Receiver<(crate::ticket::store::EventKey, HealthEvent)> {
        self.0.subscribe()
    }

    /// Tells the followers (none listening is fine).
    pub fn send(&self, key: crate::ticket::store::EventKey, e: HealthEvent) {
        let _ = self.0.send((key, e));
    }
}

/// Label of per-device series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeviceLabel {
    /// Device id.
    pub device: String,
    /// Its OPD.
    pub opd: String,
}

impl Shared {
    /// linkDown traps of a device that the next poll contradicted.
    pub fn unconfirmed_traps(&self, device: &str) -> u64 {
        self.unconfirmed_traps
            .read()
            .ok()
            .and_then(|m| m.get(device).copied())
            .unwrap_or(0)
    }

    /// The visible state of a device (unknown when nothing is known).
    pub fn device_state(&self, device: &str) -> Health {
        self.states
            .read()
            .ok()
            .and_then(|m| m.get(&Subject::device(device)).map(|v| v.health))
            .unwrap_or(Health::Unknown)
    }
}

/// The inventory as the health engine needs it.
pub fn topology(inv: &Inventory) -> Topology {
    Topology {
        devices: inv
            .devices
            .iter()
            .map(|(id, d)| {
                (
                    id.clone(),
                    DeviceNode {
                        opd: d.opd.clone(),
                        parent: d.parent.clone(),
                    },
                )
            })
            .collect(),
        links: inv
            .links
            .iter()
            .map(|l| LinkNode {
                device: l.device.clone(),
                name: if l.name.is_empty() {
                    l.interface.clone()
                } else {
                    l.name.clone()
                },
                interface: (!l.interface.is_empty()).then(|| l.interface.clone()),
                if_index: (l.if_index != 0).then_some(l.if_index),
            })
            .collect(),
        intervals_us: inv
            .opds
            .iter()
            .filter(|(_, o)| !o.interval.is_zero())
            .map(|(id, o)| (id.clone(), o.interval.as_micros() as i64))
            .collect(),
        default_interval_us: inv.interval.as_micros().max(1) as i64,
    }
}

fn utc(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// After the collector starts, agents reconnect within their backoff cap
/// (15 s); an agent is not called silent before that, however short its
/// OPD's probe interval.
pub const RECONNECT_GRACE_US: i64 = 15_000_000;

/// Prefix of ticket numbers (Pemeliharaan Jaringan).
pub const TICKET_PREFIX: &str = "PJ";

/// The notification event for a ticket as it is now.
pub fn ticket_event(
    sop_store: &SopStore,
    t: &SopTicket,
    h: &TicketHealth,
    kind: EventKind,
) -> TicketEvent {
    let roles = sop_store
        .sop_by_hash(&t.info.number, &t.state.sop.hash)
        .ok()
        .and_then(|sop| {
            Workflow::new(&sop, sop_store.calendar())
                .turn(&t.state)
                .ok()
                .map(|x| x.roles)
        })
        .unwrap_or_default();
    TicketEvent {
        ticket: t.info.number.clone(),
        event: kind,
        sequence: h.notify_seq,
        at: rfc3339(Utc::now()),
        opd: t.info.opd.clone(),
        device: t.info.device.clone(),
        link: t.info.link.clone(),
        problem: t.info.problem.clone(),
        problem_id: (!h.problem_id.is_empty()).then(|| h.problem_id.clone()),
        origin: match t.info.origin {
            Origin::Detected => "detected".into(),
            Origin::Letter { .. } => "letter".into(),
        },
        step: t.state.position.step,
        role: roles.join(","),
        opened_at: rfc3339(t.info.opened_at),
        recovered_at: h.recovered_at.map(rfc3339),
        occurrences: h.occurrences,
        affected: h.affected.iter().cloned().collect(),
        escalation: None,
    }
}

/// Tells receivers that a ticket's step is late: the step's actors and the
/// roles above them (and the assignee by name). Bumps the notification sequence.
pub fn notify_escalation(
    sop_store: &SopStore,
    store: &TicketStore,
    notifier: &Notifier,
    e: &crate::sop::store::TicketEscalation,
) -> Result<(), String> {
    let number = &e.ticket.info.number;
    let h = store
        .update(number, |h| h.notify_seq += 1)
        .map_err(|e| e.to_string())?;
    let mut ev = ticket_event(sop_store, &e.ticket, &h, EventKind::Escalated);
    ev.step = e.escalation.step;
    ev.escalation = Some(crate::notify::EscalationNotice {
        step: e.escalation.step,
        level: e.escalation.level,
        due_at: rfc3339(e.escalation.due_at),
        notify_roles: e.escalation.notify_roles.clone(),
        notify_users: e.escalation.notify_users.clone(),
    });
    notifier.notify(ev).map_err(|e| e.to_string())
}

/// Tells receivers that a ticket moved to another step (called after an SOP
/// action succeeded). Bumps the ticket's notification sequence.
pub fn notify_step_changed(
    sop_store: &SopStore,
    store: &TicketStore,
    notifier: &Notifier,
    number: &str,
) -> Result<(), String> {
    let t = sop_store.get(number).map_err(|e| e.to_string())?;
    let h = store
        .update(number, |h| h.notify_seq += 1)
        .map_err(|e| e.to_string())?;
    let _ = notifier.notify(ticket_event(sop_store, &t, &h, EventKind::StepChanged));
    Ok(())
}

/// The engine plus everything its decisions touch.
#[derive(Debug)]
pub struct HealthCore {
    engine: Engine,
    store: Arc<TicketStore>,
    sop_store: Arc<SopStore>,
    notifier: Option<Notifier>,
    shared: Arc<Shared>,
    opd_names: BTreeMap<String, String>,
    last_close_check: i64,
    /// The OPDs this engine judges (all of them, but with several
    /// collectors on PostgreSQL: `crate::lease`).
    leases: Arc<crate::lease::Leases>,
    /// When the states other collectors published were last read.
    last_published_read: i64,
}

/// How often a collector sharing its store reads the states the holders of
/// the other OPDs published.
pub const PUBLISHED_REFRESH_US: i64 = 1_000_000;

impl HealthCore {
    /// Restores open incidents and maintenance windows from the store.
    pub fn new(
        rules: HealthRules,
        inv: &Inventory,
        store: Arc<TicketStore>,
        sop_store: Arc<SopStore>,
        notifier: Option<Notifier>,
    ) -> Result<Self, StoreError> {
        let mut engine = Engine::new(rules, topology(inv));
        engine.restore(
            store.incidents()?.into_iter().map(|o| o.incident),
            sop_store.calendar().zone(),
        );
        engine.set_windows(store.windows()?);
        Ok(Self {
            engine,
            store,
            sop_store,
            notifier,
            shared: Arc::default(),
            opd_names: inv
                .opds
                .iter()
                .map(|(id, o)| (id.clone(), o.name.clone()))
                .collect(),
            last_close_check: 0,
            leases: crate::lease::Leases::all(),
            last_published_read: 0,
        })
    }

    /// Judges only the OPDs `leases` holds (several collectors on one
    /// database): samples, heartbeats and decisions of the others are left
    /// to their holders.
    pub fn with_leases(mut self, leases: Arc<crate::lease::Leases>) -> Self {
        self.leases = leases;
        self
    }

    /// The leases changed: an OPD gained is taken over from the store's
    /// state (its open incidents, the states its previous holder published
    /// as the machines' starting point, its agent watched afresh), an OPD
    /// lost is no longer watched here.
    pub fn leases_changed(&mut self, c: &crate::lease::Changed, now_us: i64) {
        if c.is_empty() {
            return;
        }
        let incidents = match self.store.incidents() {
            Ok(i) => i,
            Err(e) => {
                warn!(task = "health", error = %e, "cannot read the open incidents of the OPDs taken over");
                Vec::new()
            }
        };
        let published = if c.gained.is_empty() {
            Published::default()
        } else {
            self.store.published().unwrap_or_else(|e| {
                // The machines then start with no reading, as after a restart.
                warn!(task = "health", error = %e, "cannot read the states published for the OPDs taken over");
                Published::default()
            })
        };
        for opd in &c.gained {
            let seed = published
                .states
                .iter()
                .filter(|p| p.opd == *opd)
                .map(|p| (p.subject.clone(), p.health, p.since_us));
            self.engine.adopt_opd(
                opd,
                incidents.iter().map(|o| o.incident.clone()),
                seed,
                None,
                now_us,
                RECONNECT_GRACE_US,
            );
        }
        for opd in &c.lost {
            self.engine.release_opd(opd);
        }
        info!(task = "health", gained = ?c.gained, lost = ?c.lost, "OPD leases changed");
    }

    /// `out` without what concerns OPDs another collector judges.
    fn held_only(&self, mut out: Output) -> Output {
        if !self.leases.shared() {
            return out;
        }
        let topo = self.engine.tracker().topology();
        out.changes
            .retain(|c| topo.opd_of(&c.subject).is_none_or(|o| self.leases.holds(o)));
        let book = self.engine.book();
        out.decisions.retain(|d| {
            let opd = match d {
                Decision::Open { incident, .. } => Some(incident.opd.as_str()),
                Decision::Suppressed { opd, .. } => Some(opd.as_str()),
                other => decision_key(other)
                    .and_then(|k| book.get(k))
                    .map(|i| i.opd.as_str()),
            };
            opd.is_none_or(|o| self.leases.holds(o))
        });
        out
    }

    /// What is shared with the admin API.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The engine (for tests and diagnostics).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A new inventory.
    pub fn set_inventory(&mut self, inv: &Inventory) {
        self.engine.set_topology(topology(inv));
        self.opd_names = inv
            .opds
            .iter()
            .map(|(id, o)| (id.clone(), o.name.clone()))
            .collect();
    }

    /// Samples from the agent of `opd`.
    pub fn samples(&mut self, opd: &str, samples: &[Sample], now_us: i64) {
        if !self.leases.holds(opd) {
            return;
        }
        // One batch, one write of its events: a wave of state changes (a
        // start, an OPD taken over) is a transaction per batch, not one per
        // sample, which on PostgreSQL outran the samples coming in.
        let mut out = Output::default();
        for s in samples {
            out.extend(self.engine.sample(opd, s, now_us));
        }
        let traps = self.sync_unconfirmed(opd);
        self.apply(out, now_us, traps);
    }

    /// Copies the engine's count of contradicted traps to what the admin
    /// API and /metrics show; the counts that grew, (OPD, device, count).
    fn sync_unconfirmed(&self, opd: &str) -> Vec<(String, String, u64)> {
        let counts = self.engine.tracker().unconfirmed_traps();
        let mut grew = Vec::new();
        let Ok(mut shown) = self.shared.unconfirmed_traps.write() else {
            return grew;
        };
        for (device, &n) in counts {
            let before = shown.get(device).copied().unwrap_or(0);
            if n > before {
                self.shared
                    .unconfirmed_traps_metric
                    .get_or_create(&DeviceLabel {
                        device: device.clone(),
                        opd: opd.to_string(),
                    })
                    .inc_by(n - before);
                shown.insert(device.clone(), n);
                grew.push((opd.to_string(), device.clone(), n));
            }
        }
        grew
    }

    /// Watches the agents of these OPDs for silence from `now_us`, each
    /// with the time it was last heard; no silence is declared within
    /// [`RECONNECT_GRACE_US`] of now, while agents reconnect to a collector
    /// that just started.
    pub fn watch_agents(&mut self, agents: Vec<(String, Option<i64>)>, now_us: i64) {
        let agents: Vec<_> = agents
            .into_iter()
            .filter(|(opd, _)| self.leases.holds(opd))
            .collect();
        let n = agents.len();
        self.engine.watch_agents(agents, now_us, RECONNECT_GRACE_US);
        info!(
            task = "health",
            opds = n,
            "watching the OPDs' agents for silence"
        );
    }

    /// A heartbeat from the agent of `opd`.
    pub fn heartbeat(&mut self, opd: &str, now_us: i64) {
        if !self.leases.holds(opd) {
            return;
        }
        let out = self.engine.heartbeat(opd, now_us);
        self.apply(out, now_us, Vec::new());
    }

    /// The clock.
    pub fn tick(&mut self, now_us: i64) {
        match self.store.windows() {
            Ok(w) => self.engine.set_windows(w),
            Err(e) => warn!(task = "health", error = %e, "cannot read maintenance windows"),
        }
        if now_us - self.last_close_check >= 2_000_000 {
            self.last_close_check = now_us;
            self.forget_closed();
        }
        let out = self.engine.tick(now_us);
        let out = self.held_only(out);
        self.apply(out, now_us, Vec::new());
        if now_us - self.last_published_read >= PUBLISHED_REFRESH_US {
            self.last_published_read = now_us;
            self.show_published();
        }
    }

    /// Several collectors on one database: shows, for every OPD another
    /// collector judges, the states that collector published (one read
    /// transaction, bounded), in place of what this engine holds for it
    /// (it drops their samples, so its own view would be unknown or old).
    /// A subject of such an OPD that nobody published is shown unknown, as
    /// on its holder. The OPDs held here keep their engine's states.
    fn show_published(&self) {
        if !self.leases.shared() {
            return;
        }
        let published = match self.store.published() {
            Ok(p) => p,
            Err(e) => {
                warn!(task = "health", error = %e, "cannot read the states other collectors published; showing the last read");
                return;
            }
        };
        let topo = self.engine.tracker().topology();
        let elsewhere = |s: &Subject| topo.opd_of(s).is_some_and(|o| !self.leases.holds(o));
        if let Ok(mut m) = self.shared.states.write() {
            m.retain(|s, _| !elsewhere(s));
            for p in published.states {
                // A row under another OPD than the inventory's now is from
                // before the device moved: not its state any more.
                if elsewhere(&p.subject) && topo.opd_of(&p.subject) == Some(p.opd.as_str()) {
                    m.insert(
                        p.subject,
                        SubjectView {
                            health: p.health,
                            flapping: p.flapping,
                            since_us: p.since_us,
                        },
                    );
                }
            }
        }
        if let Ok(mut shown) = self.shared.unconfirmed_traps.write() {
            for (opd, device, n) in published.traps {
                if self.leases.holds(&opd) {
                    continue;
                }
                let before = shown.get(&device).copied().unwrap_or(0);
                if n > before {
                    // A counter only grows: it follows the holder's count.
                    self.shared
                        .unconfirmed_traps_metric
                        .get_or_create(&DeviceLabel {
                            device: device.clone(),
                            opd,
                        })
                        .inc_by(n - before);
                    shown.insert(device, n);
                }
            }
        }
    }

    /// Incidents whose tickets people closed stop holding their key.
    fn forget_closed(&mut self) {
        let Ok(open) = self.store.incidents() else {
            return;
        };
        for o in open {
            let closed = match self.sop_store.get(&o.ticket) {
                Ok(t) => t.state.is_closed(),
                Err(crate::sop::store::StoreError::NoTicket(_)) => true,
                Err(_) => false,
            };
            if closed {
                self.engine.close(&o.incident.key);
                if let Err(e) = self.store.remove_incident(&o.incident.key) {
                    warn!(task = "health", error = %e, "cannot forget incident");
                }
                info!(task = "health", incident = %o.incident.key, ticket = %o.ticket, "ticket closed: incident key released");
            }
        }
    }

    fn ticket_subject_event(&self, t: &TicketHealth, reason: &str) -> HealthEvent {
        let inc = t
            .incident
            .as_deref()
            .and_then(|k| self.engine.book().get(k).cloned());
        let (subject, opd) = match inc {
            Some(i) => (i.subject, i.opd),
            None => (Subject::Opd { opd: String::new() }, String::new()),
        };
        subject_event(&subject, &opd, reason, Some(t.number.clone()))
    }

    /// Records what `out` changed; `traps` are the contradicted trap
    /// counts that grew meanwhile, (OPD, device, count).
    fn apply(&mut self, out: Output, now_us: i64, traps: Vec<(String, String, u64)>) {
        if out.changes.is_empty() && out.decisions.is_empty() && traps.is_empty() {
            return;
        }
        let published = self.to_publish(&out, traps);
        let mut events: Vec<HealthEvent> = out.changes.iter().map(state_event).collect();
        if let Ok(mut m) = self.shared.states.write() {
            for c in &out.changes {
                m.insert(
                    c.subject.clone(),
                    SubjectView {
                        health: c.to,
                        flapping: c.flapping,
                        since_us: c.at,
                    },
                );
            }
        }
        for c in &out.changes {
            info!(task = "health", subject = %c.subject, from = %c.from, to = %c.to, reason = %c.reason, "state changed");
        }
        for d in out.decisions {
            match self.decide(d, now_us) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => {}
                Err(e) => warn!(task = "health", error = %e, "cannot record a ticket change"),
            }
        }
        match self.store.append_events_publishing(&events, &published) {
            Ok(keys) => {
                for (k, e) in keys.into_iter().zip(events) {
                    self.shared.feed.send(k, e);
                }
            }
            Err(e) => warn!(task = "health", error = %e, "cannot record health events"),
        }
    }

    /// What the other collectors on the database are to show of `out`:
    /// each changed subject's new state, and its OPD's agent alive (up)
    /// or silent (unknown). Nothing with the embedded store.
    fn to_publish(&self, out: &Output, traps: Vec<(String, String, u64)>) -> Published {
        if !self.leases.shared() {
            return Published::default();
        }
        let mut states: Vec<PublishedState> = out
            .changes
            .iter()
            .map(|c| PublishedState {
                subject: c.subject.clone(),
                opd: c.opd.clone(),
                health: c.to,
                flapping: c.flapping,
                since_us: c.at,
                reason: c.reason.clone(),
            })
            .collect();
        let mut opds: Vec<&str> = out.changes.iter().map(|c| c.opd.as_str()).collect();
        opds.sort_unstable();
        opds.dedup();
        for opd in opds.into_iter().filter(|o| !o.is_empty()) {
            let silent = self.engine.tracker().silent_since(opd);
            // Alive: as of the newest of these changes (the agent's return
            // is one of them when it came back).
            let newest = out
                .changes
                .iter()
                .filter(|c| c.opd == opd)
                .map(|c| c.at)
                .max()
                .unwrap_or(0);
            states.push(PublishedState {
                subject: Subject::Opd {
                    opd: opd.to_string(),
                },
                opd: opd.to_string(),
                health: if silent.is_some() {
                    Health::Unknown
                } else {
                    Health::Up
                },
                flapping: false,
                since_us: silent.unwrap_or(newest),
                reason: if silent.is_some() {
                    "agent silent"
                } else {
                    "agent alive"
                }
                .to_string(),
            });
        }
        Published { states, traps }
    }

    fn save_incident(&self, key: &str) -> Result<Option<String>, StoreError> {
        let Some(rec) = self.store.incident(key)? else {
            return Ok(None);
        };
        if let Some(i) = self.engine.book().get(key) {
            self.store.put_incident(&OpenIncident {
                incident: i.clone(),
                ticket: rec.ticket.clone(),
            })?;
        }
        Ok(Some(rec.ticket))
    }

    fn notify(&self, h: &TicketHealth, kind: EventKind) {
        let Some(n) = &self.notifier else {
            return;
        };
        match self.sop_store.get(&h.number) {
            Ok(t) => {
                let _ = n.notify(ticket_event(&self.sop_store, &t, h, kind));
            }
            Err(e) => warn!(task = "health", ticket = %h.number, error = %e, "cannot notify"),
        }
    }

    fn decide(&mut self, d: Decision, now_us: i64) -> Result<Option<HealthEvent>, StoreError> {
        let zone = self.sop_store.calendar().zone();
        match d {
            Decision::Open { incident, evidence } => {
                let at = utc(incident.opened_at.max(0));
                let info = TicketInfo {
                    number: String::new(),
                    opd: incident.opd.clone(),
                    opd_name: self.opd_names.get(&incident.opd).cloned(),
                    origin: Origin::Detected,
                    problem: incident.sentence.clone(),
                    reason: incident.reason.clone(),
                    device: incident.subject.device_id().map(str::to_string),
                    link: incident.subject.link_name().map(str::to_string),
                    opened_at: at,
                };
                // Bahasa Indonesia with local times, for e-mail and the health log.
                let problem_id = info.problem_text(Lang::Id, self.sop_store.calendar());
                let mut h = TicketHealth {
                    number: String::new(),
                    incident: Some(incident.key.clone()),
                    problem_id: problem_id.clone(),
                    recovered_at: None,
                    occurrences: incident.occurrences,
                    affected: incident.affected.clone(),
                    flapping: incident.flapping,
                    evidence: Vec::new(),
                    notes: vec![match &incident.reason {
                        Some(reason) => TicketNote::new(
                            at,
                            Note::Opened {
                                reason: reason.clone(),
                            },
                            &zone,
                        ),
                        None => TicketNote {
                            at,
                            kind: "opened".into(),
                            text: format!("dibuka otomatis: {problem_id}"),
                            note: None,
                        },
                    }],
                    notify_seq: 1,
                };
                h.add_evidence(evidence);
                // The SOP ticket, its health record and the incident in one
                // transaction: a crash leaves all of them or none, so the
                // incident key never points nowhere and never opens twice.
                // The incident is looked up in that transaction too: another
                // collector on the same database may have opened it since
                // this engine last looked (writers take turns there).
                let opened = self.sop_store.open_with(
                    info,
                    TICKET_PREFIX,
                    false,
                    &Actor::system(),
                    utc(now_us),
                    |w, t| {
                        let db = |e: StoreError| crate::sop::store::StoreError::Db(e.to_string());
                        if let Some(open) =
                            TicketStore::open_incident_in(w, &incident.key).map_err(db)?
                        {
                            return Err(crate::sop::store::StoreError::IncidentOpen {
                                key: incident.key.clone(),
                                ticket: open.ticket,
                            });
                        }
                        h.number = t.info.number.clone();
                        TicketStore::create_in(w, &h, Some(&incident)).map_err(db)
                    },
                );
                match opened {
                    Ok(_) => {}
                    Err(crate::sop::store::StoreError::IncidentOpen { key, ticket }) => {
                        // Its ticket goes on; this engine attaches to it
                        // from now (the store maps the key to it), and the
                        // opening was notified by whoever opened it.
                        info!(task = "health", %ticket, incident = %key, "incident already has a ticket; not opening another");
                        return Ok(None);
                    }
                    Err(e) => {
                        return Err(StoreError::Decode {
                            what: "sop ticket",
                            message: e.to_string(),
                        });
                    }
                }
                info!(task = "health", ticket = %h.number, incident = %incident.key, problem = %incident.sentence, "ticket opened");
                self.notify(&h, EventKind::Opened);
                Ok(Some(HealthEvent {
                    ts_us: incident.opened_at,
                    kind: HealthEventKind::Opened,
                    ..subject_event(
                        &incident.subject,
                        &incident.opd,
                        &incident.sentence,
                        Some(h.number),
                    )
                }))
            }
            Decision::Attach {
                key,
                at,
                occurrences,
                evidence,
            } => {
                let Some(number) = self.save_incident(&key)? else {
                    return Ok(None);
                };
                let t = self.store.update(&number, |t| {
                    t.occurrences = occurrences;
                    t.recovered_at = None;
                    t.add_evidence(evidence);
                    t.notes.push(TicketNote::new(
                        utc(at),
                        Note::Occurrence { count: occurrences },
                        &zone,
                    ));
                })?;
                Ok(Some(t).map(|t| HealthEvent {
                    ts_us: at,
                    kind: HealthEventKind::Occurrence,
                    ..self.ticket_subject_event(&t, &format!("occurrence {occurrences} attached"))
                }))
            }
            Decision::Evidence { key, evidence } => {
                let Some(number) = self.save_incident(&key)? else {
                    return Ok(None);
                };
                let n = evidence.len();
                self.store.update(&number, |t| {
                    t.add_evidence(evidence);
                    t.notes.push(TicketNote::new(
                        utc(now_us),
                        Note::Evidence { readings: n },
                        &zone,
                    ));
                })?;
                Ok(None)
            }
            Decision::Affected { key, device, at } => {
                let Some(number) = self.save_incident(&key)? else {
                    return Ok(None);
                };
                let t = self.store.update(&number, |t| {
                    t.affected.insert(device.clone());
                    t.notes.push(TicketNote::new(
                        utc(at),
                        Note::Affected {
                            device: device.clone(),
                        },
                        &zone,
                    ));
                })?;
                Ok(Some(t).map(|t| HealthEvent {
                    ts_us: at,
                    kind: HealthEventKind::Affected,
                    ..self
                        .ticket_subject_event(&t, &format!("{device} unreachable because of this"))
                }))
            }
            Decision::Recovered { key, at, .. } => {
                let Some(number) = self.save_incident(&key)? else {
                    return Ok(None);
                };
                let t = self.store.update(&number, |t| {
                    t.recovered_at = Some(utc(at));
                    t.notify_seq += 1;
                    t.notes
                        .push(TicketNote::new(utc(at), Note::Recovered { at }, &zone));
                })?;
                info!(task = "health", ticket = %t.number, incident = %key, "recovered");
                self.notify(&t, EventKind::Recovered);
                Ok(Some(t).map(|t| HealthEvent {
                    ts_us: at,
                    kind: HealthEventKind::Recovered,
                    ..self.ticket_subject_event(&t, &{
                        let c = self.sop_store.calendar();
                        format!("recovered at {} {}", c.fmt_local(utc(at)), c.zone_abbr())
                    })
                }))
            }
            Decision::Flapping {
                key,
                flapping,
                pct,
                at,
            } => {
                let Some(number) = self.save_incident(&key)? else {
                    return Ok(None);
                };
                let t = self.store.update(&number, |t| {
                    t.flapping |= flapping;
                    t.notes.push(TicketNote::new(
                        utc(at),
                        Note::Flapping {
                            started: flapping,
                            pct,
                        },
                        &zone,
                    ));
                })?;
                let what = if flapping {
                    format!("flapping started ({pct:.0} % state change)")
                } else {
                    format!("flapping stopped ({pct:.0} % state change)")
                };
                Ok(Some(t).map(|t| HealthEvent {
                    ts_us: at,
                    kind: HealthEventKind::Flapping,
                    flapping,
                    ..self.ticket_subject_event(&t, &what)
                }))
            }
            Decision::Unconfirmed { key, device, at } => {
                let Some(number) = self.save_incident(&key)? else {
                    return Ok(None);
                };
                let t = self.store.update(&number, |t| {
                    t.notes
                        .push(TicketNote::new(utc(at), Note::NotConfirmed { at }, &zone));
                })?;
                warn!(task = "health", ticket = %t.number, incident = %key, %device, "linkDown trap not confirmed by polling");
                Ok(Some(t).map(|t| HealthEvent {
                    ts_us: at,
                    kind: HealthEventKind::NotConfirmed,
                    ..self.ticket_subject_event(
                        &t,
                        "linkDown trap not confirmed by polling: the next poll found the link up",
                    )
                }))
            }
            Decision::Close {
                key,
                reason,
                stable_for,
                at,
            } => {
                let Some(number) = self.save_incident(&key)? else {
                    return Ok(None);
                };
                // The void and its note in one transaction: whoever sees the
                // ticket closed sees why.
                let mut health = None;
                let (_, outcome) = self
                    .sop_store
                    .act_with(
                        &number,
                        Action::Void {
                            reason: reason.sentence_id(stable_for),
                        },
                        &Actor::system(),
                        utc(now_us),
                        |w, _, outcome| {
                            let closed = outcome.is_ok();
                            let h = TicketStore::update_in(w, &number, |t| {
                                t.notes.push(TicketNote::new(
                                    utc(at),
                                    Note::Closed {
                                        reason,
                                        stable_for,
                                        closed,
                                    },
                                    &zone,
                                ));
                            })
                            .map_err(|e| crate::sop::store::StoreError::Db(e.to_string()))?;
                            health = Some(h);
                            Ok(())
                        },
                    )
                    .map_err(|e| StoreError::Decode {
                        what: "sop ticket",
                        message: e.to_string(),
                    })?;
                let closed = outcome.is_ok();
                let t = health.ok_or_else(|| StoreError::Decode {
                    what: "ticket health",
                    message: format!("no health record written for {number}"),
                })?;
                let event = self.ticket_subject_event(
                    &t,
                    &if closed {
                        format!("closed by the collector: {}", reason.sentence(stable_for))
                    } else {
                        format!(
                            "{}; left open: people already act on the ticket",
                            reason.sentence(stable_for)
                        )
                    },
                );
                if closed {
                    // The ticket is done: the next fault opens a new one.
                    self.engine.close(&key);
                    self.store.remove_incident(&key)?;
                    info!(task = "health", ticket = %t.number, incident = %key, reason = reason.as_str(), "ticket closed by the collector");
                }
                Ok(Some(HealthEvent {
                    ts_us: at,
                    kind: if closed {
                        HealthEventKind::Closed
                    } else {
                        HealthEventKind::NotClosed
                    },
                    ..event
                }))
            }
            Decision::Suppressed {
                subject,
                opd,
                reason,
                at,
                ..
            } => {
                info!(task = "health", subject = %subject, reason = %reason, "no ticket: maintenance window");
                Ok(Some(HealthEvent {
                    ts_us: at,
                    kind: HealthEventKind::Suppressed,
                    ..subject_event(&subject, &opd, &reason, None)
                }))
            }
        }
    }
}

fn subject_text(s: &Subject) -> String {
    match s {
        Subject::Device { device } => format!("device {device}"),
        Subject::Link { device, link } => format!("link {device}/{link}"),
        Subject::Opd { opd } => format!("opd {opd}"),
        Subject::Resource { device, resource } => {
            format!("device {device} {}", resource.as_str())
        }
    }
}

fn subject_event(s: &Subject, opd: &str, reason: &str, ticket: Option<String>) -> HealthEvent {
    HealthEvent {
        ts_us: 0,
        // Every caller says what happened.
        kind: HealthEventKind::State,
        subject: subject_text(s),
        device: s.device_id().map(str::to_string),
        link: s.link_name().map(str::to_string),
        opd: opd.to_string(),
        from: None,
        to: None,
        flapping: false,
        reason: reason.to_string(),
        ticket,
    }
}

fn state_event(c: &StateChange) -> HealthEvent {
    HealthEvent {
        ts_us: c.at,
        kind: HealthEventKind::State,
        from: Some(c.from),
        to: Some(c.to),
        flapping: c.flapping,
        ..subject_event(&c.subject, &c.opd, &c.reason, None)
    }
}

/// Input of the health task.
#[derive(Debug)]
pub enum Input {
    /// Samples stored for the agent of an OPD.
    Samples {
        /// The OPD.
        opd: String,
        /// The samples (shared with the store's writer).
        samples: Arc<[Sample]>,
    },
    /// The agent of an OPD is alive.
    Heartbeat {
        /// The OPD.
        opd: String,
    },
    /// A new inventory.
    Inventory(Arc<Inventory>),
    /// Watch these OPDs' agents for silence: (OPD, when last heard).
    Watch(Vec<(String, Option<i64>)>),
    /// The OPD leases changed.
    Leases(crate::lease::Changed),
}

/// The handle ingest and the admin API hold.
#[derive(Debug, Clone)]
pub struct HealthHandle {
    tx: mpsc::Sender<Input>,
    shared: Arc<Shared>,
}

impl HealthHandle {
    /// Samples stored for `opd`'s agent. Never waits: a full queue skips them for health (counted).
    pub fn samples(&self, opd: &str, samples: impl Into<Arc<[Sample]>>) {
        let samples = samples.into();
        let n = samples.len();
        if self
            .tx
            .try_send(Input::Samples {
                opd: opd.to_string(),
                samples,
            })
            .is_err()
        {
            let skipped = self.shared.skipped_batches.inc() + 1;
            warn!(
                task = "health",
                opd,
                samples = n,
                skipped,
                "health queue full: batch skipped for health"
            );
        }
    }

    /// The agent of `opd` is alive. Never waits.
    pub fn heartbeat(&self, opd: &str) {
        let _ = self.tx.try_send(Input::Heartbeat {
            opd: opd.to_string(),
        });
    }

    /// A new inventory.
    pub fn inventory(&self, inv: Arc<Inventory>) {
        let _ = self.tx.try_send(Input::Inventory(inv));
    }

    /// Watch the agents of these OPDs for silence from now on, each with
    /// the time it was last heard (`None`: never). Waits for room: it is
    /// sent at start and on reload, and must not be lost.
    pub async fn watch(&self, agents: Vec<(String, Option<i64>)>) {
        let _ = self.tx.send(Input::Watch(agents)).await;
    }

    /// The OPD leases changed. Waits for room: a lost change would leave
    /// an OPD judged twice or by nobody.
    pub async fn leases(&self, c: crate::lease::Changed) {
        let _ = self.tx.send(Input::Leases(c)).await;
    }

    /// Shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// The incident key a decision about an open incident names.
fn decision_key(d: &Decision) -> Option<&str> {
    match d {
        Decision::Open { .. } | Decision::Suppressed { .. } => None,
        Decision::Attach { key, .. }
        | Decision::Evidence { key, .. }
        | Decision::Affected { key, .. }
        | Decision::Recovered { key, .. }
        | Decision::Unconfirmed { key, .. }
        | Decision::Close { key, .. }
        | Decision::Flapping { key, .. } => Some(key),
    }
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// Starts the health engine on a thread of its own, as the ingest writer
/// has: its ticks read and commit the store (windows, incidents, tickets),
/// which must not hold up the async workers that serve calls. It ends when
/// `cancel` fires or every handle is gone; the task returned ends with it.
pub fn spawn(
    mut core: HealthCore,
    capacity: usize,
    cancel: CancellationToken,
) -> std::io::Result<(HealthHandle, tokio::task::JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::channel(capacity.max(1));
    let shared = core.shared();
    // The thread's own runtime drives only this loop's timer and queue.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("health-engine".into())
        .spawn(move || {
            // Dropped when the thread ends, by a panic too: the task ends.
            let _done = done_tx;
            rt.block_on(async move {
                info!(task = "health", "health engine started");
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => core.tick(now_us()),
                        input = rx.recv() => match input {
                            None => break,
                            Some(Input::Samples { opd, samples }) => core.samples(&opd, &samples, now_us()),
                            Some(Input::Heartbeat { opd }) => core.heartbeat(&opd, now_us()),
                            Some(Input::Inventory(inv)) => core.set_inventory(&inv),
                            Some(Input::Watch(agents)) => core.watch_agents(agents, now_us()),
                            Some(Input::Leases(c)) => core.leases_changed(&c, now_us()),
                        },
                    }
                }
                info!(task = "health", "health engine stopped");
            });
        })?;
    let task = tokio::spawn(async move {
        let _ = done_rx.await;
    });
    Ok((HealthHandle { tx, shared }, task))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use siaga_proto::v1::{IcmpResult, sample::Kind};

    use super::*;
    use crate::sop::Calendar;
    use crate::sop::file::DEFAULT_SOP;
    use crate::ticket::api;

    const SEC: i64 = 1_000_000;
    // 2026-11-24 03:00:00 UTC.
    const T0: i64 = 1_795_489_200 * SEC;

    const INV: &str = r#"
interval = "10s"
[[opd]]
id = "dinkes"
name = "Dinas Kesehatan"
[[device]]
id = "dinkes-rtr"
opd = "dinkes"
kind = "router"
address = "198.18.1.1"
[[device]]
id = "dinkes-sw1"
opd = "dinkes"
kind = "switch"
address = "198.18.1.2"
parent = "dinkes-rtr"
[[device]]
id = "dinkes-sw2"
opd = "dinkes"
kind = "switch"
address = "198.18.1.3"
parent = "dinkes-rtr"
"#;

    fn icmp(device: &str, t: i64, loss: f64) -> Sample {
        let received = ((100.0 - loss) / 10.0).round() as u32;
        Sample {
            seq: (t / SEC) as u64,
            ts_us: t,
            device: device.into(),
            kind: Some(Kind::Icmp(IcmpResult {
                sent: 10,
                received,
                loss_pct: loss,
                rtt_avg_us: (received > 0).then_some(1_000),
                jitter_us: (received > 0).then_some(100),
                ..Default::default()
            })),
        }
    }

    fn core(dir: &Path) -> HealthCore {
        let inv = Inventory::parse(Path::new("inventory.toml"), INV).unwrap();
        let db = Arc::new(redb::Database::create(dir.join("tickets.redb")).unwrap());
        let sop_store = Arc::new(
            SopStore::new(
                db.clone(),
                DEFAULT_SOP,
                Path::new("sop.toml"),
                Calendar::default(),
            )
            .unwrap(),
        );
        sop_store.init().unwrap();
        let store = Arc::new(TicketStore::new(db).unwrap());
        HealthCore::new(HealthRules::default(), &inv, store, sop_store, None).unwrap()
    }

    fn cycle(c: &mut HealthCore, n: i64, loss: &[(&str, f64)]) {
        let t = T0 + n * 10 * SEC;
        let samples: Vec<Sample> = loss.iter().map(|(d, l)| icmp(d, t, *l)).collect();
        c.samples("dinkes", &samples, t);
        c.tick(t + SEC);
    }

    /// The tickets as the `Tickets` service lists them, by number.
    fn tickets(c: &HealthCore) -> Vec<siaga_proto::v1::Ticket> {
        let mut l = c.sop_store.list().unwrap();
        l.sort_by(|a, b| a.info.number.cmp(&b.info.number));
        l.iter()
            .map(|t| api::ticket_of(&c.store, &c.sop_store, t, Utc::now()).unwrap())
            .collect()
    }

    /// Ticket `id` as the `Tickets` service shows it.
    fn detail(c: &HealthCore, id: &str) -> siaga_proto::v1::TicketDetail {
        let t = c.sop_store.get(&id.to_ascii_uppercase()).unwrap();
        api::detail_of(&c.store, &c.sop_store, &t, Vec::new(), Utc::now()).unwrap()
    }

    const ALL_OK: [(&str, f64); 3] = [
        ("dinkes-rtr", 0.0),
        ("dinkes-sw1", 0.0),
        ("dinkes-sw2", 0.0),
    ];
    const RTR_DOWN: [(&str, f64); 3] = [
        ("dinkes-sw1", 100.0),
        ("dinkes-sw2", 100.0),
        ("dinkes-rtr", 100.0),
    ];

    /// The test's runtime has one thread, and the test holds it without
    /// yielding while it waits: only an engine on a thread of its own can
    /// take the samples meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn the_engine_runs_on_its_own_thread_not_on_the_async_workers() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let (h, task) = spawn(core(dir.path()), 16, cancel.clone()).unwrap();
        let now = now_us();
        for i in 0..3 {
            let t = now + i * SEC;
            h.samples(
                "dinkes",
                vec![
                    icmp("dinkes-rtr", t, 0.0),
                    icmp("dinkes-sw1", t, 0.0),
                    icmp("dinkes-sw2", t, 0.0),
                ],
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while h.shared().device_state("dinkes-rtr") == crate::health::state::Health::Unknown {
            assert!(
                std::time::Instant::now() < deadline,
                "the engine took no sample while the async worker was busy"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        cancel.cancel();
        task.await.unwrap();
    }

    #[test]
    fn a_router_down_opens_one_ticket_waiting_on_step_two_that_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut c = core(dir.path());
            for n in 0..3 {
                cycle(&mut c, n, &ALL_OK);
            }
            for n in 3..6 {
                cycle(&mut c, n, &RTR_DOWN);
            }
            let list = tickets(&c);
            assert_eq!(list.len(), 1, "{list:#?}");
            let t = &list[0];
            assert_eq!(t.id, "PJ-2026-0001");
            assert_eq!(t.device, "dinkes-rtr");
            assert_eq!(t.link, "");
            assert_eq!(t.origin(), siaga_proto::v1::ticket::Origin::Detected);
            // The detection is the request: step 1 is done, the Kepala Dinas disposes.
            assert_eq!(t.step, 2);
            assert_eq!(t.role, "kepala_dinas");
            assert_eq!(t.affected, ["dinkes-sw1", "dinkes-sw2"]);
            assert_eq!(c.shared().device_state("dinkes-sw1"), Health::Unreachable);
            assert_eq!(c.shared().device_state("dinkes-rtr"), Health::Down);
            // The Kepala Dinas sees it in the inbox; the OPD and the helpdesk not yet.
            let inbox = |roles: &[&str]| {
                let actor = Actor::new("budi", roles);
                crate::sop::api::inbox(&c.sop_store, &actor, Utc::now())
                    .unwrap()
                    .len()
            };
            assert_eq!(inbox(&["kepala_dinas"]), 1);
            assert_eq!(inbox(&["pemohon"]), 0);
            assert_eq!(inbox(&["helpdesk"]), 0);
        }
        // Restart with the router still down: no second ticket.
        let mut c = core(dir.path());
        for n in 6..10 {
            cycle(&mut c, n, &RTR_DOWN);
        }
        let l = tickets(&c);
        assert_eq!(l.len(), 1, "{l:#?}");
        // It recovers: recorded on the ticket, which stays open.
        for n in 10..14 {
            cycle(&mut c, n, &ALL_OK);
        }
        let t = detail(&c, "pj-2026-0001");
        let ticket = t.ticket.clone().unwrap();
        assert!(ticket.recovered_at.is_some(), "{t:#?}");
        assert!(!ticket.closed);
        assert!(
            t.notes
                .iter()
                .any(|n| n.text.starts_with("pulih pada 2026-11-24"))
        );
        assert!(!t.evidence.is_empty());
        assert_eq!(t.trail[0].event.as_ref().unwrap().kind().word(), "opened");
        let open = tickets(&c).into_iter().filter(|t| !t.closed).count();
        assert_eq!(open, 1);
        let events = serde_json::to_value(c.store.events_since(0, 1000).unwrap()).unwrap();
        let kinds: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"opened") && kinds.contains(&"recovered"),
            "{kinds:?}"
        );
    }

    #[test]
    fn an_opened_ticket_has_its_health_record_and_incident_from_the_same_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = core(dir.path());
        for n in 0..3 {
            cycle(&mut c, n, &ALL_OK);
        }
        for n in 3..5 {
            cycle(&mut c, n, &[("dinkes-rtr", 0.0), ("dinkes-sw1", 40.0)]);
        }
        let tickets = c.sop_store.list().unwrap();
        assert_eq!(tickets.len(), 1);
        let number = &tickets[0].info.number;
        let h = c.store.get(number).unwrap().unwrap();
        assert_eq!(h.incident.as_deref(), Some("device:dinkes-sw1:loss"));
        assert_eq!(h.occurrences, 1);
        let o = c.store.incident("device:dinkes-sw1:loss").unwrap().unwrap();
        assert_eq!(&o.ticket, number);
    }

    #[test]
    fn a_full_queue_skips_the_batch_and_counts_it() {
        let (tx, _rx) = mpsc::channel(1);
        let h = HealthHandle {
            tx,
            shared: Arc::default(),
        };
        h.samples("dinkes", vec![icmp("dinkes-sw1", T0, 0.0)]);
        assert_eq!(h.shared().skipped_batches.get(), 0);
        h.samples("dinkes", vec![icmp("dinkes-sw1", T0 + SEC, 0.0)]);
        assert_eq!(h.shared().skipped_batches.get(), 1);
    }

    #[test]
    fn maintenance_windows_from_the_api_suppress_tickets() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = core(dir.path());
        use siaga_proto::v1;
        let req = v1::AddMaintenanceWindowRequest {
            scope: Some(v1::MaintenanceScope {
                kind: v1::maintenance_scope_kind::Kind::Device.into(),
                device: "dinkes-sw1".into(),
                ..Default::default()
            }),
            schedule: Some(v1::MaintenanceSchedule {
                kind: v1::maintenance_schedule::Kind::Once.into(),
                start: Some(super::super::wire::ts_us(T0)),
                end: Some(super::super::wire::ts_us(T0 + 3600 * SEC)),
                ..Default::default()
            }),
            reason: "ganti switch".into(),
        };
        // A requester may not add one: the policy table says so.
        let rule = crate::api::policy::rule_of("/siaga.v1.Tickets/AddMaintenanceWindow").unwrap();
        let pemohon = crate::api::Caller {
            name: "x".into(),
            roles: vec![crate::role::Role::PEMOHON],
            opd: Some("dinkes".into()),
        };
        let refused = crate::api::gate::allowed(rule, &pemohon);
        assert!(refused.unwrap_err().to_string().contains("is for admin"));
        let week = std::time::Duration::from_secs(7 * 86_400);
        let w = api::add_window(&c.store, &req, "budi", week).unwrap();
        assert_eq!(w.id, 1);
        assert_eq!(w.created_by, "budi");
        for n in 0..3 {
            cycle(&mut c, n, &ALL_OK);
        }
        for n in 3..7 {
            cycle(&mut c, n, &[("dinkes-rtr", 0.0), ("dinkes-sw1", 40.0)]);
        }
        assert_eq!(tickets(&c).len(), 0);
        let events = serde_json::to_value(c.store.events_since(0, 1000).unwrap()).unwrap();
        let why: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "suppressed")
            .map(|e| e["reason"].as_str().unwrap())
            .collect();
        assert_eq!(why.len(), 1);
        assert!(
            why[0].contains("inside maintenance window 1: ganti switch"),
            "{why:?}"
        );
        assert_eq!(c.store.windows().unwrap().len(), 1);
        api::remove_window(&c.store, 1).unwrap();
        assert_eq!(c.store.windows().unwrap().len(), 0);
        // Without the window the fault opens its ticket.
        cycle(&mut c, 7, &[("dinkes-rtr", 0.0), ("dinkes-sw1", 40.0)]);
        let list = tickets(&c);
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0].problem,
            "Packet loss 40 % on dinkes-sw1 (threshold 20 %)"
        );
    }
}
