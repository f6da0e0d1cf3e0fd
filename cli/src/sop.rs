//! The `siaga` commands of the SOP chain: what each asks and how its answer
//! is shown. `siaga ticket new|update|void|audit` use the `Tickets` service;
//! `siaga ticket dispose|return|acknowledge|turn` and `siaga inbox` the
//! `Sop` service; `siaga ticket card` and `siaga register` the `Documents`
//! service; `siaga user list|grant|revoke` the `Users` service; the measurement
//! commands (`measure.rs`) the `Measure` service.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};

use siaga_proto::v1::{self, users_client::UsersClient};
use tonic::transport::Channel;

use crate::client::{CliError, Output, SiagaConfig, local_time, status_error};
use crate::view::{ActionReply, AuditRecord, EventKind, InboxItem, Origin, TicketView};

/// `siaga ticket …` (the SOP actions).
#[derive(Debug, Clone, Subcommand)]
pub enum TicketCmd {
    /// Complete the current step and hand the ticket to the next.
    Dispose {
        /// Ticket number, e.g. PJ-2026-0001.
        id: String,
        /// Hand it to this user (who must be able to take the next step).
        #[arg(long)]
        to: Option<String>,
        /// Note on the disposition.
        #[arg(long)]
        note: Option<String>,
        /// At a step that needs measurements before and after the work: why there are none.
        #[arg(long, alias = "no-measure-reason")]
        no_measurement_reason: Option<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send the ticket one step back.
    Return {
        /// Ticket number.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Keep the follow-up status current (Tim Teknis, step 6).
    Update {
        /// Ticket number.
        id: String,
        /// The status.
        #[arg(long)]
        status: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Void a mistaken or duplicate ticket (the roles in the SOP file's
    /// `void_roles`; default kabid_aptika, kepala_dinas, admin). It is closed
    /// with the reason, kept in the trail and shown as void in the register.
    Void {
        /// Ticket number.
        id: String,
        /// Why (e.g. "duplicate of PJ-2026-0001").
        #[arg(long)]
        reason: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record the OPD's acknowledgement of the work report.
    Acknowledge {
        /// Ticket number.
        id: String,
        /// Who acknowledged: "NAME, JABATAN".
        #[arg(long)]
        by: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enter a ticket from an OPD's request letter (pemohon of that OPD, helpdesk or admin).
    New {
        /// The OPD.
        #[arg(long)]
        opd: String,
        /// The letter's number.
        #[arg(long)]
        letter_number: String,
        /// The letter's date, YYYY-MM-DD.
        #[arg(long, value_parser = crate::usage::date_arg)]
        letter_date: NaiveDate,
        /// The letter's subject.
        #[arg(long)]
        subject: String,
        /// The device concerned.
        #[arg(long)]
        device: Option<String>,
        /// The link concerned.
        #[arg(long)]
        link: Option<String>,
        /// Count calendar time instead of working time.
        #[arg(long)]
        urgent: bool,
        /// Print the answer as JSON (with `already_filed` when the letter
        /// was filed before).
        #[arg(long)]
        json: bool,
    },
    /// Whose turn it is, until when.
    Turn {
        /// Ticket number.
        id: String,
        /// Print the ticket as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The ticket's audit trail: every event, refusals included.
    Audit {
        /// Ticket number.
        id: String,
        /// Print a JSON array of the hash-chained records.
        #[arg(long)]
        json: bool,
    },
}

/// `siaga ticket card`: the control card (Kartu Kendali / Lembar Disposisi).
#[derive(Debug, Clone, Args)]
pub struct CardCmd {
    /// Ticket number.
    pub id: String,
    /// text or html.
    #[arg(long, default_value = "text", value_parser = ["text", "html"])]
    pub format: String,
    /// id (Bahasa Indonesia) or en.
    #[arg(long, default_value = "id", value_parser = ["id", "en"])]
    pub lang: String,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the card's description as JSON (with `text`, or `out` when
    /// written to a file).
    #[arg(long)]
    pub json: bool,
}

impl CardCmd {
    /// Fetches the card (streamed) and prints it or writes it.
    pub async fn run(&self, cfg: &SiagaConfig) -> Result<String, CliError> {
        let mut c = v1::documents_client::DocumentsClient::new(crate::client::channel(cfg).await?);
        let answer = c
            .get_card(crate::client::request(v1::GetCardRequest {
                ticket: self.id.clone(),
                format: self.format.clone(),
                lang: self.lang.clone(),
            }))
            .await;
        let (_, said) = crate::client::save_document(
            cfg,
            answer,
            self.out.as_deref(),
            "the control card",
            self.json,
        )
        .await?;
        Ok(said)
    }
}

/// `siaga register`: the Buku permintaan Layanan dan Gangguan for a period.
#[derive(Debug, Clone, Args)]
pub struct RegisterCmd {
    /// First day, YYYY-MM-DD.
    #[arg(long, value_parser = crate::usage::date_arg)]
    pub from: NaiveDate,
    /// Last day (included), YYYY-MM-DD.
    #[arg(long, value_parser = crate::usage::date_arg)]
    pub to: NaiveDate,
    /// csv or xlsx.
    #[arg(long, default_value = "csv", value_parser = ["csv", "xlsx"])]
    pub format: String,
    /// id (Bahasa Indonesia) or en.
    #[arg(long, default_value = "id", value_parser = ["id", "en"])]
    pub lang: String,
    /// Write to this file (required for xlsx) instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only this OPD's tickets (a pemohon gets their own OPD's anyway).
    #[arg(long)]
    pub opd: Option<String>,
    /// Print the register's description as JSON (with `text`, or `out`
    /// when written to a file).
    #[arg(long)]
    pub json: bool,
}

/// `siaga inbox`: what waits on me, most urgent first.
#[derive(Debug, Clone, Args)]
pub struct InboxCmd {
    /// Print a JSON array (the inbox items in proto3 JSON).
    #[arg(long)]
    pub json: bool,
}

/// `siaga trails`: every ticket's hash-chained audit trail checked by the
/// serving collector (admin).
#[derive(Debug, Clone, Args)]
pub struct TrailsCmd {
    /// Print a JSON array (the checks in proto3 JSON).
    #[arg(long)]
    pub json: bool,
}

impl TrailsCmd {
    /// Walks every page of the check and prints it; a broken trail is a
    /// failure (exit 1) after the list.
    pub async fn run(&self, cfg: &SiagaConfig, out: Output) -> Result<(), CliError> {
        let c = v1::sop_client::SopClient::new(crate::client::channel(cfg).await?)
            .max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES);
        let all = crate::client::every_page(cfg, |page_token| {
            let mut c = c.clone();
            async move {
                let r = c
                    .verify_audit_trails(crate::client::request(v1::VerifyAuditTrailsRequest {
                        page_size: 0,
                        page_token,
                    }))
                    .await?
                    .into_inner();
                Ok((r.trails, r.next_page_token))
            }
        })
        .await?;
        println!("{}", self.render(out, &all).map_err(CliError::Message)?);
        let broken = all.iter().filter(|t| !t.ok).count();
        if broken > 0 {
            return Err(CliError::Message(format!(
                "{broken} of {} audit trails are broken",
                all.len()
            )));
        }
        Ok(())
    }

    /// A table, or the JSON array.
    pub fn render(&self, o: Output, trails: &[v1::TrailCheck]) -> Result<String, String> {
        if self.json {
            return serde_json::to_string_pretty(trails).map_err(|e| e.to_string());
        }
        if trails.is_empty() {
            return Ok("no tickets yet".into());
        }
        let mut t = crate::client::table(o, &["ticket", "trail", "detail"]);
        for c in trails {
            let detail = match c.index {
                Some(i) => format!("record {i}: {}", c.reason),
                None => c.reason.clone(),
            };
            t.add_row([
                c.ticket.clone(),
                if c.ok { "intact" } else { "BROKEN" }.to_string(),
                detail,
            ]);
        }
        Ok(crate::client::show(o, &t))
    }
}

/// `siaga user …` (admin).
#[derive(Debug, Clone, Subcommand)]
pub enum UserCmd {
    /// Users and their roles.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Give a user a role.
    Grant {
        /// User name.
        name: String,
        /// Role id.
        role: String,
        /// Print the user's roles after the change as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take a role from a user.
    Revoke {
        /// User name.
        name: String,
        /// Role id.
        role: String,
        /// Print the user's roles after the change as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's web console password: the admin for anyone, a person
    /// for themself. Read from standard input when it is not a terminal
    /// (one line), else asked twice without echo; at least 10 characters.
    Passwd {
        /// User name.
        name: String,
        /// Print the user after the change as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enrol a second factor for a user's web console login (a new secret
    /// for an authenticator app, replacing any earlier one): prints the
    /// otpauth:// URI and its QR code. The admin for anyone, a person for
    /// themself.
    Totp {
        /// User name.
        name: String,
    },
}

/// The new password of `name`: a line of standard input when it is not a
/// terminal, else typed twice without echo. Shorter than the minimum: refused.
pub fn read_new_password(name: &str) -> Result<String, CliError> {
    use std::io::{BufRead as _, IsTerminal as _};
    let min = siaga_proto::MIN_PASSWORD;
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password(format!("New web console password for {name}: "))
            .map_err(|e| CliError::Message(format!("reading the password: {e}")))?;
        if first.chars().count() < min {
            return Err(CliError::Usage(format!(
                "the password is shorter than {min} characters"
            )));
        }
        let again = rpassword::prompt_password("The same again: ")
            .map_err(|e| CliError::Message(format!("reading the password: {e}")))?;
        if again != first {
            return Err(CliError::Usage(
                "the two passwords differ; nothing was changed".into(),
            ));
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::Message(format!("reading the password from stdin: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.chars().count() < min {
        return Err(CliError::Usage(format!(
            "the password is shorter than {min} characters"
        )));
    }
    Ok(password)
}

fn when(t: Option<DateTime<Utc>>, local: &Option<String>) -> String {
    match (local, t) {
        (Some(l), _) => l.clone(),
        (None, Some(t)) => t.to_rfc3339(),
        (None, None) => "-".into(),
    }
}

/// "1h 05m", "-2h 10m" (overdue), "3d 4h".
pub fn left_label(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let m = secs.unsigned_abs() / 60;
    let (h, m) = (m / 60, m % 60);
    if h >= 24 {
        format!("{sign}{}d {}h", h / 24, h % 24)
    } else {
        format!("{sign}{h}h {m:02}m")
    }
}

impl TicketCmd {
    /// Whether the command prints JSON.
    pub fn json(&self) -> bool {
        match self {
            TicketCmd::Dispose { json, .. }
            | TicketCmd::Return { json, .. }
            | TicketCmd::Update { json, .. }
            | TicketCmd::Void { json, .. }
            | TicketCmd::Acknowledge { json, .. }
            | TicketCmd::New { json, .. }
            | TicketCmd::Turn { json, .. }
            | TicketCmd::Audit { json, .. } => *json,
        }
    }

    /// The typed request of `ticket dispose`.
    pub fn dispose_request(&self) -> Option<v1::DisposeTicketRequest> {
        let TicketCmd::Dispose {
            id,
            to,
            note,
            no_measurement_reason,
            ..
        } = self
        else {
            return None;
        };
        Some(v1::DisposeTicketRequest {
            id: id.clone(),
            to: to.clone().unwrap_or_default(),
            note: note.clone(),
            no_measurement_reason: no_measurement_reason.clone(),
        })
    }

    /// What to print for the answer of `ticket turn`, times in zone `tz`.
    pub fn render_turn(t: &v1::Ticket, json: bool, tz: chrono_tz::Tz) -> Result<String, String> {
        if json {
            return serde_json::to_string_pretty(t).map_err(|e| e.to_string());
        }
        Ok(turn_line(&crate::view::view(t), tz))
    }

    /// The typed request of `ticket new`.
    pub fn new_request(&self) -> Option<v1::NewTicketRequest> {
        let TicketCmd::New {
            opd,
            letter_number,
            letter_date,
            subject,
            device,
            link,
            urgent,
            ..
        } = self
        else {
            return None;
        };
        Some(v1::NewTicketRequest {
            opd: opd.clone(),
            letter_number: letter_number.clone(),
            letter_date: letter_date.to_string(),
            subject: subject.clone(),
            device: device.clone().unwrap_or_default(),
            link: link.clone().unwrap_or_default(),
            urgent: *urgent,
        })
    }

    /// What to print for the answer of `ticket
    /// new|update|void|dispose|return|acknowledge`.
    pub fn render_action(
        &self,
        r: &v1::TicketActionResponse,
        json: bool,
    ) -> Result<String, String> {
        if json {
            return serde_json::to_string_pretty(r).map_err(|e| e.to_string());
        }
        let (Some(t), Some(e)) = (&r.ticket, &r.event) else {
            return Err("the collector sent an answer without its ticket".into());
        };
        let event = crate::view::event_back(e)
            .ok_or("the collector sent an event this siaga does not know; try --json")?;
        Ok(action_text(&ActionReply {
            ticket: crate::view::view(t),
            event,
            already_filed: r.already_filed,
        }))
    }

    /// Runs the command on the `Tickets` service (`new`, `update`, `void`,
    /// `audit`) or the `Sop` service (`dispose`, `return`, `acknowledge`,
    /// `turn`) and prints what it answered.
    pub async fn run_typed(&self, cfg: &SiagaConfig, o: Output) -> Result<(), CliError> {
        use siaga_proto::v1::sop_client::SopClient;
        use siaga_proto::v1::tickets_client::TicketsClient;
        let fail = |s| status_error(cfg, s);
        let tz = cfg.zone();
        let (reply, json) = match self {
            TicketCmd::New { json, .. } => {
                let Some(r) = self.new_request() else {
                    return Err(CliError::Message("not a new ticket".into()));
                };
                let mut c = TicketsClient::new(crate::client::channel(cfg).await?);
                let reply = c
                    .new_ticket(crate::client::request(r))
                    .await
                    .map_err(fail)?;
                (reply.into_inner(), *json)
            }
            TicketCmd::Update { id, status, json } => {
                let mut c = TicketsClient::new(crate::client::channel(cfg).await?);
                let r = v1::UpdateTicketRequest {
                    id: id.clone(),
                    status: status.clone(),
                };
                let reply = c
                    .update_ticket(crate::client::request(r))
                    .await
                    .map_err(fail)?;
                (reply.into_inner(), *json)
            }
            TicketCmd::Void { id, reason, json } => {
                let mut c = TicketsClient::new(crate::client::channel(cfg).await?);
                let r = v1::VoidTicketRequest {
                    id: id.clone(),
                    reason: reason.clone(),
                };
                let reply = c
                    .void_ticket(crate::client::request(r))
                    .await
                    .map_err(fail)?;
                (reply.into_inner(), *json)
            }
            TicketCmd::Audit { id, json } => {
                let records = crate::ticket::audit_records(cfg, id).await?;
                let out = if *json {
                    serde_json::to_string_pretty(&records)
                        .map_err(|e| CliError::Message(e.to_string()))?
                } else {
                    let recs: Vec<AuditRecord> = records
                        .iter()
                        .filter_map(crate::view::record_back)
                        .collect();
                    audit_table(&recs, o, tz)
                };
                println!("{out}");
                return Ok(());
            }
            TicketCmd::Dispose { json, .. } => {
                let Some(r) = self.dispose_request() else {
                    return Err(CliError::Message("not a disposal".into()));
                };
                let mut c = SopClient::new(crate::client::channel(cfg).await?);
                let reply = c
                    .dispose_ticket(crate::client::request(r))
                    .await
                    .map_err(fail)?;
                (reply.into_inner(), *json)
            }
            TicketCmd::Return { id, reason, json } => {
                let mut c = SopClient::new(crate::client::channel(cfg).await?);
                let r = v1::ReturnTicketRequest {
                    id: id.clone(),
                    reason: reason.clone(),
                };
                let reply = c
                    .return_ticket(crate::client::request(r))
                    .await
                    .map_err(fail)?;
                (reply.into_inner(), *json)
            }
            TicketCmd::Acknowledge { id, by, json } => {
                let mut c = SopClient::new(crate::client::channel(cfg).await?);
                let r = v1::AcknowledgeTicketRequest {
                    id: id.clone(),
                    by: by.clone(),
                };
                let reply = c
                    .acknowledge_ticket(crate::client::request(r))
                    .await
                    .map_err(fail)?;
                (reply.into_inner(), *json)
            }
            TicketCmd::Turn { id, json } => {
                let mut c = SopClient::new(crate::client::channel(cfg).await?);
                let t = c
                    .get_turn(crate::client::request(v1::GetTurnRequest {
                        id: id.clone(),
                    }))
                    .await
                    .map_err(fail)?
                    .into_inner();
                let out = Self::render_turn(&t, *json, tz).map_err(CliError::Message)?;
                println!("{out}");
                return Ok(());
            }
        };
        println!(
            "{}",
            self.render_action(&reply, json)
                .map_err(CliError::Message)?
        );
        Ok(())
    }
}

/// One line for the answer to an SOP action.
fn action_text(r: &ActionReply) -> String {
    {
        let t = &r.ticket;
        let next = if let Some(reason) = &t.void_reason {
            format!("void ({reason})")
        } else if t.closed_at.is_some() {
            "selesai (done)".to_string()
        } else {
            let who = match &t.assignee {
                Some(u) => format!("{} ({u})", t.role),
                None => t.role.clone(),
            };
            format!(
                "step {} {who}, due {}",
                t.step,
                when(t.due_at, &t.due_local)
            )
        };
        let acting = r
            .event
            .acting_for
            .as_ref()
            .map(|a| format!(" (acting for {a})"))
            .unwrap_or_default();
        match &r.event.kind {
            EventKind::Opened { .. } if r.already_filed => format!(
                "already filed as ticket {}: letter {} of {}; nothing new opened; now at {next}",
                t.id,
                t.letter_number.as_deref().unwrap_or_default(),
                t.opd
            ),
            EventKind::Opened { .. } => format!("opened {}: now at {next}", t.id),
            EventKind::Disposed { .. } => format!(
                "{}: disposed step {}{acting}; now at {next}",
                t.id, r.event.step
            ),
            EventKind::Returned { .. } => format!(
                "{}: returned from step {}; now at {next}",
                t.id, r.event.step
            ),
            EventKind::StatusUpdated { status } => format!(
                "{}: status \"{status}\" recorded at step {}",
                t.id, r.event.step
            ),
            EventKind::Acknowledged { by, on_behalf } => format!(
                "{}: work report acknowledged by {by}{}",
                t.id,
                if *on_behalf {
                    " (recorded on the OPD's behalf)"
                } else {
                    ""
                }
            ),
            EventKind::Voided { .. } => format!("{}: voided at step {}", t.id, r.event.step),
            _ => format!("{}: now at {next}", t.id),
        }
    }
}

fn turn_line(t: &TicketView, tz: chrono_tz::Tz) -> String {
    if let (Some(c), Some(reason)) = (t.closed_at, &t.void_reason) {
        return format!("{}: void at {} ({reason})", t.id, local_time(tz, c));
    }
    if let Some(c) = t.closed_at {
        return format!("{}: selesai (done) at {}", t.id, local_time(tz, c));
    }
    let who = match &t.assignee {
        Some(u) => format!("{} ({u})", t.role),
        None => t.role.clone(),
    };
    let left = t.time_left_secs.map_or_else(|| "-".into(), left_label);
    format!(
        "{}: step {} {who}, due {} ({left} left{})",
        t.id,
        t.step,
        when(t.due_at, &t.due_local),
        if t.overdue { ", OVERDUE" } else { "" }
    )
}

fn audit_table(recs: &[AuditRecord], o: Output, tz: chrono_tz::Tz) -> String {
    let mut t = crate::client::table(o, &["#", "at", "user", "role", "step", "event", "detail"]);
    for r in recs {
        let e = &r.event;
        let role = match (&e.role, &e.acting_for) {
            (Some(r), Some(f)) => format!("{r} for {f}"),
            (Some(r), None) => r.clone(),
            _ => String::new(),
        };
        let (kind, detail) = audit_detail(&e.kind, tz);
        t.add_row([
            r.index.to_string(),
            local_time(tz, e.at),
            e.user.clone(),
            role,
            e.step.to_string(),
            kind.to_string(),
            detail,
        ]);
    }
    crate::client::show(o, &t)
}

/// "1h 05m" for a number of seconds (at least 0).
fn span(secs: i64) -> String {
    let m = secs.max(0) / 60;
    match (m / 1440, (m % 1440) / 60, m % 60) {
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m:02}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn timing_words(t: &crate::view::Timing) -> String {
    format!(
        "{} ({} of {}, standard {})",
        if t.met { "in time" } else { "LATE" },
        span(t.taken_secs),
        span(t.allowed_secs),
        t.standard
    )
}

/// One trail record in words: its kind and what it says.
fn audit_detail(kind: &EventKind, tz: chrono_tz::Tz) -> (&'static str, String) {
    let join = |parts: Vec<String>| {
        parts
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    };
    match kind {
        EventKind::Opened {
            origin,
            opd,
            sop,
            urgent,
        } => (
            "opened",
            join(vec![
                match origin {
                    Origin::Detected => format!("detected fault at OPD {opd}"),
                    Origin::Letter {
                        number,
                        date,
                        subject,
                    } => format!("letter {number} dated {date} from OPD {opd}: {subject}"),
                },
                format!("SOP {sop}"),
                if *urgent {
                    "urgent".into()
                } else {
                    String::new()
                },
            ]),
        ),
        EventKind::Voided { reason } => ("voided", reason.clone()),
        EventKind::Disposed {
            to_step,
            to_user,
            note,
            timing,
            measurements,
            closed,
            ..
        } => (
            "disposed",
            join(vec![
                if *closed {
                    "done".to_string()
                } else {
                    format!(
                        "to step {to_step}{}",
                        to_user
                            .as_ref()
                            .map(|u| format!(", handed to {u}"))
                            .unwrap_or_default()
                    )
                },
                note.as_ref()
                    .map(|n| format!("note: {n}"))
                    .unwrap_or_default(),
                measurements
                    .as_ref()
                    .map(|m| match &m.waived {
                        Some(w) if !(m.before && m.after) => format!("no measurements: {w}"),
                        _ => "measurements before and after attached".to_string(),
                    })
                    .unwrap_or_default(),
                timing.as_ref().map(timing_words).unwrap_or_default(),
            ]),
        ),
        EventKind::Returned {
            to_step,
            reason,
            timing,
            ..
        } => (
            "returned",
            join(vec![
                format!("to step {to_step}: {reason}"),
                timing.as_ref().map(timing_words).unwrap_or_default(),
            ]),
        ),
        EventKind::StatusUpdated { status } => ("status", status.clone()),
        EventKind::Acknowledged { by, on_behalf } => (
            "acknowledged",
            format!(
                "work report acknowledged by {by}{}",
                if *on_behalf {
                    " (recorded on the OPD's behalf)"
                } else {
                    ""
                }
            ),
        ),
        EventKind::Refused { action, reason } => (
            "REFUSED",
            format!("{} refused: {reason}", action.replace('_', " ")),
        ),
        EventKind::ReportFrozen {
            review_index,
            documents,
        } => (
            "report frozen",
            format!(
                "work report frozen after the review (record #{review_index}): {}",
                documents
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {} sha256 {}",
                            d.format,
                            match d.lang {
                                crate::view::Lang::Id => "id",
                                crate::view::Lang::En => "en",
                            },
                            d.sha256
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        EventKind::Escalated {
            level,
            due_at,
            notify_roles,
            notify_users,
        } => (
            "escalated",
            join(vec![
                format!(
                    "overdue warning level {level}, due {}",
                    local_time(tz, *due_at)
                ),
                format!("told {}", notify_roles.join(", ")),
                if notify_users.is_empty() {
                    String::new()
                } else {
                    format!("and {}", notify_users.join(", "))
                },
            ]),
        ),
    }
}

impl RegisterCmd {
    /// The flags that do not go together, refused before connecting.
    pub fn check(&self) -> Result<(), String> {
        if self.format == "xlsx" && self.out.is_none() {
            return Err(
                "--format xlsx needs --out FILE to write the workbook to, e.g. --out register.xlsx"
                    .into(),
            );
        }
        if self.to < self.from {
            return Err(format!(
                "--to {} is before --from {}: give the last day of the period, e.g. \
                 --from 2026-11-01 --to 2026-11-30",
                self.to, self.from
            ));
        }
        Ok(())
    }

    /// Fetches the register (streamed, the OPDs the caller sees) and
    /// prints the CSV or writes the file.
    pub async fn run(&self, cfg: &SiagaConfig) -> Result<String, CliError> {
        self.check().map_err(crate::client::CliError::Usage)?;
        let mut c = v1::documents_client::DocumentsClient::new(crate::client::channel(cfg).await?);
        let answer = c
            .get_register(crate::client::request(v1::GetRegisterRequest {
                from: self.from.to_string(),
                to: self.to.to_string(),
                format: self.format.clone(),
                lang: self.lang.clone(),
                opd: self.opd.clone().unwrap_or_default(),
            }))
            .await;
        let (_, said) = crate::client::save_document(
            cfg,
            answer,
            self.out.as_deref(),
            "the register",
            self.json,
        )
        .await?;
        Ok(said)
    }
}

impl InboxCmd {
    /// Walks every page of the inbox and prints it.
    pub async fn run(&self, cfg: &SiagaConfig, out: Output) -> Result<(), CliError> {
        let c = v1::sop_client::SopClient::new(crate::client::channel(cfg).await?)
            .max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES);
        let all = crate::client::every_page(cfg, |page_token| {
            let mut c = c.clone();
            async move {
                let r = c
                    .list_inbox(crate::client::request(v1::ListInboxRequest {
                        page_size: 0,
                        page_token,
                    }))
                    .await?
                    .into_inner();
                Ok((r.items, r.next_page_token))
            }
        })
        .await?;
        println!("{}", self.render(out, &all).map_err(CliError::Message)?);
        Ok(())
    }

    /// A table, or the JSON array.
    pub fn render(&self, o: Output, answer: &[v1::InboxItem]) -> Result<String, String> {
        if self.json {
            return serde_json::to_string_pretty(answer).map_err(|e| e.to_string());
        }
        let mut items: Vec<InboxItem> = answer
            .iter()
            .map(|i| InboxItem {
                ticket: i
                    .ticket
                    .as_ref()
                    .map(crate::view::view)
                    .unwrap_or_else(|| crate::view::view(&v1::Ticket::default())),
                assigned_to_me: i.assigned_to_me,
                acting_for: Some(i.acting_for.clone()).filter(|a| !a.is_empty()),
            })
            .collect();
        // The collector pages the inbox by ticket number; shown whole, most
        // urgent first.
        items.sort_by_key(|i| {
            (
                i.ticket.due_at.is_none(),
                i.ticket.due_at,
                i.ticket.id.clone(),
            )
        });
        if items.is_empty() {
            return Ok("nothing waits on you".into());
        }
        let mut t = crate::client::table(
            o,
            &[
                "ticket", "opd", "step", "role", "problem", "due", "left", "",
            ],
        );
        for i in &items {
            let v = &i.ticket;
            let mut flags = Vec::new();
            if v.overdue {
                flags.push("OVERDUE".to_string());
            }
            if i.assigned_to_me {
                flags.push("yours".to_string());
            }
            if let Some(a) = &i.acting_for {
                flags.push(format!("acting for {a}"));
            }
            t.add_row([
                v.id.clone(),
                v.opd.clone(),
                v.step.to_string(),
                v.role.clone(),
                v.problem.clone(),
                when(v.due_at, &v.due_local),
                v.time_left_secs.map_or_else(|| "-".into(), left_label),
                flags.join(", "),
            ]);
        }
        Ok(crate::client::show(o, &t))
    }
}

/// `siaga user totp NAME`: enrols the secret and shows it to the person
/// who will scan it (URI, QR code in the terminal, the secret alone).
async fn enroll_totp(
    c: &mut UsersClient<Channel>,
    cfg: &SiagaConfig,
    name: &str,
) -> Result<String, CliError> {
    let r = c
        .enroll_totp(v1::EnrollTotpRequest { name: name.into() })
        .await
        .map_err(|s| status_error(cfg, s))?
        .into_inner();
    let qr = qrcode::QrCode::new(r.otpauth_uri.as_bytes())
        .map(|q| {
            q.render::<qrcode::render::unicode::Dense1x2>()
                .dark_color(qrcode::render::unicode::Dense1x2::Light)
                .light_color(qrcode::render::unicode::Dense1x2::Dark)
                .quiet_zone(true)
                .build()
        })
        .unwrap_or_default();
    Ok(format!(
        "{name}: second factor enrolled; from the next login the web console asks for \
         the six-digit code.\nScan with an authenticator app (or type the secret {}):\n\n\
         {qr}\n{}\n\nThe URI and the secret are shown only now: keep them from others.",
        r.secret, r.otpauth_uri
    ))
}

impl UserCmd {
    /// Makes the call on the `Users` service; a table, the JSON, or a
    /// confirmation line.
    pub async fn run(&self, ch: Channel, cfg: &SiagaConfig, o: Output) -> Result<String, CliError> {
        let mut c = UsersClient::new(ch);
        let fail = |s| status_error(cfg, s);
        let changed = match self {
            UserCmd::List { json } => {
                let users = crate::client::every_page(cfg, |page_token| {
                    let mut c = c.clone();
                    async move {
                        let r = c
                            .list_users(v1::ListUsersRequest {
                                page_size: 0,
                                page_token,
                            })
                            .await?
                            .into_inner();
                        Ok((r.users, r.next_page_token))
                    }
                })
                .await?;
                if *json {
                    return serde_json::to_string_pretty(&users)
                        .map_err(|e| CliError::Message(e.to_string()));
                }
                let mut t = crate::client::table(o, &["user", "roles", "opd"]);
                for u in users {
                    t.add_row([u.name, u.roles.join(", "), u.opd]);
                }
                return Ok(crate::client::show(o, &t));
            }
            UserCmd::Grant { name, role, .. } => c
                .grant_role(v1::GrantRoleRequest {
                    name: name.clone(),
                    role: role.clone(),
                })
                .await
                .map_err(fail)?,
            UserCmd::Revoke { name, role, .. } => c
                .revoke_role(v1::RevokeRoleRequest {
                    name: name.clone(),
                    role: role.clone(),
                })
                .await
                .map_err(fail)?,
            UserCmd::Totp { name } => return enroll_totp(&mut c, cfg, name).await,
            UserCmd::Passwd { name, json } => {
                let password = read_new_password(name)?;
                let u = c
                    .set_password(v1::SetPasswordRequest {
                        name: name.clone(),
                        password,
                    })
                    .await
                    .map_err(fail)?
                    .into_inner();
                if *json {
                    return serde_json::to_string_pretty(&u)
                        .map_err(|e| CliError::Message(e.to_string()));
                }
                return Ok(format!("{}: web console password set", u.name));
            }
        }
        .into_inner();
        if let UserCmd::Grant { json: true, .. } | UserCmd::Revoke { json: true, .. } = self {
            return serde_json::to_string_pretty(&changed)
                .map_err(|e| CliError::Message(e.to_string()));
        }
        Ok(format!(
            "{}: {}",
            changed.name,
            if changed.roles.is_empty() {
                "no roles".to_string()
            } else {
                changed.roles.join(", ")
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Event, FrozenDocument, Lang, Measurements, SopVersion, Timing};
    use clap::Parser;
    use test_case::test_case;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(Debug, Subcommand)]
    enum Top {
        #[command(subcommand)]
        Ticket(TicketCmd),
        Inbox(InboxCmd),
    }

    fn parse(line: &str) -> Result<Top, String> {
        Cli::try_parse_from(line.split_whitespace())
            .map(|c| c.cmd)
            .map_err(|e| e.to_string())
    }

    /// "2026-11-23 08:00" in WIB.
    fn wib(local: &str) -> DateTime<Utc> {
        let t = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").expect("time");
        t.and_utc() - chrono::Duration::hours(7)
    }

    fn ticket(step: u32, role: &str, due: &str) -> v1::Ticket {
        v1::Ticket {
            id: "PJ-2026-0001".into(),
            opd: "dinkes".into(),
            origin: v1::ticket::Origin::Letter.into(),
            letter_number: "005/9".into(),
            problem: "Putus".into(),
            step,
            role: role.into(),
            due_at: Some(siaga_proto::time::ts(wib(due))),
            due_local: format!("{due} WIB"),
            opened_at: Some(siaga_proto::time::ts(wib("2026-11-23 08:00"))),
            ..Default::default()
        }
    }

    fn action(line: &str, t: v1::Ticket, e: v1::AuditEvent) -> String {
        let Ok(Top::Ticket(c)) = parse(line) else {
            panic!("{line}: not a ticket command");
        };
        let reply = v1::TicketActionResponse {
            ticket: Some(t),
            event: Some(e),
            already_filed: false,
        };
        c.render_action(&reply, c.json()).expect("words")
    }

    #[test]
    fn the_trails_check_prints_each_ticket_and_what_is_broken() {
        let trails = [
            v1::TrailCheck {
                ticket: "PJ-2026-0001".into(),
                ok: true,
                ..Default::default()
            },
            v1::TrailCheck {
                ticket: "PJ-2026-0002".into(),
                ok: false,
                index: Some(3),
                reason: "hash mismatch".into(),
            },
        ];
        let text = TrailsCmd { json: false }
            .render(Output::Table, &trails)
            .expect("text");
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("PJ-")).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("intact"), "{text}");
        assert!(
            lines[1].contains("BROKEN") && lines[1].contains("record 3: hash mismatch"),
            "{text}"
        );
        let json = TrailsCmd { json: true }
            .render(Output::Table, &trails)
            .expect("json");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v[1]["index"], "3", "{json}");
        assert_eq!(
            v[0].get("ok"),
            Some(&serde_json::Value::Bool(true)),
            "{json}"
        );
        assert!(v[0].get("index").is_none(), "{json}");
    }

    /// The answers of the SOP actions, as the `Tickets` and `Sop` services
    /// send them, in one line each.
    #[test]
    fn actions_answer_in_one_line() {
        use v1::audit_event::Detail;
        let opened = v1::AuditEvent {
            user: "helpdesk".into(),
            step: 1,
            detail: Some(Detail::Opened(v1::AuditOpened {
                origin: v1::ticket::Origin::Letter.into(),
                letter_number: "005/9".into(),
                letter_date: "2026-11-20".into(),
                letter_subject: "Putus".into(),
                opd: "dinkes".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let out = action(
            "siaga ticket new --opd dinkes --letter-number 005/9 --letter-date 2026-11-20 --subject Putus",
            ticket(1, "pemohon", "2026-11-24 08:00"),
            opened,
        );
        assert_eq!(
            out,
            "opened PJ-2026-0001: now at step 1 pemohon, due 2026-11-24 08:00 WIB"
        );
        let disposed = |step: u32, acting_for: &str| v1::AuditEvent {
            step,
            acting_for: acting_for.into(),
            detail: Some(Detail::Disposed(v1::AuditDisposed {
                to_step: step + 1,
                ..Default::default()
            })),
            ..Default::default()
        };
        let out = action(
            "siaga ticket dispose PJ-2026-0001",
            ticket(2, "kepala_dinas", "2026-11-24 08:30"),
            disposed(1, ""),
        );
        assert_eq!(
            out,
            "PJ-2026-0001: disposed step 1; now at step 2 kepala_dinas, due 2026-11-24 08:30 WIB"
        );
        let out = action(
            "siaga ticket dispose PJ-2026-0001",
            ticket(3, "kabid_aptika", "2026-11-23 10:00"),
            disposed(2, "kepala_dinas"),
        );
        assert!(out.contains("(acting for kepala_dinas)"), "{out}");
        let mut t = ticket(4, "pranata_komputer", "2026-11-23 10:10");
        t.assignee = "prakom".into();
        let out = action(
            "siaga ticket dispose PJ-2026-0001 --to prakom",
            t.clone(),
            disposed(3, ""),
        );
        assert!(
            out.ends_with("now at step 4 pranata_komputer (prakom), due 2026-11-23 10:10 WIB"),
            "{out}"
        );
        let Ok(Top::Inbox(inbox)) = parse("siaga inbox") else {
            panic!("inbox");
        };
        t.overdue = true;
        t.time_left_secs = Some(-30 * 60);
        let out = inbox
            .render(
                Output::Table,
                &[v1::InboxItem {
                    ticket: Some(t),
                    assigned_to_me: true,
                    acting_for: String::new(),
                }],
            )
            .expect("inbox");
        assert!(out.contains("OVERDUE") && out.contains("-0h 30m"), "{out}");
        assert_eq!(
            inbox.render(Output::Table, &[]).expect("empty"),
            "nothing waits on you"
        );
    }

    #[test_case("siaga register --from 2026-11-01 --to 2026-11-30 --format xlsx", "--format xlsx needs --out FILE" ; "xlsx needs out")]
    #[test_case("siaga register --from 2026-11-30 --to 2026-11-01", "--to 2026-11-01 is before --from 2026-11-30" ; "period backwards")]
    #[test_case("siaga card PJ-2026-0001 --format pdf", "pdf" ; "bad card format")]
    fn bad_document_command_lines(line: &str, words: &str) {
        #[derive(Debug, Parser)]
        struct Docs {
            #[command(subcommand)]
            cmd: Doc,
        }
        #[derive(Debug, Subcommand)]
        enum Doc {
            Register(RegisterCmd),
            Card(CardCmd),
        }
        let err = match Docs::try_parse_from(line.split_whitespace()) {
            Ok(Docs {
                cmd: Doc::Register(r),
            }) => r.check().expect_err("refused"),
            Ok(other) => panic!("parsed: {other:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(words), "{err}");
    }

    #[test_case("siaga ticket return PJ-2026-0001", "--reason" ; "return needs reason")]
    #[test_case("siaga ticket new --opd dinkes --letter-number 1 --letter-date 20-11-2026 --subject x", "letter-date" ; "bad date")]
    fn bad_command_lines(line: &str, words: &str) {
        let err = parse(line).expect_err("refused");
        assert!(err.contains(words), "{err}");
    }

    /// Every kind of trail record, as `siaga ticket audit` prints it: words,
    /// never Rust's debug form (`Letter { number: … }`, `Some(…)`, `Id`).
    #[test]
    fn the_audit_trail_prints_every_record_in_words() {
        let at = |local: &str| wib(local);
        let event = |local: &str, user: &str, step: u32, kind: EventKind| Event {
            at: at(local),
            user: user.into(),
            role: Some(user.into()),
            acting_for: None,
            step,
            handoff: 0,
            kind,
        };
        let timing = Timing {
            standard: "1d".into(),
            started_at: at("2026-11-23 08:00"),
            due_at: at("2026-11-24 08:00"),
            taken_secs: 600,
            allowed_secs: 86_400,
            met: true,
        };
        let kinds = vec![
            event(
                "2026-11-23 08:00",
                "helpdesk",
                1,
                EventKind::Opened {
                    origin: Origin::Letter {
                        number: "005/77/BAPPEDA/XI/2026".into(),
                        date: NaiveDate::from_ymd_opt(2026, 11, 20).expect("date"),
                        subject: "Internet putus".into(),
                    },
                    opd: "bappeda".into(),
                    sop: SopVersion {
                        id: "pemeliharaan-jaringan-tik".into(),
                        version: 1,
                        hash: "cd".repeat(32),
                    },
                    urgent: true,
                },
            ),
            event(
                "2026-11-23 08:10",
                "pemohon",
                1,
                EventKind::Disposed {
                    to_step: 2,
                    to_handoff: 0,
                    to_roles: vec!["kepala_dinas".into()],
                    to_user: Some("kadis".into()),
                    note: Some("segera".into()),
                    timing: Some(timing.clone()),
                    measurements: None,
                    closed: false,
                },
            ),
            event(
                "2026-11-23 08:20",
                "kepala_dinas",
                2,
                EventKind::Returned {
                    to_step: 1,
                    to_handoff: 0,
                    to_roles: vec!["pemohon".into()],
                    reason: "lampiran surat kurang".into(),
                    timing: Some(timing.clone()),
                },
            ),
            event(
                "2026-11-23 08:30",
                "helpdesk",
                1,
                EventKind::Refused {
                    action: "dispose".into(),
                    reason: "step 1 belongs to pemohon; you are helpdesk".into(),
                },
            ),
            event(
                "2026-11-24 09:00",
                "siaga",
                1,
                EventKind::Escalated {
                    level: 1,
                    due_at: at("2026-11-24 08:00"),
                    notify_roles: vec!["kabid_aptika".into()],
                    notify_users: vec!["kabid".into()],
                },
            ),
            event(
                "2026-11-24 09:00",
                "siaga",
                1,
                EventKind::Voided {
                    reason: "duplikat PJ-2026-0000".into(),
                },
            ),
            event(
                "2026-11-25 09:00",
                "siaga",
                9,
                EventKind::ReportFrozen {
                    review_index: 3,
                    documents: vec![FrozenDocument {
                        format: "pdf".into(),
                        lang: Lang::Id,
                        sha256: "ab".repeat(32),
                        bytes: 1000,
                    }],
                },
            ),
            event(
                "2026-11-24 10:00",
                "teknisi",
                6,
                EventKind::StatusUpdated {
                    status: "kabel diganti".into(),
                },
            ),
            Event {
                acting_for: Some("tim_teknis".into()),
                ..event(
                    "2026-11-24 11:00",
                    "teknisi",
                    6,
                    EventKind::Disposed {
                        to_step: 7,
                        to_handoff: 0,
                        to_roles: vec!["helpdesk".into()],
                        to_user: None,
                        note: None,
                        timing: Some(timing),
                        measurements: Some(Measurements {
                            before: true,
                            after: true,
                            waived: None,
                        }),
                        closed: false,
                    },
                )
            },
            event(
                "2026-11-24 11:30",
                "helpdesk",
                6,
                EventKind::Acknowledged {
                    by: "Andi, Kasubag Umum".into(),
                    on_behalf: true,
                },
            ),
        ];
        let trail: Vec<AuditRecord> = kinds
            .into_iter()
            .enumerate()
            .map(|(i, event)| AuditRecord {
                index: i as u64,
                ticket: "PJ-2026-0001".into(),
                event,
                prev_hash: String::new(),
                hash: String::new(),
            })
            .collect();
        let out = audit_table(&trail, Output::Table, chrono_tz::Asia::Jakarta);
        // Times in the province's time with its zone, not UTC.
        assert!(
            out.contains("2026-11-23 08:") && out.contains(" WIB"),
            "{out}"
        );
        assert!(!out.contains(":00Z") && !out.contains("+00:00"), "{out}");
        for debug in [
            "{", "}", "Some(", "None", "Letter", "Detected", "Timing", "\"", " Id ", " En ",
        ] {
            assert!(!out.contains(debug), "Rust debug {debug:?} in:\n{out}");
        }
        for words in [
            "letter 005/77/BAPPEDA/XI/2026 dated 2026-11-20 from OPD bappeda: Internet putus",
            "urgent",
            "to step 1: lampiran surat kurang",
            "refused: step",
            "overdue warning level 1",
            "duplikat PJ-2026-0000",
            "pdf id sha256",
            "measurements before and after attached",
            "work report acknowledged by Andi, Kasubag Umum",
            "in time (10m of",
            "teknisi",
        ] {
            assert!(out.contains(words), "{words:?} missing from:\n{out}");
        }
    }

    /// Every kind of event the services send reads back; one the CLI does
    /// not know is `None` (and `ticket audit` says to try --json).
    #[test]
    fn events_read_back_from_the_wire() {
        use v1::audit_event::Detail;
        let details = [
            Detail::Opened(v1::AuditOpened {
                origin: v1::ticket::Origin::Letter.into(),
                letter_date: "2026-11-20".into(),
                ..Default::default()
            }),
            Detail::Disposed(v1::AuditDisposed::default()),
            Detail::Returned(v1::AuditReturned::default()),
            Detail::StatusUpdated(v1::AuditStatusUpdated::default()),
            Detail::Acknowledged(v1::AuditAcknowledged::default()),
            Detail::Refused(v1::AuditRefused::default()),
            Detail::Escalated(v1::AuditEscalated::default()),
            Detail::Voided(v1::AuditVoided::default()),
            Detail::ReportFrozen(v1::AuditReportFrozen::default()),
        ];
        for d in details {
            let e = v1::AuditEvent {
                detail: Some(d.clone()),
                ..Default::default()
            };
            assert!(crate::view::event_back(&e).is_some(), "{d:?}");
        }
        assert!(crate::view::event_back(&v1::AuditEvent::default()).is_none());
        let bad_date = v1::AuditEvent {
            detail: Some(Detail::Opened(v1::AuditOpened {
                origin: v1::ticket::Origin::Letter.into(),
                letter_date: "20-11-2026".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert!(crate::view::event_back(&bad_date).is_none());
    }

    #[test_case(90 * 60, "1h 30m")]
    #[test_case(-5 * 60, "-0h 05m")]
    #[test_case(50 * 3600, "2d 2h")]
    fn left(secs: i64, want: &str) {
        assert_eq!(left_label(secs), want);
    }
}
