//! The SOP as loaded: roles, steps, time standards. Built and validated by [`super::file`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Language of the documents that leave the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Bahasa Indonesia (the default).
    #[default]
    Id,
    /// English.
    En,
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "id" | "ind" | "indonesia" => Ok(Lang::Id),
            "en" | "eng" | "english" => Ok(Lang::En),
            other => Err(format!("unknown language `{other}` (id or en)")),
        }
    }
}

/// Which SOP a ticket runs on: the id and version from the file plus the sha256
/// of its bytes, so an edited file without a version bump is still told apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SopVersion {
    /// `id` from the file.
    pub id: String,
    /// `version` from the file.
    pub version: u32,
    /// Hex sha256 of the file's bytes.
    pub hash: String,
}

impl fmt::Display for SopVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = self.hash.get(..12).unwrap_or(&self.hash);
        write!(f, "{} v{} ({short})", self.id, self.version)
    }
}

/// A duration written in the SOP file: whole days plus minutes. A day is one
/// working day (the calendar's day length) or, for urgent tickets, 24 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkDuration {
    /// Whole days.
    pub days: u32,
    /// Minutes on top of the days.
    pub minutes: u32,
}

impl WorkDuration {
    /// `"1d"`, `"1h"`, `"30m"`, `"1d4h"`, `"1h30m"`. Zero and negative are refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        if s.starts_with('-') {
            return Err(format!("`{text}` is negative"));
        }
        let (mut days, mut minutes) = (0u64, 0u64);
        let mut num = String::new();
        let mut seen_unit = false;
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            if c.is_whitespace() {
                continue;
            }
            let n: u64 = num
                .parse()
                .map_err(|_| format!("`{text}` is not a duration like \"1d\", \"1h\", \"30m\""))?;
            num.clear();
            match c {
                'd' => days += n,
                'h' => minutes += n * 60,
                'm' => minutes += n,
                _ => {
                    return Err(format!(
                        "`{text}`: unknown unit `{c}` (use d, h or m, e.g. \"1d\", \"1h\")"
                    ));
                }
            }
            seen_unit = true;
        }
        if !num.is_empty() || !seen_unit {
            return Err(format!(
                "`{text}` needs a unit (d, h or m), e.g. \"1d\", \"1h\""
            ));
        }
        let days = u32::try_from(days).map_err(|_| format!("`{text}` is too long"))?;
        let minutes = u32::try_from(minutes).map_err(|_| format!("`{text}` is too long"))?;
        if days > 3650 || minutes > 3650 * 24 * 60 {
            return Err(format!("`{text}` is too long"));
        }
        if days == 0 && minutes == 0 {
            return Err(format!("`{text}` is zero"));
        }
        Ok(WorkDuration { days, minutes })
    }

    /// This duration times `k` (escalation at twice the standard).
    pub fn times(self, k: u32) -> Self {
        WorkDuration {
            days: self.days.saturating_mul(k),
            minutes: self.minutes.saturating_mul(k),
        }
    }

    /// Length in minutes for a given length of day in minutes.
    pub fn minutes_with_day(self, day_minutes: u32) -> i64 {
        i64::from(self.days) * i64::from(day_minutes) + i64::from(self.minutes)
    }

    /// Human text in the given language: "1 hari", "1 jam 30 menit", "1 day".
    pub fn label(self, lang: Lang) -> String {
        let (d, h, m) = (self.days, self.minutes / 60, self.minutes % 60);
        let mut parts = Vec::new();
        match lang {
            Lang::Id => {
                if d > 0 {
                    parts.push(format!("{d} hari"));
                }
                if h > 0 {
                    parts.push(format!("{h} jam"));
                }
                if m > 0 {
                    parts.push(format!("{m} menit"));
                }
            }
            Lang::En => {
                let pl = |n: u32, w: &str| {
                    if n == 1 {
                        format!("{n} {w}")
                    } else {
                        format!("{n} {w}s")
                    }
                };
                if d > 0 {
                    parts.push(pl(d, "day"));
                }
                if h > 0 {
                    parts.push(pl(h, "hour"));
                }
                if m > 0 {
                    parts.push(pl(m, "minute"));
                }
            }
        }
        parts.join(" ")
    }
}

impl fmt::Display for WorkDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days > 0 {
            write!(f, "{}d", self.days)?;
        }
        if self.minutes / 60 > 0 {
            write!(f, "{}h", self.minutes / 60)?;
        }
        if !self.minutes.is_multiple_of(60) {
            write!(f, "{}m", self.minutes % 60)?;
        }
        Ok(())
    }
}

/// A step's time standard: `time_standard`, optionally up to `time_standard_max`
/// ("1–2 hari"). A step is late once the upper bound has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeStandard {
    /// The standard as written (`time_standard`).
    pub min: WorkDuration,
    /// The upper bound of a range (`time_standard_max`), if any.
    pub max: Option<WorkDuration>,
}

impl TimeStandard {
    /// The time allowed before the step is late: the upper bound of a range, else the standard.
    pub fn allowed(&self) -> WorkDuration {
        self.max.unwrap_or(self.min)
    }

    /// "1 hari", "1–2 hari", "1 hour".
    pub fn label(&self, lang: Lang) -> String {
        match self.max {
            None => self.min.label(lang),
            Some(max) if max.minutes == 0 && self.min.minutes == 0 => match lang {
                Lang::Id => format!("{}–{} hari", self.min.days, max.days),
                Lang::En => format!("{}–{} days", self.min.days, max.days),
            },
            Some(max) => format!("{} – {}", self.min.label(lang), max.label(lang)),
        }
    }
}

/// A role that may act in the SOP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Role id, e.g. `kabid_aptika`.
    pub id: String,
    /// Name on documents.
    pub name: String,
    /// Roles this one may act for (the Sekretaris Dinas for the Kepala Dinas).
    pub acts_for: Vec<String>,
    /// Roles told when a step of this role is late (the role above).
    pub escalate_to: Vec<String>,
}

/// One step of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Step number as in the SOP form.
    pub number: u32,
    /// Roles that act in this step. With `sequential`, each in turn (one hand-off each);
    /// otherwise any one of them.
    pub actors: Vec<String>,
    /// Whether the actors hand off in order.
    pub sequential: bool,
    /// Activity, Bahasa Indonesia.
    pub activity: String,
    /// Activity, English.
    pub activity_en: String,
    /// Time standard; `None` only for the final step.
    pub time_standard: Option<TimeStandard>,
    /// Output of the step.
    pub output: String,
    /// Disposing this step needs measurements before and after the work (or a reason).
    pub requires_measurements: bool,
    /// Roles that acknowledge the work report of this step (the OPD: pemohon); when
    /// not empty, the step cannot be disposed before the acknowledgement.
    pub acknowledged_by: Vec<String>,
    /// Roles that may record that acknowledgement on the OPD's behalf (helpdesk);
    /// the record shows it was on behalf.
    pub acknowledged_on_behalf_by: Vec<String>,
    /// The maintenance is done in this step: its actor is the technician in the register.
    pub work: bool,
    /// The last step ("selesai"): reaching it closes the ticket.
    pub is_final: bool,
    /// Disposing this step (the Kepala Dinas's review) freezes the work report.
    #[serde(default)]
    pub freezes_report: bool,
}

impl Step {
    /// Number of hand-offs in this step (one per actor when sequential).
    pub fn handoffs(&self) -> u32 {
        if self.sequential {
            u32::try_from(self.actors.len()).unwrap_or(u32::MAX).max(1)
        } else {
            1
        }
    }

    /// The roles that may act at the given hand-off.
    pub fn actors_at(&self, handoff: u32) -> &[String] {
        if self.sequential {
            let i = handoff as usize;
            self.actors.get(i..=i).unwrap_or(&[])
        } else {
            &self.actors
        }
    }

    /// Whether disposing this step needs the OPD's acknowledgement.
    pub fn requires_acknowledgement(&self) -> bool {
        !self.acknowledged_by.is_empty()
    }

    /// Activity in the given language.
    pub fn activity(&self, lang: Lang) -> &str {
        match lang {
            Lang::Id => &self.activity,
            Lang::En => &self.activity_en,
        }
    }
}

/// How a caller may act for a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Capacity {
    /// The caller holds the role.
    Direct {
        /// The role.
        role: String,
    },
    /// The caller holds `via`, which acts for `role`.
    ActingFor {
        /// The caller's own role.
        via: String,
        /// The role acted for.
        role: String,
    },
}

impl Capacity {
    /// The caller's own role in this capacity.
    pub fn own_role(&self) -> &str {
        match self {
            Capacity::Direct { role } => role,
            Capacity::ActingFor { via, .. } => via,
        }
    }
    /// The role acted for, if acting for another.
    pub fn acting_for(&self) -> Option<&str> {
        match self {
            Capacity::Direct { .. } => None,
            Capacity::ActingFor { role, .. } => Some(role),
        }
    }
}

/// A loaded, validated SOP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sop {
    /// `id` from the file.
    pub id: String,
    /// Name on documents.
    pub name: String,
    /// `version` from the file.
    pub version: u32,
    /// The office that issues the documents, e.g. "Dinas Komunikasi dan Informatika".
    #[serde(default)]
    pub office: String,
    /// Its unit that does the work, e.g. "Bidang Aplikasi dan Informatika".
    #[serde(default)]
    pub office_unit: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Steps in order of their number; the last one is final.
    pub steps: Vec<Step>,
    /// Roles that may void a ticket (`admin` included where named).
    #[serde(default)]
    pub void_roles: Vec<String>,
    /// Hex sha256 of the source bytes.
    pub hash: String,
}

impl Sop {
    /// The version a ticket records.
    pub fn version(&self) -> SopVersion {
        SopVersion {
            id: self.id.clone(),
            version: self.version,
            hash: self.hash.clone(),
        }
    }

    /// A role by id.
    pub fn role(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.id == id)
    }

    /// Display name of a role (the id if unknown).
    pub fn role_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.role(id).map_or(id, |r| r.name.as_str())
    }

    /// A step by number.
    pub fn step(&self, number: u32) -> Option<&Step> {
        self.steps.iter().find(|s| s.number == number)
    }

    /// The first step.
    pub fn first_step(&self) -> &Step {
        // Validation guarantees at least one working step and a final one.
        &self.steps[0]
    }

    /// The step whose disposal freezes the work report: the one marked
    /// `freezes_report`, else the last step before the final one.
    pub fn report_step(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.freezes_report)
            .or_else(|| self.steps.iter().rev().find(|s| !s.is_final))
    }

    /// The step after `number`, in order.
    pub fn next_step(&self, number: u32) -> Option<&Step> {
        let i = self.steps.iter().position(|s| s.number == number)?;
        self.steps.get(i + 1)
    }

    /// The step before `number`, in order.
    pub fn prev_step(&self, number: u32) -> Option<&Step> {
        let i = self.steps.iter().position(|s| s.number == number)?;
        i.checked_sub(1).and_then(|j| self.steps.get(j))
    }

    /// How a caller holding `caller_roles` may act for `role`: directly, or through
    /// `acts_for` (one level; delegation does not chain). `None` if not at all.
    pub fn capacity<R: AsRef<str>>(&self, caller_roles: &[R], role: &str) -> Option<Capacity> {
        if caller_roles.iter().any(|r| r.as_ref() == role) {
            return Some(Capacity::Direct {
                role: role.to_string(),
            });
        }
        caller_roles.iter().find_map(|own| {
            let own = own.as_ref();
            let r = self.role(own)?;
            r.acts_for
                .iter()
                .any(|a| a == role)
                .then(|| Capacity::ActingFor {
                    via: own.to_string(),
                    role: role.to_string(),
                })
        })
    }

    /// How a caller may act for any of `roles` (first match, direct preferred).
    pub fn capacity_any<R: AsRef<str>>(
        &self,
        caller_roles: &[R],
        roles: &[String],
    ) -> Option<Capacity> {
        roles
            .iter()
            .find_map(|r| {
                caller_roles
                    .iter()
                    .any(|c| c.as_ref() == r)
                    .then(|| Capacity::Direct { role: r.clone() })
            })
            .or_else(|| roles.iter().find_map(|r| self.capacity(caller_roles, r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("1d", 1, 0 ; "one day")]
    #[test_case("1h", 0, 60 ; "one hour")]
    #[test_case("30m", 0, 30 ; "minutes")]
    #[test_case("1d4h", 1, 240 ; "day and hours")]
    #[test_case("1h30m", 0, 90 ; "hour and minutes")]
    #[test_case(" 2d ", 2, 0 ; "spaces")]
    fn parses_durations(text: &str, days: u32, minutes: u32) {
        assert_eq!(
            WorkDuration::parse(text),
            Ok(WorkDuration { days, minutes })
        );
    }

    #[test_case("0h", "zero" ; "zero")]
    #[test_case("0d0m", "zero" ; "zero combined")]
    #[test_case("-1h", "negative" ; "negative")]
    #[test_case("1", "needs a unit" ; "no unit")]
    #[test_case("1w", "unknown unit" ; "weeks")]
    #[test_case("h", "not a duration" ; "no number")]
    #[test_case("", "empty" ; "empty")]
    #[test_case("99999d", "too long" ; "too long")]
    fn refuses_bad_durations(text: &str, why: &str) {
        let err = WorkDuration::parse(text).expect_err("must fail");
        assert!(err.contains(why), "{err}");
    }

    #[test_case(WorkDuration { days: 1, minutes: 0 }, Lang::Id, "1 hari")]
    #[test_case(WorkDuration { days: 0, minutes: 90 }, Lang::Id, "1 jam 30 menit")]
    #[test_case(WorkDuration { days: 2, minutes: 0 }, Lang::En, "2 days")]
    #[test_case(WorkDuration { days: 0, minutes: 60 }, Lang::En, "1 hour")]
    fn labels(d: WorkDuration, lang: Lang, want: &str) {
        assert_eq!(d.label(lang), want);
    }

    #[test]
    fn range_label() {
        let ts = TimeStandard {
            min: WorkDuration {
                days: 1,
                minutes: 0,
            },
            max: Some(WorkDuration {
                days: 2,
                minutes: 0,
            }),
        };
        assert_eq!(ts.label(Lang::Id), "1–2 hari");
        assert_eq!(
            ts.allowed(),
            WorkDuration {
                days: 2,
                minutes: 0
            }
        );
    }
}
