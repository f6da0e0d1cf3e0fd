//! Bad command lines of `siaga`: exit 64 (EX_USAGE) with a sentence naming
//! the flag and an example of what it takes (the rules shared with
//! `siaga-collector`, in [`siaga_proto::usage`]), and the parsers of the
//! arguments people type (dates, times, ages).

use chrono::NaiveDate;

pub use siaga_proto::usage::{EX_USAGE, parse};

/// A calendar date, YYYY-MM-DD.
pub fn date_arg(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date written YYYY-MM-DD, e.g. 2026-12-04"))
}

/// Where a `--since` starts: a length of time back from now (30m, 6h, 2d)
/// or a moment (`yesterday`, `2026-12-07 08:00`, …; see [`crate::when`]).
/// Checked here for its form; read in siaga.toml's time zone when used.
pub fn since_arg(s: &str) -> Result<String, String> {
    crate::when::since(s, chrono_tz::Asia::Jakarta, chrono::Utc::now())
        .map(|_| s.trim().to_string())
}

/// A moment (`2026-12-07 22:00`, `22:00`, `yesterday`, RFC 3339; see
/// [`crate::when`]): checked here for its form, read in siaga.toml's time
/// zone when used.
pub fn time_arg(s: &str) -> Result<String, String> {
    crate::when::point(s, chrono_tz::Asia::Jakarta, chrono::Utc::now())
        .map(|_| s.trim().to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations_say_what_they_take() {
        assert!(date_arg("2026-12-04").is_ok());
        let e = date_arg("04-12-2026").unwrap_err();
        assert!(e.contains("YYYY-MM-DD, e.g. 2026-12-04"), "{e}");
        assert!(since_arg("6h").is_ok());
        let e = since_arg("lately").unwrap_err();
        assert!(e.contains("e.g. 30m"), "{e}");
    }
}
