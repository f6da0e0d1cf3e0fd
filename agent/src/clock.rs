//! The agent's wall clock. It only labels what the agent measured (a
//! sample's `ts_us`, a heartbeat's time): samples are ordered and
//! acknowledged by their sequence numbers, and every interval, timeout and
//! backoff runs on the monotonic clock. A step of the host's clock (NTP)
//! therefore moves the labels and nothing else; the collector keeps its own
//! receive time beside them.
//!
//! For tests only: when `SIAGA_TEST_CLOCK_OFFSET_FILE` names a file, the
//! signed number of seconds in it is added to the wall clock, and the file
//! is read again every 100 ms, so a test can step the agent's clock while
//! it runs without touching the host's. The agent warns at start when this
//! is in effect.

use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Names the offset file (tests only).
pub const OFFSET_FILE_ENV: &str = "SIAGA_TEST_CLOCK_OFFSET_FILE";

static OFFSET_US: AtomicI64 = AtomicI64::new(0);
static WATCH: Once = Once::new();

/// Microseconds since the Unix epoch by the agent's wall clock.
pub fn now_us() -> i64 {
    WATCH.call_once(watch_offset_file);
    system_now_us().saturating_add(OFFSET_US.load(Ordering::Relaxed))
}

/// The host's wall clock, µs since the epoch.
fn system_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The offset in a file's text: signed seconds, fractions allowed.
fn parse_offset_us(text: &str) -> Option<i64> {
    let secs: f64 = text.trim().parse().ok()?;
    (secs.is_finite() && secs.abs() < 1e10).then_some((secs * 1e6) as i64)
}

fn read_offset(path: &PathBuf) {
    if let Some(us) = std::fs::read_to_string(path)
        .ok()
        .as_deref()
        .and_then(parse_offset_us)
    {
        OFFSET_US.store(us, Ordering::Relaxed);
    }
}

fn watch_offset_file() {
    let Some(path) = std::env::var_os(OFFSET_FILE_ENV).map(PathBuf::from) else {
        return;
    };
    tracing::warn!(
        file = %path.display(),
        "{OFFSET_FILE_ENV} is set: the wall clock is shifted by the offset in that file (for tests only)"
    );
    read_offset(&path);
    let spawned = std::thread::Builder::new()
        .name("test-clock".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                read_offset(&path);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot watch the test clock offset file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("0", Some(0) ; "zero")]
    #[test_case("-3600\n", Some(-3_600_000_000) ; "an hour back")]
    #[test_case(" 86400 ", Some(86_400_000_000) ; "a day forward")]
    #[test_case("1.5", Some(1_500_000) ; "fraction")]
    #[test_case("", None ; "empty")]
    #[test_case("soon", None ; "words")]
    #[test_case("1e300", None ; "absurd")]
    fn offsets(text: &str, want: Option<i64>) {
        assert_eq!(parse_offset_us(text), want);
    }
}
