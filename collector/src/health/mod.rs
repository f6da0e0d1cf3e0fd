//! Health engine: per-device and per-link state machines, rules, flap
//! detection, and the incidents they open.
//!
//! [`Engine`] is fed every sample, heartbeat and a clock tick; it returns the
//! state changes (for the event list) and the incident decisions (for tickets).

pub mod incident;
pub mod reason;
pub mod rules;
pub mod state;

pub use incident::{
    CloseReason, Decision, Incident, IncidentBook, MaintenanceWindow, Schedule, Scope,
};
pub use reason::Reason;
pub use rules::{HealthRules, Level};
pub use state::{
    Health, Problem, RawSample, Reading, Resource, StateChange, Subject, Topology, Tracker, TsUs,
};

use siaga_proto::v1::Sample;

/// What one input produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Visible state changes, in order.
    pub changes: Vec<StateChange>,
    /// Incident decisions, in order.
    pub decisions: Vec<Decision>,
}

impl Output {
    /// `other`'s changes and decisions after these.
    pub(crate) fn extend(&mut self, other: Output) {
        self.changes.extend(other.changes);
        self.decisions.extend(other.decisions);
    }
}

/// The health engine: state machines plus the incident book.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    tracker: Tracker,
    book: IncidentBook,
    windows: Vec<MaintenanceWindow>,
}

impl Engine {
    /// An engine with no history.
    pub fn new(rules: HealthRules, topo: Topology) -> Self {
        Self {
            tracker: Tracker::new(rules, topo),
            book: IncidentBook::default(),
            windows: Vec::new(),
        }
    }

    /// Restores the open incidents (after a restart); their sentences
    /// write moments in `zone`.
    pub fn restore(
        &mut self,
        incidents: impl IntoIterator<Item = Incident>,
        zone: crate::sop::calendar::Zone,
    ) {
        self.book = IncidentBook::restore(incidents, zone);
    }

    /// Replaces the maintenance windows.
    pub fn set_windows(&mut self, windows: Vec<MaintenanceWindow>) {
        self.windows = windows;
    }

    /// The maintenance windows in force.
    pub fn windows(&self) -> &[MaintenanceWindow] {
        &self.windows
    }

    /// Applies a new inventory.
    pub fn set_topology(&mut self, topo: Topology) {
        self.tracker.set_topology(topo);
    }

    /// The state machines.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The open incidents.
    pub fn book(&self) -> &IncidentBook {
        &self.book
    }

    /// People closed the ticket of this incident.
    pub fn close(&mut self, key: &str) -> Option<Incident> {
        self.book.close(key)
    }

    /// A sample from the agent of `opd`, received at collector time `now`.
    pub fn sample(&mut self, opd: &str, s: &Sample, now: TsUs) -> Output {
        let up = self.tracker.sample(opd, s, now);
        let mut out = self.returned(&up.returned);
        out.changes.extend(up.changes);
        for (subject, at) in &up.contradicted {
            out.decisions.extend(self.book.contradicted(subject, *at));
        }
        if self.tracker.in_past_silence(opd, s.ts_us).is_some() {
            // Seen while cut off: evidence for the agent's incident; the
            // subjects are judged again on live readings and ticks.
            let readings = up
                .touched
                .iter()
                .filter_map(|t| self.tracker.machine(t).and_then(|m| m.last().cloned()))
                .collect();
            out.decisions.extend(self.book.replayed(opd, readings));
            return out;
        }
        let mut seen: Vec<&Subject> = Vec::new();
        for subject in up
            .touched
            .iter()
            .chain(out.changes.iter().map(|c| &c.subject))
        {
            if seen.contains(&subject) {
                continue;
            }
            seen.push(subject);
            let step = up
                .steps
                .iter()
                .find(|(s, _)| s == subject)
                .map(|(_, st)| st);
            let d = self
                .book
                .evaluate(&self.tracker, subject, step, &self.windows, now);
            out.decisions.extend(d);
        }
        out
    }

    /// Watches the agents of these OPDs for silence from collector time
    /// `now`, each with the time it was last heard (`None`: never), even if
    /// it never speaks to this process; see [`Tracker::watch`].
    pub fn watch_agents(
        &mut self,
        agents: impl IntoIterator<Item = (String, Option<TsUs>)>,
        now: TsUs,
        grace_us: i64,
    ) {
        for (opd, last_heard) in agents {
            self.tracker.watch(&opd, last_heard, now, grace_us);
        }
    }

    /// This engine judges `opd` from now on, another one did until now:
    /// its open incidents are `incidents` (the store's), and its agent is
    /// watched afresh from `now` (heard last at `last_heard`), with `grace_us`
    /// for the agent to reach this collector. Its subjects' machines start
    /// over from `seed`, the states the other engine published (see
    /// [`Tracker::seed_opd`]): what they held here is older than that.
    pub fn adopt_opd(
        &mut self,
        opd: &str,
        incidents: impl IntoIterator<Item = Incident>,
        seed: impl IntoIterator<Item = (Subject, Health, TsUs)>,
        last_heard: Option<TsUs>,
        now: TsUs,
        grace_us: i64,
    ) {
        self.book.replace_opd(opd, incidents);
        self.tracker.seed_opd(opd, seed);
        self.tracker.unwatch(opd);
        self.tracker.watch(opd, last_heard, now, grace_us);
    }

    /// Another engine judges `opd` from now on: its agent is not watched here.
    pub fn release_opd(&mut self, opd: &str) {
        self.tracker.unwatch(opd);
    }

    /// A heartbeat from the agent of `opd` at collector time `now`.
    pub fn heartbeat(&mut self, opd: &str, now: TsUs) -> Output {
        let up = self.tracker.heartbeat(opd, now);
        let mut out = self.returned(&up.returned);
        out.changes.extend(up.changes);
        out
    }

    fn returned(&mut self, returned: &[(String, TsUs, TsUs)]) -> Output {
        let mut out = Output::default();
        for (opd, _since, back) in returned {
            out.decisions.extend(self.book.agent_back(opd, *back));
        }
        out
    }

    /// The clock: agents' silence, maintenance windows that ended, faults
    /// that waited for an ancestor. Call about once a second.
    pub fn tick(&mut self, now: TsUs) -> Output {
        let up = self.tracker.tick(now);
        let mut out = Output {
            changes: up.changes,
            decisions: Vec::new(),
        };
        for (opd, since) in &up.silenced {
            let d = self
                .book
                .agent_silent(&self.tracker, opd, *since, &self.windows, now);
            out.decisions.extend(d);
        }
        let mut rest = Output::default();
        for subject in self.tracker.subjects() {
            let replayed = self
                .tracker
                .machine(&subject)
                .and_then(|m| m.last())
                .is_some_and(|r| {
                    self.tracker
                        .topology()
                        .opd_of(&subject)
                        .is_some_and(|o| self.tracker.in_past_silence(o, r.at).is_some())
                });
            if replayed {
                continue;
            }
            let d = self
                .book
                .evaluate(&self.tracker, &subject, None, &self.windows, now);
            rest.decisions.extend(d);
        }
        out.extend(rest);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::incident::Decision as D;
    use super::state::tests::{SEC, icmp, iface, topo, trap};
    use super::*;
    use test_case::test_case;

    fn engine() -> Engine {
        Engine::new(HealthRules::default(), topo())
    }

    fn opens(out: &[Decision]) -> Vec<&Incident> {
        out.iter()
            .filter_map(|d| match d {
                D::Open { incident, .. } => Some(incident),
                _ => None,
            })
            .collect()
    }

    /// Every device of dinkes answers cleanly for `cycles` cycles from `t0`.
    fn healthy(e: &mut Engine, from: i64, cycles: i64, all: &mut Vec<Decision>) {
        for c in from..from + cycles {
            let t = c * 10 * SEC;
            for d in ["dinkes-core", "dinkes-rtr", "dinkes-sw1", "dinkes-sw2"] {
                all.extend(e.sample("dinkes", &icmp(d, t, 0.0), t).decisions);
            }
            all.extend(e.sample("dinkes", &iface("dinkes-rtr", t, 1), t).decisions);
            all.extend(e.tick(t).decisions);
        }
    }

    /// An SNMP poll of `device` at `t` that tells its own health.
    fn resources(device: &str, t: i64, h: siaga_proto::v1::DeviceHealth) -> Sample {
        Sample {
            seq: t as u64,
            ts_us: t,
            device: device.into(),
            kind: Some(siaga_proto::v1::sample::Kind::Snmp(
                siaga_proto::v1::SnmpResult {
                    status: siaga_proto::v1::SnmpStatus::Ok as i32,
                    health: Some(h),
                    ..Default::default()
                },
            )),
        }
    }

    fn cpu(pct: f64) -> siaga_proto::v1::DeviceHealth {
        siaga_proto::v1::DeviceHealth {
            cpu_pct: Some(pct),
            cpu_source: "host-resources".into(),
            ..Default::default()
        }
    }

    /// Polls `device` once a minute from minute `from` for `minutes`.
    fn polls(
        e: &mut Engine,
        device: &str,
        from: i64,
        minutes: i64,
        h: &siaga_proto::v1::DeviceHealth,
        all: &mut Vec<Decision>,
    ) {
        for m in from..from + minutes {
            let t = m * 60 * SEC;
            all.extend(
                e.sample("dinkes", &resources(device, t, h.clone()), t)
                    .decisions,
            );
            all.extend(e.tick(t + SEC).decisions);
        }
    }

    #[test]
    fn cpu_above_90_for_five_minutes_opens_one_cpu_ticket_and_recovers() {
        let mut e = engine();
        let mut all = Vec::new();
        polls(&mut e, "dinkes-sw1", 0, 3, &cpu(10.0), &mut all);
        // Busy for four minutes (readings at 3..=7 min span 4): soft only.
        polls(&mut e, "dinkes-sw1", 3, 5, &cpu(97.0), &mut all);
        assert!(opens(&all).is_empty(), "{all:#?}");
        // The reading five minutes after the first busy one makes it hard.
        polls(&mut e, "dinkes-sw1", 8, 4, &cpu(97.0), &mut all);
        let o = opens(&all);
        assert_eq!(o.len(), 1, "{all:#?}");
        assert_eq!(o[0].key, "device:dinkes-sw1:cpu");
        assert_eq!(o[0].problem, Problem::Cpu);
        assert_eq!(o[0].opened_at, 8 * 60 * SEC);
        assert_eq!(o[0].sentence, "CPU of dinkes-sw1 at 97 % (threshold 90 %)");
        let evidence = all
            .iter()
            .find_map(|d| match d {
                D::Open { evidence, .. } => Some(evidence),
                _ => None,
            })
            .unwrap();
        assert!(evidence.len() >= 5, "the whole busy span: {evidence:#?}");
        assert!(evidence.iter().all(|r| r.findings[0].value == 97.0));
        // Reachability is another state: the device itself is not degraded.
        assert_ne!(
            e.tracker().health(&Subject::device("dinkes-sw1")),
            Health::Degraded
        );
        let mut after = Vec::new();
        polls(&mut e, "dinkes-sw1", 12, 4, &cpu(10.0), &mut after);
        assert!(opens(&after).is_empty());
        let rec = after
            .iter()
            .filter(|d| matches!(d, D::Recovered { key, .. } if key == "device:dinkes-sw1:cpu"))
            .count();
        assert_eq!(rec, 1, "{after:#?}");
    }

    #[test]
    fn a_cpu_ticket_is_not_confused_with_reachability() {
        let mut e = engine();
        let mut all = Vec::new();
        polls(&mut e, "dinkes-sw1", 0, 8, &cpu(99.0), &mut all);
        assert_eq!(opens(&all).len(), 1);
        // Loss on the busy device: a loss ticket of its own.
        for c in 0..3 {
            let t = 8 * 60 * SEC + c * 10 * SEC;
            all.extend(
                e.sample("dinkes", &icmp("dinkes-sw1", t, 40.0), t)
                    .decisions,
            );
        }
        let keys: Vec<&str> = opens(&all).iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["device:dinkes-sw1:cpu", "device:dinkes-sw1:loss"]);
        assert_eq!(
            e.book().get("device:dinkes-sw1:cpu").unwrap().occurrences,
            1
        );
    }

    #[test_case(Some(55.0), 60.0, Some("Temperature of dinkes-sw1 at 60 °C (the device's own threshold 55 °C)") ; "above its own threshold")]
    #[test_case(None, 60.0, None ; "below the default without a threshold")]
    #[test_case(None, 75.0, Some("Temperature of dinkes-sw1 at 75 °C (threshold 70 °C)") ; "above the default")]
    #[test_case(Some(80.0), 75.0, None ; "its own threshold wins over the default")]
    fn temperature_against_the_device_threshold_or_70(
        own: Option<f64>,
        c: f64,
        want: Option<&str>,
    ) {
        let mut e = engine();
        let mut all = Vec::new();
        let h = siaga_proto::v1::DeviceHealth {
            temp_c: Some(c),
            temp_threshold_c: own,
            temp_source: "huawei".into(),
            ..Default::default()
        };
        polls(&mut e, "dinkes-sw1", 0, 5, &h, &mut all);
        let o = opens(&all);
        assert_eq!(o.first().map(|i| i.sentence.as_str()), want, "{all:#?}");
        assert!(o.len() <= 1);
    }

    #[test]
    fn forty_percent_loss_opens_one_incident_then_recovers() {
        let mut e = engine();
        let mut all = Vec::new();
        healthy(&mut e, 0, 3, &mut all);
        assert!(all.is_empty());
        for c in 3..10 {
            let t = c * 10 * SEC;
            all.extend(
                e.sample("dinkes", &icmp("dinkes-sw1", t, 40.0), t)
                    .decisions,
            );
            all.extend(e.tick(t + SEC).decisions);
        }
        let o = opens(&all);
        assert_eq!(o.len(), 1, "{all:#?}");
        assert_eq!(
            o[0].sentence,
            "Packet loss 40 % on dinkes-sw1 (threshold 20 %)"
        );
        assert_eq!(o[0].key, "device:dinkes-sw1:loss");
        // Opened on the second bad cycle (hysteresis 2).
        assert_eq!(o[0].opened_at, 40 * SEC);
        let mut after = Vec::new();
        healthy(&mut e, 10, 4, &mut after);
        let rec: Vec<_> = after
            .iter()
            .filter(|d| matches!(d, D::Recovered { key, .. } if key == "device:dinkes-sw1:loss"))
            .collect();
        assert_eq!(rec.len(), 1, "{after:#?}");
        assert!(opens(&after).is_empty());
        assert_eq!(
            e.book().get("device:dinkes-sw1:loss").unwrap().recovered_at,
            Some(120 * SEC)
        );
    }

    /// Another engine judged dinkes and published sw1 down, the rest up;
    /// this one held it long ago (sw1 up then) and takes it over.
    #[test]
    fn an_opd_taken_over_starts_from_the_states_published_for_it() {
        let mut e = engine();
        let mut all = Vec::new();
        healthy(&mut e, 0, 3, &mut all);
        let sw1 = Subject::device("dinkes-sw1");
        let seed = [
            (Subject::device("dinkes-core"), Health::Up, 50 * SEC),
            (Subject::device("dinkes-rtr"), Health::Up, 50 * SEC),
            (sw1.clone(), Health::Down, 60 * SEC),
            (Subject::device("dinkes-sw2"), Health::Up, 50 * SEC),
            // Another OPD's row is not this OPD's to seed.
            (Subject::device("bappeda-rtr"), Health::Down, 60 * SEC),
        ];
        e.adopt_opd("dinkes", Vec::new(), seed, None, 100 * SEC, 0);
        let m = e.tracker().machine(&sw1).unwrap();
        assert_eq!((m.hard(), m.since()), (Some(Level::Down), 60 * SEC));
        assert_eq!(e.tracker().health(&sw1), Health::Down);
        assert_eq!(
            e.tracker().health(&Subject::device("bappeda-rtr")),
            Health::Unknown
        );
        // sw1 answers again: a change from down, as the other engine left it.
        let mut changes = Vec::new();
        for c in 10..14 {
            let t = 100 * SEC + c * SEC;
            changes.extend(e.sample("dinkes", &icmp("dinkes-sw1", t, 0.0), t).changes);
        }
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!((changes[0].from, changes[0].to), (Health::Down, Health::Up));
        // The agent goes silent: every subject seeded changes to unknown.
        let silent: Vec<StateChange> = (200..260).flat_map(|t| e.tick(t * SEC).changes).collect();
        assert!(
            silent
                .iter()
                .any(|c| c.subject == Subject::device("dinkes-rtr") && c.from == Health::Up),
            "{silent:#?}"
        );
    }

    #[test]
    fn a_problem_back_while_the_ticket_is_open_attaches_and_counts() {
        let mut e = engine();
        let mut all = Vec::new();
        healthy(&mut e, 0, 3, &mut all);
        for round in 0..3 {
            let base = 3 + round * 6;
            for c in base..base + 2 {
                let t = c * 10 * SEC;
                all.extend(
                    e.sample("dinkes", &icmp("dinkes-sw1", t, 40.0), t)
                        .decisions,
                );
            }
            healthy(&mut e, base + 2, 4, &mut all);
        }
        assert_eq!(opens(&all).len(), 1);
        let inc = e.book().get("device:dinkes-sw1:loss").unwrap();
        assert_eq!(inc.occurrences, 3);
        let attaches = all.iter().filter(|d| matches!(d, D::Attach { .. })).count();
        assert_eq!(attaches, 2);
        // People close the ticket: the next fault opens a new incident.
        e.close("device:dinkes-sw1:loss");
        let mut again = Vec::new();
        for c in 40..42 {
            let t = c * 10 * SEC;
            again.extend(
                e.sample("dinkes", &icmp("dinkes-sw1", t, 40.0), t)
                    .decisions,
            );
        }
        assert_eq!(opens(&again).len(), 1);
    }

    #[test]
    fn router_down_is_one_incident_with_both_switches_affected() {
        let mut e = engine();
        let mut all = Vec::new();
        healthy(&mut e, 0, 3, &mut all);
        for c in 3..8 {
            let t = c * 10 * SEC;
            // The switches report first, as they may in a batch.
            for d in ["dinkes-sw1", "dinkes-sw2", "dinkes-rtr"] {
                all.extend(e.sample("dinkes", &icmp(d, t, 100.0), t).decisions);
            }
            all.extend(
                e.sample("dinkes", &icmp("dinkes-core", t, 0.0), t)
                    .decisions,
            );
            all.extend(e.tick(t + SEC).decisions);
        }
        let o = opens(&all);
        assert_eq!(o.len(), 1, "{all:#?}");
        assert_eq!(o[0].subject, Subject::device("dinkes-rtr"));
        assert_eq!(
            o[0].sentence,
            "No reply from dinkes-rtr: packet loss 100 % (threshold 100 %)"
        );
        let inc = e.book().get("device:dinkes-rtr:loss").unwrap();
        assert_eq!(
            inc.affected.iter().map(String::as_str).collect::<Vec<_>>(),
            ["dinkes-sw1", "dinkes-sw2"]
        );
        for sw in ["dinkes-sw1", "dinkes-sw2"] {
            assert_eq!(
                e.tracker().health(&Subject::device(sw)),
                Health::Unreachable
            );
        }
    }

    #[test]
    fn a_flapping_link_is_one_incident_and_its_recovery_is_recorded() {
        let mut e = engine();
        let mut all = Vec::new();
        healthy(&mut e, 0, 3, &mut all);
        let mut t = 30 * SEC;
        // 20 down/up toggles in two minutes, traps plus polls in between.
        for i in 0..20 {
            t += 3 * SEC;
            all.extend(
                e.sample("dinkes", &trap("dinkes-rtr", t, "link_down"), t)
                    .decisions,
            );
            if i % 2 == 0 {
                all.extend(
                    e.sample("dinkes", &iface("dinkes-rtr", t + 1, 2), t + 1)
                        .decisions,
                );
            }
            t += 3 * SEC;
            all.extend(
                e.sample("dinkes", &trap("dinkes-rtr", t, "link_up"), t)
                    .decisions,
            );
            all.extend(
                e.sample("dinkes", &iface("dinkes-rtr", t + 1, 1), t + 1)
                    .decisions,
            );
            all.extend(e.tick(t + 2).decisions);
        }
        let o = opens(&all);
        assert_eq!(o.len(), 1, "{:#?}", o);
        let key = o[0].key.clone();
        assert_eq!(key, "link:dinkes-rtr/uplink:oper_down");
        assert!(e.book().get(&key).unwrap().flapping);
        assert!(
            all.iter()
                .any(|d| matches!(d, D::Flapping { flapping: true, .. }))
        );
        // While flapping no recovery was sent.
        assert!(!all.iter().any(|d| matches!(d, D::Recovered { .. })));
        // It settles: stable polls until the flap percentage falls.
        let mut after = Vec::new();
        for _ in 0..25 {
            t += 5 * SEC;
            after.extend(e.sample("dinkes", &iface("dinkes-rtr", t, 1), t).decisions);
            after.extend(e.tick(t + 1).decisions);
        }
        assert!(opens(&after).is_empty());
        assert!(after.iter().any(|d| matches!(
            d,
            D::Flapping {
                flapping: false,
                ..
            }
        )));
        let rec = after
            .iter()
            .filter(|d| matches!(d, D::Recovered { key: k, .. } if *k == key))
            .count();
        assert_eq!(rec, 1, "{after:#?}");
        assert!(e.book().get(&key).unwrap().recovered_at.is_some());
    }

    /// A poll of the router's uplink port (eth0): admin and oper status.
    fn port(t: i64, admin: u32, oper: u32) -> siaga_proto::v1::Sample {
        let mut s = iface("dinkes-rtr", t, oper);
        if let Some(siaga_proto::v1::sample::Kind::Snmp(sn)) = &mut s.kind {
            sn.interfaces[0].admin_status = admin;
        }
        s
    }

    /// Feeds the uplink's raw results from `t0` on, one every `step_s`
    /// seconds, with a clock tick after each: `u` a poll finds it up, `d`
    /// a poll finds it down (admin up, oper down: a cut cable), `x` a poll
    /// finds it switched off (admin and oper down: `ip link set … down`),
    /// `T` a linkDown trap, `t` a linkUp trap, `.` nothing (the clock only).
    /// Returns the decisions and the time after the last.
    fn feed_link(e: &mut Engine, t0: i64, step_s: i64, seq: &str) -> (Vec<Decision>, i64) {
        let mut all = Vec::new();
        let mut t = t0;
        for c in seq.chars() {
            let s = match c {
                'u' => Some(port(t, 1, 1)),
                'd' => Some(port(t, 1, 2)),
                'x' => Some(port(t, 2, 2)),
                'T' => Some(trap("dinkes-rtr", t, "link_down")),
                't' => Some(trap("dinkes-rtr", t, "link_up")),
                _ => None,
            };
            let mut out = Vec::new();
            if let Some(s) = s {
                out.extend(e.sample("dinkes", &s, t).decisions);
            }
            out.extend(e.tick(t + 1).decisions);
            // The health task closes the ticket (nobody acted on it yet)
            // and releases the incident.
            for d in &out {
                if let D::Close { key, .. } = d {
                    e.close(key);
                }
            }
            all.extend(out);
            t += step_s * SEC;
        }
        (all, t)
    }

    fn closes(all: &[Decision]) -> Vec<(String, CloseReason)> {
        all.iter()
            .filter_map(|d| match d {
                D::Close { key, reason, .. } => Some((key.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    fn flaps(all: &[Decision], on: bool) -> usize {
        all.iter()
            .filter(|d| matches!(d, D::Flapping { flapping, .. } if *flapping == on))
            .count()
    }

    /// The link went down for 8 s and up for 8 s, eight times in a row,
    /// polled every 10 s: the polls read down, down, up, down, up, down,
    /// down, up … (the order found in the lab). Switched off with
    /// `ip link set … down` (admin down too: no fault by itself) the old
    /// engine saw no change at all; cut (admin up) it saw a fault. Either
    /// way it is one flapping ticket within a few minutes, closed once the
    /// link has stayed up for `close_after`.
    #[test_case('x', "link:dinkes-rtr/uplink:flapping"; "port switched off and on")]
    #[test_case('d', "link:dinkes-rtr/uplink:oper_down"; "cable cut and mended")]
    fn the_found_link_flapping_faster_than_its_polls_is_one_ticket_closed_once_stable(
        down: char,
        key: &str,
    ) {
        let mut rules = HealthRules::default();
        rules.flap.close_after = std::time::Duration::from_secs(10 * 60);
        let mut e = Engine::new(rules, topo());
        let (quiet, t) = feed_link(&mut e, 0, 10, "uuuu");
        assert!(quiet.is_empty(), "{quiet:#?}");
        let found = "ddudududduduu".replace('d', &down.to_string());
        let flapping_from = t;
        let (all, t) = feed_link(&mut e, t, 10, &found);
        let o = opens(&all);
        assert_eq!(o.len(), 1, "one ticket: {all:#?}");
        assert_eq!(o[0].key, key);
        assert!(
            o[0].opened_at - flapping_from <= 3 * 60 * SEC,
            "within a few minutes"
        );
        let inc = e.book().get(key).unwrap();
        assert!(inc.flapping && inc.flapped, "{inc:#?}");
        assert_eq!(flaps(&all, true), 1, "one flapping event: {all:#?}");
        assert!(closes(&all).is_empty());
        // Up from now on: it settles, recovers, and 10 minutes of stable
        // polls later the ticket is closed, once.
        let (settle, t) = feed_link(&mut e, t, 10, &"u".repeat(30));
        assert!(opens(&settle).is_empty(), "{settle:#?}");
        assert_eq!(flaps(&settle, false), 1, "{settle:#?}");
        assert!(
            settle
                .iter()
                .any(|d| matches!(d, D::Recovered { key: k, .. } if k == key))
        );
        assert!(closes(&settle).is_empty(), "not stable long enough yet");
        let (stable, _) = feed_link(&mut e, t, 10, &"u".repeat(40));
        assert_eq!(
            closes(&stable),
            [(key.to_string(), CloseReason::StableAfterFlapping)],
            "{stable:#?}"
        );
        assert!(opens(&stable).is_empty());
    }

    #[test]
    fn traps_between_polls_count_as_raw_results() {
        let mut e = engine();
        let (_, t) = feed_link(&mut e, 0, 10, "uuuu");
        // Polls a minute apart all find the link up; the switch's traps
        // show it bouncing every 5 s in between.
        let minute = format!("u{}", "TtTtTt.....");
        let (all, _) = feed_link(&mut e, t, 5, &minute.repeat(4));
        let o = opens(&all);
        assert_eq!(o.len(), 1, "{all:#?}");
        assert_eq!(o[0].key, "link:dinkes-rtr/uplink:oper_down");
        assert!(e.book().get(&o[0].key).unwrap().flapping, "{all:#?}");
        assert_eq!(e.tracker().unconfirmed_traps().len(), 0);
    }

    /// A linkDown trap acts at once; the next poll confirms it or, the
    /// link up with no linkUp since, contradicts it.
    #[test_case("uuuT", 1, 0, 0; "trap alone opens at once")]
    #[test_case("uuuTu", 1, 1, 1; "next poll finds the link up: not confirmed, closed")]
    #[test_case("uuuTdd", 1, 0, 0; "next poll finds it down: confirmed")]
    #[test_case("uuuTtu", 1, 0, 0; "a linkUp came: no contradiction")]
    #[test_case("uuuTuuuTu", 2, 2, 2; "a replayed trap later: a new short ticket")]
    fn a_link_down_trap_the_next_poll_contradicts(
        seq: &str,
        opened: usize,
        unconfirmed: u64,
        closed: usize,
    ) {
        let mut e = engine();
        let (all, _) = feed_link(&mut e, 0, 10, seq);
        assert_eq!(opens(&all).len(), opened, "{all:#?}");
        let c = closes(&all);
        assert_eq!(c.len(), closed, "{all:#?}");
        assert!(
            c.iter()
                .all(|(_, r)| *r == CloseReason::NotConfirmedByPolling)
        );
        let n = all
            .iter()
            .filter(|d| matches!(d, D::Unconfirmed { device, .. } if device == "dinkes-rtr"))
            .count();
        assert_eq!(n as u64, unconfirmed, "{all:#?}");
        assert_eq!(
            e.tracker()
                .unconfirmed_traps()
                .get("dinkes-rtr")
                .copied()
                .unwrap_or(0),
            unconfirmed
        );
        if closed > 0 {
            // Recovered at once, by the contradicting poll.
            let rec = all
                .iter()
                .filter(|d| matches!(d, D::Recovered { .. }))
                .count();
            assert_eq!(rec, closed, "{all:#?}");
        }
    }

    #[test]
    fn inside_a_maintenance_window_no_incident_and_an_event_says_why() {
        let mut e = engine();
        e.set_windows(vec![MaintenanceWindow {
            id: 7,
            scope: Scope::Device {
                device: "dinkes-sw1".into(),
            },
            schedule: Schedule::Once {
                start_us: 0,
                end_us: 100 * SEC,
            },
            reason: "ganti switch".into(),
            created_by: "budi".into(),
        }]);
        let mut all = Vec::new();
        healthy(&mut e, 0, 3, &mut all);
        for c in 3..9 {
            let t = c * 10 * SEC;
            all.extend(
                e.sample("dinkes", &icmp("dinkes-sw1", t, 40.0), t)
                    .decisions,
            );
            all.extend(e.tick(t).decisions);
        }
        assert!(opens(&all).is_empty());
        let sup: Vec<_> = all
            .iter()
            .filter_map(|d| match d {
                D::Suppressed { reason, window, .. } => Some((reason.clone(), *window)),
                _ => None,
            })
            .collect();
        assert_eq!(sup.len(), 1, "announced once: {sup:?}");
        assert_eq!(
            sup[0].0,
            "Packet loss 40 % on dinkes-sw1 (threshold 20 %); no ticket: inside maintenance window 7: ganti switch"
        );
        // The window ends with the fault still there: now it opens.
        let t = 100 * SEC;
        let out = e.sample("dinkes", &icmp("dinkes-sw1", t, 40.0), t);
        assert_eq!(opens(&out.decisions).len(), 1);
    }

    #[test]
    fn a_silent_agent_is_one_incident_and_its_replay_attaches() {
        let mut e = engine();
        let mut all = Vec::new();
        healthy(&mut e, 0, 3, &mut all);
        // Last message at 20 s; silent after 3 intervals.
        let mut changes = Vec::new();
        for t in [30, 40, 51, 60, 70] {
            let out = e.tick(t * SEC);
            changes.extend(out.changes);
            all.extend(out.decisions);
        }
        let o = opens(&all);
        assert_eq!(o.len(), 1, "{all:#?}");
        assert_eq!(o[0].key, "opd:dinkes:agent_unreachable");
        assert_eq!(o[0].affected.len(), 4);
        assert!(
            o[0].sentence
                .starts_with("The agent of OPD dinkes is unreachable")
        );
        let unknown = changes.iter().filter(|c| c.to == Health::Unknown).count();
        assert_eq!(unknown, 5, "4 devices and 1 link: {changes:#?}");
        // The agent comes back at 80 s and replays 30..70 s: sw1 lost
        // everything meanwhile.
        let mut back = e.heartbeat("dinkes", 80 * SEC).decisions;
        for c in 3..8 {
            let ts = c * 10 * SEC;
            back.extend(
                e.sample("dinkes", &icmp("dinkes-sw1", ts, 100.0), 80 * SEC)
                    .decisions,
            );
            back.extend(e.tick(80 * SEC).decisions);
        }
        assert!(opens(&back).is_empty(), "{back:#?}");
        assert!(back.iter().any(
            |d| matches!(d, D::Recovered { key, .. } if key == "opd:dinkes:agent_unreachable")
        ));
        let evidence: usize = back
            .iter()
            .map(|d| match d {
                D::Evidence { key, evidence } if key == "opd:dinkes:agent_unreachable" => {
                    evidence.len()
                }
                _ => 0,
            })
            .sum();
        assert_eq!(evidence, 5);
        // Live readings show sw1 still down: its own incident opens now.
        let t = 90 * SEC;
        let out = e.sample("dinkes", &icmp("dinkes-sw1", t, 100.0), t);
        assert_eq!(opens(&out.decisions).len(), 1);
    }

    #[test]
    fn an_agent_silence_says_since_when_in_the_provinces_zone() {
        // The sentence goes into the ticket's subject, the event and the
        // register: a WITA province reads its own time there, not UTC.
        let makassar = crate::sop::Calendar::new(&crate::sop::calendar::CalendarConfig {
            time_zone: "Asia/Makassar".into(),
            ..Default::default()
        })
        .unwrap();
        let mut e = engine();
        e.restore(Vec::new(), makassar.zone());
        // Last heard at 1970-01-01 00:00:05 UTC, which is 08:00 WITA.
        e.watch_agents([("dinkes".to_string(), Some(5 * SEC))], 100 * SEC, 0);
        let mut all = Vec::new();
        for t in 100..140 {
            all.extend(e.tick(t * SEC).decisions);
        }
        let o = opens(&all);
        assert_eq!(o.len(), 1, "{all:#?}");
        for s in [&o[0].sentence, &o[0].sentence_id] {
            assert!(s.contains("1970-01-01 08:00 WITA"), "{s}");
            assert!(!s.contains("UTC"), "{s}");
        }
    }

    #[test]
    fn an_agent_gone_before_a_restart_is_one_incident_and_recovers_when_back() {
        // The restarted collector (fresh machines) watches the agent last
        // heard at 5 s from its start at 100 s; the agent stays away.
        let mut e = engine();
        e.watch_agents([("dinkes".to_string(), Some(5 * SEC))], 100 * SEC, 0);
        let mut all = Vec::new();
        for t in 100..140 {
            all.extend(e.tick(t * SEC).decisions);
        }
        let o = opens(&all);
        assert_eq!(o.len(), 1, "{all:#?}");
        assert_eq!(o[0].key, "opd:dinkes:agent_unreachable");
        assert_eq!(o[0].opened_at, 131 * SEC);
        assert!(
            o[0].sentence.contains("no heartbeat since"),
            "{}",
            o[0].sentence
        );
        assert_eq!(o[0].affected.len(), 4);
        // An agent enrolled for bappeda never connected: its ticket says so.
        let mut e2 = engine();
        e2.watch_agents([("bappeda".to_string(), None)], 100 * SEC, 0);
        let o2: Vec<Decision> = (100..140)
            .flat_map(|t| e2.tick(t * SEC).decisions)
            .collect();
        let o2 = opens(&o2);
        assert_eq!(o2.len(), 1);
        assert!(
            o2[0]
                .sentence
                .starts_with("The agent of OPD bappeda is unreachable: it has never connected"),
            "{}",
            o2[0].sentence
        );
        let back = e.heartbeat("dinkes", 150 * SEC).decisions;
        assert!(back.iter().any(
            |d| matches!(d, D::Recovered { key, .. } if key == "opd:dinkes:agent_unreachable")
        ));
    }

    #[test]
    fn restored_incidents_hold_their_keys() {
        let mut e = engine();
        let mut all = Vec::new();
        healthy(&mut e, 0, 3, &mut all);
        for c in 3..5 {
            let t = c * 10 * SEC;
            all.extend(
                e.sample("dinkes", &icmp("dinkes-sw1", t, 40.0), t)
                    .decisions,
            );
        }
        assert_eq!(opens(&all).len(), 1);
        let saved: Vec<Incident> = e.book().all().cloned().collect();
        // Restart: fresh machines, the book from the store.
        let mut e2 = engine();
        e2.restore(saved, Default::default());
        let mut after = Vec::new();
        for c in 5..10 {
            let t = c * 10 * SEC;
            after.extend(
                e2.sample("dinkes", &icmp("dinkes-sw1", t, 40.0), t)
                    .decisions,
            );
            after.extend(e2.tick(t).decisions);
        }
        assert!(opens(&after).is_empty(), "{after:#?}");
        assert!(!after.iter().any(|d| matches!(d, D::Recovered { .. })));
    }
}
