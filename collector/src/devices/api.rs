//! The `Devices` service: devices, links and agents with their state, one
//! device's view, its history (streamed range by range) and the board's
//! changes as they happen.

use std::collections::HashMap;
use std::sync::Arc;

use siaga_proto::v1::{self, sample::Kind};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api::page::Page;
use crate::api::{ApiError, Caller, limits};
use crate::hub::{Hub, opds_without_agent};
use crate::ingest::now_us;
use crate::state::{shown_state, stale_age};
use crate::store::{HistoryFrom, StoredSample};
use siaga_proto::v1::agent_status::Status as AgentStatus;
use siaga_proto::v1::history_sample_kind::Kind as SampleKind;
use siaga_proto::v1::interface_status::Status as IfStatus;
use siaga_proto::v1::snmp_poll_status::Status as SnmpPoll;

/// Samples in one [`v1::HistoryChunk`] (and read from the store at once).
pub const HISTORY_CHUNK: usize = 256;

/// How far back `GetDevice` looks when the caller does not say.
pub const DEFAULT_DEVICE_WINDOW_US: i64 = 3_600_000_000;

/// Samples `GetDevice` reads at most for its history.
const DEVICE_HISTORY_LIMIT: usize = 20_000;

/// How often a watch looks again at states that change without an event
/// (a device whose readings stop coming turns `stale`).
const WATCH_TICK: std::time::Duration = std::time::Duration::from_secs(5);

/// The `Devices` gRPC service (devices.proto).
#[derive(Debug, Clone)]
pub struct DevicesApi {
    hub: Arc<Hub>,
}

impl DevicesApi {
    /// The service on `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// The collector's shared state.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

fn store_err(what: &'static str) -> impl Fn(crate::error::StoreError) -> ApiError {
    move |e| ApiError::internal(what, e)
}

/// An OPD filter of a request: checked, and within what the caller sees
/// (another OPD's filter gives an empty listing, as an unknown one does).
fn opd_filter(field: &str, opd: &str) -> Result<Option<String>, ApiError> {
    limits::text(field, opd, limits::len::ID)?;
    Ok((!opd.is_empty()).then(|| opd.to_string()))
}

fn wants(caller: &Caller, filter: &Option<String>, opd: &str) -> bool {
    caller.sees(opd) && filter.as_deref().is_none_or(|f| f == opd)
}

/// µs since the epoch of a timestamp.
pub fn ts_us(t: &pbjson_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.nanos) / 1_000)
}

/// The timestamp of µs since the epoch.
pub fn timestamp(us: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

fn ms(us: Option<u64>) -> Option<f64> {
    us.map(|v| v as f64 / 1000.0)
}

/// One stored sample as History gives it.
pub fn history_sample(s: &StoredSample) -> v1::HistorySample {
    let mut h = v1::HistorySample {
        ts: Some(timestamp(s.sample.ts_us)),
        received_at: s.received_us.map(timestamp),
        agent: s.agent.clone(),
        seq: s.sample.seq,
        ..Default::default()
    };
    match &s.sample.kind {
        Some(Kind::Icmp(i)) => {
            h.kind = SampleKind::Icmp.into();
            h.sent = Some(i.sent);
            h.received = Some(i.received);
            h.loss_pct = Some(i.loss_pct);
            h.rtt_min_ms = ms(i.rtt_min_us);
            h.rtt_avg_ms = ms(i.rtt_avg_us);
            h.rtt_median_ms = ms(i.rtt_median_us);
            h.rtt_max_ms = ms(i.rtt_max_us);
            h.rtt_p95_ms = ms(i.rtt_p95_us);
            h.jitter_ms = ms(i.jitter_us);
            h.error = i.error.clone();
        }
        Some(Kind::Snmp(n)) => {
            h.kind = SampleKind::Snmp.into();
            h.status = SnmpPoll::from_uplink(n.status).into();
            h.error = n.error.clone();
            h.sys_uptime_cs = n.sys_uptime_cs;
            h.sys_name = n.sys_name.clone();
            h.poll_ms = Some(n.poll_us as f64 / 1000.0);
            h.interfaces = n.interfaces.clone();
        }
        Some(Kind::Event(e)) => {
            h.kind = SampleKind::Event.into();
            h.event = e.kind.clone();
            h.link = e.link.clone();
            h.if_index = Some(e.if_index);
            h.detail = e.detail.clone();
            h.source = e.source.clone();
        }
        None => {}
    }
    h
}

fn interface_info(i: &v1::Interface) -> v1::InterfaceInfo {
    v1::InterfaceInfo {
        if_index: i.if_index,
        if_name: i.if_name.clone(),
        if_descr: i.if_descr.clone(),
        if_alias: i.if_alias.clone(),
        link: i.link_name.clone(),
        oper_status: IfStatus::from_if_mib(i.oper_status).into(),
        admin_status: IfStatus::from_if_mib_admin(i.admin_status).into(),
        speed_mbps: i.speed_bps as f64 / 1e6,
        in_bps: i.in_bps,
        out_bps: i.out_bps,
        util_in_pct: i.util_in_pct,
        util_out_pct: i.util_out_pct,
        errors_per_s: i.errors_per_s,
        discards_per_s: i.discards_per_s,
        in_errors: i.in_errors,
        out_errors: i.out_errors,
        truncated: i.truncated,
    }
}

/// The interface of `snmp` that is inventory link `l`: the one the agent
/// tagged with the link's name, else the one named or numbered as in the inventory.
pub fn link_interface<'a>(
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

fn latest_snmp(hub: &Hub, device: &str) -> Result<Option<(i64, v1::SnmpResult)>, ApiError> {
    let latest = hub
        .store
        .latest(device)
        .map_err(store_err("reading the newest readings"))?;
    Ok(match latest.snmp {
        Some(v1::Sample {
            ts_us,
            kind: Some(Kind::Snmp(s)),
            ..
        }) => Some((ts_us, s)),
        _ => None,
    })
}

/// The clock offset (collector minus agent) of each OPD's most recently
/// heard agent, where known.
pub(crate) fn clock_offsets(hub: &Hub) -> HashMap<String, i64> {
    let mut newest: HashMap<String, (i64, i64)> = Default::default();
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
pub(crate) fn newest_reading_us(l: &crate::store::Latest) -> Option<i64> {
    [l.icmp.as_ref(), l.snmp.as_ref()]
        .into_iter()
        .flatten()
        .map(|s| s.ts_us)
        .max()
}

/// Everything [`device_info`] needs about the agents, read once per listing.
struct Board {
    now: i64,
    offsets: HashMap<String, i64>,
}

impl Board {
    fn read(hub: &Hub) -> Board {
        Board {
            now: now_us(),
            offsets: clock_offsets(hub),
        }
    }
}

/// One device of the inventory as ListDevices shows it.
fn device_info(
    hub: &Hub,
    inv: &crate::inventory::Inventory,
    board: &Board,
    d: &crate::inventory::Device,
) -> Result<v1::DeviceInfo, ApiError> {
    let now = board.now;
    let latest = hub
        .store
        .latest(&d.id)
        .map_err(store_err("reading the newest readings"))?;
    let interval = inv.opds.get(&d.opd).map_or(inv.interval, |o| o.interval);
    let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
    let state = hub.health.handle.shared().device_state(&d.id);
    let offset = board.offsets.get(&d.opd).copied();
    let newest = newest_reading_us(&latest);
    let state = shown_state(state, stale_age(newest, offset, interval_us, now)).into();
    let reading_age_us = newest.map(|t| {
        now.saturating_sub(t.saturating_add(offset.unwrap_or(0)))
            .max(0)
    });
    let icmp = match latest.icmp.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(Kind::Icmp(i)) => Some(i.clone()),
        _ => None,
    };
    let snmp_status = match latest.snmp.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(Kind::Snmp(s)) => SnmpPoll::from_uplink(s.status).into(),
        _ => SnmpPoll::Unspecified.into(),
    };
    Ok(v1::DeviceInfo {
        id: d.id.clone(),
        opd: d.opd.clone(),
        kind: d.kind.clone(),
        address: d.address.to_string(),
        state,
        last_sample_at_us: latest.last_sample_us.unwrap_or(0),
        rtt_ms: icmp.as_ref().and_then(|i| ms(i.rtt_avg_us)),
        loss_pct: icmp.as_ref().filter(|i| i.sent > 0).map(|i| i.loss_pct),
        jitter_ms: icmp.as_ref().and_then(|i| ms(i.jitter_us)),
        parent: d.parent.clone().unwrap_or_default(),
        name: d.name.clone(),
        snmp_status,
        reading_age_us,
    })
}

/// The agents as this collector knows them, with what other collectors
/// sharing the store wrote since: an agent streaming to another collector
/// writes its record there at every heartbeat (each probe interval), so
/// its row here is that one, and it counts as streaming (elsewhere) while
/// that record is fresh by the rule that declares an agent silent
/// ([`crate::state::SILENT_INTERVALS`] of its OPD's interval). With one
/// collector the store holds nothing newer than what this one saw: it is
/// not read.
fn agents_everywhere(hub: &Hub) -> Vec<crate::hub::LiveAgent> {
    let mut live = hub.agents();
    if hub.shared().is_none() {
        return live;
    }
    let stored = match hub.store.agents() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the agents' records; listing this collector's");
            return live;
        }
    };
    let inv = hub.inventory();
    let now = now_us();
    for r in stored {
        let interval = inv.opds.get(&r.opd).map_or(inv.interval, |o| o.interval);
        let horizon = i64::try_from(interval.as_micros())
            .unwrap_or(i64::MAX)
            .saturating_mul(crate::state::SILENT_INTERVALS);
        let fresh = now.saturating_sub(r.last_seen_us) <= horizon;
        match live.iter_mut().find(|a| a.record.id == r.id) {
            Some(a) if a.streams > 0 || a.record.last_seen_us >= r.last_seen_us => {}
            Some(a) => {
                a.record = r;
                a.streams = u32::from(fresh);
            }
            None => live.push(crate::hub::LiveAgent {
                record: r,
                streams: u32::from(fresh),
                cert_not_after_us: 0,
            }),
        }
    }
    live
}

/// Every agent row (see ListAgents), in (opd, id) order.
fn agent_rows(hub: &Hub) -> Vec<v1::AgentInfo> {
    let live = agents_everywhere(hub);
    let enrolled = hub.enrolled();
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
                status: status.into(),
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
                status: AgentStatus::NeverConnected.into(),
                ..Default::default()
            });
        }
    }
    let inventory = hub.inventory();
    for opd in opds_without_agent(&inventory, &enrolled, &known) {
        agents.push(v1::AgentInfo {
            opd,
            status: AgentStatus::NoAgentEnrolled.into(),
            ..Default::default()
        });
    }
    agents.sort_by(|a, b| (&a.opd, &a.id).cmp(&(&b.opd, &b.id)));
    agents
}

/// `GetDevice`: one device, all its interfaces from the newest SNMP sample,
/// and its ICMP history and events since `since_us`.
pub fn device_detail(hub: &Hub, id: &str, since_us: i64) -> Result<v1::DeviceDetail, ApiError> {
    let inv = hub.inventory();
    let Some(d) = inv.devices.get(id) else {
        return Err(ApiError::NotFound(format!("unknown device {id:?}")));
    };
    let snmp = latest_snmp(hub, id)?;
    let links: HashMap<u32, String> = match &snmp {
        Some((_, s)) => inv
            .links
            .iter()
            .filter(|l| l.device == *id)
            .filter_map(|l| link_interface(l, s).map(|i| (i.if_index, l.name.clone())))
            .collect(),
        None => Default::default(),
    };
    let interfaces = snmp
        .as_ref()
        .map(|(_, s)| {
            s.interfaces
                .iter()
                .map(|i| {
                    let mut j = interface_info(i);
                    if let Some(name) = links.get(&i.if_index) {
                        j.link = name.clone();
                    }
                    j
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = hub
        .store
        .history_range(
            id,
            &HistoryFrom::Since(since_us),
            i64::MAX,
            DEVICE_HISTORY_LIMIT,
        )
        .map_err(store_err("reading the device's history"))?;
    let mut history = Vec::new();
    let mut events = Vec::new();
    for r in &rows {
        match &r.sample.kind {
            Some(Kind::Icmp(i)) => history.push(v1::RttPoint {
                ts: Some(timestamp(r.sample.ts_us)),
                rtt_ms: ms(i.rtt_avg_us),
                loss_pct: (i.sent > 0).then_some(i.loss_pct),
                jitter_ms: ms(i.jitter_us),
            }),
            Some(Kind::Event(_)) => events.push(history_sample(r)),
            _ => {}
        }
    }
    let shared = hub.health.handle.shared();
    let (state, traps_not_confirmed) = (shared.device_state(id), shared.unconfirmed_traps(id));
    let latest = hub
        .store
        .latest(id)
        .map_err(store_err("reading the newest readings"))?;
    let interval = inv.opds.get(&d.opd).map_or(inv.interval, |o| o.interval);
    let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
    let offset = clock_offsets(hub).get(&d.opd).copied();
    let newest = newest_reading_us(&latest);
    let now = now_us();
    let state = shown_state(state, stale_age(newest, offset, interval_us, now)).into();
    let age_s = newest.map(|t| {
        let s = now
            .saturating_sub(t.saturating_add(offset.unwrap_or(0)))
            .max(0)
            / 1_000_000;
        u32::try_from(s).unwrap_or(u32::MAX)
    });
    let sat = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let s = snmp.as_ref().map(|(_, s)| s);
    Ok(v1::DeviceDetail {
        id: d.id.clone(),
        opd: d.opd.clone(),
        kind: d.kind.clone(),
        name: d.name.clone(),
        address: d.address.to_string(),
        parent: d.parent.clone().unwrap_or_default(),
        state,
        reading_age_s: age_s,
        snmp_status: s
            .map_or(SnmpPoll::Unspecified, |s| SnmpPoll::from_uplink(s.status))
            .into(),
        snmp_error: s.map(|s| s.error.clone()).unwrap_or_default(),
        sys_name: s.map(|s| s.sys_name.clone()).unwrap_or_default(),
        sys_descr: s.map(|s| s.sys_descr.clone()).unwrap_or_default(),
        sys_truncated: s.is_some_and(|s| s.sys_truncated),
        sys_uptime_cs: s.and_then(|s| s.sys_uptime_cs),
        interfaces_omitted: s.map_or(0, |s| s.interfaces_omitted),
        snmp_forged_answers: s.map_or(0, |s| sat(s.forged_answers)),
        traps_refused: s.map_or(0, |s| sat(s.traps_refused)),
        traps_suppressed: s.map_or(0, |s| sat(s.traps_suppressed)),
        last_snmp_at: snmp.as_ref().map(|(t, _)| timestamp(*t)),
        traps_not_confirmed: sat(traps_not_confirmed),
        since: Some(timestamp(since_us)),
        interfaces,
        history,
        events,
        health: s.and_then(|s| s.health.clone()),
    })
}

/// Every inventory link (of the OPDs `keep` keeps) with its newest SNMP reading.
pub fn link_rows(hub: &Hub, keep: impl Fn(&str) -> bool) -> Result<Vec<v1::LinkInfo>, ApiError> {
    let inv = hub.inventory();
    let mut cache: HashMap<String, Option<(i64, v1::SnmpResult)>> = HashMap::new();
    let mut out = Vec::new();
    for l in &inv.links {
        let opd = inv
            .devices
            .get(&l.device)
            .map(|d| d.opd.clone())
            .unwrap_or_default();
        if !keep(&opd) {
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
        let mut row = v1::LinkInfo {
            device: l.device.clone(),
            interface,
            name: l.name.clone(),
            opd,
            ..Default::default()
        };
        if let Some((ts, s)) = snmp {
            row.last_sample_at = Some(timestamp(*ts));
            row.snmp_status = SnmpPoll::from_uplink(s.status).into();
        }
        if let Some(i) = iface {
            row.oper_status = IfStatus::from_if_mib(i.oper_status).into();
            row.admin_status = IfStatus::from_if_mib_admin(i.admin_status).into();
            row.speed_mbps = Some(i.speed_bps as f64 / 1e6);
            row.in_bps = i.in_bps;
            row.out_bps = i.out_bps;
            row.util_in_pct = i.util_in_pct;
            row.util_out_pct = i.util_out_pct;
            row.errors_per_s = i.errors_per_s;
            row.if_index = Some(i.if_index);
        }
        out.push(row);
    }
    Ok(out)
}

/// The paging key of a link: device, then name (both ids, no newline).
fn link_key(l: &v1::LinkInfo) -> String {
    format!("{}\u{1}{}", l.device, l.name)
}

/// The visible devices of `opd` (or all) with their shown state, by id.
pub fn board_devices(
    hub: &Hub,
    caller: &Caller,
    filter: &Option<String>,
) -> Result<Vec<v1::DeviceInfo>, ApiError> {
    let inv = hub.inventory();
    let board = Board::read(hub);
    let mut out = Vec::new();
    // The inventory's devices are a BTreeMap: already in id order.
    for d in inv.devices.values() {
        if wants(caller, filter, &d.opd) {
            out.push(device_info(hub, &inv, &board, d)?);
        }
    }
    Ok(out)
}

/// The samples of `device` in `[since_us, until_us)`, oldest first, handed
/// to `each` range by range as History reads them: at most `chunk` at once,
/// each range in its own read transaction, never the whole history in
/// memory. `each` returns `false` to stop early.
pub fn each_history_range(
    store: &dyn crate::store::Store,
    device: &str,
    since_us: i64,
    until_us: i64,
    chunk: usize,
    mut each: impl FnMut(&[StoredSample]) -> bool,
) -> Result<(), crate::error::StoreError> {
    let chunk = chunk.max(1);
    let mut from = HistoryFrom::Since(since_us);
    loop {
        let rows = store.history_range(device, &from, until_us, chunk)?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        let next = HistoryFrom::After(last.sample.ts_us, last.agent.clone(), last.sample.seq);
        if !each(&rows) || rows.len() < chunk {
            return Ok(());
        }
        from = next;
    }
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl siaga_proto::v1::devices_server::Devices for DevicesApi {
    type HistoryStream = Stream<v1::HistoryChunk>;
    type WatchDevicesStream = Stream<v1::DeviceChange>;

    async fn list_agents(
        &self,
        req: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let filter = opd_filter("opd", &r.opd)?;
        let page = Page::new(r.page_size, &r.page_token, &format!("opd={}", r.opd))?;
        let hub = self.hub.clone();
        let rows = crate::api::error::blocking("listing the agents", move || {
            Ok(agent_rows(&hub)
                .into_iter()
                .filter(|a| wants(&caller, &filter, &a.opd))
                .collect::<Vec<_>>())
        })
        .await?;
        let (agents, next_page_token) = page.take(rows, |a| format!("{}\u{1}{}", a.opd, a.id));
        Ok(Response::new(v1::ListAgentsResponse {
            agents,
            next_page_token,
        }))
    }

    async fn list_devices(
        &self,
        req: Request<v1::ListDevicesRequest>,
    ) -> Result<Response<v1::ListDevicesResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let filter = opd_filter("opd", &r.opd)?;
        let state = v1::device_info::State::try_from(r.state)
            .map_err(|_| ApiError::invalid("state", format!("{} is not a state", r.state)))?;
        let page = Page::new(
            r.page_size,
            &r.page_token,
            &format!("opd={}\nstate={}", r.opd, r.state),
        )?;
        let hub = self.hub.clone();
        let (devices, next_page_token) =
            crate::api::error::blocking("listing the devices", move || {
                let inv = hub.inventory();
                let board = Board::read(&hub);
                let mut err = None;
                let rows = inv
                    .devices
                    .values()
                    .filter(|d| wants(&caller, &filter, &d.opd) && page.wants(&d.id))
                    .map_while(|d| match device_info(&hub, &inv, &board, d) {
                        Ok(i) => Some(i),
                        Err(e) => {
                            err = Some(e);
                            None
                        }
                    })
                    .filter(|i| !state.is_set() || i.state() == state);
                let out = page.take(rows, |i| i.id.clone());
                match err {
                    Some(e) => Err(e),
                    None => Ok(out),
                }
            })
            .await?;
        Ok(Response::new(v1::ListDevicesResponse {
            devices,
            next_page_token,
        }))
    }

    async fn list_links(
        &self,
        req: Request<v1::ListLinksRequest>,
    ) -> Result<Response<v1::ListLinksResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let filter = opd_filter("opd", &r.opd)?;
        let page = Page::new(r.page_size, &r.page_token, &format!("opd={}", r.opd))?;
        let hub = self.hub.clone();
        let mut links = crate::api::error::blocking("listing the links", move || {
            link_rows(&hub, |opd| wants(&caller, &filter, opd))
        })
        .await?;
        links.sort_by_key(link_key);
        let (links, next_page_token) = page.take(links, link_key);
        Ok(Response::new(v1::ListLinksResponse {
            links,
            next_page_token,
        }))
    }

    async fn get_device(
        &self,
        req: Request<v1::GetDeviceRequest>,
    ) -> Result<Response<v1::DeviceDetail>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        limits::required("id", &r.id, limits::len::ID)?;
        let missing = || format!("unknown device {:?}", r.id);
        let opd = self
            .hub
            .inventory()
            .devices
            .get(&r.id)
            .map(|d| d.opd.clone());
        caller.see(
            opd.as_deref()
                .ok_or_else(|| ApiError::NotFound(missing()))?,
            missing,
        )?;
        let since = r
            .since
            .as_ref()
            .map_or_else(|| now_us() - DEFAULT_DEVICE_WINDOW_US, ts_us)
            .max(0);
        let hub = self.hub.clone();
        let d = crate::api::error::blocking("reading the device", move || {
            device_detail(&hub, &r.id, since)
        })
        .await?;
        Ok(Response::new(d))
    }

    async fn history(
        &self,
        req: Request<v1::HistoryRequest>,
    ) -> Result<Response<Self::HistoryStream>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        limits::required("device", &r.device, limits::len::ID)?;
        let missing = || format!("unknown device {:?}", r.device);
        let opd = self
            .hub
            .inventory()
            .devices
            .get(&r.device)
            .map(|d| d.opd.clone());
        match opd {
            Some(opd) => caller.see(&opd, missing)?,
            // A device gone from the inventory keeps its history for the
            // province; an OPD-held person cannot tell whose it was.
            None if caller.held_to().is_none() => {}
            None => return Err(ApiError::NotFound(missing()).into()),
        }
        let since = r.since.as_ref().map_or(0, ts_us).max(0);
        let until = r.until.as_ref().map_or(i64::MAX, ts_us);
        let hub = self.hub.clone();
        // A first range read before answering: an unknown device is NOT_FOUND.
        let device = r.device.clone();
        let (first, hub) = crate::api::error::blocking("reading the history", move || {
            let rows = hub
                .store
                .history_range(&device, &HistoryFrom::Since(since), until, HISTORY_CHUNK)
                .map_err(store_err("reading the history"))?;
            if rows.is_empty() && !hub.inventory().devices.contains_key(&device) {
                return Err(ApiError::NotFound(format!("unknown device {device:?}")));
            }
            Ok((rows, hub))
        })
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let device = r.device;
        tokio::task::spawn_blocking(move || {
            let mut rows = first;
            loop {
                let full = rows.len() == HISTORY_CHUNK;
                let Some(last) = rows.last() else { break };
                let from =
                    HistoryFrom::After(last.sample.ts_us, last.agent.clone(), last.sample.seq);
                let chunk = v1::HistoryChunk {
                    samples: rows.iter().map(history_sample).collect(),
                };
                drop(rows);
                if tx.blocking_send(Ok(chunk)).is_err() || !full {
                    return;
                }
                rows = match hub
                    .store
                    .history_range(&device, &from, until, HISTORY_CHUNK)
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(
                            ApiError::internal("reading the history", e).into()
                        ));
                        return;
                    }
                };
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn watch_devices(
        &self,
        req: Request<v1::WatchDevicesRequest>,
    ) -> Result<Response<Self::WatchDevicesStream>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let filter = opd_filter("opd", &r.opd)?;
        let mut events = self.hub.health.handle.shared().feed.subscribe();
        let hub = self.hub.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut shown: HashMap<String, v1::device_info::State> = HashMap::new();
            let mut tick = tokio::time::interval(WATCH_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let (h, c, f) = (hub.clone(), caller.clone(), filter.clone());
                let now = crate::api::error::blocking("reading the devices", move || {
                    board_devices(&h, &c, &f)
                })
                .await;
                let now = match now {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                for d in now {
                    let before = shown.get(&d.id).copied();
                    if before == Some(d.state()) {
                        continue;
                    }
                    shown.insert(d.id.clone(), d.state());
                    let change = v1::DeviceChange {
                        device: Some(d),
                        from: before.unwrap_or_default().into(),
                    };
                    if tx.send(Ok(change)).await.is_err() {
                        return;
                    }
                }
                // Wait for a recorded event, the tick, the caller leaving or shutdown.
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = hub.cancel.cancelled() => return,
                    _ = tick.tick() => {}
                    _ = events.recv() => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
pub mod tests {
    use std::sync::Arc;

    use siaga_proto::v1;
    use siaga_proto::v1::devices_client::DevicesClient;

    use crate::api::matrix::{Case, Outcome};
    use crate::api::testing::Fixture;

    fn seen(any: bool) -> Outcome {
        if any { Outcome::Seen } else { Outcome::Hidden }
    }

    /// The matrix cases of the `Devices` service.
    pub const CASES: &[Case] = &[
        Case {
            rpc: "/siaga.v1.Devices/ListAgents",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = DevicesClient::new(f.channel(p));
                    match c.list_agents(v1::ListAgentsRequest::default()).await {
                        Ok(r) => seen(r.into_inner().agents.iter().any(|a| a.opd == opd)),
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Devices/ListDevices",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = DevicesClient::new(f.channel(p));
                    match c.list_devices(v1::ListDevicesRequest::default()).await {
                        Ok(r) => seen(r.into_inner().devices.iter().any(|d| d.opd == opd)),
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Devices/ListLinks",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = DevicesClient::new(f.channel(p));
                    match c.list_links(v1::ListLinksRequest::default()).await {
                        Ok(r) => seen(r.into_inner().links.iter().any(|l| l.opd == opd)),
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Devices/GetDevice",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = DevicesClient::new(f.channel(p));
                    let id = format!("{opd}-sw");
                    match c.get_device(v1::GetDeviceRequest { id, since: None }).await {
                        Ok(_) => Outcome::Seen,
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Devices/History",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = DevicesClient::new(f.channel(p));
                    let r = c
                        .history(v1::HistoryRequest {
                            device: format!("{opd}-sw"),
                            ..Default::default()
                        })
                        .await;
                    match r {
                        Ok(s) => {
                            let mut s = s.into_inner();
                            loop {
                                match s.message().await {
                                    Ok(Some(_)) => {}
                                    Ok(None) => return Outcome::Seen,
                                    Err(e) => return e.into(),
                                }
                            }
                        }
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Devices/WatchDevices",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = DevicesClient::new(f.channel(p));
                    // The first snapshot, in id order: dinkes-rtr, dinkes-sw,
                    // dishub-rtr, dishub-sw for whoever sees both OPDs.
                    let mut s = match c.watch_devices(v1::WatchDevicesRequest::default()).await {
                        Ok(s) => s.into_inner(),
                        Err(s) => return s.into(),
                    };
                    let mut ids = Vec::new();
                    while ids.len() < 2 {
                        match s.message().await {
                            Ok(Some(ch)) => ids.extend(ch.device.map(|d| d.opd)),
                            Ok(None) => break,
                            Err(e) => return e.into(),
                        }
                    }
                    // Both first devices are dinkes's: whoever sees dishub
                    // gets its two next.
                    if opd == crate::api::testing::OWN {
                        return seen(ids.iter().any(|o| o == opd));
                    }
                    let mut more = Vec::new();
                    if let Ok(Ok(Some(ch))) =
                        tokio::time::timeout(std::time::Duration::from_secs(3), s.message()).await
                    {
                        more.extend(ch.device.map(|d| d.opd));
                    }
                    seen(more.iter().any(|o| o == opd))
                })
            },
        },
    ];

    /// Domain values reach the wire as their enums: the sample's kind, the
    /// SNMP poll's status, the interfaces' IF-MIB statuses.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn samples_and_interfaces_carry_their_words() {
        use siaga_proto::v1::sample::Kind;
        use v1::interface_status::Status as If;
        use v1::snmp_poll_status::Status as Poll;
        let stored = |kind: Option<Kind>| crate::store::StoredSample {
            agent: "a1".into(),
            received_us: None,
            sample: v1::Sample {
                kind,
                ..Default::default()
            },
        };
        let snmp = super::history_sample(&stored(Some(Kind::Snmp(v1::SnmpResult {
            status: v1::SnmpStatus::AuthFailure.into(),
            ..Default::default()
        }))));
        assert_eq!(
            (snmp.kind(), snmp.status()),
            (v1::history_sample_kind::Kind::Snmp, Poll::AuthFailure)
        );
        let json = serde_json::to_value(&snmp).unwrap();
        assert_eq!(
            (&json["kind"], &json["status"]),
            (&"snmp".into(), &"auth_failure".into())
        );
        let event = super::history_sample(&stored(Some(Kind::Event(v1::Event {
            kind: "link_down".into(),
            ..Default::default()
        }))));
        assert_eq!(event.kind(), v1::history_sample_kind::Kind::Event);
        assert_eq!(event.event, "link_down");
        // A sample without a measurement: no kind, and none in its JSON.
        let none = super::history_sample(&stored(None));
        assert_eq!(none.kind(), v1::history_sample_kind::Kind::Unspecified);
        assert!(serde_json::to_value(&none).unwrap().get("kind").is_none());
        // An SNMP status only a newer agent knows: unspecified.
        let newer = super::history_sample(&stored(Some(Kind::Snmp(v1::SnmpResult {
            status: 99,
            ..Default::default()
        }))));
        assert_eq!(newer.status(), Poll::Unspecified);

        let i = super::interface_info(&v1::Interface {
            oper_status: 7,
            admin_status: 5,
            ..Default::default()
        });
        // ifAdminStatus has no 5 (only ifOperStatus's dormant is 5).
        assert_eq!(
            (i.oper_status(), i.admin_status()),
            (If::LowerLayerDown, If::Unknown)
        );
        let i = super::interface_info(&v1::Interface {
            oper_status: 0,
            admin_status: 2,
            ..Default::default()
        });
        assert_eq!((i.oper_status(), i.admin_status()), (If::Unknown, If::Down));
    }
}
