//! Routing measurements to the agents: the OPD's live agent gets the command
//! down its stream at once; with its agent offline a request fails at once,
//! or waits (queued) until the agent reconnects and expires after
//! `[measure] queue_expiry`. The agent's answer completes the record; a
//! stream that breaks while a measurement runs fails it.
//!
//! Which agent streams are open is known here (each session attaches its
//! downlink after its Hello and detaches when it ends); which measurement
//! runs on which session is kept in memory only: after a restart of the
//! collector, measurements that were running are marked failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use siaga_proto::v1::collector_message::Msg as CollectorMsg;
use siaga_proto::v1::{CollectorMessage, MeasureCommand, MeasureResult};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::{info, warn};

use super::model::{MeasureState, Measurement, Phase};
use super::store::MeasureStore;
use crate::config::MeasureConfig;
use crate::error::StoreError;

/// The downlink of one agent stream.
pub type Downlink = mpsc::Sender<Result<CollectorMessage, Status>>;

/// How long a command may wait for room on a busy stream.
const SEND_PATIENCE: Duration = Duration::from_secs(5);
/// Slack on top of a measurement's own duration before it counts as lost.
const ANSWER_SLACK: Duration = Duration::from_secs(60);

/// Why a measurement request was not taken.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// Bad arguments (InvalidArgument).
    #[error("{0}")]
    BadRequest(String),
    /// Not allowed (PermissionDenied).
    #[error("{0}")]
    Denied(String),
    /// No such ticket, device, link or measurement (NotFound).
    #[error("{0}")]
    NotFound(String),
    /// The OPD's agent is offline and the request was not to be queued
    /// (FailedPrecondition).
    #[error("{0}")]
    Offline(String),
    /// The store failed (Internal).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for MeasureError {
    fn from(e: StoreError) -> Self {
        MeasureError::Internal(e.to_string())
    }
}

#[derive(Debug, Clone)]
struct Conn {
    opd: String,
    session: u64,
    tx: Downlink,
    since: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Routes {
    next_session: u64,
    /// Open streams by agent id.
    agents: HashMap<String, Conn>,
    /// Running measurements: id → (agent, session).
    running: HashMap<String, (String, u64)>,
}

/// Measurements: the records and the routes to the agents.
#[derive(Debug)]
pub struct MeasureService {
    store: MeasureStore,
    cfg: MeasureConfig,
    routes: Mutex<Routes>,
    /// How messages write moments (the province's zone).
    zone: crate::sop::calendar::Zone,
    /// With several collectors on PostgreSQL: where an OPD's agent streams.
    leases: Arc<crate::lease::Leases>,
}

/// How long a measurement asked on one collector waits for the collector
/// its agent streams to to take it (several collectors on PostgreSQL).
pub const RELAY_WAIT: Duration = Duration::from_secs(5);

/// The command an agent gets for a measurement.
pub fn command(m: &Measurement) -> MeasureCommand {
    MeasureCommand {
        id: m.id.clone(),
        ticket: m.ticket.clone().unwrap_or_default(),
        devices: m.devices.clone(),
        links: m.links.clone(),
        icmp_count: m.icmp_count,
        window_ms: m.window_ms,
    }
}

/// The latest a running measurement may answer: its window or its burst
/// (at most 1 s per echo request), whichever is longer, plus slack.
pub fn answer_deadline(m: &Measurement, sent_at: DateTime<Utc>) -> DateTime<Utc> {
    let burst = Duration::from_secs(u64::from(m.icmp_count.max(1)));
    let window = Duration::from_millis(m.window_ms);
    let d = burst.max(window) + ANSWER_SLACK;
    sent_at + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(1))
}

impl MeasureService {
    /// The service writing the moments of its messages in `zone`
    /// ("offline since 2026-12-02 17:00 WIB").
    pub fn with_zone(mut self, zone: crate::sop::calendar::Zone) -> Self {
        self.zone = zone;
        self
    }

    /// "2026-12-02 17:00 WIB".
    fn when(&self, t: DateTime<Utc>) -> String {
        self.zone.fmt_us(t.timestamp_micros())
    }

    /// The service over `store`. Measurements left running by a previous
    /// collector process can no longer be answered: they are marked failed.
    pub fn new(store: MeasureStore, cfg: MeasureConfig) -> Result<Self, StoreError> {
        for mut m in store.open(None)? {
            if matches!(m.state, MeasureState::Running { .. }) {
                m.state = MeasureState::Failed {
                    error: "the collector restarted while the measurement ran".into(),
                };
                store.update(&m)?;
            }
        }
        Ok(Self::shared(store, cfg, crate::lease::Leases::all()))
    }

    /// Several collectors on PostgreSQL: the service over their shared
    /// store. Running measurements are left as they are (they run on
    /// another collector, or time out), a measurement for an agent
    /// streaming to another collector is relayed to it, and queued ones
    /// are taken by whichever collector the agent streams to
    /// ([`Self::pickup`]).
    pub fn shared(
        store: MeasureStore,
        cfg: MeasureConfig,
        leases: Arc<crate::lease::Leases>,
    ) -> Self {
        Self {
            store,
            cfg,
            routes: Mutex::new(Routes::default()),
            zone: Default::default(),
            leases,
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open stream of an OPD (the most recently connected agent).
    fn live(&self, opd: &str) -> Option<(String, Conn)> {
        self.routes()
            .agents
            .iter()
            .filter(|(_, c)| c.opd == opd)
            .max_by_key(|(_, c)| c.since)
            .map(|(a, c)| (a.clone(), c.clone()))
    }

    /// The agent of `opd` with its stream open, the stream's session (as
    /// [`MeasureService::attach`] returned it) and its downlink: the route
    /// other commands (a discovery) take too.
    pub fn route(&self, opd: &str) -> Option<(String, u64, Downlink)> {
        self.live(opd).map(|(a, c)| (a, c.session, c.tx))
    }

    /// Whether an agent of `opd` has its stream open.
    pub fn online(&self, opd: &str) -> bool {
        self.live(opd).is_some()
    }

    /// Takes a request: sent to the OPD's agent now; or, with the agent
    /// offline, queued (`queue`) or refused with what to do. `last_seen`
    /// is when an agent of the OPD was last heard of, for the message.
    pub async fn start(
        &self,
        mut m: Measurement,
        queue: bool,
        last_seen: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Measurement, MeasureError> {
        m.requested_at = now;
        m.completed_at = None;
        m.device_figures.clear();
        m.link_figures.clear();
        let Some((agent, conn)) = self.live(&m.opd) else {
            if self.leases.shared() && self.streams_elsewhere(&m.opd).await {
                return self.relay(m, queue, now).await;
            }
            if !queue {
                let since = match last_seen {
                    Some(t) => format!("is offline since {}", self.when(t)),
                    None => "has never connected".to_string(),
                };
                return Err(MeasureError::Offline(format!(
                    "the agent of OPD {} {since}; use --queue to run it when it reconnects",
                    m.opd
                )));
            }
            let expiry = chrono::Duration::from_std(self.cfg.queue_expiry)
                .unwrap_or(chrono::Duration::days(1));
            m.state = MeasureState::Queued {
                expires_at: now + expiry,
            };
            m.agent = None;
            let m = self.create(m).await?;
            info!(id = %m.id, opd = %m.opd, by = %m.requested_by, "measurement queued until the agent reconnects");
            return Ok(m);
        };
        m.state = MeasureState::Running { sent_at: now };
        m.agent = Some(agent.clone());
        let m = self.create(m).await?;
        info!(id = %m.id, opd = %m.opd, %agent, by = %m.requested_by, "measurement sent to the agent");
        Ok(self.send(m, &agent, &conn).await)
    }

    async fn streams_elsewhere(&self, opd: &str) -> bool {
        let leases = self.leases.clone();
        let opd = opd.to_string();
        match tokio::task::spawn_blocking(move || leases.streams_elsewhere(&opd)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                warn!(error = %e, "cannot tell where the agent streams");
                false
            }
            Err(_) => false,
        }
    }

    /// `m` for an agent streaming to another collector: stored queued for
    /// that collector to take ([`Self::pickup`]), and followed for up to
    /// [`RELAY_WAIT`] so the caller sees it running (or done). Not taken
    /// by then: queued as asked, or failed with what to do.
    async fn relay(
        &self,
        mut m: Measurement,
        queue: bool,
        now: DateTime<Utc>,
    ) -> Result<Measurement, MeasureError> {
        let expiry =
            chrono::Duration::from_std(self.cfg.queue_expiry).unwrap_or(chrono::Duration::days(1));
        m.state = MeasureState::Queued {
            expires_at: now + expiry,
        };
        m.agent = None;
        let m = self.create(m).await?;
        info!(id = %m.id, opd = %m.opd, by = %m.requested_by, "measurement relayed to the collector the agent streams to");
        let until = tokio::time::Instant::now() + RELAY_WAIT;
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match self.store.get(&m.id) {
                Ok(Some(now)) if !matches!(now.state, MeasureState::Queued { .. }) => {
                    return Ok(now);
                }
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if queue {
            return Ok(self.store.get(&m.id)?.unwrap_or(m));
        }
        let error = format!(
            "the agent of OPD {} streams to another collector, which did not take the \
             measurement within {} s; try again, or use --queue",
            m.opd,
            RELAY_WAIT.as_secs()
        );
        Ok(self.fail(&m.id, &error).unwrap_or(m))
    }

    /// Sends the queued measurements of the OPDs whose agent streams here
    /// (several collectors on PostgreSQL: one asked on another collector).
    /// Each is claimed in a write transaction first, so it is sent once.
    pub async fn pickup(&self) {
        let live: Vec<(String, Conn)> = {
            let r = self.routes();
            let mut by_opd: HashMap<String, (String, Conn)> = HashMap::new();
            for (a, c) in &r.agents {
                let newer = by_opd.get(&c.opd).is_none_or(|(_, o)| c.since > o.since);
                if newer {
                    by_opd.insert(c.opd.clone(), (a.clone(), c.clone()));
                }
            }
            by_opd.into_values().collect()
        };
        for (agent, conn) in live {
            self.send_queued(&agent, &conn.opd.clone(), &conn).await;
        }
    }

    /// The queued measurements of `opd`, claimed for `agent` and sent on `conn`.
    async fn send_queued(&self, agent: &str, opd: &str, conn: &Conn) {
        let now = Utc::now();
        let queued = match self.store.queued(opd) {
            Ok(q) => q,
            Err(e) => {
                warn!(%opd, error = %e, "cannot read the queued measurements");
                return;
            }
        };
        for m in queued {
            let Some(m) = self.settle(m, now) else {
                continue;
            };
            if !matches!(m.state, MeasureState::Queued { .. }) {
                continue;
            }
            let m = match self.store.claim(&m.id, agent, now) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    warn!(id = %m.id, error = %e, "cannot start the queued measurement");
                    continue;
                }
            };
            info!(id = %m.id, %opd, %agent, "queued measurement sent to the agent");
            self.send(m, agent, conn).await;
        }
    }

    /// Stores new measurement `m` off the async workers: the commit waits
    /// on the disk.
    async fn create(&self, m: Measurement) -> Result<Measurement, MeasureError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.create(m))
            .await
            .map_err(|e| MeasureError::Internal(format!("storing the measurement: {e}")))?
            .map_err(MeasureError::from)
    }

    /// Registers `m` as running on the session and sends its command;
    /// a stream that is gone fails it.
    async fn send(&self, m: Measurement, agent: &str, conn: &Conn) -> Measurement {
        self.routes()
            .running
            .insert(m.id.clone(), (agent.to_string(), conn.session));
        let msg = Ok(CollectorMessage {
            msg: Some(CollectorMsg::Measure(command(&m))),
        });
        let sent = tokio::time::timeout(SEND_PATIENCE, conn.tx.send(msg)).await;
        if matches!(sent, Ok(Ok(()))) {
            return m;
        }
        let error = format!("the agent {agent} disconnected before the command reached it");
        self.fail(&m.id, &error).unwrap_or(m)
    }

    /// Marks a running measurement failed; the record after.
    fn fail(&self, id: &str, error: &str) -> Option<Measurement> {
        self.routes().running.remove(id);
        let mut m = match self.store.get(id) {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(e) => {
                warn!(%id, error = %e, "cannot read the measurement");
                return None;
            }
        };
        if m.state.is_final() {
            return Some(m);
        }
        warn!(%id, %error, "measurement failed");
        m.state = MeasureState::Failed {
            error: error.to_string(),
        };
        m.completed_at = Some(Utc::now());
        if let Err(e) = self.store.update(&m) {
            warn!(%id, error = %e, "cannot record the failed measurement");
        }
        Some(m)
    }

    /// An agent's stream is open (after its Hello and inventory): it
    /// becomes the route to its OPD, and the OPD's queued measurements that
    /// have not expired are sent to it. Returns the session number for
    /// [`MeasureService::detach`].
    pub async fn attach(&self, agent: &str, opd: &str, tx: Downlink) -> u64 {
        let now = Utc::now();
        let conn = {
            let mut r = self.routes();
            r.next_session += 1;
            let conn = Conn {
                opd: opd.to_string(),
                session: r.next_session,
                tx,
                since: now,
            };
            r.agents.insert(agent.to_string(), conn.clone());
            conn
        };
        self.send_queued(agent, opd, &conn).await;
        conn.session
    }

    /// An agent's stream ended: what runs on it cannot be answered any more.
    pub fn detach(&self, agent: &str, session: u64) {
        let lost: Vec<String> = {
            let mut r = self.routes();
            if r.agents.get(agent).is_some_and(|c| c.session == session) {
                r.agents.remove(agent);
            }
            r.running
                .iter()
                .filter(|(_, (a, s))| a == agent && *s == session)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in lost {
            self.fail(
                &id,
                &format!("the agent {agent} disconnected before the result came back"),
            );
        }
    }

    /// An agent's answer. Taken only from the agent the measurement runs on;
    /// `link_device` names the device carrying an inventory link.
    pub fn answer(
        &self,
        agent: &str,
        result: &MeasureResult,
        link_device: impl Fn(&str) -> Option<String>,
    ) {
        let expected = self.routes().running.get(&result.id).cloned();
        if expected.as_ref().map(|(a, _)| a.as_str()) != Some(agent) {
            warn!(%agent, id = %result.id, "measure result for a measurement not running on this agent; ignored");
            return;
        }
        self.routes().running.remove(&result.id);
        let mut m = match self.store.get(&result.id) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                warn!(id = %result.id, error = %e, "cannot read the measurement");
                return;
            }
        };
        m.complete(result, agent, Utc::now(), link_device);
        // Only what was asked for.
        let asked = m.devices.clone();
        m.device_figures.retain(|d| asked.contains(&d.device));
        match &m.state {
            MeasureState::Failed { error } => {
                warn!(id = %m.id, %agent, %error, "the agent could not take the measurement")
            }
            _ => {
                info!(id = %m.id, %agent, devices = m.device_figures.len(), links = m.link_figures.len(), "measurement done")
            }
        }
        if let Err(e) = self.store.update(&m) {
            warn!(id = %m.id, error = %e, "cannot store the measurement's figures");
        }
    }

    /// `m` as it stands at `now`: a queued one past its expiry is expired,
    /// a running one far past its time is failed (both written back).
    fn settle(&self, mut m: Measurement, now: DateTime<Utc>) -> Option<Measurement> {
        let changed = match &m.state {
            MeasureState::Queued { expires_at } if *expires_at <= now => {
                info!(id = %m.id, opd = %m.opd, "queued measurement expired: the agent did not reconnect in time");
                m.state = MeasureState::Expired;
                true
            }
            MeasureState::Running { sent_at } if answer_deadline(&m, *sent_at) <= now => {
                self.routes().running.remove(&m.id);
                m.state = MeasureState::Failed {
                    error: format!(
                        "no answer from the agent by {}",
                        self.when(answer_deadline(&m, *sent_at))
                    ),
                };
                m.completed_at = Some(now);
                true
            }
            _ => false,
        };
        if changed && let Err(e) = self.store.update(&m) {
            warn!(id = %m.id, error = %e, "cannot update the measurement");
        }
        Some(m)
    }

    /// Expires and times out what is due (run now and then).
    pub fn sweep(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        for m in self.store.open(None)? {
            self.settle(m, now);
        }
        Ok(())
    }

    /// One measurement, as it stands now.
    pub fn get(&self, id: &str) -> Result<Option<Measurement>, StoreError> {
        let now = Utc::now();
        Ok(self.store.get(id)?.and_then(|m| self.settle(m, now)))
    }

    /// A ticket's measurements, oldest first.
    pub fn for_ticket(&self, ticket: &str) -> Result<Vec<Measurement>, StoreError> {
        let now = Utc::now();
        Ok(self
            .store
            .for_ticket(ticket)?
            .into_iter()
            .filter_map(|m| self.settle(m, now))
            .collect())
    }

    /// Whether a ticket has a finished (done) measurement before and one
    /// after the work.
    pub fn phases_done(&self, ticket: &str) -> Result<(bool, bool), StoreError> {
        let all = self.store.for_ticket(ticket)?;
        let done = |p: Phase| {
            all.iter()
                .any(|m| m.phase == Some(p) && m.state == MeasureState::Done)
        };
        Ok((done(Phase::Before), done(Phase::After)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use siaga_proto::v1::{IcmpResult, Sample, sample};

    use super::*;

    fn service(dir: &std::path::Path) -> MeasureService {
        let db = Arc::new(redb::Database::create(dir.join("t.redb")).unwrap());
        MeasureService::new(MeasureStore::new(db).unwrap(), MeasureConfig::default()).unwrap()
    }

    fn request(phase: Phase) -> Measurement {
        Measurement {
            id: String::new(),
            ticket: Some("PJ-2026-0001".into()),
            phase: Some(phase),
            opd: "dinkes".into(),
            devices: vec!["dinkes-sw1".into()],
            links: vec![],
            icmp_count: 100,
            window_ms: 10_000,
            requested_by: "teknisi".into(),
            requested_at: Utc::now(),
            completed_at: None,
            agent: None,
            state: MeasureState::Expired,
            device_figures: vec![],
            link_figures: vec![],
        }
    }

    fn answer(id: &str, loss: f64) -> MeasureResult {
        MeasureResult {
            id: id.into(),
            samples: vec![Sample {
                device: "dinkes-sw1".into(),
                kind: Some(sample::Kind::Icmp(IcmpResult {
                    sent: 100,
                    received: (100.0 - loss) as u32,
                    loss_pct: loss,
                    ..Default::default()
                })),
                ..Default::default()
            }],
            error: String::new(),
        }
    }

    fn command_of(m: Option<Result<CollectorMessage, Status>>) -> MeasureCommand {
        match m {
            Some(Ok(CollectorMessage {
                msg: Some(CollectorMsg::Measure(c)),
            })) => c,
            other => panic!("expected a measure command, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn offline_fails_at_once_or_queues_and_runs_on_reconnect() {
        let dir = tempfile::tempdir().unwrap();
        let jakarta = crate::sop::Calendar::new(&crate::sop::calendar::CalendarConfig {
            time_zone: "Asia/Jakarta".into(),
            ..Default::default()
        })
        .unwrap();
        let s = service(dir.path()).with_zone(jakarta.zone());
        let seen = "2026-12-02T10:00:03Z".parse().unwrap();
        let e = s
            .start(request(Phase::Before), false, Some(seen), Utc::now())
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the agent of OPD dinkes is offline since 2026-12-02 17:00 WIB; use --queue to run it when it reconnects"
        );
        assert!(matches!(e, MeasureError::Offline(_)));
        let q = s
            .start(request(Phase::Before), true, None, Utc::now())
            .await
            .unwrap();
        assert!(matches!(q.state, MeasureState::Queued { .. }), "{q:?}");
        assert_eq!(q.id, "M-000001", "the refused one was not stored");

        let (tx, mut rx) = mpsc::channel(8);
        let session = s.attach("dinkes-agent", "dinkes", tx).await;
        let cmd = command_of(rx.recv().await);
        assert_eq!((cmd.id.as_str(), cmd.icmp_count), ("M-000001", 100));
        assert!(matches!(
            s.get("M-000001").unwrap().unwrap().state,
            MeasureState::Running { .. }
        ));
        // Another agent cannot answer it.
        s.answer("bappeda-agent", &answer("M-000001", 50.0), |_| None);
        assert!(!s.get("M-000001").unwrap().unwrap().state.is_final());
        s.answer("dinkes-agent", &answer("M-000001", 50.0), |_| None);
        let done = s.get("M-000001").unwrap().unwrap();
        assert_eq!(done.state, MeasureState::Done);
        assert_eq!(done.agent.as_deref(), Some("dinkes-agent"));
        assert_eq!(done.device("dinkes-sw1").unwrap().loss_pct, 50.0);
        assert_eq!(s.phases_done("PJ-2026-0001").unwrap(), (true, false));

        // Online: sent at once; the stream breaking fails it.
        let m = s
            .start(request(Phase::After), false, None, Utc::now())
            .await
            .unwrap();
        assert!(matches!(m.state, MeasureState::Running { .. }));
        assert_eq!(command_of(rx.recv().await).id, m.id);
        s.detach("dinkes-agent", session);
        let failed = s.get(&m.id).unwrap().unwrap();
        assert_eq!(
            failed.state,
            MeasureState::Failed {
                error: "the agent dinkes-agent disconnected before the result came back".into()
            }
        );
        assert!(!s.online("dinkes"));
        assert_eq!(s.phases_done("PJ-2026-0001").unwrap(), (true, false));
    }

    #[tokio::test]
    async fn lapsed_queued_measurements_expire_and_are_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let long_ago = Utc::now() - chrono::Duration::days(3);
        let q = s
            .start(request(Phase::Before), true, None, long_ago)
            .await
            .unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        s.attach("dinkes-agent", "dinkes", tx).await;
        assert!(rx.try_recv().is_err(), "nothing sent");
        assert_eq!(s.get(&q.id).unwrap().unwrap().state, MeasureState::Expired);
    }

    #[tokio::test]
    async fn a_restart_fails_what_ran_and_a_silent_agent_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let s = service(dir.path());
            let (tx, _rx) = mpsc::channel(8);
            s.attach("dinkes-agent", "dinkes", tx).await;
            s.start(request(Phase::Before), false, None, Utc::now())
                .await
                .unwrap()
                .id
        };
        let s = service(dir.path());
        assert!(matches!(
            s.get(&id).unwrap().unwrap().state,
            MeasureState::Failed { ref error } if error.contains("restarted")
        ));
        let (tx, _rx) = mpsc::channel(8);
        s.attach("dinkes-agent", "dinkes", tx).await;
        let old = Utc::now() - chrono::Duration::hours(1);
        let m = s
            .start(request(Phase::After), false, None, old)
            .await
            .unwrap();
        s.sweep(Utc::now()).unwrap();
        assert!(matches!(
            s.get(&m.id).unwrap().unwrap().state,
            MeasureState::Failed { ref error } if error.starts_with("no answer from the agent")
        ));
    }
}
