//! The work report as a PDF, made in-process with krilla: A4 pages, real
//! text in an embedded subset of Liberation Sans (so a PDF text extractor
//! reads it), the chart as vector paths. The layout is computed first (lines
//! wrapped on the font's advance widths, tables split between rows with the
//! header repeated), then drawn; page numbers need the page count.
//!
//! The output depends only on the report's data: no clock, and krilla derives
//! the document ids from the content, so the same data gives the same bytes.

use std::collections::HashMap;
use std::sync::Arc;

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect, Transform};
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule, Stroke, StrokeDash};
use krilla::text::{Font, GlyphId, KrillaGlyph};
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

use super::chart::{Anchor, Chart, Color, Shape};
use super::data::{Compared, ReportData, Status};
use super::html::{footer, rules};
use super::verdict::Verdict;
use super::words::{code, tr};

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/LiberationSans-Regular.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/LiberationSans-Bold.ttf");

/// A4 in points.
pub const PAGE_W: f32 = 595.28;
/// A4 in points.
pub const PAGE_H: f32 = 841.89;
const LEFT: f32 = 50.0;
const RIGHT: f32 = PAGE_W - 50.0;
const TOP: f32 = 62.0;
const BOTTOM: f32 = PAGE_H - 58.0;
const WIDTH: f32 = RIGHT - LEFT;

const INK: Color = Color(17, 17, 17);
const GREY: Color = Color(85, 85, 85);
const RED: Color = Color(176, 0, 32);
const GREEN: Color = Color(30, 123, 52);
const HEAD_BG: Color = Color(235, 235, 235);
const WATERMARK: Color = Color(248, 222, 226);

/// Why a PDF could not be made.
#[derive(Debug, thiserror::Error)]
#[error("making the PDF: {0}")]
pub struct PdfError(String);

/// One font: the krilla font for drawing, glyph ids and advances for layout.
struct Face {
    font: Font,
    cache: HashMap<char, (u32, f32)>,
    data: &'static [u8],
}

impl Face {
    fn new(data: &'static [u8]) -> Result<Face, PdfError> {
        let font = Font::new(Arc::new(data.to_vec()).into(), 0)
            .ok_or_else(|| PdfError("the built-in font cannot be read".into()))?;
        Ok(Face {
            font,
            cache: HashMap::new(),
            data,
        })
    }

    /// Glyph id and advance (in ems) of `c`; glyph 0 when the font lacks it.
    fn glyph(&mut self, c: char) -> (u32, f32) {
        if let Some(g) = self.cache.get(&c) {
            return *g;
        }
        let g = FontRef::new(self.data)
            .ok()
            .map(|f| {
                let gid = f.charmap().map(c).unwrap_or_default();
                let upem = f
                    .metrics(Size::unscaled(), LocationRef::default())
                    .units_per_em;
                let adv = f
                    .glyph_metrics(Size::unscaled(), LocationRef::default())
                    .advance_width(gid)
                    .unwrap_or(0.0);
                (gid.to_u32(), adv / f32::from(upem.max(1)))
            })
            .unwrap_or((0, 0.5));
        self.cache.insert(c, g);
        g
    }

    /// `text` with every character the font lacks replaced by '?', and
    /// control characters (tabs, newlines) by spaces.
    fn clean(&mut self, text: &str) -> String {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    ' '
                } else if self.glyph(c).0 == 0 {
                    '?'
                } else {
                    c
                }
            })
            .collect()
    }

    fn width(&mut self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.glyph(c).1).sum::<f32>() * size
    }

    fn glyphs(&mut self, text: &str) -> Vec<KrillaGlyph> {
        text.char_indices()
            .map(|(i, c)| {
                let (gid, adv) = self.glyph(c);
                KrillaGlyph::new(
                    GlyphId::new(gid),
                    adv,
                    0.0,
                    0.0,
                    0.0,
                    i..i + c.len_utf8(),
                    None,
                )
            })
            .collect()
    }
}

struct Fonts {
    regular: Face,
    bold: Face,
}

impl Fonts {
    fn face(&mut self, bold: bool) -> &mut Face {
        if bold {
            &mut self.bold
        } else {
            &mut self.regular
        }
    }
}

/// A laid-out drawing operation, in page coordinates (y down, text at its baseline).
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        color: Color,
        text: String,
    },
    Line {
        points: Vec<(f32, f32)>,
        color: Color,
        width: f32,
        dashed: bool,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Color,
    },
}

/// How a table cell looks.
#[derive(Debug, Clone, Copy, Default)]
struct CellStyle {
    bold: bool,
    color: Option<Color>,
    right: bool,
}

struct Layout {
    fonts: Fonts,
    pages: Vec<Vec<Op>>,
    y: f32,
}

const LINE: f32 = 1.3;

impl Layout {
    fn new(fonts: Fonts) -> Layout {
        Layout {
            fonts,
            pages: vec![Vec::new()],
            y: TOP,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = TOP;
    }

    /// Start a new page unless `h` more points fit on this one.
    fn need(&mut self, h: f32) {
        if self.y + h > BOTTOM && self.y > TOP {
            self.new_page();
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, color: Color, text: &str) {
        let text = self.fonts.face(bold).clean(text);
        if text.trim().is_empty() {
            return;
        }
        self.ops().push(Op::Text {
            x,
            y,
            size,
            bold,
            color,
            text,
        });
    }

    /// Lines of `text` no wider than `width`, broken at spaces (or inside a
    /// word longer than a line).
    fn wrap(&mut self, text: &str, size: f32, bold: bool, width: f32) -> Vec<String> {
        let face = self.fonts.face(bold);
        let text = face.clean(text);
        let mut lines = Vec::new();
        let mut cur = String::new();
        for word in text.split(' ').filter(|w| !w.is_empty()) {
            let candidate = if cur.is_empty() {
                word.to_string()
            } else {
                format!("{cur} {word}")
            };
            if face.width(&candidate, size) <= width {
                cur = candidate;
                continue;
            }
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
            }
            // A word longer than the line: break it where it must.
            let mut part = String::new();
            for c in word.chars() {
                part.push(c);
                if face.width(&part, size) > width && part.chars().count() > 1 {
                    part.pop();
                    lines.push(std::mem::take(&mut part));
                    part.push(c);
                }
            }
            cur = part;
        }
        if !cur.is_empty() || lines.is_empty() {
            lines.push(cur);
        }
        lines
    }

    fn para_at(&mut self, x: f32, width: f32, text: &str, size: f32, bold: bool, color: Color) {
        for line in self.wrap(text, size, bold, width) {
            self.need(size * LINE);
            self.y += size;
            let y = self.y;
            self.text(x, y, size, bold, color, &line);
            self.y += size * (LINE - 1.0);
        }
    }

    fn para(&mut self, text: &str, size: f32) {
        self.para_at(LEFT, WIDTH, text, size, false, INK);
        self.y += 3.0;
    }

    fn heading(&mut self, text: &str) {
        // Keep a heading with what follows it.
        self.need(60.0);
        self.y += 8.0;
        self.para_at(LEFT, WIDTH, text, 11.5, true, INK);
        let y = self.y;
        self.ops().push(Op::Line {
            points: vec![(LEFT, y), (RIGHT, y)],
            color: GREY,
            width: 0.6,
            dashed: false,
        });
        self.y += 5.0;
    }

    fn subheading(&mut self, text: &str) {
        self.need(40.0);
        self.y += 4.0;
        self.para_at(LEFT, WIDTH, text, 10.0, true, INK);
        self.y += 2.0;
    }

    /// (label, value) lines with the labels in a column.
    fn facts(&mut self, rows: &[(String, String)], size: f32) {
        let label_w = 150.0;
        for (k, v) in rows {
            let keys = self.wrap(k, size, true, label_w - 8.0);
            let vals = self.wrap(v, size, false, WIDTH - label_w);
            let n = keys.len().max(vals.len());
            self.need(n as f32 * size * LINE);
            for i in 0..n {
                self.y += size;
                let y = self.y;
                if let Some(k) = keys.get(i) {
                    self.text(LEFT, y, size, true, INK, k);
                }
                if let Some(v) = vals.get(i) {
                    self.text(LEFT + label_w, y, size, false, INK, v);
                }
                self.y += size * (LINE - 1.0);
            }
        }
        self.y += 4.0;
    }

    fn hline(&mut self, x0: f32, x1: f32, y: f32) {
        self.ops().push(Op::Line {
            points: vec![(x0, y), (x1, y)],
            color: GREY,
            width: 0.5,
            dashed: false,
        });
    }

    fn vline(&mut self, x: f32, y0: f32, y1: f32) {
        self.ops().push(Op::Line {
            points: vec![(x, y0), (x, y1)],
            color: GREY,
            width: 0.5,
            dashed: false,
        });
    }

    /// A table: column (title, share of the width); rows of cells with styles.
    fn table(&mut self, cols: &[(&str, f32)], rows: &[Vec<(String, CellStyle)>], size: f32) {
        let total: f32 = cols.iter().map(|c| c.1).sum();
        let widths: Vec<f32> = cols.iter().map(|c| c.1 / total * WIDTH).collect();
        let pad = 3.0;
        let header: Vec<(String, CellStyle)> = cols
            .iter()
            .map(|c| {
                (
                    c.0.to_string(),
                    CellStyle {
                        bold: true,
                        ..CellStyle::default()
                    },
                )
            })
            .collect();
        let draw_row = |me: &mut Layout, cells: &[(String, CellStyle)], head: bool| {
            let wrapped: Vec<Vec<String>> = cells
                .iter()
                .zip(&widths)
                .map(|((t, st), w)| me.wrap(t, size, st.bold, w - 2.0 * pad))
                .collect();
            let n = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
            let h = n as f32 * size * LINE + 2.0 * pad;
            let top = me.y;
            if head {
                me.ops().push(Op::Rect {
                    x: LEFT,
                    y: top,
                    w: WIDTH,
                    h,
                    fill: HEAD_BG,
                });
            }
            let mut x = LEFT;
            for ((lines, (_, st)), w) in wrapped.iter().zip(cells).zip(&widths) {
                let mut y = top + pad;
                for line in lines {
                    y += size;
                    let lx = if st.right {
                        let lw = me.fonts.face(st.bold).width(line, size);
                        x + w - pad - lw
                    } else {
                        x + pad
                    };
                    me.text(lx, y, size, st.bold, st.color.unwrap_or(INK), line);
                    y += size * (LINE - 1.0);
                }
                x += w;
            }
            me.hline(LEFT, RIGHT, top);
            me.hline(LEFT, RIGHT, top + h);
            let mut x = LEFT;
            me.vline(x, top, top + h);
            for w in &widths {
                x += w;
                me.vline(x, top, top + h);
            }
            me.y = top + h;
            h
        };
        let row_h = |me: &mut Layout, cells: &[(String, CellStyle)]| {
            let n = cells
                .iter()
                .zip(&widths)
                .map(|((t, st), w)| me.wrap(t, size, st.bold, w - 2.0 * pad).len())
                .max()
                .unwrap_or(1)
                .max(1);
            n as f32 * size * LINE + 2.0 * pad
        };
        let head_h = row_h(self, &header);
        let first = rows.first().map_or(0.0, |r| row_h(self, r));
        self.need(head_h + first);
        draw_row(self, &header, true);
        for r in rows {
            let h = row_h(self, r);
            if self.y + h > BOTTOM {
                self.new_page();
                draw_row(self, &header, true);
            }
            draw_row(self, r, false);
        }
        self.y += 6.0;
    }

    fn chart(&mut self, c: &Chart) {
        let scale = (WIDTH / c.width).min(1.0);
        let h = c.height * scale;
        self.need(h + 8.0);
        let (ox, oy) = (LEFT, self.y + 4.0);
        let p = |x: f32, y: f32| (ox + x * scale, oy + y * scale);
        for s in &c.shapes {
            match s {
                Shape::Line {
                    points,
                    color,
                    width,
                    dashed,
                } => {
                    let points = points.iter().map(|(x, y)| p(*x, *y)).collect();
                    self.ops().push(Op::Line {
                        points,
                        color: *color,
                        width: width * scale,
                        dashed: *dashed,
                    });
                }
                Shape::Rect { x, y, w, h, fill } => {
                    let (x, y) = p(*x, *y);
                    self.ops().push(Op::Rect {
                        x,
                        y,
                        w: w * scale,
                        h: h * scale,
                        fill: *fill,
                    });
                }
                Shape::Text {
                    x,
                    y,
                    size,
                    text,
                    anchor,
                    bold,
                } => {
                    let size = size * scale;
                    let w = self.fonts.face(*bold).width(text, size);
                    let (x, y) = p(*x, *y);
                    let x = match anchor {
                        Anchor::Start => x,
                        Anchor::Middle => x - w / 2.0,
                        Anchor::End => x - w,
                    };
                    self.text(x, y, size, *bold, INK, text);
                }
            }
        }
        self.y = oy + h + 6.0;
    }

    fn boxed(&mut self, text: &str, size: f32) {
        let lines = self.wrap(text, size, false, WIDTH - 12.0);
        let h = (lines.len() as f32 * size * LINE + 10.0).max(36.0);
        self.need(h + 4.0);
        let top = self.y;
        let mut y = top + 5.0;
        for l in &lines {
            y += size;
            self.text(LEFT + 6.0, y, size, false, INK, l);
            y += size * (LINE - 1.0);
        }
        self.ops().push(Op::Line {
            points: vec![
                (LEFT, top),
                (RIGHT, top),
                (RIGHT, top + h),
                (LEFT, top + h),
                (LEFT, top),
            ],
            color: GREY,
            width: 0.6,
            dashed: false,
        });
        self.y = top + h + 6.0;
    }
}

fn verdict_style(v: Verdict) -> CellStyle {
    match v {
        Verdict::Better => CellStyle {
            bold: true,
            color: Some(GREEN),
            right: false,
        },
        Verdict::Worse => CellStyle {
            bold: true,
            color: Some(RED),
            right: false,
        },
        _ => CellStyle::default(),
    }
}

fn plain(t: impl Into<String>) -> (String, CellStyle) {
    (t.into(), CellStyle::default())
}

fn num(t: impl Into<String>) -> (String, CellStyle) {
    (
        t.into(),
        CellStyle {
            right: true,
            ..CellStyle::default()
        },
    )
}

fn compared(lay: &mut Layout, c: &Compared, d: &ReportData) {
    let l = d.lang;
    lay.subheading(&format!("{} ({})", c.title, c.verdict.word(l)));
    let rows: Vec<Vec<(String, CellStyle)>> = c
        .rows
        .iter()
        .map(|r| {
            vec![
                plain(&r.label),
                num(&r.before),
                num(&r.after),
                num(&r.change),
                (r.verdict.word(l).to_string(), verdict_style(r.verdict)),
            ]
        })
        .collect();
    lay.table(
        &[
            (tr(l, "Ukuran", "Figure"), 2.2),
            (tr(l, "Sebelum", "Before"), 1.5),
            (tr(l, "Sesudah", "After"), 1.5),
            (tr(l, "Perubahan", "Change"), 2.0),
            (tr(l, "Penilaian", "Verdict"), 1.6),
        ],
        &rows,
        8.5,
    );
    for n in &c.notes {
        lay.para_at(LEFT, WIDTH, n, 8.0, false, GREY);
    }
    lay.y += 2.0;
}

/// Lays the report out into pages of drawing operations.
fn layout(d: &ReportData, fonts: Fonts) -> Layout {
    let l = d.lang;
    let mut lay = Layout::new(fonts);
    letterhead(&mut lay, &d.office, &d.office_unit);
    let title = tr(l, "LAPORAN PEKERJAAN", "WORK REPORT");
    let w = lay.fonts.face(true).width(title, 15.0);
    lay.y += 15.0;
    let y = lay.y;
    lay.text((PAGE_W - w) / 2.0, y, 15.0, true, INK, title);
    let sub = format!(
        "{} — {} {}",
        d.sop_name,
        tr(l, "Nomor tiket", "Ticket"),
        d.ticket
    );
    let w = lay.fonts.face(false).width(&sub, 10.0);
    lay.y += 16.0;
    let y = lay.y;
    lay.text((PAGE_W - w) / 2.0, y, 10.0, false, INK, &sub);
    lay.y += 10.0;
    if matches!(d.status, Status::Draft { .. }) {
        lay.para_at(
            LEFT,
            WIDTH,
            tr(
                l,
                "DRAF — belum diperiksa Kepala Dinas; isi dapat berubah",
                "DRAFT — not yet reviewed by the Kepala Dinas; the content may change",
            ),
            10.0,
            true,
            RED,
        );
        lay.y += 4.0;
    }

    lay.heading(&format!("1. {}", tr(l, "Identitas", "Details")));
    lay.facts(&d.header, 9.0);

    lay.heading(&format!(
        "2. {}",
        tr(l, "Permasalahan dan bukti", "The problem and its evidence")
    ));
    lay.para(&d.problem, 9.5);
    if !d.evidence.is_empty() {
        let rows: Vec<Vec<(String, CellStyle)>> = d
            .evidence
            .iter()
            .map(|e| vec![plain(&e.time), plain(&e.finding)])
            .collect();
        lay.table(
            &[
                (tr(l, "Waktu", "Time"), 1.0),
                (
                    tr(
                        l,
                        "Pembacaan yang membuka tiket",
                        "Readings that opened the ticket",
                    ),
                    3.5,
                ),
            ],
            &rows,
            8.5,
        );
        if d.evidence_more > 0 {
            lay.para(
                &format!(
                    "{} {} {}",
                    tr(l, "dan", "and"),
                    d.evidence_more,
                    tr(l, "pembacaan lainnya", "more readings")
                ),
                8.5,
            );
        }
    }
    if !d.health_notes.is_empty() {
        lay.subheading(tr(l, "Catatan sistem", "System log"));
        for n in &d.health_notes {
            lay.para(&format!("{} — {}", n.time, n.text), 9.0);
        }
    }
    if let Some(raw) = &d.diagnostic {
        lay.subheading(tr(
            l,
            "Lampiran: diagnostik mentah",
            "Appendix: raw diagnostic",
        ));
        lay.para(raw, 8.0);
    }

    lay.heading(&format!(
        "3. {}",
        tr(
            l,
            "Pengukuran sebelum dan sesudah pekerjaan",
            "Measurements before and after the work"
        )
    ));
    if let Some(r) = &d.no_measurement_reason {
        lay.boxed(
            &format!("{} {r}", tr(l, "Tanpa pengukuran:", "No measurements:")),
            9.5,
        );
    }
    let c = &d.comparison;
    if c.before.is_none() && c.after.is_none() {
        lay.para(
            tr(
                l,
                "Belum ada pengukuran sebelum atau sesudah pekerjaan yang selesai.",
                "No measurement before or after the work has completed.",
            ),
            9.5,
        );
    } else {
        lay.facts(
            &[
                (
                    tr(l, "Pengukuran sebelum", "Measurement before").to_string(),
                    c.before.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    tr(l, "Pengukuran sesudah", "Measurement after").to_string(),
                    c.after.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    tr(l, "Kesimpulan", "Conclusion").to_string(),
                    c.verdict.word(l).to_string(),
                ),
            ],
            9.0,
        );
        for dev in &c.devices {
            compared(&mut lay, dev, d);
        }
        for link in &c.links {
            compared(&mut lay, link, d);
        }
        for chart in &c.charts {
            lay.chart(chart);
        }
        lay.para_at(LEFT, WIDTH, rules(l), 8.0, false, GREY);
        lay.y += 4.0;
    }
    if !d.measurements.is_empty() {
        lay.subheading(tr(
            l,
            "Semua pengukuran tiket ini",
            "All measurements of this ticket",
        ));
        let rows: Vec<Vec<(String, CellStyle)>> = d
            .measurements
            .iter()
            .map(|m| {
                vec![
                    plain(&m.id),
                    plain(&m.phase),
                    plain(&m.requested_at),
                    plain(&m.requested_by),
                    plain(&m.state),
                    plain(&m.summary),
                ]
            })
            .collect();
        lay.table(
            &[
                ("ID", 1.1),
                (tr(l, "Tahap", "Phase"), 0.9),
                (tr(l, "Diminta", "Requested"), 1.4),
                (tr(l, "Oleh", "By"), 1.0),
                (tr(l, "Keadaan", "State"), 1.0),
                (tr(l, "Hasil", "Figures"), 3.0),
            ],
            &rows,
            8.0,
        );
    }

    lay.heading(&format!("4. {}", tr(l, "Pekerjaan", "The work")));
    if d.status_updates.is_empty() && d.work_note.is_none() {
        lay.para(
            tr(l, "Belum ada catatan pekerjaan.", "No work recorded yet."),
            9.5,
        );
    }
    if !d.status_updates.is_empty() {
        let rows: Vec<Vec<(String, CellStyle)>> = d
            .status_updates
            .iter()
            .map(|s| vec![plain(&s.time), plain(&s.who), plain(&s.text)])
            .collect();
        lay.table(
            &[
                (tr(l, "Waktu", "Time"), 1.0),
                (tr(l, "Oleh", "By"), 1.3),
                ("Status", 2.7),
            ],
            &rows,
            8.5,
        );
    }
    if let Some(n) = &d.work_note {
        lay.para(
            &format!(
                "{} ({}, {}): {}",
                tr(l, "Catatan pekerjaan", "Work note"),
                n.who,
                n.time,
                n.text
            ),
            9.5,
        );
    }

    lay.heading(&format!(
        "5. {}",
        tr(l, "Pengakuan OPD atas laporan", "The OPD's acknowledgement")
    ));
    match &d.acknowledgement {
        Some(a) => lay.facts(
            &[
                (tr(l, "Nama", "Name").to_string(), a.name.clone()),
                (
                    tr(l, "Jabatan", "Position").to_string(),
                    if a.position.is_empty() {
                        "-".into()
                    } else {
                        a.position.clone()
                    },
                ),
                (
                    tr(l, "Waktu", "Time").to_string(),
                    format!("{} ({})", a.at, a.recorded),
                ),
            ],
            9.0,
        ),
        None => lay.para(tr(l, "Belum diketahui OPD.", "Not acknowledged yet."), 9.5),
    }

    lay.heading(&format!(
        "6. {}",
        tr(
            l,
            "Alur disposisi dan waktu standar",
            "Disposition timeline and time standards"
        )
    ));
    let shares = [0.4, 1.2, 0.85, 1.7, 1.5, 2.2, 0.9, 1.4];
    let cols: Vec<(&str, f32)> = d
        .timeline_columns
        .iter()
        .zip(shares)
        .map(|(c, s)| (c.as_str(), s))
        .collect();
    let rows: Vec<Vec<(String, CellStyle)>> = d
        .timeline
        .iter()
        .map(|r| {
            let result = if r.late {
                (
                    r.result.clone(),
                    CellStyle {
                        bold: true,
                        color: Some(RED),
                        right: false,
                    },
                )
            } else {
                plain(&r.result)
            };
            vec![
                plain(r.no.to_string()),
                plain(&r.time),
                plain(&r.step),
                plain(&r.from),
                plain(&r.to),
                plain(&r.note),
                plain(&r.standard),
                result,
            ]
        })
        .collect();
    lay.table(&cols, &rows, 7.5);

    lay.heading(&format!(
        "7. {}",
        tr(l, "Pemeriksaan Kepala Dinas", "The Kepala Dinas's review")
    ));
    match &d.review {
        Some(r) => {
            lay.para(
                &format!(
                    "{} {} {} {}.",
                    tr(l, "Diperiksa oleh", "Reviewed by"),
                    r.by,
                    tr(l, "pada", "at"),
                    r.at
                ),
                9.5,
            );
            lay.boxed(
                r.note
                    .as_deref()
                    .unwrap_or(tr(l, "(tanpa catatan)", "(no note)")),
                9.5,
            );
        }
        None => lay.boxed(
            tr(
                l,
                "(belum diperiksa; catatan pemeriksaan Kepala Dinas akan tercantum di sini)",
                "(not reviewed yet; the Kepala Dinas's review note will appear here)",
            ),
            9.0,
        ),
    }

    // Signatures: three columns, kept on one page.
    lay.need(132.0);
    lay.y += 14.0;
    let col_w = WIDTH / 3.0;
    let top = lay.y;
    let mut bottom = top;
    for (i, s) in d.signatures.iter().enumerate() {
        let cx = LEFT + col_w * (i as f32 + 0.5);
        let mut y = top;
        let name = if s.name.is_empty() {
            "(..............................)".to_string()
        } else {
            s.name.clone()
        };
        let lines: Vec<(String, bool, f32)> = [
            (s.caption.clone(), false, 0.0),
            (s.role.clone(), false, 0.0),
            (name, true, 48.0),
            (s.nip.clone(), false, 0.0),
            (s.detail.clone(), false, 0.0),
        ]
        .into_iter()
        .collect();
        for (text, bold, gap) in lines {
            y += gap;
            for line in lay.wrap(&text, 9.0, bold, col_w - 10.0) {
                y += 9.0;
                let w = lay.fonts.face(bold).width(&line, 9.0);
                lay.text(cx - w / 2.0, y, 9.0, bold, INK, &line);
                y += 9.0 * (LINE - 1.0);
            }
        }
        bottom = bottom.max(y);
    }
    lay.y = bottom + 16.0;
    lay.para_at(LEFT, WIDTH, &footer(d), 8.0, false, GREY);
    lay
}

fn rgb_of(c: Color) -> rgb::Color {
    rgb::Color::new(c.0, c.1, c.2)
}

fn fill(c: Color) -> Fill {
    Fill {
        paint: rgb_of(c).into(),
        opacity: NormalizedF32::ONE,
        rule: FillRule::NonZero,
    }
}

/// The report as PDF bytes.
pub fn render(d: &ReportData) -> Result<Vec<u8>, PdfError> {
    let fonts = Fonts {
        regular: Face::new(REGULAR)?,
        bold: Face::new(BOLD)?,
    };
    let mut lay = layout(d, fonts);
    let l = d.lang;
    let draft = matches!(d.status, Status::Draft { .. });
    let n = lay.pages.len();
    // Running header and footer on every page.
    let head = format!(
        "{} — {}",
        d.ticket,
        tr(l, "Laporan Pekerjaan", "Work Report")
    );
    for i in 0..n {
        let mut extra = Vec::new();
        let fonts = &mut lay.fonts;
        let mut push = |x: f32, y: f32, size: f32, bold: bool, color: Color, text: String| {
            extra.push(Op::Text {
                x,
                y,
                size,
                bold,
                color,
                text,
            })
        };
        push(LEFT, 36.0, 8.0, false, GREY, head.clone());
        if draft {
            let t = tr(l, "DRAF", "DRAFT").to_string();
            let w = fonts.face(true).width(&t, 10.0);
            push(RIGHT - w, 36.0, 10.0, true, RED, t);
        }
        let page = format!("{} {} / {n}", tr(l, "Halaman", "Page"), i + 1);
        let w = fonts.face(false).width(&page, 8.0);
        push((PAGE_W - w) / 2.0, PAGE_H - 30.0, 8.0, false, GREY, page);
        lay.pages[i].extend(extra);
    }

    let mut doc = Document::new();
    let mut meta = Metadata::new()
        .title(format!(
            "{} {}",
            tr(l, "Laporan Pekerjaan", "Work Report"),
            d.ticket
        ))
        .language(code(l).to_string())
        .creator("Siaga".to_string())
        .producer("Siaga".to_string())
        .document_id(format!("siaga-report/{}/{}", d.ticket, code(l)));
    if !d.office.is_empty() {
        meta = meta.authors(vec![d.office.clone()]);
    }
    if let Some(t) = d.reviewed_at {
        use chrono::{Datelike, Timelike};
        let dt = krilla::metadata::DateTime::new(u16::try_from(t.year()).unwrap_or(2000))
            .month(u8::try_from(t.month()).unwrap_or(1))
            .day(u8::try_from(t.day()).unwrap_or(1))
            .hour(u8::try_from(t.hour()).unwrap_or(0))
            .minute(u8::try_from(t.minute()).unwrap_or(0))
            .second(u8::try_from(t.second()).unwrap_or(0))
            .utc_offset_hour(0)
            .utc_offset_minute(0);
        meta = meta.creation_date(dt);
    }
    doc.set_metadata(meta);
    let watermark = draft.then(|| tr(l, "DRAF", "DRAFT").to_string());
    draw(doc, &mut lay, watermark.as_deref())
}

/// The monthly availability report as PDF bytes, in the work report's
/// style: letterhead, title, the OPDs' figures, the devices and links
/// (every one for one OPD; for several, those with an outage or without
/// data), and the Kepala Dinas's signature.
pub fn render_availability(d: &super::sla::SlaDoc<'_>) -> Result<Vec<u8>, PdfError> {
    use super::sla::{pct, time};
    let fonts = Fonts {
        regular: Face::new(REGULAR)?,
        bold: Face::new(BOLD)?,
    };
    let mut lay = Layout::new(fonts);
    letterhead(&mut lay, &d.office, &d.office_unit);
    let title = "LAPORAN KETERSEDIAAN JARINGAN";
    let w = lay.fonts.face(true).width(title, 15.0);
    lay.y += 15.0;
    let y = lay.y;
    lay.text((PAGE_W - w) / 2.0, y, 15.0, true, INK, title);
    let sub = format!("Periode {}", d.month());
    let w = lay.fonts.face(false).width(&sub, 10.0);
    lay.y += 16.0;
    let y = lay.y;
    lay.text((PAGE_W - w) / 2.0, y, 10.0, false, INK, &sub);
    lay.y += 10.0;
    lay.heading("Ringkasan per OPD");
    let rows: Vec<Vec<(String, CellStyle)>> =
        d.a.opds
            .iter()
            .map(|o| {
                let f = &o.figures;
                vec![
                    plain(d.opd_name(&o.opd)),
                    num(pct(f)),
                    num(time(f.down_us)),
                    num(f.incidents.to_string()),
                    num(f.mttr_us().map_or_else(|| "-".into(), time)),
                    num(time(f.longest_outage_us)),
                    num(o.tickets.within.to_string()),
                    num(o.tickets.outside.to_string()),
                ]
            })
            .collect();
    let cols = super::sla::OPD_COLUMNS;
    lay.table(
        &[
            (cols[0], 3.0),
            (cols[1], 1.4),
            (cols[2], 1.5),
            (cols[3], 1.0),
            (cols[4], 1.5),
            (cols[5], 1.5),
            ("Tiket sesuai standar", 1.2),
            ("Tiket melewati standar", 1.2),
        ],
        &rows,
        8.0,
    );
    let all = d.a.opds.len() <= 1;
    lay.heading(if all {
        "Perangkat dan link"
    } else {
        "Perangkat dan link dengan gangguan atau tanpa data"
    });
    let rows: Vec<Vec<(String, CellStyle)>> =
        d.a.subjects
            .iter()
            .filter(|r| all || r.figures.down_us > 0 || r.figures.no_data_us > 0)
            .map(|r| {
                let f = &r.figures;
                let name = match r.subject.link_name() {
                    Some(l) => format!("{} / {l}", r.subject.device_id().unwrap_or_default()),
                    None => r.subject.device_id().unwrap_or_default().to_string(),
                };
                vec![
                    plain(d.opd_name(&r.opd)),
                    plain(name),
                    num(pct(f)),
                    num(time(f.down_us)),
                    num(f.incidents.to_string()),
                    num(time(f.longest_outage_us)),
                    num(time(f.no_data_us)),
                ]
            })
            .collect();
    if rows.is_empty() {
        lay.para("Tidak ada gangguan dan tidak ada waktu tanpa data.", 9.0);
    } else {
        lay.table(
            &[
                ("OPD", 2.4),
                ("Perangkat / link", 2.4),
                ("Ketersediaan", 1.3),
                ("Waktu padam", 1.4),
                ("Insiden", 0.9),
                ("Padam terlama", 1.4),
                ("Tanpa data", 1.4),
            ],
            &rows,
            8.0,
        );
    }
    lay.para(
        "Ketersediaan = waktu hidup / (waktu hidup + waktu padam), dihitung dari sampel yang \
         tersimpan. Jendela pemeliharaan dan waktu tanpa data tidak dihitung; perangkat di \
         belakang perangkat yang padam dihitung sekali, pada perangkat induknya. Tiket melewati \
         standar waktu bila ada langkah SOP yang terlambat.",
        8.0,
    );
    // The signature: one column on the right, kept on one page.
    lay.need(132.0);
    lay.y += 14.0;
    let col_w = WIDTH / 3.0;
    let cx = RIGHT - col_w / 2.0;
    let (name, nip) = match &d.signer {
        Some(s) => (s.name.clone(), s.nip.clone()),
        None => (
            "(..............................)".to_string(),
            "NIP ..............................".to_string(),
        ),
    };
    let mut y = lay.y;
    for (text, bold, gap) in [
        ("Mengetahui,".to_string(), false, 0.0),
        ("Kepala Dinas".to_string(), false, 0.0),
        (name, true, 48.0),
        (nip, false, 0.0),
    ] {
        y += gap;
        for line in lay.wrap(&text, 9.0, bold, col_w - 10.0) {
            y += 9.0;
            let w = lay.fonts.face(bold).width(&line, 9.0);
            lay.text(cx - w / 2.0, y, 9.0, bold, INK, &line);
            y += 9.0 * (LINE - 1.0);
        }
    }
    lay.y = y + 16.0;
    let n = lay.pages.len();
    let head = format!("Laporan Ketersediaan Jaringan — {}", d.month());
    for i in 0..n {
        let page = format!("Halaman {} / {n}", i + 1);
        let w = lay.fonts.face(false).width(&page, 8.0);
        lay.pages[i].push(Op::Text {
            x: LEFT,
            y: 36.0,
            size: 8.0,
            bold: false,
            color: GREY,
            text: head.clone(),
        });
        lay.pages[i].push(Op::Text {
            x: (PAGE_W - w) / 2.0,
            y: PAGE_H - 30.0,
            size: 8.0,
            bold: false,
            color: GREY,
            text: page,
        });
    }
    let mut doc = Document::new();
    let mut meta = Metadata::new()
        .title(format!("Laporan Ketersediaan Jaringan {}", d.month()))
        .language("id".to_string())
        .creator("Siaga".to_string())
        .producer("Siaga".to_string())
        .document_id(format!("siaga-availability/{}", d.period));
    if !d.office.is_empty() {
        meta = meta.authors(vec![d.office.clone()]);
    }
    doc.set_metadata(meta);
    draw(doc, &mut lay, None)
}

/// The office's name and unit centred at the top, ruled off.
fn letterhead(lay: &mut Layout, office: &str, unit: &str) {
    for (t, size) in [(office.to_uppercase(), 13.0), (unit.to_string(), 11.0)] {
        if t.is_empty() {
            continue;
        }
        let w = lay.fonts.face(size > 12.0).width(&t, size);
        lay.y += size;
        let y = lay.y;
        lay.text((PAGE_W - w) / 2.0, y, size, size > 12.0, INK, &t);
        lay.y += size * 0.4;
    }
    lay.y += 4.0;
    let y = lay.y;
    lay.ops().push(Op::Line {
        points: vec![(LEFT, y), (RIGHT, y)],
        color: INK,
        width: 1.5,
        dashed: false,
    });
    lay.y += 14.0;
}

/// Draws the laid-out pages into `doc`, with `watermark` large and light
/// behind each page's content, and gives the PDF's bytes.
fn draw(mut doc: Document, lay: &mut Layout, watermark: Option<&str>) -> Result<Vec<u8>, PdfError> {
    let settings =
        PageSettings::from_wh(PAGE_W, PAGE_H).ok_or_else(|| PdfError("bad page size".into()))?;
    for ops in &lay.pages {
        let mut page = doc.start_page_with(settings.clone());
        let mut s = page.surface();
        if let Some(watermark) = watermark {
            // A large, light, slanted mark behind the page's content.
            let (sin, cos) = (-30f32).to_radians().sin_cos();
            s.push_transform(&Transform::from_row(
                cos,
                sin,
                -sin,
                cos,
                PAGE_W / 2.0 - 150.0,
                PAGE_H / 2.0 + 90.0,
            ));
            s.set_fill(Some(fill(WATERMARK)));
            s.set_stroke(None);
            let face = lay.fonts.face(true);
            let glyphs = face.glyphs(watermark);
            s.draw_glyphs(
                Point::from_xy(0.0, 0.0),
                &glyphs,
                face.font.clone(),
                watermark,
                110.0,
                false,
            );
            s.pop();
        }
        for op in ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    bold,
                    color,
                    text,
                } => {
                    let face = lay.fonts.face(*bold);
                    let glyphs = face.glyphs(text);
                    s.set_fill(Some(fill(*color)));
                    s.set_stroke(None);
                    s.draw_glyphs(
                        Point::from_xy(*x, *y),
                        &glyphs,
                        face.font.clone(),
                        text,
                        *size,
                        false,
                    );
                }
                Op::Line {
                    points,
                    color,
                    width,
                    dashed,
                } => {
                    let mut pb = PathBuilder::new();
                    for (i, (x, y)) in points.iter().enumerate() {
                        if i == 0 {
                            pb.move_to(*x, *y);
                        } else {
                            pb.line_to(*x, *y);
                        }
                    }
                    if let Some(path) = pb.finish() {
                        s.set_fill(None);
                        s.set_stroke(Some(Stroke {
                            paint: rgb_of(*color).into(),
                            width: *width,
                            dash: dashed.then(|| StrokeDash {
                                array: vec![4.0, 2.0],
                                offset: 0.0,
                            }),
                            ..Stroke::default()
                        }));
                        s.draw_path(&path);
                    }
                }
                Op::Rect {
                    x,
                    y,
                    w,
                    h,
                    fill: f,
                } => {
                    if let Some(r) = Rect::from_xywh(*x, *y, *w, *h) {
                        let mut pb = PathBuilder::new();
                        pb.push_rect(r);
                        if let Some(path) = pb.finish() {
                            s.set_stroke(None);
                            s.set_fill(Some(fill(*f)));
                            s.draw_path(&path);
                        }
                    }
                }
            }
        }
        s.finish();
        page.finish();
    }
    doc.finish().map_err(|e| PdfError(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fonts() -> Fonts {
        Fonts {
            regular: Face::new(REGULAR).expect("font"),
            bold: Face::new(BOLD).expect("font"),
        }
    }

    #[test]
    fn text_wraps_inside_the_width_and_keeps_every_word() {
        let mut lay = Layout::new(fonts());
        let text = "Tim Teknis menindaklanjuti, memperbarui status, melakukan pemeliharaan di OPD dan membuat laporan pekerjaan yang diketahui OPD Supercalifragilisticexpialidocious-tanpa-spasi-sama-sekali-panjang-sekali";
        let lines = lay.wrap(text, 10.0, false, 120.0);
        assert!(lines.len() > 3, "{lines:?}");
        for l in &lines {
            assert!(lay.fonts.regular.width(l, 10.0) <= 120.0 + 0.01, "{l}");
        }
        assert_eq!(lines.concat().replace(' ', ""), text.replace(' ', ""));
    }

    #[test]
    fn characters_the_font_lacks_become_question_marks() {
        let mut f = fonts();
        assert_eq!(f.regular.clean("a→b ≈ 5\tµs ✓"), "a→b ≈ 5 µs ?");
    }

    #[test]
    fn a_long_table_goes_on_over_pages_with_its_header() {
        let mut lay = Layout::new(fonts());
        let rows: Vec<Vec<(String, CellStyle)>> = (0..120)
            .map(|i| vec![plain(format!("baris {i}")), plain("x")])
            .collect();
        lay.table(&[("Kolom", 1.0), ("Isi", 1.0)], &rows, 9.0);
        assert!(lay.pages.len() >= 3, "{} pages", lay.pages.len());
        for page in &lay.pages {
            assert!(
                page.iter()
                    .any(|o| matches!(o, Op::Text { text, .. } if text == "Kolom")),
                "every page starts with the header"
            );
            for o in page {
                if let Op::Text { y, .. } = o {
                    assert!(*y <= BOTTOM && *y >= TOP, "{o:?}");
                }
            }
        }
    }
}
