//! The work report end to end: a real collector, one enrolled user per role,
//! a ticket walked through the whole SOP chain with the `siaga` CLI. The
//! report is a draft (DRAF) until the Kepala Dinas's review, then frozen:
//! fetched again it is the same bytes, its hash is in the audit trail, and a
//! byte changed in the store is found by `siaga-collector verify`. PDFs are
//! read back with `pdftotext` (Debian package poppler-utils).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail, ensure};
use redb::ReadableTable;
use serde_json::Value;
use siaga_tests::harness::{Collector, Inventory, Siaga, bin};

const USERS: [(&str, &str); 8] = [
    ("opd", "pemohon"),
    ("kadis", "kepala_dinas"),
    ("sekdis", "sekretaris_dinas"),
    ("kabid", "kabid_aptika"),
    ("prakom", "pranata_komputer"),
    ("hd", "helpdesk"),
    ("teknisi", "tim_teknis"),
    ("root", "admin"),
];

struct Office {
    collector: Collector,
    users: HashMap<&'static str, Siaga>,
}

impl Office {
    fn start() -> Result<Office> {
        let mut collector = Collector::init()?;
        collector.write_inventory(&Inventory::new("10s").opd("dinkes"))?;
        let mut users = HashMap::new();
        for (name, role) in USERS {
            users.insert(name, collector.enroll_user(name, role)?);
        }
        collector.serve()?;
        Ok(Office { collector, users })
    }

    fn ok(&self, who: &str, args: &[&str]) -> Result<String> {
        let user = self
            .users
            .get(who)
            .ok_or_else(|| anyhow!("no user {who}"))?;
        let out = user.run(args)?;
        if !out.status.success() {
            bail!(
                "{who}: siaga {args:?} failed: {}\ncollector log:\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.collector.log_tail(20)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn refused(&self, who: &str, args: &[&str]) -> Result<String> {
        let user = self
            .users
            .get(who)
            .ok_or_else(|| anyhow!("no user {who}"))?;
        let out = user.run(args)?;
        ensure!(
            !out.status.success(),
            "{who}: siaga {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }

    /// `siaga ticket report` as `who` into `file`: what it printed, the bytes.
    fn report(
        &self,
        who: &str,
        id: &str,
        format: &str,
        lang: &str,
        file: &Path,
    ) -> Result<(String, Vec<u8>)> {
        let out = self.ok(
            who,
            &[
                "ticket",
                "report",
                id,
                "--format",
                format,
                "--lang",
                lang,
                "--out",
                file.to_str().ok_or_else(|| anyhow!("path"))?,
            ],
        )?;
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        Ok((out, bytes))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.collector.root().join(name)
    }
}

/// The text of a PDF, as a PDF text extractor reads it.
fn pdf_text(path: &Path) -> Result<String> {
    let out = Command::new("pdftotext")
        .args([path.as_os_str(), "-".as_ref()])
        .output()
        .context("running pdftotext (install the Debian package poppler-utils)")?;
    ensure!(
        out.status.success(),
        "pdftotext {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sha256sum(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    ensure!(out.status.success(), "sha256sum failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("sha256sum printed nothing"))
}

fn contains_all(what: &str, text: &str, words: &[&str]) -> Result<()> {
    for w in words {
        ensure!(text.contains(w), "{what} lacks {w:?}:\n{text}");
    }
    Ok(())
}

fn verify(c: &Collector) -> Result<(bool, String)> {
    let out = Command::new(bin("siaga-collector")?)
        .args(["verify", "--config", &c.config.to_string_lossy()])
        .output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn the_report_is_a_draft_until_the_review_then_frozen_identical_and_checked_by_verify() -> Result<()>
{
    let mut o = Office::start()?;
    let out = o.ok(
        "hd",
        &[
            "ticket",
            "new",
            "--opd",
            "dinkes",
            "--letter-number",
            "005/321/DINKES/XI/2026",
            "--letter-date",
            "2026-11-20",
            "--subject",
            "Internet lantai 3 putus",
        ],
    )?;
    let id = out
        .strip_prefix("opened ")
        .and_then(|r| r.split(':').next())
        .ok_or_else(|| anyhow!("unexpected output of ticket new: {out}"))?
        .to_string();
    for (who, extra) in [
        ("opd", vec![]),
        ("kadis", vec!["--note", "Kabid Aptika: segera"]),
        ("kabid", vec!["--to", "prakom"]),
        ("prakom", vec![]),
        ("hd", vec!["--to", "teknisi"]),
    ] {
        let mut args = vec!["ticket", "dispose", &id];
        args.extend(extra);
        o.ok(who, &args)?;
    }
    // Ticket text is user input: it must come out escaped.
    o.ok(
        "teknisi",
        &[
            "ticket",
            "update",
            &id,
            "--status",
            "kabel <b>putus</b> & diganti",
        ],
    )?;
    o.ok(
        "opd",
        &[
            "ticket",
            "acknowledge",
            &id,
            "--by",
            "Andi Wijaya, Kasubag Umum",
        ],
    )?;
    o.ok(
        "teknisi",
        &[
            "ticket",
            "dispose",
            &id,
            "--note",
            "kabel UTP lantai 3 diganti",
            "--no-measurement-reason",
            "switch lantai 3 mati total, tidak dapat diukur",
        ],
    )?;
    for who in ["hd", "prakom", "kabid"] {
        o.ok(who, &["ticket", "dispose", &id])?;
    }

    // Before the review: a draft, in both formats.
    let (said, html) = o.report("hd", &id, "html", "id", &o.file("draft.html"))?;
    ensure!(said.contains("draft"), "{said}");
    let html = String::from_utf8(html)?;
    contains_all(
        "the draft HTML",
        &html,
        &[
            "DRAF",
            &id,
            "OPD dinkes (dinkes)",
            "surat 005/321/DINKES/XI/2026 tanggal 2026-11-20",
            "kabel &lt;b&gt;putus&lt;/b&gt; &amp; diganti",
            "switch lantai 3 mati total",
            "Andi Wijaya",
            "belum diperiksa",
        ],
    )?;
    ensure!(
        !html.contains("<b>putus</b>"),
        "unescaped ticket text in the HTML"
    );
    let (_, draft_pdf) = o.report("teknisi", &id, "pdf", "id", &o.file("draft.pdf"))?;
    ensure!(draft_pdf.starts_with(b"%PDF-"), "not a PDF");
    let text = pdf_text(&o.file("draft.pdf"))?;
    contains_all("the draft PDF", &text, &["DRAF", &id, "LAPORAN PEKERJAAN"])?;

    // The Kepala Dinas reviews: the report is frozen.
    o.ok(
        "kadis",
        &[
            "ticket",
            "dispose",
            &id,
            "--note",
            "Laporan diterima, pertahankan.",
        ],
    )?;
    let a = o.file("final-a.pdf");
    let b = o.file("final-b.pdf");
    let (said_a, bytes_a) = o.report("hd", &id, "pdf", "id", &a)?;
    let (said_b, bytes_b) = o.report("opd", &id, "pdf", "id", &b)?;
    ensure!(
        said_a.contains("final") && said_b.contains("final"),
        "{said_a}\n{said_b}"
    );
    ensure!(
        bytes_a == bytes_b,
        "the frozen PDF differs between two fetches"
    );
    let sha = sha256sum(&a)?;
    ensure!(
        said_a.contains(&sha),
        "siaga printed another sha256 than the file's {sha}: {said_a}"
    );
    ensure!(
        said_a.contains(&format!("{} bytes", bytes_a.len())),
        "{said_a}"
    );
    // Asked again into the same file: replaced, and said so.
    let (again, _) = o.report("hd", &id, "pdf", "id", &a)?;
    ensure!(again.contains("replaced"), "{again}");
    let text = pdf_text(&a)?;
    contains_all(
        "the final PDF",
        &text,
        &[
            &id,
            "OPD dinkes",
            "LAPORAN PEKERJAAN",
            "Tanpa pengukuran",
            "Laporan diterima, pertahankan.",
            "Andi Wijaya",
            "Kasubag Umum",
            "Final",
        ],
    )?;
    ensure!(
        !text.contains("DRAF"),
        "the final PDF is still marked DRAF:\n{text}"
    );
    let (_, html) = o.report("hd", &id, "html", "id", &o.file("final.html"))?;
    let html = String::from_utf8(html)?;
    ensure!(
        !html.contains("DRAF"),
        "the final HTML is still marked DRAF"
    );
    contains_all(
        "the final HTML",
        &html,
        &[
            "Laporan diterima, pertahankan.",
            "Final, diperiksa Kepala Dinas pada",
        ],
    )?;

    // English.
    let (said, en) = o.report("hd", &id, "html", "en", &o.file("final-en.html"))?;
    ensure!(said.contains("final"), "{said}");
    let en = String::from_utf8(en)?;
    contains_all(
        "the English HTML",
        &en,
        &[
            "<html lang=\"en\">",
            "WORK REPORT",
            "Measurements before and after the work",
            "The OPD's acknowledgement",
        ],
    )?;
    o.report("hd", &id, "pdf", "en", &o.file("final-en.pdf"))?;
    let text = pdf_text(&o.file("final-en.pdf"))?;
    contains_all(
        "the English PDF",
        &text,
        &["WORK REPORT", "No measurements", &id],
    )?;

    // The audit trail holds the hashes.
    let trail = o.ok("hd", &["ticket", "audit", &id, "--json"])?;
    let trail: Value = serde_json::from_str(&trail)?;
    let frozen = trail
        .as_array()
        .and_then(|t| {
            t.iter()
                .find(|r| r["event"]["kind"]["type"] == "report_frozen")
        })
        .ok_or_else(|| anyhow!("no report_frozen record in the trail: {trail}"))?;
    let docs = frozen["event"]["kind"]["documents"]
        .as_array()
        .ok_or_else(|| anyhow!("{frozen}"))?;
    ensure!(docs.len() == 4, "{docs:?}");
    ensure!(
        docs.iter()
            .any(|d| d["format"] == "pdf" && d["lang"] == "id" && d["sha256"] == sha.as_str()),
        "the trail does not hold the PDF's sha256 {sha}: {docs:?}"
    );

    // Behind the collector's back: one byte of the stored PDF changes.
    ensure!(o.collector.stop(), "the collector did not stop cleanly");
    let (clean, text) = verify(&o.collector)?;
    ensure!(clean, "verify failed on an untouched store:\n{text}");
    ensure!(
        text.contains(&format!("{id}: frozen report pdf/id: ok")),
        "{text}"
    );
    {
        let db = redb::Database::open(o.collector.data_dir.join("tickets.redb"))?;
        let table: redb::TableDefinition<(&str, &str), &[u8]> =
            redb::TableDefinition::new("report_frozen");
        let w = db.begin_write()?;
        {
            let mut t = w.open_table(table)?;
            let mut bytes = t
                .get((id.as_str(), "pdf/id"))?
                .ok_or_else(|| anyhow!("no stored pdf/id of {id}"))?
                .value()
                .to_vec();
            let i = bytes.len() / 2;
            bytes[i] ^= 0x01;
            t.insert((id.as_str(), "pdf/id"), bytes.as_slice())?;
        }
        w.commit()?;
    }
    let (clean, text) = verify(&o.collector)?;
    ensure!(!clean, "verify passed a changed frozen report:\n{text}");
    contains_all(
        "verify's output",
        &text,
        &[
            &format!("{id}: frozen report pdf/id: altered"),
            "1 of 4 frozen reports",
        ],
    )?;
    ensure!(
        text.contains(&format!("{id}: ok")),
        "the trail itself is intact:\n{text}"
    );

    // The collector refuses to hand out the changed bytes.
    o.collector.restart()?;
    let err = o.refused(
        "hd",
        &[
            "ticket",
            "report",
            &id,
            "--format",
            "pdf",
            "--out",
            &o.file("x.pdf").to_string_lossy(),
        ],
    )?;
    ensure!(err.contains("does not match the hash"), "{err}");
    Ok(())
}
