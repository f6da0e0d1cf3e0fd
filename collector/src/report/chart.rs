//! The chart of one device: the distribution of its round-trip times before
//! and after the work (each phase's sorted RTTs as a cumulative curve: the
//! share of replies at or under a time), and its loss before and after as
//! bars. Built once as shapes in a 520 × 210 box (y grows downwards, text
//! positioned at its baseline) and drawn by both renderers: SVG in the HTML,
//! vector paths in the PDF.

use super::words::{decimal, pct, tr};
use crate::sop::Lang;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Color(pub u8, pub u8, pub u8);

impl Color {
    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Before the work: red, dashed (tells the phases apart in black and white too).
pub const BEFORE: Color = Color(192, 57, 43);
/// After the work: blue, solid.
pub const AFTER: Color = Color(36, 113, 163);
/// Axes and labels.
pub const INK: Color = Color(34, 34, 34);
/// Grid lines.
pub const GRID: Color = Color(210, 210, 210);

/// Where a text sits relative to its x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// x is the left edge.
    Start,
    /// x is the middle.
    Middle,
    /// x is the right edge.
    End,
}

/// One thing to draw.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// An open polyline.
    Line {
        /// Points, in order.
        points: Vec<(f32, f32)>,
        /// Colour.
        color: Color,
        /// Stroke width.
        width: f32,
        /// Dashed.
        dashed: bool,
    },
    /// A filled rectangle.
    Rect {
        /// Left.
        x: f32,
        /// Top.
        y: f32,
        /// Width.
        w: f32,
        /// Height.
        h: f32,
        /// Fill.
        fill: Color,
    },
    /// A line of text.
    Text {
        /// x, per `anchor`.
        x: f32,
        /// Baseline.
        y: f32,
        /// Font size.
        size: f32,
        /// The text.
        text: String,
        /// Where x is.
        anchor: Anchor,
        /// Bold.
        bold: bool,
    },
}

/// A chart: its size and its shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
    /// What to draw, in order.
    pub shapes: Vec<Shape>,
}

/// One phase of one device, for the chart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phase {
    /// Every round trip received, µs.
    pub rtts_us: Vec<u64>,
    /// Loss in percent, if measured.
    pub loss_pct: Option<f64>,
}

/// Most points a curve keeps (a burst of 10,000 stays a small drawing).
pub const MAX_POINTS: usize = 200;

const W: f32 = 520.0;
const H: f32 = 210.0;
// The RTT panel.
const X0: f32 = 48.0;
const X1: f32 = 330.0;
const Y0: f32 = 34.0;
const Y1: f32 = 164.0;
// The loss panel.
const LX0: f32 = 392.0;
const LX1: f32 = 505.0;

/// Round numbers for an axis from 0 to at least `max`: (step, last tick).
pub fn ticks(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (max / step).ceil() * step)
}

/// The cumulative curve of `rtts`: (ms, percent of replies at or under it),
/// at most [`MAX_POINTS`] points, evenly spaced in rank.
pub fn cdf(rtts_us: &[u64]) -> Vec<(f64, f64)> {
    let mut v = rtts_us.to_vec();
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        return Vec::new();
    }
    let keep = n.min(MAX_POINTS);
    (0..keep)
        .map(|k| {
            // Rank of the k-th kept point; the last one is always the maximum.
            let i = if keep == 1 {
                n - 1
            } else {
                k * (n - 1) / (keep - 1)
            };
            (v[i] as f64 / 1000.0, (i + 1) as f64 * 100.0 / n as f64)
        })
        .collect()
}

fn text(x: f32, y: f32, size: f32, t: impl Into<String>, anchor: Anchor) -> Shape {
    Shape::Text {
        x,
        y,
        size,
        text: t.into(),
        anchor,
        bold: false,
    }
}

fn line(points: Vec<(f32, f32)>, color: Color, width: f32, dashed: bool) -> Shape {
    Shape::Line {
        points,
        color,
        width,
        dashed,
    }
}

/// The chart of `device`.
pub fn device_chart(device: &str, before: &Phase, after: &Phase, lang: Lang) -> Chart {
    let mut s = Vec::new();
    s.push(Shape::Text {
        x: 0.0,
        y: 14.0,
        size: 10.0,
        text: format!(
            "{} — {device}",
            tr(lang, "Distribusi RTT dan loss", "RTT distribution and loss")
        ),
        anchor: Anchor::Start,
        bold: true,
    });
    // RTT panel: grid, axes, ticks.
    let before_cdf = cdf(&before.rtts_us);
    let after_cdf = cdf(&after.rtts_us);
    let max_ms = before_cdf
        .iter()
        .chain(&after_cdf)
        .map(|p| p.0)
        .fold(0.0, f64::max);
    let (step, top) = ticks(max_ms);
    let sx = |ms: f64| X0 + ((ms / top) as f32) * (X1 - X0);
    let sy = |pct: f64| Y1 - ((pct / 100.0) as f32) * (Y1 - Y0);
    for p in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let y = sy(p);
        s.push(line(vec![(X0, y), (X1, y)], GRID, 0.5, false));
        s.push(text(
            X0 - 4.0,
            y + 3.0,
            7.0,
            format!("{p:.0} %"),
            Anchor::End,
        ));
    }
    let places = if step >= 1.0 {
        0
    } else if ((step * 10.0).round() - step * 10.0).abs() < 1e-9 {
        1
    } else {
        2
    };
    let n = (top / step).round() as u32;
    for i in 0..=n {
        let t = f64::from(i) * step;
        let x = sx(t);
        s.push(line(vec![(x, Y1), (x, Y1 + 3.0)], INK, 0.5, false));
        s.push(text(
            x,
            Y1 + 12.0,
            7.0,
            decimal(lang, t, places),
            Anchor::Middle,
        ));
    }
    s.push(line(vec![(X0, Y0), (X0, Y1), (X1, Y1)], INK, 0.8, false));
    s.push(text(
        (X0 + X1) / 2.0,
        Y1 + 24.0,
        7.5,
        "RTT (ms)",
        Anchor::Middle,
    ));
    s.push(text(
        X0,
        Y0 - 6.0,
        7.5,
        tr(
            lang,
            "% balasan dengan RTT ≤ nilai",
            "% of replies with RTT ≤ value",
        ),
        Anchor::Start,
    ));
    for (curve, color, dashed) in [(&before_cdf, BEFORE, true), (&after_cdf, AFTER, false)] {
        if curve.is_empty() {
            continue;
        }
        let mut pts = vec![(sx(curve[0].0), sy(0.0))];
        pts.extend(curve.iter().map(|(ms, p)| (sx(*ms), sy(*p))));
        s.push(line(pts, color, 1.4, dashed));
    }
    if before_cdf.is_empty() && after_cdf.is_empty() {
        s.push(text(
            (X0 + X1) / 2.0,
            (Y0 + Y1) / 2.0,
            8.0,
            tr(lang, "tidak ada balasan", "no replies"),
            Anchor::Middle,
        ));
    }
    // Legend.
    let ly = H - 8.0;
    for (i, (label, color, dashed, phase)) in [
        (tr(lang, "Sebelum", "Before"), BEFORE, true, before),
        (tr(lang, "Sesudah", "After"), AFTER, false, after),
    ]
    .into_iter()
    .enumerate()
    {
        let x = X0 + i as f32 * 150.0;
        s.push(line(
            vec![(x, ly - 3.0), (x + 22.0, ly - 3.0)],
            color,
            1.4,
            dashed,
        ));
        let n = phase.rtts_us.len();
        s.push(text(
            x + 26.0,
            ly,
            7.5,
            format!("{label} ({n} {})", tr(lang, "balasan", "replies")),
            Anchor::Start,
        ));
    }
    // Loss panel.
    s.push(text(
        (LX0 + LX1) / 2.0,
        Y0 - 6.0,
        7.5,
        "Loss",
        Anchor::Middle,
    ));
    for p in [0.0, 50.0, 100.0] {
        let y = sy(p);
        s.push(line(vec![(LX0, y), (LX1, y)], GRID, 0.5, false));
        s.push(text(
            LX0 - 4.0,
            y + 3.0,
            7.0,
            format!("{p:.0} %"),
            Anchor::End,
        ));
    }
    s.push(line(vec![(LX0, Y0), (LX0, Y1), (LX1, Y1)], INK, 0.8, false));
    let bw = 30.0;
    for (i, (label, color, phase)) in [
        (tr(lang, "Sebelum", "Before"), BEFORE, before),
        (tr(lang, "Sesudah", "After"), AFTER, after),
    ]
    .into_iter()
    .enumerate()
    {
        let cx = LX0 + (LX1 - LX0) * (0.3 + 0.4 * i as f32);
        match phase.loss_pct {
            Some(l) => {
                let l = l.clamp(0.0, 100.0);
                let y = sy(l);
                if Y1 - y > 0.01 {
                    s.push(Shape::Rect {
                        x: cx - bw / 2.0,
                        y,
                        w: bw,
                        h: Y1 - y,
                        fill: color,
                    });
                }
                s.push(text(cx, y - 3.0, 7.5, pct(lang, l), Anchor::Middle));
            }
            None => s.push(text(cx, Y1 - 3.0, 7.5, "-", Anchor::Middle)),
        }
        s.push(text(cx, Y1 + 12.0, 7.0, label, Anchor::Middle));
    }
    Chart {
        width: W,
        height: H,
        shapes: s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case(0.42, 0.2, 0.6 ; "sub millisecond")]
    #[test_case(3.7, 1.0, 4.0 ; "a few ms")]
    #[test_case(180.0, 50.0, 200.0 ; "hundreds")]
    #[test_case(0.0, 0.25, 1.0 ; "nothing")]
    fn round_ticks(max: f64, step: f64, top: f64) {
        let (s, t) = ticks(max);
        assert!((s - step).abs() < 1e-9 && (t - top).abs() < 1e-9, "{s} {t}");
    }

    #[test]
    fn the_curve_is_sorted_capped_and_ends_at_all_replies() {
        let rtts: Vec<u64> = (0..1000).rev().map(|i| 100 + i).collect();
        let c = cdf(&rtts);
        assert_eq!(c.len(), MAX_POINTS);
        assert_eq!(c[0].0, 0.1);
        assert_eq!(c.last(), Some(&(1.099, 100.0)));
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
        assert_eq!(cdf(&[500]), vec![(0.5, 100.0)]);
        assert!(cdf(&[]).is_empty());
    }

    #[test]
    fn the_chart_shows_both_phases_and_their_loss() {
        let before = Phase {
            rtts_us: vec![900, 1200, 4000],
            loss_pct: Some(50.0),
        };
        let after = Phase {
            rtts_us: vec![400, 450, 500, 520],
            loss_pct: Some(0.0),
        };
        let c = device_chart("dinkes-rtr", &before, &after, Lang::Id);
        let texts: Vec<&str> = c
            .shapes
            .iter()
            .filter_map(|s| match s {
                Shape::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        for want in [
            "50,0 %",
            "0,0 %",
            "Sebelum (3 balasan)",
            "Sesudah (4 balasan)",
        ] {
            assert!(texts.contains(&want), "{want} not in {texts:?}");
        }
        let curves: Vec<bool> = c
            .shapes
            .iter()
            .filter_map(|s| match s {
                Shape::Line { points, dashed, .. } if points.len() > 3 => Some(*dashed),
                _ => None,
            })
            .collect();
        assert_eq!(
            curves,
            [true, false],
            "the before curve dashed, the after solid"
        );
        // Everything stays inside the box.
        for s in &c.shapes {
            let pts: Vec<(f32, f32)> = match s {
                Shape::Line { points, .. } => points.clone(),
                Shape::Rect { x, y, w, h, .. } => vec![(*x, *y), (x + w, y + h)],
                Shape::Text { x, y, .. } => vec![(*x, *y)],
            };
            for (x, y) in pts {
                assert!(
                    (0.0..=c.width).contains(&x) && (0.0..=c.height).contains(&y),
                    "{s:?}"
                );
            }
        }
    }
}
