//! systemd integration for `Type=notify` units: readiness, stopping, and
//! feeding the watchdog (`WatchdogSec=`). Without systemd (no
//! `NOTIFY_SOCKET`, no `WATCHDOG_USEC`) every call here does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Tells systemd the daemon is up (`READY=1`) and, when the unit has a
/// watchdog, starts a task that sends `WATCHDOG=1` at half its interval
/// until `cancel` fires. A runtime that hangs stops feeding it, and systemd
/// restarts the daemon.
pub fn ready(cancel: CancellationToken) -> Option<JoinHandle<()>> {
    send(&[NotifyState::Ready], "READY=1");
    let period = watchdog_period(sd_notify::watchdog_enabled())?;
    info!(every = %humantime::format_duration(period), "feeding the systemd watchdog");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => send(&[NotifyState::Watchdog], "WATCHDOG=1"),
            }
        }
    }))
}

/// Tells systemd the daemon is shutting down (`STOPPING=1`).
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

/// Half the watchdog timeout systemd asked for, never zero.
fn watchdog_period(timeout: Option<Duration>) -> Option<Duration> {
    timeout
        .filter(|t| !t.is_zero())
        .map(|t| (t / 2).max(Duration::from_millis(1)))
}

fn send(state: &[NotifyState], what: &str) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "could not send {what} to systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_at_half_the_timeout() {
        assert_eq!(
            watchdog_period(Some(Duration::from_secs(30))),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_period(Some(Duration::ZERO)), None);
        assert_eq!(watchdog_period(None), None);
        assert_eq!(
            watchdog_period(Some(Duration::from_micros(1))),
            Some(Duration::from_millis(1))
        );
    }
}
