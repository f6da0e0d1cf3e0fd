//! Escalation: who is told when a step is late, and when.
//!
//! A step is overdue strictly after its due instant (the upper bound of its time
//! standard, counted on the business calendar from when the ticket reached it).
//! Then the step's actor (the named assignee, else the role) and the role above
//! (`escalate_to` in the SOP file) are told once (level 1), and again once the
//! step has taken twice its standard (level 2). A (visit, level) is never sent
//! twice: the ticket keeps [`EscalationMark`]s. A step reached again after a
//! return is a new visit with a fresh clock. Everything is a pure function of the
//! ticket and `now`; the caller sends, then calls [`TicketSop::mark_escalated`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::workflow::{EscalationMark, Event, EventKind, SYSTEM_USER, TicketSop, Workflow};

/// An escalation to send now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// Step.
    pub step: u32,
    /// Hand-off.
    pub handoff: u32,
    /// Visit.
    pub visit: u32,
    /// 1: past the standard; 2: past twice the standard.
    pub level: u8,
    /// When the step was due.
    pub due_at: DateTime<Utc>,
    /// The threshold this level crossed (due_at for level 1).
    pub threshold: DateTime<Utc>,
    /// Roles to tell: the step's actors and the roles above them.
    pub notify_roles: Vec<String>,
    /// Users to tell by name (the assignee).
    pub notify_users: Vec<String>,
}

impl Escalation {
    /// The audit event for this escalation.
    pub fn event(&self, now: DateTime<Utc>) -> Event {
        Event {
            at: now,
            user: SYSTEM_USER.into(),
            role: None,
            acting_for: None,
            step: self.step,
            handoff: self.handoff,
            kind: EventKind::Escalated {
                level: self.level,
                due_at: self.due_at,
                notify_roles: self.notify_roles.clone(),
                notify_users: self.notify_users.clone(),
            },
        }
    }
}

impl TicketSop {
    /// Record that an escalation was sent (and any lower level with it).
    pub fn mark_escalated(&mut self, e: &Escalation) {
        for level in 1..=e.level {
            let mark = EscalationMark {
                step: e.step,
                handoff: e.handoff,
                visit: e.visit,
                level,
            };
            if !self.escalations.contains(&mark) {
                self.escalations.push(mark);
            }
        }
    }

    fn escalated(&self, level: u8) -> bool {
        self.escalations.iter().any(|m| {
            m.step == self.position.step
                && m.handoff == self.position.handoff
                && m.visit == self.visit
                && m.level >= level
        })
    }
}

/// The thresholds of the current step: (level 1 at due, level 2 at twice the standard).
pub fn thresholds(wf: &Workflow<'_>, t: &TicketSop) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if t.is_closed() {
        return None;
    }
    let ts = wf.sop.step(t.position.step)?.time_standard?;
    let allowed = ts.allowed();
    Some((
        wf.calendar.deadline(t.entered_at, allowed, t.urgent),
        wf.calendar
            .deadline(t.entered_at, allowed.times(2), t.urgent),
    ))
}

/// The escalation to send at `now`, if any: the highest level reached and not yet
/// sent (a collector that was down past both thresholds sends one, level 2).
pub fn check(wf: &Workflow<'_>, t: &TicketSop, now: DateTime<Utc>) -> Option<Escalation> {
    let (due, twice) = thresholds(wf, t)?;
    let (level, threshold) = if now > twice {
        (2, twice)
    } else if now > due {
        (1, due)
    } else {
        return None;
    };
    if t.escalated(level) {
        return None;
    }
    let step = wf.sop.step(t.position.step)?;
    let actors = step.actors_at(t.position.handoff);
    let mut notify_roles: Vec<String> = actors.to_vec();
    for a in actors {
        for up in wf
            .sop
            .role(a)
            .map(|r| r.escalate_to.as_slice())
            .unwrap_or(&[])
        {
            if !notify_roles.contains(up) {
                notify_roles.push(up.clone());
            }
        }
    }
    Some(Escalation {
        step: t.position.step,
        handoff: t.position.handoff,
        visit: t.visit,
        level,
        due_at: due,
        threshold,
        notify_roles,
        notify_users: t.assignee.iter().cloned().collect(),
    })
}

/// When [`check`] could next have something to say (for a timer): the next
/// threshold not yet passed and not yet sent.
pub fn next_check_at(wf: &Workflow<'_>, t: &TicketSop) -> Option<DateTime<Utc>> {
    let (due, twice) = thresholds(wf, t)?;
    if !t.escalated(1) {
        Some(due)
    } else if !t.escalated(2) {
        Some(twice)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sop::calendar::{Calendar, CalendarConfig};
    use crate::sop::file::default_sop;
    use crate::sop::workflow::tests::{dispose, user_for, wib};
    use crate::sop::workflow::{Action, Actor, Origin};
    use test_case::test_case;

    fn cal() -> Calendar {
        let cfg: CalendarConfig = toml::from_str(r#"holidays = ["2026-11-30"]"#).expect("cfg");
        Calendar::new(&cfg).expect("cal")
    }

    /// A ticket that reached step 3 (1 working hour) on Friday 2026-11-27 at 15:30;
    /// Saturday, Sunday and Monday (a holiday) follow. Due Tuesday 08:00.
    fn at_step_3(wf: &Workflow<'_>) -> TicketSop {
        let (mut t, _) = wf.start(
            Origin::Detected,
            "dinkes",
            false,
            &Actor::system(),
            wib("2026-11-26 08:00"),
        );
        for (role, at) in [
            ("pemohon", "2026-11-26 09:00"),
            ("kepala_dinas", "2026-11-27 15:30"),
        ] {
            wf.apply(&mut t, dispose(), &user_for(role), wib(at))
                .expect("dispose");
        }
        assert_eq!(t.position.step, 3);
        t
    }

    #[test_case("2026-11-27 16:00", false ; "friday close: 30 minutes counted")]
    #[test_case("2026-11-28 12:00", false ; "saturday")]
    #[test_case("2026-11-30 12:00", false ; "monday holiday")]
    #[test_case("2026-12-01 07:59", false ; "tuesday before due")]
    #[test_case("2026-12-01 08:00", false ; "exactly due is not yet late")]
    #[test_case("2026-12-01 08:01", true ; "a minute after due")]
    fn overdue_at_the_working_time_instant(now: &str, overdue: bool) {
        let sop = default_sop();
        let cal = cal();
        let wf = Workflow::new(&sop, &cal);
        let t = at_step_3(&wf);
        assert_eq!(wf.due_at(&t), Some(wib("2026-12-01 08:00")));
        assert_eq!(wf.is_overdue(&t, wib(now)), overdue);
        assert_eq!(check(&wf, &t, wib(now)).is_some(), overdue);
    }

    #[test]
    fn exactly_one_escalation_per_level() {
        let sop = default_sop();
        let cal = cal();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step_3(&wf);
        let mut sent = Vec::new();
        // A test clock ticking every 5 minutes from Friday to Wednesday evening.
        let mut now = wib("2026-11-27 15:30");
        while now < wib("2026-12-02 18:00") {
            if let Some(e) = check(&wf, &t, now) {
                t.mark_escalated(&e);
                sent.push((e.level, now, e.notify_roles.clone()));
            }
            now += chrono::Duration::minutes(5);
        }
        let roles = vec!["kabid_aptika".to_string(), "kepala_dinas".to_string()];
        assert_eq!(
            sent,
            [
                (1, wib("2026-12-01 08:05"), roles.clone()),
                // Twice the standard: two working hours from Friday 15:30.
                (2, wib("2026-12-01 09:05"), roles),
            ]
        );
    }

    #[test]
    fn late_start_sends_only_the_highest_level_once() {
        let sop = default_sop();
        let cal = cal();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step_3(&wf);
        let e = check(&wf, &t, wib("2026-12-02 10:00")).expect("escalate");
        assert_eq!(e.level, 2);
        t.mark_escalated(&e);
        assert_eq!(check(&wf, &t, wib("2026-12-03 10:00")), None);
        assert_eq!(next_check_at(&wf, &t), None);
    }

    #[test]
    fn a_new_visit_escalates_again_and_names_the_assignee() {
        let sop = default_sop();
        let cal = cal();
        let wf = Workflow::new(&sop, &cal);
        let mut t = at_step_3(&wf);
        let e = check(&wf, &t, wib("2026-12-01 08:30")).expect("late");
        t.mark_escalated(&e);
        let mut to = user_for("pranata_komputer");
        to.user = "rina".into();
        wf.apply(
            &mut t,
            Action::Dispose {
                to: Some(to),
                note: None,
                measurements: Default::default(),
            },
            &user_for("kabid_aptika"),
            wib("2026-12-01 08:40"),
        )
        .expect("dispose");
        assert_eq!(next_check_at(&wf, &t), Some(wib("2026-12-01 09:40")));
        let e = check(&wf, &t, wib("2026-12-01 09:41")).expect("step 4 late");
        assert_eq!(e.step, 4);
        assert_eq!(e.notify_users, ["rina"]);
        assert_eq!(e.notify_roles, ["pranata_komputer", "kabid_aptika"]);
        // Returned to step 3: a fresh clock, so no escalation until it is late again.
        t.mark_escalated(&e);
        wf.apply(
            &mut t,
            Action::Return {
                reason: "salah orang".into(),
            },
            &user_for("pranata_komputer"),
            wib("2026-12-01 10:00"),
        )
        .expect("return");
        assert_eq!(check(&wf, &t, wib("2026-12-01 10:59")), None);
        assert!(check(&wf, &t, wib("2026-12-01 11:01")).is_some());
        assert!(matches!(
            e.event(wib("2026-12-01 09:41")).kind,
            EventKind::Escalated { level: 1, .. }
        ));
    }

    #[test]
    fn kepala_dinas_has_no_role_above() {
        let sop = default_sop();
        let cal = cal();
        let wf = Workflow::new(&sop, &cal);
        let (mut t, _) = wf.start(
            Origin::Detected,
            "dinkes",
            false,
            &Actor::system(),
            wib("2026-11-23 08:00"),
        );
        wf.apply(
            &mut t,
            dispose(),
            &user_for("pemohon"),
            wib("2026-11-23 08:00"),
        )
        .expect("dispose");
        let e = check(&wf, &t, wib("2026-11-24 09:00")).expect("late");
        assert_eq!(e.notify_roles, ["kepala_dinas"]);
    }
}
