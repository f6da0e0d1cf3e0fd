//! The `Admin` service for people (the `siaga` CLI). Callers are identified
//! by their `siaga://user/<name>` certificate and must be enrolled; agent
//! certificates are refused.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use siaga_proto::v1::admin_server::Admin;
use siaga_proto::v1::{self, sample::Kind};
use tonic::{Request, Response, Status};

use crate::hub::Hub;
use crate::store::StoredSample;
use crate::users::User;

/// Size of the chunks a backup is streamed in.
const BACKUP_CHUNK: usize = 1 << 20;

/// Sends what is written to it as [`v1::BackupChunk`]s of [`BACKUP_CHUNK`].
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<v1::BackupChunk, Status>>,
    buf: Vec<u8>,
    sent: u64,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BACKUP_CHUNK));
        self.sent += data.len() as u64;
        self.tx
            .blocking_send(Ok(v1::BackupChunk { data }))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the caller left"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = BACKUP_CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= BACKUP_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The admin service.
#[derive(Debug, Clone)]
pub struct AdminService {
    hub: Arc<Hub>,
}

impl AdminService {
    /// A service on `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// The person calling, as the policy gate identified them.
    fn caller<T>(&self, req: &Request<T>) -> Result<User, Status> {
        let c = crate::api::caller(req)?;
        Ok(User {
            name: c.name,
            roles: c.roles,
            opd: c.opd,
            ..Default::default()
        })
    }
}

fn us_to_ms(us: Option<u64>) -> Value {
    us.map_or(Value::Null, |v| json!(v as f64 / 1000.0))
}

pub use siaga_proto::time::rfc3339;

/// One stored sample as the JSON object `History` returns: `ts` (the
/// agent's time of the measurement), `received_at` (the collector's time of
/// arrival, null for samples stored before it was kept) plus its values.
pub fn sample_json(s: &StoredSample) -> Value {
    let mut m = Map::new();
    m.insert("ts".into(), json!(rfc3339(s.sample.ts_us)));
    m.insert(
        "received_at".into(),
        s.received_us.map_or(Value::Null, |t| json!(rfc3339(t))),
    );
    m.insert("agent".into(), json!(s.agent));
    m.insert("seq".into(), json!(s.sample.seq));
    match &s.sample.kind {
        Some(Kind::Icmp(i)) => {
            m.insert("kind".into(), json!("icmp"));
            m.insert("sent".into(), json!(i.sent));
            m.insert("received".into(), json!(i.received));
            m.insert("loss_pct".into(), json!(i.loss_pct));
            m.insert("rtt_min_ms".into(), us_to_ms(i.rtt_min_us));
            m.insert("rtt_avg_ms".into(), us_to_ms(i.rtt_avg_us));
            m.insert("rtt_median_ms".into(), us_to_ms(i.rtt_median_us));
            m.insert("rtt_max_ms".into(), us_to_ms(i.rtt_max_us));
            m.insert("rtt_p95_ms".into(), us_to_ms(i.rtt_p95_us));
            m.insert("jitter_ms".into(), us_to_ms(i.jitter_us));
            if !i.error.is_empty() {
                m.insert("error".into(), json!(i.error));
            }
        }
        Some(Kind::Snmp(n)) => {
            m.insert("kind".into(), json!("snmp"));
            let status = v1::SnmpStatus::try_from(n.status)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("SNMP_STATUS_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|_| "unknown".into());
            m.insert("status".into(), json!(status));
            if !n.error.is_empty() {
                m.insert("error".into(), json!(n.error));
            }
            m.insert("sys_uptime_cs".into(), json!(n.sys_uptime_cs));
            m.insert("sys_name".into(), json!(n.sys_name));
            m.insert("poll_ms".into(), json!(n.poll_us as f64 / 1000.0));
            let ifs: Vec<Value> = n
                .interfaces
                .iter()
                .map(|i| {
                    json!({
                        "if_index": i.if_index, "if_name": i.if_name, "if_descr": i.if_descr,
                        "link": i.link_name, "admin_status": i.admin_status, "oper_status": i.oper_status,
                        "speed_bps": i.speed_bps, "in_octets": i.in_octets, "out_octets": i.out_octets,
                        "in_errors": i.in_errors, "out_errors": i.out_errors,
                        "in_discards": i.in_discards, "out_discards": i.out_discards,
                        "in_bps": i.in_bps, "out_bps": i.out_bps,
                        "util_in_pct": i.util_in_pct, "util_out_pct": i.util_out_pct,
                        "errors_per_s": i.errors_per_s, "discards_per_s": i.discards_per_s,
                    })
                })
                .collect();
            m.insert("interfaces".into(), Value::Array(ifs));
        }
        Some(Kind::Event(e)) => {
            m.insert("kind".into(), json!("event"));
            m.insert("event".into(), json!(e.kind));
            m.insert("link".into(), json!(e.link));
            m.insert("if_index".into(), json!(e.if_index));
            m.insert("detail".into(), json!(e.detail));
            m.insert("source".into(), json!(e.source));
        }
        None => {
            m.insert("kind".into(), json!("none"));
        }
    }
    Value::Object(m)
}

/// Why a backup cannot be taken right now on the embedded store.
const REOPENING: &str =
    "the sample store is being reopened after a write error; try the backup again shortly";

#[tonic::async_trait]
impl Admin for AdminService {
    type BackupStream = tokio_stream::wrappers::ReceiverStream<Result<v1::BackupChunk, Status>>;

    async fn backup(
        &self,
        req: Request<v1::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        // Admin only: the policy table says so and the gate has checked.
        let user = self.caller(&req)?;
        let health = self.hub.health.clone();
        // With `[store] url` the samples are in PostgreSQL: the backup holds
        // the data directory's stores and says how to dump the samples.
        let elsewhere = self.hub.store.elsewhere();
        if elsewhere.is_none() && self.hub.store.redb().is_none() {
            return Err(Status::unavailable(REOPENING));
        }
        let hub = self.hub.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let here = hub.store.redb();
            let samples = match (&elsewhere, &here) {
                (Some(e), _) => crate::backup::Samples::Elsewhere(e),
                (None, Some(db)) => crate::backup::Samples::Here(db),
                (None, None) => {
                    let _ = tx.blocking_send(Err(Status::unavailable(REOPENING)));
                    return;
                }
            };
            let src = crate::backup::Sources {
                samples,
                tickets: health.store.database().redb().map(|db| &**db),
                data_dir: &hub.data_dir,
            };
            let mut out = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(BACKUP_CHUNK),
                sent: 0,
            };
            match crate::backup::write(src, &mut out) {
                Ok(m) => tracing::info!(
                    by = %user.name,
                    bytes = out.sent,
                    samples = m.rows(crate::schema::SAMPLES_FILE.name, "samples"),
                    tickets = m.rows(crate::schema::TICKETS_FILE.name, "sop_tickets"),
                    took_ms = started.elapsed().as_millis() as u64,
                    "backup taken"
                ),
                Err(e) => {
                    tracing::error!(by = %user.name, error = %e, "backup failed");
                    let _ = tx.blocking_send(Err(Status::internal(format!("backup failed: {e}"))));
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn who_am_i(
        &self,
        req: Request<v1::WhoAmIRequest>,
    ) -> Result<Response<v1::WhoAmIResponse>, Status> {
        let user = self.caller(&req)?;
        Ok(Response::new(v1::WhoAmIResponse {
            user: user.name,
            roles: crate::role::ids(&user.roles),
            collector_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }
}

/// Users and OPDs for the SOP calls.
pub struct HubDirectory(pub Arc<Hub>);

impl crate::sop::api::Directory for HubDirectory {
    fn roles(&self, user: &str) -> Option<Vec<String>> {
        self.0.user(user).map(|u| crate::role::ids(&u.roles))
    }
    fn opd(&self, id: &str) -> Option<String> {
        self.0.inventory().opds.get(id).map(|o| o.name.clone())
    }
    fn device_opd(&self, id: &str) -> Option<String> {
        self.0.inventory().devices.get(id).map(|d| d.opd.clone())
    }
    fn link_device(&self, name: &str) -> Option<String> {
        self.0
            .inventory()
            .links
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.device.clone())
    }
    fn held_to(&self, user: &str) -> Option<String> {
        let u = self.0.user(user)?;
        crate::users::only_opd_roles(&u.roles).then(|| u.opd.unwrap_or_default())
    }
    fn max_letter_age(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.0.health.max_letter_age)
            .unwrap_or(chrono::Duration::days(365))
    }
    fn people(&self) -> crate::sop::People {
        // Read afresh: a name added to a user file shows on the next document.
        self.0.people()
    }
    fn measurements(&self, ticket: &str) -> (bool, bool) {
        let service = &self.0.measure;
        let number = ticket.trim().to_ascii_uppercase();
        service.phases_done(&number).unwrap_or_else(|e| {
            tracing::warn!(ticket = %number, error = %e, "cannot read the ticket's measurements");
            (false, false)
        })
    }
}

/// The enrolled users, as the `Users` service reads and changes them.
pub struct HubUsers(pub Arc<Hub>);

impl crate::users::UserDirectory for HubUsers {
    fn all(&self) -> Vec<User> {
        self.0.reload_users();
        self.0.all_users()
    }
    fn get(&self, name: &str) -> Option<User> {
        self.0.reload_users();
        self.0.user(name)
    }
    fn dir(&self) -> &std::path::Path {
        &self.0.users_dir
    }
    fn known_roles(&self) -> Vec<crate::role::Role> {
        self.0.known_roles()
    }
    fn reload(&self) {
        self.0.reload_users();
    }
    fn save(&self, user: &User) -> Result<(), String> {
        self.0.save_user(user)
    }
}
