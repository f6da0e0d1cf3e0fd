//! The monthly availability report as documents that leave the system, in
//! Bahasa Indonesia: a workbook (rust_xlsxwriter, as the register) and a
//! PDF in the work report's style ([`super::pdf::render_availability`]),
//! signed by the Kepala Dinas.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::availability::{Availability, Figures};
use crate::sop::card::duration_label;
use crate::sop::{Lang, people::Signer};

/// What the documents show.
#[derive(Debug, Clone)]
pub struct SlaDoc<'a> {
    /// The issuing office (the SOP's).
    pub office: String,
    /// Its unit.
    pub office_unit: String,
    /// The month, `YYYY-MM`.
    pub period: String,
    /// The figures.
    pub a: &'a Availability,
    /// OPD names by id (an OPD without one shows its id).
    pub opd_names: BTreeMap<String, String>,
    /// The Kepala Dinas who signs; `None`: a blank line to sign on.
    pub signer: Option<Signer>,
}

const MONTHS: [&str; 12] = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
];

impl SlaDoc<'_> {
    /// "November 2026".
    pub fn month(&self) -> String {
        NaiveDate::parse_from_str(&format!("{}-01", self.period), "%Y-%m-%d")
            .map(|d| {
                use chrono::Datelike;
                let m = MONTHS.get(d.month0() as usize).copied().unwrap_or("");
                format!("{m} {}", d.year())
            })
            .unwrap_or_else(|_| self.period.clone())
    }

    /// The name of OPD `id`.
    pub fn opd_name(&self, id: &str) -> String {
        self.opd_names
            .get(id)
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }
}

/// Availability as printed: "99,906 %", or "-" when nothing was measured.
pub fn pct(f: &Figures) -> String {
    f.availability_pct()
        .map_or_else(|| "-".into(), |p| format!("{p:.3} %").replace('.', ","))
}

/// A time as printed: "2 jam 5 menit", "-" for none.
pub fn time(us: i64) -> String {
    if us <= 0 {
        "-".into()
    } else if us < 60_000_000 {
        format!("{} detik", us / 1_000_000)
    } else {
        duration_label(us / 1_000_000, Lang::Id)
    }
}

/// The OPD table's headers.
pub const OPD_COLUMNS: [&str; 8] = [
    "OPD",
    "Ketersediaan",
    "Waktu padam",
    "Insiden",
    "MTTR",
    "Padam terlama",
    "Tiket sesuai standar waktu",
    "Tiket melewati standar waktu",
];

/// The device and link table's headers.
pub const SUBJECT_COLUMNS: [&str; 11] = [
    "OPD",
    "Perangkat",
    "Link",
    "Ketersediaan",
    "Waktu padam",
    "Insiden",
    "MTTR",
    "Padam terlama",
    "Tanpa data",
    "Pemeliharaan",
    "Tidak terjangkau",
];

/// The workbook: a sheet per OPD figures and one per device and link, the
/// percentages as numbers, times as durations.
pub fn to_xlsx(d: &SlaDoc<'_>) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook, Worksheet};
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let percent = Format::new().set_num_format("0.000");
    let duration = Format::new().set_num_format("[h]:mm:ss");
    let title = format!("Laporan Ketersediaan Jaringan {}", d.month());
    let days = |us: i64| us as f64 / 86_400_000_000.0;
    let head = |sheet: &mut Worksheet, cols: &[&str]| -> Result<(), rust_xlsxwriter::XlsxError> {
        sheet.write_string_with_format(0, 0, &title, &bold)?;
        for (c, h) in cols.iter().enumerate() {
            let col = u16::try_from(c).unwrap_or(u16::MAX);
            sheet.write_string_with_format(2, col, *h, &bold)?;
            sheet.set_column_width(col, if c == 0 { 36 } else { 16 })?;
        }
        Ok(())
    };
    let figures = |sheet: &mut Worksheet,
                   row: u32,
                   col: u16,
                   f: &Figures|
     -> Result<(), rust_xlsxwriter::XlsxError> {
        match f.availability_pct() {
            Some(p) => sheet.write_number_with_format(row, col, p, &percent)?,
            None => sheet.write_string(row, col, "-")?,
        };
        sheet.write_number_with_format(row, col + 1, days(f.down_us), &duration)?;
        sheet.write_number(row, col + 2, f64::from(f.incidents))?;
        match f.mttr_us() {
            Some(m) => sheet.write_number_with_format(row, col + 3, days(m), &duration)?,
            None => sheet.write_string(row, col + 3, "-")?,
        };
        sheet.write_number_with_format(row, col + 4, days(f.longest_outage_us), &duration)?;
        Ok(())
    };
    let sheet = wb.add_worksheet();
    sheet.set_name("Ringkasan OPD")?;
    head(sheet, &OPD_COLUMNS)?;
    for (i, o) in d.a.opds.iter().enumerate() {
        let row = u32::try_from(i + 3).unwrap_or(u32::MAX);
        sheet.write_string(
            row,
            0,
            super::super::sop::register::inert_cell(&d.opd_name(&o.opd)),
        )?;
        figures(sheet, row, 1, &o.figures)?;
        sheet.write_number(row, 6, f64::from(o.tickets.within))?;
        sheet.write_number(row, 7, f64::from(o.tickets.outside))?;
    }
    let sheet = wb.add_worksheet();
    sheet.set_name("Perangkat dan link")?;
    head(sheet, &SUBJECT_COLUMNS)?;
    for (i, r) in d.a.subjects.iter().enumerate() {
        let row = u32::try_from(i + 3).unwrap_or(u32::MAX);
        let inert = crate::sop::register::inert_cell;
        sheet.write_string(row, 0, inert(&d.opd_name(&r.opd)))?;
        sheet.write_string(row, 1, inert(r.subject.device_id().unwrap_or_default()))?;
        sheet.write_string(row, 2, inert(r.subject.link_name().unwrap_or_default()))?;
        figures(sheet, row, 3, &r.figures)?;
        let f = &r.figures;
        for (c, us) in [
            (8, f.no_data_us),
            (9, f.maintenance_us),
            (10, f.unreachable_us),
        ] {
            sheet.write_number_with_format(row, c, days(us), &duration)?;
        }
    }
    wb.save_to_buffer()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::health::Subject;
    use crate::report::availability::{OpdRow, Period, Stats, SubjectRow};
    use crate::sop::register::Standards;

    const S: i64 = 1_000_000;

    pub(crate) fn sample() -> Availability {
        let period = Period::month("2026-11", 420).unwrap();
        let month = period.len_us();
        let sw3 = Figures {
            up_us: month - 7500 * S,
            down_us: 7500 * S,
            incidents: 1,
            longest_outage_us: 7500 * S,
            ..Default::default()
        };
        let ap = Figures {
            up_us: month - 21_600 * S,
            no_data_us: 21_600 * S,
            ..Default::default()
        };
        let mut opd = sw3;
        opd.add(&ap);
        Availability {
            period,
            opds: vec![OpdRow {
                opd: "dinkes".into(),
                figures: opd,
                tickets: Standards {
                    within: 4,
                    outside: 1,
                },
            }],
            subjects: vec![
                SubjectRow {
                    opd: "dinkes".into(),
                    subject: Subject::device("ap"),
                    figures: ap,
                },
                SubjectRow {
                    opd: "dinkes".into(),
                    subject: Subject::device("sw3"),
                    figures: sw3,
                },
            ],
            stats: Stats::default(),
        }
    }

    pub(crate) fn doc(a: &Availability) -> SlaDoc<'_> {
        SlaDoc {
            office: "Dinas Komunikasi dan Informatika".into(),
            office_unit: "Bidang Aplikasi Informatika".into(),
            period: "2026-11".into(),
            a,
            opd_names: BTreeMap::from([("dinkes".into(), "Dinas Kesehatan".into())]),
            signer: Some(Signer {
                name: "Dr. Siti Rahma, M.T.".into(),
                nip: "NIP 19750101 200001 2 001".into(),
                jabatan: "Kepala Dinas".into(),
                flagged: false,
            }),
        }
    }

    fn part(bytes: &[u8], name: &str) -> String {
        use std::io::Read;
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut s = String::new();
        z.by_name(name).unwrap().read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn the_workbook_reads_back_with_every_figure() {
        let a = sample();
        let bytes = to_xlsx(&doc(&a)).unwrap();
        let book = part(&bytes, "xl/workbook.xml");
        assert!(book.contains("name=\"Ringkasan OPD\""), "{book}");
        assert!(book.contains("name=\"Perangkat dan link\""), "{book}");
        let strings = part(&bytes, "xl/sharedStrings.xml");
        for s in [
            "Laporan Ketersediaan Jaringan November 2026",
            "Dinas Kesehatan",
            "Tiket melewati standar waktu",
            "sw3",
        ] {
            assert!(strings.contains(s), "{s} not in {strings}");
        }
        let opds = part(&bytes, "xl/worksheets/sheet1.xml");
        let cell = |sheet: &str, at: &str| -> String {
            let start = sheet
                .find(&format!("<c r=\"{at}\""))
                .unwrap_or_else(|| panic!("no {at}"));
            let rest = &sheet[start..];
            let end = rest.find("</c>").unwrap_or(rest.len());
            let c = &rest[..end];
            c.split("<v>")
                .nth(1)
                .and_then(|v| v.split("</v>").next())
                .unwrap_or_default()
                .to_string()
        };
        // The OPD: 2,592,000 × 2 − 7,500 − 21,600 = 5,154,900 s up of
        // 5,154,900 + 7,500 = 5,162,400 s measured = 99.8547 %; 7,500 s =
        // 0.086805… days down; 1 incident; 4 tickets within the
        // standards, 1 outside.
        let p: f64 = cell(&opds, "B4").parse().unwrap();
        assert!((p - 99.854_7).abs() < 1e-4, "{p}");
        let down: f64 = cell(&opds, "C4").parse().unwrap();
        assert!((down * 86_400.0 - 7500.0).abs() < 1e-6, "{down}");
        assert_eq!(cell(&opds, "D4"), "1");
        assert_eq!(
            (cell(&opds, "G4"), cell(&opds, "H4")),
            ("4".into(), "1".into())
        );
        let rows = part(&bytes, "xl/worksheets/sheet2.xml");
        // ap: no outage, 6 h without data.
        let no_data: f64 = cell(&rows, "I4").parse().unwrap();
        assert!((no_data * 24.0 - 6.0).abs() < 1e-9, "{no_data}");
        let p: f64 = cell(&rows, "D5").parse().unwrap();
        assert!((p - 99.710_6).abs() < 1e-4, "{p}");
    }

    /// The PDF read back with `pdftotext` (poppler-utils).
    #[test]
    fn the_pdf_reads_back_in_bahasa_with_the_figures_and_the_signature() {
        let a = sample();
        let bytes = crate::report::pdf::render_availability(&doc(&a)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ketersediaan.pdf");
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new("pdftotext")
            .args(["-layout"])
            .arg(&path)
            .arg("-")
            .output()
            .expect("pdftotext (poppler-utils) runs");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        for want in [
            "DINAS KOMUNIKASI DAN INFORMATIKA",
            "LAPORAN KETERSEDIAAN JARINGAN",
            "Periode November 2026",
            "Dinas Kesehatan",
            "99,855 %",
            "99,711 %",
            "2 jam 5 menit",
            "6 jam",
            "Kepala Dinas",
            "Dr. Siti Rahma, M.T.",
            "NIP 19750101 200001 2 001",
            "Halaman 1 / 1",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        // The OPD's line: 1 incident, 4 tickets within the standards, 1
        // outside.
        let line = text
            .lines()
            .find(|l| l.contains("Dinas Kesehatan") && l.contains("99,855 %"))
            .unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[cols.len() - 2..], ["4", "1"], "{line}");
    }
}
