//! State machines: one per device and per inventory link.
//!
//! A [`StateMachine`] turns readings into a confirmed ("hard") level with
//! hysteresis and flap detection. The [`Tracker`] owns one per subject, turns
//! samples from the wire into readings, and derives the state people see:
//! `unreachable` when an ancestor in the `parent` chain is down, `unknown`
//! while the OPD's agent is silent.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};
use siaga_proto::v1::{Sample, SnmpStatus, sample::Kind};

use super::reason::oper_name;
use super::rules::{HealthRules, Level};

/// Microseconds since the Unix epoch (as on the wire).
pub type TsUs = i64;

/// What a state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// An inventory device.
    Device {
        /// Device id.
        device: String,
    },
    /// An inventory link (an interface of a device that matters).
    Link {
        /// The device the link is an interface of.
        device: String,
        /// The link's name in the inventory.
        link: String,
    },
    /// An OPD as a whole (its agent).
    Opd {
        /// OPD id.
        opd: String,
    },
    /// One of a device's own resources (CPU, memory, temperature): a state
    /// of its own, so that a busy device is never taken for an unreachable one.
    Resource {
        /// Device id.
        device: String,
        /// Which resource.
        resource: Resource,
    },
}

/// A device's own resource the health engine watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// CPU busy, percent.
    Cpu,
    /// Memory used, percent.
    Memory,
    /// Temperature, °C.
    Temperature,
}

impl Resource {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::Temperature => "temperature",
        }
    }
    /// The problem a reading of it shows.
    pub fn problem(self) -> Problem {
        match self {
            Resource::Cpu => Problem::Cpu,
            Resource::Memory => Problem::Memory,
            Resource::Temperature => Problem::Temperature,
        }
    }
}

impl Subject {
    /// A device subject.
    pub fn device(id: impl Into<String>) -> Self {
        Subject::Device { device: id.into() }
    }
    /// A link subject.
    pub fn link(device: impl Into<String>, link: impl Into<String>) -> Self {
        Subject::Link {
            device: device.into(),
            link: link.into(),
        }
    }
    /// The device this subject is or belongs to.
    pub fn device_id(&self) -> Option<&str> {
        match self {
            Subject::Device { device }
            | Subject::Link { device, .. }
            | Subject::Resource { device, .. } => Some(device),
            Subject::Opd { .. } => None,
        }
    }
    /// The link name, for a link.
    pub fn link_name(&self) -> Option<&str> {
        match self {
            Subject::Link { link, .. } => Some(link),
            _ => None,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Device { device } => f.write_str(device),
            Subject::Link { device, link } => write!(f, "{device}/{link}"),
            Subject::Opd { opd } => write!(f, "opd {opd}"),
            Subject::Resource { device, resource } => write!(f, "{device} {}", resource.as_str()),
        }
    }
}

/// The state people see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Within every threshold.
    Up,
    /// Past a `degraded` threshold.
    Degraded,
    /// Past a `down` threshold.
    Down,
    /// An ancestor in the `parent` chain (or the link's device) is down.
    Unreachable,
    /// The OPD's agent is silent, or nothing has been confirmed yet.
    Unknown,
}

impl Health {
    /// Lower-case name, as shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
            Health::Unreachable => "unreachable",
            Health::Unknown => "unknown",
        }
    }
    /// Degraded or down: something to open an incident for.
    pub fn is_problem(self) -> bool {
        matches!(self, Health::Degraded | Health::Down)
    }
}

impl From<Health> for siaga_proto::v1::device_info::State {
    fn from(h: Health) -> Self {
        match h {
            Health::Up => Self::Up,
            Health::Degraded => Self::Degraded,
            Health::Down => Self::Down,
            Health::Unreachable => Self::Unreachable,
            Health::Unknown => Self::Unknown,
        }
    }
}

impl From<Level> for Health {
    fn from(l: Level) -> Self {
        match l {
            Level::Up => Health::Up,
            Level::Degraded => Health::Degraded,
            Level::Down => Health::Down,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of problem a reading shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// ICMP packet loss (100 % = no reply at all).
    Loss,
    /// ICMP round-trip time.
    Rtt,
    /// ICMP jitter.
    Jitter,
    /// The device does not answer SNMP.
    SnmpUnreachable,
    /// A link's oper status is down (poll or linkDown trap).
    OperDown,
    /// A link is too busy.
    Utilisation,
    /// A link counts errors.
    Errors,
    /// The subject keeps changing state.
    Flapping,
    /// The OPD's agent stopped sending heartbeats.
    AgentUnreachable,
    /// The device's CPU is too busy.
    Cpu,
    /// The device's memory is too full.
    Memory,
    /// The device is too hot.
    Temperature,
}

impl Problem {
    /// Stable name, used in incident keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Loss => "loss",
            Problem::Rtt => "rtt",
            Problem::Jitter => "jitter",
            Problem::SnmpUnreachable => "snmp_unreachable",
            Problem::OperDown => "oper_down",
            Problem::Utilisation => "utilisation",
            Problem::Errors => "errors",
            Problem::Flapping => "flapping",
            Problem::AgentUnreachable => "agent_unreachable",
            Problem::Cpu => "cpu",
            Problem::Memory => "memory",
            Problem::Temperature => "temperature",
        }
    }
}

/// One measured value judged against its rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What was measured.
    pub problem: Problem,
    /// How bad it is.
    pub level: Level,
    /// The value (percent, milliseconds, per second; 0 when not a number).
    pub value: f64,
    /// The threshold crossed, if any.
    pub threshold: Option<f64>,
    /// Free text (an SNMP error, "linkDown trap"): the raw diagnostic.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// What it was seen through, as facts (the SNMP failure, the oper
    /// status, a trap), for the reason's sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<super::reason::Cause>,
}

/// One judged reading of one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// When it was measured (agent clock).
    pub at: TsUs,
    /// What it showed.
    pub findings: Vec<Finding>,
    /// Counts at once, without hysteresis (a linkDown trap).
    pub immediate: bool,
    /// The sample it came from, for the evidence.
    pub sample: RawSample,
    /// For a link: whether its interface was up (oper status up, or a
    /// linkUp trap), whatever its admin status. A raw result for flap
    /// detection: a port switched off and on again is no fault in itself,
    /// but one that does it every few seconds is flapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_up: Option<bool>,
    /// A poll that found the link up after a linkDown trap that no linkUp
    /// followed: the trap was not confirmed by polling.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contradicts_trap: bool,
}

impl Reading {
    /// The worst level among the findings (`Up` when none).
    pub fn level(&self) -> Level {
        self.findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Level::Up)
    }
    /// The finding that decides the level (the first among equals).
    pub fn worst(&self) -> Option<&Finding> {
        let level = self.level();
        if level == Level::Up {
            return None;
        }
        self.findings.iter().find(|f| f.level == level)
    }
}

/// The sample a reading came from, kept for the evidence and written as
/// JSON (a ticket's evidence, the API). It is turned into JSON only when
/// written: every sample gives a reading, few readings become evidence.
/// Clones share it.
#[derive(Debug, Clone)]
pub struct RawSample(std::sync::Arc<RawKind>);

#[derive(Debug)]
enum RawKind {
    /// A sample as received.
    Sample(Sample),
    /// One interface of an SNMP sample.
    Interface {
        ts_us: TsUs,
        seq: u64,
        device: String,
        interface: siaga_proto::v1::Interface,
    },
    /// Already JSON (read back from the store).
    Json(serde_json::Value),
}

impl RawSample {
    fn sample(s: &Sample) -> Self {
        Self(std::sync::Arc::new(RawKind::Sample(s.clone())))
    }

    fn interface(s: &Sample, i: &siaga_proto::v1::Interface) -> Self {
        Self(std::sync::Arc::new(RawKind::Interface {
            ts_us: s.ts_us,
            seq: s.seq,
            device: s.device.clone(),
            interface: i.clone(),
        }))
    }

    /// The JSON written for it.
    pub fn to_json(&self) -> serde_json::Value {
        match &*self.0 {
            RawKind::Sample(s) => sample_json(s),
            RawKind::Interface {
                ts_us,
                seq,
                device,
                interface,
            } => interface_json(*ts_us, *seq, device, interface),
            RawKind::Json(v) => v.clone(),
        }
    }
}

impl From<serde_json::Value> for RawSample {
    fn from(v: serde_json::Value) -> Self {
        Self(std::sync::Arc::new(RawKind::Json(v)))
    }
}

impl PartialEq for RawSample {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.to_json() == other.to_json()
    }
}

impl Serialize for RawSample {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &*self.0 {
            RawKind::Json(v) => v.serialize(serializer),
            _ => self.to_json().serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for RawSample {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Self::from)
    }
}

/// What one reading did to a [`StateMachine`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// The confirmed level changed: (before, after). `None` before = nothing confirmed yet.
    pub changed: Option<(Option<Level>, Level)>,
    /// Flapping started (`Some(true)`) or stopped (`Some(false)`).
    pub flap: Option<bool>,
    /// The readings that made the change (the streak), oldest first.
    pub evidence: Vec<Reading>,
}

/// One raw result as flap detection sees it: the level of a reading and,
/// for a link, whether its interface was up. Two in a row that differ are
/// a transition, whatever the confirmed state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawResult {
    /// The reading's level.
    pub level: Level,
    /// For a link: up or not (oper status or trap), whatever admin says.
    pub link_up: Option<bool>,
}

/// Hysteresis and flap detection for one subject.
#[derive(Debug, Clone, Default)]
pub struct StateMachine {
    hard: Option<Level>,
    since: TsUs,
    streak: Vec<Reading>,
    history: VecDeque<RawResult>,
    flapping: bool,
    flap_pct: f64,
    last: Option<Reading>,
    /// When the raw results last changed (reading time).
    last_transition: Option<TsUs>,
}

impl StateMachine {
    /// The confirmed level; `None` until enough readings agree.
    pub fn hard(&self) -> Option<Level> {
        self.hard
    }
    /// When the confirmed level was entered.
    pub fn since(&self) -> TsUs {
        self.since
    }
    /// Whether the subject is flapping.
    pub fn flapping(&self) -> bool {
        self.flapping
    }
    /// Current weighted percent of state change.
    pub fn flap_pct(&self) -> f64 {
        self.flap_pct
    }
    /// The newest reading.
    pub fn last(&self) -> Option<&Reading> {
        self.last.as_ref()
    }
    /// How long the raw results have been the same, up to the newest
    /// reading (reading time, microseconds); `None` before any transition.
    pub fn stable_for(&self) -> Option<TsUs> {
        let last = self.last.as_ref()?.at;
        self.last_transition.map(|t| last.saturating_sub(t).max(0))
    }
    /// A bad reading is waiting for confirmation (a streak toward a worse level).
    pub fn pending_worse(&self) -> bool {
        let hard = self.hard.unwrap_or(Level::Up);
        self.streak.last().is_some_and(|r| r.level() > hard)
    }

    /// Forgets a confirmed `down`: used on the descendants of a device that
    /// recovered, whose own `down` was seen through the dead ancestor and must
    /// be confirmed afresh. Good readings already in the streak still count.
    pub fn forget_down(&mut self) {
        if self.hard == Some(Level::Down) {
            self.hard = None;
            self.streak.retain(|r| r.level() == Level::Up);
        }
    }

    /// Feeds one reading.
    pub fn observe(&mut self, r: Reading, rules: &HealthRules) -> Step {
        self.observe_held(r, rules, 0)
    }

    /// Feeds one reading of a subject whose bad readings must also span
    /// `hold_us` (the first to the newest of the streak) before they count:
    /// a device busy for a moment is soft, busy for the whole span hard.
    pub fn observe_held(&mut self, r: Reading, rules: &HealthRules, hold_us: TsUs) -> Step {
        let mut step = Step::default();
        let level = r.level();
        let raw = RawResult {
            level,
            link_up: r.link_up,
        };
        self.record_flap(raw, r.at, rules, &mut step);

        if Some(level) == self.hard {
            self.streak.clear();
            self.last = Some(r);
            return step;
        }
        self.last = Some(r.clone());
        // Direction relative to the confirmed level ("worse" from nothing
        // means anything but up).
        let base = self.hard.unwrap_or(Level::Up);
        let worse = level > base || (self.hard.is_none() && level > Level::Up);
        let same_direction = self.streak.last().is_some_and(|prev| {
            let p = prev.level();
            let prev_worse = p > base || (self.hard.is_none() && p > Level::Up);
            prev_worse == worse && Some(p) != self.hard
        });
        if !same_direction {
            self.streak.clear();
        }
        let immediate = r.immediate;
        let at = r.at;
        self.streak.push(r);
        let needed = if immediate {
            1
        } else if worse {
            rules.hysteresis.enter_cycles
        } else {
            rules.hysteresis.leave_cycles
        } as usize;
        let held = !worse
            || immediate
            || self
                .streak
                .first()
                .is_some_and(|first| at.saturating_sub(first.at) >= hold_us);
        if self.streak.len() >= needed && held {
            // Entering: the least bad level of the streak (every reading was
            // at least that bad). Leaving: the worst of the streak.
            let levels = self.streak.iter().map(Reading::level);
            let target = if immediate {
                level
            } else if worse {
                levels.min().unwrap_or(level)
            } else {
                levels.max().unwrap_or(level)
            };
            let before = self.hard;
            self.hard = Some(target);
            self.since = at;
            step.evidence = std::mem::take(&mut self.streak);
            step.changed = Some((before, target));
        }
        step
    }

    fn record_flap(&mut self, raw: RawResult, at: TsUs, rules: &HealthRules, step: &mut Step) {
        let window = rules.flap.window.max(3) as usize;
        if self.history.back().is_some_and(|prev| *prev != raw) {
            self.last_transition = Some(at);
        }
        self.history.push_back(raw);
        while self.history.len() > window {
            self.history.pop_front();
        }
        self.flap_pct = weighted_change(&self.history, window);
        if !self.flapping && self.flap_pct >= rules.flap.high_pct {
            self.flapping = true;
            step.flap = Some(true);
        } else if self.flapping && self.flap_pct < rules.flap.low_pct {
            self.flapping = false;
            step.flap = Some(false);
        }
    }
}

/// Nagios' weighted percent of state change: over `window` checks there are
/// `window - 1` possible changes; the oldest weighs 0.75, the newest 1.25.
pub fn flap_percent(history: &VecDeque<Level>, window: usize) -> f64 {
    weighted_change(history, window)
}

/// [`flap_percent`] over any raw result that can be compared.
fn weighted_change<T: PartialEq>(history: &VecDeque<T>, window: usize) -> f64 {
    let slots = window.saturating_sub(1).max(1);
    // Align the newest change with the newest weight.
    let offset = slots.saturating_sub(history.len().saturating_sub(1));
    let mut sum = 0.0;
    for (i, (a, b)) in history.iter().zip(history.iter().skip(1)).enumerate() {
        if a != b {
            let x = (i + offset) as f64;
            let span = (slots.saturating_sub(1)).max(1) as f64;
            sum += 0.75 + x * 0.5 / span;
        }
    }
    sum * 100.0 / slots as f64
}

/// A device as the health engine needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    /// OPD id.
    pub opd: String,
    /// The device it hangs behind.
    pub parent: Option<String>,
}

/// An inventory link as the health engine needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkNode {
    /// Device id.
    pub device: String,
    /// Link name.
    pub name: String,
    /// ifName or ifDescr.
    pub interface: Option<String>,
    /// Or the ifIndex.
    pub if_index: Option<u32>,
}

/// The inventory, reduced to what health needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Devices by id.
    pub devices: BTreeMap<String, DeviceNode>,
    /// Links.
    pub links: Vec<LinkNode>,
    /// Probe interval per OPD, microseconds.
    pub intervals_us: BTreeMap<String, i64>,
    /// Probe interval where an OPD sets none, microseconds.
    pub default_interval_us: i64,
}

impl Topology {
    /// The OPD's probe interval.
    pub fn interval_us(&self, opd: &str) -> i64 {
        self.intervals_us
            .get(opd)
            .copied()
            .unwrap_or(self.default_interval_us)
            .max(1)
    }
    /// The OPD of a subject.
    pub fn opd_of<'a>(&'a self, s: &'a Subject) -> Option<&'a str> {
        match s {
            Subject::Opd { opd } => Some(opd),
            _ => s
                .device_id()
                .and_then(|d| self.devices.get(d))
                .map(|n| n.opd.as_str()),
        }
    }
    /// Ancestors of a device, nearest first (a cycle in the file is cut).
    pub fn ancestors(&self, device: &str) -> Vec<String> {
        let mut out = Vec::new();
        let Some(parent) = self.devices.get(device).and_then(|d| d.parent.clone()) else {
            return out;
        };
        let mut seen = BTreeSet::from([device.to_string()]);
        let mut cur = Some(parent);
        while let Some(p) = cur {
            if !seen.insert(p.clone()) {
                break;
            }
            cur = self.devices.get(&p).and_then(|d| d.parent.clone());
            out.push(p);
        }
        out
    }
    /// The subjects of one OPD: its devices and their links.
    pub fn subjects_of(&self, opd: &str) -> Vec<Subject> {
        let mut out: Vec<Subject> = self
            .devices
            .iter()
            .filter(|(_, d)| d.opd == opd)
            .map(|(id, _)| Subject::device(id.clone()))
            .collect();
        for l in &self.links {
            if self.devices.get(&l.device).is_some_and(|d| d.opd == opd) {
                out.push(Subject::link(l.device.clone(), l.name.clone()));
            }
        }
        out
    }
    fn find_link(
        &self,
        device: &str,
        name: &str,
        if_index: u32,
        if_names: &[&str],
    ) -> Option<&LinkNode> {
        let on_device = || self.links.iter().filter(move |l| l.device == device);
        if !name.is_empty()
            && let Some(l) = on_device().find(|l| l.name == name)
        {
            return Some(l);
        }
        on_device().find(|l| {
            (if_index != 0 && l.if_index == Some(if_index))
                || l.interface
                    .as_deref()
                    .is_some_and(|i| !i.is_empty() && if_names.contains(&i))
        })
    }
}

/// A change of the state people see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    /// Whose state.
    pub subject: Subject,
    /// Its OPD.
    pub opd: String,
    /// Before.
    pub from: Health,
    /// After.
    pub to: Health,
    /// When (the reading's time, or the collector's clock for silence).
    pub at: TsUs,
    /// Flapping after the change.
    pub flapping: bool,
    /// Why, in a few words ("loss 40 % >= 20 %", "parent dinkes-rtr is down").
    pub reason: String,
    /// The reading that caused it, if one did.
    pub cause: Option<Reading>,
}

#[derive(Debug, Clone, Default)]
struct AgentWatch {
    /// The last time the agent was heard (this process, or before it started).
    last_seen: Option<TsUs>,
    /// Silence is counted from here: the last message in this process, or
    /// when watching began, whichever is later.
    counted_from: Option<TsUs>,
    /// No silence is declared before this (the agents' reconnect after a
    /// collector start).
    grace_until: TsUs,
    silent_since: Option<TsUs>,
    /// Past silent periods (start, end), newest last.
    periods: VecDeque<(TsUs, TsUs)>,
}

/// What an input did: state changes plus, per subject, the machine step.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Changes of the visible state.
    pub changes: Vec<StateChange>,
    /// Machine steps with a change or a flap change, by subject.
    pub steps: Vec<(Subject, Step)>,
    /// Subjects that got a reading.
    pub touched: Vec<Subject>,
    /// An agent went silent: (opd, silent since).
    pub silenced: Vec<(String, TsUs)>,
    /// An agent came back: (opd, silent since, back at).
    pub returned: Vec<(String, TsUs, TsUs)>,
    /// Links whose linkDown trap a poll contradicted: (link, poll time).
    pub contradicted: Vec<(Subject, TsUs)>,
}

/// All state machines, the topology and the agents' liveness.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    rules: HealthRules,
    topo: Topology,
    children: BTreeMap<String, Vec<String>>,
    /// [`Topology::ancestors`] of every device that has a parent, as
    /// subjects: looked up for every reading.
    ancestry: HashMap<String, Vec<Subject>>,
    /// Looked up several times for every sample, never walked in order.
    machines: HashMap<Subject, StateMachine>,
    snmp: HashMap<String, Finding>,
    /// ifIndex -> link name, learned from polls, for traps that carry only the index.
    learned: BTreeMap<(String, u32), String>,
    agents: BTreeMap<String, AgentWatch>,
    shown: HashMap<Subject, Health>,
    /// Links a linkDown trap made down, waiting for a poll to confirm it
    /// (or a linkUp trap): the trap's time.
    trap_down: BTreeMap<Subject, TsUs>,
    /// linkDown traps that the next poll contradicted, per device.
    unconfirmed: BTreeMap<String, u64>,
}

impl Tracker {
    /// A tracker with no data yet.
    pub fn new(rules: HealthRules, topo: Topology) -> Self {
        let mut t = Self {
            rules,
            ..Self::default()
        };
        t.set_topology(topo);
        t
    }

    /// The rules in force.
    pub fn rules(&self) -> &HealthRules {
        &self.rules
    }
    /// The topology in force.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Applies a new inventory; machines of removed subjects are dropped.
    pub fn set_topology(&mut self, topo: Topology) {
        self.children.clear();
        for (id, d) in &topo.devices {
            if let Some(p) = &d.parent {
                self.children.entry(p.clone()).or_default().push(id.clone());
            }
        }
        let keep: BTreeSet<Subject> = topo
            .devices
            .keys()
            .map(|d| Subject::device(d.clone()))
            .chain(
                topo.links
                    .iter()
                    .map(|l| Subject::link(l.device.clone(), l.name.clone())),
            )
            .collect();
        let kept = |s: &Subject| {
            keep.contains(s)
                || matches!(s, Subject::Resource { device, .. } if topo.devices.contains_key(device))
        };
        self.machines.retain(|s, _| kept(s));
        self.shown.retain(|s, _| kept(s));
        self.trap_down.retain(|s, _| keep.contains(s));
        self.snmp.retain(|d, _| topo.devices.contains_key(d));
        self.learned.clear();
        self.ancestry = topo
            .devices
            .iter()
            .filter(|(_, d)| d.parent.is_some())
            .map(|(id, _)| {
                let up = topo.ancestors(id).into_iter().map(Subject::device);
                (id.clone(), up.collect())
            })
            .collect();
        self.topo = topo;
    }

    /// The state machine of a subject, if it has had a reading.
    pub fn machine(&self, s: &Subject) -> Option<&StateMachine> {
        self.machines.get(s)
    }

    /// linkDown traps that the next poll contradicted, per device.
    pub fn unconfirmed_traps(&self) -> &BTreeMap<String, u64> {
        &self.unconfirmed
    }

    /// Whether the OPD's agent is silent now.
    pub fn silent(&self, opd: &str) -> bool {
        self.agents
            .get(opd)
            .is_some_and(|a| a.silent_since.is_some())
    }

    /// Whether `at` falls in a silent period of the OPD's agent that has ended
    /// (a reading replayed from the spool).
    pub fn in_past_silence(&self, opd: &str, at: TsUs) -> Option<(TsUs, TsUs)> {
        self.agents
            .get(opd)?
            .periods
            .iter()
            .rev()
            .find(|(s, e)| at > *s && at <= *e)
            .copied()
    }

    /// The visible state of a subject.
    pub fn health(&self, s: &Subject) -> Health {
        let opd = match s {
            Subject::Opd { opd } => opd.as_str(),
            Subject::Device { device }
            | Subject::Link { device, .. }
            | Subject::Resource { device, .. } => match self.topo.devices.get(device) {
                Some(node) => node.opd.as_str(),
                None => return Health::Unknown,
            },
        };
        if self.silent(opd) {
            return Health::Unknown;
        }
        match s {
            Subject::Opd { .. } => Health::Up,
            Subject::Device { device } => {
                if self.down_ancestor(device).is_some() {
                    return Health::Unreachable;
                }
                self.hard_health(s)
            }
            Subject::Link { device, .. } | Subject::Resource { device, .. } => {
                let dev = Subject::device(device.clone());
                if self.down_ancestor(device).is_some() || self.hard_of(&dev) == Some(Level::Down) {
                    return Health::Unreachable;
                }
                self.hard_health(s)
            }
        }
    }

    fn hard_of(&self, s: &Subject) -> Option<Level> {
        self.machines.get(s).and_then(StateMachine::hard)
    }
    fn hard_health(&self, s: &Subject) -> Health {
        self.hard_of(s).map(Health::from).unwrap_or(Health::Unknown)
    }

    /// The ancestors of a device, nearest first, as subjects.
    fn ancestry(&self, device: &str) -> &[Subject] {
        self.ancestry.get(device).map_or(&[], Vec::as_slice)
    }

    /// The topmost ancestor that is down (the root cause), if any.
    pub fn down_ancestor(&self, device: &str) -> Option<String> {
        self.ancestry(device)
            .iter()
            .rfind(|a| self.hard_of(a) == Some(Level::Down))
            .and_then(|a| a.device_id().map(str::to_string))
    }

    /// Whether an ancestor has a bad reading waiting for confirmation, so that
    /// a child's fault may turn out to be the ancestor's.
    pub fn ancestor_pending(&self, device: &str) -> bool {
        self.ancestry(device).iter().any(|a| {
            self.machines
                .get(a)
                .is_some_and(StateMachine::pending_worse)
        })
    }

    /// Every subject with a machine or in the topology.
    pub fn subjects(&self) -> Vec<Subject> {
        let mut v: BTreeSet<Subject> = self.machines.keys().cloned().collect();
        for d in self.topo.devices.keys() {
            v.insert(Subject::device(d.clone()));
        }
        for l in &self.topo.links {
            v.insert(Subject::link(l.device.clone(), l.name.clone()));
        }
        v.into_iter().collect()
    }

    /// Devices currently unreachable because of `device` (its descendants).
    pub fn descendants(&self, device: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![device.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(d) = stack.pop() {
            for c in self.children.get(&d).into_iter().flatten() {
                if seen.insert(c.clone()) {
                    out.push(c.clone());
                    stack.push(c.clone());
                }
            }
        }
        out
    }

    /// Watches the agent of `opd` from collector time `now` although it has
    /// not spoken to this process: `last_heard` is when it was last heard
    /// (kept in the store), `None` when never. Silence is counted from
    /// `last_heard` or `now`, whichever is later, and declared no earlier than
    /// `grace_us` after `now`. An OPD already watched keeps its watch.
    pub fn watch(&mut self, opd: &str, last_heard: Option<TsUs>, now: TsUs, grace_us: i64) {
        let w = self.agents.entry(opd.to_string()).or_default();
        if w.counted_from.is_some() {
            return;
        }
        w.last_seen = last_heard;
        w.counted_from = Some(last_heard.map_or(now, |t| t.max(now)));
        w.grace_until = now.saturating_add(grace_us.max(0));
    }

    /// Stops watching the agent of `opd` (another collector judges the OPD).
    pub fn unwatch(&mut self, opd: &str) {
        self.agents.remove(opd);
    }

    /// Starts the machines of `opd`'s subjects over from `states`, the
    /// (subject, state, since) another collector judged them to be: the
    /// OPD is taken over from it, and what these machines held is older
    /// than its view. A subject confirmed up, degraded or down continues
    /// from that confirmed level (no readings needed to show it again, and
    /// a change from it, agent silence included, is a change); any other
    /// starts with no reading, as after a restart. The contradicted traps
    /// counted are kept.
    pub fn seed_opd(
        &mut self,
        opd: &str,
        states: impl IntoIterator<Item = (Subject, Health, TsUs)>,
    ) {
        let topo = &self.topo;
        let of_opd = |s: &Subject| topo.opd_of(s) == Some(opd);
        self.machines.retain(|s, _| !of_opd(s));
        self.shown.retain(|s, _| !of_opd(s));
        self.trap_down.retain(|s, _| !of_opd(s));
        self.snmp
            .retain(|d, _| topo.devices.get(d).is_none_or(|n| n.opd != opd));
        for (s, health, since) in states {
            if !of_opd(&s) || matches!(s, Subject::Opd { .. }) {
                continue;
            }
            let hard = match health {
                Health::Up => Some(Level::Up),
                Health::Degraded => Some(Level::Degraded),
                Health::Down => Some(Level::Down),
                Health::Unreachable | Health::Unknown => None,
            };
            if let Some(level) = hard {
                self.machines.insert(
                    s.clone(),
                    StateMachine {
                        hard: Some(level),
                        since,
                        ..StateMachine::default()
                    },
                );
            }
            self.shown.insert(s, health);
        }
    }

    /// Since when the OPD's agent is silent (`None`: it is not).
    pub fn silent_since(&self, opd: &str) -> Option<TsUs> {
        self.agents.get(opd).and_then(|a| a.silent_since)
    }

    /// Whether the agent of `opd` was ever heard (by this process or before).
    pub fn ever_heard(&self, opd: &str) -> bool {
        self.agents.get(opd).is_some_and(|w| w.last_seen.is_some())
    }

    /// Whether the agent of `opd` is watched for silence.
    pub fn watched(&self, opd: &str) -> bool {
        self.agents
            .get(opd)
            .is_some_and(|w| w.counted_from.is_some())
    }

    /// A heartbeat (or any message) from the OPD's agent at collector time `now`.
    pub fn heartbeat(&mut self, opd: &str, now: TsUs) -> Update {
        let mut up = Update::default();
        let w = match self.agents.get_mut(opd) {
            Some(w) => w,
            None => self.agents.entry(opd.to_string()).or_default(),
        };
        w.last_seen = Some(now);
        w.counted_from = Some(now);
        if let Some(since) = w.silent_since.take() {
            w.periods.push_back((since, now));
            while w.periods.len() > 8 {
                w.periods.pop_front();
            }
            up.returned.push((opd.to_string(), since, now));
            let subjects = self.topo.subjects_of(opd);
            self.publish(subjects, now, None, "agent is back", &mut up);
        }
        up
    }

    /// Checks agents for silence at collector time `now`.
    pub fn tick(&mut self, now: TsUs) -> Update {
        let mut up = Update::default();
        let n = i64::from(self.rules.agent_silence_intervals);
        let mut silenced = Vec::new();
        for (opd, w) in &mut self.agents {
            let timeout = n.saturating_mul(self.topo.interval_us(opd));
            if w.silent_since.is_none()
                && let Some(from) = w.counted_from
                && now.saturating_sub(from) > timeout
                && now >= w.grace_until
            {
                // Since the last time it was heard, or since watching began
                // for an agent never heard.
                let since = w.last_seen.unwrap_or(from);
                w.silent_since = Some(since);
                silenced.push((opd.clone(), since));
            }
        }
        for (opd, since) in silenced {
            let subjects = self.topo.subjects_of(&opd);
            self.publish(subjects, now, None, "agent silent", &mut up);
            up.silenced.push((opd, since));
        }
        up
    }

    /// Feeds one sample from the agent of `opd`, received at collector time `now`.
    pub fn sample(&mut self, opd: &str, s: &Sample, now: TsUs) -> Update {
        let mut up = self.heartbeat(opd, now);
        let Some(node) = self.topo.devices.get(&s.device) else {
            return up;
        };
        if node.opd != opd {
            return up;
        }
        for (subject, reading) in self.readings(s) {
            self.feed(subject, reading, &mut up);
        }
        up
    }

    fn feed(&mut self, subject: Subject, r: Reading, up: &mut Update) {
        let at = r.at;
        let m = match self.machines.get_mut(&subject) {
            Some(m) => m,
            None => self.machines.entry(subject.clone()).or_default(),
        };
        let hold_us = match &subject {
            Subject::Resource { resource, .. } => self.rules.resource_hold_us(*resource),
            _ => 0,
        };
        let step = m.observe_held(r.clone(), &self.rules, hold_us);
        up.touched.push(subject.clone());
        if r.contradicts_trap {
            up.contradicted.push((subject.clone(), at));
        }
        let changed_hard = step.changed.is_some();
        let flap = step.flap;
        if changed_hard || flap.is_some() {
            up.steps.push((subject.clone(), step));
        }
        let mut affected = vec![subject.clone()];
        let recovered_from_down = matches!(
            up.steps.last(),
            Some((s, st)) if s == &subject
                && matches!(st.changed, Some((Some(Level::Down), to)) if to < Level::Down)
        );
        if changed_hard && let Subject::Device { device } = &subject {
            if recovered_from_down {
                let below = self.descendants(device);
                for (s, m) in self.machines.iter_mut() {
                    if s.device_id().is_some_and(|d| below.iter().any(|b| b == d)) {
                        m.forget_down();
                    }
                }
            }
            for d in self.descendants(device) {
                affected.push(Subject::device(d));
            }
            let devs: BTreeSet<String> = affected
                .iter()
                .filter_map(|s| s.device_id().map(str::to_string))
                .collect();
            for l in &self.topo.links {
                if devs.contains(&l.device) {
                    affected.push(Subject::link(l.device.clone(), l.name.clone()));
                }
            }
        }
        self.publish_with_cause(affected, at, &subject, &r, up);
    }

    fn publish_with_cause(
        &mut self,
        subjects: Vec<Subject>,
        at: TsUs,
        cause_subject: &Subject,
        cause: &Reading,
        up: &mut Update,
    ) {
        for s in subjects {
            let to = self.health(&s);
            let from = self.shown.get(&s).copied().unwrap_or(Health::Unknown);
            if to == from && !self.flap_changed(&s, up) {
                continue;
            }
            self.shown.insert(s.clone(), to);
            if to == from {
                continue;
            }
            let (reason, cause) = if &s == cause_subject {
                (describe(cause), Some(cause.clone()))
            } else if to == Health::Unreachable {
                let root = s
                    .device_id()
                    .and_then(|d| {
                        self.down_ancestor(d)
                            .or_else(|| (s.link_name().is_some()).then(|| d.to_string()))
                    })
                    .unwrap_or_default();
                (format!("{root} is down"), None)
            } else {
                (format!("{cause_subject}: {}", describe(cause)), None)
            };
            up.changes.push(StateChange {
                opd: self.topo.opd_of(&s).unwrap_or_default().to_string(),
                flapping: self.machines.get(&s).is_some_and(StateMachine::flapping),
                subject: s,
                from,
                to,
                at,
                reason,
                cause,
            });
        }
    }

    fn flap_changed(&self, s: &Subject, up: &Update) -> bool {
        up.steps.iter().any(|(x, st)| x == s && st.flap.is_some())
    }

    fn publish(
        &mut self,
        subjects: Vec<Subject>,
        at: TsUs,
        _c: Option<()>,
        reason: &str,
        up: &mut Update,
    ) {
        for s in subjects {
            let to = self.health(&s);
            let from = self.shown.get(&s).copied().unwrap_or(Health::Unknown);
            if to == from {
                continue;
            }
            self.shown.insert(s.clone(), to);
            up.changes.push(StateChange {
                opd: self.topo.opd_of(&s).unwrap_or_default().to_string(),
                flapping: self.machines.get(&s).is_some_and(StateMachine::flapping),
                subject: s,
                from,
                to,
                at,
                reason: reason.to_string(),
                cause: None,
            });
        }
    }

    /// Turns a sample into readings of its subjects.
    pub fn readings(&mut self, s: &Sample) -> Vec<(Subject, Reading)> {
        let rules = &self.rules;
        let dev = Subject::device(s.device.clone());
        let mut out = Vec::new();
        match &s.kind {
            Some(Kind::Icmp(icmp)) => {
                if !icmp.error.is_empty() {
                    return out;
                }
                let mut findings = Vec::new();
                let (level, threshold) = rules.loss_pct.classify(icmp.loss_pct);
                findings.push(Finding {
                    problem: Problem::Loss,
                    level,
                    value: icmp.loss_pct,
                    threshold,
                    detail: String::new(),
                    cause: None,
                });
                if icmp.received > 0 {
                    if let Some(rtt) = icmp.rtt_avg_us {
                        let ms = rtt as f64 / 1000.0;
                        let (level, threshold) = rules.rtt_ms.classify(ms);
                        findings.push(Finding {
                            problem: Problem::Rtt,
                            level,
                            value: ms,
                            threshold,
                            detail: String::new(),
                            cause: None,
                        });
                    }
                    if let Some(j) = icmp.jitter_us {
                        let ms = j as f64 / 1000.0;
                        let (level, threshold) = rules.jitter_ms.classify(ms);
                        findings.push(Finding {
                            problem: Problem::Jitter,
                            level,
                            value: ms,
                            threshold,
                            detail: String::new(),
                            cause: None,
                        });
                    }
                }
                if let Some(f) = self.snmp.get(&s.device) {
                    findings.push(f.clone());
                }
                out.push((
                    dev,
                    Reading {
                        at: s.ts_us,
                        findings,
                        immediate: false,
                        sample: RawSample::sample(s),
                        link_up: None,
                        contradicts_trap: false,
                    },
                ));
            }
            Some(Kind::Snmp(snmp)) => {
                let ok = snmp.status == SnmpStatus::Ok as i32;
                if ok {
                    self.snmp.remove(&s.device);
                } else if rules.snmp_unreachable > Level::Up {
                    let status = SnmpStatus::try_from(snmp.status)
                        .map(|st| {
                            st.as_str_name()
                                .trim_start_matches("SNMP_STATUS_")
                                .to_lowercase()
                        })
                        .unwrap_or_else(|_| "error".into());
                    let detail = if snmp.error.is_empty() {
                        status
                    } else {
                        format!("{status}: {}", snmp.error)
                    };
                    use super::reason::{Cause, SnmpFailure};
                    let failure = match SnmpStatus::try_from(snmp.status) {
                        Ok(SnmpStatus::Timeout) => SnmpFailure::Timeout,
                        Ok(SnmpStatus::AuthFailure) => SnmpFailure::AuthFailure,
                        Ok(SnmpStatus::Malformed) => SnmpFailure::Malformed,
                        _ => SnmpFailure::Error,
                    };
                    self.snmp.insert(
                        s.device.clone(),
                        Finding {
                            problem: Problem::SnmpUnreachable,
                            level: rules.snmp_unreachable,
                            value: 0.0,
                            threshold: None,
                            detail,
                            cause: Some(Cause::Snmp {
                                failure,
                                waited_ms: (snmp.poll_us > 0).then_some(snmp.poll_us / 1000),
                            }),
                        },
                    );
                }
                if ok && let Some(h) = &snmp.health {
                    out.extend(resource_readings(&self.rules, s, h));
                }
                let rules = &self.rules;
                for i in &snmp.interfaces {
                    let names = [i.if_name.as_str(), i.if_descr.as_str()];
                    let Some(link) =
                        self.topo
                            .find_link(&s.device, &i.link_name, i.if_index, &names)
                    else {
                        continue;
                    };
                    if i.if_index != 0 {
                        self.learned
                            .insert((s.device.clone(), i.if_index), link.name.clone());
                    }
                    let mut findings = Vec::new();
                    if i.admin_status == 1 && i.oper_status != 1 {
                        findings.push(Finding {
                            problem: Problem::OperDown,
                            level: rules.oper_down,
                            value: f64::from(i.oper_status),
                            threshold: None,
                            detail: format!("oper status {}", oper_name(i.oper_status)),
                            cause: Some(super::reason::Cause::OperStatus {
                                status: i.oper_status,
                            }),
                        });
                    }
                    let util = match (i.util_in_pct, i.util_out_pct) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    if let Some(u) = util {
                        let (level, threshold) = rules.utilisation_pct.classify(u);
                        findings.push(Finding {
                            problem: Problem::Utilisation,
                            level,
                            value: u,
                            threshold,
                            detail: String::new(),
                            cause: None,
                        });
                    }
                    if let Some(e) = i.errors_per_s {
                        let (level, threshold) = rules.errors_per_s.classify(e);
                        findings.push(Finding {
                            problem: Problem::Errors,
                            level,
                            value: e,
                            threshold,
                            detail: String::new(),
                            cause: None,
                        });
                    }
                    let subject = Subject::link(link.device.clone(), link.name.clone());
                    let link_up = i.oper_status == 1;
                    // A linkDown trap counted at once: the first poll after
                    // it confirms it, or (the link up, no linkUp since)
                    // contradicts it, and the link is up again at once.
                    let contradicts_trap = match self.trap_down.get(&subject) {
                        Some(&trap_at) if s.ts_us > trap_at => {
                            self.trap_down.remove(&subject);
                            if link_up {
                                *self.unconfirmed.entry(s.device.clone()).or_default() += 1;
                            }
                            link_up
                        }
                        _ => false,
                    };
                    out.push((
                        subject,
                        Reading {
                            at: s.ts_us,
                            findings,
                            immediate: contradicts_trap,
                            sample: RawSample::interface(s, i),
                            link_up: Some(link_up),
                            contradicts_trap,
                        },
                    ));
                }
            }
            Some(Kind::Event(ev)) => {
                let learned = self
                    .learned
                    .get(&(s.device.clone(), ev.if_index))
                    .map(String::as_str)
                    .unwrap_or_default();
                let name = if ev.link.is_empty() {
                    learned
                } else {
                    ev.link.as_str()
                };
                let Some(link) = self.topo.find_link(&s.device, name, ev.if_index, &[]) else {
                    return out;
                };
                let subject = Subject::link(link.device.clone(), link.name.clone());
                let from_trap = ev.source == "trap";
                let trap = if from_trap {
                    "linkDown trap"
                } else {
                    "link down"
                };
                let reading = match ev.kind.as_str() {
                    "link_down" => {
                        if from_trap {
                            self.trap_down.insert(subject.clone(), s.ts_us);
                        }
                        Reading {
                            at: s.ts_us,
                            findings: vec![Finding {
                                problem: Problem::OperDown,
                                level: self.rules.oper_down,
                                value: 2.0,
                                threshold: None,
                                detail: trap.to_string(),
                                cause: Some(if from_trap {
                                    super::reason::Cause::Trap
                                } else {
                                    super::reason::Cause::AgentEvent
                                }),
                            }],
                            immediate: true,
                            sample: RawSample::sample(s),
                            link_up: Some(false),
                            contradicts_trap: false,
                        }
                    }
                    "link_up" => {
                        self.trap_down.remove(&subject);
                        Reading {
                            at: s.ts_us,
                            findings: Vec::new(),
                            immediate: false,
                            sample: RawSample::sample(s),
                            link_up: Some(true),
                            contradicts_trap: false,
                        }
                    }
                    _ => return out,
                };
                out.push((subject, reading));
            }
            None => {}
        }
        out
    }
}

/// A few words on a reading ("loss 40 % >= 20 %").
pub fn describe(r: &Reading) -> String {
    match r.worst() {
        None => "all checks within thresholds".to_string(),
        Some(f) => match (f.problem, f.threshold) {
            (Problem::SnmpUnreachable | Problem::OperDown, _) => {
                format!("{}: {}", f.problem.as_str(), f.detail)
            }
            (p, Some(t)) => format!("{} {} >= {}", p.as_str(), fmt_num(f.value), fmt_num(t)),
            (p, None) => format!("{} {}", p.as_str(), fmt_num(f.value)),
        },
    }
}

/// A number without a useless `.0` and at most one decimal.
pub fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 0.05 {
        format!("{:.0}", v.round())
    } else {
        format!("{v:.1}")
    }
}

fn sample_json(s: &Sample) -> serde_json::Value {
    use serde_json::json;
    let mut v = json!({ "ts_us": s.ts_us, "seq": s.seq, "device": s.device });
    match &s.kind {
        Some(Kind::Icmp(i)) => {
            v["icmp"] = json!({
                "sent": i.sent, "received": i.received, "loss_pct": i.loss_pct,
                "rtt_avg_us": i.rtt_avg_us, "jitter_us": i.jitter_us,
            });
        }
        Some(Kind::Snmp(sn)) => {
            v["snmp"] = json!({ "status": sn.status, "error": sn.error });
            if let Some(h) = &sn.health {
                v["snmp"]["health"] = json!({
                    "cpu_pct": h.cpu_pct, "cpu_source": h.cpu_source,
                    "mem_pct": h.mem_pct, "mem_source": h.mem_source,
                    "temp_c": h.temp_c, "temp_threshold_c": h.temp_threshold_c,
                    "temp_source": h.temp_source,
                });
            }
        }
        Some(Kind::Event(e)) => {
            v["event"] = json!({
                "kind": e.kind, "link": e.link, "if_index": e.if_index,
                "detail": e.detail, "source": e.source,
            });
        }
        None => {}
    }
    v
}

fn interface_json(
    ts_us: TsUs,
    seq: u64,
    device: &str,
    i: &siaga_proto::v1::Interface,
) -> serde_json::Value {
    serde_json::json!({
        "ts_us": ts_us, "seq": seq, "device": device,
        "interface": {
            "if_index": i.if_index, "if_name": i.if_name, "link": i.link_name,
            "admin_status": i.admin_status, "oper_status": i.oper_status,
            "util_in_pct": i.util_in_pct, "util_out_pct": i.util_out_pct,
            "errors_per_s": i.errors_per_s,
        }
    })
}

/// The readings of a device's own resources in an SNMP sample: one subject
/// per resource the device told, judged against its rule (for temperature,
/// the device's own threshold when it has one and the rule says so).
fn resource_readings(
    rules: &HealthRules,
    s: &Sample,
    h: &siaga_proto::v1::DeviceHealth,
) -> Vec<(Subject, Reading)> {
    let mut out = Vec::new();
    let own = h
        .temp_threshold_c
        .filter(|t| rules.temperature.device_threshold && t.is_finite() && *t > 0.0);
    for (resource, value, above, source) in [
        (Resource::Cpu, h.cpu_pct, rules.cpu.above, &h.cpu_source),
        (
            Resource::Memory,
            h.mem_pct,
            rules.memory.above,
            &h.mem_source,
        ),
        (
            Resource::Temperature,
            h.temp_c,
            own.or(rules.temperature.above),
            &h.temp_source,
        ),
    ] {
        let Some(value) = value.filter(|v| v.is_finite()) else {
            continue;
        };
        let over = above.is_some_and(|a| value > a);
        let own_threshold = resource == Resource::Temperature && own.is_some();
        out.push((
            Subject::Resource {
                device: s.device.clone(),
                resource,
            },
            Reading {
                at: s.ts_us,
                findings: vec![Finding {
                    problem: resource.problem(),
                    level: if over { Level::Degraded } else { Level::Up },
                    value,
                    threshold: above,
                    detail: if source.is_empty() {
                        String::new()
                    } else {
                        format!("from {source}")
                    },
                    cause: own_threshold.then_some(super::reason::Cause::DeviceThreshold),
                }],
                immediate: false,
                sample: RawSample::sample(s),
                link_up: None,
                contradicts_trap: false,
            },
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use siaga_proto::v1::{Event, IcmpResult, Interface, SnmpResult};
    use test_case::test_case;

    pub(crate) const SEC: i64 = 1_000_000;

    pub(crate) fn topo() -> Topology {
        // core <- rtr <- {sw1, sw2}; rtr has link "uplink" (eth0).
        let mut devices = BTreeMap::new();
        let dev = |opd: &str, parent: Option<&str>| DeviceNode {
            opd: opd.into(),
            parent: parent.map(Into::into),
        };
        devices.insert("dinkes-core".into(), dev("dinkes", None));
        devices.insert("dinkes-rtr".into(), dev("dinkes", Some("dinkes-core")));
        devices.insert("dinkes-sw1".into(), dev("dinkes", Some("dinkes-rtr")));
        devices.insert("dinkes-sw2".into(), dev("dinkes", Some("dinkes-rtr")));
        devices.insert("bappeda-rtr".into(), dev("bappeda", None));
        Topology {
            devices,
            links: vec![LinkNode {
                device: "dinkes-rtr".into(),
                name: "uplink".into(),
                interface: Some("eth0".into()),
                if_index: None,
            }],
            intervals_us: BTreeMap::new(),
            default_interval_us: 10 * SEC,
        }
    }

    pub(crate) fn icmp(device: &str, t: i64, loss: f64) -> Sample {
        let received = ((100.0 - loss) / 10.0).round() as u32;
        Sample {
            seq: t as u64,
            ts_us: t,
            device: device.into(),
            kind: Some(Kind::Icmp(IcmpResult {
                sent: 10,
                received,
                loss_pct: loss,
                rtt_avg_us: (received > 0).then_some(2_000),
                jitter_us: (received > 0).then_some(100),
                ..Default::default()
            })),
        }
    }

    pub(crate) fn iface(device: &str, t: i64, oper: u32) -> Sample {
        Sample {
            seq: t as u64,
            ts_us: t,
            device: device.into(),
            kind: Some(Kind::Snmp(SnmpResult {
                status: SnmpStatus::Ok as i32,
                interfaces: vec![Interface {
                    if_index: 2,
                    if_name: "eth0".into(),
                    admin_status: 1,
                    oper_status: oper,
                    ..Default::default()
                }],
                ..Default::default()
            })),
        }
    }

    pub(crate) fn trap(device: &str, t: i64, kind: &str) -> Sample {
        Sample {
            seq: t as u64,
            ts_us: t,
            device: device.into(),
            kind: Some(Kind::Event(Event {
                kind: kind.into(),
                if_index: 2,
                source: "trap".into(),
                ..Default::default()
            })),
        }
    }

    fn reading(level: Level, immediate: bool) -> Reading {
        Reading {
            at: 0,
            findings: vec![Finding {
                problem: Problem::Loss,
                level,
                value: 0.0,
                threshold: None,
                detail: String::new(),
                cause: None,
            }],
            immediate,
            sample: serde_json::Value::Null.into(),
            link_up: None,
            contradicts_trap: false,
        }
    }

    /// Feeds levels ("u", "g" = degraded, "d", "D" = immediate down) and
    /// returns the confirmed level after each.
    fn run(seq: &str) -> String {
        let rules = HealthRules::default(); // enter 2, leave 3
        let mut m = StateMachine::default();
        seq.chars()
            .map(|c| {
                let r = match c {
                    'u' => reading(Level::Up, false),
                    'g' => reading(Level::Degraded, false),
                    'd' => reading(Level::Down, false),
                    _ => reading(Level::Down, true),
                };
                m.observe(r, &rules);
                match m.hard() {
                    None => '?',
                    Some(Level::Up) => 'u',
                    Some(Level::Degraded) => 'g',
                    Some(Level::Down) => 'd',
                }
            })
            .collect()
    }

    #[test_case("uuuuu" => "??uuu"; "starts unknown then up after leave cycles")]
    #[test_case("uuudd" => "??uud"; "two bad cycles enter down")]
    #[test_case("uuudud" => "??uuuu"; "a single bad reading is ignored")]
    #[test_case("uuuggd" => "??uugg"; "mixed streak enters the least bad level")]
    #[test_case("uuuddu" => "??uudd"; "one good reading does not recover")]
    #[test_case("uuudduuu" => "??uudddu"; "three good readings recover")]
    #[test_case("uuuD" => "??ud"; "a trap counts at once")]
    #[test_case("uuuDuDu" => "??udddd"; "trap down, polls up and down: no recovery without leave cycles")]
    #[test_case("dd" => "?d"; "first confirmed state can be down")]
    fn hysteresis(seq: &str) -> String {
        run(seq)
    }

    #[test]
    fn flapping_starts_and_settles_with_nagios_weights() {
        let rules = HealthRules::default();
        let mut m = StateMachine::default();
        let mut started = None;
        for i in 0..20 {
            let l = if i % 2 == 0 { Level::Up } else { Level::Down };
            let st = m.observe(reading(l, true), &rules);
            if st.flap == Some(true) {
                started = Some(i);
            }
        }
        // 30 % of the 20 weighted slots is reached after about six changes.
        let started = started.expect("flapping detected");
        assert!((5..=8).contains(&started), "started at {started}");
        assert!(m.flapping());
        let mut stopped = None;
        for i in 0..21 {
            let st = m.observe(reading(Level::Up, false), &rules);
            if st.flap == Some(false) {
                stopped = Some(i);
                break;
            }
        }
        let stopped = stopped.expect("settles");
        assert!((1..21).contains(&stopped), "stopped after {stopped}");
        assert!(!m.flapping());
        assert_eq!(m.hard(), Some(Level::Up));
    }

    #[test_case(&[] => 0.0; "empty")]
    #[test_case(&[Level::Up; 21] => 0.0; "stable")]
    #[test_case(&[Level::Up, Level::Down].repeat(11)[..21] => 100.0; "every check changes")]
    fn flap_pct(levels: &[Level]) -> f64 {
        let h: VecDeque<Level> = levels.iter().copied().collect();
        (flap_percent(&h, 21) * 1000.0).round() / 1000.0
    }

    #[test]
    fn newer_changes_weigh_more() {
        let mut old = vec![Level::Up; 21];
        old[1] = Level::Down; // changes at slots 0 and 1
        let mut new = vec![Level::Up; 21];
        new[19] = Level::Down; // changes at slots 18 and 19
        let p_old = flap_percent(&old.into_iter().collect(), 21);
        let p_new = flap_percent(&new.into_iter().collect(), 21);
        assert!(p_new > p_old, "{p_new} > {p_old}");
        assert!((p_old - (0.75 + 0.75 + 0.5 / 19.0) * 5.0).abs() < 1e-9);
    }

    fn tracker() -> Tracker {
        Tracker::new(HealthRules::default(), topo())
    }

    fn feed(t: &mut Tracker, s: Sample) -> Update {
        let now = s.ts_us;
        t.sample("dinkes", &s, now)
    }

    #[test]
    fn loss_makes_a_device_degraded_with_the_reading_as_cause() {
        let mut t = tracker();
        let mut changes = Vec::new();
        for c in 0..5 {
            let loss = if c < 3 { 0.0 } else { 40.0 };
            changes.extend(feed(&mut t, icmp("dinkes-sw1", c * 10 * SEC, loss)).changes);
        }
        let last = changes.last().unwrap();
        assert_eq!(last.subject, Subject::device("dinkes-sw1"));
        assert_eq!((last.from, last.to), (Health::Up, Health::Degraded));
        assert_eq!(last.at, 40 * SEC);
        assert_eq!(last.reason, "loss 40 >= 20");
        assert_eq!(last.cause.as_ref().unwrap().worst().unwrap().value, 40.0);
    }

    #[test]
    fn children_of_a_down_router_are_unreachable() {
        let mut t = tracker();
        for c in 0..3 {
            for d in ["dinkes-core", "dinkes-rtr", "dinkes-sw1", "dinkes-sw2"] {
                feed(&mut t, icmp(d, c * 10 * SEC, 0.0));
            }
            feed(&mut t, iface("dinkes-rtr", c * 10 * SEC, 1));
        }
        let mut changes = Vec::new();
        // Children reported before the parent in each cycle.
        for c in 3..5 {
            for d in ["dinkes-sw1", "dinkes-sw2", "dinkes-rtr"] {
                changes.extend(feed(&mut t, icmp(d, c * 10 * SEC, 100.0)).changes);
            }
        }
        assert_eq!(t.health(&Subject::device("dinkes-rtr")), Health::Down);
        assert_eq!(
            t.health(&Subject::device("dinkes-sw1")),
            Health::Unreachable
        );
        assert_eq!(
            t.health(&Subject::device("dinkes-sw2")),
            Health::Unreachable
        );
        assert_eq!(
            t.health(&Subject::link("dinkes-rtr", "uplink")),
            Health::Unreachable
        );
        assert_eq!(t.health(&Subject::device("dinkes-core")), Health::Up);
        let sw1 = changes
            .iter()
            .filter(|c| c.subject == Subject::device("dinkes-sw1"))
            .map(|c| c.to)
            .collect::<Vec<_>>();
        assert_eq!(sw1.last(), Some(&Health::Unreachable));
        assert_eq!(t.down_ancestor("dinkes-sw1").as_deref(), Some("dinkes-rtr"));
        // The parent recovers: the children show their own state again.
        for c in 5..8 {
            for d in ["dinkes-rtr", "dinkes-sw1", "dinkes-sw2"] {
                feed(&mut t, icmp(d, c * 10 * SEC, 0.0));
            }
        }
        assert_eq!(t.health(&Subject::device("dinkes-sw1")), Health::Up);
    }

    #[test]
    fn a_link_down_trap_counts_at_once_and_polls_confirm_recovery() {
        let mut t = tracker();
        for c in 0..3 {
            feed(&mut t, iface("dinkes-rtr", c * SEC, 1));
        }
        let link = Subject::link("dinkes-rtr", "uplink");
        assert_eq!(t.health(&link), Health::Up);
        let up = feed(&mut t, trap("dinkes-rtr", 3 * SEC, "link_down"));
        assert_eq!(t.health(&link), Health::Down);
        assert_eq!(up.changes[0].reason, "oper_down: linkDown trap");
        feed(&mut t, trap("dinkes-rtr", 4 * SEC, "link_up"));
        feed(&mut t, iface("dinkes-rtr", 5 * SEC, 1));
        assert_eq!(t.health(&link), Health::Down);
        feed(&mut t, iface("dinkes-rtr", 6 * SEC, 1));
        assert_eq!(t.health(&link), Health::Up);
    }

    #[test]
    fn oper_down_by_poll_needs_hysteresis() {
        let mut t = tracker();
        for c in 0..3 {
            feed(&mut t, iface("dinkes-rtr", c * SEC, 1));
        }
        let link = Subject::link("dinkes-rtr", "uplink");
        feed(&mut t, iface("dinkes-rtr", 3 * SEC, 2));
        assert_eq!(t.health(&link), Health::Up);
        feed(&mut t, iface("dinkes-rtr", 4 * SEC, 2));
        assert_eq!(t.health(&link), Health::Down);
    }

    #[test]
    fn silent_agent_makes_its_devices_unknown_and_back_again() {
        let mut t = tracker();
        for c in 0..3 {
            feed(&mut t, icmp("dinkes-sw1", c * 10 * SEC, 0.0));
            t.sample(
                "bappeda",
                &icmp("bappeda-rtr", c * 10 * SEC, 0.0),
                c * 10 * SEC,
            );
        }
        t.heartbeat("bappeda", 40 * SEC);
        assert!(t.tick(45 * SEC).silenced.is_empty());
        // 3 intervals of 10 s after the last message at 20 s.
        let up = t.tick(51 * SEC);
        assert_eq!(up.silenced, vec![("dinkes".to_string(), 20 * SEC)]);
        assert!(
            up.changes
                .iter()
                .any(|c| c.subject == Subject::device("dinkes-sw1") && c.to == Health::Unknown)
        );
        assert_eq!(t.health(&Subject::device("dinkes-sw1")), Health::Unknown);
        assert_eq!(t.health(&Subject::device("bappeda-rtr")), Health::Up);
        let up = t.heartbeat("dinkes", 90 * SEC);
        assert_eq!(
            up.returned,
            vec![("dinkes".to_string(), 20 * SEC, 90 * SEC)]
        );
        assert_eq!(t.health(&Subject::device("dinkes-sw1")), Health::Up);
        assert_eq!(
            t.in_past_silence("dinkes", 50 * SEC),
            Some((20 * SEC, 90 * SEC))
        );
        assert_eq!(t.in_past_silence("dinkes", 95 * SEC), None);
    }

    #[test]
    fn an_agent_not_heard_since_the_start_is_silent_after_the_usual_window() {
        let mut t = tracker();
        // dinkes was last heard at 5 s, before this process; bappeda never.
        // Watching starts at 100 s; 3 intervals of 10 s.
        t.watch("dinkes", Some(5 * SEC), 100 * SEC, 0);
        t.watch("bappeda", None, 100 * SEC, 0);
        assert!(t.watched("dinkes") && t.watched("bappeda"));
        assert!(t.tick(130 * SEC).silenced.is_empty());
        let up = t.tick(131 * SEC);
        assert_eq!(
            up.silenced,
            vec![
                ("bappeda".to_string(), 100 * SEC),
                ("dinkes".to_string(), 5 * SEC)
            ]
        );
        assert_eq!(t.health(&Subject::device("dinkes-sw1")), Health::Unknown);
        // Once: a later tick says nothing new.
        assert!(t.tick(140 * SEC).silenced.is_empty());
        // It comes back; watching again (a reload) does not restart the count.
        let up = t.heartbeat("dinkes", 150 * SEC);
        assert_eq!(
            up.returned,
            vec![("dinkes".to_string(), 5 * SEC, 150 * SEC)]
        );
        t.watch("dinkes", None, 160 * SEC, 0);
        assert!(t.tick(179 * SEC).silenced.is_empty());
        assert_eq!(
            t.tick(181 * SEC).silenced,
            vec![("dinkes".to_string(), 150 * SEC)]
        );
    }

    #[test_case(0, 31 ; "no grace: three intervals")]
    #[test_case(15, 31 ; "grace shorter than the window")]
    #[test_case(60, 60 ; "grace longer than the window")]
    fn silence_after_a_start_waits_for_the_grace(grace_s: i64, silent_at_s: i64) {
        let mut t = tracker();
        t.watch("dinkes", None, 0, grace_s * SEC);
        assert!(t.tick((silent_at_s - 1) * SEC).silenced.is_empty());
        assert_eq!(t.tick(silent_at_s * SEC).silenced.len(), 1);
    }

    #[test]
    fn samples_for_another_opd_or_unknown_devices_are_ignored() {
        let mut t = tracker();
        for c in 0..3 {
            t.sample("bappeda", &icmp("dinkes-sw1", c, 100.0), c);
            t.sample("dinkes", &icmp("nope", c, 100.0), c);
        }
        assert!(t.machine(&Subject::device("dinkes-sw1")).is_none());
        assert!(t.machine(&Subject::device("nope")).is_none());
    }

    #[test_case(0.0, 2_000, 100 => Level::Up; "clean")]
    #[test_case(40.0, 2_000, 100 => Level::Degraded; "loss")]
    #[test_case(100.0, 2_000, 100 => Level::Down; "no reply")]
    #[test_case(0.0, 200_000, 100 => Level::Degraded; "slow")]
    #[test_case(0.0, 2_000, 50_000 => Level::Degraded; "jittery")]
    fn icmp_readings(loss: f64, rtt_us: u64, jitter_us: u64) -> Level {
        let mut t = tracker();
        let mut s = icmp("dinkes-sw1", 0, loss);
        if let Some(Kind::Icmp(i)) = &mut s.kind {
            i.rtt_avg_us = Some(rtt_us);
            i.jitter_us = Some(jitter_us);
        }
        let r = t.readings(&s);
        r[0].1.level()
    }

    /// The evidence of a reading is written as it always was, though it is
    /// made only when written; read back, it is written the same again.
    #[test]
    fn a_readings_sample_is_written_as_the_same_json_and_reads_back() {
        let s = icmp("dinkes-sw1", 7 * SEC, 40.0);
        let r = RawSample::sample(&s);
        let want = serde_json::json!({
            "ts_us": 7 * SEC, "seq": 7 * SEC, "device": "dinkes-sw1",
            "icmp": {"sent": 10, "received": 6, "loss_pct": 40.0,
                     "rtt_avg_us": 2_000, "jitter_us": 100},
        });
        assert_eq!(serde_json::to_value(&r).unwrap(), want);
        let back: RawSample = serde_json::from_value(want.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), want);
        assert_eq!(back, r);
        let link = iface("dinkes-rtr", 3 * SEC, 2);
        let Some(Kind::Snmp(sn)) = &link.kind else {
            unreachable!()
        };
        let r = RawSample::interface(&link, &sn.interfaces[0]);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "ts_us": 3 * SEC, "seq": 3 * SEC, "device": "dinkes-rtr",
                "interface": {"if_index": 2, "if_name": "eth0", "link": "",
                    "admin_status": 1, "oper_status": 2, "util_in_pct": null,
                    "util_out_pct": null, "errors_per_s": null},
            })
        );
    }

    #[test]
    fn snmp_timeout_degrades_a_device_that_still_answers_ping() {
        let mut t = tracker();
        let s = Sample {
            seq: 1,
            ts_us: 0,
            device: "dinkes-sw1".into(),
            kind: Some(Kind::Snmp(SnmpResult {
                status: SnmpStatus::Timeout as i32,
                ..Default::default()
            })),
        };
        t.readings(&s);
        let r = t.readings(&icmp("dinkes-sw1", 1, 0.0));
        assert_eq!(r[0].1.level(), Level::Degraded);
        assert_eq!(describe(&r[0].1), "snmp_unreachable: timeout");
    }
}
