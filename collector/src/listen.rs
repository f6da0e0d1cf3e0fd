//! Listeners that a flood of connections cannot turn against the collector.
//!
//! A failed `accept` (most often `EMFILE`: out of file descriptors) leaves
//! the connection in the kernel's queue, so retrying at once fails again at
//! once: a loop that does so spins a core and writes a warning per try. Both
//! of the collector's listeners wait after a failure instead, with a delay
//! that grows to [`AcceptBackoff::CAP`] and resets on the next success, and
//! log through a [`RateLimitedLog`].

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;

/// Delay after a failed `accept`: doubling from [`AcceptBackoff::BASE`] to
/// [`AcceptBackoff::CAP`], back to the start after a success.
#[derive(Debug, Clone, Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    /// First delay.
    pub const BASE: Duration = Duration::from_millis(10);
    /// Longest delay.
    pub const CAP: Duration = Duration::from_secs(1);

    /// The delay before the next `accept`, after one more failure.
    pub fn failed(&mut self) -> Duration {
        let d = Self::BASE.saturating_mul(1u32 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        d.min(Self::CAP)
    }

    /// An `accept` succeeded.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Lets one log line through per period and counts the ones held back.
#[derive(Debug)]
pub struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        RateLimitedLog {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written
    /// at `now`, else `None` (and the line is counted as held back).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// At most one "accept failed" line per listener in this period.
pub const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// State of one listener's accept loop: its backoff, its log and its counter.
#[derive(Debug)]
pub struct AcceptErrors {
    listener: &'static str,
    backoff: AcceptBackoff,
    log: RateLimitedLog,
    counter: Counter,
}

impl AcceptErrors {
    /// For the listener named `listener` (in logs), counting into `counter`.
    pub fn new(listener: &'static str, counter: Counter) -> Self {
        AcceptErrors {
            listener,
            backoff: AcceptBackoff::default(),
            log: RateLimitedLog::new(ACCEPT_LOG_EVERY),
            counter,
        }
    }

    /// A connection was accepted.
    pub fn accepted(&mut self) {
        self.backoff.reset();
    }

    /// Counts and (rate-limited) logs `error`; returns how long to wait
    /// before the next `accept`.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.counter.inc();
        let delay = self.backoff.failed();
        if let Some(suppressed) = self.log.allow(Instant::now()) {
            tracing::warn!(
                listener = self.listener,
                %error,
                retry_in_ms = delay.as_millis() as u64,
                suppressed,
                "accept failed"
            );
        }
        delay
    }
}

/// The gRPC listener's connections, pausing after a failed `accept` (tonic
/// itself retries at once). Ends when `incoming` does.
pub fn with_backoff<S>(
    incoming: S,
    errors: AcceptErrors,
) -> impl Stream<Item = std::io::Result<TcpStream>> + Send + 'static
where
    S: Stream<Item = std::io::Result<TcpStream>> + Send + Unpin + 'static,
{
    futures::stream::unfold(
        (incoming, errors),
        |(mut incoming, mut errors)| async move {
            loop {
                match incoming.next().await? {
                    Ok(s) => {
                        errors.accepted();
                        return Some((Ok(s), (incoming, errors)));
                    }
                    Err(e) => {
                        let delay = errors.failed(&e);
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = AcceptBackoff::default();
        let ms: Vec<u128> = (0..10).map(|_| b.failed().as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        for _ in 0..100 {
            assert_eq!(b.failed(), AcceptBackoff::CAP);
        }
        b.reset();
        assert_eq!(b.failed(), AcceptBackoff::BASE);
    }

    #[test]
    fn one_line_per_period_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut log = RateLimitedLog::new(Duration::from_secs(10));
        assert_eq!(log.allow(t0), Some(0));
        for ms in [1, 10, 5_000, 9_999] {
            assert_eq!(log.allow(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(log.allow(t0 + Duration::from_secs(10)), Some(4));
        assert_eq!(log.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(log.allow(t0 + Duration::from_secs(30)), Some(1));
    }
}
