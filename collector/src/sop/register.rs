//! The register "Buku permintaan Layanan dan Gangguan": one row per ticket opened
//! in a period, as CSV (the `csv` crate) or xlsx (`rust_xlsxwriter`).

use std::io::Write;

use chrono::{DateTime, NaiveDate, Utc};

use super::calendar::Calendar;
use super::card::duration_label;
use super::model::{Lang, Sop};
use super::people::People;
use super::workflow::{Event, EventKind, TicketInfo, TicketSop, Workflow};

/// A ticket as the register needs it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Ticket facts.
    pub info: &'a TicketInfo,
    /// Its SOP state.
    pub state: &'a TicketSop,
    /// Its events (from the audit trail).
    pub events: &'a [Event],
    /// The SOP it runs on.
    pub sop: &'a Sop,
}

/// One row of the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Ticket number.
    pub number: String,
    /// Date opened (local).
    pub date: String,
    /// OPD.
    pub opd: String,
    /// Letter number, or "deteksi otomatis".
    pub origin: String,
    /// Fault description.
    pub description: String,
    /// Device / link.
    pub device_link: String,
    /// Current step ("6 – Tim Teknis") or "Selesai".
    pub current_step: String,
    /// The technician (who did the work step).
    pub technician: String,
    /// Date closed (local), empty while open.
    pub closed: String,
    /// Opened to closed, calendar time; empty while open.
    pub total_duration: String,
    /// Steps done late (and the current one if overdue now), e.g. "3, 6".
    pub steps_late: String,
    /// The ticket's audit trail head signed by the collector (records, head
    /// hash, key, signature); empty where the collector has no audit key.
    pub audit: String,
    /// `date` as a date, for a spreadsheet.
    pub opened_on: NaiveDate,
    /// `closed` as a date.
    pub closed_on: Option<NaiveDate>,
    /// `total_duration` in seconds.
    pub duration_secs: Option<i64>,
}

/// Column headers.
pub fn headers(lang: Lang) -> [&'static str; 12] {
    match lang {
        Lang::Id => [
            "Nomor",
            "Tanggal",
            "OPD",
            "Asal",
            "Uraian gangguan",
            "Perangkat/link",
            "Langkah saat ini",
            "Teknisi",
            "Tanggal selesai",
            "Total durasi",
            "Langkah terlambat",
            "Jejak audit (tertanda)",
        ],
        Lang::En => [
            "number",
            "date",
            "opd",
            "origin",
            "description",
            "device_link",
            "current_step",
            "technician",
            "closed",
            "total_duration",
            "steps_late",
            "audit_trail_signed",
        ],
    }
}

impl Row {
    fn cells(&self) -> [&str; 12] {
        [
            &self.number,
            &self.date,
            &self.opd,
            &self.origin,
            &self.description,
            &self.device_link,
            &self.current_step,
            &self.technician,
            &self.closed,
            &self.total_duration,
            &self.steps_late,
            &self.audit,
        ]
    }
}

fn technician(e: &Entry<'_>) -> Option<String> {
    let work: Vec<u32> = e
        .sop
        .steps
        .iter()
        .filter(|s| s.work)
        .map(|s| s.number)
        .collect();
    // Who disposed the work step, else who last updated its status, else who it was handed to.
    let mut disposed = None;
    let mut updated = None;
    let mut assigned = None;
    for ev in e.events {
        match &ev.kind {
            EventKind::Disposed { .. } if work.contains(&ev.step) => {
                disposed = Some(ev.user.clone())
            }
            EventKind::StatusUpdated { .. } if work.contains(&ev.step) => {
                updated = Some(ev.user.clone())
            }
            EventKind::Disposed {
                to_step,
                to_user: Some(u),
                ..
            } if work.contains(to_step) => assigned = Some(u.clone()),
            _ => {}
        }
    }
    disposed.or(updated).or(assigned)
}

/// The steps of a ticket done after their time standard, and its current
/// step if that is overdue at `now`, in order: the register's "Langkah
/// terlambat", as the control card judges each disposition.
pub fn late_steps(e: &Entry<'_>, cal: &Calendar, now: DateTime<Utc>) -> Vec<u32> {
    let wf = Workflow::new(e.sop, cal);
    let mut late: Vec<u32> = e
        .events
        .iter()
        .filter(|ev| match &ev.kind {
            EventKind::Disposed {
                timing: Some(t), ..
            }
            | EventKind::Returned {
                timing: Some(t), ..
            } => !t.met,
            _ => false,
        })
        .map(|ev| ev.step)
        .collect();
    if wf.is_overdue(e.state, now) {
        late.push(e.state.position.step);
    }
    late.sort_unstable();
    late.dedup();
    late
}

/// An OPD's tickets of a period by whether they kept the SOP's time
/// standards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Standards {
    /// No step late (an open ticket: so far, and its current step not
    /// overdue at the time asked).
    pub within: u32,
    /// At least one step late ([`late_steps`]).
    pub outside: u32,
}

/// Per OPD, the tickets opened from `from` to `to` (local dates, both
/// included; the register's tickets) inside and outside the SOP's time
/// standards, judged at `now` by [`late_steps`]. A voided ticket is no
/// service asked for and is left out.
pub fn standards(
    entries: &[Entry<'_>],
    cal: &Calendar,
    from: NaiveDate,
    to: NaiveDate,
    now: DateTime<Utc>,
) -> std::collections::BTreeMap<String, Standards> {
    let mut out: std::collections::BTreeMap<String, Standards> = Default::default();
    for e in entries {
        let d = cal.local_date(e.info.opened_at);
        if d < from || d > to || e.state.is_void() {
            continue;
        }
        let s = out.entry(e.info.opd.clone()).or_default();
        if late_steps(e, cal, now).is_empty() {
            s.within += 1;
        } else {
            s.outside += 1;
        }
    }
    out
}

/// The rows for tickets opened from `from` to `to` (local dates, both included),
/// in order of opening. `now` decides whether an open ticket's step is overdue.
pub fn rows(
    entries: &[Entry<'_>],
    cal: &Calendar,
    people: &People,
    from: NaiveDate,
    to: NaiveDate,
    lang: Lang,
    now: DateTime<Utc>,
) -> Vec<Row> {
    let mut picked: Vec<&Entry<'_>> = entries
        .iter()
        .filter(|e| {
            let d = cal.local_date(e.info.opened_at);
            d >= from && d <= to
        })
        .collect();
    picked.sort_by(|a, b| {
        (a.info.opened_at, &a.info.number).cmp(&(b.info.opened_at, &b.info.number))
    });
    picked
        .into_iter()
        .map(|e| {
            let late = late_steps(e, cal, now);
            let current_step = match e.state.closed_at {
                Some(_) if e.state.is_void() => {
                    let reason = e.state.voided.as_ref().map_or("", |v| v.reason.as_str());
                    match lang {
                        Lang::Id => format!("Batal: {reason}"),
                        Lang::En => format!("Void: {reason}"),
                    }
                }
                Some(_) => match lang {
                    Lang::Id => "Selesai".to_string(),
                    Lang::En => "Done".to_string(),
                },
                None => {
                    let roles = e
                        .sop
                        .step(e.state.position.step)
                        .map(|s| {
                            s.actors_at(e.state.position.handoff)
                                .iter()
                                .map(|r| e.sop.role_name(r))
                                .collect::<Vec<_>>()
                                .join(" / ")
                        })
                        .unwrap_or_default();
                    format!("{} – {roles}", e.state.position.step)
                }
            };
            let opened_on = cal.local_date(e.info.opened_at);
            let closed_on = e.state.closed_at.map(|c| cal.local_date(c));
            let duration_secs = e
                .state
                .closed_at
                .map(|c| (c - e.info.opened_at).num_seconds().max(0));
            Row {
                opened_on,
                closed_on,
                duration_secs,
                number: e.info.number.clone(),
                date: cal
                    .local_date(e.info.opened_at)
                    .format("%Y-%m-%d")
                    .to_string(),
                opd: e
                    .info
                    .opd_name
                    .clone()
                    .unwrap_or_else(|| e.info.opd.clone()),
                origin: e.info.origin.label(lang),
                description: e.info.problem_text(lang, cal),
                device_link: e.info.device_link(),
                current_step,
                technician: technician(e)
                    .map(|login| people.name(&login, lang))
                    .unwrap_or_default(),
                closed: e
                    .state
                    .closed_at
                    .map(|c| cal.local_date(c).format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                total_duration: e
                    .state
                    .closed_at
                    .map(|c| duration_label((c - e.info.opened_at).num_seconds(), lang))
                    .unwrap_or_default(),
                steps_late: late
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                audit: String::new(),
            }
        })
        .collect()
}

/// A cell a spreadsheet would not read as a formula: text that starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return (OWASP's CSV-injection
/// list) gets a leading `'`, which spreadsheets show as text. Letter numbers
/// and subjects are copied from letters, so they are not ours to trust.
pub fn inert_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// Write the rows as CSV with a header line; every cell through [`inert_cell`].
pub fn write_csv<W: Write>(rows: &[Row], lang: Lang, out: W) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(headers(lang))?;
    for r in rows {
        w.write_record(r.cells().iter().map(|c| inert_cell(c).into_owned()))?;
    }
    w.flush()?;
    Ok(())
}

/// The rows as an xlsx workbook (bytes), one sheet with a bold header row.
pub fn to_xlsx(rows: &[Row], lang: Lang) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let sheet = wb.add_worksheet();
    sheet.set_name(match lang {
        Lang::Id => "Buku Layanan dan Gangguan",
        Lang::En => "Service and fault register",
    })?;
    let bold = Format::new().set_bold();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    // A duration is a number of days; shown as hours and minutes.
    let duration = Format::new().set_num_format(match lang {
        Lang::Id => "[h] \"jam\" m \"menit\"",
        Lang::En => "[h] \"h\" m \"min\"",
    });
    for (c, h) in headers(lang).iter().enumerate() {
        let col = u16::try_from(c).unwrap_or(u16::MAX);
        sheet.write_string_with_format(0, col, *h, &bold)?;
        sheet.set_column_width(col, if c == 4 { 48 } else { 18 })?;
    }
    let excel_date = |d: NaiveDate| {
        use chrono::Datelike;
        rust_xlsxwriter::ExcelDateTime::from_ymd(
            u16::try_from(d.year()).unwrap_or(1900),
            u8::try_from(d.month()).unwrap_or(1),
            u8::try_from(d.day()).unwrap_or(1),
        )
    };
    for (i, r) in rows.iter().enumerate() {
        let row = u32::try_from(i + 1).unwrap_or(u32::MAX);
        for (c, v) in r.cells().iter().enumerate() {
            let col = u16::try_from(c).unwrap_or(u16::MAX);
            // Typed cells: dates as dates, the duration as a number; the
            // rest as text (never a formula).
            match c {
                COL_DATE => {
                    sheet.write_datetime_with_format(row, col, excel_date(r.opened_on)?, &date)?;
                }
                COL_CLOSED if r.closed_on.is_some() => {
                    if let Some(d) = r.closed_on {
                        sheet.write_datetime_with_format(row, col, excel_date(d)?, &date)?;
                    }
                }
                COL_DURATION if r.duration_secs.is_some() => {
                    if let Some(s) = r.duration_secs {
                        // Whole minutes, as the CSV shows them.
                        let days = (s / 60) as f64 / (24.0 * 60.0);
                        sheet.write_number_with_format(row, col, days, &duration)?;
                    }
                }
                _ => {
                    sheet.write_string(row, col, *v)?;
                }
            }
        }
    }
    wb.save_to_buffer()
}

/// Columns (0-based) written typed in the workbook.
const COL_DATE: usize = 1;
const COL_CLOSED: usize = 8;
const COL_DURATION: usize = 9;

/// Title of the register for a period.
pub fn title(lang: Lang, from: NaiveDate, to: NaiveDate) -> String {
    match lang {
        Lang::Id => format!("Buku permintaan Layanan dan Gangguan, {from} s.d. {to}"),
        Lang::En => format!("Register of service and fault requests, {from} to {to}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sop::file::default_sop;
    use crate::sop::people::tests::office;
    use crate::sop::workflow::tests::{dispose, user_for, walk, wib};
    use crate::sop::workflow::{Action, Actor, Origin};
    use chrono::Duration;
    use test_case::test_case;

    struct Fixture {
        sop: Sop,
        cal: Calendar,
        tickets: Vec<(TicketInfo, TicketSop, Vec<Event>)>,
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn fixture() -> Fixture {
        let sop = default_sop();
        let cal = Calendar::default();
        let mut tickets = Vec::new();
        {
            let wf = Workflow::new(&sop, &cal);
            // Before the period.
            let opened = wib("2026-10-31 23:30");
            let (t, ev) = wf.start(Origin::Detected, "dinkes", false, &Actor::system(), opened);
            tickets.push((info("PJ-2026-0001", Origin::Detected, opened), t, vec![ev]));
            // In the period, walked to the end in good time.
            let opened = wib("2026-11-02 08:00");
            let (t, evs) = walk(&wf, opened, Duration::minutes(10));
            tickets.push((info("PJ-2026-0002", Origin::Detected, opened), t, evs));
            // In the period, from a letter; step 2 done late; now at step 3.
            let opened = wib("2026-11-30 09:00");
            let letter = Origin::Letter {
                number: "005/77/BAPPEDA/XI/2026".into(),
                date: date("2026-11-28"),
                subject: "Internet ruang rapat putus".into(),
            };
            let (mut t, ev) = wf.start(
                letter.clone(),
                "bappeda",
                false,
                &user_for("helpdesk"),
                opened,
            );
            let mut evs = vec![ev];
            evs.push(
                wf.apply(
                    &mut t,
                    dispose(),
                    &user_for("pemohon"),
                    wib("2026-11-30 09:10"),
                )
                .expect("ok"),
            );
            evs.push(
                wf.apply(
                    &mut t,
                    dispose(),
                    &user_for("kepala_dinas"),
                    wib("2026-12-01 12:00"),
                )
                .expect("ok"),
            );
            let mut i = info("PJ-2026-0003", letter, opened);
            i.opd = "bappeda".into();
            i.opd_name = None;
            i.problem = "Internet ruang rapat putus, pelapor: \"Pak Joko\"".into();
            i.device = None;
            i.link = Some("ruang-rapat".into());
            tickets.push((i, t, evs));
            // After the period.
            let opened = wib("2026-12-01 00:10");
            let (t, ev) = wf.start(Origin::Detected, "dinkes", false, &Actor::system(), opened);
            tickets.push((info("PJ-2026-0004", Origin::Detected, opened), t, vec![ev]));
        }
        Fixture { sop, cal, tickets }
    }

    fn info(number: &str, origin: Origin, opened_at: DateTime<Utc>) -> TicketInfo {
        TicketInfo {
            number: number.into(),
            opd: "dinkes".into(),
            opd_name: Some("Dinas Kesehatan".into()),
            origin,
            problem: "Loss 40% ke dinkes-rtr".into(),
            reason: None,
            device: Some("dinkes-rtr".into()),
            link: None,
            opened_at,
        }
    }

    fn period_rows(f: &Fixture, lang: Lang) -> Vec<Row> {
        let entries: Vec<Entry<'_>> = f
            .tickets
            .iter()
            .map(|(i, s, e)| Entry {
                info: i,
                state: s,
                events: e,
                sop: &f.sop,
            })
            .collect();
        rows(
            &entries,
            &f.cal,
            &office(),
            date("2026-11-01"),
            date("2026-11-30"),
            lang,
            wib("2026-12-01 12:00"),
        )
    }

    #[test]
    fn csv_holds_exactly_the_period_with_the_right_columns() {
        let f = fixture();
        let mut buf = Vec::new();
        write_csv(&period_rows(&f, Lang::Id), Lang::Id, &mut buf).expect("csv");
        let mut rd = csv::Reader::from_reader(buf.as_slice());
        let hdr: Vec<String> = rd
            .headers()
            .expect("headers")
            .iter()
            .map(str::to_string)
            .collect();
        assert_eq!(hdr, headers(Lang::Id));
        let recs: Vec<csv::StringRecord> = rd.records().collect::<Result<_, _>>().expect("records");
        let numbers: Vec<&str> = recs.iter().map(|r| &r[0]).collect();
        assert_eq!(numbers, ["PJ-2026-0002", "PJ-2026-0003"]);
        let done = &recs[0];
        assert_eq!(
            done.iter().collect::<Vec<_>>(),
            [
                "PJ-2026-0002",
                "2026-11-02",
                "Dinas Kesehatan",
                "deteksi otomatis",
                "Loss 40% ke dinkes-rtr",
                "dinkes-rtr",
                "Selesai",
                "Budi Santoso, S.Kom.",
                "2026-11-02",
                "1 jam 40 menit",
                "",
                ""
            ]
        );
        let open = &recs[1];
        assert_eq!(&open[2], "bappeda");
        assert_eq!(&open[3], "005/77/BAPPEDA/XI/2026");
        assert_eq!(
            &open[4],
            "Internet ruang rapat putus, pelapor: \"Pak Joko\""
        );
        assert_eq!(&open[5], "ruang-rapat");
        assert_eq!(&open[6], "3 – Kepala Bidang Aplikasi dan Informatika");
        assert_eq!(&open[8], "");
        // Step 2 took from Monday 09:10 to Tuesday 12:00 (more than a working day).
        assert_eq!(&open[10], "2");
    }

    #[test_case(Lang::En, "automatic detection", "Done" ; "english")]
    #[test_case(Lang::Id, "deteksi otomatis", "Selesai" ; "indonesian")]
    fn languages(lang: Lang, origin: &str, done: &str) {
        let f = fixture();
        let rows = period_rows(&f, lang);
        assert_eq!(rows[0].origin, origin);
        assert_eq!(rows[0].current_step, done);
    }

    #[test]
    fn overdue_open_step_counts_as_late() {
        let f = fixture();
        let entries: Vec<Entry<'_>> = f
            .tickets
            .iter()
            .map(|(i, s, e)| Entry {
                info: i,
                state: s,
                events: e,
                sop: &f.sop,
            })
            .collect();
        let later = rows(
            &entries,
            &f.cal,
            &office(),
            date("2026-11-30"),
            date("2026-11-30"),
            Lang::Id,
            wib("2026-12-02 12:00"),
        );
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].steps_late, "2, 3");
    }

    #[test]
    fn tickets_of_the_period_count_inside_or_outside_the_time_standards() {
        let f = fixture();
        let entries: Vec<Entry<'_>> = f
            .tickets
            .iter()
            .map(|(i, s, e)| Entry {
                info: i,
                state: s,
                events: e,
                sop: &f.sop,
            })
            .collect();
        let got = standards(
            &entries,
            &f.cal,
            date("2026-11-01"),
            date("2026-11-30"),
            wib("2026-12-02 12:00"),
        );
        // Tickets 0001 and 0004 are outside the period; 0002 was walked to
        // the end in good time; 0003 did step 2 late.
        let want = std::collections::BTreeMap::from([
            (
                "bappeda".to_string(),
                Standards {
                    within: 0,
                    outside: 1,
                },
            ),
            (
                "dinkes".to_string(),
                Standards {
                    within: 1,
                    outside: 0,
                },
            ),
        ]);
        assert_eq!(got, want);
        // December: 0004 is still at step 1, overdue a day later.
        let (dec1, dec31) = (date("2026-12-01"), date("2026-12-31"));
        let on_time = standards(&entries, &f.cal, dec1, dec31, wib("2026-12-01 00:20"));
        assert_eq!(
            on_time["dinkes"],
            Standards {
                within: 1,
                outside: 0
            }
        );
        let overdue = standards(&entries, &f.cal, dec1, dec31, wib("2026-12-05 12:00"));
        assert_eq!(
            overdue["dinkes"],
            Standards {
                within: 0,
                outside: 1
            }
        );
    }

    #[test_case("=1+1" ; "equals")]
    #[test_case("=HYPERLINK(\"http://evil.example\",\"klik\")" ; "hyperlink")]
    #[test_case("+1+1" ; "plus")]
    #[test_case("-1+1" ; "minus")]
    #[test_case("@SUM(A1:A2)" ; "at")]
    #[test_case("\t=1+1" ; "tab")]
    #[test_case("\r=1+1" ; "carriage return")]
    fn csv_cells_that_a_spreadsheet_would_run_come_out_as_text(evil: &str) {
        let f = fixture();
        let mut rows = period_rows(&f, Lang::Id);
        rows[1].origin = evil.to_string();
        rows[1].description = evil.to_string();
        rows[1].technician = evil.to_string();
        let mut buf = Vec::new();
        write_csv(&rows, Lang::Id, &mut buf).expect("csv");
        let mut rd = csv::Reader::from_reader(buf.as_slice());
        let recs: Vec<csv::StringRecord> = rd.records().collect::<Result<_, _>>().expect("records");
        for col in [3, 4, 7] {
            let cell = &recs[1][col];
            assert_eq!(cell, format!("'{evil}"), "column {col}");
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "column {col}: {cell:?}"
            );
        }
        // Other cells are as they were.
        assert_eq!(&recs[0][3], "deteksi otomatis");
        assert_eq!(&recs[1][0], "PJ-2026-0003");
    }

    #[test_case("005/77/BAPPEDA/XI/2026", "005/77/BAPPEDA/XI/2026" ; "letter number")]
    #[test_case("3 – Kepala Bidang", "3 – Kepala Bidang" ; "en dash is not a minus")]
    #[test_case("a=b", "a=b" ; "equals inside")]
    #[test_case("", "" ; "empty")]
    fn ordinary_cells_are_unchanged(cell: &str, want: &str) {
        assert_eq!(inert_cell(cell), want);
    }

    #[test]
    fn xlsx_is_a_zip_workbook() {
        let f = fixture();
        let bytes = to_xlsx(&period_rows(&f, Lang::Id), Lang::Id).expect("xlsx");
        assert!(bytes.starts_with(b"PK\x03\x04"), "an xlsx is a zip archive");
        assert!(bytes.len() > 1000);
    }

    /// A ticket the collector opened because demo-ap stopped answering
    /// SNMP, walked to the end: its register row, with the agent's raw error
    /// behind the reason.
    fn detected_snmp_row(lang: Lang) -> Vec<Row> {
        use crate::health::reason::{Cause, SnmpFailure};
        use crate::health::state::{Finding, Problem, Subject};
        use crate::health::{Level, Reason};
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let opened = wib("2026-11-02 08:00");
        let (t, evs) = walk(&wf, opened, Duration::minutes(10));
        let finding = Finding {
            problem: Problem::SnmpUnreachable,
            level: Level::Degraded,
            value: 0.0,
            threshold: None,
            detail: RAW_SNMP_ERROR.into(),
            cause: Some(Cause::Snmp {
                failure: SnmpFailure::Timeout,
                waited_ms: Some(4_002),
            }),
        };
        let reason = Reason::of(
            &Subject::device("demo-ap"),
            Problem::SnmpUnreachable,
            Some(&finding),
            0.0,
        );
        let mut i = info("PJ-2026-0002", Origin::Detected, opened);
        i.opd = "demo".into();
        i.opd_name = Some("OPD Demo".into());
        // As the collector records it: the English sentence for the CLI,
        // the facts for the documents.
        i.problem = reason.text_utc(Lang::En);
        i.reason = Some(reason);
        i.device = Some("demo-ap".into());
        let entries = [Entry {
            info: &i,
            state: &t,
            events: &evs,
            sop: &sop,
        }];
        rows(
            &entries,
            &cal,
            &office(),
            date("2026-11-01"),
            date("2026-11-30"),
            lang,
            wib("2026-12-01 12:00"),
        )
    }

    const RAW_SNMP_ERROR: &str =
        "timeout: no answer: request to 127.0.0.1:161 timed out after 4.001963783s (1 retries)";

    #[test]
    fn a_detected_fault_reads_as_bahasa_prose_in_the_register() {
        let mut buf = Vec::new();
        write_csv(&detected_snmp_row(Lang::Id), Lang::Id, &mut buf).expect("csv");
        let csv = String::from_utf8(buf).expect("utf8");
        assert_eq!(
            csv,
            include_str!("testdata/register_detected_snmp.csv"),
            "the register row differs from the golden file"
        );
        let rows = detected_snmp_row(Lang::Id);
        let uraian = &rows[0].description;
        assert_eq!(
            uraian,
            "Perangkat demo-ap tidak menjawab SNMP (ditunggu 4 detik)"
        );
        for english_or_raw in [
            "does not answer",
            "timeout",
            "timed out",
            "no answer",
            "after",
            "4.001963783",
            "retries",
            "127.0.0.1",
        ] {
            assert!(
                !csv.contains(english_or_raw),
                "{english_or_raw:?} in the register:\n{csv}"
            );
        }
        // In English on request, still without the raw error.
        let en = &detected_snmp_row(Lang::En)[0].description;
        assert_eq!(en, "demo-ap does not answer SNMP (waited 4 s)");
    }

    /// The text of `name` inside the xlsx `bytes`.
    fn xlsx_part(bytes: &[u8], name: &str) -> String {
        use std::io::Read as _;
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
        let mut text = String::new();
        zip.by_name(name)
            .expect("part")
            .read_to_string(&mut text)
            .expect("read");
        text
    }

    /// The `<c …>…</c>` element of cell `at` ("B2") in a sheet's XML.
    fn cell<'a>(sheet: &'a str, at: &str) -> &'a str {
        let start = sheet
            .find(&format!("<c r=\"{at}\""))
            .unwrap_or_else(|| panic!("no cell {at} in {sheet}"));
        let rest = &sheet[start..];
        let end = rest
            .find("</c>")
            .map(|e| e + 4)
            .or_else(|| rest.find("/>").map(|e| e + 2))
            .expect("cell end");
        &rest[..end]
    }

    #[test]
    fn xlsx_dates_are_dates_and_the_duration_a_number() {
        let f = fixture();
        let rows = period_rows(&f, Lang::Id);
        let bytes = to_xlsx(&rows, Lang::Id).expect("xlsx");
        let sheet = xlsx_part(&bytes, "xl/worksheets/sheet1.xml");
        // Row 2 is PJ-2026-0002: opened and closed 2026-11-02, 1 h 40 min.
        // 2026-11-02 is day 46328 of Excel's calendar.
        for at in ["B2", "I2"] {
            let c = cell(&sheet, at);
            assert!(!c.contains(" t=\""), "{at} is typed as text: {c}");
            assert!(c.contains("<v>46328</v>"), "{at} is not 2026-11-02: {c}");
            assert!(c.contains(" s=\""), "{at} has no date format: {c}");
        }
        let d = cell(&sheet, "J2");
        assert!(!d.contains(" t=\""), "the duration is text: {d}");
        let v: f64 = d
            .split("<v>")
            .nth(1)
            .and_then(|r| r.split("</v>").next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number in {d}"));
        assert!(
            (v * 24.0 * 60.0 - 100.0).abs() < 1e-6,
            "{v} days is not 1 h 40 min"
        );
        // The ticket number stays text; an open ticket's closing date is empty text.
        assert!(cell(&sheet, "A2").contains(" t=\"s\""));
        let styles = xlsx_part(&bytes, "xl/styles.xml");
        assert!(
            styles.contains("formatCode=\"yyyy\\-mm\\-dd\"")
                || styles.contains("formatCode=\"yyyy-mm-dd\""),
            "{styles}"
        );
        assert!(styles.contains("jam"), "the duration's format: {styles}");
    }

    #[test_case(Lang::Id, "Batal: duplikat PJ-2026-0002" ; "indonesian")]
    #[test_case(Lang::En, "Void: duplikat PJ-2026-0002" ; "english")]
    fn a_void_ticket_stays_in_the_register_as_void(lang: Lang, step: &str) {
        let sop = default_sop();
        let cal = Calendar::default();
        let wf = Workflow::new(&sop, &cal);
        let opened = wib("2026-11-10 08:00");
        let (mut t, mut evs) = wf.open(
            Origin::Detected,
            "dinkes",
            false,
            &Actor::system(),
            "Loss 40% ke dinkes-rtr",
            opened,
        );
        evs.push(
            wf.apply(
                &mut t,
                Action::Void {
                    reason: "duplikat PJ-2026-0002".into(),
                },
                &user_for("kabid_aptika"),
                wib("2026-11-10 09:00"),
            )
            .expect("void"),
        );
        let i = info("PJ-2026-0005", Origin::Detected, opened);
        let entries = [Entry {
            info: &i,
            state: &t,
            events: &evs,
            sop: &sop,
        }];
        let r = rows(
            &entries,
            &cal,
            &office(),
            date("2026-11-01"),
            date("2026-11-30"),
            lang,
            wib("2026-12-01 12:00"),
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].current_step, step);
        assert_eq!(r[0].closed, "2026-11-10");
        assert_eq!(r[0].steps_late, "");
    }
}
