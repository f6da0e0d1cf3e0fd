//! Loading `sop.toml`: parse, validate, and report every problem with file, line and key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::model::{Role, Sop, Step, TimeStandard, WorkDuration};
use crate::role::Role as RoleId;

/// One problem found in an SOP file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// The key concerned, e.g. `step[3].actors` (empty when the parser could not tell).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// An SOP file that cannot be used: every problem found, each with its line and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SopFileError {
    /// The file.
    pub path: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for SopFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: ", self.path.display(), p.line)?;
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            write!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSop {
    id: Spanned<String>,
    name: Spanned<String>,
    version: Spanned<i64>,
    #[serde(default)]
    office: String,
    #[serde(default)]
    office_unit: String,
    /// Roles that may void a ticket (default: kabid_aptika, kepala_dinas, admin).
    #[serde(default)]
    void_roles: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    role: Vec<Spanned<RawRole>>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    id: Spanned<String>,
    name: String,
    #[serde(default)]
    acts_for: Vec<Spanned<String>>,
    #[serde(default)]
    escalate_to: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    number: Spanned<i64>,
    #[serde(default)]
    actors: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    sequential: bool,
    activity: String,
    #[serde(default)]
    activity_en: Option<String>,
    #[serde(default)]
    time_standard: Option<Spanned<String>>,
    #[serde(default)]
    time_standard_max: Option<Spanned<String>>,
    #[serde(default)]
    output: String,
    #[serde(default)]
    requires_measurements: bool,
    #[serde(default)]
    acknowledged_by: Vec<Spanned<String>>,
    #[serde(default)]
    acknowledged_on_behalf_by: Vec<Spanned<String>>,
    #[serde(default)]
    work: bool,
    #[serde(default, rename = "final")]
    is_final: bool,
    #[serde(default)]
    freezes_report: Option<Spanned<bool>>,
}

/// Who voids a ticket when `void_roles` is not in the file (those of them the SOP has).
pub const DEFAULT_VOID_ROLES: &[RoleId] =
    &[RoleId::KABID_APTIKA, RoleId::KEPALA_DINAS, RoleId::ADMIN];

/// Line (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Read and validate an SOP file.
pub fn load(path: &Path) -> Result<Sop, SopFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| SopFileError {
        path: path.to_path_buf(),
        problems: vec![Problem {
            line: 1,
            key: String::new(),
            message: format!("cannot read: {e}"),
        }],
    })?;
    parse(&text, path)
}

/// Parse and validate SOP text; `path` is used in messages only.
pub fn parse(text: &str, path: &Path) -> Result<Sop, SopFileError> {
    let fail = |problems: Vec<Problem>| SopFileError {
        path: path.to_path_buf(),
        problems,
    };
    let raw: RawSop = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        fail(vec![Problem {
            line,
            key: String::new(),
            message: e.message().trim().to_string(),
        }])
    })?;
    let mut problems = Vec::new();
    let mut problem = |span: std::ops::Range<usize>, key: String, message: String| {
        problems.push(Problem {
            line: line_of(text, span.start),
            key,
            message,
        })
    };

    if raw.id.get_ref().trim().is_empty() {
        problem(raw.id.span(), "id".into(), "must not be empty".into());
    }
    if raw.name.get_ref().trim().is_empty() {
        problem(raw.name.span(), "name".into(), "must not be empty".into());
    }
    let version = *raw.version.get_ref();
    if !(1..=i64::from(u32::MAX)).contains(&version) {
        problem(
            raw.version.span(),
            "version".into(),
            format!("must be a whole number from 1, found {version}"),
        );
    }

    // Roles.
    let known: BTreeSet<&str> = raw
        .role
        .iter()
        .map(|r| r.get_ref().id.get_ref().as_str())
        .collect();
    let mut seen_roles = BTreeSet::new();
    for (i, r) in raw.role.iter().enumerate() {
        let r = r.get_ref();
        let id = r.id.get_ref();
        let key = format!("role[{}]", i + 1);
        if !valid_id(id) {
            problem(
                r.id.span(),
                format!("{key}.id"),
                format!("`{id}` is not a role id (lowercase letters, digits and _)"),
            );
        }
        if *id == RoleId::ADMIN {
            problem(
                r.id.span(),
                format!("{key}.id"),
                "`admin` is the system's own role and cannot be an SOP role".into(),
            );
        }
        if !seen_roles.insert(id.as_str()) {
            problem(
                r.id.span(),
                format!("{key}.id"),
                format!("role `{id}` is defined twice"),
            );
        }
        for (field, list) in [("acts_for", &r.acts_for), ("escalate_to", &r.escalate_to)] {
            for other in list {
                if !known.contains(other.get_ref().as_str()) {
                    problem(
                        other.span(),
                        format!("{key}.{field}"),
                        unknown_role(other.get_ref(), &known),
                    );
                } else if other.get_ref() == id {
                    problem(
                        other.span(),
                        format!("{key}.{field}"),
                        format!("role `{id}` names itself"),
                    );
                }
            }
        }
    }

    // Who may void a ticket: SOP roles, or the system's own `admin`.
    if let Some(v) = &raw.void_roles {
        if v.get_ref().is_empty() {
            problem(
                v.span(),
                "void_roles".into(),
                "at least one role (or leave the key out for kabid_aptika, kepala_dinas, admin)"
                    .into(),
            );
        }
        for r in v.get_ref() {
            if *r.get_ref() != RoleId::ADMIN && !known.contains(r.get_ref().as_str()) {
                problem(
                    r.span(),
                    "void_roles".into(),
                    unknown_role(r.get_ref(), &known),
                );
            }
        }
    }

    // `acts_for` rings: roles standing in for each other (a for b, b for a)
    // would let either take the other's steps with nobody above them. Each
    // ring is reported once, at the `acts_for` of its last role in the file.
    let order: BTreeMap<&str, usize> = raw
        .role
        .iter()
        .enumerate()
        .map(|(i, r)| (r.get_ref().id.get_ref().as_str(), i))
        .collect();
    let acts: BTreeMap<&str, Vec<&str>> = raw
        .role
        .iter()
        .map(|r| {
            let r = r.get_ref();
            (
                r.id.get_ref().as_str(),
                r.acts_for.iter().map(|a| a.get_ref().as_str()).collect(),
            )
        })
        .collect();
    for (i, r) in raw.role.iter().enumerate() {
        let r = r.get_ref();
        let id = r.id.get_ref().as_str();
        for target in &r.acts_for {
            let t = target.get_ref().as_str();
            if t == id {
                continue;
            }
            if let Some(path) = acts_for_path(&acts, t, id) {
                let last = path.iter().filter_map(|m| order.get(m)).max();
                if last != Some(&i) {
                    continue;
                }
                let mut ring = vec![id];
                ring.extend(path);
                problem(
                    target.span(),
                    format!("role[{}].acts_for", i + 1),
                    format!(
                        "acts_for forms a ring: {} (roles may not stand in for each other)",
                        ring.join(" → ")
                    ),
                );
            }
        }
    }

    // Steps.
    let mut numbers: BTreeMap<i64, usize> = BTreeMap::new();
    let mut steps = Vec::new();
    let mut freezing: Option<i64> = None;
    for (i, s) in raw.step.iter().enumerate() {
        let span = s.span();
        let s = s.get_ref();
        let n = *s.number.get_ref();
        let key = format!("step[{}]", i + 1);
        if !(1..=i64::from(u32::MAX)).contains(&n) {
            problem(
                s.number.span(),
                format!("{key}.number"),
                format!("must be a whole number from 1, found {n}"),
            );
            continue;
        }
        if let Some(first) = numbers.insert(n, i + 1) {
            problem(
                s.number.span(),
                format!("{key}.number"),
                format!("step number {n} is used twice (also step[{first}])"),
            );
        }
        let key = format!("step {n}");
        let no_actors = Vec::new();
        let (actor_list, actors_span) = match &s.actors {
            Some(a) => (a.get_ref(), a.span()),
            None => (&no_actors, span.clone()),
        };
        for a in actor_list {
            if *a.get_ref() == RoleId::ADMIN {
                problem(
                    a.span(),
                    format!("{key}.actors"),
                    "`admin` manages the system and takes no SOP step; grant the user an SOP role"
                        .into(),
                );
            } else if !known.contains(a.get_ref().as_str()) {
                problem(
                    a.span(),
                    format!("{key}.actors"),
                    unknown_role(a.get_ref(), &known),
                );
            }
        }
        for (field, list) in [
            ("acknowledged_by", &s.acknowledged_by),
            ("acknowledged_on_behalf_by", &s.acknowledged_on_behalf_by),
        ] {
            for a in list {
                if !known.contains(a.get_ref().as_str()) {
                    problem(
                        a.span(),
                        format!("{key}.{field}"),
                        unknown_role(a.get_ref(), &known),
                    );
                }
            }
        }
        if s.acknowledged_by.is_empty() && !s.acknowledged_on_behalf_by.is_empty() {
            problem(
                span.clone(),
                format!("{key}.acknowledged_on_behalf_by"),
                "given without acknowledged_by".into(),
            );
        }
        let actors: Vec<String> = actor_list.iter().map(|a| a.get_ref().clone()).collect();
        let dup: BTreeSet<&String> = actors.iter().collect();
        if dup.len() != actors.len() {
            problem(
                actors_span.clone(),
                format!("{key}.actors"),
                "a role is listed twice".into(),
            );
        }
        if s.is_final {
            if !actors.is_empty() {
                problem(
                    actors_span.clone(),
                    format!("{key}.actors"),
                    "the final step has no actors (reaching it closes the ticket)".into(),
                );
            }
        } else if actors.is_empty() {
            problem(
                span.clone(),
                format!("{key}.actors"),
                "a step needs at least one actor role".into(),
            );
        }
        if s.sequential && actors.len() < 2 {
            problem(
                actors_span.clone(),
                format!("{key}.sequential"),
                "a sequential step needs two or more actors (one hand-off each)".into(),
            );
        }
        let mut time_standard = None;
        match (&s.time_standard, s.is_final) {
            (None, false) => problem(
                span.clone(),
                format!("{key}.time_standard"),
                "missing (e.g. \"1d\" or \"1h\")".into(),
            ),
            (Some(ts), true) => problem(
                ts.span(),
                format!("{key}.time_standard"),
                "the final step has no time standard".into(),
            ),
            (None, true) => {}
            (Some(ts), false) => match WorkDuration::parse(ts.get_ref()) {
                Err(e) => problem(ts.span(), format!("{key}.time_standard"), e),
                Ok(min) => {
                    let max = match &s.time_standard_max {
                        None => None,
                        Some(mx) => match WorkDuration::parse(mx.get_ref()) {
                            Err(e) => {
                                problem(mx.span(), format!("{key}.time_standard_max"), e);
                                None
                            }
                            Ok(max) if max_minutes(max) < max_minutes(min) => {
                                problem(
                                    mx.span(),
                                    format!("{key}.time_standard_max"),
                                    format!(
                                        "`{}` is shorter than time_standard `{}`",
                                        mx.get_ref(),
                                        ts.get_ref()
                                    ),
                                );
                                None
                            }
                            Ok(max) => Some(max),
                        },
                    };
                    time_standard = Some(TimeStandard { min, max });
                }
            },
        }
        if let (None, Some(mx)) = (&s.time_standard, &s.time_standard_max) {
            problem(
                mx.span(),
                format!("{key}.time_standard_max"),
                "given without time_standard".into(),
            );
        }
        let freezes_report = s.freezes_report.as_ref().is_some_and(|f| *f.get_ref());
        if let Some(f) = &s.freezes_report
            && *f.get_ref()
        {
            if s.is_final {
                problem(
                    f.span(),
                    format!("{key}.freezes_report"),
                    "the final step takes no action; mark the review step before it".into(),
                );
            }
            if let Some(first) = freezing.replace(n) {
                problem(
                    f.span(),
                    format!("{key}.freezes_report"),
                    format!("only one step freezes the report (also step {first})"),
                );
            }
        }
        steps.push(Step {
            number: u32::try_from(n).unwrap_or(u32::MAX),
            actors,
            sequential: s.sequential,
            activity: s.activity.clone(),
            activity_en: s.activity_en.clone().unwrap_or_else(|| s.activity.clone()),
            time_standard,
            output: s.output.clone(),
            requires_measurements: s.requires_measurements,
            acknowledged_by: s
                .acknowledged_by
                .iter()
                .map(|a| a.get_ref().clone())
                .collect(),
            acknowledged_on_behalf_by: s
                .acknowledged_on_behalf_by
                .iter()
                .map(|a| a.get_ref().clone())
                .collect(),
            work: s.work,
            is_final: s.is_final,
            freezes_report,
        });
    }
    steps.sort_by_key(|s| s.number);
    let working = steps.iter().filter(|s| !s.is_final).count();
    let finals: Vec<&Step> = steps.iter().filter(|s| s.is_final).collect();
    if working == 0 {
        problem(
            0..0,
            "step".into(),
            "the chain is empty: at least one [[step]] with actors, then a `final = true` step"
                .into(),
        );
    } else if finals.is_empty() {
        problem(
            0..0,
            "step".into(),
            "the chain has no final step (`final = true`, no actors) to close tickets".into(),
        );
    } else if finals.len() > 1 || steps.last().is_some_and(|s| !s.is_final) {
        let n = finals[0].number;
        let at = raw
            .step
            .iter()
            .find(|s| *s.get_ref().number.get_ref() == i64::from(n))
            .map_or(0..0, |s| s.span());
        problem(
            at,
            format!("step {n}.final"),
            "exactly one final step, and it must have the highest number".into(),
        );
    }

    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        return Err(fail(problems));
    }
    let roles: Vec<Role> = raw
        .role
        .into_iter()
        .map(|r| {
            let r = r.into_inner();
            Role {
                id: r.id.into_inner(),
                name: r.name,
                acts_for: r.acts_for.into_iter().map(Spanned::into_inner).collect(),
                escalate_to: r.escalate_to.into_iter().map(Spanned::into_inner).collect(),
            }
        })
        .collect();
    let void_roles = match raw.void_roles {
        Some(v) => v
            .into_inner()
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        None => DEFAULT_VOID_ROLES
            .iter()
            .filter(|r| **r == RoleId::ADMIN || roles.iter().any(|x: &Role| x.id == **r))
            .map(|r| r.to_string())
            .collect(),
    };
    Ok(Sop {
        id: raw.id.into_inner(),
        name: raw.name.into_inner(),
        version: u32::try_from(version).unwrap_or(1),
        office: raw.office.trim().to_string(),
        office_unit: raw.office_unit.trim().to_string(),
        roles,
        steps,
        void_roles,
        hash: hex::encode(Sha256::digest(text.as_bytes())),
    })
}

// Ranges compare on an 8-hour day; exact enough to catch "max < min".
fn max_minutes(d: WorkDuration) -> i64 {
    d.minutes_with_day(8 * 60)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The roles from `from` to `to` following `acts_for` (both included), if any.
fn acts_for_path<'a>(
    acts: &BTreeMap<&'a str, Vec<&'a str>>,
    from: &'a str,
    to: &'a str,
) -> Option<Vec<&'a str>> {
    let mut back: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([from]);
    let mut seen = BTreeSet::from([from]);
    while let Some(cur) = queue.pop_front() {
        if cur == to {
            let mut path = vec![cur];
            let mut at = cur;
            while let Some(prev) = back.get(at) {
                path.push(prev);
                at = prev;
            }
            path.reverse();
            return Some(path);
        }
        for next in acts.get(cur).into_iter().flatten() {
            if seen.insert(next) {
                back.insert(next, cur);
                queue.push_back(next);
            }
        }
    }
    None
}

fn unknown_role(role: &str, known: &BTreeSet<&str>) -> String {
    let list: Vec<&str> = known.iter().copied().collect();
    format!("unknown role `{role}` (roles: {})", list.join(", "))
}

/// The default SOP shipped with Siaga (the seed's chain).
pub const DEFAULT_SOP: &str = include_str!("../../assets/sop.toml");

/// The default SOP, parsed.
pub fn default_sop() -> Sop {
    // The shipped file is checked by a unit test; a failure here is a build defect.
    #[allow(clippy::expect_used)]
    parse(DEFAULT_SOP, Path::new("sop.toml")).expect("the shipped sop.toml is valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sop::model::Capacity;
    use test_case::test_case;

    fn p(text: &str) -> Result<Sop, SopFileError> {
        parse(text, Path::new("sop.toml"))
    }

    const HEAD: &str = r#"id = "x"
name = "X"
version = 1
[[role]]
id = "a"
name = "A"
[[role]]
id = "b"
name = "B"
acts_for = ["a"]
"#;

    const FINAL: &str = r#"[[step]]
number = 9
activity = "Selesai"
final = true
"#;

    #[test]
    fn default_sop_is_the_seed_chain() {
        let sop = p(DEFAULT_SOP).expect("valid");
        assert_eq!(sop.id, "pemeliharaan-jaringan-tik");
        assert_eq!(sop.steps.len(), 10);
        let numbers: Vec<u32> = sop.steps.iter().map(|s| s.number).collect();
        assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
        let s8 = sop.step(8).expect("step 8");
        assert!(s8.sequential);
        assert_eq!(s8.actors, ["pranata_komputer", "kabid_aptika"]);
        assert_eq!(s8.handoffs(), 2);
        assert_eq!(s8.actors_at(1), ["kabid_aptika"]);
        let s6 = sop.step(6).expect("step 6");
        assert!(s6.requires_measurements && s6.requires_acknowledgement() && s6.work);
        assert_eq!(s6.acknowledged_by, ["pemohon"]);
        assert_eq!(s6.acknowledged_on_behalf_by, ["helpdesk"]);
        assert_eq!(
            s6.time_standard.map(|t| t.label(crate::sop::Lang::Id)),
            Some("1–2 hari".to_string())
        );
        assert_eq!(
            sop.step(3).and_then(|s| s.time_standard).map(|t| t.min),
            Some(WorkDuration {
                days: 0,
                minutes: 60
            })
        );
        assert!(
            sop.step(10)
                .is_some_and(|s| s.is_final && s.actors.is_empty())
        );
        let roles = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            sop.capacity(&roles(&["sekretaris_dinas"]), "kepala_dinas"),
            Some(Capacity::ActingFor {
                via: "sekretaris_dinas".into(),
                role: "kepala_dinas".into()
            })
        );
        assert_eq!(sop.capacity(&roles(&["helpdesk"]), "kepala_dinas"), None);
        assert_eq!(sop.hash.len(), 64);
        assert_eq!(sop.office, "Dinas Komunikasi dan Informatika");
        assert_eq!(sop.office_unit, "Bidang Aplikasi dan Informatika");
        assert_eq!(sop.report_step().map(|s| s.number), Some(9));
    }

    #[test]
    fn the_report_freezes_at_the_marked_step_else_before_the_final_one() {
        let steps = "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n\
                     [[step]]\nnumber = 2\nactors = [\"b\"]\nactivity = \"y\"\ntime_standard = \"1h\"\n";
        let sop = p(&format!("{HEAD}{steps}{FINAL}")).expect("valid");
        assert_eq!(sop.report_step().map(|s| s.number), Some(2));
        assert_eq!(sop.office, "");
        let marked = steps.replacen(
            "time_standard = \"1h\"\n",
            "time_standard = \"1h\"\nfreezes_report = true\n",
            1,
        );
        let sop = p(&format!("{HEAD}{marked}{FINAL}")).expect("valid");
        assert_eq!(sop.report_step().map(|s| s.number), Some(1));
    }

    #[test_case("freezes_report = true\n[[step]]\nnumber = 2\nactors = [\"b\"]\nactivity = \"y\"\ntime_standard = \"1h\"\nfreezes_report = true\n", "only one step" ; "twice")]
    #[test_case("[[step]]\nnumber = 9\nactivity = \"Selesai\"\nfinal = true\nfreezes_report = true\n", "the final step takes no action" ; "on the final step")]
    fn refuses_bad_freezing_steps(rest: &str, words: &str) {
        let steps =
            "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n";
        let text = if rest.contains("final = true") {
            format!("{HEAD}{steps}{rest}")
        } else {
            format!("{HEAD}{steps}{rest}{FINAL}")
        };
        let err = p(&text).expect_err("must be refused");
        assert!(
            err.problems
                .iter()
                .any(|pr| pr.key.ends_with(".freezes_report") && pr.message.contains(words)),
            "{err}"
        );
    }

    #[test]
    fn hash_follows_content() {
        let a = p(DEFAULT_SOP).expect("valid");
        let b = p(&format!("{DEFAULT_SOP}\n# a comment\n")).expect("valid");
        assert_eq!(a.version().version, b.version().version);
        assert_ne!(a.version(), b.version());
    }

    // (step text, expected line, expected key, expected words)
    #[test_case(
        "[[step]]\nnumber = 1\nactors = [\"a\", \"kabid\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n",
        13, "step 1.actors", "unknown role `kabid`" ; "unknown role")]
    #[test_case(
        "[[step]]\nnumber = 1\nactors = [\"admin\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n",
        13, "step 1.actors", "takes no SOP step" ; "admin as actor")]
    #[test_case(
        "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"0h\"\n",
        15, "step 1.time_standard", "zero" ; "zero time")]
    #[test_case(
        "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"-1d\"\n",
        15, "step 1.time_standard", "negative" ; "negative time")]
    #[test_case(
        "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"sehari\"\n",
        15, "step 1.time_standard", "not a duration" ; "unparsable time")]
    #[test_case(
        "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"2d\"\ntime_standard_max = \"1d\"\n",
        16, "step 1.time_standard_max", "shorter than" ; "max below min")]
    #[test_case(
        "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\n",
        11, "step 1.time_standard", "missing" ; "missing time")]
    #[test_case(
        "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n[[step]]\nnumber = 1\nactors = [\"b\"]\nactivity = \"y\"\ntime_standard = \"1h\"\n",
        17, "step[2].number", "used twice" ; "duplicate number")]
    #[test_case(
        "[[step]]\nnumber = 1\nactors = [\"a\"]\nsequential = true\nactivity = \"x\"\ntime_standard = \"1h\"\n",
        13, "step 1.sequential", "two or more" ; "sequential with one actor")]
    #[test_case(
        "[[step]]\nnumber = 1\nactors = []\nactivity = \"x\"\ntime_standard = \"1h\"\n",
        11, "step 1.actors", "at least one actor" ; "no actors")]
    fn refuses_with_line_and_key(steps: &str, line: usize, key: &str, words: &str) {
        let text = format!("{HEAD}{steps}{FINAL}");
        let err = p(&text).expect_err("must be refused");
        let found = err
            .problems
            .iter()
            .find(|pr| pr.key == key)
            .unwrap_or_else(|| panic!("no problem for {key}: {err}"));
        assert_eq!(found.line, line, "{err}");
        assert!(found.message.contains(words), "{err}");
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("sop.toml:{line}: {key}: ")),
            "{shown}"
        );
    }

    #[test_case("void_roles = [\"zz\"]\n", 3, "unknown role `zz`" ; "unknown role")]
    #[test_case("void_roles = []\n", 3, "at least one role" ; "empty")]
    fn refuses_bad_void_roles(line3: &str, line: usize, words: &str) {
        let text = HEAD.replacen("version = 1\n", &format!("version = 1\n{line3}"), 1);
        let steps =
            "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n";
        let err = p(&format!("{text}{steps}{FINAL}")).expect_err("must be refused");
        assert!(
            err.problems.iter().any(|pr| pr.key == "void_roles"
                && pr.line == line + 1
                && pr.message.contains(words)),
            "{err}"
        );
    }

    #[test]
    fn void_roles_default_to_those_the_sop_has_and_admin() {
        let steps =
            "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n";
        let sop = p(&format!("{HEAD}{steps}{FINAL}")).expect("valid");
        assert_eq!(sop.void_roles, ["admin"]);
        let text = HEAD.replacen(
            "version = 1\n",
            "version = 1\nvoid_roles = [\"b\", \"admin\"]\n",
            1,
        );
        let sop = p(&format!("{text}{steps}{FINAL}")).expect("valid");
        assert_eq!(sop.void_roles, ["b", "admin"]);
        assert_eq!(
            p(DEFAULT_SOP).expect("valid").void_roles,
            ["kabid_aptika", "kepala_dinas", "admin"]
        );
    }

    #[test_case("", "the chain is empty" ; "no steps at all")]
    #[test_case(FINAL, "the chain is empty" ; "only the final step")]
    #[test_case("[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n", "no final step" ; "no final")]
    fn refuses_empty_chains(steps: &str, words: &str) {
        let err = p(&format!("{HEAD}{steps}")).expect_err("must be refused");
        assert!(err.to_string().contains(words), "{err}");
    }

    #[test_case("[[role]]\nid = \"c\"\nname = \"C\"\nacts_for = [\"zz\"]\n", "role[3].acts_for", "unknown role `zz`" ; "acts_for unknown")]
    #[test_case("[[role]]\nid = \"a\"\nname = \"again\"\n", "role[3].id", "defined twice" ; "duplicate role")]
    #[test_case("[[role]]\nid = \"admin\"\nname = \"Admin\"\n", "role[3].id", "system's own role" ; "admin reserved")]
    #[test_case("[[role]]\nid = \"c\"\nname = \"C\"\nescalate_to = [\"c\"]\n", "role[3].escalate_to", "names itself" ; "self escalation")]
    fn refuses_bad_roles(role: &str, key: &str, words: &str) {
        let steps =
            "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n";
        let err = p(&format!("{HEAD}{role}{steps}{FINAL}")).expect_err("must be refused");
        assert!(
            err.problems
                .iter()
                .any(|pr| pr.key == key && pr.message.contains(words)),
            "{err}"
        );
    }

    // HEAD has b acting for a; each case adds roles after it.
    #[test_case("[[role]]\nid = \"c\"\nname = \"C\"\n", None ; "no ring")]
    #[test_case("[[role]]\nid = \"c\"\nname = \"C\"\nacts_for = [\"b\"]\n", None ; "a chain is no ring")]
    #[test_case("[[role]]\nid = \"c\"\nname = \"C\"\nacts_for = [\"b\", \"a\"]\n", None ; "one for two")]
    #[test_case("[[role]]\nid = \"c\"\nname = \"C\"\nacts_for = [\"c\"]\n", Some((14, "role[3].acts_for", "names itself")) ; "itself")]
    fn acts_for_without_a_new_role_in_a(extra: &str, refused: Option<(usize, &str, &str)>) {
        let steps =
            "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n";
        let got = p(&format!("{HEAD}{extra}{steps}{FINAL}"));
        match refused {
            None => assert!(got.is_ok(), "{:?}", got.err()),
            Some((line, key, words)) => {
                let err = got.expect_err("refused");
                assert!(
                    err.problems
                        .iter()
                        .any(|pr| pr.line == line && pr.key == key && pr.message.contains(words)),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn acts_for_rings_are_refused_with_line_and_key() {
        let steps =
            "[[step]]\nnumber = 1\nactors = [\"a\"]\nactivity = \"x\"\ntime_standard = \"1h\"\n";
        // Two roles for each other: b acts for a (HEAD, line 10), a for b.
        let two = HEAD.replacen(
            "id = \"a\"\nname = \"A\"\n",
            "id = \"a\"\nname = \"A\"\nacts_for = [\"b\"]\n",
            1,
        );
        let err = p(&format!("{two}{steps}{FINAL}")).expect_err("ring of two");
        let shown = err.to_string();
        assert!(
            shown.contains("sop.toml:11: role[2].acts_for: acts_for forms a ring: b → a → b"),
            "{shown}"
        );
        // Three: c for b, b for a (HEAD), a for c.
        let three = HEAD.replacen(
            "id = \"a\"\nname = \"A\"\n",
            "id = \"a\"\nname = \"A\"\nacts_for = [\"c\"]\n",
            1,
        );
        let err = p(&format!(
            "{three}[[role]]\nid = \"c\"\nname = \"C\"\nacts_for = [\"b\"]\n{steps}{FINAL}"
        ))
        .expect_err("ring of three");
        let shown = err.to_string();
        assert!(
            shown.contains("sop.toml:15: role[3].acts_for: acts_for forms a ring: c → b → a → c"),
            "{shown}"
        );
        assert_eq!(err.problems.len(), 1, "one ring, one problem: {shown}");
    }

    #[test]
    fn syntax_and_unknown_keys_have_lines() {
        let err = p(&format!("{HEAD}[[step]]\nnumber = 1\nactorz = [\"a\"]\n")).expect_err("bad");
        assert_eq!(err.problems[0].line, 13, "{err}");
        assert!(err.to_string().contains("actorz"), "{err}");
        let err = p("id = \"x\"\nname = \nversion = 1\n").expect_err("bad");
        assert_eq!(err.problems[0].line, 2, "{err}");
    }

    #[test]
    fn reports_every_problem() {
        let steps =
            "[[step]]\nnumber = 1\nactors = [\"q\"]\nactivity = \"x\"\ntime_standard = \"0h\"\n";
        let err = p(&format!("{HEAD}{steps}{FINAL}")).expect_err("bad");
        assert_eq!(err.problems.len(), 2, "{err}");
    }

    #[test]
    fn load_names_missing_file() {
        let err = load(Path::new("/nonexistent/sop.toml")).expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("/nonexistent/sop.toml:1: cannot read"),
            "{err}"
        );
    }
}
