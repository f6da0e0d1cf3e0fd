//! What the running collector's tasks share: the inventory in force, the
//! agents it knows, the enrolled users, the store and its writer, metrics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::StoreError;
use crate::inventory::Inventory;
use crate::metrics::Metrics;
use crate::pki::EnrolledAgent;
use crate::revoke::RevocationList;
use crate::store::{AgentRecord, Store, Writer};
use crate::users::{self, User};

/// How often the users of the shared database are read again.
pub const SHARED_USERS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// An agent as the running collector sees it.
#[derive(Debug, Clone, Default)]
pub struct LiveAgent {
    /// The persistent part.
    pub record: AgentRecord,
    /// Open streams (normally 0 or 1).
    pub streams: u32,
    /// notAfter of the certificate it last connected with (µs since the
    /// epoch; 0 = not seen since the collector started).
    pub cert_not_after_us: i64,
}

/// Shared state of the running collector.
#[derive(Debug)]
pub struct Hub {
    /// The inventory in force; replaced on a successful reload.
    pub inventory: watch::Sender<Arc<Inventory>>,
    /// Agents by id.
    pub agents: Mutex<HashMap<String, LiveAgent>>,
    /// Enrolled users by name.
    pub users: RwLock<HashMap<String, User>>,
    /// Where the user files live.
    pub users_dir: PathBuf,
    /// Users of the database shared with the other collectors, by name:
    /// they win over a user file of the same name (`trust.rs`).
    shared_users: RwLock<HashMap<String, User>>,
    /// That database (`[store] url`); `None`: the user files alone.
    shared: Option<crate::kv::Db>,
    /// Whether they changed since a name was last looked for there.
    users_watch: users::DirWatch,
    /// The store (reads).
    pub store: Arc<dyn Store>,
    /// The single writer (all writes).
    pub writer: Writer,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Cancelled on shutdown.
    pub cancel: CancellationToken,
    /// The health engine, tickets and notifications.
    pub health: Arc<crate::ticket::HealthPart>,
    /// The tickets' work reports (drafts, and the frozen finals).
    pub reports: Arc<crate::report::Reports>,
    /// Revoked client certificates (`<data_dir>/revoked.toml`, and the
    /// database shared with the other collectors when there is one).
    pub revoked: RevocationList,
    /// Client certificates already read, per connection.
    pub peers: crate::auth::PeerCache,
    /// The data directory (backups make their copies in it).
    pub data_dir: PathBuf,
    /// Measurements on command and the routes to the agents.
    pub measure: Arc<crate::measure::MeasureService>,
    /// Discoveries running on the agents.
    pub discover: crate::discover::DiscoverService,
    /// The agents enrolled with the CA (read at start and on reload).
    pub enrolled: RwLock<Vec<EnrolledAgent>>,
    /// Samples stamped later than now plus this are refused (µs).
    pub max_clock_skew_us: std::sync::atomic::AtomicI64,
    /// Each person's calls in flight, gRPC and web pages alike: the one
    /// per-person limit ([`crate::api::limits::MAX_CALLS_PER_USER`]).
    pub calls: crate::api::gate::InFlight,
}

/// The OPDs whose agents the health engine watches for silence: every OPD of
/// the inventory with an enrolled agent or one heard before (enrolled before
/// enrollments were recorded), each with the last time any of its agents was
/// heard (`None`: never).
pub fn agents_to_watch(
    inventory: &Inventory,
    enrolled: &[EnrolledAgent],
    known: &[AgentRecord],
) -> Vec<(String, Option<i64>)> {
    let mut out: std::collections::BTreeMap<String, Option<i64>> =
        std::collections::BTreeMap::new();
    for a in enrolled {
        if inventory.opds.contains_key(&a.opd) {
            out.entry(a.opd.clone()).or_insert(None);
        }
    }
    for r in known {
        if inventory.opds.contains_key(&r.opd) {
            let heard = (r.last_seen_us > 0).then_some(r.last_seen_us);
            let e = out.entry(r.opd.clone()).or_insert(None);
            *e = (*e).max(heard);
        }
    }
    out.into_iter().collect()
}

/// The OPDs of the inventory that have devices but no agent, enrolled or heard.
pub fn opds_without_agent(
    inventory: &Inventory,
    enrolled: &[EnrolledAgent],
    known: &[AgentRecord],
) -> Vec<String> {
    let mut with_devices: std::collections::BTreeSet<&str> =
        inventory.devices.values().map(|d| d.opd.as_str()).collect();
    for a in enrolled {
        with_devices.remove(a.opd.as_str());
    }
    for r in known {
        with_devices.remove(r.opd.as_str());
    }
    with_devices.into_iter().map(str::to_string).collect()
}

impl Hub {
    /// The measurements of ticket `number` as the API sends them (none,
    /// with a warning, when they cannot be read: the ticket is still shown).
    pub fn ticket_measurements(&self, number: &str) -> Vec<siaga_proto::v1::Measurement> {
        match self.measure.for_ticket(number) {
            Ok(ms) => ms.iter().map(crate::measure::wire::measurement).collect(),
            Err(e) => {
                tracing::warn!(ticket = %number, error = %e, "cannot read the ticket's measurements");
                Vec::new()
            }
        }
    }

    /// After an SOP step taken without error on ticket `number`: the
    /// ticket's parts each do what follows it (announcements; a disposal of
    /// the review freezes the work report).
    pub fn after_step(&self, number: &str, step: crate::sop::workflow::StepTaken) {
        self.health.after_step(number, step);
        if step == crate::sop::workflow::StepTaken::Disposed {
            let number = number.trim().to_ascii_uppercase();
            self.reports.after_dispose(&number, chrono::Utc::now());
        }
    }

    /// Builds the hub, loading the known agents from the store.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        inventory: Inventory,
        users: HashMap<String, User>,
        users_dir: PathBuf,
        store: Arc<dyn Store>,
        writer: Writer,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
        revoked: RevocationList,
        data_dir: PathBuf,
        health: Arc<crate::ticket::HealthPart>,
        reports: Arc<crate::report::Reports>,
        measure: Arc<crate::measure::MeasureService>,
    ) -> Result<Self, StoreError> {
        let agents = store
            .agents()?
            .into_iter()
            .map(|record| {
                (
                    record.id.clone(),
                    LiveAgent {
                        record,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let (inventory, _) = watch::channel(Arc::new(inventory));
        let discover = crate::discover::DiscoverService::new(metrics.discoveries_busy.clone());
        Ok(Hub {
            inventory,
            agents: Mutex::new(agents),
            users: RwLock::new(users),
            users_dir,
            shared_users: RwLock::new(HashMap::new()),
            shared: None,
            users_watch: users::DirWatch::default(),
            store,
            writer,
            metrics,
            cancel,
            health,
            reports,
            revoked,
            peers: crate::auth::PeerCache::default(),
            data_dir,
            measure,
            discover,
            enrolled: RwLock::new(Vec::new()),
            max_clock_skew_us: std::sync::atomic::AtomicI64::new(
                crate::config::IngestConfig::default().max_clock_skew_us(),
            ),
            calls: crate::api::gate::InFlight::new(crate::api::limits::MAX_CALLS_PER_USER),
        })
    }

    /// The hub with the users of `shared` (the database shared with the
    /// other collectors) besides its user files; read them with
    /// [`Hub::refresh_shared_users`].
    pub fn with_shared_users(mut self, shared: Option<crate::kv::Db>) -> Self {
        self.shared = shared;
        self
    }

    /// Whether users are shared with other collectors through the database.
    pub fn shares_users(&self) -> bool {
        self.shared.is_some()
    }

    /// The database users are shared in, if they are.
    pub fn shared(&self) -> Option<&crate::kv::Db> {
        self.shared.as_ref()
    }

    /// Re-reads the users of the shared database (at start, on reload and
    /// every [`SHARED_USERS_POLL`]). A user with a role the SOP does not
    /// know is left out, logged; the database unreadable keeps the users
    /// read before.
    pub fn refresh_shared_users(&self) {
        let Some(db) = &self.shared else { return };
        let all = match crate::trust::users(db) {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "users in the database unreadable; those read before stay in force");
                return;
            }
        };
        let known = self.known_roles();
        let mut out = HashMap::new();
        for u in all {
            if let Some(bad) = u
                .roles
                .iter()
                .find(|r| crate::role::Role::parse(r.as_str(), &known).is_err())
            {
                tracing::error!(user = %u.name, role = %bad, "user in the database left out: a role the SOP file does not name; add it to the SOP as a [[role]], or change the person's roles with `siaga user`");
                continue;
            }
            out.insert(u.name.clone(), u);
        }
        let mut shared = self.shared_users.write().unwrap_or_else(|p| p.into_inner());
        if shared.len() != out.len() {
            tracing::info!(users = out.len(), "users in the database");
        }
        *shared = out;
    }

    /// Every user: those of the files, and of the shared database (which
    /// win on a name in both).
    pub fn all_users(&self) -> Vec<User> {
        let mut all = self.users.read().unwrap_or_else(|p| p.into_inner()).clone();
        for (name, u) in self
            .shared_users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            all.insert(name.clone(), u.clone());
        }
        all.into_values().collect()
    }

    /// The people documents name: every user file read afresh (a name
    /// added to one shows on the next document), and the shared database's
    /// users as last read.
    pub fn people(&self) -> crate::sop::People {
        let mut out = users::people(&self.users_dir);
        for (name, u) in self
            .shared_users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.insert(name.clone(), u.person());
        }
        out
    }

    /// Writes `user` to its file and, when users are shared, to the
    /// database (where the other collectors read it).
    pub fn save_user(&self, user: &User) -> Result<(), String> {
        users::write_user(&self.users_dir, user)?;
        if let Some(db) = &self.shared {
            crate::trust::put_user(db, user).map_err(|e| {
                format!(
                    "written to {}, not to the database the other collectors read: {e}",
                    self.users_dir.join(format!("{}.toml", user.name)).display()
                )
            })?;
        }
        Ok(())
    }

    /// The inventory in force.
    pub fn inventory(&self) -> Arc<Inventory> {
        self.inventory.borrow().clone()
    }

    /// Updates an agent with `f` and returns a copy of its record.
    pub fn with_agent(&self, id: &str, opd: &str, f: impl FnOnce(&mut LiveAgent)) -> AgentRecord {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let a = agents.entry(id.to_string()).or_insert_with(|| LiveAgent {
            record: AgentRecord {
                id: id.to_string(),
                opd: opd.to_string(),
                ..Default::default()
            },
            ..Default::default()
        });
        a.record.opd = opd.to_string();
        f(a);
        a.record.clone()
    }

    /// A snapshot of all agents, sorted by id.
    pub fn agents(&self) -> Vec<LiveAgent> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<LiveAgent> = agents.values().cloned().collect();
        v.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        v
    }

    /// The user `name`, re-reading the users directory when it is not known
    /// yet (it may have been enrolled while the collector runs) and the
    /// directory changed since it was last read for a name. Reads files:
    /// call it off the async workers.
    pub fn user(&self, name: &str) -> Option<User> {
        if let Some(u) = self
            .shared_users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Some(u.clone());
        }
        if let Some(u) = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Some(u.clone());
        }
        if !self.users_watch.changed(&self.users_dir) {
            return None;
        }
        match users::load_users_checked(&self.users_dir, &self.known_roles()) {
            Ok(all) => {
                let found = all.get(name).cloned();
                *self.users.write().unwrap_or_else(|p| p.into_inner()) = all;
                found
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading users failed");
                None
            }
        }
    }

    /// The enrolled agents as last read.
    pub fn enrolled(&self) -> Vec<EnrolledAgent> {
        self.enrolled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the enrolled agents (at start, on reload) and has the health
    /// engine watch every OPD with an agent; keeps the old list on error.
    pub async fn refresh_agents(&self, cfg: &crate::config::CollectorConfig) {
        match crate::pki::enrolled_agents_with(cfg, self.shared.as_ref()) {
            Ok(list) => {
                *self.enrolled.write().unwrap_or_else(|p| p.into_inner()) = list;
            }
            Err(e) => {
                tracing::error!(error = %e, "enrolled agents unreadable; the previous list stays in force")
            }
        }
        let inventory = self.inventory();
        let known: Vec<AgentRecord> = self.agents().into_iter().map(|a| a.record).collect();
        let enrolled = self.enrolled();
        for opd in opds_without_agent(&inventory, &enrolled, &known) {
            tracing::warn!(%opd, "OPD has devices but no agent enrolled: nobody probes them");
        }
        self.health
            .handle
            .watch(agents_to_watch(&inventory, &enrolled, &known))
            .await;
    }

    /// Role ids a user may hold: the SOP's `[[role]]` ids and `admin`.
    pub fn known_roles(&self) -> Vec<crate::role::Role> {
        users::roles_of(self.health.sop_store.sop())
    }

    /// Re-reads the users directory and the shared database (on reload);
    /// keeps the old set on error.
    pub fn reload_users(&self) {
        self.refresh_shared_users();
        match users::load_users_checked(&self.users_dir, &self.known_roles()) {
            Ok(all) => {
                tracing::info!(users = all.len(), "users reloaded");
                *self.users.write().unwrap_or_else(|p| p.into_inner()) = all;
            }
            Err(e) => {
                tracing::error!(error = %e, "users rejected; the previous set stays in force")
            }
        }
    }
}
