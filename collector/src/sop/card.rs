//! The control card (Kartu Kendali / Lembar Disposisi), rendered from a ticket's
//! events: every disposition with from, to, time, note and whether the time
//! standard was met. Text for the terminal, self-contained HTML for printing.
//! Bahasa Indonesia by default, English on request. Refusals stay in the audit
//! trail and are not part of the card.

use std::fmt::Write as _;

use super::calendar::Calendar;
use super::model::{Lang, Sop};
use super::people::People;
use super::workflow::{Event, EventKind, Origin, SYSTEM_USER, TicketInfo, TicketSop, Timing};

/// One row of the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRow {
    /// 1-based.
    pub no: usize,
    /// Local time.
    pub time: String,
    /// Step ("8b" for the second hand-off of step 8).
    pub step: String,
    /// Who acted.
    pub from: String,
    /// To whom it went.
    pub to: String,
    /// Note, reason, status.
    pub note: String,
    /// The step's standard.
    pub standard: String,
    /// Met / exceeded, with the time taken.
    pub result: String,
    /// Whether the standard was exceeded.
    pub late: bool,
}

/// A rendered card's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// Title line.
    pub title: String,
    /// (label, value) header lines.
    pub header: Vec<(String, String)>,
    /// The dispositions.
    pub rows: Vec<CardRow>,
    /// Column labels.
    pub columns: [String; 8],
    /// The people who took a step, each with room for their initials (paraf).
    pub signers: Vec<CardSigner>,
    /// Language.
    pub lang: Lang,
}

/// One person on the card's signature block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSigner {
    /// Login, as in the trail.
    pub login: String,
    /// The SOP role they acted in (or for).
    pub role: String,
    /// Full name, or the login flagged.
    pub name: String,
    /// "NIP …", or empty.
    pub nip: String,
    /// Jabatan, or empty.
    pub jabatan: String,
}

impl CardSigner {
    /// "Name — NIP … — Jabatan (Role)" without the empty parts.
    fn line(&self) -> String {
        let mut parts = vec![self.name.clone()];
        if !self.nip.is_empty() {
            parts.push(self.nip.clone());
        }
        let mut last = self.jabatan.clone();
        if !self.role.is_empty() {
            last = if last.is_empty() {
                self.role.clone()
            } else {
                format!("{last} ({})", self.role)
            };
        }
        if !last.is_empty() {
            parts.push(last);
        }
        parts.join(" — ")
    }
}

fn tr(lang: Lang, id: &str, en: &str) -> String {
    match lang {
        Lang::Id => id.to_string(),
        Lang::En => en.to_string(),
    }
}

/// "1 jam 5 menit" / "1 h 5 min" for a number of seconds.
pub fn duration_label(secs: i64, lang: Lang) -> String {
    let mins = secs.max(0) / 60;
    let (h, m) = (mins / 60, mins % 60);
    match (lang, h) {
        (Lang::Id, 0) => format!("{m} menit"),
        (Lang::Id, _) if m == 0 => format!("{h} jam"),
        (Lang::Id, _) => format!("{h} jam {m} menit"),
        (Lang::En, 0) => format!("{m} min"),
        (Lang::En, _) if m == 0 => format!("{h} h"),
        (Lang::En, _) => format!("{h} h {m} min"),
    }
}

fn step_label(sop: &Sop, step: u32, handoff: u32) -> String {
    let seq = sop.step(step).is_some_and(|s| s.sequential);
    if seq {
        let letter = char::from(b'a' + u8::try_from(handoff.min(25)).unwrap_or(0));
        format!("{step}{letter}")
    } else {
        step.to_string()
    }
}

fn who(sop: &Sop, people: &People, e: &Event, lang: Lang) -> String {
    if e.user == SYSTEM_USER && e.role.is_none() {
        return tr(lang, "siaga (otomatis)", "siaga (automatic)");
    }
    let mut s = people.name(&e.user, lang);
    if let Some(r) = &e.role {
        let _ = write!(s, " ({})", sop.role_name(r));
    }
    if let Some(f) = &e.acting_for {
        let _ = write!(s, " {} {}", tr(lang, "a.n.", "for"), sop.role_name(f));
    }
    s
}

fn roles_to(sop: &Sop, roles: &[String], user: Option<String>) -> String {
    let names: Vec<&str> = roles.iter().map(|r| sop.role_name(r)).collect();
    let mut s = names.join(" / ");
    if let Some(u) = user {
        let _ = write!(s, ": {u}");
    }
    s
}

fn result(timing: &Option<Timing>, lang: Lang) -> (String, bool) {
    match timing {
        None => ("-".into(), false),
        Some(t) => {
            let taken = duration_label(t.taken_secs, lang);
            if t.met {
                (
                    format!("{} ({taken})", tr(lang, "Tepat waktu", "Met")),
                    false,
                )
            } else {
                (
                    format!("{} ({taken})", tr(lang, "Melebihi waktu", "Exceeded")),
                    true,
                )
            }
        }
    }
}

/// Build the card of a ticket from its events (as stored in the audit trail),
/// naming people as `people` has them on record.
pub fn build(
    info: &TicketInfo,
    state: &TicketSop,
    events: &[Event],
    sop: &Sop,
    cal: &Calendar,
    people: &People,
    lang: Lang,
) -> Card {
    let standard = |step: u32| {
        sop.step(step)
            .and_then(|s| s.time_standard)
            .map_or_else(|| "-".into(), |t| t.label(lang))
    };
    let mut rows = Vec::new();
    for e in events {
        let step = step_label(sop, e.step, e.handoff);
        let (to, note, std, (res, late)) = match &e.kind {
            EventKind::Opened { origin, .. } => {
                let first = sop.first_step();
                let note = match origin {
                    Origin::Detected => tr(
                        lang,
                        "Tiket dibuka dari gangguan yang terdeteksi",
                        "Ticket opened from a detected fault",
                    ),
                    Origin::Letter { number, date, .. } => format!(
                        "{} {number} {} {}",
                        tr(lang, "Surat", "Letter"),
                        tr(lang, "tanggal", "dated"),
                        date.format("%Y-%m-%d")
                    ),
                };
                (
                    roles_to(sop, first.actors_at(0), None),
                    note,
                    "-".into(),
                    ("-".into(), false),
                )
            }
            EventKind::Disposed {
                to_roles,
                to_user,
                note,
                timing,
                measurements,
                closed,
                ..
            } => {
                let mut n = note.clone().unwrap_or_default();
                if e.user == SYSTEM_USER
                    && info.reason.is_some()
                    && e.step == sop.first_step().number
                {
                    // The detection is the request: the trail's note is in
                    // Bahasa Indonesia, the card says it in its own language.
                    n = format!(
                        "{}: {}",
                        tr(lang, "deteksi otomatis", "automatic detection"),
                        info.problem_text(lang, cal)
                    );
                }
                if let Some(m) = measurements {
                    let extra = match &m.waived {
                        Some(w) if !(m.before && m.after) => {
                            format!("{}: {w}", tr(lang, "Tanpa pengukuran", "No measurements"))
                        }
                        _ => tr(
                            lang,
                            "Pengukuran sebelum dan sesudah terlampir",
                            "Measurements before and after attached",
                        ),
                    };
                    n = if n.is_empty() {
                        extra
                    } else {
                        format!("{n}; {extra}")
                    };
                }
                let to = if *closed {
                    tr(lang, "Selesai", "Done")
                } else {
                    roles_to(
                        sop,
                        to_roles,
                        to_user.as_ref().map(|u| people.name(u, lang)),
                    )
                };
                (to, n, standard(e.step), result(timing, lang))
            }
            EventKind::Returned {
                to_roles,
                reason,
                timing,
                ..
            } => (
                roles_to(sop, to_roles, None),
                format!("{}: {reason}", tr(lang, "Dikembalikan", "Returned")),
                standard(e.step),
                result(timing, lang),
            ),
            EventKind::StatusUpdated { status } => (
                "-".into(),
                format!("Status: {status}"),
                "-".into(),
                ("-".into(), false),
            ),
            EventKind::Acknowledged { by, on_behalf } => {
                let mut n = format!(
                    "{} {by}",
                    tr(
                        lang,
                        "Laporan pekerjaan diketahui oleh",
                        "Work report acknowledged by"
                    )
                );
                if *on_behalf {
                    n.push_str(&tr(
                        lang,
                        " (dicatat Helpdesk atas nama OPD)",
                        " (recorded by the Helpdesk on the OPD's behalf)",
                    ));
                }
                ("-".into(), n, "-".into(), ("-".into(), false))
            }
            EventKind::Escalated {
                level,
                notify_roles,
                notify_users,
                ..
            } => (
                roles_to(
                    sop,
                    notify_roles,
                    notify_users.first().map(|u| people.name(u, lang)),
                ),
                match lang {
                    Lang::Id => format!("Peringatan keterlambatan tingkat {level}"),
                    Lang::En => format!("Overdue warning, level {level}"),
                },
                standard(e.step),
                (tr(lang, "Melebihi waktu", "Exceeded"), true),
            ),
            EventKind::Voided { reason } => (
                tr(lang, "Batal", "Void"),
                format!(
                    "{}: {reason}",
                    tr(lang, "Tiket dibatalkan", "Ticket voided")
                ),
                "-".into(),
                ("-".into(), false),
            ),
            // Not a disposition: the trail and `siaga ticket audit` show it.
            EventKind::ReportFrozen { .. } | EventKind::Refused { .. } => continue,
        };
        rows.push(CardRow {
            no: rows.len() + 1,
            time: cal.fmt_local(e.at),
            step,
            from: who(sop, people, e, lang),
            to,
            note,
            standard: std,
            result: res,
            late,
        });
    }
    let origin = match &info.origin {
        Origin::Detected => tr(lang, "deteksi otomatis", "automatic detection"),
        Origin::Letter {
            number,
            date,
            subject,
        } => format!(
            "{} {number}, {} {}: {subject}",
            tr(lang, "surat", "letter"),
            tr(lang, "tanggal", "dated"),
            date.format("%Y-%m-%d")
        ),
    };
    let position = if let Some(closed) = state.closed_at {
        format!(
            "{} {}",
            tr(lang, "Selesai pada", "Done at"),
            cal.fmt_local(closed)
        )
    } else {
        let roles = sop
            .step(state.position.step)
            .map(|s| {
                roles_to(
                    sop,
                    s.actors_at(state.position.handoff),
                    state.assignee.as_ref().map(|u| people.name(u, lang)),
                )
            })
            .unwrap_or_default();
        format!(
            "{} {}: {roles}",
            tr(lang, "Langkah", "Step"),
            step_label(sop, state.position.step, state.position.handoff)
        )
    };
    let mut header = vec![
        (tr(lang, "Nomor tiket", "Ticket"), info.number.clone()),
        ("SOP".into(), format!("{} ({})", sop.name, sop.version())),
        (
            "OPD".into(),
            info.opd_name
                .as_ref()
                .map_or_else(|| info.opd.clone(), |n| format!("{n} ({})", info.opd)),
        ),
        (tr(lang, "Asal", "Origin"), origin),
        (tr(lang, "Perihal", "Subject"), info.problem_text(lang, cal)),
    ];
    let dl = info.device_link();
    if !dl.is_empty() {
        header.push((tr(lang, "Perangkat/link", "Device/link"), dl));
    }
    header.push((
        tr(lang, "Dibuka", "Opened"),
        format!("{} {}", cal.fmt_local(info.opened_at), cal.zone_abbr()),
    ));
    header.push((tr(lang, "Posisi", "Position"), position));
    // Everyone who took a step initials the card: full name, NIP, jabatan.
    let mut signers: Vec<CardSigner> = Vec::new();
    for e in events {
        let acted = matches!(
            e.kind,
            EventKind::Disposed { .. }
                | EventKind::Returned { .. }
                | EventKind::StatusUpdated { .. }
                | EventKind::Acknowledged { .. }
                | EventKind::Voided { .. }
        );
        if !acted || e.user == SYSTEM_USER || signers.iter().any(|s| s.login == e.user) {
            continue;
        }
        let s = people.signer(&e.user, lang);
        signers.push(CardSigner {
            login: e.user.clone(),
            role: e
                .acting_for
                .as_ref()
                .or(e.role.as_ref())
                .map(|r| sop.role_name(r).to_string())
                .unwrap_or_default(),
            name: s.name,
            nip: s.nip,
            jabatan: s.jabatan,
        });
    }
    Card {
        title: tr(
            lang,
            "KARTU KENDALI / LEMBAR DISPOSISI",
            "CONTROL CARD / DISPOSITION SHEET",
        ),
        header,
        rows,
        signers,
        columns: match lang {
            Lang::Id => [
                "No",
                "Waktu",
                "Langkah",
                "Dari",
                "Kepada",
                "Catatan",
                "Waktu standar",
                "Keterangan",
            ],
            Lang::En => [
                "No", "Time", "Step", "From", "To", "Note", "Standard", "Result",
            ],
        }
        .map(str::to_string),
        lang,
    }
}

impl Card {
    /// Plain text, one block per disposition.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        let width = self
            .header
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (k, v) in &self.header {
            let _ = writeln!(out, "{k:<width$} : {v}");
        }
        let c = &self.columns;
        for r in &self.rows {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{}. {}  {} {}  {} {} → {}",
                r.no,
                r.time,
                c[2],
                r.step,
                c[3].to_lowercase(),
                r.from,
                r.to
            );
            if !r.note.is_empty() {
                let _ = writeln!(out, "   {}: {}", c[5], r.note);
            }
            if r.standard != "-" || r.result != "-" {
                let _ = writeln!(out, "   {}: {}  {}: {}", c[6], r.standard, c[7], r.result);
            }
        }
        if !self.signers.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "{}", self.signers_title());
            for (i, s) in self.signers.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{}. {}   {}: ..........",
                    i + 1,
                    s.line(),
                    self.paraf()
                );
            }
        }
        out
    }

    fn signers_title(&self) -> String {
        tr(self.lang, "Petugas dan paraf", "Officers and initials")
    }

    fn paraf(&self) -> String {
        tr(self.lang, "Paraf", "Initials")
    }

    /// A self-contained HTML page (inline style, no external resources).
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        let lang = match self.lang {
            Lang::Id => "id",
            Lang::En => "en",
        };
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n\
             body{{font-family:sans-serif;margin:2em;color:#111}}\n\
             h1{{font-size:1.3em}}\n\
             table{{border-collapse:collapse;width:100%}}\n\
             th,td{{border:1px solid #444;padding:4px 6px;vertical-align:top;font-size:0.9em}}\n\
             th{{background:#eee}}\n\
             table.head td{{border:none;padding:2px 8px 2px 0}}\n\
             tr.late td.result{{color:#a00;font-weight:bold}}\n\
             td.paraf{{width:8em;height:2.5em}}\n\
             @media print{{body{{margin:0}}}}\n</style>\n</head>\n<body>\n",
            esc(&self.title)
        );
        let _ = writeln!(out, "<h1>{}</h1>\n<table class=\"head\">", esc(&self.title));
        for (k, v) in &self.header {
            let _ = writeln!(
                out,
                "<tr><td><b>{}</b></td><td>{}</td></tr>",
                esc(k),
                esc(v)
            );
        }
        let _ = writeln!(out, "</table>\n<br>\n<table class=\"card\">\n<tr>");
        for c in &self.columns {
            let _ = write!(out, "<th>{}</th>", esc(c));
        }
        let _ = writeln!(out, "</tr>");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"result\">{}</td></tr>",
                if r.late { " class=\"late\"" } else { "" },
                r.no,
                esc(&r.time),
                esc(&r.step),
                esc(&r.from),
                esc(&r.to),
                esc(&r.note),
                esc(&r.standard),
                esc(&r.result)
            );
        }
        let _ = writeln!(out, "</table>");
        if !self.signers.is_empty() {
            let _ = writeln!(
                out,
                "<h2>{}</h2>\n<table class=\"signers\">\n<tr><th>No</th><th>{}</th><th>NIP</th><th>{}</th><th>{}</th><th>{}</th></tr>",
                esc(&self.signers_title()),
                esc(&tr(self.lang, "Nama", "Name")),
                esc(&tr(self.lang, "Jabatan", "Position")),
                esc(&tr(self.lang, "Peran", "Role")),
                esc(&self.paraf()),
            );
            for (i, s) in self.signers.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"paraf\"></td></tr>",
                    i + 1,
                    esc(&s.name),
                    esc(s.nip.strip_prefix("NIP ").unwrap_or(&s.nip)),
                    esc(&s.jabatan),
                    esc(&s.role),
                );
            }
            let _ = writeln!(out, "</table>");
        }
        let _ = writeln!(out, "</body>\n</html>");
        out
    }
}

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sop::file::default_sop;
    use crate::sop::people::tests::office;
    use crate::sop::workflow::tests::{dispose, user_for, walk, wib};
    use crate::sop::workflow::{Action, Actor, Workflow};
    use chrono::Duration;
    use test_case::test_case;

    fn info() -> TicketInfo {
        TicketInfo {
            number: "PJ-2026-0001".into(),
            opd: "dinkes".into(),
            opd_name: Some("Dinas Kesehatan".into()),
            origin: Origin::Detected,
            problem: "Loss 40% pada <dinkes-rtr> & uplink".into(),
            reason: None,
            device: Some("dinkes-rtr".into()),
            link: None,
            opened_at: wib("2026-11-23 08:00"),
        }
    }

    #[test]
    fn a_walked_ticket_shows_every_disposition() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let (t, events) = walk(&wf, wib("2026-11-23 08:00"), Duration::minutes(10));
        let card = build(&info(), &t, &events, &sop, &cal, &office(), Lang::Id);
        // Opened + 10 dispositions + a status update + the acknowledgement.
        assert_eq!(card.rows.len(), 13);
        let steps: Vec<&str> = card.rows.iter().map(|r| r.step.as_str()).collect();
        assert_eq!(
            steps,
            [
                "1", "1", "2", "3", "4", "5", "6", "6", "6", "7", "8a", "8b", "9"
            ]
        );
        assert!(card.rows.iter().all(|r| !r.late));
        assert_eq!(
            card.rows[3].from,
            "Agus Salim, S.T. (Kepala Bidang Aplikasi dan Informatika)"
        );
        assert_eq!(card.rows[3].to, "Pranata Komputer");
        assert_eq!(card.rows[3].standard, "1 jam");
        assert_eq!(card.rows[3].result, "Tepat waktu (10 menit)");
        assert_eq!(card.rows.last().map(|r| r.to.as_str()), Some("Selesai"));
        let text = card.to_text();
        assert!(
            text.starts_with("KARTU KENDALI / LEMBAR DISPOSISI\n"),
            "{text}"
        );
        assert!(
            text.contains(" : Selesai pada 2026-11-23 09:40\n"),
            "{text}"
        );
        assert!(
            text.contains("Laporan pekerjaan diketahui oleh Andi, Kasubag Umum"),
            "{text}"
        );
        assert!(
            text.contains("Pengukuran sebelum dan sesudah terlampir"),
            "{text}"
        );
        let en = build(&info(), &t, &events, &sop, &cal, &office(), Lang::En).to_text();
        assert!(en.starts_with("CONTROL CARD / DISPOSITION SHEET\n"), "{en}");
        assert!(en.contains("Met (10 min)"), "{en}");
    }

    #[test_case(Lang::Id, "a.n. Kepala Dinas", "Melebihi waktu" ; "indonesian")]
    #[test_case(Lang::En, "for Kepala Dinas", "Exceeded" ; "english")]
    fn acting_and_lateness_are_shown(lang: Lang, acting: &str, late: &str) {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let (mut t, ev) = wf.start(
            Origin::Detected,
            "dinkes",
            false,
            &Actor::system(),
            wib("2026-11-23 08:00"),
        );
        let mut events = vec![ev];
        events.push(
            wf.apply(
                &mut t,
                dispose(),
                &user_for("pemohon"),
                wib("2026-11-23 09:00"),
            )
            .expect("ok"),
        );
        // Step 2 takes two working days: late.
        events.push(
            wf.apply(
                &mut t,
                dispose(),
                &user_for("sekretaris_dinas"),
                wib("2026-11-25 09:00"),
            )
            .expect("ok"),
        );
        let refused = wf
            .apply(
                &mut t,
                dispose(),
                &user_for("helpdesk"),
                wib("2026-11-25 09:05"),
            )
            .expect_err("no");
        events.push(*refused.event);
        let card = build(&info(), &t, &events, &sop, &cal, &office(), lang);
        assert_eq!(card.rows.len(), 3, "refusals are not on the card");
        let row = &card.rows[2];
        assert!(row.from.contains(acting), "{row:?}");
        assert!(row.result.starts_with(late), "{row:?}");
        assert!(row.late);
        let html = card.to_html();
        assert!(html.contains("<tr class=\"late\">"), "{html}");
    }

    #[test]
    fn html_is_escaped_and_self_contained() {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let (mut t, ev) = wf.start(
            Origin::Detected,
            "dinkes",
            false,
            &Actor::system(),
            wib("2026-11-23 08:00"),
        );
        let mut events = vec![ev];
        let a = Action::Dispose {
            to: None,
            note: Some("<script>alert(1)</script>".into()),
            measurements: Default::default(),
        };
        events.push(
            wf.apply(&mut t, a, &user_for("pemohon"), wib("2026-11-23 09:00"))
                .expect("ok"),
        );
        let html = build(&info(), &t, &events, &sop, &cal, &office(), Lang::Id).to_html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<html lang=\"id\">"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;dinkes-rtr&gt; &amp; uplink"));
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("src="),
            "no external resources"
        );
        assert!(html.contains("Langkah 2: Kepala Dinas"), "{html}");
    }

    #[test_case(59, Lang::Id, "0 menit")]
    #[test_case(3600, Lang::Id, "1 jam")]
    #[test_case(3900, Lang::Id, "1 jam 5 menit")]
    #[test_case(3900, Lang::En, "1 h 5 min")]
    fn durations(secs: i64, lang: Lang, want: &str) {
        assert_eq!(duration_label(secs, lang), want);
    }
}
