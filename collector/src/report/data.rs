//! Everything the work report shows, gathered from a ticket's records into
//! plain data that both renderers draw: the facts of the ticket, the problem
//! and its evidence, the before/after comparison with a verdict per row, all
//! measurements, the work, the OPD's acknowledgement, the disposition
//! timeline, the Kepala Dinas's review and the signature blocks.
//!
//! Pure: the caller reads the stores and the people it names (full name,
//! NIP, jabatan from the user files). Once the review step was disposed the
//! report is final and shows only what was recorded up to the review (the
//! trail up to that disposal, measurements and notes no later than it), so
//! the same records always give the same report, however late it is rendered.

use chrono::{DateTime, Utc};

use super::chart::{self, Chart};
use super::verdict::{self, Verdict};
use super::words::{decimal, ms, pct, signed, tr};
use crate::health::Reading;
use crate::measure::model::{DeviceFigures, LinkFigures, MeasureState, Measurement, Phase};
use crate::sop::audit::AuditRecord;
use crate::sop::card::{self, CardRow};
use crate::sop::workflow::{Event, EventKind, Origin, SYSTEM_USER, TicketInfo, TicketSop};
use crate::sop::{Calendar, Lang, People, Sop};
use crate::ticket::TicketHealth;

/// Evidence readings shown; the rest are counted.
pub const EVIDENCE_SHOWN: usize = 10;

/// What the report is built from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The ticket's facts.
    pub info: &'a TicketInfo,
    /// Its place in the chain.
    pub state: &'a TicketSop,
    /// Its audit trail.
    pub trail: &'a [AuditRecord],
    /// The SOP it runs on.
    pub sop: &'a Sop,
    /// The business calendar (local times).
    pub calendar: &'a Calendar,
    /// What the health engine keeps about it (detected tickets).
    pub health: Option<&'a TicketHealth>,
    /// Its measurements.
    pub measurements: &'a [Measurement],
    /// The people it names, as their user files have them.
    pub people: &'a People,
}

/// Draft or final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Before the review: marked DRAF.
    Draft {
        /// Local time of the newest record shown.
        as_of: String,
    },
    /// After the review.
    Final {
        /// Local time of the review.
        reviewed_at: String,
    },
}

/// One reading of the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRow {
    /// Local time.
    pub time: String,
    /// What it showed.
    pub finding: String,
}

/// A timed line: a status update, a log note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Local time.
    pub time: String,
    /// Who.
    pub who: String,
    /// What.
    pub text: String,
}

/// One figure before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What it is.
    pub label: String,
    /// Before the work.
    pub before: String,
    /// After the work.
    pub after: String,
    /// The change.
    pub change: String,
    /// The verdict.
    pub verdict: Verdict,
}

/// A device or link compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    /// Its name (and for a link, where it is).
    pub title: String,
    /// Its figures.
    pub rows: Vec<Row>,
    /// Errors of the measurement (no answer, not polled).
    pub notes: Vec<String>,
    /// Its rows combined.
    pub verdict: Verdict,
}

/// The before/after comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The measurement used for "before" (id, time, who).
    pub before: Option<String>,
    /// The measurement used for "after".
    pub after: Option<String>,
    /// Devices.
    pub devices: Vec<Compared>,
    /// Links.
    pub links: Vec<Compared>,
    /// One chart per device.
    pub charts: Vec<Chart>,
    /// Everything combined.
    pub verdict: Verdict,
}

/// One line of the list of all measurements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementLine {
    /// `M-000001`.
    pub id: String,
    /// sebelum / sesudah.
    pub phase: String,
    /// Where it ended.
    pub state: String,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: String,
    /// Its figures in short.
    pub summary: String,
}

/// The OPD's acknowledgement of the work report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// Name.
    pub name: String,
    /// Position (jabatan).
    pub position: String,
    /// Local time.
    pub at: String,
    /// Who recorded it, and whether on the OPD's behalf.
    pub recorded: String,
}

/// The Kepala Dinas's review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// Who (and for whom).
    pub by: String,
    /// Local time.
    pub at: String,
    /// The review note, if any.
    pub note: Option<String>,
}

/// A signature block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// "Pelaksana", "Mengetahui", "Diperiksa".
    pub caption: String,
    /// The role or office signing.
    pub role: String,
    /// The name, once known (the full name; a login only flagged).
    pub name: String,
    /// "NIP …", when on record.
    pub nip: String,
    /// Position or detail (acting for whom).
    pub detail: String,
}

/// The report's content.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    /// Language of every label.
    pub lang: Lang,
    /// Ticket number.
    pub ticket: String,
    /// Draft or final.
    pub status: Status,
    /// When it was reviewed (final only).
    pub reviewed_at: Option<DateTime<Utc>>,
    /// The issuing office.
    pub office: String,
    /// Its unit.
    pub office_unit: String,
    /// The SOP's name.
    pub sop_name: String,
    /// (label, value) of the header.
    pub header: Vec<(String, String)>,
    /// The problem in a sentence.
    pub problem: String,
    /// The raw diagnostic behind it (an SNMP error), for the appendix.
    pub diagnostic: Option<String>,
    /// The first readings that showed it.
    pub evidence: Vec<EvidenceRow>,
    /// Readings not shown.
    pub evidence_more: usize,
    /// The health log of the ticket ("pulih pada …").
    pub health_notes: Vec<Entry>,
    /// Before and after.
    pub comparison: Comparison,
    /// Why there are no measurements, if the technician said so.
    pub no_measurement_reason: Option<String>,
    /// Every measurement of the ticket.
    pub measurements: Vec<MeasurementLine>,
    /// The technician's status updates.
    pub status_updates: Vec<Entry>,
    /// The technician's note when handing the work on.
    pub work_note: Option<Entry>,
    /// The OPD's acknowledgement.
    pub acknowledgement: Option<Acknowledgement>,
    /// Column labels of the timeline.
    pub timeline_columns: [String; 8],
    /// Every disposition, with time standards met or late.
    pub timeline: Vec<CardRow>,
    /// The review, once given.
    pub review: Option<Review>,
    /// The signature blocks.
    pub signatures: Vec<Signature>,
    /// The ticket's audit trail head (up to the review, for the final
    /// report) signed by the collector, as one line; set by the caller that
    /// holds the audit key.
    pub audit: Option<String>,
}

/// The disposal that reviewed the report: the last disposal of the SOP's
/// report step, provided the ticket is past that step now.
pub fn review<'a>(
    sop: &Sop,
    state: &TicketSop,
    trail: &'a [AuditRecord],
) -> Option<&'a AuditRecord> {
    let step = sop.report_step()?;
    let pos = |n: u32| sop.steps.iter().position(|s| s.number == n);
    let past = match (pos(state.position.step), pos(step.number)) {
        (Some(now), Some(review)) => now > review,
        _ => false,
    };
    if !past {
        return None;
    }
    trail
        .iter()
        .rev()
        .find(|r| r.event.step == step.number && matches!(r.event.kind, EventKind::Disposed { .. }))
}

fn local(cal: &Calendar, t: DateTime<Utc>) -> String {
    cal.fmt_local(t)
}

fn who(sop: &Sop, people: &People, e: &Event, lang: Lang) -> String {
    if e.user == SYSTEM_USER && e.role.is_none() {
        return tr(lang, "siaga (otomatis)", "siaga (automatic)").to_string();
    }
    let mut s = people.name(&e.user, lang);
    if let Some(r) = &e.role {
        s.push_str(&format!(" ({})", sop.role_name(r)));
    }
    if let Some(f) = &e.acting_for {
        s.push_str(&format!(
            " {} {}",
            tr(lang, "a.n.", "for"),
            sop.role_name(f)
        ));
    }
    s
}

/// A health problem's name in the report.
fn problem_word(p: &str, lang: Lang) -> &'static str {
    match p {
        "loss" => tr(lang, "kehilangan paket (loss)", "packet loss"),
        "rtt" => "RTT",
        "jitter" => "jitter",
        "snmp_unreachable" => tr(lang, "SNMP tidak menjawab", "SNMP not answering"),
        "oper_down" => tr(lang, "link down", "link down"),
        "utilisation" => tr(lang, "utilisasi", "utilisation"),
        "errors" => tr(lang, "error antarmuka", "interface errors"),
        "flapping" => tr(lang, "naik-turun (flapping)", "flapping"),
        "agent_unreachable" => tr(lang, "agen tidak terhubung", "agent unreachable"),
        _ => tr(lang, "gangguan", "fault"),
    }
}

fn unit(p: &str) -> &'static str {
    match p {
        "loss" | "utilisation" => " %",
        "rtt" | "jitter" => " ms",
        "errors" => "/s",
        _ => "",
    }
}

fn finding_text(r: &Reading, lang: Lang) -> String {
    let parts: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f.level != crate::health::Level::Up)
        .map(|f| {
            let p = f.problem.as_str();
            let mut s = format!(
                "{} {}{}",
                problem_word(p, lang),
                decimal(lang, f.value, 1),
                unit(p)
            );
            if let Some(t) = f.threshold {
                s.push_str(&format!(
                    " ({} {}{})",
                    tr(lang, "ambang", "threshold"),
                    decimal(lang, t, 1),
                    unit(p)
                ));
            }
            s.push_str(&format!(": {}", f.level.as_str()));
            if !f.detail.is_empty() {
                s.push_str(&format!(" — {}", f.detail));
            }
            s
        })
        .collect();
    if parts.is_empty() {
        tr(lang, "dalam ambang", "within thresholds").to_string()
    } else {
        parts.join("; ")
    }
}

/// A moment inside a sentence: local time with the zone.
fn us_time_zone(cal: &Calendar, us: i64) -> String {
    format!("{} {}", us_time(cal, us), cal.zone_abbr())
}

fn us_time(cal: &Calendar, us: i64) -> String {
    DateTime::from_timestamp_micros(us).map_or_else(|| us.to_string(), |t| local(cal, t))
}

fn device_ok(f: &DeviceFigures) -> bool {
    f.error.is_none() && f.sent > 0
}

fn time_row(lang: Lang, label: &str, b: Option<u64>, a: Option<u64>) -> Row {
    let show = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |us| ms(lang, us));
    let change = match (b, a) {
        (Some(b), Some(a)) => {
            let d = a as f64 - b as f64;
            let rel = if b > 0 {
                format!(" ({} %)", signed(lang, d * 100.0 / b as f64, 0))
            } else {
                String::new()
            };
            format!("{} ms{rel}", signed(lang, d / 1000.0, 2))
        }
        _ => "-".into(),
    };
    Row {
        label: label.to_string(),
        before: show(b),
        after: show(a),
        change,
        verdict: verdict::time(b, a),
    }
}

fn points_row(
    lang: Lang,
    label: &str,
    b: Option<f64>,
    a: Option<f64>,
    v: fn(Option<f64>, Option<f64>) -> Verdict,
) -> Row {
    let show = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| pct(lang, x));
    let change = match (b, a) {
        (Some(b), Some(a)) => format!("{} {}", signed(lang, a - b, 1), tr(lang, "poin", "points")),
        _ => "-".into(),
    };
    Row {
        label: label.to_string(),
        before: show(b),
        after: show(a),
        change,
        verdict: v(b, a),
    }
}

fn rate_row(lang: Lang, label: &str, b: Option<f64>, a: Option<f64>) -> Row {
    let show = |x: Option<f64>| {
        x.map_or_else(|| "-".to_string(), |x| format!("{}/s", decimal(lang, x, 2)))
    };
    let change = match (b, a) {
        (Some(b), Some(a)) => format!("{}/s", signed(lang, a - b, 2)),
        _ => "-".into(),
    };
    Row {
        label: label.to_string(),
        before: show(b),
        after: show(a),
        change,
        verdict: verdict::rate(b, a),
    }
}

fn compare_device(
    lang: Lang,
    name: &str,
    b: Option<&DeviceFigures>,
    a: Option<&DeviceFigures>,
) -> Compared {
    let ok_b = b.filter(|f| device_ok(f));
    let ok_a = a.filter(|f| device_ok(f));
    let mut rows = vec![points_row(
        lang,
        tr(lang, "Kehilangan paket (loss)", "Packet loss"),
        ok_b.map(|f| f.loss_pct),
        ok_a.map(|f| f.loss_pct),
        verdict::loss,
    )];
    let t = |f: Option<&DeviceFigures>, g: fn(&DeviceFigures) -> Option<u64>| f.and_then(g);
    for (label, g) in [
        (
            tr(lang, "RTT minimum", "RTT min"),
            (|f: &DeviceFigures| f.rtt_min_us) as fn(&DeviceFigures) -> Option<u64>,
        ),
        (tr(lang, "RTT rata-rata", "RTT average"), |f| f.rtt_avg_us),
        ("RTT median", |f| f.rtt_median_us),
        ("RTT p95", |f| f.rtt_p95_us),
        (tr(lang, "RTT maksimum", "RTT max"), |f| f.rtt_max_us),
        ("Jitter", |f| f.jitter_us),
    ] {
        rows.push(time_row(lang, label, t(ok_b, g), t(ok_a, g)));
    }
    // The device's own CPU and memory, when its MIBs told them (judged as
    // utilisation: a change of 10 points counts).
    let r = |f: Option<&DeviceFigures>, g: fn(&DeviceFigures) -> Option<f64>| f.and_then(g);
    for (label, g) in [
        (
            tr(lang, "CPU perangkat", "Device CPU"),
            (|f: &DeviceFigures| f.cpu_pct) as fn(&DeviceFigures) -> Option<f64>,
        ),
        (tr(lang, "Memori perangkat", "Device memory"), |f| f.mem_pct),
    ] {
        if r(ok_b, g).is_some() || r(ok_a, g).is_some() {
            rows.push(points_row(
                lang,
                label,
                r(ok_b, g),
                r(ok_a, g),
                verdict::utilisation,
            ));
        }
    }
    let mut notes = Vec::new();
    for (phase, f) in [
        (tr(lang, "Sebelum", "Before"), b),
        (tr(lang, "Sesudah", "After"), a),
    ] {
        match f {
            None => notes.push(format!(
                "{phase}: {}",
                tr(
                    lang,
                    "perangkat ini tidak diukur",
                    "this device was not measured"
                )
            )),
            Some(f) => {
                if let Some(e) = &f.error {
                    notes.push(format!("{phase}: {e}"));
                } else {
                    notes.push(format!(
                        "{phase}: {} {}, {} {}",
                        f.sent,
                        tr(lang, "ping dikirim", "echo requests sent"),
                        f.received,
                        tr(lang, "dibalas", "answered")
                    ));
                }
            }
        }
    }
    let verdict = verdict::combine(rows.iter().map(|r| r.verdict));
    Compared {
        title: name.to_string(),
        rows,
        notes,
        verdict,
    }
}

fn compare_link(lang: Lang, b: Option<&LinkFigures>, a: Option<&LinkFigures>) -> Compared {
    let any = a.or(b);
    let title = any.map_or_else(String::new, |l| {
        if l.interface.is_empty() {
            format!("{} — {}", l.name, l.device)
        } else {
            format!("{} — {} {}", l.name, l.device, l.interface)
        }
    });
    let ok_b = b.filter(|l| l.error.is_none());
    let ok_a = a.filter(|l| l.error.is_none());
    let status =
        |l: Option<&LinkFigures>| l.map(|l| l.oper_status.clone()).filter(|s| !s.is_empty());
    let (sb, sa) = (status(ok_b), status(ok_a));
    let mut rows = vec![Row {
        label: tr(lang, "Status operasional", "Oper status").to_string(),
        before: sb.clone().unwrap_or_else(|| "-".into()),
        after: sa.clone().unwrap_or_else(|| "-".into()),
        change: match (&sb, &sa) {
            (Some(x), Some(y)) if x != y => format!("{x} → {y}"),
            (Some(_), Some(_)) => tr(lang, "sama", "same").into(),
            _ => "-".into(),
        },
        verdict: verdict::oper_status(sb.as_deref(), sa.as_deref()),
    }];
    let speed = |l: Option<&LinkFigures>| l.and_then(|l| l.speed_mbps);
    let (pb, pa) = (speed(ok_b), speed(ok_a));
    let mbps = |x: Option<f64>| {
        x.map_or_else(
            || "-".to_string(),
            |x| format!("{} Mbit/s", decimal(lang, x, 0)),
        )
    };
    rows.push(Row {
        label: tr(lang, "Kecepatan", "Speed").into(),
        before: mbps(pb),
        after: mbps(pa),
        change: match (pb, pa) {
            (Some(b), Some(a)) => format!("{} Mbit/s", signed(lang, a - b, 0)),
            _ => "-".into(),
        },
        verdict: verdict::speed(pb, pa),
    });
    let f = |l: Option<&LinkFigures>, g: fn(&LinkFigures) -> Option<f64>| l.and_then(g);
    rows.push(points_row(
        lang,
        tr(lang, "Utilisasi masuk", "Utilisation in"),
        f(ok_b, |l| l.util_in_pct),
        f(ok_a, |l| l.util_in_pct),
        verdict::utilisation,
    ));
    rows.push(points_row(
        lang,
        tr(lang, "Utilisasi keluar", "Utilisation out"),
        f(ok_b, |l| l.util_out_pct),
        f(ok_a, |l| l.util_out_pct),
        verdict::utilisation,
    ));
    rows.push(rate_row(
        lang,
        tr(lang, "Error per detik", "Errors per second"),
        f(ok_b, |l| l.errors_per_s),
        f(ok_a, |l| l.errors_per_s),
    ));
    rows.push(rate_row(
        lang,
        tr(lang, "Discard per detik", "Discards per second"),
        f(ok_b, |l| l.discards_per_s),
        f(ok_a, |l| l.discards_per_s),
    ));
    let mut notes = Vec::new();
    for (phase, l) in [
        (tr(lang, "Sebelum", "Before"), b),
        (tr(lang, "Sesudah", "After"), a),
    ] {
        match l {
            None => notes.push(format!(
                "{phase}: {}",
                tr(lang, "link ini tidak diukur", "this link was not measured")
            )),
            Some(l) => {
                if let Some(e) = &l.error {
                    notes.push(format!("{phase}: {e}"));
                }
            }
        }
    }
    let verdict = verdict::combine(rows.iter().map(|r| r.verdict));
    Compared {
        title,
        rows,
        notes,
        verdict,
    }
}

fn phase_word(p: Option<Phase>, lang: Lang) -> &'static str {
    match p {
        Some(Phase::Before) => tr(lang, "sebelum", "before"),
        Some(Phase::After) => tr(lang, "sesudah", "after"),
        None => "-",
    }
}

fn state_word(s: &MeasureState, lang: Lang) -> String {
    match s {
        MeasureState::Queued { .. } => tr(lang, "antre", "queued").into(),
        MeasureState::Running { .. } => tr(lang, "berjalan", "running").into(),
        MeasureState::Done => tr(lang, "selesai", "done").into(),
        MeasureState::Failed { error } => format!("{}: {error}", tr(lang, "gagal", "failed")),
        MeasureState::Expired => tr(lang, "kedaluwarsa", "expired").into(),
    }
}

fn summary(m: &Measurement, lang: Lang) -> String {
    let mut parts = Vec::new();
    for d in &m.device_figures {
        parts.push(match (&d.error, d.rtt_median_us) {
            (Some(e), _) => format!("{}: {e}", d.device),
            (None, Some(med)) => format!(
                "{}: loss {}, median {}",
                d.device,
                pct(lang, d.loss_pct),
                ms(lang, med)
            ),
            (None, None) => format!("{}: loss {}", d.device, pct(lang, d.loss_pct)),
        });
    }
    for l in &m.link_figures {
        parts.push(match &l.error {
            Some(e) => format!("{}: {e}", l.name),
            None => match l.speed_mbps {
                Some(s) => format!(
                    "{}: {}, {} Mbit/s",
                    l.name,
                    l.oper_status,
                    decimal(lang, s, 0)
                ),
                None => format!("{}: {}", l.name, l.oper_status),
            },
        });
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

fn latest(ms: &[&Measurement], phase: Phase) -> Option<Measurement> {
    ms.iter()
        .filter(|m| m.phase == Some(phase) && m.state == MeasureState::Done)
        .max_by(|a, b| (a.completed_at, &a.id).cmp(&(b.completed_at, &b.id)))
        .map(|m| (*m).clone())
}

fn comparison(ms: &[&Measurement], cal: &Calendar, people: &People, lang: Lang) -> Comparison {
    let before = latest(ms, Phase::Before);
    let after = latest(ms, Phase::After);
    let label = |m: &Option<Measurement>| {
        m.as_ref().map(|m| {
            format!(
                "{}, {}, {}",
                m.id,
                local(cal, m.completed_at.unwrap_or(m.requested_at)),
                people.name(&m.requested_by, lang)
            )
        })
    };
    let mut devices: Vec<String> = Vec::new();
    let mut links: Vec<String> = Vec::new();
    for m in before.iter().chain(after.iter()) {
        for d in &m.device_figures {
            if !devices.contains(&d.device) {
                devices.push(d.device.clone());
            }
        }
        for l in &m.link_figures {
            if !links.contains(&l.name) {
                links.push(l.name.clone());
            }
        }
    }
    let mut out_devices = Vec::new();
    let mut charts = Vec::new();
    for d in &devices {
        let b = before.as_ref().and_then(|m| m.device(d));
        let a = after.as_ref().and_then(|m| m.device(d));
        out_devices.push(compare_device(lang, d, b, a));
        let phase = |f: Option<&DeviceFigures>| chart::Phase {
            rtts_us: f
                .filter(|f| device_ok(f))
                .map(|f| f.rtts_us.clone())
                .unwrap_or_default(),
            loss_pct: f.filter(|f| device_ok(f)).map(|f| f.loss_pct),
        };
        charts.push(chart::device_chart(d, &phase(b), &phase(a), lang));
    }
    let out_links: Vec<Compared> = links
        .iter()
        .map(|l| {
            compare_link(
                lang,
                before.as_ref().and_then(|m| m.link(l)),
                after.as_ref().and_then(|m| m.link(l)),
            )
        })
        .collect();
    let verdict = verdict::combine(out_devices.iter().chain(&out_links).map(|c| c.verdict));
    Comparison {
        before: label(&before),
        after: label(&after),
        devices: out_devices,
        links: out_links,
        charts,
        verdict,
    }
}

/// Splits "NAME, JABATAN".
fn name_position(by: &str) -> (String, String) {
    match by.split_once(',') {
        Some((n, p)) => (n.trim().to_string(), p.trim().to_string()),
        None => (by.trim().to_string(), String::new()),
    }
}

/// Builds the report of a ticket in `lang`.
pub fn build(inp: &Inputs<'_>, lang: Lang) -> ReportData {
    let Inputs {
        info,
        state,
        trail,
        sop,
        calendar: cal,
        health,
        measurements,
        people,
    } = *inp;
    let reviewed = review(sop, state, trail);
    let cutoff = reviewed.map(|r| (r.index, r.event.at));
    let in_time = |t: DateTime<Utc>| cutoff.is_none_or(|(_, at)| t <= at);
    let events: Vec<Event> = trail
        .iter()
        .filter(|r| cutoff.is_none_or(|(i, _)| r.index <= i))
        .filter(|r| !matches!(r.event.kind, EventKind::ReportFrozen { .. }))
        .map(|r| r.event.clone())
        .collect();
    // A draft lists every measurement as it stands; the final report those
    // finished by the review (a queued or running one may finish later).
    let ms: Vec<&Measurement> = measurements
        .iter()
        .filter(|m| cutoff.is_none() || m.completed_at.is_some_and(&in_time))
        .collect();

    let status = match reviewed {
        Some(r) => Status::Final {
            reviewed_at: local(cal, r.event.at),
        },
        None => Status::Draft {
            as_of: events
                .last()
                .map_or_else(|| local(cal, info.opened_at), |e| local(cal, e.at)),
        },
    };

    // Header.
    let incident_problem = health
        .and_then(|h| h.incident.as_deref())
        .and_then(|k| k.rsplit(':').next())
        .map(str::to_string);
    let origin = match &info.origin {
        Origin::Letter {
            number,
            date,
            subject,
        } => format!(
            "{} {number} {} {}: {subject}",
            tr(lang, "surat", "letter"),
            tr(lang, "tanggal", "dated"),
            date.format("%Y-%m-%d")
        ),
        Origin::Detected => {
            let mut s = tr(lang, "deteksi otomatis", "automatic detection").to_string();
            if let Some(p) = &incident_problem {
                s.push_str(&format!(
                    " — {}: {}",
                    tr(lang, "aturan", "rule"),
                    problem_word(p, lang)
                ));
                let threshold = health.and_then(|h| {
                    h.evidence
                        .iter()
                        .flat_map(|r| &r.findings)
                        .find(|f| f.problem.as_str() == p && f.threshold.is_some())
                        .and_then(|f| f.threshold)
                });
                if let Some(t) = threshold {
                    s.push_str(&format!(
                        ", {} {}{}",
                        tr(lang, "ambang", "threshold"),
                        decimal(lang, t, 1),
                        unit(p)
                    ));
                }
            }
            s
        }
    };
    let opd = info
        .opd_name
        .as_ref()
        .map_or_else(|| info.opd.clone(), |n| format!("{n} ({})", info.opd));
    let mut header = vec![
        (
            tr(lang, "Nomor tiket", "Ticket").to_string(),
            info.number.clone(),
        ),
        ("OPD".to_string(), opd.clone()),
        (tr(lang, "Asal", "Origin").to_string(), origin),
    ];
    let dl = info.device_link();
    header.push((
        tr(lang, "Perangkat / link", "Device / link").to_string(),
        if dl.is_empty() { "-".into() } else { dl },
    ));
    header.push((
        tr(lang, "Dibuka", "Opened").to_string(),
        format!("{} {}", local(cal, info.opened_at), cal.zone_abbr()),
    ));
    let closed = state.closed_at.filter(|t| in_time(*t));
    header.push((
        tr(lang, "Selesai", "Closed").to_string(),
        closed.map_or_else(|| "-".into(), |t| local(cal, t)),
    ));
    header.push((
        "SOP".to_string(),
        format!("{} (v{})", sop.name, sop.version),
    ));
    header.push((
        tr(lang, "Status laporan", "Report status").to_string(),
        match &status {
            Status::Draft { as_of } => format!(
                "{} {as_of}",
                tr(
                    lang,
                    "DRAF, belum diperiksa Kepala Dinas; keadaan per",
                    "DRAFT, not yet reviewed by the Kepala Dinas; as of"
                )
            ),
            Status::Final { reviewed_at } => format!(
                "{} {reviewed_at}",
                tr(
                    lang,
                    "Final, diperiksa Kepala Dinas pada",
                    "Final, reviewed by the Kepala Dinas at"
                )
            ),
        },
    ));

    // The problem and its evidence.
    let problem = match (lang, health) {
        _ if info.reason.is_some() => info.problem_text(lang, cal),
        (Lang::Id, Some(h)) if !h.problem_id.is_empty() => h.problem_id.clone(),
        _ => info.problem.clone(),
    };
    let readings: Vec<&Reading> = health
        .map(|h| {
            h.evidence
                .iter()
                .filter(|r| DateTime::from_timestamp_micros(r.at).is_none_or(&in_time))
                .collect()
        })
        .unwrap_or_default();
    let evidence = readings
        .iter()
        .take(EVIDENCE_SHOWN)
        .map(|r| EvidenceRow {
            time: us_time(cal, r.at),
            finding: finding_text(r, lang),
        })
        .collect();
    let evidence_more = readings.len().saturating_sub(EVIDENCE_SHOWN);
    let health_notes = health
        .map(|h| {
            h.notes
                .iter()
                .filter(|n| in_time(n.at))
                .map(|n| Entry {
                    time: local(cal, n.at),
                    who: "siaga".into(),
                    text: n.text_in(lang, &|us| us_time_zone(cal, us)),
                })
                .collect()
        })
        .unwrap_or_default();

    // Measurements.
    let comparison = comparison(&ms, cal, people, lang);
    let measure_steps: Vec<u32> = sop
        .steps
        .iter()
        .filter(|s| s.requires_measurements)
        .map(|s| s.number)
        .collect();
    let no_measurement_reason = events
        .iter()
        .rev()
        .filter(|e| measure_steps.contains(&e.step))
        .find_map(|e| match &e.kind {
            EventKind::Disposed {
                measurements: Some(m),
                ..
            } => Some(m.waived.clone().filter(|_| !(m.before && m.after))),
            _ => None,
        })
        .flatten();
    let mut list: Vec<&Measurement> = ms.clone();
    list.sort_by(|a, b| (a.requested_at, &a.id).cmp(&(b.requested_at, &b.id)));
    let measurement_lines = list
        .iter()
        .map(|m| MeasurementLine {
            id: m.id.clone(),
            phase: phase_word(m.phase, lang).into(),
            state: state_word(&m.state, lang),
            requested_by: people.name(&m.requested_by, lang),
            requested_at: local(cal, m.requested_at),
            summary: summary(m, lang),
        })
        .collect();

    // The work.
    let work_steps: Vec<u32> = sop
        .steps
        .iter()
        .filter(|s| s.work)
        .map(|s| s.number)
        .collect();
    let status_updates = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StatusUpdated { status } => Some(Entry {
                time: local(cal, e.at),
                who: who(sop, people, e, lang),
                text: status.clone(),
            }),
            _ => None,
        })
        .collect();
    let work_disposal = events
        .iter()
        .rev()
        .find(|e| work_steps.contains(&e.step) && matches!(e.kind, EventKind::Disposed { .. }));
    let work_note = work_disposal.and_then(|e| match &e.kind {
        EventKind::Disposed { note: Some(n), .. } if !n.trim().is_empty() => Some(Entry {
            time: local(cal, e.at),
            who: who(sop, people, e, lang),
            text: n.clone(),
        }),
        _ => None,
    });
    let acknowledgement = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::Acknowledged { by, on_behalf } => {
            let (name, position) = name_position(by);
            let recorded = if *on_behalf {
                format!(
                    "{} {} {}",
                    tr(lang, "dicatat oleh", "recorded by"),
                    who(sop, people, e, lang),
                    tr(lang, "atas nama OPD", "on the OPD's behalf")
                )
            } else {
                format!(
                    "{} {}",
                    tr(lang, "dicatat oleh", "recorded by"),
                    who(sop, people, e, lang)
                )
            };
            Some(Acknowledgement {
                name,
                position,
                at: local(cal, e.at),
                recorded,
            })
        }
        _ => None,
    });

    // Timeline (the control card's rows) and the review.
    let card = card::build(info, state, &events, sop, cal, people, lang);
    let review = reviewed.map(|r| Review {
        by: who(sop, people, &r.event, lang),
        at: local(cal, r.event.at),
        note: match &r.event.kind {
            EventKind::Disposed { note, .. } => note.clone().filter(|n| !n.trim().is_empty()),
            _ => None,
        },
    });

    // Signatures.
    let role_of = |step: Option<&crate::sop::Step>| {
        step.and_then(|s| s.actors.first())
            .map_or_else(String::new, |r| sop.role_name(r).to_string())
    };
    let work_step = sop.steps.iter().find(|s| s.work);
    let acting = |e: &Event| {
        e.acting_for
            .as_ref()
            .map(|f| format!("{} {}", tr(lang, "a.n.", "for"), sop.role_name(f)))
            .unwrap_or_default()
    };
    // A person who signs: their jabatan above the space (else the SOP
    // role), their full name and NIP below it.
    let signed = |caption: &str, step: Option<&crate::sop::Step>, e: Option<&Event>| {
        let Some(e) = e else {
            return Signature {
                caption: caption.to_string(),
                role: role_of(step),
                name: String::new(),
                nip: String::new(),
                detail: String::new(),
            };
        };
        let s = people.signer(&e.user, lang);
        Signature {
            caption: caption.to_string(),
            role: if s.jabatan.is_empty() {
                role_of(step)
            } else {
                s.jabatan
            },
            name: s.name,
            nip: s.nip,
            detail: acting(e),
        }
    };
    let signatures = vec![
        signed(
            tr(lang, "Pelaksana", "Carried out by"),
            work_step,
            work_disposal,
        ),
        Signature {
            caption: tr(lang, "Mengetahui", "Acknowledged by").into(),
            role: opd,
            name: acknowledgement
                .as_ref()
                .map(|a| a.name.clone())
                .unwrap_or_default(),
            nip: String::new(),
            detail: acknowledgement
                .as_ref()
                .map(|a| a.position.clone())
                .unwrap_or_default(),
        },
        signed(
            tr(lang, "Diperiksa", "Reviewed by"),
            sop.report_step(),
            reviewed.map(|r| &r.event),
        ),
    ];

    ReportData {
        lang,
        ticket: info.number.clone(),
        status,
        reviewed_at: reviewed.map(|r| r.event.at),
        office: sop.office.clone(),
        office_unit: sop.office_unit.clone(),
        sop_name: sop.name.clone(),
        header,
        problem,
        diagnostic: info
            .reason
            .as_ref()
            .and_then(|r| r.diagnostic())
            .map(str::to_string),
        evidence,
        evidence_more,
        health_notes,
        comparison,
        no_measurement_reason,
        measurements: measurement_lines,
        status_updates,
        work_note,
        acknowledgement,
        timeline_columns: card.columns,
        timeline: card.rows,
        review,
        signatures,
        audit: None,
    }
}

/// The head of `trail` that a report of it stands on: up to the review for
/// the final report, the whole trail for a draft.
pub fn report_head(
    sop: &crate::sop::model::Sop,
    state: &crate::sop::workflow::TicketSop,
    trail: &[AuditRecord],
) -> crate::sop::audit::Head {
    let upto = match review(sop, state, trail) {
        Some(r) => usize::try_from(r.index + 1)
            .unwrap_or(usize::MAX)
            .min(trail.len()),
        None => trail.len(),
    };
    crate::sop::audit::head(trail.get(..upto).unwrap_or(trail))
}

impl ReportData {
    /// Whether this is the final report.
    pub fn is_final(&self) -> bool {
        matches!(self.status, Status::Final { .. })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn figures(cpu: Option<f64>, mem: Option<f64>) -> DeviceFigures {
        DeviceFigures {
            device: "dinkes-sw1".into(),
            sent: 100,
            received: 100,
            cpu_pct: cpu,
            mem_pct: mem,
            ..DeviceFigures::default()
        }
    }

    #[test]
    fn the_device_cpu_and_memory_are_compared_before_and_after() {
        let (b, a) = (
            figures(Some(97.0), Some(60.0)),
            figures(Some(12.0), Some(58.0)),
        );
        let c = compare_device(Lang::En, "dinkes-sw1", Some(&b), Some(&a));
        let row = |label: &str| c.rows.iter().find(|r| r.label == label).unwrap();
        let cpu = row("Device CPU");
        assert_eq!(cpu.verdict, Verdict::Better, "{cpu:?}");
        assert!(cpu.change.starts_with("-85"), "{cpu:?}");
        assert_eq!(row("Device memory").verdict, Verdict::Same);
        // A device whose MIBs tell nothing has no such rows.
        let none = figures(None, None);
        let c = compare_device(Lang::Id, "dinkes-sw1", Some(&none), Some(&none));
        assert!(!c.rows.iter().any(|r| r.label.contains("perangkat")));
    }
}
