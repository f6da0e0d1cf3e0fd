//! Charts drawn on the server as SVG, for pages that need no script: a
//! period is cut into at most [`BUCKETS`] buckets, readings are folded into
//! them as they are read (min, max, sum and count each), and each series is
//! drawn as its min–max band and its average line. A week of one-second
//! readings is thus a few kilobytes, like an hour of them.
//!
//! I/O-free: the caller folds the readings and gives the zone for the
//! axis labels.

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset};
use maud::{Markup, PreEscaped, html};

/// Buckets of a chart at most, whatever the period.
pub const BUCKETS: usize = 200;

/// Drawing size (the SVG scales to its box).
const WIDTH: i64 = 600;
const HEIGHT: i64 = 170;
/// The plot area inside it.
const LEFT: i64 = 46;
const RIGHT: i64 = 592;
const TOP: i64 = 8;
const BOTTOM: i64 = 148;

/// The readings of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    /// Lowest.
    pub min: f64,
    /// Highest.
    pub max: f64,
    sum: f64,
    /// How many.
    pub n: u32,
}

impl Default for Agg {
    fn default() -> Self {
        Agg {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
            n: 0,
        }
    }
}

impl Agg {
    /// Their average, when there is a reading.
    pub fn avg(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / f64::from(self.n))
    }
}

/// A period cut into buckets of equal length (to a grain: each bucket
/// holds whole grains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Start, µs since the epoch (inclusive).
    pub from_us: i64,
    /// End, µs since the epoch (exclusive).
    pub until_us: i64,
    /// Buckets.
    pub n: usize,
    /// Every reading of one grain (µs from the start) falls into the same
    /// bucket: 1 µs, or a minute for a frame that per-minute rollups fill.
    pub grain_us: i64,
}

impl Frame {
    /// `[from_us, until_us)` in at most [`BUCKETS`] buckets (fewer when
    /// the period is shorter than that many µs).
    pub fn new(from_us: i64, until_us: i64) -> Frame {
        Frame::grained(from_us, until_us, 1)
    }

    /// `[from_us, until_us)` cut at whole `grain_us` from its start: the
    /// end moves out to a whole grain, and each bucket holds whole grains
    /// (of two lengths at most one grain apart when they do not divide
    /// evenly). Readings folded per grain thus give the same buckets as the
    /// readings themselves.
    pub fn grained(from_us: i64, until_us: i64, grain_us: i64) -> Frame {
        let grain = grain_us.max(1);
        let span = until_us.saturating_sub(from_us).max(1);
        let grains = span / grain + i64::from(span % grain != 0);
        let n = usize::try_from(grains).map_or(BUCKETS, |g| g.min(BUCKETS));
        Frame {
            from_us,
            until_us: from_us.saturating_add(grains.saturating_mul(grain)),
            n,
            grain_us: grain,
        }
    }

    /// The bucket of a reading at `ts_us`; `None` outside the period.
    pub fn bucket(&self, ts_us: i64) -> Option<usize> {
        if ts_us < self.from_us || ts_us >= self.until_us {
            return None;
        }
        let grains = i128::from((self.until_us - self.from_us) / self.grain_us);
        let grain = i128::from((ts_us - self.from_us) / self.grain_us);
        let at = grain * self.n as i128 / grains;
        usize::try_from(at).ok().filter(|b| *b < self.n)
    }

    fn span_us(&self) -> i64 {
        self.until_us - self.from_us
    }
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// What it is, as the legend says.
    pub name: String,
    /// Its colour (CSS).
    pub color: &'static str,
    /// Its buckets, one per bucket of the frame.
    pub buckets: Vec<Agg>,
}

impl Series {
    /// An empty series over `frame`.
    pub fn new(name: impl Into<String>, color: &'static str, frame: &Frame) -> Series {
        Series {
            name: name.into(),
            color,
            buckets: vec![Agg::default(); frame.n],
        }
    }

    /// Adds reading `v` at `ts_us` (outside the frame, or not a number:
    /// left out).
    pub fn add(&mut self, frame: &Frame, ts_us: i64, v: f64) {
        self.add_span(frame, ts_us, v, v, v);
    }

    /// Adds a reading whose own spread is `lo..=hi` around `v` (a probe's
    /// minimum, average and maximum round trip).
    pub fn add_span(&mut self, frame: &Frame, ts_us: i64, lo: f64, v: f64, hi: f64) {
        if !(lo.is_finite() && v.is_finite() && hi.is_finite()) {
            return;
        }
        let Some(b) = frame.bucket(ts_us) else { return };
        if let Some(a) = self.buckets.get_mut(b) {
            a.min = a.min.min(lo.min(v));
            a.max = a.max.max(hi.max(v));
            a.sum += v;
            a.n = a.n.saturating_add(1);
        }
    }

    /// Adds the readings `f` folded within the grain at `ts_us`.
    pub fn add_fold(&mut self, frame: &Frame, ts_us: i64, f: &crate::rollup::Fold) {
        if f.n == 0 {
            return;
        }
        let Some(b) = frame.bucket(ts_us) else { return };
        if let Some(a) = self.buckets.get_mut(b) {
            a.min = a.min.min(f.min);
            a.max = a.max.max(f.max);
            a.sum += f.sum;
            a.n = a.n.saturating_add(f.n);
        }
    }

    /// Buckets with a reading.
    pub fn filled(&self) -> usize {
        self.buckets.iter().filter(|a| a.n > 0).count()
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (the top of the y axis).
pub fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|c| *c >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// A number for an axis: no needless decimals.
fn label(v: f64) -> String {
    if v >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// How a chart's time axis writes a moment.
fn time_format(frame: &Frame) -> &'static str {
    if frame.span_us() > 36 * 3_600_000_000 {
        "%d/%m %H:%M"
    } else {
        "%H:%M"
    }
}

/// The chart `title` of `series` over `frame`, values in `unit`, the time
/// axis in `zone` (labelled `abbr`); "Tidak ada data" when no series has
/// a reading in the period.
pub fn chart(
    title: &str,
    unit: &str,
    frame: &Frame,
    series: &[Series],
    zone: FixedOffset,
    abbr: &str,
) -> Markup {
    let filled = series.iter().map(Series::filled).max().unwrap_or(0);
    html! {
        figure.grafik {
            figcaption {
                strong { (title) } " (" (unit) ")"
                @for s in series {
                    " " span.seri style={ "color:" (s.color) } { "■ " } (s.name)
                }
                " " small { "· waktu " (abbr) }
            }
            @if filled == 0 {
                p.kosong { "Tidak ada data" }
            } @else {
                (PreEscaped(svg(title, frame, series, zone)))
            }
        }
    }
}

fn x_of(frame: &Frame, bucket: usize) -> i64 {
    let w = (RIGHT - LEFT) as f64;
    LEFT + ((bucket as f64 + 0.5) * w / frame.n as f64).round() as i64
}

fn y_of(v: f64, top: f64) -> i64 {
    let h = (BOTTOM - TOP) as f64;
    BOTTOM - ((v / top).clamp(0.0, 1.0) * h).round() as i64
}

/// The SVG itself; `data-titik` says how many buckets hold readings.
fn svg(title: &str, frame: &Frame, series: &[Series], zone: FixedOffset) -> String {
    let top = nice_ceiling(
        series
            .iter()
            .flat_map(|s| s.buckets.iter())
            .filter(|a| a.n > 0)
            .map(|a| a.max)
            .fold(0.0, f64::max),
    );
    let filled = series.iter().map(Series::filled).max().unwrap_or(0);
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" data-titik=\"{filled}\" \
         data-ember=\"{}\"><g stroke=\"#d5d9de\" stroke-width=\"1\">",
        maud::html! { (title) }.into_string(),
        frame.n
    );
    // The y grid and its labels: 0, half and the top.
    let mut labels = String::new();
    for k in 0..=2 {
        let v = top * f64::from(k) / 2.0;
        let y = y_of(v, top);
        let _ = write!(out, "<path d=\"M{LEFT} {y}H{RIGHT}\"/>");
        let _ = write!(
            labels,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            LEFT - 4,
            y + 4,
            label(v)
        );
    }
    out.push_str("</g><g font-size=\"11\" fill=\"#566\">");
    out.push_str(&labels);
    // The time axis: five moments, local time.
    let fmt = time_format(frame);
    for k in 0..=4i64 {
        let t = frame.from_us + frame.span_us() * k / 4;
        let x = LEFT + (RIGHT - LEFT) * k / 4;
        let anchor = match k {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let text = DateTime::from_timestamp_micros(t)
            .map(|t| t.with_timezone(&zone).format(fmt).to_string())
            .unwrap_or_default();
        let _ = write!(
            out,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"{anchor}\">{text}</text>",
            BOTTOM + 16
        );
    }
    out.push_str("</g>");
    for s in series {
        band(&mut out, frame, s, top);
    }
    for s in series {
        line(&mut out, frame, s, top);
    }
    out.push_str("</svg>");
    out
}

/// Runs of consecutive buckets with readings.
fn runs(s: &Series) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < s.buckets.len() && s.buckets[i].n == 0 {
            i += 1;
        }
        let start = i;
        while i < s.buckets.len() && s.buckets[i].n > 0 {
            i += 1;
        }
        (start < i).then_some(start..i)
    })
}

/// The min–max band, left out where it would be a line anyway.
fn band(out: &mut String, frame: &Frame, s: &Series, top: f64) {
    let mut d = String::new();
    for run in runs(s) {
        let spread = run
            .clone()
            .any(|b| y_of(s.buckets[b].min, top) != y_of(s.buckets[b].max, top));
        if !spread {
            continue;
        }
        for (k, b) in run.clone().enumerate() {
            let c = if k == 0 { 'M' } else { 'L' };
            let _ = write!(d, "{c}{} {}", x_of(frame, b), y_of(s.buckets[b].max, top));
        }
        for b in run.rev() {
            let _ = write!(d, "L{} {}", x_of(frame, b), y_of(s.buckets[b].min, top));
        }
        d.push('Z');
    }
    if !d.is_empty() {
        let _ = write!(
            out,
            "<path class=\"pita\" fill=\"{}\" fill-opacity=\".2\" d=\"{d}\"/>",
            s.color
        );
    }
}

/// The average line; a single bucket is drawn as a dot.
fn line(out: &mut String, frame: &Frame, s: &Series, top: f64) {
    let mut d = String::new();
    for run in runs(s) {
        for (k, b) in run.clone().enumerate() {
            let c = if k == 0 { 'M' } else { 'L' };
            let v = s.buckets[b].avg().unwrap_or(0.0);
            let _ = write!(d, "{c}{} {}", x_of(frame, b), y_of(v, top));
        }
        if run.len() == 1 {
            d.push_str("h1");
        }
    }
    let _ = write!(
        out,
        "<path class=\"garis\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" \
         stroke-linejoin=\"round\" stroke-linecap=\"round\" d=\"{d}\"/>",
        s.color
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case(0.0, 1.0; "nothing")]
    #[test_case(0.3, 0.5; "below one")]
    #[test_case(1.0, 1.0; "exactly one")]
    #[test_case(1.2, 2.0; "just above")]
    #[test_case(37.0, 50.0; "tens")]
    #[test_case(51.0, 100.0; "over fifty")]
    #[test_case(100.0, 100.0; "a hundred")]
    fn the_axis_top_is_a_round_number(v: f64, top: f64) {
        assert_eq!(nice_ceiling(v), top);
    }

    #[test]
    fn readings_fall_into_their_bucket_and_outside_ones_are_left_out() {
        let f = Frame::new(1_000, 1_000 + 200_000);
        assert_eq!(f.n, BUCKETS);
        assert_eq!(f.bucket(999), None);
        assert_eq!(f.bucket(1_000), Some(0));
        assert_eq!(f.bucket(1_999), Some(0));
        assert_eq!(f.bucket(2_000), Some(1));
        assert_eq!(f.bucket(200_999), Some(199));
        assert_eq!(f.bucket(201_000), None);
        let mut s = Series::new("rtt", "#000", &f);
        s.add(&f, 1_000, 3.0);
        s.add_span(&f, 1_500, 1.0, 5.0, 9.0);
        s.add(&f, 5_000_000, 1.0);
        s.add(&f, 1_200, f64::NAN);
        assert_eq!(s.filled(), 1);
        let a = s.buckets[0];
        assert_eq!((a.min, a.max, a.n, a.avg()), (1.0, 9.0, 2, Some(4.0)));
    }

    #[test]
    fn a_grained_frame_keeps_each_grain_in_one_bucket() {
        // A week of minutes: 10,080 in 200 buckets of 50 or 51 minutes.
        let min = 60_000_000;
        let f = Frame::grained(7 * min + 5, 7 * min + 5 + 10_080 * min - 3, min);
        assert_eq!((f.n, f.until_us - f.from_us), (BUCKETS, 10_080 * min));
        let mut sizes = vec![0; f.n];
        for m in 0..10_080 {
            let start = f.from_us + m * min;
            let b = f.bucket(start).unwrap();
            assert_eq!(f.bucket(start + min - 1), Some(b), "minute {m}");
            sizes[b] += 1;
        }
        assert!(sizes.iter().all(|s| *s == 50 || *s == 51), "{sizes:?}");
        assert_eq!(f.bucket(f.until_us), None);
        assert_eq!(Frame::grained(0, 90, 60).until_us, 120);
    }

    #[test]
    fn a_period_shorter_than_the_buckets_has_fewer() {
        assert_eq!(Frame::new(0, 50).n, 50);
        assert_eq!(Frame::new(10, 10).n, 1);
    }

    #[test]
    fn an_empty_chart_says_so_and_a_full_one_has_its_band_and_line() {
        let f = Frame::new(0, 3_600_000_000);
        let zone = FixedOffset::east_opt(7 * 3600).unwrap();
        let empty = Series::new("RTT", "#1f5fae", &f);
        let html = chart("RTT", "ms", &f, &[empty], zone, "WIB").into_string();
        assert!(html.contains("Tidak ada data"), "{html}");
        assert!(!html.contains("<svg"));
        let mut s = Series::new("RTT", "#1f5fae", &f);
        for i in 0..3600 {
            let t = i64::from(i) * 1_000_000;
            s.add_span(&f, t, 1.0, 2.0 + f64::from(i % 7), 20.0);
        }
        let html = chart("RTT <x>", "ms", &f, &[s], zone, "WIB").into_string();
        assert!(html.contains("data-titik=\"200\""), "{html}");
        assert!(html.contains("class=\"pita\"") && html.contains("class=\"garis\""));
        assert!(html.contains("RTT &lt;x&gt;") && !html.contains("<x>"));
        // Local time: the epoch is 07:00 WIB; the axis tops at 20.
        assert!(
            html.contains(">07:00<") && html.contains(">08:00<"),
            "{html}"
        );
        assert!(html.contains(">20<"), "{html}");
        assert!(html.len() < 8_000, "{} bytes", html.len());
    }

    #[test]
    fn a_gap_breaks_the_line_and_a_flat_series_has_no_band() {
        let f = Frame::new(0, 200);
        let mut s = Series::new("hilang", "#c62828", &f);
        for t in (0..50).chain(100..200) {
            s.add(&f, t, 0.0);
        }
        let mut out = String::new();
        band(&mut out, &f, &s, 1.0);
        assert!(out.is_empty(), "{out}");
        line(&mut out, &f, &s, 1.0);
        assert_eq!(out.matches('M').count(), 2, "{out}");
    }
}
