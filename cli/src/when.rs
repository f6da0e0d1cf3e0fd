//! Times as people type them on the command line, read in the province's
//! time zone (`time_zone` in siaga.toml): `2026-12-07 22:00`, `22:00`
//! (today), `2026-12-07` (its midnight), `today`, `yesterday`, `now` (also
//! `hari ini`, `kemarin`, `sekarang`), RFC 3339 with an offset
//! (`2026-12-07T22:00:00+08:00`, read as written), and for `--since` a
//! length of time back from now (`30m`, `6h`, `2d`).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// What the error says is accepted.
pub const FORMS: &str =
    "e.g. 2026-12-07 22:00, 22:00, 2026-12-07, yesterday or 2026-12-07T22:00:00+07:00";

/// The local time `t` of zone `tz` as an instant; a time that does not
/// exist there (none in the Indonesian zones) is an error.
fn local(tz: Tz, t: NaiveDateTime, text: &str) -> Result<DateTime<Utc>, String> {
    tz.from_local_datetime(&t)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{text:?} does not exist in {tz}"))
}

/// A moment: see the module's forms.
pub fn point(text: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    let today = now.with_timezone(&tz).date_naive();
    let midnight = |d: NaiveDate| local(tz, d.and_time(NaiveTime::MIN), text);
    match t.to_lowercase().as_str() {
        "now" | "sekarang" => return Ok(now),
        "today" | "hari ini" => return midnight(today),
        "yesterday" | "kemarin" => return midnight(today - Duration::days(1)),
        _ => {}
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(t, f) {
            return local(tz, at, text);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return midnight(d);
    }
    for f in ["%H:%M", "%H:%M:%S"] {
        if let Ok(at) = NaiveTime::parse_from_str(t, f) {
            return local(tz, today.and_time(at), text);
        }
    }
    Err(format!("{text:?} is not a time: {FORMS}"))
}

/// The start of a `--since`: a length of time back from `now`, or a moment.
pub fn since(text: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = humantime::parse_duration(text.trim()) {
        let back = Duration::from_std(d).map_err(|_| format!("{text:?} is too long ago"))?;
        return Ok(now - back);
    }
    point(text, tz, now).map_err(|_| {
        format!("{text:?} is neither a length of time back from now (e.g. 30m, 6h, 2d) nor a time ({FORMS})")
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    // "now" is 2026-12-07 10:30 WITA (02:30 UTC).
    const NOW: &str = "2026-12-07T02:30:00Z";

    #[test_case("2026-12-07 22:00", "2026-12-07T14:00:00Z" ; "local date and time")]
    #[test_case("2026-12-07T22:00", "2026-12-07T14:00:00Z" ; "local with a T")]
    #[test_case("2026-12-07 22:00:30", "2026-12-07T14:00:30Z" ; "with seconds")]
    #[test_case("22:00", "2026-12-07T14:00:00Z" ; "a time is today")]
    #[test_case("2026-12-08", "2026-12-07T16:00:00Z" ; "a date is its midnight")]
    #[test_case("today", "2026-12-06T16:00:00Z" ; "today")]
    #[test_case("yesterday", "2026-12-05T16:00:00Z" ; "yesterday")]
    #[test_case("kemarin", "2026-12-05T16:00:00Z" ; "kemarin")]
    #[test_case("now", NOW ; "now")]
    #[test_case("2026-12-07T22:00:00+07:00", "2026-12-07T15:00:00Z" ; "rfc 3339 keeps its offset")]
    fn local_forms_are_read_in_the_provinces_zone(text: &str, want: &str) {
        let tz = chrono_tz::Asia::Makassar;
        assert_eq!(point(text, tz, utc(NOW)).unwrap(), utc(want));
    }

    #[test]
    fn since_takes_a_length_back_or_a_moment() {
        let tz = chrono_tz::Asia::Jakarta;
        assert_eq!(
            since("2h", tz, utc(NOW)).unwrap(),
            utc("2026-12-07T00:30:00Z")
        );
        assert_eq!(
            since("yesterday", tz, utc(NOW)).unwrap(),
            utc("2026-12-05T17:00:00Z")
        );
        let e = since("lately", tz, utc(NOW)).unwrap_err();
        assert!(
            e.contains("e.g. 30m, 6h, 2d") && e.contains("yesterday"),
            "{e}"
        );
        let e = point("07-12-2026 22:00", tz, utc(NOW)).unwrap_err();
        assert!(e.contains("e.g. 2026-12-07 22:00"), "{e}");
    }
}
