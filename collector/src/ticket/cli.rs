//! The `siaga` commands of the health part: what each sends over
//! `Admin.Call` and how its answer is shown.
//!
//! `siaga tickets [--open] [--json]`, `siaga ticket show ID [--json]`,
//! `siaga events [--since DURATION] [--json]`,
//! `siaga maintenance add|list|remove`.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use clap::{ArgGroup, Args, Subcommand};
use comfy_table::Table;
use serde_json::{Value, json};

use crate::cli::local_text;
use crate::sop::cli::Request;

fn req(method: &'static str, v: Value) -> Request {
    Request {
        method,
        json: v.to_string(),
    }
}

fn parse(reply: &str) -> Result<Value, String> {
    serde_json::from_str(reply)
        .map_err(|e| format!("the collector sent an answer this siaga cannot read: {e}"))
}

fn pretty(v: &Value) -> Result<String, String> {
    serde_json::to_string_pretty(v).map_err(|e| e.to_string())
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

fn table(header: &[&str]) -> Table {
    crate::cli::table(header)
}

fn time_us(us: i64, tz: chrono_tz::Tz) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| crate::cli::local_time(tz, t))
        .unwrap_or_else(|| us.to_string())
}

/// `siaga tickets`.
#[derive(Debug, Clone, Default, Args)]
pub struct TicketsCmd {
    /// Only tickets not closed yet.
    #[arg(long)]
    pub open: bool,
    /// Only this OPD's tickets, e.g. --opd dinkes.
    #[arg(long)]
    pub opd: Option<String>,
    /// Only tickets in this state: open, closed or recovered (the fault
    /// is gone, the ticket not closed yet), e.g. --state recovered.
    #[arg(long, value_parser = ["open", "closed", "recovered"])]
    pub state: Option<String>,
    /// Only tickets at this SOP step, e.g. --step 4.
    #[arg(long)]
    pub step: Option<u32>,
    /// Only tickets past their time standard.
    #[arg(long)]
    pub overdue: bool,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

impl TicketsCmd {
    /// The call.
    pub fn request(&self) -> Request {
        req("tickets.list", json!({ "open": self.open }))
    }

    /// A table or the JSON array.
    pub fn render(&self, reply: &str, tz: chrono_tz::Tz) -> Result<String, String> {
        self.render_as(reply, tz, crate::cli::output())
    }

    /// Whether ticket `x` passes the filters given.
    fn wants(&self, x: &Value) -> bool {
        let closed = x["closed"] == true;
        self.opd.as_deref().is_none_or(|o| x["opd"] == o)
            && self
                .step
                .is_none_or(|n| x["step"].as_u64() == Some(u64::from(n)))
            && (!self.overdue || x["overdue"] == true)
            && match self.state.as_deref() {
                Some("open") => !closed,
                Some("closed") => closed,
                Some("recovered") => !closed && x["recovered_at"].is_string(),
                _ => true,
            }
    }

    fn render_as(
        &self,
        reply: &str,
        tz: chrono_tz::Tz,
        output: crate::cli::Output,
    ) -> Result<String, String> {
        let mut v = parse(reply)?;
        if let Value::Array(all) = &mut v {
            all.retain(|x| self.wants(x));
        }
        if self.json {
            return pretty(&v);
        }
        // The default table keeps what the helpdesk scans for and fits an
        // 80-column terminal; -o wide and -o plain have every column.
        let narrow = output == crate::cli::Output::Table;
        let zone = tz.name();
        let abbr =
            crate::sop::calendar::zone_offset(zone).map_or_else(|_| zone.to_string(), |z| z.1);
        let due_header = format!("due ({abbr})");
        let mut t = if narrow {
            table(&["id", "opd", "problem", "turn", &due_header])
        } else {
            table(&[
                "id",
                "opd",
                "device / link",
                "problem",
                "step",
                "role",
                "due",
                "opened",
                "recovered",
                "occ",
                "affected",
            ])
        };
        for x in v.as_array().into_iter().flatten() {
            let subject = match (x["device"].as_str(), x["link"].as_str()) {
                (Some(d), Some(l)) => format!("{d} / {l}"),
                (Some(d), None) => d.to_string(),
                _ => "-".into(),
            };
            let mut problem = s(&x["problem"]);
            if x["flapping"] == true {
                problem.push_str(" [flapping]");
            }
            let affected: Vec<String> = x["affected"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            let role = if x["closed"] == true {
                "closed".into()
            } else {
                match x["assignee"].as_str() {
                    Some(who) => format!("{} ({who})", s(&x["role"])),
                    None => s(&x["role"]),
                }
            };
            let late = if x["overdue"] == true { " LATE" } else { "" };
            if narrow {
                let due = x["due_at"]
                    .as_str()
                    .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                    .map_or_else(
                        || "-".to_string(),
                        |d| format!("{}{late}", d.with_timezone(&tz).format("%Y-%m-%d %H:%M")),
                    );
                let turn = if x["closed"] == true {
                    role
                } else {
                    format!("{} {role}", s(&x["step"]))
                };
                t.add_row(vec![s(&x["id"]), s(&x["opd"]), problem, turn, due]);
                continue;
            }
            t.add_row(vec![
                s(&x["id"]),
                s(&x["opd"]),
                subject,
                problem,
                s(&x["step"]),
                role,
                match x["due_at"].is_string() {
                    true => format!("{}{late}", local_text(&x["due_at"], tz)),
                    false => "-".into(),
                },
                local_text(&x["opened_at"], tz),
                local_text(&x["recovered_at"], tz),
                s(&x["occurrences"]),
                affected.join(", "),
            ]);
        }
        Ok(crate::cli::show(&t))
    }
}

/// `siaga ticket show`.
#[derive(Debug, Clone, Subcommand)]
pub enum TicketShowCmd {
    /// One ticket with its evidence and events.
    Show {
        /// Ticket number, e.g. PJ-2026-0001.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl TicketShowCmd {
    /// The call.
    pub fn request(&self) -> Request {
        let TicketShowCmd::Show { id, .. } = self;
        req("tickets.show", json!({ "id": id }))
    }

    /// The ticket as text or JSON.
    pub fn render(&self, reply: &str, tz: chrono_tz::Tz) -> Result<String, String> {
        let TicketShowCmd::Show { json, .. } = self;
        let v = parse(reply)?;
        if *json {
            return pretty(&v);
        }
        let mut out = String::new();
        let line = |out: &mut String, k: &str, val: String| {
            out.push_str(&format!("{k:<12} {val}\n"));
        };
        line(&mut out, "ticket", s(&v["id"]));
        line(&mut out, "opd", s(&v["opd"]));
        line(&mut out, "device", s(&v["device"]));
        line(&mut out, "link", s(&v["link"]));
        line(&mut out, "problem", s(&v["problem"]));
        line(&mut out, "origin", s(&v["origin"]));
        let turn = if v["closed"] == true {
            "closed".to_string()
        } else {
            format!("step {} ({})", s(&v["step"]), s(&v["role"]))
        };
        line(&mut out, "turn", turn);
        line(&mut out, "opened", local_text(&v["opened_at"], tz));
        line(&mut out, "recovered", local_text(&v["recovered_at"], tz));
        line(&mut out, "occurrences", s(&v["occurrences"]));
        line(&mut out, "flapping", s(&v["flapping"]));
        let affected: Vec<String> = v["affected"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        line(&mut out, "affected", affected.join(", "));
        out.push_str("\nevents:\n");
        for n in v["notes"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {}  {}\n",
                local_text(&n["at"], tz),
                s(&n["text"])
            ));
        }
        for r in v["trail"].as_array().into_iter().flatten() {
            let e = &r["event"];
            out.push_str(&format!(
                "  {}  step {} {} by {}\n",
                local_text(&e["at"], tz),
                s(&e["step"]),
                s(&e["kind"]["type"]),
                s(&e["user"])
            ));
        }
        let ev = v["evidence"].as_array().cloned().unwrap_or_default();
        out.push_str(&format!(
            "\nevidence ({} readings, newest last):\n",
            ev.len()
        ));
        for r in ev.iter().rev().take(10).rev() {
            let worst = r["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["level"] != "up")
                .map(|f| {
                    format!(
                        "{} {} ({})",
                        s(&f["problem"]),
                        s(&f["value"]),
                        s(&f["level"])
                    )
                })
                .collect::<Vec<_>>();
            let what = if worst.is_empty() {
                "all within thresholds".to_string()
            } else {
                worst.join(", ")
            };
            out.push_str(&format!(
                "  {}  {}  {}\n",
                time_us(r["at"].as_i64().unwrap_or(0), tz),
                s(&r["sample"]["device"]),
                what
            ));
        }
        if let Some(list) = v.get("measurements").filter(|m| m.is_array())
            && let Ok(list) =
                serde_json::from_value::<Vec<crate::measure::Measurement>>(list.clone())
        {
            out.push_str(&format!("\nmeasurements ({}):\n", list.len()));
            if !list.is_empty() {
                out.push_str(&crate::measure::cli::list_table(&list, tz));
                out.push('\n');
            }
        }
        Ok(out.trim_end().to_string())
    }
}

/// `siaga maintenance …`.
// Parsed once per run: the size of `Add` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Subcommand)]
pub enum MaintenanceCmd {
    /// Add a window: no tickets are opened inside it.
    #[command(group(ArgGroup::new("scope").required(true).args(["opd", "device"])))]
    Add {
        /// The whole OPD (its agent included).
        #[arg(long)]
        opd: Option<String>,
        /// One device and its links.
        #[arg(long)]
        device: Option<String>,
        /// Only this link of --device (the link's name in inventory.toml,
        /// as `siaga measure` and `siaga ticket new` take it).
        #[arg(long, requires = "device")]
        link: Option<String>,
        /// Start, in the province's time (siaga.toml's time_zone), e.g.
        /// "2026-12-07 22:00", 22:00 (today) or 2026-12-07T22:00:00+07:00; default now.
        #[arg(long, value_parser = crate::usage::time_arg)]
        from: Option<String>,
        /// End, in the same forms, e.g. "2026-12-08 02:00". Give this or --for.
        #[arg(long, conflicts_with_all = ["duration", "weekly"], value_parser = crate::usage::time_arg)]
        until: Option<String>,
        /// Length, e.g. 2h (one-off from --from, or each weekly window).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Every week on these days, e.g. mon,wed (needs --at and --for).
        #[arg(long, value_delimiter = ',', requires_all = ["at", "duration"])]
        weekly: Vec<String>,
        /// Local start time of a weekly window, HH:MM.
        #[arg(long)]
        at: Option<String>,
        /// Offset of local time from UTC for --at, e.g. +08:00; default the
        /// offset of siaga.toml's time_zone (WIB +07:00, WITA +08:00, WIT +09:00).
        #[arg(long, allow_hyphen_values = true)]
        utc_offset: Option<String>,
        /// Why (shown in events).
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the window added as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List windows.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Remove a window.
    Remove {
        /// Window id (from `list`).
        id: u64,
        /// Print the answer as JSON (`{"removed": ID}`).
        #[arg(long)]
        json: bool,
    },
}

/// The UTC offset of zone `tz` now, in minutes.
fn zone_minutes(tz: chrono_tz::Tz) -> i32 {
    use chrono::{Offset, TimeZone};
    tz.offset_from_utc_datetime(&Utc::now().naive_utc())
        .fix()
        .local_minus_utc()
        / 60
}

fn offset_minutes(s: &str) -> Result<i32, String> {
    let bad = || format!("--utc-offset {s:?}: expected e.g. +07:00");
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let t = NaiveTime::parse_from_str(rest, "%H:%M").map_err(|_| bad())?;
    let m =
        i32::try_from(t.signed_duration_since(NaiveTime::MIN).num_minutes()).map_err(|_| bad())?;
    Ok(sign * m)
}

impl MaintenanceCmd {
    /// The call, with the times typed read in zone `tz`; bad combinations
    /// of options are errors.
    pub fn request(&self, tz: chrono_tz::Tz) -> Result<Request, String> {
        match self {
            MaintenanceCmd::List { .. } => Ok(req("maintenance.list", json!({}))),
            MaintenanceCmd::Remove { id, .. } => Ok(req("maintenance.remove", json!({ "id": id }))),
            MaintenanceCmd::Add {
                opd,
                device,
                link,
                from,
                until,
                duration,
                weekly,
                at,
                utc_offset,
                reason,
                ..
            } => {
                let scope = match (opd, device, link) {
                    (Some(o), _, _) => json!({"kind": "opd", "opd": o}),
                    (_, Some(d), Some(name)) => json!({"kind": "link", "device": d, "link": name}),
                    (_, Some(d), None) => json!({"kind": "device", "device": d}),
                    _ => return Err("give --opd or --device (with --link for one link)".into()),
                };
                let schedule = if !weekly.is_empty() {
                    let dur = duration.ok_or("--weekly needs --for")?;
                    json!({
                        "kind": "weekly",
                        "days": weekly,
                        "start": at.clone().ok_or("--weekly needs --at HH:MM")?,
                        "duration_s": dur.as_secs(),
                        "utc_offset_minutes": match utc_offset {
                            Some(o) => offset_minutes(o)?,
                            None => zone_minutes(tz),
                        },
                    })
                } else {
                    let now = Utc::now();
                    let start = match from {
                        Some(f) => {
                            crate::when::point(f, tz, now).map_err(|e| format!("--from: {e}"))?
                        }
                        None => now,
                    };
                    let end = match (until, duration) {
                        (Some(u), _) => {
                            crate::when::point(u, tz, now).map_err(|e| format!("--until: {e}"))?
                        }
                        (None, Some(d)) => {
                            start
                                + chrono::Duration::from_std(*d)
                                    .map_err(|_| "--for is too long".to_string())?
                        }
                        (None, None) => return Err("give --until or --for (or --weekly)".into()),
                    };
                    json!({
                        "kind": "once",
                        "start_us": start.timestamp_micros(),
                        "end_us": end.timestamp_micros(),
                    })
                };
                Ok(req(
                    "maintenance.add",
                    json!({"scope": scope, "schedule": schedule, "reason": reason}),
                ))
            }
        }
    }

    /// What to print.
    pub fn render(&self, reply: &str, tz: chrono_tz::Tz) -> Result<String, String> {
        let v = parse(reply)?;
        match self {
            MaintenanceCmd::List { json: true } => pretty(&v),
            MaintenanceCmd::List { json: false } => {
                let mut t = table(&["id", "covers", "when", "reason", "by"]);
                for w in v.as_array().into_iter().flatten() {
                    t.add_row(vec![
                        s(&w["id"]),
                        scope_text(&w["scope"]),
                        schedule_text(&w["schedule"], tz),
                        s(&w["reason"]),
                        s(&w["created_by"]),
                    ]);
                }
                Ok(crate::cli::show(&t))
            }
            MaintenanceCmd::Add { json: true, .. } => pretty(&v),
            MaintenanceCmd::Add { .. } => Ok(format!(
                "maintenance window {} added: {}, {}",
                s(&v["id"]),
                scope_text(&v["scope"]),
                schedule_text(&v["schedule"], tz)
            )),
            MaintenanceCmd::Remove { id, json: true } => pretty(&json!({ "removed": id })),
            MaintenanceCmd::Remove { id, .. } => Ok(format!("maintenance window {id} removed")),
        }
    }
}

fn scope_text(v: &Value) -> String {
    match v["kind"].as_str() {
        Some("opd") => format!("opd {}", s(&v["opd"])),
        Some("device") => format!("device {}", s(&v["device"])),
        Some("link") => format!("link {}/{}", s(&v["device"]), s(&v["link"])),
        _ => s(v),
    }
}

fn schedule_text(v: &Value, tz: chrono_tz::Tz) -> String {
    match v["kind"].as_str() {
        Some("once") => format!(
            "{} – {}",
            time_us(v["start_us"].as_i64().unwrap_or(0), tz),
            time_us(v["end_us"].as_i64().unwrap_or(0), tz)
        ),
        Some("weekly") => {
            let days: Vec<String> = v["days"].as_array().into_iter().flatten().map(s).collect();
            let off = v["utc_offset_minutes"].as_i64().unwrap_or(0);
            // The province's zone by its name (WIB); another offset as is.
            let ours = crate::sop::calendar::zone_offset(tz.name())
                .ok()
                .filter(|(o, _)| i64::from(o.local_minus_utc()) == off * 60);
            let zone = match ours {
                Some((_, abbr)) => abbr,
                None => format!(
                    "UTC{}{:02}:{:02}",
                    if off < 0 { '-' } else { '+' },
                    off.abs() / 60,
                    off.abs() % 60
                ),
            };
            format!(
                "weekly {} at {} {zone} for {}",
                days.join(","),
                s(&v["start"]),
                humantime::format_duration(Duration::from_secs(
                    v["duration_s"].as_u64().unwrap_or(0)
                ))
            )
        }
        _ => s(v),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;
    use test_case::test_case;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: MaintenanceCmd,
    }

    fn add(args: &[&str]) -> Result<Value, String> {
        let mut argv = vec!["siaga", "add"];
        argv.extend(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let r = cli.cmd.request(chrono_tz::Asia::Makassar)?;
        assert_eq!(r.method, "maintenance.add");
        Ok(serde_json::from_str(&r.json).unwrap())
    }

    #[test]
    fn weekly_window() {
        let v = add(&[
            "--device",
            "dinkes-rtr",
            "--weekly",
            "mon,thu",
            "--at",
            "22:00",
            "--for",
            "2h",
            "--reason",
            "patch",
        ])
        .unwrap();
        assert_eq!(
            v,
            json!({
                "scope": {"kind": "device", "device": "dinkes-rtr"},
                "schedule": {"kind": "weekly", "days": ["mon", "thu"], "start": "22:00",
                             "duration_s": 7200, "utc_offset_minutes": 480},
                "reason": "patch",
            })
        );
    }

    #[test]
    fn add_and_remove_print_json_when_asked() {
        let parse = |line: &str| Cli::try_parse_from(line.split_whitespace()).unwrap().cmd;
        let reply = json!({"id": 7, "scope": {"kind": "opd", "opd": "x"},
                           "schedule": {"kind": "once", "start_us": 0, "end_us": 3_600_000_000_i64}});
        let tz = chrono_tz::Asia::Jakarta;
        let added = parse("siaga add --opd x --for 1h --json")
            .render(&reply.to_string(), tz)
            .unwrap();
        assert_eq!(serde_json::from_str::<Value>(&added).unwrap(), reply);
        let said = parse("siaga add --opd x --for 1h")
            .render(&reply.to_string(), tz)
            .unwrap();
        assert!(
            said.starts_with("maintenance window 7 added: opd x"),
            "{said}"
        );
        let removed = parse("siaga remove 7 --json").render("{}", tz).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&removed).unwrap(),
            json!({"removed": 7})
        );
    }

    #[test]
    fn one_off_window() {
        let v = add(&[
            "--device",
            "dinkes-rtr",
            "--link",
            "Uplink ke Diskominfo",
            "--from",
            "2026-11-24T22:00:00+07:00",
            "--until",
            "2026-11-25T01:00:00+07:00",
        ])
        .unwrap();
        assert_eq!(v["scope"]["device"], "dinkes-rtr");
        assert_eq!(v["scope"]["link"], "Uplink ke Diskominfo");
        assert_eq!(v["schedule"]["start_us"], 1_795_532_400_000_000_i64);
        assert_eq!(v["schedule"]["end_us"], 1_795_543_200_000_000_i64);
    }

    #[test]
    fn a_window_typed_in_local_time_is_read_in_the_provinces_zone() {
        // The issue's `--from "2026-12-07 22:00"`, in a WITA province.
        let v = add(&[
            "--opd",
            "x",
            "--from",
            "2026-12-07 22:00",
            "--until",
            "2026-12-08 01:30",
        ])
        .unwrap();
        assert_eq!(v["schedule"]["start_us"], 1_796_652_000_000_000_i64);
        assert_eq!(v["schedule"]["end_us"], 1_796_664_600_000_000_i64);
    }

    #[test_case(&["--weekly", "mon", "--at", "22:00", "--for", "1h"] => matches Err(e) if e.contains("--opd"); "scope required")]
    #[test_case(&["--opd", "x"] => matches Err(e) if e.contains("--until or --for"); "no end")]
    #[test_case(&["--link", "dinkes-rtr/uplink", "--for", "1h"] => matches Err(e) if e.contains("--device"); "link without its device")]
    #[test_case(&["--opd", "x", "--weekly", "mon", "--for", "1h"] => matches Err(e) if e.contains("--at"); "weekly needs at")]
    #[test_case(&["--opd", "x", "--weekly", "mon", "--at", "22:00", "--for", "1h", "--utc-offset", "7"] => matches Err(e) if e.contains("--utc-offset"); "bad offset")]
    #[test_case(&["--opd", "x", "--for", "90m"] => matches Ok(_); "for from now")]
    fn add_errors(args: &[&str]) -> Result<Value, String> {
        add(args)
    }

    #[test_case(480, chrono_tz::Asia::Makassar, "weekly mon,thu at 22:00 WITA for 2h" ; "the province's zone by name")]
    #[test_case(420, chrono_tz::Asia::Makassar, "weekly mon,thu at 22:00 UTC+07:00 for 2h" ; "another offset as is")]
    fn a_weekly_window_reads_in_the_provinces_zone(off: i64, tz: chrono_tz::Tz, want: &str) {
        let v = json!({"kind": "weekly", "days": ["mon", "thu"], "start": "22:00",
                       "duration_s": 7200, "utc_offset_minutes": off});
        assert_eq!(schedule_text(&v, tz), want);
    }

    #[test_case("+07:00" => Ok(420); "wib")]
    #[test_case("+09:00" => Ok(540); "wit")]
    #[test_case("-03:30" => Ok(-210); "negative")]
    #[test_case("07:00" => matches Err(_); "no sign")]
    fn offsets(s: &str) -> Result<i32, String> {
        offset_minutes(s)
    }

    #[test]
    fn tickets_table_shows_what_a_helpdesk_needs() {
        let reply = json!([{
            "id": "PJ-2026-0001", "opd": "dinkes", "device": "dinkes-rtr", "link": null,
            "problem": "No reply from dinkes-rtr", "origin": "detected", "step": 1,
            "role": "pemohon", "opened_at": "2026-11-24T03:00:00Z", "recovered_at": null,
            "occurrences": 1, "affected": ["dinkes-sw1", "dinkes-sw2"], "flapping": false,
            "closed": false, "incident": "device:dinkes-rtr:loss"
        }])
        .to_string();
        let cmd = TicketsCmd::default();
        let wide = cmd
            .render_as(&reply, chrono_tz::Asia::Makassar, crate::cli::Output::Wide)
            .unwrap();
        for want in [
            "PJ-2026-0001",
            "dinkes-rtr",
            "pemohon",
            "dinkes-sw1, dinkes-sw2",
            // 03:00 UTC in a WITA province.
            "2026-11-24 11:00:00 WITA",
        ] {
            assert!(wide.contains(want), "{want} in\n{wide}");
        }
        assert!(!wide.contains("T03:00:00Z"), "{wide}");
        // The default table: what the helpdesk scans for.
        let narrow = cmd
            .render_as(&reply, chrono_tz::Asia::Makassar, crate::cli::Output::Table)
            .unwrap();
        for want in [
            "PJ-2026-0001",
            "dinkes",
            "No reply from dinkes-rtr",
            "1 pemohon",
        ] {
            assert!(narrow.contains(want), "{want} in\n{narrow}");
        }
        let json_out = TicketsCmd {
            open: true,
            json: true,
            ..TicketsCmd::default()
        }
        .render(&reply, chrono_tz::Asia::Makassar)
        .unwrap();
        let back: Value = serde_json::from_str(&json_out).unwrap();
        assert_eq!(back[0]["affected"][1], "dinkes-sw2");
    }

    #[test]
    fn tickets_filter_by_opd_state_step_and_overdue() {
        let reply = json!([
            {"id": "PJ-2026-0001", "opd": "dinkes", "step": 1, "closed": false,
             "overdue": true, "recovered_at": null},
            {"id": "PJ-2026-0002", "opd": "dishub", "step": 4, "closed": false,
             "overdue": false, "recovered_at": "2026-11-24T03:00:00Z"},
            {"id": "PJ-2026-0003", "opd": "dinkes", "step": 9, "closed": true,
             "overdue": false, "recovered_at": "2026-11-24T03:00:00Z"}
        ])
        .to_string();
        let ids = |args: &[&str]| -> Vec<String> {
            #[derive(clap::Parser)]
            struct Cli {
                #[command(flatten)]
                cmd: TicketsCmd,
            }
            let mut argv = vec!["tickets", "--json"];
            argv.extend(args);
            let cli = <Cli as clap::Parser>::try_parse_from(argv).unwrap();
            let out = cli
                .cmd
                .render_as(&reply, chrono_tz::Asia::Jakarta, crate::cli::Output::Table)
                .unwrap();
            let v: Value = serde_json::from_str(&out).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|t| s(&t["id"]).trim_start_matches("PJ-2026-").to_string())
                .collect()
        };
        assert_eq!(ids(&[]), ["0001", "0002", "0003"]);
        assert_eq!(ids(&["--opd", "dinkes"]), ["0001", "0003"]);
        assert_eq!(ids(&["--state", "open"]), ["0001", "0002"]);
        assert_eq!(ids(&["--state", "closed"]), ["0003"]);
        assert_eq!(ids(&["--state", "recovered"]), ["0002"]);
        assert_eq!(ids(&["--step", "4"]), ["0002"]);
        assert_eq!(ids(&["--overdue"]), ["0001"]);
        assert_eq!(ids(&["--opd", "dinkes", "--state", "open"]), ["0001"]);
    }
}
