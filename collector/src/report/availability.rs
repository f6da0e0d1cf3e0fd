//! Availability of devices and links over a period (the monthly SLA report),
//! computed from the stored samples alone, so that anyone can compute the
//! same figures again.
//!
//! # What counts as what
//!
//! Each device's samples are replayed day by day (local days of the
//! period), oldest first and range by range (never the whole period in
//! memory), through the health engine's own state machines ([`Tracker`])
//! with the device alone in its topology. After every
//! reading of a subject (the device, or one of its links) the subject's
//! confirmed level is its state from that reading's time until its next
//! reading, but for at most two probe intervals: when the next reading comes
//! later than that, the reading counts for one interval and the rest is *no
//! data*. The last reading counts for one interval. The replay of a day
//! starts `max(enter_cycles, leave_cycles) + 2` intervals before it, so the
//! state at its start is already confirmed, and reads two intervals past
//! its end, so a reading before midnight holds until the next one; what it
//! finds is clipped to the day. Down is the health engine's down, with its
//! hysteresis: an
//! outage begins at the reading that confirms it and ends at the reading that
//! confirms the recovery.
//!
//! Every instant of the period is then exactly one of, in this order:
//! - **maintenance**: a maintenance window covers the subject; removed from
//!   the measured time.
//! - **unreachable**: an ancestor device (for a link: also its own device)
//!   is down. The outage is the ancestor's, counted there once, not the
//!   subject's. Because the subject's own readings confirm a little after or
//!   before its ancestor's, the subject's own down time within
//!   `max(enter_cycles, leave_cycles)` probe intervals of an ancestor's down
//!   time is unreachable too.
//! - **no data**: no reading covers it (the agent was silent, or the probe
//!   failed to run); reported on its own, counted neither up nor down.
//! - **down**: the subject's own confirmed down; for a link also its
//!   confirmed degraded level (utilisation or errors past their threshold,
//!   or an oper status the rules call degraded): a link is up when its oper
//!   status is up and it is not degraded, as the health engine judges it.
//! - **up**: any other confirmed level (for a device: up or degraded; for a
//!   link: up).
//!
//! Availability is `up / (up + down)`. An *incident* is one stretch of the
//! subject's own confirmed down time (a stretch broken by no data is two)
//! that keeps some time after maintenance and unreachable time are taken out;
//! its *duration* is that remaining time. MTTR is the mean duration, the
//! longest outage the largest. Incidents come from the samples rather than
//! from tickets: a ticket opens on the same confirmed down, but also on
//! degraded levels, for an agent's silence, and by a pemohon's letter, and
//! its closing waits for people; the samples say when the network was down.
//!
//! An OPD's figures sum those of its devices and links (times and
//! incidents), its longest outage is the largest of theirs.
//!
//! # The cache of replayed days
//!
//! A province probed every 10 s stores 777 million samples a month;
//! replaying them all for each request would take hours. Because each day
//! is replayed on its own, a device's replayed day (its subjects' up and
//! down spans, a few hundred bytes) is kept in the store once the day and
//! the two intervals read after it are over, and read back instead of
//! replayed. It is kept with what it depends on: a fingerprint of the
//! rules, the interval and the device's links, and the *marks* of the UTC
//! days of samples it read, which the store changes in the same
//! transaction as every sample it stores. A sample that arrives late (an
//! agent's spool after an outage) changes a mark, and the days that read
//! that UTC day are replayed again at the next request; a prune drops the
//! days that may have read what it removed. So the cache never says what a
//! replay of the stored samples would not, and a month's figures are read
//! from about 30 small rows per device. Rollups were not used: they keep
//! neither the readings' times nor the oper status, so the health engine's
//! hysteresis cannot be replayed from them.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::error::StoreError;
use crate::health::{
    HealthRules, Level, MaintenanceWindow, Subject, Topology, Tracker, TsUs,
    state::{DeviceNode, LinkNode},
};
use crate::store::{DAY_US, HistoryFrom, Store};

/// Samples read per store range.
const CHUNK: usize = 4096;

/// A half-open range of time `[from_us, until_us)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    /// Start, µs since the epoch.
    pub from_us: TsUs,
    /// End (exclusive).
    pub until_us: TsUs,
}

impl Period {
    /// The calendar month `YYYY-MM` in local time `utc_offset_minutes` east
    /// of UTC (WIB = 420).
    pub fn month(spec: &str, utc_offset_minutes: i32) -> Result<Self, String> {
        let bad = || format!("period {spec:?} is not a month YYYY-MM");
        let (y, m) = spec.trim().split_once('-').ok_or_else(bad)?;
        let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
        let next = if m == 12 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(y, m + 1, 1)
        }
        .ok_or_else(bad)?;
        let offset_us = i64::from(utc_offset_minutes) * 60_000_000;
        let at = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_micros() - offset_us)
                .ok_or_else(bad)
        };
        debug_assert_eq!(first.day(), 1);
        Ok(Self {
            from_us: at(first)?,
            until_us: at(next)?,
        })
    }

    /// Length in µs.
    pub fn len_us(&self) -> i64 {
        self.until_us.saturating_sub(self.from_us).max(0)
    }
}

/// The figures of one subject (or a sum of them) over a period, in µs.
/// `up + down + maintenance + unreachable + no_data` is the period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Up or degraded.
    pub up_us: i64,
    /// Its own outages.
    pub down_us: i64,
    /// Covered by a maintenance window.
    pub maintenance_us: i64,
    /// Unreachable because an ancestor was down.
    pub unreachable_us: i64,
    /// No reading.
    pub no_data_us: i64,
    /// Outages.
    pub incidents: u32,
    /// The longest outage.
    pub longest_outage_us: i64,
}

impl Figures {
    /// `up / (up + down)` in percent; `None` when nothing was measured.
    pub fn availability_pct(&self) -> Option<f64> {
        let measured = self.up_us + self.down_us;
        (measured > 0).then(|| self.up_us as f64 * 100.0 / measured as f64)
    }

    /// Mean time to repair: the mean outage; `None` without outages.
    pub fn mttr_us(&self) -> Option<i64> {
        (self.incidents > 0).then(|| self.down_us / i64::from(self.incidents))
    }

    /// Adds another subject's figures.
    pub fn add(&mut self, o: &Figures) {
        self.up_us += o.up_us;
        self.down_us += o.down_us;
        self.maintenance_us += o.maintenance_us;
        self.unreachable_us += o.unreachable_us;
        self.no_data_us += o.no_data_us;
        self.incidents += o.incidents;
        self.longest_outage_us = self.longest_outage_us.max(o.longest_outage_us);
    }
}

/// One device or link.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubjectRow {
    /// Its OPD.
    pub opd: String,
    /// The device or link.
    pub subject: Subject,
    /// Its figures.
    pub figures: Figures,
}

/// One OPD: the sum of its devices and links.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpdRow {
    /// OPD id.
    pub opd: String,
    /// Its figures.
    pub figures: Figures,
    /// Its tickets of the period inside and outside the SOP's time
    /// standards (filled by the caller, who has the tickets).
    pub tickets: crate::sop::register::Standards,
}

/// The availability of a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Availability {
    /// The period.
    pub period: Period,
    /// Per OPD, by id.
    pub opds: Vec<OpdRow>,
    /// Per device and link, by OPD then subject.
    pub subjects: Vec<SubjectRow>,
    /// How the figures were read.
    pub stats: Stats,
}

/// How many device-days were replayed from the samples and how many read
/// from the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Replayed from the samples.
    pub days_replayed: u64,
    /// Read from the cache of replayed days.
    pub days_cached: u64,
}

/// Sorted, disjoint, non-touching spans of time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spans(Vec<(TsUs, TsUs)>);

impl Spans {
    /// From spans in any order, overlapping or not.
    pub fn from_unsorted(mut v: Vec<(TsUs, TsUs)>) -> Self {
        v.sort_unstable();
        let mut s = Self::default();
        for (a, b) in v {
            s.push(a, b);
        }
        s
    }

    /// Appends `[a, b)`, which starts no earlier than the last span.
    fn push(&mut self, a: TsUs, b: TsUs) {
        if a >= b {
            return;
        }
        if let Some(last) = self.0.last_mut()
            && a <= last.1
        {
            last.1 = last.1.max(b);
            return;
        }
        self.0.push((a, b));
    }

    /// The spans.
    pub fn spans(&self) -> &[(TsUs, TsUs)] {
        &self.0
    }

    /// Total length.
    pub fn total(&self) -> i64 {
        self.0.iter().map(|(a, b)| b - a).sum()
    }

    /// Both together.
    pub fn union(&self, o: &Spans) -> Spans {
        Spans::from_unsorted(self.0.iter().chain(&o.0).copied().collect())
    }

    /// What of `self` is not in `o`.
    pub fn minus(&self, o: &Spans) -> Spans {
        let mut out = Spans::default();
        let mut j = 0;
        for &(a, b) in &self.0 {
            while j < o.0.len() && o.0[j].1 <= a {
                j += 1;
            }
            let mut cur = a;
            let mut k = j;
            while cur < b {
                match o.0.get(k) {
                    Some(&(c, d)) if c < b => {
                        out.push(cur, c.max(cur));
                        cur = cur.max(d);
                        k += 1;
                    }
                    _ => {
                        out.push(cur, b);
                        cur = b;
                    }
                }
            }
        }
        out
    }

    /// What is in both.
    pub fn intersect(&self, o: &Spans) -> Spans {
        self.minus(&self.minus(o))
    }

    /// Each span made `by` longer at both ends.
    pub fn widen(&self, by: i64) -> Spans {
        Spans::from_unsorted(self.0.iter().map(|(a, b)| (a - by, b + by)).collect())
    }
}

/// One subject's states from its readings (see the module's rules).
#[derive(Debug, Default)]
struct Timeline {
    interval: i64,
    /// Degraded counts as down (a link).
    strict: bool,
    last: Option<(TsUs, Option<Level>)>,
    up: Spans,
    down: Spans,
}

impl Timeline {
    fn new(interval: i64, strict: bool) -> Self {
        Self {
            interval,
            strict,
            ..Self::default()
        }
    }

    fn reading(&mut self, at: TsUs, level: Option<Level>) {
        if let Some((t0, l0)) = self.last {
            let end = if at - t0 <= 2 * self.interval {
                at
            } else {
                t0 + self.interval
            };
            self.record(t0, end, l0);
        }
        self.last = Some((at, level));
    }

    fn finish(&mut self) {
        if let Some((t0, l0)) = self.last.take() {
            self.record(t0, t0 + self.interval, l0);
        }
    }

    fn record(&mut self, a: TsUs, b: TsUs, level: Option<Level>) {
        match level {
            Some(Level::Down) => self.down.push(a, b),
            Some(Level::Degraded) if self.strict => self.down.push(a, b),
            Some(_) => self.up.push(a, b),
            // Not confirmed yet: no data.
            None => {}
        }
    }
}

/// What a device's replay depends on besides its samples: the rules, its
/// OPD's interval and its links. A cached day made under others is stale.
fn fingerprint(rules: &HealthRules, interval: i64, links: &[LinkNode]) -> String {
    use sha2::Digest;
    let text = serde_json::to_string(&(rules, interval, links)).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16])
}

/// One device's replayed day as cached: under what it was made, the marks
/// of the samples it read, and per subject its up and down spans.
#[derive(Debug, Serialize, serde::Deserialize)]
struct CachedDay {
    fingerprint: String,
    marks: Vec<u64>,
    subjects: Vec<(Subject, SpanList, SpanList)>,
}

/// Spans as stored.
type SpanList = Vec<(TsUs, TsUs)>;

/// How a device is replayed: alone in its topology.
struct Replay<'a> {
    opd: String,
    interval: i64,
    alone: Topology,
    rules: &'a HealthRules,
    /// Intervals read before a day (the warm-up) and after it.
    before: i64,
    after: i64,
}

impl<'a> Replay<'a> {
    fn new(topo: &Topology, rules: &'a HealthRules, device: &str) -> Option<Self> {
        let node = topo.devices.get(device)?;
        let opd = node.opd.clone();
        let interval = topo.interval_us(&opd);
        let alone = Topology {
            devices: BTreeMap::from([(
                device.to_string(),
                DeviceNode {
                    opd: opd.clone(),
                    parent: None,
                },
            )]),
            links: topo
                .links
                .iter()
                .filter(|l| l.device == device)
                .cloned()
                .collect::<Vec<LinkNode>>(),
            intervals_us: BTreeMap::from([(opd.clone(), interval)]),
            default_interval_us: interval,
        };
        let cycles = i64::from(
            rules
                .hysteresis
                .enter_cycles
                .max(rules.hysteresis.leave_cycles),
        );
        Some(Self {
            opd,
            interval,
            alone,
            rules,
            before: (cycles + 2).saturating_mul(interval),
            after: 2 * interval,
        })
    }

    /// The samples `day` reads: from the warm-up before it to two
    /// intervals after it (a reading before its end holds until the next).
    fn reads(&self, day: Period) -> (TsUs, TsUs) {
        (
            day.from_us.saturating_sub(self.before),
            day.until_us.saturating_add(self.after),
        )
    }

    /// Replays the samples of `device` that `day` reads and returns the
    /// timelines of the device and its links, clipped to the day.
    fn day(
        &self,
        store: &dyn Store,
        device: &str,
        day: Period,
    ) -> Result<BTreeMap<Subject, Timeline>, StoreError> {
        let mut lines: BTreeMap<Subject, Timeline> = self
            .alone
            .subjects_of(&self.opd)
            .into_iter()
            .map(|s| {
                let strict = matches!(s, Subject::Link { .. });
                (s, Timeline::new(self.interval, strict))
            })
            .collect();
        let mut tracker = Tracker::new(self.rules.clone(), self.alone.clone());
        let (first, end) = self.reads(day);
        let mut from = HistoryFrom::Since(first);
        loop {
            let rows = store.history_range(device, &from, end, CHUNK)?;
            for row in &rows {
                let s = &row.sample;
                let up = tracker.sample(&self.opd, s, s.ts_us);
                let mut seen: Vec<&Subject> = Vec::new();
                for subject in &up.touched {
                    if seen.contains(&subject) {
                        continue;
                    }
                    seen.push(subject);
                    let level = tracker.machine(subject).and_then(|m| m.hard());
                    if let Some(line) = lines.get_mut(subject) {
                        line.reading(s.ts_us, level);
                    }
                }
            }
            match rows.last() {
                Some(last) if rows.len() == CHUNK => {
                    from =
                        HistoryFrom::After(last.sample.ts_us, last.agent.clone(), last.sample.seq);
                }
                _ => break,
            }
        }
        let whole = Spans(vec![(day.from_us, day.until_us)]);
        for line in lines.values_mut() {
            line.finish();
            line.up = line.up.intersect(&whole);
            line.down = line.down.intersect(&whole);
        }
        Ok(lines)
    }
}

/// The local days of `period` (whole days from its start; the last may be
/// shorter).
fn days(period: Period) -> Vec<Period> {
    let mut out = Vec::new();
    let mut at = period.from_us;
    while at < period.until_us {
        let until = at.saturating_add(DAY_US).min(period.until_us);
        out.push(Period {
            from_us: at,
            until_us: until,
        });
        at = until;
    }
    out
}

/// Each local day of `period` for `device`: the marks of the samples it
/// reads and, when the cache holds it under the same fingerprint and marks,
/// its cached replay. Also the fingerprint a replay is kept under.
#[allow(clippy::type_complexity)]
fn lookup(
    store: &dyn Store,
    r: &Replay<'_>,
    device: &str,
    period: Period,
) -> Result<(String, Vec<(Period, Vec<u64>, Option<CachedDay>)>), StoreError> {
    let print = fingerprint(r.rules, r.interval, &r.alone.links);
    let (first, end) = r.reads(period);
    // Before any replay: a sample stored meanwhile changes a mark after
    // the one kept, and the day is replayed again next time.
    let marks = store.sample_marks(device, first, end)?;
    let first_utc = first.div_euclid(DAY_US) * DAY_US;
    let marks_of = |day: Period| -> Vec<u64> {
        let (a, b) = r.reads(day);
        let i = usize::try_from((a.div_euclid(DAY_US) * DAY_US - first_utc) / DAY_US).unwrap_or(0);
        let j = usize::try_from((b - 1).div_euclid(DAY_US) * DAY_US - first_utc)
            .map_or(0, |v| v / DAY_US as usize);
        marks.get(i..=j).map(<[u64]>::to_vec).unwrap_or_default()
    };
    let cached: BTreeMap<TsUs, Vec<u8>> = store
        .cached_days(device, period.from_us, period.until_us)?
        .into_iter()
        .collect();
    let looked = days(period)
        .into_iter()
        .map(|day| {
            let want = marks_of(day);
            let hit = cached
                .get(&day.from_us)
                .and_then(|b| serde_json::from_slice::<CachedDay>(b).ok())
                .filter(|c| c.fingerprint == print && c.marks == want && !want.is_empty());
            (day, want, hit)
        })
        .collect();
    Ok((print, looked))
}

/// Replays and caches the days of `period` that are over at `now` (with
/// the samples read after them) and not cached yet, for `device`: what the
/// collector does in the background after each local midnight, so that a
/// request for a finished month reads only the cache.
pub fn fill(
    store: &dyn Store,
    topo: &Topology,
    rules: &HealthRules,
    device: &str,
    period: Period,
    now: TsUs,
) -> Result<Stats, StoreError> {
    let mut stats = Stats::default();
    let Some(r) = Replay::new(topo, rules, device) else {
        return Ok(stats);
    };
    let Some(last) = days(period)
        .into_iter()
        .take_while(|d| r.reads(*d).1 <= now)
        .last()
    else {
        return Ok(stats);
    };
    let over = Period {
        from_us: period.from_us,
        until_us: last.until_us,
    };
    replay(store, topo, rules, device, over, Some(now), &mut stats)?;
    Ok(stats)
}

/// How much of a request the cache can answer: device-days over at the
/// time asked that are cached, and those that a request would replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Over and cached.
    pub ready: u64,
    /// Over and not cached (or cached under other samples or rules).
    pub missing: u64,
}

/// The readiness of the devices [`compute`] would read for `opd` over
/// `period` at `now`, without replaying anything. Days the store cannot
/// cache (a store without sample marks) count as neither.
pub fn readiness(
    store: &dyn Store,
    topo: &Topology,
    rules: &HealthRules,
    period: Period,
    opd: Option<&str>,
    now: TsUs,
) -> Result<Readiness, StoreError> {
    let mut out = Readiness::default();
    for (_, device) in devices_for(topo, opd) {
        let Some(r) = Replay::new(topo, rules, &device) else {
            continue;
        };
        let (_, looked) = lookup(store, &r, &device, period)?;
        for (day, want, hit) in looked {
            if r.reads(day).1 > now || want.is_empty() {
                continue;
            }
            if hit.is_some() {
                out.ready += 1;
            } else {
                out.missing += 1;
            }
        }
    }
    Ok(out)
}

impl Readiness {
    /// What a person reads when the month is not ready: the progress and
    /// the next step.
    pub fn preparing(&self, period: &str) -> String {
        let all = self.ready + self.missing;
        let pct = (self.ready * 100).checked_div(all).unwrap_or(100);
        format!(
            "the availability of {period} is being prepared: {} of {all} device-days ready \
             ({pct} %); try again in a few minutes",
            self.ready
        )
    }
}

/// [`compute`] at `now`, unless more than `limit` finished device-days are
/// not cached yet: then, without replaying anything, how far the
/// background preparation is (`Ok(Err(readiness))`). A request then answers
/// at once instead of replaying for minutes what the background task is
/// replaying anyway.
#[allow(clippy::too_many_arguments)]
pub fn compute_prepared(
    store: &dyn Store,
    topo: &Topology,
    rules: &HealthRules,
    windows: &[MaintenanceWindow],
    period: Period,
    opd: Option<&str>,
    now: TsUs,
    limit: u64,
) -> Result<Result<Availability, Readiness>, StoreError> {
    let ready = readiness(store, topo, rules, period, opd, now)?;
    if ready.missing > limit {
        return Ok(Err(ready));
    }
    compute(store, topo, rules, windows, period, opd, Some(now)).map(Ok)
}

/// The devices to replay for `opd` (all when `None`): those asked for and
/// everything above them, ancestors first.
pub fn devices_for(topo: &Topology, opd: Option<&str>) -> Vec<(usize, String)> {
    let mut picked: std::collections::BTreeSet<String> = Default::default();
    for (id, node) in &topo.devices {
        if opd.is_none_or(|o| node.opd == o) {
            picked.extend(topo.ancestors(id));
            picked.insert(id.clone());
        }
    }
    let mut devices: Vec<(usize, String)> = picked
        .into_iter()
        .map(|d| (topo.ancestors(&d).len(), d))
        .collect();
    devices.sort();
    devices
}

/// Replays `device` over `period` day by day and returns the timelines of
/// the device and its links. With `now`, a day cached with the marks its
/// samples still have is read instead of replayed, and a day replayed that
/// has ended (with the samples read after it) by `now` is cached.
fn replay(
    store: &dyn Store,
    topo: &Topology,
    rules: &HealthRules,
    device: &str,
    period: Period,
    now: Option<TsUs>,
    stats: &mut Stats,
) -> Result<BTreeMap<Subject, Timeline>, StoreError> {
    let Some(r) = Replay::new(topo, rules, device) else {
        return Ok(BTreeMap::new());
    };
    let mut lines: BTreeMap<Subject, Timeline> = BTreeMap::new();
    let mut add = |day: BTreeMap<Subject, Timeline>| {
        for (subject, l) in day {
            let line = lines
                .entry(subject)
                .or_insert_with(|| Timeline::new(l.interval, l.strict));
            line.up = line.up.union(&l.up);
            line.down = line.down.union(&l.down);
        }
    };
    let Some(now) = now else {
        for day in days(period) {
            add(r.day(store, device, day)?);
            stats.days_replayed += 1;
        }
        return Ok(lines);
    };
    let (print, looked) = lookup(store, &r, device, period)?;
    let mut keep = Vec::new();
    for (day, want, hit) in looked {
        if let Some(c) = hit {
            stats.days_cached += 1;
            add(c
                .subjects
                .into_iter()
                .map(|(s, up, down)| {
                    let mut l = Timeline::new(r.interval, matches!(s, Subject::Link { .. }));
                    l.up = Spans::from_unsorted(up);
                    l.down = Spans::from_unsorted(down);
                    (s, l)
                })
                .collect());
            continue;
        }
        let lines = r.day(store, device, day)?;
        stats.days_replayed += 1;
        if r.reads(day).1 <= now && !want.is_empty() {
            let c = CachedDay {
                fingerprint: print.clone(),
                marks: want,
                subjects: lines
                    .iter()
                    .map(|(s, l)| (s.clone(), l.up.0.clone(), l.down.0.clone()))
                    .collect(),
            };
            if let Ok(bytes) = serde_json::to_vec(&c) {
                keep.push((day.from_us, bytes));
            }
        }
        add(lines);
    }
    store.cache_days(device, &keep)?;
    Ok(lines)
}

/// The figures of one subject from its timeline, the maintenance windows
/// that cover it and the down time of what it hangs behind (`above`).
fn figures(
    period: Period,
    line: &Timeline,
    maintenance: &Spans,
    above: &Spans,
    slack: i64,
) -> Figures {
    let whole = Spans(vec![(period.from_us, period.until_us)]);
    let m = maintenance.intersect(&whole);
    let near = line.down.intersect(&above.widen(slack));
    let r = above.union(&near).intersect(&whole).minus(&m);
    let gone = m.union(&r);
    let up = line.up.minus(&gone);
    let down = line.down.minus(&gone);
    let no_data = whole.minus(&line.up).minus(&line.down).minus(&gone);
    let mut f = Figures {
        up_us: up.total(),
        down_us: down.total(),
        maintenance_us: m.total(),
        unreachable_us: r.total(),
        no_data_us: no_data.total(),
        ..Figures::default()
    };
    for &(a, b) in line.down.spans() {
        let left = Spans(vec![(a, b)]).minus(&gone).total();
        if left > 0 {
            f.incidents += 1;
            f.longest_outage_us = f.longest_outage_us.max(left);
        }
    }
    f
}

/// The availability of every device and link of `opd` (all OPDs when
/// `None`) over `period`, from the samples in `store`, judged with `rules`,
/// `topo` (the inventory) and the maintenance `windows`.
pub fn compute(
    store: &dyn Store,
    topo: &Topology,
    rules: &HealthRules,
    windows: &[MaintenanceWindow],
    period: Period,
    opd: Option<&str>,
    now: Option<TsUs>,
) -> Result<Availability, StoreError> {
    let wanted = |d: &DeviceNode| opd.is_none_or(|o| d.opd == o);
    let devices = devices_for(topo, opd);
    let mut stats = Stats::default();
    let cycles = i64::from(
        rules
            .hysteresis
            .enter_cycles
            .max(rules.hysteresis.leave_cycles),
    );
    let mut own_down: BTreeMap<String, Spans> = BTreeMap::new();
    let mut subjects = Vec::new();
    for (_, device) in &devices {
        let Some(node) = topo.devices.get(device) else {
            continue;
        };
        let slack = cycles.saturating_mul(topo.interval_us(&node.opd));
        let lines = replay(store, topo, rules, device, period, now, &mut stats)?;
        let mut above = Spans::default();
        for a in topo.ancestors(device) {
            if let Some(d) = own_down.get(&a) {
                above = above.union(d);
            }
        }
        let dev = Subject::device(device.clone());
        let mut device_down = Spans::default();
        for (subject, line) in &lines {
            let maintenance = Spans::from_unsorted(
                windows
                    .iter()
                    .flat_map(|w| w.spans_for(subject, &node.opd, period.from_us, period.until_us))
                    .collect(),
            );
            let f = if *subject == dev {
                device_down = line.down.clone();
                figures(period, line, &maintenance, &above, slack)
            } else {
                let own = lines.get(&dev).map(|l| l.down.clone()).unwrap_or_default();
                figures(period, line, &maintenance, &above.union(&own), slack)
            };
            if wanted(node) {
                subjects.push(SubjectRow {
                    opd: node.opd.clone(),
                    subject: subject.clone(),
                    figures: f,
                });
            }
        }
        // What the device's descendants count as unreachable (with what
        // is above it, which they look up themselves).
        own_down.insert(device.clone(), device_down);
    }
    subjects.sort_by(|a, b| (&a.opd, &a.subject).cmp(&(&b.opd, &b.subject)));
    let mut opds: BTreeMap<String, Figures> = BTreeMap::new();
    for row in &subjects {
        opds.entry(row.opd.clone()).or_default().add(&row.figures);
    }
    Ok(Availability {
        period,
        opds: opds
            .into_iter()
            .map(|(opd, figures)| OpdRow {
                opd,
                figures,
                tickets: Default::default(),
            })
            .collect(),
        subjects,
        stats,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use siaga_proto::v1;

    use super::*;
    use crate::health::{Schedule, Scope};
    use crate::store::{IngestBatch, RedbStore};

    const S: i64 = 1_000_000;
    const INTERVAL: i64 = 300 * S;

    fn icmp(seq: u64, ts_us: i64, device: &str, lost: bool) -> v1::Sample {
        v1::Sample {
            seq,
            ts_us,
            device: device.into(),
            kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
                sent: 4,
                received: if lost { 0 } else { 4 },
                loss_pct: if lost { 100.0 } else { 0.0 },
                rtt_avg_us: (!lost).then_some(1500),
                ..Default::default()
            })),
        }
    }

    /// One SNMP poll of `device` with its interface `ge0`: oper status
    /// up or down, utilisation in `util` %.
    fn snmp(seq: u64, ts_us: i64, device: &str, oper_up: bool, util: f64) -> v1::Sample {
        v1::Sample {
            seq,
            ts_us,
            device: device.into(),
            kind: Some(v1::sample::Kind::Snmp(v1::SnmpResult {
                status: v1::SnmpStatus::Ok as i32,
                interfaces: vec![v1::Interface {
                    if_index: 2,
                    if_name: "ge0".into(),
                    admin_status: 1,
                    oper_status: if oper_up { 1 } else { 2 },
                    util_in_pct: Some(util),
                    util_out_pct: Some(util / 2.0),
                    errors_per_s: Some(0.0),
                    ..Default::default()
                }],
                ..Default::default()
            })),
        }
    }

    fn node(opd: &str, parent: Option<&str>) -> DeviceNode {
        DeviceNode {
            opd: opd.into(),
            parent: parent.map(str::to_string),
        }
    }

    #[test]
    fn spans_subtract_and_intersect() {
        let a = Spans::from_unsorted(vec![(0, 10), (20, 30), (5, 12)]);
        assert_eq!(a.spans(), [(0, 12), (20, 30)]);
        let b = Spans::from_unsorted(vec![(2, 4), (11, 25), (29, 40)]);
        assert_eq!(a.minus(&b).spans(), [(0, 2), (4, 11), (25, 29)]);
        assert_eq!(
            a.intersect(&b).spans(),
            [(2, 4), (11, 12), (20, 25), (29, 30)]
        );
        assert_eq!(a.union(&b).spans(), [(0, 40)]);
        assert_eq!(a.widen(1).spans(), [(-1, 13), (19, 31)]);
    }

    #[test]
    fn a_weekly_window_gives_its_spans_in_the_period() {
        // Every Sunday 22:00 WIB for 3 hours; November 2026 (WIB) starts on
        // a Sunday and has 5 Sundays, the window of Saturday 31 October is
        // outside; the last one, 29 November, ends at 01:00 on the 30th.
        let p = Period::month("2026-11", 420).unwrap();
        let w = Schedule::Weekly {
            days: vec!["sun".into()],
            start: "22:00".into(),
            duration_s: 3 * 3600,
            utc_offset_minutes: 420,
        };
        let spans = w.spans(p.from_us, p.until_us);
        assert_eq!(spans.len(), 5);
        assert_eq!(spans[0].0, p.from_us + 22 * 3600 * S);
        assert!(spans.iter().all(|(a, b)| b - a == 3 * 3600 * S));
        // A window running over the period's start is clipped to it.
        let w = Schedule::Weekly {
            days: vec!["sat".into()],
            start: "23:00".into(),
            duration_s: 2 * 3600,
            utc_offset_minutes: 420,
        };
        let spans = w.spans(p.from_us, p.until_us);
        assert_eq!(spans[0], (p.from_us, p.from_us + 3600 * S));
    }

    /// A known month: November 2026 in WIB (30 days = 2,592,000 s), one
    /// OPD `dinkes` probed every 300 s, samples written through the store.
    /// The health engine's default hysteresis holds: down is confirmed by
    /// the 2nd bad reading in a row, the recovery by the 3rd good one.
    #[test]
    fn a_known_month_gives_the_hand_computed_figures() {
        let period = Period::month("2026-11", 420).unwrap();
        let month = 30 * 86_400 * S;
        assert_eq!(period.len_us(), month);
        // Local time (WIB) on a day of the month.
        let wib = |day: i64, h: i64, m: i64| {
            period.from_us + ((day - 1) * 86_400 + h * 3600 + m * 60) * S
        };
        // (device, offset of its probes in the interval, bad from, bad
        // until, no samples from, no samples until)
        type Plan = (&'static str, i64, (i64, i64), (i64, i64));
        let plans: [Plan; 7] = [
            // rtr: 30 minutes of loss, 09:00..09:30 on the 10th.
            ("rtr", 0, (wib(10, 9, 0), wib(10, 9, 30)), (0, 0)),
            // sw1, sw2 behind rtr: they lose the same probes, 5 s later.
            ("sw1", 5 * S, (wib(10, 9, 0), wib(10, 9, 30)), (0, 0)),
            ("sw2", 5 * S, (wib(10, 9, 0), wib(10, 9, 30)), (0, 0)),
            // sw3: 2 hours of loss, 10:00..12:00 on the 5th.
            ("sw3", 0, (wib(5, 10, 0), wib(5, 12, 0)), (0, 0)),
            // sw4: 2 hours of loss 14:00..16:00 on the 20th, with a
            // maintenance window 14:30..15:30 in the middle.
            ("sw4", 0, (wib(20, 14, 0), wib(20, 16, 0)), (0, 0)),
            // ap: no samples 00:00..06:00 on the 15th (agent away).
            ("ap", 0, (0, 0), (wib(15, 0, 0), wib(15, 6, 0))),
            // b1 in another OPD, never down.
            ("b1", 0, (0, 0), (0, 0)),
        ];
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let mut seq = 0u64;
        for (device, offset, bad, gap) in plans {
            let mut batch = Vec::new();
            // From an hour before the month, so that its state is confirmed.
            let mut t = period.from_us - 3600 * S + offset;
            while t < period.until_us {
                if !(gap.0 <= t && t < gap.1) {
                    seq += 1;
                    batch.push(icmp(seq, t, device, bad.0 <= t && t < bad.1));
                }
                if batch.len() == 5000 {
                    let b = IngestBatch::new("agent", 0, std::mem::take(&mut batch).into());
                    store.commit(&[b], &[]).unwrap();
                }
                t += INTERVAL;
            }
            let b = IngestBatch::new("agent", 0, Arc::from(batch));
            store.commit(&[b], &[]).unwrap();
        }
        // The links' interface `ge0`, polled by SNMP at 10 s into each
        // interval: (device, oper down from/until, degraded (95 %
        // utilisation) from/until, no polls from/until).
        type LinkPlan = (&'static str, (i64, i64), (i64, i64), (i64, i64));
        let link_plans: [LinkPlan; 2] = [
            // sw3's uplink: oper down 03:00..04:00 on the 3rd; 95 %
            // utilisation 08:00..08:30 on the 25th.
            (
                "sw3",
                (wib(3, 3, 0), wib(3, 4, 0)),
                (wib(25, 8, 0), wib(25, 8, 30)),
                (0, 0),
            ),
            // sw1's uplink, behind rtr: always up, but its polls do not get
            // through while rtr is down (09:00..09:30 on the 10th).
            ("sw1", (0, 0), (0, 0), (wib(10, 9, 0), wib(10, 9, 30))),
        ];
        for (device, oper_down, busy, gap) in link_plans {
            let mut batch = Vec::new();
            let mut t = period.from_us - 3600 * S + 10 * S;
            while t < period.until_us {
                if !(gap.0 <= t && t < gap.1) {
                    seq += 1;
                    let down = oper_down.0 <= t && t < oper_down.1;
                    let util = if busy.0 <= t && t < busy.1 {
                        95.0
                    } else {
                        20.0
                    };
                    batch.push(snmp(seq, t, device, !down, util));
                }
                t += INTERVAL;
            }
            let b = IngestBatch::new("agent", 0, Arc::from(batch));
            store.commit(&[b], &[]).unwrap();
        }
        let topo = Topology {
            devices: BTreeMap::from([
                ("rtr".into(), node("dinkes", None)),
                ("sw1".into(), node("dinkes", Some("rtr"))),
                ("sw2".into(), node("dinkes", Some("rtr"))),
                ("sw3".into(), node("dinkes", None)),
                ("sw4".into(), node("dinkes", None)),
                ("ap".into(), node("dinkes", None)),
                ("b1".into(), node("bappeda", None)),
            ]),
            links: ["sw3", "sw1"]
                .into_iter()
                .map(|d| LinkNode {
                    device: d.into(),
                    name: "uplink".into(),
                    interface: Some("ge0".into()),
                    if_index: None,
                })
                .collect(),
            intervals_us: BTreeMap::new(),
            default_interval_us: INTERVAL,
        };
        let windows = [MaintenanceWindow {
            id: 1,
            scope: Scope::Device {
                device: "sw4".into(),
            },
            schedule: Schedule::Once {
                start_us: wib(20, 14, 30),
                end_us: wib(20, 15, 30),
            },
            reason: "ganti modul".into(),
            created_by: "kabid".into(),
        }];
        let rules = HealthRules::default();
        let got = compute(
            &store,
            &topo,
            &rules,
            &windows,
            period,
            Some("dinkes"),
            None,
        )
        .unwrap();
        // Every day replayed from the samples: 7 devices, 30 days.
        assert_eq!(got.stats.days_replayed, 6 * 30);

        let m = month / S;
        let f = |up, down, maintenance, unreachable, no_data, incidents, longest| Figures {
            up_us: up * S,
            down_us: down * S,
            maintenance_us: maintenance * S,
            unreachable_us: unreachable * S,
            no_data_us: no_data * S,
            incidents,
            longest_outage_us: longest * S,
        };
        let want: BTreeMap<&str, Figures> = BTreeMap::from([
            // Bad readings at 10:00 … 11:55; down confirmed at 10:05, the
            // recovery at 12:10 (good at 12:00, 12:05, 12:10): 2 h 5 min =
            // 7,500 s, one incident.
            ("sw3", f(m - 7500, 7500, 0, 0, 0, 1, 7500)),
            // Bad at 09:00 … 09:25, down from 09:05 to 09:40: 2,100 s.
            ("rtr", f(m - 2100, 2100, 0, 0, 0, 1, 2100)),
            // Their own down, 09:05:05 … 09:40:05, is rtr's outage: no
            // incident of theirs; unreachable from rtr's 09:05:00 to their
            // own recovery at 09:40:05: 2,105 s.
            ("sw1", f(m - 2105, 0, 0, 2105, 0, 0, 0)),
            ("sw2", f(m - 2105, 0, 0, 2105, 0, 0, 0)),
            // Down 14:05 … 16:10 (7,500 s) less the window 14:30 … 15:30
            // (3,600 s): 14:05 … 14:30 and 15:30 … 16:10 = 1,500 + 2,400 =
            // 3,900 s of outage, still one incident.
            ("sw4", f(m - 3600 - 3900, 3900, 3600, 0, 0, 1, 3900)),
            // The reading of 23:55 counts until 00:00; nothing until the
            // reading of 06:00: 6 h = 21,600 s of no data.
            ("ap", f(m - 21_600, 0, 0, 0, 21_600, 0, 0)),
            // A link is up when its oper status is up and it is not
            // degraded. sw3's uplink: oper down at 03:00:10 … 03:55:10, down
            // confirmed at 03:05:10, up again at 04:10:10 (up at 04:00:10,
            // 04:05:10, 04:10:10): 3,900 s. Busy at 08:00:10 … 08:25:10,
            // degraded from 08:05:10 to 08:40:10: 2,100 s, counted as down,
            // a second incident. 6,000 s in 2 incidents, longest 3,900 s.
            // While sw3 itself is down (10:05 … 12:10 on the 5th, 7,500 s)
            // its link is unreachable, whatever its polls say.
            ("sw3/uplink", f(m - 6000 - 7500, 6000, 0, 7500, 0, 2, 3900)),
            // sw1's uplink: the poll of 08:55:10 counts until 09:00:10, the
            // next is at 09:30:10. Unreachable while rtr (09:05:00 …
            // 09:40:00) or sw1 itself (09:05:05 … 09:40:05) is down:
            // 09:05:00 … 09:40:05 = 2,105 s; no data 09:00:10 … 09:05:00 =
            // 290 s; never down itself.
            ("sw1/uplink", f(m - 2105 - 290, 0, 0, 2105, 290, 0, 0)),
        ]);
        let names: Vec<String> = got.subjects.iter().map(|r| r.subject.to_string()).collect();
        let rows: BTreeMap<&str, Figures> = got
            .subjects
            .iter()
            .zip(&names)
            .map(|(r, name)| (name.as_str(), r.figures))
            .collect();
        assert_eq!(rows, want);
        for r in &got.subjects {
            let x = r.figures;
            let sum = x.up_us + x.down_us + x.maintenance_us + x.unreachable_us + x.no_data_us;
            assert_eq!(sum, month, "{}", r.subject);
        }
        let pct = |f: &Figures| format!("{:.4}", f.availability_pct().unwrap());
        // 2,584,500 / 2,592,000
        assert_eq!(pct(&rows["sw3"]), "99.7106");
        // 2,589,900 / 2,592,000
        assert_eq!(pct(&rows["rtr"]), "99.9190");
        // 2,584,500 / (2,592,000 - 3,600) = 2,584,500 / 2,588,400
        assert_eq!(pct(&rows["sw4"]), "99.8493");
        assert_eq!(pct(&rows["sw1"]), "100.0000");
        assert_eq!(pct(&rows["ap"]), "100.0000");
        assert_eq!(rows["sw4"].mttr_us(), Some(3900 * S));
        assert_eq!(rows["ap"].mttr_us(), None);
        // 2,578,500 / (2,592,000 - 7,500) = 2,578,500 / 2,584,500
        assert_eq!(pct(&rows["sw3/uplink"]), "99.7678");
        assert_eq!(rows["sw3/uplink"].mttr_us(), Some(3000 * S));
        assert_eq!(pct(&rows["sw1/uplink"]), "100.0000");

        // The OPD: devices up 2,589,900 + 2 × 2,589,895 + 2,584,500 +
        // 2,584,500 + 2,570,400 = 15,509,090 s, links up 2,578,500 +
        // 2,589,605 = 5,168,105 s: 20,677,195 s; down 2,100 + 7,500 + 3,900
        // + 6,000 = 19,500 s in 5 incidents (MTTR 3,900 s, longest 7,500
        // s); unreachable 2 × 2,105 + 7,500 + 2,105 = 13,815 s; no data
        // 21,600 + 290 = 21,890 s; availability 20,677,195 / 20,696,695 =
        // 99.9058 %.
        assert_eq!(got.opds.len(), 1);
        let o = &got.opds[0];
        assert_eq!(o.opd, "dinkes");
        assert_eq!(
            o.figures,
            f(20_677_195, 19_500, 3600, 13_815, 21_890, 5, 7500)
        );
        assert_eq!(o.figures.mttr_us(), Some(3900 * S));
        assert_eq!(pct(&o.figures), "99.9058");

        // The same figures from the cache of replayed days. Asked at 00:05
        // on 1 December, the 30th is not over (with the two intervals read
        // after it): every day is replayed, the 30th not kept. Asked a day
        // later, the 30th is replayed and kept, the rest read from the
        // cache; then every day comes from the cache.
        let now = period.until_us + 86_400 * S;
        let ask = |now| {
            compute(
                &store,
                &topo,
                &rules,
                &windows,
                period,
                Some("dinkes"),
                Some(now),
            )
            .unwrap()
        };
        let same = |a: &Availability, b: &Availability| {
            assert_eq!((&a.opds, &a.subjects), (&b.opds, &b.subjects));
        };
        let stats = |days_replayed, days_cached| Stats {
            days_replayed,
            days_cached,
        };
        let early = ask(period.until_us + 5 * 60 * S);
        same(&early, &got);
        assert_eq!(early.stats, stats(180, 0));
        let cold = ask(now);
        same(&cold, &got);
        assert_eq!(cold.stats, stats(6, 174));
        let warm = ask(now);
        same(&warm, &got);
        assert_eq!(warm.stats, stats(0, 180));
        let kept = store
            .cached_days("sw3", period.from_us, period.until_us)
            .unwrap();
        assert_eq!(kept.len(), 30);
        // All OPDs: bappeda's b1 was up all month.
        let all = compute(&store, &topo, &rules, &windows, period, None, None).unwrap();
        let opds: Vec<(&str, String)> = all
            .opds
            .iter()
            .map(|o| (o.opd.as_str(), pct(&o.figures)))
            .collect();
        assert_eq!(
            opds,
            [("bappeda", "100.0000".into()), ("dinkes", "99.9058".into())]
        );

        // Samples that arrive late (an agent's spool after an outage) make
        // the days that read them stale: ap's readings of 00:00 … 06:00 on
        // the 15th come after all, 02:00 … 02:55 bad (17:00 … 23:00 UTC on
        // the 14th; marks are kept per UTC day, and that UTC day is read by
        // the local 14th and 15th). Those two days of ap are replayed again
        // and the figures are the raw replay's: no time without data, and
        // an outage from 02:05 to 03:10 (3,900 s).
        let mut late = Vec::new();
        let mut t = wib(15, 0, 0);
        while t < wib(15, 6, 0) {
            seq += 1;
            late.push(icmp(seq, t, "ap", wib(15, 2, 0) <= t && t < wib(15, 3, 0)));
            t += INTERVAL;
        }
        store
            .commit(&[IngestBatch::new("agent", 0, Arc::from(late))], &[])
            .unwrap();
        let raw = compute(
            &store,
            &topo,
            &rules,
            &windows,
            period,
            Some("dinkes"),
            None,
        )
        .unwrap();
        let again = ask(now);
        same(&again, &raw);
        assert_eq!(again.stats, stats(2, 178));
        let ap = again
            .subjects
            .iter()
            .find(|r| r.subject == Subject::device("ap"))
            .unwrap()
            .figures;
        assert_eq!(ap, f(m - 3900, 3900, 0, 0, 0, 1, 3900));
    }
}
