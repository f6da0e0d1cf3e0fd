//! `siaga report availability --period YYYY-MM [--opd ID] [--json]`: the
//! availability of each OPD, device and link over a month, as the collector
//! computes it from the stored samples.

use clap::Args;
use siaga_proto::v1;

use crate::client::{CliError, SiagaConfig};

/// `siaga report availability`.
#[derive(Debug, Clone, Args)]
pub struct AvailabilityCmd {
    /// The month, YYYY-MM, in the province's time zone.
    #[arg(long)]
    pub period: String,
    /// Only this OPD.
    #[arg(long)]
    pub opd: Option<String>,
    /// Print the report as JSON (every figure in µs).
    #[arg(long)]
    pub json: bool,
    /// Also write the report as a workbook (Bahasa Indonesia) to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "pdf")]
    pub xlsx: Option<std::path::PathBuf>,
    /// Also write the report as a PDF (Bahasa Indonesia, signed by the
    /// Kepala Dinas) to FILE.
    #[arg(long, value_name = "FILE")]
    pub pdf: Option<std::path::PathBuf>,
}

impl AvailabilityCmd {
    /// Asks the collector and gives the table (or the JSON).
    pub async fn run(&self, cfg: &SiagaConfig) -> Result<String, CliError> {
        // A province's month with its document is more than tonic's 4 MB default.
        let mut c = v1::reports_client::ReportsClient::new(crate::client::channel(cfg).await?)
            .max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES);
        let mut a = c
            .get_availability(crate::client::request(v1::GetAvailabilityRequest {
                period: self.period.clone(),
                opd: self.opd.clone().unwrap_or_default(),
                format: match (&self.xlsx, &self.pdf) {
                    (Some(_), _) => "xlsx".into(),
                    (_, Some(_)) => "pdf".into(),
                    _ => String::new(),
                },
            }))
            .await
            .map_err(|s| crate::client::status_error(cfg, s))?
            .into_inner();
        let mut wrote = String::new();
        if let Some(path) = self.xlsx.as_ref().or(self.pdf.as_ref()) {
            std::fs::write(path, &a.document)
                .map_err(|e| CliError::Message(format!("cannot write {}: {e}", path.display())))?;
            wrote = format!("\nwrote {} ({} bytes)", path.display(), a.document.len());
        }
        // The document is in the file, not in the JSON.
        a.document.clear();
        if self.json {
            return serde_json::to_string_pretty(&a).map_err(|e| CliError::Message(e.to_string()));
        }
        Ok(format!("{}{wrote}", table(&a)))
    }
}

/// A duration for the table: "-", "45s", "35m", "35m 05s", "2h 05m", "3d 4h".
pub fn duration(us: i64) -> String {
    let s = us.max(0) / 1_000_000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match () {
        _ if s == 0 => "-".into(),
        _ if d > 0 => format!("{d}d {h}h"),
        _ if h > 0 => format!("{h}h {m:02}m"),
        _ if m > 0 && sec == 0 => format!("{m}m"),
        _ if m > 0 => format!("{m}m {sec:02}s"),
        _ => format!("{sec}s"),
    }
}

const NAME: usize = 26;

fn cut(name: &str) -> String {
    if name.chars().count() <= NAME {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(NAME - 1).collect();
        s.push('…');
        s
    }
}

fn line(name: &str, f: Option<&v1::AvailabilityFigures>) -> String {
    let f = f.cloned().unwrap_or_default();
    let pct = f
        .availability_pct
        .map_or_else(|| "-".to_string(), |p| format!("{p:.3}"));
    let mttr = f.mttr_us.map_or_else(|| "-".to_string(), duration);
    format!(
        "{:<NAME$} {:>8} {:>9} {:>4} {:>8} {:>8} {:>8}",
        cut(name),
        pct,
        duration(f.down_us),
        f.incidents,
        mttr,
        duration(f.longest_outage_us),
        duration(f.no_data_us),
    )
    .trim_end()
    .to_string()
}

/// The table (at most 80 columns): each OPD, then its devices, each
/// followed by its links.
pub fn table(a: &v1::Availability) -> String {
    let mut out = vec![
        format!(
            "Availability {} (left out: maintenance, behind a down parent, no data)",
            a.period
        ),
        format!(
            "{:<NAME$} {:>8} {:>9} {:>4} {:>8} {:>8} {:>8}",
            "OPD / DEVICE / LINK", "AVAIL %", "DOWN", "INC", "MTTR", "LONGEST", "NO DATA"
        ),
    ];
    for o in &a.opds {
        out.push(line(&o.opd, o.figures.as_ref()));
        out.push(format!(
            "  tickets: {} within the SOP's time standards, {} outside",
            o.tickets_within_standard, o.tickets_outside_standard
        ));
        let of_opd = || a.subjects.iter().filter(|r| r.opd == o.opd);
        for d in of_opd().filter(|r| r.link.is_empty()) {
            out.push(line(&format!("  {}", d.device), d.figures.as_ref()));
            // Its links just below it.
            for l in of_opd().filter(|r| r.device == d.device && !r.link.is_empty()) {
                out.push(line(&format!("    {}", l.link), l.figures.as_ref()));
            }
        }
    }
    if a.opds.is_empty() {
        out.push("(no devices)".into());
    }
    out.join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn figures(down_s: i64, incidents: u32, pct: f64) -> Option<v1::AvailabilityFigures> {
        Some(v1::AvailabilityFigures {
            up_us: 2_592_000_000_000 - down_s * 1_000_000,
            down_us: down_s * 1_000_000,
            incidents,
            longest_outage_us: down_s * 1_000_000,
            mttr_us: (incidents > 0).then(|| down_s * 1_000_000 / i64::from(incidents)),
            availability_pct: Some(pct),
            no_data_us: 21_600_000_000,
            ..Default::default()
        })
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(0), "-");
        assert_eq!(duration(45_000_000), "45s");
        assert_eq!(duration(2_100_000_000), "35m");
        assert_eq!(duration(2_105_000_000), "35m 05s");
        assert_eq!(duration(7_500_000_000), "2h 05m");
        assert_eq!(duration(3 * 86_400_000_000 + 4 * 3_600_000_000), "3d 4h");
    }

    #[test]
    fn the_table_fits_80_columns_and_shows_each_figure() {
        let a = v1::Availability {
            period: "2026-11".into(),
            opds: vec![v1::AvailabilityRow {
                opd: "dinas-kesehatan-kabupaten-contoh".into(),
                figures: figures(13_500, 3, 99.913_03),
                tickets_within_standard: 4,
                tickets_outside_standard: 2,
                ..Default::default()
            }],
            subjects: vec![
                v1::AvailabilityRow {
                    opd: "dinas-kesehatan-kabupaten-contoh".into(),
                    device: "sw3".into(),
                    figures: figures(7500, 1, 99.710_648),
                    ..Default::default()
                },
                v1::AvailabilityRow {
                    opd: "dinas-kesehatan-kabupaten-contoh".into(),
                    device: "sw3".into(),
                    link: "uplink-ke-diskominfo-gedung-b".into(),
                    figures: figures(0, 0, 100.0),
                    ..Default::default()
                },
                v1::AvailabilityRow {
                    opd: "dinas-kesehatan-kabupaten-contoh".into(),
                    device: "core-router-gedung-utama".into(),
                    figures: figures(0, 0, 100.0),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let t = table(&a);
        assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
        let sw3 = t
            .lines()
            .find(|l| l.trim_start().starts_with("sw3"))
            .unwrap();
        let cols: Vec<&str> = sw3.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "sw3", "99.711", "2h", "05m", "1", "2h", "05m", "2h", "05m", "6h", "00m"
            ]
        );
        // The OPD's tickets right below its line.
        assert_eq!(
            t.lines().nth(3),
            Some("  tickets: 4 within the SOP's time standards, 2 outside"),
            "{t}"
        );
        // The link right below its device, its long name cut.
        let lines: Vec<&str> = t.lines().collect();
        let at = lines.iter().position(|l| *l == sw3).unwrap();
        assert!(
            lines[at + 1].starts_with("    uplink-ke-diskominfo-…"),
            "{t}"
        );
        assert!(lines[at + 1].contains("100.000"), "{t}");
        assert!(
            lines[at + 2].starts_with("  core-router-gedung-utama "),
            "{t}"
        );
    }
}
