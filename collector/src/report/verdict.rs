//! The verdict on one figure measured before and after the work.
//!
//! | figure | membaik (improved) | memburuk (worse) | otherwise |
//! | --- | --- | --- | --- |
//! | packet loss | at least 1 percentage point lower | at least 1 point higher | tetap |
//! | RTT min/avg/median/p95/max, jitter | lower by at least 10 % *and* 0.2 ms | higher by the same | tetap |
//! | oper status | not up before, up after | up before, not up after | tetap |
//! | speed | more than 1 % faster | more than 1 % slower | tetap |
//! | utilisation in/out | at least 10 points lower | at least 10 points higher | tetap |
//! | errors/s, discards/s | lower by at least 0.1/s and half the value before | higher by at least 0.1/s and half the value before | tetap |
//!
//! A figure missing on either side (no reply at all, the device did not
//! answer SNMP, no measurement of that phase) cannot be compared. The RTT
//! floor of 0.2 ms keeps the jitter of a fast LAN from reading as a change;
//! the loss rule's one point is one lost echo in a burst of 100.
//!
//! A device's or link's summary, and the report's, combines its rows: improved
//! when something improved and nothing got worse, worse the other way round,
//! mixed ("campuran") when both happened.

use serde::{Deserialize, Serialize};

use super::words::tr;
use crate::sop::Lang;

/// Loss: the change in percentage points that counts.
pub const LOSS_POINTS: f64 = 1.0;
/// Round-trip times and jitter: the relative change that counts…
pub const TIME_RELATIVE: f64 = 0.10;
/// …and the absolute change it must also reach, in microseconds.
pub const TIME_FLOOR_US: f64 = 200.0;
/// Speed: the relative change that counts.
pub const SPEED_RELATIVE: f64 = 0.01;
/// Utilisation: the change in percentage points that counts.
pub const UTIL_POINTS: f64 = 10.0;
/// Errors and discards per second: the absolute change that counts…
pub const RATE_FLOOR: f64 = 0.1;
/// …and the part of the value before it must also reach.
pub const RATE_RELATIVE: f64 = 0.5;

/// Tolerance for figures that sit exactly on a threshold.
const EPS: f64 = 1e-9;

/// The verdict on a row (or a summary of rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Better after the work.
    Better,
    /// No change that counts.
    Same,
    /// Worse after the work.
    Worse,
    /// Some rows better, some worse (summaries only).
    Mixed,
    /// A figure is missing on one side.
    NotComparable,
}

impl Verdict {
    /// The word in the report: membaik / tetap / memburuk.
    pub fn word(self, lang: Lang) -> &'static str {
        match self {
            Verdict::Better => tr(lang, "membaik", "improved"),
            Verdict::Same => tr(lang, "tetap", "unchanged"),
            Verdict::Worse => tr(lang, "memburuk", "worse"),
            Verdict::Mixed => tr(lang, "campuran", "mixed"),
            Verdict::NotComparable => tr(lang, "tidak dapat dibandingkan", "not comparable"),
        }
    }
}

/// Lower is better: a fall of at least `threshold` improves.
fn lower_is_better(before: Option<f64>, after: Option<f64>, threshold: f64) -> Verdict {
    match (before, after) {
        (Some(b), Some(a)) if b.is_finite() && a.is_finite() => {
            let d = a - b;
            if d <= -threshold + EPS && d < 0.0 {
                Verdict::Better
            } else if d >= threshold - EPS && d > 0.0 {
                Verdict::Worse
            } else {
                Verdict::Same
            }
        }
        _ => Verdict::NotComparable,
    }
}

/// Packet loss in percent.
pub fn loss(before: Option<f64>, after: Option<f64>) -> Verdict {
    lower_is_better(before, after, LOSS_POINTS)
}

/// A round-trip time or the jitter, in microseconds.
pub fn time(before: Option<u64>, after: Option<u64>) -> Verdict {
    let (Some(b), Some(a)) = (before, after) else {
        return Verdict::NotComparable;
    };
    let (b, a) = (b as f64, a as f64);
    let threshold = (b * TIME_RELATIVE).max(TIME_FLOOR_US);
    lower_is_better(Some(b), Some(a), threshold)
}

/// IF-MIB oper status names (`up`, `down`, …).
pub fn oper_status(before: Option<&str>, after: Option<&str>) -> Verdict {
    match (before, after) {
        (Some(b), Some(a)) if !b.is_empty() && !a.is_empty() => match (b == "up", a == "up") {
            (false, true) => Verdict::Better,
            (true, false) => Verdict::Worse,
            _ => Verdict::Same,
        },
        _ => Verdict::NotComparable,
    }
}

/// Link speed (any unit, the same on both sides).
pub fn speed(before: Option<f64>, after: Option<f64>) -> Verdict {
    match (before, after) {
        (Some(b), Some(a)) if b > 0.0 && a > 0.0 => {
            // Higher is better: compare the negated values.
            lower_is_better(Some(-b), Some(-a), b * SPEED_RELATIVE)
        }
        _ => Verdict::NotComparable,
    }
}

/// Utilisation in percent of the link speed.
pub fn utilisation(before: Option<f64>, after: Option<f64>) -> Verdict {
    lower_is_better(before, after, UTIL_POINTS)
}

/// Errors or discards per second.
pub fn rate(before: Option<f64>, after: Option<f64>) -> Verdict {
    let threshold = before.map_or(RATE_FLOOR, |b| (b * RATE_RELATIVE).max(RATE_FLOOR));
    lower_is_better(before, after, threshold)
}

/// The summary of several verdicts.
pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let (mut better, mut worse, mut compared) = (false, false, false);
    for v in verdicts {
        match v {
            Verdict::Better => better = true,
            Verdict::Worse => worse = true,
            Verdict::Mixed => {
                better = true;
                worse = true;
            }
            Verdict::Same => {}
            Verdict::NotComparable => continue,
        }
        compared = true;
    }
    match (better, worse, compared) {
        (true, true, _) => Verdict::Mixed,
        (true, false, _) => Verdict::Better,
        (false, true, _) => Verdict::Worse,
        (false, false, true) => Verdict::Same,
        (false, false, false) => Verdict::NotComparable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;
    use test_case::test_case;

    #[test_case(Some(50.0), Some(0.0), Better ; "fifty to nothing")]
    #[test_case(Some(3.0), Some(2.0), Better ; "exactly one point")]
    #[test_case(Some(3.0), Some(2.5), Same ; "half a point")]
    #[test_case(Some(0.0), Some(0.0), Same ; "none either side")]
    #[test_case(Some(0.0), Some(1.0), Worse ; "one lost echo in a hundred")]
    #[test_case(Some(0.0), Some(100.0), Worse ; "gone")]
    #[test_case(None, Some(0.0), NotComparable ; "no before")]
    #[test_case(Some(f64::NAN), Some(0.0), NotComparable ; "garbage")]
    fn loss_rule(b: Option<f64>, a: Option<f64>, want: Verdict) {
        assert_eq!(loss(b, a), want);
    }

    #[test_case(Some(5_000), Some(2_000), Better ; "clearly faster")]
    #[test_case(Some(5_000), Some(4_500), Better ; "ten percent and over the floor")]
    #[test_case(Some(5_000), Some(4_600), Same ; "eight percent")]
    #[test_case(Some(400), Some(250), Same ; "relative but under the floor")]
    #[test_case(Some(400), Some(200), Better ; "at the floor")]
    #[test_case(Some(1_000), Some(1_300), Worse ; "slower")]
    #[test_case(Some(60), Some(120), Same ; "LAN jitter")]
    #[test_case(None, Some(120), NotComparable ; "no reply before")]
    fn time_rule(b: Option<u64>, a: Option<u64>, want: Verdict) {
        assert_eq!(time(b, a), want);
    }

    #[test_case(Some("down"), Some("up"), Better ; "down to up")]
    #[test_case(Some("lowerLayerDown"), Some("up"), Better ; "lower layer down to up")]
    #[test_case(Some("up"), Some("down"), Worse ; "up to down")]
    #[test_case(Some("up"), Some("up"), Same ; "up both")]
    #[test_case(Some("down"), Some("lowerLayerDown"), Same ; "down both")]
    #[test_case(Some(""), Some("up"), NotComparable ; "not polled")]
    #[test_case(None, Some("up"), NotComparable ; "missing")]
    fn oper_rule(b: Option<&str>, a: Option<&str>, want: Verdict) {
        assert_eq!(oper_status(b, a), want);
    }

    #[test_case(Some(100.0), Some(1000.0), Better ; "renegotiated up")]
    #[test_case(Some(1000.0), Some(100.0), Worse ; "renegotiated down")]
    #[test_case(Some(1000.0), Some(1000.0), Same ; "same")]
    #[test_case(Some(0.0), Some(1000.0), NotComparable ; "unknown before")]
    fn speed_rule(b: Option<f64>, a: Option<f64>, want: Verdict) {
        assert_eq!(speed(b, a), want);
    }

    #[test_case(Some(95.0), Some(40.0), Better ; "congestion gone")]
    #[test_case(Some(40.0), Some(45.0), Same ; "five points")]
    #[test_case(Some(40.0), Some(50.0), Worse ; "ten points")]
    fn utilisation_rule(b: Option<f64>, a: Option<f64>, want: Verdict) {
        assert_eq!(utilisation(b, a), want);
    }

    #[test_case(Some(12.0), Some(0.0), Better ; "errors gone")]
    #[test_case(Some(12.0), Some(7.0), Same ; "under half")]
    #[test_case(Some(0.0), Some(0.05), Same ; "under the floor")]
    #[test_case(Some(0.0), Some(0.5), Worse ; "new errors")]
    #[test_case(None, Some(0.5), NotComparable ; "missing")]
    fn rate_rule(b: Option<f64>, a: Option<f64>, want: Verdict) {
        assert_eq!(rate(b, a), want);
    }

    #[test_case(&[Better, Same, NotComparable], Better ; "better")]
    #[test_case(&[Worse, Same], Worse ; "worse")]
    #[test_case(&[Better, Worse], Mixed ; "mixed")]
    #[test_case(&[Same, NotComparable], Same ; "same")]
    #[test_case(&[NotComparable], NotComparable ; "nothing to compare")]
    #[test_case(&[], NotComparable ; "empty")]
    fn combining(v: &[Verdict], want: Verdict) {
        assert_eq!(combine(v.iter().copied()), want);
    }

    #[test]
    fn words() {
        assert_eq!(Better.word(Lang::Id), "membaik");
        assert_eq!(Same.word(Lang::Id), "tetap");
        assert_eq!(Worse.word(Lang::Id), "memburuk");
        assert_eq!(Better.word(Lang::En), "improved");
        assert_eq!(Worse.word(Lang::En), "worse");
    }
}
