//! Device health over SNMP: CPU, memory and temperature from whichever of
//! the common MIBs a device answers.
//!
//! Which MIBs a device answers is detected once (one GETNEXT per MIB) at its
//! first poll, then again every [`REDETECT`] or when its sysUpTime goes back
//! (a reboot may bring a new firmware); between detections only the tables
//! the device has are read. Every table read stops after [`MAX_ROWS`] rows.
//! A value that does not fit its MIB (wrong type, out of range) leaves that
//! reading to the next source, or unset, and says why in `problems`; it is
//! never a failed poll.
//!
//! Preference when several MIBs answer: the vendor's own figures first
//! (they are what the vendor's own tools show), then UCD-SNMP-MIB for memory
//! (it tells buffers and cache apart), then HOST-RESOURCES-MIB.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_snmp::{Client, Oid, Value, VarBind};
use siaga_proto::v1::DeviceHealth;

use crate::probe::snmp_socket::DeviceSocket;

/// Rows read per table at most: a chassis has a few dozen entities.
pub const MAX_ROWS: usize = 256;
/// How long a detection holds (unless the device reboots).
pub const REDETECT: Duration = Duration::from_secs(6 * 3600);
/// Problems carried per sample at most.
const MAX_PROBLEMS: usize = 8;

const HR_PROCESSOR_LOAD: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 3, 3, 1, 2];
const HR_STORAGE_TYPE: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 2, 3, 1, 2];
const HR_STORAGE_SIZE: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 2, 3, 1, 5];
const HR_STORAGE_USED: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 2, 3, 1, 6];
const HR_STORAGE_RAM: &[u32] = &[1, 3, 6, 1, 2, 1, 25, 2, 1, 2];
const UCD_MEM: &[u32] = &[1, 3, 6, 1, 4, 1, 2021, 4];
const UCD_LA_LOAD_1: &[u32] = &[1, 3, 6, 1, 4, 1, 2021, 10, 1, 3, 1];
const ENT_SENSOR_ENTRY: &[u32] = &[1, 3, 6, 1, 2, 1, 99, 1, 1, 1];
const CISCO_CPU_5MIN_REV: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 109, 1, 1, 1, 1, 8];
const CISCO_POOL_USED: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 48, 1, 1, 1, 5];
const CISCO_POOL_FREE: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 48, 1, 1, 1, 6];
const MTXR_HEALTH: &[u32] = &[1, 3, 6, 1, 4, 1, 14988, 1, 1, 3];
const HW_ENTITY_STATE_ENTRY: &[u32] = &[1, 3, 6, 1, 4, 1, 2011, 5, 25, 31, 1, 1, 1, 1];

/// A MIB that tells something about a device's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mib {
    /// Cisco CISCO-PROCESS-MIB and CISCO-MEMORY-POOL-MIB.
    Cisco,
    /// Huawei HUAWEI-ENTITY-EXTENT-MIB.
    Huawei,
    /// MikroTik MIKROTIK-MIB (mtxrHealth).
    Mikrotik,
    /// UCD-SNMP-MIB (net-snmp's memory and load).
    Ucd,
    /// HOST-RESOURCES-MIB (hrProcessorLoad, hrStorage).
    HostResources,
    /// ENTITY-SENSOR-MIB (Celsius sensors).
    EntitySensor,
}

impl Mib {
    const ALL: [Mib; 6] = [
        Mib::Cisco,
        Mib::Huawei,
        Mib::Mikrotik,
        Mib::Ucd,
        Mib::HostResources,
        Mib::EntitySensor,
    ];

    /// The word the sample carries.
    pub fn word(self) -> &'static str {
        match self {
            Mib::Cisco => "cisco",
            Mib::Huawei => "huawei",
            Mib::Mikrotik => "mikrotik",
            Mib::Ucd => "ucd",
            Mib::HostResources => "host-resources",
            Mib::EntitySensor => "entity-sensor",
        }
    }

    /// Subtrees whose presence means the device answers this MIB.
    fn probes(self) -> &'static [&'static [u32]] {
        match self {
            Mib::Cisco => &[CISCO_CPU_5MIN_REV, CISCO_POOL_USED],
            Mib::Huawei => &[HW_ENTITY_STATE_ENTRY],
            Mib::Mikrotik => &[MTXR_HEALTH],
            Mib::Ucd => &[UCD_MEM],
            Mib::HostResources => &[HR_PROCESSOR_LOAD, HR_STORAGE_TYPE],
            Mib::EntitySensor => &[ENT_SENSOR_ENTRY],
        }
    }
}

#[derive(Debug)]
struct Detection {
    mibs: Vec<Mib>,
    at: Instant,
    uptime_cs: u32,
}

/// Whether a detection made at `at` with `then_cs` of uptime still holds.
fn detection_holds(at: Instant, then_cs: u32, now: Instant, uptime_cs: u32) -> bool {
    uptime_cs >= then_cs && now.saturating_duration_since(at) < REDETECT
}

/// Reads devices' health; keeps what each device was found to answer.
#[derive(Debug, Default)]
pub struct HealthPoller {
    detected: Mutex<HashMap<String, Detection>>,
}

/// A read stopped by the device (no answer, an error status): the rest of
/// this poll's health reads are skipped.
struct Silent(String);

type Rows = BTreeMap<Vec<u32>, Value>;

impl HealthPoller {
    /// Reads the health of `device` through `client`, whose poll has just
    /// answered with `uptime_cs`. None when the device answers no health MIB.
    pub(crate) async fn read(
        &self,
        device: &str,
        client: &Client<DeviceSocket>,
        uptime_cs: u32,
    ) -> Option<DeviceHealth> {
        let now = Instant::now();
        let known = {
            let d = self.detected.lock().unwrap_or_else(|e| e.into_inner());
            d.get(device)
                .filter(|d| detection_holds(d.at, d.uptime_cs, now, uptime_cs))
                .map(|d| d.mibs.clone())
        };
        let mibs = match known {
            Some(m) => m,
            None => {
                let m = detect(client).await;
                tracing::debug!(device, mibs = ?m, "health MIBs detected");
                self.detected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        device.to_string(),
                        Detection {
                            mibs: m.clone(),
                            at: now,
                            uptime_cs,
                        },
                    );
                m
            }
        };
        if mibs.is_empty() {
            return None;
        }
        let mut h = Health::default();
        for &mib in &mibs {
            if let Err(Silent(why)) = read_mib(client, mib, &mut h).await {
                h.problem(mib, why);
                break;
            }
        }
        Some(h.finish(&mibs))
    }
}

/// Which MIBs the device answers: one GETNEXT per subtree.
async fn detect(client: &Client<DeviceSocket>) -> Vec<Mib> {
    let mut found = Vec::new();
    for mib in Mib::ALL {
        for probe in mib.probes() {
            let base = Oid::from_slice(probe);
            match client.get_next(&base).await {
                Ok(r) => {
                    if r.varbinds
                        .first()
                        .is_some_and(|vb| vb.oid.starts_with(&base) && !is_exception(&vb.value))
                    {
                        found.push(mib);
                        break;
                    }
                }
                // v1's noSuchName past the end, or a refusal: not answered.
                Err(e) if matches!(e.kind(), async_snmp::ErrorKind::Timeout) => return found,
                Err(_) => {}
            }
        }
    }
    found
}

fn is_exception(v: &Value) -> bool {
    matches!(
        v,
        Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
    )
}

/// The rows of one column, keyed by their index, at most [`MAX_ROWS`].
async fn column(client: &Client<DeviceSocket>, arcs: &[u32]) -> Result<Rows, Silent> {
    let base = Oid::from_slice(arcs);
    let mut rows = Rows::new();
    let mut walk = client
        .walk(base.clone())
        .map_err(|e| Silent(format!("walking {base}: {e}")))?;
    while rows.len() < MAX_ROWS {
        match walk.next().await {
            None => break,
            Some(Ok(vb)) => {
                if let Some(index) = index_of(&vb, &base) {
                    rows.insert(index, vb.value);
                }
            }
            Some(Err(e)) => return Err(Silent(format!("walking {base}: {e}"))),
        }
    }
    Ok(rows)
}

fn index_of(vb: &VarBind, base: &Oid) -> Option<Vec<u32>> {
    if is_exception(&vb.value) {
        return None;
    }
    vb.oid
        .arcs()
        .strip_prefix(base.arcs())
        .filter(|i| !i.is_empty())
        .map(<[u32]>::to_vec)
}

/// Scalars by GET; an absent one is None.
async fn scalars(
    client: &Client<DeviceSocket>,
    oids: &[Oid],
) -> Result<Vec<Option<Value>>, Silent> {
    let r = match client.get_many(oids).await {
        Ok(r) => r,
        // SNMPv1 refuses the whole request for one missing object
        // (noSuchName): ask one by one, a missing one is None.
        Err(e) if !matches!(e.kind(), async_snmp::ErrorKind::Timeout) && oids.len() > 1 => {
            let mut out = Vec::with_capacity(oids.len());
            for o in oids {
                out.push(match client.get(o).await {
                    Ok(r) => r
                        .varbinds
                        .into_iter()
                        .find(|vb| vb.oid == *o && !is_exception(&vb.value))
                        .map(|vb| vb.value),
                    Err(e) if matches!(e.kind(), async_snmp::ErrorKind::Timeout) => {
                        return Err(Silent(format!("reading {o}: {e}")));
                    }
                    Err(_) => None,
                });
            }
            return Ok(out);
        }
        Err(e) => return Err(Silent(format!("reading {}: {e}", oids[0]))),
    };
    Ok(oids
        .iter()
        .map(|o| {
            r.varbinds
                .iter()
                .find(|vb| vb.oid == *o && !is_exception(&vb.value))
                .map(|vb| vb.value.clone())
        })
        .collect())
}

fn with(base: &[u32], index: &[u32]) -> Oid {
    let mut a = base.to_vec();
    a.extend_from_slice(index);
    Oid::from_slice(&a)
}

fn col(entry: &[u32], n: u32) -> Vec<u32> {
    let mut a = entry.to_vec();
    a.push(n);
    a
}

async fn read_mib(client: &Client<DeviceSocket>, mib: Mib, h: &mut Health) -> Result<(), Silent> {
    match mib {
        // What a preferred MIB already told is not asked again.
        Mib::HostResources => {
            if h.cpu.is_none() {
                let load = column(client, HR_PROCESSOR_LOAD).await?;
                h.offer_cpu(mib, hr_cpu(&load));
            }
            if h.mem.is_some() {
                return Ok(());
            }
            let types = column(client, HR_STORAGE_TYPE).await?;
            let ram = Oid::from_slice(HR_STORAGE_RAM);
            if let Some(index) = types
                .iter()
                .find(|(_, v)| v.as_oid() == Some(&ram))
                .map(|(i, _)| i.clone())
            {
                let v = scalars(
                    client,
                    &[with(HR_STORAGE_SIZE, &index), with(HR_STORAGE_USED, &index)],
                )
                .await?;
                h.offer_mem(mib, hr_ram(v[0].as_ref(), v[1].as_ref()));
            }
        }
        Mib::Ucd => {
            let at = |n: u32| with(UCD_MEM, &[n, 0]);
            let la = Oid::from_slice(UCD_LA_LOAD_1);
            let v = scalars(client, &[at(5), at(6), at(14), at(15), la]).await?;
            h.offer_mem(mib, ucd_mem(&v[..4]));
            if let Some(v) = &v[4] {
                match load_average(v) {
                    Ok(l) => h.load1 = Some(l),
                    Err(e) => h.problem(mib, e),
                }
            }
        }
        Mib::EntitySensor if h.temp.is_some() => {}
        Mib::EntitySensor => {
            let types = column(client, &col(ENT_SENSOR_ENTRY, 1)).await?;
            if types.values().any(|v| v.as_i32() == Some(CELSIUS)) {
                let scales = column(client, &col(ENT_SENSOR_ENTRY, 2)).await?;
                let precisions = column(client, &col(ENT_SENSOR_ENTRY, 3)).await?;
                let values = column(client, &col(ENT_SENSOR_ENTRY, 4)).await?;
                h.offer_temp(mib, entity_temp(&types, &scales, &precisions, &values));
            }
        }
        Mib::Cisco => {
            let cpu = column(client, CISCO_CPU_5MIN_REV).await?;
            h.offer_cpu(mib, mean_pct("cpmCPUTotal5minRev", &cpu));
            let used = column(client, CISCO_POOL_USED).await?;
            let free = column(client, CISCO_POOL_FREE).await?;
            h.offer_mem(mib, cisco_mem(&used, &free));
        }
        Mib::Mikrotik => {
            let v = scalars(
                client,
                &[with(MTXR_HEALTH, &[10, 0]), with(MTXR_HEALTH, &[11, 0])],
            )
            .await?;
            h.offer_temp(mib, mikrotik_temp(&v));
        }
        Mib::Huawei => {
            let entity = |n| col(HW_ENTITY_STATE_ENTRY, n);
            let cpu = column(client, &entity(5)).await?;
            h.offer_cpu(mib, max_pct("hwEntityCpuUsage", &cpu));
            let mem = column(client, &entity(7)).await?;
            h.offer_mem(mib, max_pct("hwEntityMemUsage", &mem));
            let temp = column(client, &entity(11)).await?;
            let threshold = column(client, &entity(12)).await?;
            h.offer_temp(mib, huawei_temp(&temp, &threshold));
        }
    }
    Ok(())
}

/// entPhySensorType celsius(8).
const CELSIUS: i32 = 8;

/// A reading, absent (the MIB has no such row), or unusable (why).
type Offer<T> = Result<Option<T>, String>;

#[derive(Debug, Default)]
struct Health {
    cpu: Option<(f64, Mib)>,
    mem: Option<(f64, Mib)>,
    temp: Option<(Temp, Mib)>,
    load1: Option<f64>,
    problems: Vec<String>,
}

/// A temperature and the device's own threshold for it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Temp {
    c: f64,
    threshold: Option<f64>,
}

impl Health {
    fn problem(&mut self, mib: Mib, why: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(format!("{}: {why}", mib.word()));
        }
    }

    fn take<T>(&mut self, slot: fn(&mut Self) -> &mut Option<(T, Mib)>, mib: Mib, o: Offer<T>) {
        match o {
            Ok(Some(v)) => {
                let s = slot(self);
                if s.is_none() {
                    *s = Some((v, mib));
                }
            }
            Ok(None) => {}
            Err(why) => self.problem(mib, why),
        }
    }

    fn offer_cpu(&mut self, mib: Mib, o: Offer<f64>) {
        self.take(|h| &mut h.cpu, mib, o);
    }

    fn offer_mem(&mut self, mib: Mib, o: Offer<f64>) {
        self.take(|h| &mut h.mem, mib, o);
    }

    fn offer_temp(&mut self, mib: Mib, o: Offer<Temp>) {
        self.take(|h| &mut h.temp, mib, o);
    }

    fn finish(self, mibs: &[Mib]) -> DeviceHealth {
        let word = |s: Option<Mib>| s.map(Mib::word).unwrap_or_default().to_string();
        DeviceHealth {
            cpu_pct: self.cpu.map(|c| c.0),
            mem_pct: self.mem.map(|m| m.0),
            temp_c: self.temp.map(|t| t.0.c),
            temp_threshold_c: self.temp.and_then(|t| t.0.threshold),
            load1: self.load1,
            cpu_source: word(self.cpu.map(|c| c.1)),
            mem_source: word(self.mem.map(|c| c.1)),
            temp_source: word(self.temp.map(|c| c.1)),
            sources: mibs.iter().map(|m| m.word().to_string()).collect(),
            problems: self.problems,
        }
    }
}

fn name(what: &str, index: &[u32]) -> String {
    let i: Vec<String> = index.iter().map(u32::to_string).collect();
    format!("{what}.{}", i.join("."))
}

/// A percentage value (INTEGER or Gauge32, 0..=100).
fn pct(what: &str, index: &[u32], v: &Value) -> Result<f64, String> {
    let n = match v {
        Value::Integer(n) => i64::from(*n),
        Value::Gauge32(n) | Value::UInteger32(n) => i64::from(*n),
        other => {
            return Err(format!(
                "{} = {other:?} is not a percentage",
                name(what, index)
            ));
        }
    };
    if (0..=100).contains(&n) {
        Ok(n as f64)
    } else {
        Err(format!("{} = {n} is not a percentage", name(what, index)))
    }
}

fn mean_pct(what: &str, rows: &Rows) -> Offer<f64> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut sum = 0.0;
    for (i, v) in rows {
        sum += pct(what, i, v)?;
    }
    Ok(Some(sum / rows.len() as f64))
}

fn max_pct(what: &str, rows: &Rows) -> Offer<f64> {
    let mut best: Option<f64> = None;
    for (i, v) in rows {
        let p = pct(what, i, v)?;
        best = Some(best.map_or(p, |b| b.max(p)));
    }
    Ok(best)
}

/// hrProcessorLoad: the mean over processors.
fn hr_cpu(rows: &Rows) -> Offer<f64> {
    mean_pct("hrProcessorLoad", rows)
}

/// The hrStorageRam row's used / size.
fn hr_ram(size: Option<&Value>, used: Option<&Value>) -> Offer<f64> {
    let (Some(size), Some(used)) = (size, used) else {
        return Ok(None);
    };
    match (size.as_i32(), used.as_i32()) {
        (Some(s), Some(u)) if s > 0 && (0..=s).contains(&u) => {
            Ok(Some(f64::from(u) * 100.0 / f64::from(s)))
        }
        _ => Err(format!(
            "hrStorageRam used {used:?} of size {size:?} is not a usage"
        )),
    }
}

/// memTotalReal, memAvailReal, memBuffer, memCached (kB): what is used
/// beyond buffers and cache.
fn ucd_mem(v: &[Option<Value>]) -> Offer<f64> {
    let Some(Some(total)) = v.first() else {
        return Ok(None);
    };
    let kb = |x: Option<&Value>| -> Result<u64, String> {
        match x {
            None => Ok(0),
            Some(Value::Integer(n)) if *n >= 0 => Ok(u64::try_from(*n).unwrap_or(0)),
            Some(Value::Counter64(n)) => Ok(*n),
            Some(Value::Gauge32(n) | Value::UInteger32(n)) => Ok(u64::from(*n)),
            Some(other) => Err(format!("memory value {other:?} is not a size in kB")),
        }
    };
    let total = kb(Some(total))?;
    if total == 0 {
        return Err("memTotalReal is 0".into());
    }
    let free: u64 = [1, 2, 3]
        .iter()
        .map(|&i| kb(v.get(i).and_then(Option::as_ref)))
        .sum::<Result<u64, String>>()?;
    let used = total.saturating_sub(free);
    Ok(Some(used as f64 * 100.0 / total as f64))
}

/// laLoad is a DisplayString such as "0.42".
fn load_average(v: &Value) -> Result<f64, String> {
    v.as_bytes()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|l| l.is_finite() && *l >= 0.0)
        .ok_or_else(|| format!("laLoad.1 = {v:?} is not a load average"))
}

/// The hottest Celsius sensor of ENTITY-SENSOR-MIB, scaled:
/// value × 10^(3 × (scale − units(9))) / 10^precision.
fn entity_temp(types: &Rows, scales: &Rows, precisions: &Rows, values: &Rows) -> Offer<Temp> {
    let mut best: Option<f64> = None;
    for (i, t) in types {
        if t.as_i32() != Some(CELSIUS) {
            continue;
        }
        let scale = scales.get(i).and_then(Value::as_i32).unwrap_or(9);
        let precision = precisions.get(i).and_then(Value::as_i32).unwrap_or(0);
        let Some(value) = values.get(i) else { continue };
        let Some(v) = value.as_i32() else {
            return Err(format!(
                "{} = {value:?} is not a sensor value",
                name("entPhySensorValue", i)
            ));
        };
        if !(1..=17).contains(&scale) || !(-8..=9).contains(&precision) {
            return Err(format!(
                "{} has scale {scale} and precision {precision}, outside the MIB",
                name("entPhySensorValue", i)
            ));
        }
        let c = f64::from(v) * 10f64.powi(3 * (scale - 9)) / 10f64.powi(precision);
        plausible("entPhySensorValue", i, c)?;
        best = Some(best.map_or(c, |b| b.max(c)));
    }
    Ok(best.map(|c| Temp { c, threshold: None }))
}

/// A temperature no working device reports is a garbage answer.
fn plausible(what: &str, index: &[u32], c: f64) -> Result<(), String> {
    if (-60.0..=200.0).contains(&c) {
        Ok(())
    } else {
        Err(format!(
            "{} = {c} °C is not a plausible temperature",
            name(what, index)
        ))
    }
}

/// mtxrHlTemperature and mtxrHlProcessorTemperature, in tenths of °C: the
/// hotter of the two.
fn mikrotik_temp(v: &[Option<Value>]) -> Offer<Temp> {
    let mut best: Option<f64> = None;
    for (i, x) in v.iter().enumerate() {
        let Some(x) = x else { continue };
        let what = ["mtxrHlTemperature", "mtxrHlProcessorTemperature"][i.min(1)];
        let Some(n) = x.as_i32() else {
            return Err(format!("{what}.0 = {x:?} is not a temperature"));
        };
        let c = f64::from(n) / 10.0;
        plausible(what, &[0], c)?;
        best = Some(best.map_or(c, |b| b.max(c)));
    }
    Ok(best.map(|c| Temp { c, threshold: None }))
}

/// The Huawei entity closest to its own threshold (or the hottest, when
/// none has a threshold); entities reporting 0 have no sensor.
fn huawei_temp(temps: &Rows, thresholds: &Rows) -> Offer<Temp> {
    let mut best: Option<Temp> = None;
    let margin = |t: &Temp| t.threshold.map_or(f64::INFINITY, |th| th - t.c);
    for (i, v) in temps {
        let Some(n) = v.as_i32() else {
            return Err(format!(
                "{} = {v:?} is not a temperature",
                name("hwEntityTemperature", i)
            ));
        };
        if n == 0 {
            continue;
        }
        let c = f64::from(n);
        plausible("hwEntityTemperature", i, c)?;
        let threshold = thresholds
            .get(i)
            .and_then(Value::as_i32)
            .filter(|t| *t > 0 && *t <= 200)
            .map(f64::from);
        let t = Temp { c, threshold };
        best = Some(match best {
            None => t,
            Some(b) => {
                let (mb, mt) = (margin(&b), margin(&t));
                if mt < mb || (mt == mb && t.c > b.c) {
                    t
                } else {
                    b
                }
            }
        });
    }
    Ok(best)
}

/// CISCO-MEMORY-POOL-MIB: used / (used + free) over every pool.
fn cisco_mem(used: &Rows, free: &Rows) -> Offer<f64> {
    let (mut u, mut f) = (0u64, 0u64);
    for (i, v) in used {
        let Some(x) = v.as_u64() else {
            return Err(format!(
                "{} = {v:?} is not a size",
                name("ciscoMemoryPoolUsed", i)
            ));
        };
        u += x;
        f += free.get(i).and_then(Value::as_u64).unwrap_or(0);
    }
    if u + f == 0 {
        return Ok(None);
    }
    Ok(Some(u as f64 * 100.0 / (u + f) as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    fn rows(vals: &[(u32, Value)]) -> Rows {
        vals.iter().map(|(i, v)| (vec![*i], v.clone())).collect()
    }

    #[test]
    fn cpu_is_the_mean_over_processors() {
        let r = rows(&[(196608, Value::Integer(90)), (196609, Value::Integer(100))]);
        assert_eq!(hr_cpu(&r), Ok(Some(95.0)));
        assert_eq!(hr_cpu(&Rows::new()), Ok(None));
    }

    #[test_case(Value::Integer(250), "hrProcessorLoad.1 = 250 is not a percentage" ; "out of range")]
    #[test_case(Value::Integer(-1), "hrProcessorLoad.1 = -1 is not a percentage" ; "negative")]
    #[test_case(Value::OctetString(b"97".to_vec().into()), "hrProcessorLoad.1 = OctetString" ; "wrong type")]
    fn a_garbage_cpu_is_unavailable_with_the_reason(v: Value, want: &str) {
        let why = hr_cpu(&rows(&[(1, v)])).expect_err("garbage");
        assert!(why.starts_with(want), "{why}");
    }

    #[test]
    fn ucd_memory_leaves_out_buffers_and_cache() {
        let v = [
            Some(Value::Integer(1000)),
            Some(Value::Integer(100)),
            Some(Value::Integer(50)),
            Some(Value::Integer(250)),
        ];
        assert_eq!(ucd_mem(&v), Ok(Some(60.0)));
        assert_eq!(ucd_mem(&[None, None, None, None]), Ok(None));
        assert!(ucd_mem(&[Some(Value::Integer(0)), None, None, None]).is_err());
        assert!(ucd_mem(&[Some(Value::Null), None, None, None]).is_err());
    }

    #[test]
    fn hr_storage_ram_is_used_over_size() {
        assert_eq!(
            hr_ram(Some(&Value::Integer(400)), Some(&Value::Integer(100))),
            Ok(Some(25.0))
        );
        assert!(hr_ram(Some(&Value::Integer(400)), Some(&Value::Integer(500))).is_err());
        assert_eq!(hr_ram(None, Some(&Value::Integer(5))), Ok(None));
    }

    #[test_case(9, 0, 45, Some(45.0) ; "units")]
    #[test_case(9, 1, 452, Some(45.2) ; "tenths")]
    #[test_case(8, 0, 45_000, Some(45.0) ; "milli")]
    fn entity_sensor_celsius_is_scaled(scale: i32, precision: i32, value: i32, want: Option<f64>) {
        let t = entity_temp(
            &rows(&[(1, Value::Integer(CELSIUS)), (2, Value::Integer(10))]),
            &rows(&[(1, Value::Integer(scale)), (2, Value::Integer(9))]),
            &rows(&[(1, Value::Integer(precision)), (2, Value::Integer(0))]),
            &rows(&[(1, Value::Integer(value)), (2, Value::Integer(5000))]),
        );
        assert_eq!(t.map(|t| t.map(|t| t.c)), Ok(want));
    }

    #[test]
    fn an_implausible_sensor_is_garbage() {
        let t = entity_temp(
            &rows(&[(1, Value::Integer(CELSIUS))]),
            &rows(&[(1, Value::Integer(9))]),
            &rows(&[(1, Value::Integer(0))]),
            &rows(&[(1, Value::Integer(30_000))]),
        );
        assert!(t.is_err_and(|e| e.contains("not a plausible temperature")));
    }

    #[test]
    fn mikrotik_temperatures_are_tenths() {
        let v = [Some(Value::Integer(385)), Some(Value::Integer(521))];
        assert_eq!(
            mikrotik_temp(&v),
            Ok(Some(Temp {
                c: 52.1,
                threshold: None
            }))
        );
        assert!(mikrotik_temp(&[Some(Value::Null), None]).is_err());
    }

    #[test]
    fn huawei_takes_the_entity_nearest_its_own_threshold() {
        let temps = rows(&[
            (1, Value::Integer(0)),
            (2, Value::Integer(60)),
            (3, Value::Integer(52)),
        ]);
        let th = rows(&[
            (1, Value::Integer(0)),
            (2, Value::Integer(90)),
            (3, Value::Integer(55)),
        ]);
        assert_eq!(
            huawei_temp(&temps, &th),
            Ok(Some(Temp {
                c: 52.0,
                threshold: Some(55.0)
            }))
        );
        assert_eq!(
            max_pct(
                "hwEntityCpuUsage",
                &rows(&[(1, Value::Integer(0)), (2, Value::Integer(37))])
            ),
            Ok(Some(37.0))
        );
    }

    #[test]
    fn cisco_memory_is_used_over_used_plus_free() {
        let used = rows(&[(1, Value::Gauge32(300)), (2, Value::Gauge32(100))]);
        let free = rows(&[(1, Value::Gauge32(500)), (2, Value::Gauge32(100))]);
        assert_eq!(cisco_mem(&used, &free), Ok(Some(40.0)));
    }

    #[test]
    fn the_first_usable_source_wins_and_garbage_is_told() {
        let mut h = Health::default();
        h.offer_cpu(
            Mib::Huawei,
            Err("hwEntityCpuUsage.1 = 250 is not a percentage".into()),
        );
        h.offer_cpu(Mib::HostResources, Ok(Some(12.0)));
        h.offer_cpu(Mib::HostResources, Ok(Some(99.0)));
        let d = h.finish(&[Mib::Huawei, Mib::HostResources]);
        assert_eq!(d.cpu_pct, Some(12.0));
        assert_eq!(d.cpu_source, "host-resources");
        assert_eq!(
            d.problems,
            ["huawei: hwEntityCpuUsage.1 = 250 is not a percentage"]
        );
        assert_eq!(d.sources, ["huawei", "host-resources"]);
    }

    #[test]
    fn detection_holds_until_a_reboot_or_six_hours() {
        let t0 = Instant::now();
        assert!(detection_holds(t0, 100, t0 + Duration::from_secs(60), 6100));
        assert!(!detection_holds(t0, 100, t0 + Duration::from_secs(60), 50));
        assert!(!detection_holds(t0, 100, t0 + REDETECT, 100 + 2_160_000));
    }

    #[test]
    fn load_average_is_parsed_from_its_string() {
        assert_eq!(
            load_average(&Value::OctetString(b"0.42".to_vec().into())),
            Ok(0.42)
        );
        assert!(load_average(&Value::OctetString(b"lots".to_vec().into())).is_err());
    }
}
