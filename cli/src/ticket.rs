//! The `siaga` commands of the `Tickets` service: what each asks and how
//! its answer is shown.
//!
//! `siaga tickets [--opd …] [--state …] [--step N] [--overdue] [--mine]
//! [--json]`, `siaga ticket show ID [--json]`, `siaga maintenance
//! add|list|remove`.

use std::time::Duration;

use chrono::{NaiveTime, Utc};
use clap::builder::TypedValueParser as _;
use clap::{ArgGroup, Args, Subcommand};

use siaga_proto::v1::list_tickets_request::State as TicketState;
use siaga_proto::v1::{self, tickets_client::TicketsClient};
use tonic::transport::Channel;

use crate::client::{CliError, Output, SiagaConfig, table};

/// `siaga tickets`.
#[derive(Debug, Clone, Default, Args)]
pub struct TicketsCmd {
    /// Only tickets not closed yet (as --state open).
    #[arg(long)]
    pub open: bool,
    /// Only this OPD's tickets, e.g. --opd dinkes.
    #[arg(long)]
    pub opd: Option<String>,
    /// Only tickets in this state: open, closed or recovered (the fault
    /// is gone, the ticket not closed yet), e.g. --state recovered.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TicketState::ALL.iter().map(|s| s.word()))
        .try_map(|s| s.parse::<TicketState>()))]
    pub state: Option<TicketState>,
    /// Only tickets at this SOP step, e.g. --step 4.
    #[arg(long)]
    pub step: Option<u32>,
    /// Only tickets past their time standard.
    #[arg(long)]
    pub overdue: bool,
    /// Only open tickets waiting on you: handed to you by name, or at a
    /// step one of your roles takes.
    #[arg(long)]
    pub mine: bool,
    /// Print a JSON array (the tickets in proto3 JSON).
    #[arg(long)]
    pub json: bool,
}

fn tickets_client(ch: Channel) -> TicketsClient<Channel> {
    TicketsClient::new(ch).max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::Message(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// A time of an answer as people read it (local, with the zone); empty
/// when unset.
fn local(t: Option<&pbjson_types::Timestamp>, tz: chrono_tz::Tz) -> String {
    t.map(|t| crate::client::local_time(tz, siaga_proto::time::time(t)))
        .unwrap_or_default()
}

/// `-` for an empty text.
/// An enum's word, or empty when it is not set (shown as `-`).
pub(crate) fn set_word(set: bool, word: &'static str) -> &'static str {
    if set { word } else { "" }
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

impl TicketsCmd {
    /// The first page's request: the filters, applied by the collector.
    pub fn request(&self) -> v1::ListTicketsRequest {
        v1::ListTicketsRequest {
            page_size: 0,
            page_token: String::new(),
            opd: self.opd.clone().unwrap_or_default(),
            state: match (self.state, self.open) {
                (Some(s), _) => s,
                (None, true) => TicketState::Open,
                (None, false) => TicketState::Unspecified,
            }
            .into(),
            step: self.step,
            overdue: self.overdue,
            mine: self.mine,
        }
    }

    /// Runs `siaga tickets`: every page, then the table or the JSON array.
    pub async fn run(&self, cfg: &SiagaConfig, out: Output) -> Result<(), CliError> {
        let c = tickets_client(crate::client::channel(cfg).await?);
        let all = crate::client::every_page(cfg, |page_token| {
            let mut c = c.clone();
            let r = v1::ListTicketsRequest {
                page_token,
                ..self.request()
            };
            async move {
                let r = c
                    .list_tickets(crate::client::request(r))
                    .await?
                    .into_inner();
                Ok((r.tickets, r.next_page_token))
            }
        })
        .await?;
        if self.json {
            return print_json(&all);
        }
        println!("{}", self.render_as(&all, cfg.zone(), out));
        Ok(())
    }

    fn render_as(&self, tickets: &[v1::Ticket], tz: chrono_tz::Tz, output: Output) -> String {
        // The default table keeps what the helpdesk scans for and fits an
        // 80-column terminal; -o wide and -o plain have every column.
        let narrow = output == Output::Table;
        let zone = tz.name();
        let abbr = siaga_proto::zone::offset(zone).map_or_else(|_| zone.to_string(), |z| z.1);
        let due_header = format!("due ({abbr})");
        let mut t = if narrow {
            table(output, &["id", "opd", "problem", "turn", &due_header])
        } else {
            table(
                output,
                &[
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
                ],
            )
        };
        for x in tickets {
            let subject = match (x.device.as_str(), x.link.as_str()) {
                ("", _) => "-".into(),
                (d, "") => d.to_string(),
                (d, l) => format!("{d} / {l}"),
            };
            let mut problem = dash(&x.problem);
            if x.flapping {
                problem.push_str(" [flapping]");
            }
            let role = if x.closed {
                "closed".into()
            } else if x.assignee.is_empty() {
                dash(&x.role)
            } else {
                format!("{} ({})", dash(&x.role), x.assignee)
            };
            let late = if x.overdue { " LATE" } else { "" };
            if narrow {
                let due = x.due_at.as_ref().map_or_else(
                    || "-".to_string(),
                    |d| {
                        format!(
                            "{}{late}",
                            siaga_proto::time::time(d)
                                .with_timezone(&tz)
                                .format("%Y-%m-%d %H:%M")
                        )
                    },
                );
                let turn = if x.closed {
                    role
                } else {
                    format!("{} {role}", x.step)
                };
                t.add_row(vec![x.id.clone(), dash(&x.opd), problem, turn, due]);
                continue;
            }
            t.add_row(vec![
                x.id.clone(),
                dash(&x.opd),
                subject,
                problem,
                x.step.to_string(),
                role,
                match &x.due_at {
                    Some(d) => format!("{}{late}", local(Some(d), tz)),
                    None => "-".into(),
                },
                local(x.opened_at.as_ref(), tz),
                local(x.recovered_at.as_ref(), tz),
                x.occurrences.to_string(),
                x.affected.join(", "),
            ]);
        }
        crate::client::show(output, &t)
    }
}

/// Every record of ticket `id`'s audit trail, page by page.
pub async fn audit_records(cfg: &SiagaConfig, id: &str) -> Result<Vec<v1::AuditRecord>, CliError> {
    let c = tickets_client(crate::client::channel(cfg).await?);
    crate::client::every_page(cfg, |page_token| {
        let mut c = c.clone();
        let id = id.to_string();
        async move {
            let r = c
                .list_audit_records(crate::client::request(v1::ListAuditRecordsRequest {
                    id,
                    page_size: 0,
                    page_token,
                }))
                .await?
                .into_inner();
            Ok((r.records, r.next_page_token))
        }
    })
    .await
}

/// `siaga ticket show`.
#[derive(Debug, Clone, Subcommand)]
pub enum TicketShowCmd {
    /// One ticket with its evidence and events.
    Show {
        /// Ticket number, e.g. PJ-2026-0001.
        id: String,
        /// Print JSON (the ticket in proto3 JSON).
        #[arg(long)]
        json: bool,
    },
}

impl TicketShowCmd {
    /// Runs `siaga ticket show`.
    pub async fn run(&self, cfg: &SiagaConfig, out: Output) -> Result<(), CliError> {
        let TicketShowCmd::Show { id, json } = self;
        let mut c = tickets_client(crate::client::channel(cfg).await?);
        let d = c
            .get_ticket(crate::client::request(v1::GetTicketRequest {
                id: id.clone(),
            }))
            .await
            .map_err(|s| crate::client::status_error(cfg, s))?
            .into_inner();
        if *json {
            return print_json(&d);
        }
        println!("{}", render_detail(&d, out, cfg.zone()));
        Ok(())
    }
}

/// `siaga ticket show` as text.
fn render_detail(d: &v1::TicketDetail, o: Output, tz: chrono_tz::Tz) -> String {
    let v = d.ticket.clone().unwrap_or_default();
    let mut out = String::new();
    let line = |out: &mut String, k: &str, val: String| {
        out.push_str(&format!("{k:<12} {val}\n"));
    };
    line(&mut out, "ticket", dash(&v.id));
    line(&mut out, "opd", dash(&v.opd));
    line(&mut out, "device", dash(&v.device));
    line(&mut out, "link", dash(&v.link));
    line(&mut out, "problem", dash(&v.problem));
    line(
        &mut out,
        "origin",
        dash(set_word(v.origin().is_set(), v.origin().word())),
    );
    let turn = if v.closed {
        "closed".to_string()
    } else {
        format!("step {} ({})", v.step, dash(&v.role))
    };
    line(&mut out, "turn", turn);
    line(&mut out, "opened", local(v.opened_at.as_ref(), tz));
    line(&mut out, "recovered", local(v.recovered_at.as_ref(), tz));
    line(&mut out, "occurrences", v.occurrences.to_string());
    line(&mut out, "flapping", v.flapping.to_string());
    line(&mut out, "affected", v.affected.join(", "));
    out.push_str("\nevents:\n");
    for n in &d.notes {
        out.push_str(&format!(
            "  {}  {}\n",
            local(n.at.as_ref(), tz),
            dash(&n.text)
        ));
    }
    for r in &d.trail {
        let e = r.event.clone().unwrap_or_default();
        out.push_str(&format!(
            "  {}  step {} {} by {}\n",
            local(e.at.as_ref(), tz),
            e.step,
            e.kind(),
            dash(&e.user)
        ));
    }
    out.push_str(&format!(
        "\nevidence ({} readings, newest last):\n",
        d.evidence.len()
    ));
    let skip = d.evidence.len().saturating_sub(10);
    for r in d.evidence.iter().skip(skip) {
        let worst = r
            .findings
            .iter()
            .filter(|f| f.level() != v1::finding::Level::Up)
            .map(|f| {
                format!(
                    "{} {} ({})",
                    dash(&f.problem),
                    serde_json::json!(f.value),
                    dash(set_word(f.level().is_set(), f.level().word()))
                )
            })
            .collect::<Vec<_>>();
        let what = if worst.is_empty() {
            "all within thresholds".to_string()
        } else {
            worst.join(", ")
        };
        let device = r.sample.as_ref().map_or("", |s| s.device.as_str());
        out.push_str(&format!(
            "  {}  {}  {}\n",
            local(r.at.as_ref(), tz),
            dash(device),
            what
        ));
    }
    out.push_str(&format!("\nmeasurements ({}):\n", d.measurements.len()));
    if !d.measurements.is_empty() {
        let list = d
            .measurements
            .iter()
            .map(crate::view::measurement_back)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the collector sent a measurement this siaga cannot read: {e}"));
        match list {
            Ok(list) => out.push_str(&crate::measure::list_table(&list, o, tz)),
            Err(e) => out.push_str(&e),
        }
        out.push('\n');
    }
    out.trim_end().to_string()
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
    /// The window `add` asks for, with the times typed read in zone `tz`
    /// (`None` for `list` and `remove`); bad combinations of options are
    /// errors.
    pub fn add_request(
        &self,
        tz: chrono_tz::Tz,
    ) -> Result<Option<v1::AddMaintenanceWindowRequest>, String> {
        let MaintenanceCmd::Add {
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
        } = self
        else {
            return Ok(None);
        };
        let scope = match (opd, device, link) {
            (Some(o), _, _) => v1::MaintenanceScope {
                kind: v1::maintenance_scope_kind::Kind::Opd.into(),
                opd: o.clone(),
                ..Default::default()
            },
            (_, Some(d), Some(name)) => v1::MaintenanceScope {
                kind: v1::maintenance_scope_kind::Kind::Link.into(),
                device: d.clone(),
                link: name.clone(),
                ..Default::default()
            },
            (_, Some(d), None) => v1::MaintenanceScope {
                kind: v1::maintenance_scope_kind::Kind::Device.into(),
                device: d.clone(),
                ..Default::default()
            },
            _ => return Err("give --opd or --device (with --link for one link)".into()),
        };
        let schedule = if !weekly.is_empty() {
            let dur = duration.ok_or("--weekly needs --for")?;
            v1::MaintenanceSchedule {
                kind: v1::maintenance_schedule::Kind::Weekly.into(),
                days: weekly.clone(),
                start_time: at.clone().ok_or("--weekly needs --at HH:MM")?,
                duration_s: dur.as_secs(),
                utc_offset_minutes: match utc_offset {
                    Some(o) => offset_minutes(o)?,
                    None => zone_minutes(tz),
                },
                ..Default::default()
            }
        } else {
            let now = Utc::now();
            let start = match from {
                Some(f) => crate::when::point(f, tz, now).map_err(|e| format!("--from: {e}"))?,
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
            v1::MaintenanceSchedule {
                kind: v1::maintenance_schedule::Kind::Once.into(),
                start: Some(siaga_proto::time::ts(start)),
                end: Some(siaga_proto::time::ts(end)),
                ..Default::default()
            }
        };
        Ok(Some(v1::AddMaintenanceWindowRequest {
            scope: Some(scope),
            schedule: Some(schedule),
            reason: reason.clone(),
        }))
    }

    /// Runs `siaga maintenance …` on the `Tickets` service.
    pub async fn run(&self, cfg: &SiagaConfig, out: Output) -> Result<(), CliError> {
        let tz = cfg.zone();
        let fail = |s| crate::client::status_error(cfg, s);
        let mut c = tickets_client(crate::client::channel(cfg).await?);
        match self {
            MaintenanceCmd::List { json } => {
                let all = crate::client::every_page(cfg, |page_token| {
                    let mut c = c.clone();
                    async move {
                        let r = c
                            .list_maintenance_windows(crate::client::request(
                                v1::ListMaintenanceWindowsRequest {
                                    page_size: 0,
                                    page_token,
                                },
                            ))
                            .await?
                            .into_inner();
                        Ok((r.windows, r.next_page_token))
                    }
                })
                .await?;
                if *json {
                    return print_json(&all);
                }
                println!("{}", windows_table(&all, out, tz));
            }
            MaintenanceCmd::Remove { id, json } => {
                c.remove_maintenance_window(crate::client::request(
                    v1::RemoveMaintenanceWindowRequest { id: *id },
                ))
                .await
                .map_err(fail)?;
                if *json {
                    return print_json(&serde_json::json!({ "removed": id }));
                }
                println!("maintenance window {id} removed");
            }
            MaintenanceCmd::Add { .. } => {
                let r = self
                    .add_request(tz)
                    .map_err(CliError::Usage)?
                    .ok_or_else(|| CliError::Message("not an add".into()))?;
                let w = c
                    .add_maintenance_window(crate::client::request(r))
                    .await
                    .map_err(fail)?
                    .into_inner();
                if let MaintenanceCmd::Add { json: true, .. } = self {
                    return print_json(&w);
                }
                println!(
                    "maintenance window {} added: {}, {}",
                    w.id,
                    scope_text(w.scope.as_ref()),
                    schedule_text(w.schedule.as_ref(), tz)
                );
            }
        }
        Ok(())
    }
}

fn windows_table(windows: &[v1::MaintenanceWindow], o: Output, tz: chrono_tz::Tz) -> String {
    let mut t = table(o, &["id", "covers", "when", "reason", "by"]);
    for w in windows {
        t.add_row(vec![
            w.id.to_string(),
            scope_text(w.scope.as_ref()),
            schedule_text(w.schedule.as_ref(), tz),
            dash(&w.reason),
            dash(&w.created_by),
        ]);
    }
    crate::client::show(o, &t)
}

fn scope_text(v: Option<&v1::MaintenanceScope>) -> String {
    let Some(v) = v else {
        return "-".into();
    };
    match v.kind() {
        v1::maintenance_scope_kind::Kind::Opd => format!("opd {}", v.opd),
        v1::maintenance_scope_kind::Kind::Device => format!("device {}", v.device),
        v1::maintenance_scope_kind::Kind::Link => format!("link {}/{}", v.device, v.link),
        v1::maintenance_scope_kind::Kind::Unspecified => "-".into(),
    }
}

fn schedule_text(v: Option<&v1::MaintenanceSchedule>, tz: chrono_tz::Tz) -> String {
    let Some(v) = v else {
        return "-".into();
    };
    match v.kind() {
        v1::maintenance_schedule::Kind::Once => format!(
            "{} – {}",
            local(v.start.as_ref(), tz),
            local(v.end.as_ref(), tz)
        ),
        v1::maintenance_schedule::Kind::Weekly => {
            let off = i64::from(v.utc_offset_minutes);
            // The province's zone by its name (WIB); another offset as is.
            let ours = siaga_proto::zone::offset(tz.name())
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
                v.days.join(","),
                v.start_time,
                humantime::format_duration(Duration::from_secs(v.duration_s))
            )
        }
        v1::maintenance_schedule::Kind::Unspecified => "-".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;
    use serde_json::{Value, json};
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
        let r = cli
            .cmd
            .add_request(chrono_tz::Asia::Makassar)?
            .expect("an add");
        // What the request says, field by field.
        let scope = r.scope.as_ref().unwrap();
        let scope = match scope.kind().word() {
            "opd" => json!({"kind": "opd", "opd": scope.opd}),
            "device" => json!({"kind": "device", "device": scope.device}),
            "link" => json!({"kind": "link", "device": scope.device, "link": scope.link}),
            other => panic!("scope kind {other:?}"),
        };
        let s = r.schedule.as_ref().unwrap();
        let us = |t: &Option<pbjson_types::Timestamp>| {
            t.as_ref()
                .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
        };
        let schedule = match s.kind().word() {
            "once" => json!({"kind": "once", "start_us": us(&s.start), "end_us": us(&s.end)}),
            "weekly" => json!({"kind": "weekly", "days": s.days, "start": s.start_time,
                               "duration_s": s.duration_s, "utc_offset_minutes": s.utc_offset_minutes}),
            other => panic!("schedule kind {other:?}"),
        };
        Ok(json!({"scope": scope, "schedule": schedule, "reason": r.reason}))
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

    #[test_case(480, chrono_tz::Asia::Makassar, "weekly mon,thu at 22:00 WITA for 2h" ; "the province's zone by name")]
    #[test_case(420, chrono_tz::Asia::Makassar, "weekly mon,thu at 22:00 UTC+07:00 for 2h" ; "another offset as is")]
    fn a_weekly_window_reads_in_the_provinces_zone(off: i32, tz: chrono_tz::Tz, want: &str) {
        let v = v1::MaintenanceSchedule {
            kind: v1::maintenance_schedule::Kind::Weekly.into(),
            days: vec!["mon".into(), "thu".into()],
            start_time: "22:00".into(),
            duration_s: 7200,
            utc_offset_minutes: off,
            ..Default::default()
        };
        assert_eq!(schedule_text(Some(&v), tz), want);
    }

    #[test]
    fn add_and_remove_take_json() {
        let parse = |line: &str| Cli::try_parse_from(line.split_whitespace()).unwrap().cmd;
        assert!(matches!(
            parse("siaga add --opd x --for 1h --json"),
            MaintenanceCmd::Add { json: true, .. }
        ));
        assert!(matches!(
            parse("siaga remove 7 --json"),
            MaintenanceCmd::Remove { id: 7, json: true }
        ));
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

    #[test_case("+07:00" => Ok(420); "wib")]
    #[test_case("+09:00" => Ok(540); "wit")]
    #[test_case("-03:30" => Ok(-210); "negative")]
    #[test_case("07:00" => matches Err(_); "no sign")]
    fn offsets(s: &str) -> Result<i32, String> {
        offset_minutes(s)
    }

    #[test]
    fn tickets_table_shows_what_a_helpdesk_needs() {
        let t = v1::Ticket {
            id: "PJ-2026-0001".into(),
            opd: "dinkes".into(),
            device: "dinkes-rtr".into(),
            problem: "No reply from dinkes-rtr".into(),
            origin: v1::ticket::Origin::Detected.into(),
            step: 1,
            role: "pemohon".into(),
            opened_at: Some(pbjson_types::Timestamp {
                seconds: 1_795_489_200,
                nanos: 0,
            }),
            occurrences: 1,
            affected: vec!["dinkes-sw1".into(), "dinkes-sw2".into()],
            incident: "device:dinkes-rtr:loss".into(),
            ..Default::default()
        };
        let cmd = TicketsCmd::default();
        let wide = cmd.render_as(
            std::slice::from_ref(&t),
            chrono_tz::Asia::Makassar,
            Output::Wide,
        );
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
        let narrow = cmd.render_as(
            std::slice::from_ref(&t),
            chrono_tz::Asia::Makassar,
            Output::Table,
        );
        for want in [
            "PJ-2026-0001",
            "dinkes",
            "No reply from dinkes-rtr",
            "1 pemohon",
        ] {
            assert!(narrow.contains(want), "{want} in\n{narrow}");
        }
        // --json is the proto3 JSON of the tickets.
        let back: Value = serde_json::to_value(vec![t]).unwrap();
        assert_eq!(back[0]["affected"][1], "dinkes-sw2");
        assert_eq!(back[0]["opened_at"], "2026-11-24T03:00:00+00:00");
    }

    #[test]
    fn tickets_filters_go_to_the_collector() {
        let request = |args: &[&str]| -> v1::ListTicketsRequest {
            #[derive(clap::Parser)]
            struct Cli {
                #[command(flatten)]
                cmd: TicketsCmd,
            }
            let mut argv = vec!["tickets", "--json"];
            argv.extend(args);
            <Cli as clap::Parser>::try_parse_from(argv)
                .unwrap()
                .cmd
                .request()
        };
        assert_eq!(request(&[]), v1::ListTicketsRequest::default());
        assert_eq!(request(&["--opd", "dinkes"]).opd, "dinkes");
        let state = |args: &[&str]| request(args).state();
        assert_eq!(state(&["--state", "recovered"]), TicketState::Recovered);
        assert_eq!(state(&["--open"]), TicketState::Open);
        assert_eq!(state(&["--open", "--state", "closed"]), TicketState::Closed);
        assert_eq!(request(&["--step", "4"]).step, Some(4));
        assert!(request(&["--overdue"]).overdue);
        assert!(request(&["--mine"]).mine);
    }

    #[test]
    fn ticket_show_names_the_origin_and_the_levels_in_words() {
        use v1::finding::Level;
        let finding = |problem: &str, level: Level, value: f64| v1::Finding {
            problem: problem.into(),
            level: level.into(),
            value,
            ..Default::default()
        };
        let d = v1::TicketDetail {
            ticket: Some(v1::Ticket {
                id: "PJ-2026-0001".into(),
                origin: v1::ticket::Origin::Letter.into(),
                ..Default::default()
            }),
            evidence: vec![
                v1::EvidenceReading {
                    findings: vec![
                        finding("loss", Level::Down, 100.0),
                        finding("rtt", Level::Up, 1.0),
                        finding("jitter", Level::Degraded, 30.0),
                    ],
                    ..Default::default()
                },
                v1::EvidenceReading {
                    findings: vec![finding("loss", Level::Up, 0.0)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let text = render_detail(&d, Output::Table, chrono_tz::Asia::Jakarta);
        let origin = text.lines().find(|l| l.contains("origin")).unwrap();
        assert!(origin.ends_with("letter"), "{text}");
        assert!(
            text.contains("loss 100.0 (down), jitter 30.0 (degraded)"),
            "{text}"
        );
        assert!(text.contains("all within thresholds"), "{text}");
        assert!(!text.contains("rtt 1.0"), "{text}");
    }
}
