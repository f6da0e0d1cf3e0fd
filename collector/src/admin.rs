//! The `Admin` service for people (the `siaga` CLI). Callers are identified
//! by their `siaga://user/<name>` certificate and must be enrolled; agent
//! certificates are refused.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use siaga_proto::v1::admin_server::Admin;
use siaga_proto::v1::{self, sample::Kind};
use tonic::{Request, Response, Status};

use crate::api::{Caller, scope};
use crate::hub::{AgentStatus, Hub, opds_without_agent};
use crate::ingest::now_us;
use crate::state::{device_state, shown_state, stale_age};
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

/// Most samples one History call returns when the caller sets no limit.
pub const DEFAULT_HISTORY_LIMIT: usize = 100_000;

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

/// RFC 3339 (UTC, milliseconds) of µs since the epoch.
pub fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

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

/// IF-MIB ifOperStatus as a word.
pub fn oper_status_name(v: u32) -> &'static str {
    match v {
        1 => "up",
        2 => "down",
        3 => "testing",
        4 => "unknown",
        5 => "dormant",
        6 => "not_present",
        7 => "lower_layer_down",
        _ => "unknown",
    }
}

/// IF-MIB ifAdminStatus as a word.
pub fn admin_status_name(v: u32) -> &'static str {
    match v {
        1 => "up",
        2 => "down",
        3 => "testing",
        _ => "unknown",
    }
}

/// How far back `device.show` looks when the caller does not say.
pub const DEFAULT_DEVICE_WINDOW_US: i64 = 3_600_000_000;

/// Samples `device.show` reads at most for its history.
const DEVICE_HISTORY_LIMIT: usize = 20_000;

fn interface_json(i: &v1::Interface) -> Value {
    json!({
        "if_index": i.if_index,
        "if_name": i.if_name,
        "if_descr": i.if_descr,
        "if_alias": i.if_alias,
        "link": i.link_name,
        "oper_status": oper_status_name(i.oper_status),
        "admin_status": admin_status_name(i.admin_status),
        "speed_mbps": i.speed_bps as f64 / 1e6,
        "in_bps": i.in_bps,
        "out_bps": i.out_bps,
        "util_in_pct": i.util_in_pct,
        "util_out_pct": i.util_out_pct,
        "errors_per_s": i.errors_per_s,
        "discards_per_s": i.discards_per_s,
        "in_errors": i.in_errors,
        "out_errors": i.out_errors,
        "truncated": i.truncated,
    })
}

/// The interface of `snmp` that is inventory link `l`: the one the agent
/// tagged with the link's name, else the one named or numbered as in the inventory.
fn link_interface<'a>(
    l: &crate::inventory::Link,
    snmp: &'a v1::SnmpResult,
) -> Option<&'a v1::Interface> {
    snmp.interfaces
        .iter()
        .find(|i| !i.link_name.is_empty() && i.link_name == l.name)
        .or_else(|| {
            snmp.interfaces.iter().find(|i| {
                (l.if_index != 0 && i.if_index == l.if_index)
                    || (!l.interface.is_empty()
                        && (i.if_name == l.interface || i.if_descr == l.interface))
            })
        })
}

fn latest_snmp(hub: &Hub, device: &str) -> Result<Option<(i64, v1::SnmpResult)>, Status> {
    let latest = hub.store.latest(device).map_err(internal)?;
    Ok(match latest.snmp {
        Some(v1::Sample {
            ts_us,
            kind: Some(Kind::Snmp(s)),
            ..
        }) => Some((ts_us, s)),
        _ => None,
    })
}

/// `links.list`: every inventory link `caller` sees with its newest SNMP reading.
pub fn links_list(hub: &Hub, caller: &Caller) -> Result<Value, Status> {
    let inv = hub.inventory();
    let mut cache: std::collections::HashMap<String, Option<(i64, v1::SnmpResult)>> =
        std::collections::HashMap::new();
    let mut out = Vec::with_capacity(inv.links.len());
    for l in &inv.links {
        if !scope::link_listed(caller, &inv, &l.device) {
            continue;
        }
        if !cache.contains_key(&l.device) {
            cache.insert(l.device.clone(), latest_snmp(hub, &l.device)?);
        }
        let snmp = cache.get(&l.device).and_then(Option::as_ref);
        let iface = snmp.and_then(|(_, s)| link_interface(l, s));
        let interface = if l.interface.is_empty() {
            iface.map_or_else(|| format!("ifIndex {}", l.if_index), |i| i.if_name.clone())
        } else {
            l.interface.clone()
        };
        let mut row = json!({
            "device": l.device,
            "interface": interface,
            "name": l.name,
            "oper_status": Value::Null,
            "admin_status": Value::Null,
            "speed_mbps": Value::Null,
            "in_bps": Value::Null,
            "out_bps": Value::Null,
            "util_in_pct": Value::Null,
            "util_out_pct": Value::Null,
            "errors_per_s": Value::Null,
            "if_index": Value::Null,
            "snmp_status": Value::Null,
            "last_sample_at": Value::Null,
        });
        if let Some((ts, s)) = snmp {
            row["last_sample_at"] = json!(rfc3339(*ts));
            row["snmp_status"] = json!(snmp_status_name(s.status));
        }
        if let Some(i) = iface {
            let j = interface_json(i);
            for k in [
                "oper_status",
                "admin_status",
                "speed_mbps",
                "in_bps",
                "out_bps",
                "util_in_pct",
                "util_out_pct",
                "errors_per_s",
                "if_index",
            ] {
                row[k] = j[k].clone();
            }
        }
        out.push(row);
    }
    Ok(Value::Array(out))
}

fn snmp_status_name(status: i32) -> String {
    v1::SnmpStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("SNMP_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The clock offset (collector minus agent) of each OPD's most recently
/// heard agent, where known.
fn clock_offsets(hub: &Hub) -> std::collections::HashMap<String, i64> {
    let mut newest: std::collections::HashMap<String, (i64, i64)> = Default::default();
    for a in hub.agents() {
        if let Some(off) = a.record.clock_offset_us {
            let e = newest
                .entry(a.record.opd.clone())
                .or_insert((a.record.last_seen_us, off));
            if a.record.last_seen_us >= e.0 {
                *e = (a.record.last_seen_us, off);
            }
        }
    }
    newest.into_iter().map(|(k, (_, o))| (k, o)).collect()
}

/// Time of the newest ICMP or SNMP reading (agent clock): what a state is
/// computed from (events alone do not make it current).
fn newest_reading_us(l: &crate::store::Latest) -> Option<i64> {
    [l.icmp.as_ref(), l.snmp.as_ref()]
        .into_iter()
        .flatten()
        .map(|s| s.ts_us)
        .max()
}

/// `device.show`: one device, all its interfaces from the newest SNMP sample,
/// and its ICMP history and events since `since_us`.
pub fn device_show(hub: &Hub, caller: &Caller, id: &str, since_us: i64) -> Result<Value, Status> {
    let inv = hub.inventory();
    let d = scope::device(caller, &inv, id)?;
    let snmp = latest_snmp(hub, id)?;
    let links: std::collections::HashMap<u32, String> = match &snmp {
        Some((_, s)) => inv
            .links
            .iter()
            .filter(|l| l.device == *id)
            .filter_map(|l| link_interface(l, s).map(|i| (i.if_index, l.name.clone())))
            .collect(),
        None => Default::default(),
    };
    let interfaces: Vec<Value> = snmp
        .as_ref()
        .map(|(_, s)| {
            s.interfaces
                .iter()
                .map(|i| {
                    let mut j = interface_json(i);
                    if let Some(name) = links.get(&i.if_index) {
                        j["link"] = json!(name);
                    }
                    j
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = hub
        .store
        .history(id, since_us, DEVICE_HISTORY_LIMIT)
        .map_err(internal)?;
    let mut history = Vec::new();
    let mut events = Vec::new();
    for r in &rows {
        match &r.sample.kind {
            Some(Kind::Icmp(i)) => history.push(json!({
                "ts": rfc3339(r.sample.ts_us),
                "rtt_ms": us_to_ms(i.rtt_avg_us),
                "loss_pct": if i.sent > 0 { json!(i.loss_pct) } else { Value::Null },
                "jitter_ms": us_to_ms(i.jitter_us),
            })),
            Some(Kind::Event(_)) => events.push(sample_json(r)),
            _ => {}
        }
    }
    let (state, traps_not_confirmed) = match hub.health.get() {
        Some(h) => (
            h.handle.shared().device_state(id),
            h.handle.shared().unconfirmed_traps(id),
        ),
        None => (String::new(), 0),
    };
    let latest = hub.store.latest(id).map_err(internal)?;
    let interval = inv.opds.get(&d.opd).map_or(inv.interval, |o| o.interval);
    let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
    let offset = clock_offsets(hub).get(&d.opd).copied();
    let newest = newest_reading_us(&latest);
    let now = now_us();
    let state = shown_state(&state, stale_age(newest, offset, interval_us, now)).to_string();
    let age_s = newest.map(|t| {
        now.saturating_sub(t.saturating_add(offset.unwrap_or(0)))
            .max(0)
            / 1_000_000
    });
    Ok(json!({
        "reading_age_s": age_s,
        "id": d.id,
        "opd": d.opd,
        "kind": d.kind,
        "name": d.name,
        "address": d.address.to_string(),
        "parent": d.parent,
        "state": state,
        "snmp_status": snmp.as_ref().map(|(_, s)| snmp_status_name(s.status)),
        "snmp_error": snmp.as_ref().map(|(_, s)| s.error.clone()).filter(|e| !e.is_empty()),
        "sys_name": snmp.as_ref().map(|(_, s)| s.sys_name.clone()),
        "sys_descr": snmp.as_ref().map(|(_, s)| s.sys_descr.clone()),
        "sys_truncated": snmp.as_ref().map(|(_, s)| s.sys_truncated),
        "sys_uptime_cs": snmp.as_ref().map(|(_, s)| s.sys_uptime_cs),
        "interfaces_omitted": snmp.as_ref().map(|(_, s)| s.interfaces_omitted),
        "snmp_forged_answers": snmp.as_ref().map(|(_, s)| s.forged_answers),
        "traps_refused": snmp.as_ref().map(|(_, s)| s.traps_refused),
        "traps_suppressed": snmp.as_ref().map(|(_, s)| s.traps_suppressed),
        "last_snmp_at": snmp.as_ref().map(|(t, _)| rfc3339(*t)),
        "traps_not_confirmed": traps_not_confirmed,
        "since": rfc3339(since_us),
        "interfaces": interfaces,
        "history": history,
        "events": events,
    }))
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "admin call failed");
    Status::internal(e.to_string())
}

#[tonic::async_trait]
impl Admin for AdminService {
    type BackupStream = tokio_stream::wrappers::ReceiverStream<Result<v1::BackupChunk, Status>>;

    async fn backup(
        &self,
        req: Request<v1::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        // Admin only: the policy table says so and the gate has checked.
        let user = self.caller(&req)?;
        let Some(health) = self.hub.health.get().cloned() else {
            return Err(Status::unavailable("the ticket store is not open yet"));
        };
        if self.hub.store.redb().is_none() {
            return Err(Status::unimplemented(
                "the samples live in a shared database: back it up with its own tools",
            ));
        }
        let hub = self.hub.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let Some(samples) = hub.store.redb() else {
                return;
            };
            let src = crate::backup::Sources {
                samples: &samples,
                tickets: health.store.database(),
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
            roles: user.roles,
            collector_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn list_agents(
        &self,
        req: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let live = self.hub.agents();
        let enrolled = self.hub.enrolled();
        let known: Vec<crate::store::AgentRecord> = live.iter().map(|a| a.record.clone()).collect();
        let mut agents: Vec<v1::AgentInfo> = live
            .into_iter()
            .map(|a| {
                let status = if a.streams > 0 {
                    AgentStatus::Connected
                } else if a.record.last_seen_us > 0 {
                    AgentStatus::Disconnected
                } else {
                    AgentStatus::NeverConnected
                };
                let r = a.record;
                v1::AgentInfo {
                    id: r.id,
                    opd: r.opd,
                    version: r.version,
                    connected: a.streams > 0,
                    last_seen_us: r.last_seen_us,
                    spool_depth: r.spool_depth,
                    dropped: r.dropped,
                    cpu_pct: r.cpu_pct,
                    mem_used_pct: r.mem_used_pct,
                    disk_used_pct: r.disk_used_pct,
                    hostname: r.hostname,
                    refused: r.refused,
                    address: r.address,
                    cert_not_after_us: a.cert_not_after_us,
                    status: status.as_str().into(),
                    clock_offset_us: r.clock_offset_us,
                    future_refused: r.future_refused,
                    spool_condition: r.spool_condition,
                    spool_error: r.spool_error,
                    samples_cut: r.samples_cut,
                    samples_undeliverable: r.samples_undeliverable,
                }
            })
            .collect();
        for e in &enrolled {
            if !agents.iter().any(|a| a.id == e.id) {
                agents.push(v1::AgentInfo {
                    id: e.id.clone(),
                    opd: e.opd.clone(),
                    status: AgentStatus::NeverConnected.as_str().into(),
                    ..Default::default()
                });
            }
        }
        let inventory = self.hub.inventory();
        for opd in opds_without_agent(&inventory, &enrolled, &known) {
            agents.push(v1::AgentInfo {
                opd,
                status: AgentStatus::NoAgentEnrolled.as_str().into(),
                ..Default::default()
            });
        }
        agents.retain(|a| scope::listed(&caller, &a.opd));
        agents.sort_by(|a, b| (&a.opd, &a.id).cmp(&(&b.opd, &b.id)));
        Ok(Response::new(v1::ListAgentsResponse { agents }))
    }

    async fn list_devices(
        &self,
        req: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let opd_filter = req.into_inner().opd;
        let hub = self.hub.clone();
        let devices =
            tokio::task::spawn_blocking(move || -> Result<Vec<v1::DeviceInfo>, Status> {
                let inv = hub.inventory();
                let now = now_us();
                // The newest sign of life from any agent of each OPD; a connected agent is alive now.
                let mut seen: std::collections::HashMap<String, i64> =
                    std::collections::HashMap::new();
                let offsets = clock_offsets(&hub);
                for a in hub.agents() {
                    let t = if a.streams > 0 {
                        now
                    } else {
                        a.record.last_seen_us
                    };
                    let e = seen.entry(a.record.opd.clone()).or_insert(t);
                    *e = (*e).max(t);
                }
                let mut out = Vec::new();
                for d in inv.devices.values() {
                    if !opd_filter.is_empty() && d.opd != opd_filter
                        || !scope::listed(&caller, &d.opd)
                    {
                        continue;
                    }
                    let latest = hub.store.latest(&d.id).map_err(internal)?;
                    let interval = inv.opds.get(&d.opd).map_or(inv.interval, |o| o.interval);
                    let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
                    let state = match hub.health.get() {
                        Some(h) => h.handle.shared().device_state(&d.id),
                        None => device_state(
                            latest.icmp.as_ref(),
                            seen.get(&d.opd).copied(),
                            interval_us,
                            now,
                        )
                        .to_string(),
                    };
                    let offset = offsets.get(&d.opd).copied();
                    let newest = newest_reading_us(&latest);
                    let state = shown_state(&state, stale_age(newest, offset, interval_us, now))
                        .to_string();
                    let reading_age_us = newest.map(|t| {
                        now.saturating_sub(t.saturating_add(offset.unwrap_or(0)))
                            .max(0)
                    });
                    let icmp = match latest.icmp.as_ref().and_then(|s| s.kind.as_ref()) {
                        Some(Kind::Icmp(i)) => Some(i.clone()),
                        _ => None,
                    };
                    let snmp_status = match latest.snmp.as_ref().and_then(|s| s.kind.as_ref()) {
                        Some(Kind::Snmp(s)) => v1::SnmpStatus::try_from(s.status)
                            .map(|s| {
                                s.as_str_name()
                                    .trim_start_matches("SNMP_STATUS_")
                                    .to_ascii_lowercase()
                            })
                            .unwrap_or_default(),
                        _ => String::new(),
                    };
                    out.push(v1::DeviceInfo {
                        id: d.id.clone(),
                        opd: d.opd.clone(),
                        kind: d.kind.clone(),
                        address: d.address.to_string(),
                        state: state.to_string(),
                        last_sample_at_us: latest.last_sample_us.unwrap_or(0),
                        rtt_ms: icmp
                            .as_ref()
                            .and_then(|i| i.rtt_avg_us)
                            .map(|v| v as f64 / 1000.0),
                        loss_pct: icmp.as_ref().filter(|i| i.sent > 0).map(|i| i.loss_pct),
                        jitter_ms: icmp
                            .as_ref()
                            .and_then(|i| i.jitter_us)
                            .map(|v| v as f64 / 1000.0),
                        parent: d.parent.clone().unwrap_or_default(),
                        name: d.name.clone(),
                        snmp_status,
                        reading_age_us,
                    });
                }
                Ok(out)
            })
            .await
            .map_err(internal)??;
        Ok(Response::new(v1::ListDevicesResponse { devices }))
    }

    async fn history(
        &self,
        req: Request<v1::HistoryRequest>,
    ) -> Result<Response<v1::HistoryResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let limit = if r.limit == 0 {
            DEFAULT_HISTORY_LIMIT
        } else {
            r.limit as usize
        };
        let hub = self.hub.clone();
        let samples = tokio::task::spawn_blocking(move || -> Result<Vec<String>, Status> {
            scope::device_samples(&caller, &hub.inventory(), &r.device)?;
            let rows = hub
                .store
                .history(&r.device, r.since_us, limit)
                .map_err(internal)?;
            if rows.is_empty() && !hub.inventory().devices.contains_key(&r.device) {
                return Err(scope::no_device(&r.device).into());
            }
            Ok(rows.iter().map(|s| sample_json(s).to_string()).collect())
        })
        .await
        .map_err(internal)??;
        Ok(Response::new(v1::HistoryResponse {
            samples_json: samples,
        }))
    }

    async fn call(
        &self,
        req: Request<v1::CallRequest>,
    ) -> Result<Response<v1::CallResponse>, Status> {
        let user = self.caller(&req)?;
        let caller = crate::api::caller(&req)?;
        let v1::CallRequest { method, json } = req.into_inner();
        if !method.starts_with("user.") {
            let hub = self.hub.clone();
            let (c, m, j) = (caller.clone(), method.clone(), json.clone());
            tokio::task::spawn_blocking(move || {
                let tickets = hub.health.get().map(|h| h.sop_store.clone());
                scope::call(&c, &hub.inventory(), tickets.as_deref(), &m, &j)
            })
            .await
            .map_err(internal)??;
        }
        let answer = self.scoped_call(user, &caller, &method, &json).await?;
        let json = scope::answer(&caller, &method, &json, answer)?;
        Ok(Response::new(v1::CallResponse { json }))
    }
}

impl AdminService {
    /// The `Call` methods, once [`scope::call`] has let them through; the
    /// answer goes through [`scope::answer`].
    async fn scoped_call(
        &self,
        user: User,
        caller: &Caller,
        method: &str,
        json: &str,
    ) -> Result<String, Status> {
        let (method, json) = (method.to_string(), json.to_string());
        if let Some(answer) = self.probe_call(caller, &method, &json).await? {
            return Ok(answer);
        }
        if let Some(answer) = self.measure_call(&user, &method, &json).await? {
            return Ok(answer);
        }
        let Some(health) = self.hub.health.get().cloned() else {
            return Err(Status::unavailable("the health engine is not running"));
        };
        let hub = self.hub.clone();
        let answer = tokio::task::spawn_blocking(move || -> Result<String, Status> {
            let api_status = |e: crate::sop::api::ApiError| match e {
                crate::sop::api::ApiError::BadRequest(m) => Status::invalid_argument(m),
                crate::sop::api::ApiError::Denied(m) => Status::permission_denied(m),
                crate::sop::api::ApiError::NotFound(m) => Status::not_found(m),
                crate::sop::api::ApiError::Internal(m) => internal(m),
            };
            if let Some(r) =
                crate::report::api::handle(&health.reports, &method, &json, chrono::Utc::now())
            {
                return r.map_err(api_status);
            }
            if let Some(r) = health
                .call(&user.name, &user.roles, &method, &json)
                .map_err(Status::invalid_argument)?
            {
                return Ok(if method == "tickets.show" {
                    with_measurements(&hub, r)
                } else {
                    r
                });
            }
            let caller = crate::sop::workflow::Actor {
                user: user.name.clone(),
                roles: user.roles.clone(),
            };
            let dir = HubDirectory(hub);
            match crate::sop::api::handle(
                &health.sop_store,
                &dir,
                &method,
                &json,
                &caller,
                chrono::Utc::now(),
            ) {
                Some(Ok(reply)) => {
                    health.after_sop_call(&method, &json);
                    Ok(reply)
                }
                Some(Err(e)) => Err(api_status(e)),
                None => Err(Status::unimplemented(format!(
                    "{method:?} is not available in this collector version"
                ))),
            }
        })
        .await
        .map_err(internal)??;
        Ok(answer)
    }
}

/// `tickets.show` with the ticket's measurements added (`measurements`).
fn with_measurements(hub: &Hub, reply: String) -> String {
    let Some(service) = hub.measure.get() else {
        return reply;
    };
    let Ok(mut v) = serde_json::from_str::<Value>(&reply) else {
        return reply;
    };
    let Some(id) = v["id"].as_str().map(str::to_string) else {
        return reply;
    };
    match service.for_ticket(&id) {
        Ok(list) => {
            v["measurements"] = serde_json::to_value(list).unwrap_or(Value::Null);
            v.to_string()
        }
        Err(e) => {
            tracing::warn!(ticket = %id, error = %e, "cannot read the ticket's measurements");
            reply
        }
    }
}

impl AdminService {
    /// The measurement calls (`ticket.measure`, `measure`, `measure.get`,
    /// `ticket.measurements`); `None` for other methods.
    async fn measure_call(
        &self,
        user: &User,
        method: &str,
        json: &str,
    ) -> Result<Option<String>, Status> {
        if !matches!(
            method,
            "ticket.measure" | "measure" | "measure.get" | "ticket.measurements"
        ) {
            return Ok(None);
        }
        let (Some(service), Some(health)) = (self.hub.measure.get(), self.hub.health.get()) else {
            return Err(Status::unavailable("measurements are not available yet"));
        };
        let mut last_seen = std::collections::HashMap::new();
        for a in self.hub.agents() {
            if let Some(t) = chrono::DateTime::from_timestamp_micros(a.record.last_seen_us)
                .filter(|_| a.record.last_seen_us > 0)
            {
                let e = last_seen.entry(a.record.opd.clone()).or_insert(t);
                *e = (*e).max(t);
            }
        }
        let inventory = self.hub.inventory();
        let env = crate::measure::api::Env {
            service,
            inventory: &inventory,
            sop_store: &health.sop_store,
            tickets: &health.store,
            last_seen,
        };
        use crate::measure::MeasureError as E;
        match crate::measure::api::call(&env, &user.name, &user.roles, method, json).await {
            None => Ok(None),
            Some(Ok(reply)) => Ok(Some(reply)),
            Some(Err(e)) => Err(match e {
                E::BadRequest(m) => Status::invalid_argument(m),
                E::Denied(m) => Status::permission_denied(m),
                E::NotFound(m) => Status::not_found(m),
                E::Offline(m) => Status::failed_precondition(m),
                E::Internal(m) => internal(m),
            }),
        }
    }

    /// The probing views (`links.list`, `device.show`); `None` for other methods.
    async fn probe_call(
        &self,
        caller: &Caller,
        method: &str,
        json: &str,
    ) -> Result<Option<String>, Status> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct DeviceArgs {
            id: String,
            #[serde(default)]
            since_us: Option<i64>,
        }
        let hub = self.hub.clone();
        let answer = match method {
            "links.list" => {
                let caller = caller.clone();
                tokio::task::spawn_blocking(move || links_list(&hub, &caller))
                    .await
                    .map_err(internal)??
            }
            "device.show" => {
                let args: DeviceArgs = serde_json::from_str(json)
                    .map_err(|e| Status::invalid_argument(format!("device.show: {e}")))?;
                let since = args
                    .since_us
                    .unwrap_or_else(|| now_us() - DEFAULT_DEVICE_WINDOW_US)
                    .max(0);
                let caller = caller.clone();
                tokio::task::spawn_blocking(move || device_show(&hub, &caller, &args.id, since))
                    .await
                    .map_err(internal)??
            }
            _ => return Ok(None),
        };
        Ok(Some(answer.to_string()))
    }
}

/// Users and OPDs for the SOP calls.
struct HubDirectory(Arc<Hub>);

impl crate::sop::api::Directory for HubDirectory {
    fn roles(&self, user: &str) -> Option<Vec<String>> {
        self.0.user(user).map(|u| u.roles)
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
        self.0
            .health
            .get()
            .map_or(chrono::Duration::days(365), |h| {
                chrono::Duration::from_std(h.max_letter_age).unwrap_or(chrono::Duration::days(365))
            })
    }
    fn people(&self) -> crate::sop::People {
        // Read afresh: a name added to a user file shows on the next document.
        crate::users::people(&self.0.users_dir)
    }
    fn measurements(&self, ticket: &str) -> (bool, bool) {
        let Some(service) = self.0.measure.get() else {
            return (false, false);
        };
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
        self.0
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
    fn get(&self, name: &str) -> Option<User> {
        self.0.reload_users();
        self.0.user(name)
    }
    fn dir(&self) -> &std::path::Path {
        &self.0.users_dir
    }
    fn known_roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = match self.0.health.get() {
            Some(h) => h
                .sop_store
                .sop()
                .roles
                .iter()
                .map(|r| r.id.clone())
                .collect(),
            None => crate::users::DEFAULT_ROLES
                .iter()
                .map(|r| r.to_string())
                .collect(),
        };
        roles.push("admin".into());
        roles
    }
    fn reload(&self) {
        self.0.reload_users();
    }
}
