//! The work report as one self-contained HTML file: inline style, the chart
//! as inline SVG, nothing fetched from anywhere; A4 when printed. Every text
//! from a ticket is escaped (it is user input).

use std::fmt::Write as _;

use super::chart::{Anchor, Chart, Shape};
use super::data::{Compared, ReportData, Status};
use super::verdict::Verdict;
use super::words::{code, tr};
use crate::sop::card::esc;

const STYLE: &str = "\
@page{size:A4;margin:16mm 15mm}\n\
body{font-family:'Liberation Sans',Arial,Helvetica,sans-serif;font-size:10pt;color:#111;max-width:180mm;margin:1em auto}\n\
header{text-align:center;border-bottom:2px solid #111;padding-bottom:6px;margin-bottom:10px}\n\
header .office{font-size:13pt;font-weight:bold;text-transform:uppercase}\n\
header .unit{font-size:11pt}\n\
h1{font-size:14pt;text-align:center;margin:10px 0 2px}\n\
p.sub{text-align:center;margin:0 0 10px}\n\
h2{font-size:11.5pt;margin:16px 0 6px;border-bottom:1px solid #999}\n\
h3{font-size:10.5pt;margin:10px 0 4px}\n\
table{border-collapse:collapse;width:100%;margin:4px 0 8px;page-break-inside:auto}\n\
tr{page-break-inside:avoid}\n\
th,td{border:1px solid #555;padding:3px 5px;vertical-align:top;text-align:left}\n\
th{background:#eee}\n\
table.facts td{border:none;padding:1px 8px 1px 0}\n\
table.facts td:first-child{font-weight:bold;white-space:nowrap;width:30%}\n\
td.num{text-align:right;white-space:nowrap}\n\
td.better{color:#1e7b34;font-weight:bold}\n\
td.worse{color:#b00020;font-weight:bold}\n\
tr.late td.result{color:#b00020;font-weight:bold}\n\
.verdict{font-weight:bold}\n\
.note{color:#444;font-size:9pt}\n\
.box{border:1px solid #555;padding:6px 8px;min-height:3em;margin:4px 0}\n\
.draft{border:2px solid #b00020;color:#b00020;font-weight:bold;text-align:center;padding:4px;margin-bottom:8px}\n\
.watermark{position:fixed;top:40%;left:0;right:0;text-align:center;font-size:120pt;font-weight:bold;color:rgba(176,0,32,0.08);transform:rotate(-30deg);z-index:-1}\n\
.signatures{display:flex;justify-content:space-between;gap:12px;margin-top:18px;page-break-inside:avoid}\n\
.signatures div{flex:1;text-align:center}\n\
.signatures .space{height:60px}\n\
.signatures .name{font-weight:bold;text-decoration:underline}\n\
figure{margin:6px 0;page-break-inside:avoid}\n\
footer{margin-top:16px;font-size:8.5pt;color:#444;border-top:1px solid #999;padding-top:4px}\n";

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Better => " class=\"better\"",
        Verdict::Worse => " class=\"worse\"",
        _ => "",
    }
}

/// The chart as inline SVG (no namespace URL: inline SVG in HTML needs none).
pub fn svg(c: &Chart, label: &str) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg viewBox=\"0 0 {:.0} {:.0}\" width=\"100%\" role=\"img\" aria-label=\"{}\" font-family=\"Liberation Sans,Arial,Helvetica,sans-serif\">",
        c.width,
        c.height,
        esc(label)
    );
    for s in &c.shapes {
        match s {
            Shape::Line {
                points,
                color,
                width,
                dashed,
            } => {
                let pts: Vec<String> = points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                let _ = write!(
                    o,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width:.1}\"{}/>",
                    pts.join(" "),
                    color.hex(),
                    if *dashed {
                        " stroke-dasharray=\"4 2\""
                    } else {
                        ""
                    }
                );
            }
            Shape::Rect { x, y, w, h, fill } => {
                let _ = write!(
                    o,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
                    fill.hex()
                );
            }
            Shape::Text {
                x,
                y,
                size,
                text,
                anchor,
                bold,
            } => {
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let _ = write!(
                    o,
                    "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size:.1}\" text-anchor=\"{anchor}\"{} fill=\"#222\">{}</text>",
                    if *bold { " font-weight=\"bold\"" } else { "" },
                    esc(text)
                );
            }
        }
    }
    o.push_str("</svg>");
    o
}

fn compared_table(o: &mut String, c: &Compared, d: &ReportData) {
    let l = d.lang;
    let _ = writeln!(
        o,
        "<h3>{} <span class=\"verdict\">({})</span></h3>",
        esc(&c.title),
        esc(c.verdict.word(l))
    );
    let _ = writeln!(
        o,
        "<table class=\"compare\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        tr(l, "Ukuran", "Figure"),
        tr(l, "Sebelum", "Before"),
        tr(l, "Sesudah", "After"),
        tr(l, "Perubahan", "Change"),
        tr(l, "Penilaian", "Verdict")
    );
    for r in &c.rows {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td{}>{}</td></tr>",
            esc(&r.label),
            esc(&r.before),
            esc(&r.after),
            esc(&r.change),
            verdict_class(r.verdict),
            esc(r.verdict.word(l))
        );
    }
    o.push_str("</table>\n");
    for n in &c.notes {
        let _ = writeln!(o, "<div class=\"note\">{}</div>", esc(n));
    }
}

/// The report as one HTML document.
pub fn render(d: &ReportData) -> String {
    let l = d.lang;
    let draft = matches!(d.status, Status::Draft { .. });
    let title = tr(l, "LAPORAN PEKERJAAN", "WORK REPORT");
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}{} {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        code(l),
        if draft {
            format!("{} — ", tr(l, "DRAF", "DRAFT"))
        } else {
            String::new()
        },
        title,
        esc(&d.ticket)
    );
    if draft {
        let _ = writeln!(
            o,
            "<div class=\"watermark\">{}</div>\n<div class=\"draft\">{}</div>",
            tr(l, "DRAF", "DRAFT"),
            tr(
                l,
                "DRAF — belum diperiksa Kepala Dinas; isi dapat berubah",
                "DRAFT — not yet reviewed by the Kepala Dinas; the content may change"
            )
        );
    }
    o.push_str("<header>\n");
    if !d.office.is_empty() {
        let _ = writeln!(o, "<div class=\"office\">{}</div>", esc(&d.office));
    }
    if !d.office_unit.is_empty() {
        let _ = writeln!(o, "<div class=\"unit\">{}</div>", esc(&d.office_unit));
    }
    o.push_str("</header>\n");
    let _ = writeln!(
        o,
        "<h1>{title}</h1>\n<p class=\"sub\">{} — {} {}</p>",
        esc(&d.sop_name),
        tr(l, "Nomor tiket", "Ticket"),
        esc(&d.ticket)
    );

    // 1. Details.
    let _ = writeln!(
        o,
        "<h2>1. {}</h2>\n<table class=\"facts\">",
        tr(l, "Identitas", "Details")
    );
    for (k, v) in &d.header {
        let _ = writeln!(o, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    o.push_str("</table>\n");

    // 2. Problem and evidence.
    let _ = writeln!(
        o,
        "<h2>2. {}</h2>\n<p>{}</p>",
        tr(l, "Permasalahan dan bukti", "The problem and its evidence"),
        esc(&d.problem)
    );
    if !d.evidence.is_empty() {
        let _ = writeln!(
            o,
            "<table><tr><th>{}</th><th>{}</th></tr>",
            tr(l, "Waktu", "Time"),
            tr(
                l,
                "Pembacaan yang membuka tiket",
                "Readings that opened the ticket"
            )
        );
        for e in &d.evidence {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&e.time),
                esc(&e.finding)
            );
        }
        o.push_str("</table>\n");
        if d.evidence_more > 0 {
            let _ = writeln!(
                o,
                "<div class=\"note\">{} {} {}</div>",
                tr(l, "dan", "and"),
                d.evidence_more,
                tr(l, "pembacaan lainnya", "more readings")
            );
        }
    }
    if !d.health_notes.is_empty() {
        let _ = writeln!(
            o,
            "<h3>{}</h3>\n<ul>",
            tr(l, "Catatan sistem", "System log")
        );
        for n in &d.health_notes {
            let _ = writeln!(o, "<li>{} — {}</li>", esc(&n.time), esc(&n.text));
        }
        o.push_str("</ul>\n");
    }
    if let Some(raw) = &d.diagnostic {
        let _ = writeln!(
            o,
            "<h3>{}</h3>\n<div class=\"note\"><code>{}</code></div>",
            tr(l, "Lampiran: diagnostik mentah", "Appendix: raw diagnostic"),
            esc(raw)
        );
    }

    // 3. Before and after.
    let c = &d.comparison;
    let _ = writeln!(
        o,
        "<h2>3. {}</h2>",
        tr(
            l,
            "Pengukuran sebelum dan sesudah pekerjaan",
            "Measurements before and after the work"
        )
    );
    if let Some(r) = &d.no_measurement_reason {
        let _ = writeln!(
            o,
            "<div class=\"box\"><b>{}</b> {}</div>",
            tr(l, "Tanpa pengukuran:", "No measurements:"),
            esc(r)
        );
    }
    if c.before.is_none() && c.after.is_none() {
        let _ = writeln!(
            o,
            "<p>{}</p>",
            tr(
                l,
                "Belum ada pengukuran sebelum atau sesudah pekerjaan yang selesai.",
                "No measurement before or after the work has completed."
            )
        );
    } else {
        let _ = writeln!(
            o,
            "<table class=\"facts\"><tr><td>{}</td><td>{}</td></tr><tr><td>{}</td><td>{}</td></tr><tr><td>{}</td><td class=\"verdict\">{}</td></tr></table>",
            tr(l, "Pengukuran sebelum", "Measurement before"),
            esc(c.before.as_deref().unwrap_or("-")),
            tr(l, "Pengukuran sesudah", "Measurement after"),
            esc(c.after.as_deref().unwrap_or("-")),
            tr(l, "Kesimpulan", "Conclusion"),
            esc(c.verdict.word(l))
        );
        for dev in &c.devices {
            compared_table(&mut o, dev, d);
        }
        for link in &c.links {
            compared_table(&mut o, link, d);
        }
        for (chart, dev) in c.charts.iter().zip(&c.devices) {
            let _ = writeln!(o, "<figure>{}</figure>", svg(chart, &dev.title));
        }
        let _ = writeln!(o, "<div class=\"note\">{}</div>", esc(rules(l)));
    }
    if !d.measurements.is_empty() {
        let _ = writeln!(
            o,
            "<h3>{}</h3>\n<table><tr><th>ID</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            tr(
                l,
                "Semua pengukuran tiket ini",
                "All measurements of this ticket"
            ),
            tr(l, "Tahap", "Phase"),
            tr(l, "Diminta", "Requested"),
            tr(l, "Oleh", "By"),
            tr(l, "Keadaan", "State"),
            tr(l, "Hasil", "Figures")
        );
        for m in &d.measurements {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&m.id),
                esc(&m.phase),
                esc(&m.requested_at),
                esc(&m.requested_by),
                esc(&m.state),
                esc(&m.summary)
            );
        }
        o.push_str("</table>\n");
    }

    // 4. The work.
    let _ = writeln!(o, "<h2>4. {}</h2>", tr(l, "Pekerjaan", "The work"));
    if d.status_updates.is_empty() && d.work_note.is_none() {
        let _ = writeln!(
            o,
            "<p>{}</p>",
            tr(l, "Belum ada catatan pekerjaan.", "No work recorded yet.")
        );
    }
    if !d.status_updates.is_empty() {
        let _ = writeln!(
            o,
            "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
            tr(l, "Waktu", "Time"),
            tr(l, "Oleh", "By"),
            tr(l, "Status", "Status")
        );
        for s in &d.status_updates {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.time),
                esc(&s.who),
                esc(&s.text)
            );
        }
        o.push_str("</table>\n");
    }
    if let Some(n) = &d.work_note {
        let _ = writeln!(
            o,
            "<p><b>{}</b> ({}, {}): {}</p>",
            tr(l, "Catatan pekerjaan", "Work note"),
            esc(&n.who),
            esc(&n.time),
            esc(&n.text)
        );
    }

    // 5. The OPD's acknowledgement.
    let _ = writeln!(
        o,
        "<h2>5. {}</h2>",
        tr(l, "Pengakuan OPD atas laporan", "The OPD's acknowledgement")
    );
    match &d.acknowledgement {
        Some(a) => {
            let _ = writeln!(
                o,
                "<table class=\"facts\"><tr><td>{}</td><td>{}</td></tr><tr><td>{}</td><td>{}</td></tr><tr><td>{}</td><td>{} ({})</td></tr></table>",
                tr(l, "Nama", "Name"),
                esc(&a.name),
                tr(l, "Jabatan", "Position"),
                esc(if a.position.is_empty() {
                    "-"
                } else {
                    &a.position
                }),
                tr(l, "Waktu", "Time"),
                esc(&a.at),
                esc(&a.recorded)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "<p>{}</p>",
                tr(l, "Belum diketahui OPD.", "Not acknowledged yet.")
            );
        }
    }

    // 6. Timeline.
    let _ = writeln!(
        o,
        "<h2>6. {}</h2>\n<table class=\"card\"><tr>",
        tr(
            l,
            "Alur disposisi dan waktu standar",
            "Disposition timeline and time standards"
        )
    );
    for c in &d.timeline_columns {
        let _ = write!(o, "<th>{}</th>", esc(c));
    }
    o.push_str("</tr>\n");
    for r in &d.timeline {
        let _ = writeln!(
            o,
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
    o.push_str("</table>\n");

    // 7. Review.
    let _ = writeln!(
        o,
        "<h2>7. {}</h2>",
        tr(l, "Pemeriksaan Kepala Dinas", "The Kepala Dinas's review")
    );
    match &d.review {
        Some(r) => {
            let _ = writeln!(
                o,
                "<p>{} {} {} {}.</p>\n<div class=\"box\">{}</div>",
                tr(l, "Diperiksa oleh", "Reviewed by"),
                esc(&r.by),
                tr(l, "pada", "at"),
                esc(&r.at),
                esc(r
                    .note
                    .as_deref()
                    .unwrap_or(tr(l, "(tanpa catatan)", "(no note)")))
            );
        }
        None => {
            let _ = writeln!(
                o,
                "<div class=\"box note\">{}</div>",
                tr(
                    l,
                    "(belum diperiksa; catatan pemeriksaan Kepala Dinas akan tercantum di sini)",
                    "(not reviewed yet; the Kepala Dinas's review note will appear here)"
                )
            );
        }
    }

    // Signatures.
    o.push_str("<div class=\"signatures\">\n");
    for s in &d.signatures {
        let _ = writeln!(
            o,
            "<div>{}<br>{}<div class=\"space\"></div><span class=\"name\">{}</span><br>{}{}</div>",
            esc(&s.caption),
            esc(&s.role),
            if s.name.is_empty() {
                "(..............................)".to_string()
            } else {
                esc(&s.name)
            },
            if s.nip.is_empty() {
                String::new()
            } else {
                format!("{}<br>", esc(&s.nip))
            },
            esc(&s.detail)
        );
    }
    o.push_str("</div>\n");
    let _ = writeln!(o, "<footer>{}</footer>\n</body>\n</html>", esc(&footer(d)));
    o
}

/// The verdict rules, in a sentence.
pub fn rules(l: crate::sop::Lang) -> &'static str {
    tr(
        l,
        "Aturan penilaian: loss berubah ≥ 1 poin; RTT dan jitter berubah ≥ 10 % dan ≥ 0,2 ms; status operasional down→up membaik, up→down memburuk; kecepatan berubah > 1 %; utilisasi berubah ≥ 10 poin; error/discard per detik berubah ≥ 0,1/s dan ≥ separuh nilai sebelum. Selain itu: tetap.",
        "Verdict rules: loss changes by ≥ 1 point; RTT and jitter change by ≥ 10 % and ≥ 0.2 ms; oper status down→up improved, up→down worse; speed changes by > 1 %; utilisation changes by ≥ 10 points; errors/discards per second change by ≥ 0.1/s and ≥ half the value before. Otherwise: unchanged.",
    )
}

/// The footer line, with the signed head of the audit trail when there is one.
pub fn footer(d: &ReportData) -> String {
    match &d.audit {
        Some(a) => format!("{} {a}", footer_status(d)),
        None => footer_status(d),
    }
}

fn footer_status(d: &ReportData) -> String {
    let l = d.lang;
    match &d.status {
        Status::Draft { as_of } => format!(
            "{} {} {} {as_of}.",
            tr(
                l,
                "DRAF dibuat oleh Siaga dari catatan tiket",
                "DRAFT made by Siaga from the records of ticket"
            ),
            d.ticket,
            tr(l, "keadaan per", "as of")
        ),
        Status::Final { reviewed_at } => format!(
            "{} {} {} {reviewed_at}. {}",
            tr(
                l,
                "Laporan final dibuat oleh Siaga dari catatan tiket",
                "Final report made by Siaga from the records of ticket"
            ),
            d.ticket,
            tr(
                l,
                "sampai pemeriksaan Kepala Dinas pada",
                "up to the Kepala Dinas's review at"
            ),
            tr(
                l,
                "Salinan aslinya tersimpan bersama tiket; sidik sha256-nya tercatat di jejak audit.",
                "The original is stored with the ticket; its sha256 is recorded in the audit trail."
            )
        ),
    }
}
