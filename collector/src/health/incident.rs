//! Incidents: when a state change opens one, attaches to one, or recovers one.
//!
//! An incident key is the subject plus the problem it opened with. While an
//! incident for a subject is open (its ticket not closed by people), new
//! occurrences attach to it; a device that is only unreachable because an
//! ancestor is down is listed on the ancestor's incident; a silent agent is
//! one incident for its OPD. Inside a maintenance window nothing is opened.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use super::reason::Reason;
use super::rules::Level;
use super::state::{Health, Problem, Reading, Step, Subject, Tracker, TsUs};

/// One open incident (its ticket is not closed yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `device:ID:problem`, `link:DEVICE/LINK:problem`, `opd:ID:agent_unreachable`
    /// or, for a device's own resource, `device:ID:cpu` (`memory`, `temperature`).
    pub key: String,
    /// What it is about.
    pub subject: Subject,
    /// The OPD.
    pub opd: String,
    /// The problem it opened with.
    pub problem: Problem,
    /// The problem in a sentence (English, times in UTC): [`Incident::reason`] written out.
    pub sentence: String,
    /// The problem in a sentence in Bahasa Indonesia (times in UTC).
    #[serde(default)]
    pub sentence_id: String,
    /// Why it opened, as facts (`None` for incidents stored before reasons were typed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// When it opened.
    pub opened_at: TsUs,
    /// When it last recovered; cleared when the problem comes back.
    pub recovered_at: Option<TsUs>,
    /// How often the problem occurred while the incident was open.
    pub occurrences: u32,
    /// Devices unreachable because of this one (or, for an agent, its devices).
    pub affected: BTreeSet<String>,
    /// The subject is flapping.
    pub flapping: bool,
    /// The subject flapped at some time while the incident was open.
    #[serde(default)]
    pub flapped: bool,
    /// Opened by a linkDown trap that the next poll contradicted.
    #[serde(default)]
    pub unconfirmed: bool,
    /// The collector decided to close its ticket (said once).
    #[serde(default)]
    pub closing: bool,
}

/// Why the collector closes a ticket by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The subject flapped, settled and stayed up for `[health.flap] close_after`.
    StableAfterFlapping,
    /// Its only occurrence was a linkDown trap that the next poll contradicted.
    NotConfirmedByPolling,
}

impl CloseReason {
    /// Stable name, for events.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::StableAfterFlapping => "stable_after_flapping",
            CloseReason::NotConfirmedByPolling => "not_confirmed_by_polling",
        }
    }
    /// The reason in a sentence (English).
    pub fn sentence(self, stable_for: TsUs) -> String {
        match self {
            CloseReason::StableAfterFlapping => format!(
                "stable for {} after flapping",
                humantime::format_duration(std::time::Duration::from_secs(
                    (stable_for.max(0) / 1_000_000) as u64
                ))
            ),
            CloseReason::NotConfirmedByPolling => {
                "linkDown trap not confirmed by polling: the next poll found the link up".into()
            }
        }
    }
    /// The reason in a sentence, in Bahasa Indonesia.
    pub fn sentence_id(self, stable_for: TsUs) -> String {
        match self {
            CloseReason::StableAfterFlapping => format!(
                "stabil selama {} setelah flapping",
                humantime::format_duration(std::time::Duration::from_secs(
                    (stable_for.max(0) / 1_000_000) as u64
                ))
            ),
            CloseReason::NotConfirmedByPolling => {
                "trap linkDown tidak terkonfirmasi oleh polling: polling berikutnya mendapati link up"
                    .into()
            }
        }
    }
}

/// The key of an incident for `subject` with `problem`.
pub fn incident_key(subject: &Subject, problem: Problem) -> String {
    let p = problem.as_str();
    match subject {
        Subject::Device { device } => format!("device:{device}:{p}"),
        Subject::Link { device, link } => format!("link:{device}/{link}:{p}"),
        Subject::Opd { opd } => format!("opd:{opd}:{p}"),
        // `device:sw1:cpu`; a resource that flaps: `device:sw1:cpu:flapping`,
        // never the device's own `device:sw1:flapping`.
        Subject::Resource { device, resource } if resource.as_str() == p => {
            format!("device:{device}:{p}")
        }
        Subject::Resource { device, resource } => {
            format!("device:{device}:{}:{p}", resource.as_str())
        }
    }
}

/// What the incident book decided; the caller turns these into tickets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A new incident: open a ticket.
    Open {
        /// The incident.
        incident: Incident,
        /// The readings that triggered it.
        evidence: Vec<Reading>,
    },
    /// The problem occurred again while the incident was open.
    Attach {
        /// Incident key.
        key: String,
        /// When.
        at: TsUs,
        /// Occurrences now.
        occurrences: u32,
        /// The readings of this occurrence.
        evidence: Vec<Reading>,
    },
    /// Readings replayed by an agent that was cut off, for its incident.
    Evidence {
        /// Incident key.
        key: String,
        /// The readings.
        evidence: Vec<Reading>,
    },
    /// A device is unreachable because of this incident's subject.
    Affected {
        /// Incident key.
        key: String,
        /// The device.
        device: String,
        /// When.
        at: TsUs,
    },
    /// The subject is healthy again (and not flapping). The ticket stays open.
    Recovered {
        /// Incident key.
        key: String,
        /// When.
        at: TsUs,
        /// The reading that confirmed it.
        cause: Option<Reading>,
    },
    /// A linkDown trap that opened (or re-opened) this incident was
    /// contradicted by the next poll: not confirmed by polling.
    Unconfirmed {
        /// Incident key.
        key: String,
        /// The device.
        device: String,
        /// When (the poll's time).
        at: TsUs,
    },
    /// The collector closes the incident's ticket by itself (if nobody
    /// has taken its first SOP step yet).
    Close {
        /// Incident key.
        key: String,
        /// Why.
        reason: CloseReason,
        /// How long the subject has been stable, microseconds.
        stable_for: TsUs,
        /// When.
        at: TsUs,
    },
    /// Flapping started or stopped.
    Flapping {
        /// Incident key.
        key: String,
        /// Flapping now.
        flapping: bool,
        /// Percent state change.
        pct: f64,
        /// When.
        at: TsUs,
    },
    /// A problem inside a maintenance window: no incident.
    Suppressed {
        /// The subject.
        subject: Subject,
        /// Its OPD.
        opd: String,
        /// The window.
        window: u64,
        /// Why, for the event list.
        reason: String,
        /// When.
        at: TsUs,
    },
}

/// What a maintenance window covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// Everything of an OPD, its agent included.
    Opd {
        /// OPD id.
        opd: String,
    },
    /// A device and its links.
    Device {
        /// Device id.
        device: String,
    },
    /// One link.
    Link {
        /// Device id.
        device: String,
        /// Link name.
        link: String,
    },
}

impl Scope {
    fn covers(&self, subject: &Subject, opd: &str) -> bool {
        match (self, subject) {
            (Scope::Opd { opd: o }, _) => o == opd,
            (Scope::Device { device }, s) => s.device_id() == Some(device.as_str()),
            (Scope::Link { device, link }, Subject::Link { device: d, link: l }) => {
                device == d && link == l
            }
            (Scope::Link { .. }, _) => false,
        }
    }
}

/// When a maintenance window is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Once, from `start` to `end` (microseconds since the epoch).
    Once {
        /// Start.
        start_us: TsUs,
        /// End (exclusive).
        end_us: TsUs,
    },
    /// Every week on the given days.
    Weekly {
        /// Days: "mon" … "sun".
        days: Vec<String>,
        /// Local start time "HH:MM".
        start: String,
        /// Length in seconds (may run past midnight).
        duration_s: u64,
        /// Local time's offset from UTC in minutes (WIB = 420).
        utc_offset_minutes: i32,
    },
}

/// A maintenance window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    /// Id, unique in the store.
    pub id: u64,
    /// What it covers.
    pub scope: Scope,
    /// When.
    pub schedule: Schedule,
    /// Why (shown in events).
    pub reason: String,
    /// Who made it.
    #[serde(default)]
    pub created_by: String,
}

/// A window that does not make sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct WindowError(pub String);

fn parse_day(d: &str) -> Result<Weekday, WindowError> {
    d.trim()
        .parse::<Weekday>()
        .map_err(|_| WindowError(format!("unknown day {d:?} (use mon, tue, … sun)")))
}

impl Schedule {
    /// Checks the fields that a person typed.
    pub fn validate(&self) -> Result<(), WindowError> {
        match self {
            Schedule::Once { start_us, end_us } => {
                if end_us <= start_us {
                    return Err(WindowError("the window ends before it starts".into()));
                }
            }
            Schedule::Weekly {
                days,
                start,
                duration_s,
                utc_offset_minutes,
            } => {
                if days.is_empty() {
                    return Err(WindowError("a weekly window needs at least one day".into()));
                }
                for d in days {
                    parse_day(d)?;
                }
                NaiveTime::parse_from_str(start, "%H:%M")
                    .map_err(|_| WindowError(format!("start {start:?} is not HH:MM")))?;
                if *duration_s == 0 || *duration_s > 7 * 86_400 {
                    return Err(WindowError(
                        "duration must be between 1 s and 7 days".into(),
                    ));
                }
                if utc_offset_minutes.abs() > 14 * 60 {
                    return Err(WindowError("UTC offset beyond ±14 h".into()));
                }
            }
        }
        Ok(())
    }

    /// Whether the schedule is in force at `at`.
    pub fn active(&self, at: TsUs) -> bool {
        match self {
            Schedule::Once { start_us, end_us } => *start_us <= at && at < *end_us,
            Schedule::Weekly {
                days,
                start,
                duration_s,
                utc_offset_minutes,
            } => {
                let Ok(start) = NaiveTime::parse_from_str(start, "%H:%M") else {
                    return false;
                };
                let days: Vec<Weekday> = days.iter().filter_map(|d| parse_day(d).ok()).collect();
                let Some(utc) = DateTime::from_timestamp_micros(at) else {
                    return false;
                };
                let local = utc.naive_utc() + Duration::minutes(i64::from(*utc_offset_minutes));
                let len = Duration::seconds(i64::try_from(*duration_s).unwrap_or(i64::MAX / 2));
                (0..=7).any(|k| {
                    let day = local.date() - Duration::days(k);
                    let begin = day.and_time(start);
                    days.contains(&day.weekday()) && begin <= local && local < begin + len
                })
            }
        }
    }
}

impl Schedule {
    /// The times the schedule is in force that overlap `[from, until)`,
    /// oldest first, each clipped to that range (a weekly window that
    /// started before `from` included).
    pub fn spans(&self, from: TsUs, until: TsUs) -> Vec<(TsUs, TsUs)> {
        let clip = |a: TsUs, b: TsUs| (a.max(from), b.min(until));
        let mut out = Vec::new();
        match self {
            Schedule::Once { start_us, end_us } => out.push(clip(*start_us, *end_us)),
            Schedule::Weekly {
                days,
                start,
                duration_s,
                utc_offset_minutes,
            } => {
                let Ok(start) = NaiveTime::parse_from_str(start, "%H:%M") else {
                    return out;
                };
                let days: Vec<Weekday> = days.iter().filter_map(|d| parse_day(d).ok()).collect();
                let (Some(a), Some(b)) = (
                    DateTime::from_timestamp_micros(from),
                    DateTime::from_timestamp_micros(until),
                ) else {
                    return out;
                };
                let offset = Duration::minutes(i64::from(*utc_offset_minutes));
                let len_us = i64::try_from(*duration_s)
                    .unwrap_or(i64::MAX / 2)
                    .saturating_mul(1_000_000);
                let mut day = (a.naive_utc() + offset).date() - Duration::days(8);
                let last = (b.naive_utc() + offset).date();
                while day <= last {
                    if days.contains(&day.weekday()) {
                        let begin = (day.and_time(start) - offset).and_utc().timestamp_micros();
                        out.push(clip(begin, begin.saturating_add(len_us)));
                    }
                    day += Duration::days(1);
                }
            }
        }
        out.retain(|(a, b)| a < b);
        out
    }
}

impl MaintenanceWindow {
    /// The times the window covers `subject` of `opd` within `[from,
    /// until)`; see [`Schedule::spans`].
    pub fn spans_for(
        &self,
        subject: &Subject,
        opd: &str,
        from: TsUs,
        until: TsUs,
    ) -> Vec<(TsUs, TsUs)> {
        if self.scope.covers(subject, opd) {
            self.schedule.spans(from, until)
        } else {
            Vec::new()
        }
    }

    /// Whether the window covers `subject` of `opd` at `at`.
    pub fn covers(&self, subject: &Subject, opd: &str, at: TsUs) -> bool {
        self.scope.covers(subject, opd) && self.schedule.active(at)
    }
}

/// Human-readable time for sentences.
pub fn fmt_time(at: TsUs) -> String {
    DateTime::from_timestamp_micros(at)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| at.to_string())
}

/// The open incidents and the announcements already made.
#[derive(Debug, Clone, Default)]
pub struct IncidentBook {
    open: BTreeMap<String, Incident>,
    announced: BTreeSet<(Subject, u64)>,
    /// How the sentences write moments (the province's zone).
    zone: crate::sop::calendar::Zone,
}

impl IncidentBook {
    /// A book holding incidents restored from the store, writing moments
    /// in `zone`.
    pub fn restore(
        incidents: impl IntoIterator<Item = Incident>,
        zone: crate::sop::calendar::Zone,
    ) -> Self {
        Self {
            open: incidents.into_iter().map(|i| (i.key.clone(), i)).collect(),
            announced: BTreeSet::new(),
            zone,
        }
    }

    /// The sentence of `reason` in `lang`, moments in the book's zone.
    fn sentence(&self, reason: &Reason, lang: crate::sop::Lang) -> String {
        reason.text(lang, &|us| self.zone.fmt_us(us))
    }

    /// The open incidents of `opd` become `incidents` (as the store has
    /// them now: another collector judged the OPD until this one took it).
    pub fn replace_opd(&mut self, opd: &str, incidents: impl IntoIterator<Item = Incident>) {
        self.open.retain(|_, i| i.opd != opd);
        for i in incidents {
            if i.opd == opd {
                self.open.insert(i.key.clone(), i);
            }
        }
    }

    /// An open incident by key.
    pub fn get(&self, key: &str) -> Option<&Incident> {
        self.open.get(key)
    }

    /// All open incidents.
    pub fn all(&self) -> impl Iterator<Item = &Incident> {
        self.open.values()
    }

    /// People closed the ticket: the next problem opens a new incident.
    pub fn close(&mut self, key: &str) -> Option<Incident> {
        self.open.remove(key)
    }

    /// The open incident of a subject: the unrecovered one first.
    pub fn for_subject(&self, s: &Subject) -> Option<&Incident> {
        let mut it = self.open.values().filter(|i| &i.subject == s);
        let all: Vec<&Incident> = it.by_ref().collect();
        all.iter()
            .find(|i| i.recovered_at.is_none())
            .or(all.first())
            .copied()
    }

    fn window<'a>(
        windows: &'a [MaintenanceWindow],
        s: &Subject,
        opd: &str,
        at: TsUs,
    ) -> Option<&'a MaintenanceWindow> {
        windows.iter().find(|w| w.covers(s, opd, at))
    }

    fn suppress(
        &mut self,
        w: &MaintenanceWindow,
        s: &Subject,
        opd: &str,
        what: &str,
        at: TsUs,
    ) -> Vec<Decision> {
        if !self.announced.insert((s.clone(), w.id)) {
            return Vec::new();
        }
        let why = if w.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", w.reason)
        };
        vec![Decision::Suppressed {
            subject: s.clone(),
            opd: opd.to_string(),
            window: w.id,
            reason: format!("{what}; no ticket: inside maintenance window {}{why}", w.id),
            at,
        }]
    }

    /// Decides for one subject after its state may have changed.
    /// `step` is the machine step of this input, if any; `now` the time used
    /// for maintenance windows and decisions without a reading.
    pub fn evaluate(
        &mut self,
        tracker: &Tracker,
        subject: &Subject,
        step: Option<&Step>,
        windows: &[MaintenanceWindow],
        now: TsUs,
    ) -> Vec<Decision> {
        let mut out = Vec::new();
        let Some(opd) = tracker.topology().opd_of(subject) else {
            return out;
        };
        let health = tracker.health(subject);
        let Some(m) = tracker.machine(subject) else {
            return out;
        };
        let at = step
            .and_then(|s| s.evidence.last().map(|r| r.at))
            .or_else(|| m.last().map(|r| r.at))
            .unwrap_or(now);
        match health {
            Health::Unknown => return out,
            Health::Unreachable => {
                if let Subject::Device { device } = subject
                    && let Some(root) = tracker.down_ancestor(device)
                    && let Some(inc) = self
                        .for_subject(&Subject::device(root))
                        .map(|i| i.key.clone())
                    && let Some(i) = self.open.get_mut(&inc)
                    && i.affected.insert(device.clone())
                {
                    out.push(Decision::Affected {
                        key: inc,
                        device: device.clone(),
                        at,
                    });
                }
                return out;
            }
            _ => {}
        }
        let flapping = m.flapping();
        let problem_now = health.is_problem() || flapping;
        let existing = self.for_subject(subject).map(|i| i.key.clone());

        if problem_now {
            // A fault that may be an ancestor's: wait for the ancestor. A
            // burst cut half-way reads as loss (degraded), not down, so both.
            if matches!(health, Health::Down | Health::Degraded)
                && let Some(dev) = subject.device_id()
                && (tracker.ancestor_pending(dev)
                    || (subject.link_name().is_some()
                        && tracker
                            .machine(&Subject::device(dev))
                            .is_some_and(|d| d.pending_worse())))
            {
                return out;
            }
            let entered = step.is_some_and(
                |s| matches!(s.changed, Some((Some(Level::Up), to)) if to > Level::Up),
            );
            if let Some(key) = existing
                && let Some(i) = self.open.get_mut(&key)
            {
                if i.recovered_at.is_some() || entered {
                    i.recovered_at = None;
                    i.occurrences += 1;
                    // A new occurrence is judged afresh.
                    i.closing = false;
                    i.unconfirmed = false;
                    out.push(Decision::Attach {
                        key: key.clone(),
                        at,
                        occurrences: i.occurrences,
                        evidence: step.map(|s| s.evidence.clone()).unwrap_or_default(),
                    });
                }
                if i.flapping != flapping {
                    i.flapping = flapping;
                    i.flapped |= flapping;
                    out.push(Decision::Flapping {
                        key,
                        flapping,
                        pct: m.flap_pct(),
                        at,
                    });
                }
                return out;
            }
            let worst =
                m.last().and_then(Reading::worst).cloned().or_else(|| {
                    step.and_then(|s| s.evidence.last().and_then(Reading::worst).cloned())
                });
            let problem = match (&worst, health.is_problem()) {
                (Some(f), true) => f.problem,
                _ => Problem::Flapping,
            };
            let reason = Reason::of(subject, problem, worst.as_ref(), m.flap_pct());
            let text = self.sentence(&reason, crate::sop::Lang::En);
            if let Some(w) = Self::window(windows, subject, opd, now) {
                return self.suppress(&w.clone(), subject, opd, &text, at);
            }
            let key = super::incident::incident_key(subject, problem);
            let evidence = match step {
                Some(s) if !s.evidence.is_empty() => s.evidence.clone(),
                _ => m.last().cloned().into_iter().collect(),
            };
            let mut affected = BTreeSet::new();
            if let Subject::Device { device } = subject {
                for d in tracker.descendants(device) {
                    if tracker.health(&Subject::device(d.clone())) == Health::Unreachable {
                        affected.insert(d);
                    }
                }
            }
            let incident = Incident {
                key: key.clone(),
                subject: subject.clone(),
                opd: opd.to_string(),
                problem,
                sentence: text,
                sentence_id: self.sentence(&reason, crate::sop::Lang::Id),
                reason: Some(reason),
                opened_at: at,
                recovered_at: None,
                occurrences: 1,
                affected,
                flapping,
                flapped: flapping,
                unconfirmed: false,
                closing: false,
            };
            self.open.insert(key.clone(), incident.clone());
            out.push(Decision::Open { incident, evidence });
            if flapping {
                // Opened for flapping: said like a flapping that starts on
                // an open ticket, so the ticket and the events show it.
                out.push(Decision::Flapping {
                    key,
                    flapping: true,
                    pct: m.flap_pct(),
                    at,
                });
            }
            return out;
        }

        // Healthy (or only degraded below the problem line): recover.
        if let Some(key) = existing
            && let Some(i) = self.open.get_mut(&key)
        {
            if i.flapping {
                i.flapping = false;
                out.push(Decision::Flapping {
                    key: key.clone(),
                    flapping: false,
                    pct: m.flap_pct(),
                    at,
                });
            }
            if health == Health::Up && i.recovered_at.is_none() {
                i.recovered_at = Some(at);
                out.push(Decision::Recovered {
                    key: key.clone(),
                    at,
                    cause: m.last().cloned(),
                });
            }
            if health == Health::Up && i.recovered_at.is_some() && !i.closing {
                let stable_for = m.stable_for().unwrap_or(0);
                let close_after =
                    i64::try_from(tracker.rules().flap.close_after.as_micros()).unwrap_or(i64::MAX);
                let reason = if i.unconfirmed && i.occurrences == 1 {
                    Some(CloseReason::NotConfirmedByPolling)
                } else if i.flapped && close_after > 0 && stable_for >= close_after {
                    Some(CloseReason::StableAfterFlapping)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    i.closing = true;
                    out.push(Decision::Close {
                        key,
                        reason,
                        stable_for,
                        at,
                    });
                }
            }
        }
        out
    }

    /// A poll contradicted the linkDown trap of `subject`: its open,
    /// unrecovered incident is marked not confirmed by polling.
    pub fn contradicted(&mut self, subject: &Subject, at: TsUs) -> Vec<Decision> {
        let Some(key) = self
            .for_subject(subject)
            .filter(|i| i.recovered_at.is_none() && i.problem == Problem::OperDown)
            .map(|i| i.key.clone())
        else {
            return Vec::new();
        };
        let Some(i) = self.open.get_mut(&key) else {
            return Vec::new();
        };
        i.unconfirmed = true;
        vec![Decision::Unconfirmed {
            key,
            device: subject.device_id().unwrap_or_default().to_string(),
            at,
        }]
    }

    /// The agent of `opd` went silent at `since` (noticed at `now`).
    pub fn agent_silent(
        &mut self,
        tracker: &Tracker,
        opd: &str,
        since: TsUs,
        windows: &[MaintenanceWindow],
        now: TsUs,
    ) -> Vec<Decision> {
        let subject = Subject::Opd {
            opd: opd.to_string(),
        };
        let key = incident_key(&subject, Problem::AgentUnreachable);
        // An agent enrolled but never heard has no last heartbeat to name.
        let reason = if tracker.ever_heard(opd) {
            Reason::AgentSilent {
                opd: opd.to_string(),
                since: Some(since),
            }
        } else {
            Reason::AgentNeverConnected {
                opd: opd.to_string(),
                watched_since: since,
            }
        };
        let text = self.sentence(&reason, crate::sop::Lang::En);
        if let Some(i) = self.open.get_mut(&key) {
            if i.recovered_at.take().is_some() {
                i.occurrences += 1;
                return vec![Decision::Attach {
                    key,
                    at: now,
                    occurrences: i.occurrences,
                    evidence: Vec::new(),
                }];
            }
            return Vec::new();
        }
        if let Some(w) = Self::window(windows, &subject, opd, now) {
            return self.suppress(&w.clone(), &subject, opd, &text, now);
        }
        let affected = tracker
            .topology()
            .devices
            .iter()
            .filter(|(_, d)| d.opd == opd)
            .map(|(id, _)| id.clone())
            .collect();
        let incident = Incident {
            key: key.clone(),
            subject,
            opd: opd.to_string(),
            problem: Problem::AgentUnreachable,
            sentence_id: self.sentence(&reason, crate::sop::Lang::Id),
            sentence: text,
            reason: Some(reason),
            opened_at: now,
            recovered_at: None,
            occurrences: 1,
            affected,
            flapping: false,
            flapped: false,
            unconfirmed: false,
            closing: false,
        };
        self.open.insert(key, incident.clone());
        vec![Decision::Open {
            incident,
            evidence: Vec::new(),
        }]
    }

    /// The agent of `opd` is back at `at`.
    pub fn agent_back(&mut self, opd: &str, at: TsUs) -> Vec<Decision> {
        let key = incident_key(
            &Subject::Opd {
                opd: opd.to_string(),
            },
            Problem::AgentUnreachable,
        );
        match self.open.get_mut(&key) {
            Some(i) if i.recovered_at.is_none() => {
                i.recovered_at = Some(at);
                vec![Decision::Recovered {
                    key,
                    at,
                    cause: None,
                }]
            }
            _ => Vec::new(),
        }
    }

    /// Readings the agent of `opd` replayed from the time it was cut off.
    pub fn replayed(&mut self, opd: &str, readings: Vec<Reading>) -> Vec<Decision> {
        let key = incident_key(
            &Subject::Opd {
                opd: opd.to_string(),
            },
            Problem::AgentUnreachable,
        );
        if readings.is_empty() || !self.open.contains_key(&key) {
            return Vec::new();
        }
        vec![Decision::Evidence {
            key,
            evidence: readings,
        }]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;

    const SEC: i64 = 1_000_000;
    // 2026-11-23 is a Monday; 15:00 UTC = 22:00 WIB.
    const MON_15_UTC: i64 = 1_795_446_000 * SEC;

    fn weekly(days: &[&str], start: &str, dur: u64) -> Schedule {
        Schedule::Weekly {
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            duration_s: dur,
            utc_offset_minutes: 420,
        }
    }

    #[test]
    fn monday_constant_is_a_monday_22_wib() {
        let t = DateTime::from_timestamp_micros(MON_15_UTC).unwrap();
        assert_eq!(t.format("%a %H:%M").to_string(), "Mon 15:00");
    }

    #[test_case(weekly(&["mon"], "22:00", 7200), 0 => true; "at start")]
    #[test_case(weekly(&["mon"], "22:00", 7200), -1 => false; "just before")]
    #[test_case(weekly(&["mon"], "22:00", 7200), 7199 => true; "last second, past midnight")]
    #[test_case(weekly(&["mon"], "22:00", 7200), 7200 => false; "end is exclusive")]
    #[test_case(weekly(&["tue"], "22:00", 7200), 0 => false; "other day")]
    #[test_case(weekly(&["sun"], "23:00", 86_400), 0 => true; "long window from yesterday")]
    #[test_case(weekly(&["mon"], "22:00", 7200), 7 * 86_400 => true; "next week")]
    #[test_case(Schedule::Once { start_us: MON_15_UTC, end_us: MON_15_UTC + 60 * SEC }, 30 => true; "once inside")]
    #[test_case(Schedule::Once { start_us: MON_15_UTC, end_us: MON_15_UTC + 60 * SEC }, 60 => false; "once after")]
    fn schedule_active(s: Schedule, offset_s: i64) -> bool {
        s.active(MON_15_UTC + offset_s * SEC)
    }

    #[test_case(weekly(&[], "22:00", 60) => Some("a weekly window needs at least one day".to_string()); "no days")]
    #[test_case(weekly(&["mnd"], "22:00", 60) => Some("unknown day \"mnd\" (use mon, tue, … sun)".to_string()); "bad day")]
    #[test_case(weekly(&["mon"], "25:00", 60) => Some("start \"25:00\" is not HH:MM".to_string()); "bad time")]
    #[test_case(weekly(&["mon"], "22:00", 0) => Some("duration must be between 1 s and 7 days".to_string()); "zero length")]
    #[test_case(Schedule::Once { start_us: 5, end_us: 5 } => Some("the window ends before it starts".to_string()); "empty once")]
    #[test_case(weekly(&["Mon", "fri"], "08:30", 60) => None; "fine")]
    fn schedule_validate(s: Schedule) -> Option<String> {
        s.validate().err().map(|e| e.0)
    }

    #[test_case(Scope::Opd { opd: "dinkes".into() }, Subject::link("dinkes-rtr", "uplink") => true; "opd covers links")]
    #[test_case(Scope::Opd { opd: "bappeda".into() }, Subject::device("dinkes-rtr") => false; "other opd")]
    #[test_case(Scope::Device { device: "dinkes-rtr".into() }, Subject::link("dinkes-rtr", "uplink") => true; "device covers its links")]
    #[test_case(Scope::Device { device: "dinkes-rtr".into() }, Subject::device("dinkes-sw1") => false; "not the children")]
    #[test_case(Scope::Link { device: "dinkes-rtr".into(), link: "uplink".into() }, Subject::device("dinkes-rtr") => false; "link does not cover device")]
    #[test_case(Scope::Link { device: "dinkes-rtr".into(), link: "uplink".into() }, Subject::link("dinkes-rtr", "uplink") => true; "link itself")]
    fn scope_covers(scope: Scope, s: Subject) -> bool {
        scope.covers(&s, "dinkes")
    }
}
