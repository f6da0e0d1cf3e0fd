//! systemd integration for `Type=notify` units: readiness, stopping, and
//! feeding the watchdog (`WatchdogSec=`). Without systemd (no
//! `NOTIFY_SOCKET`, no `WATCHDOG_USEC`) nothing is sent.

use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Tells systemd the collector is serving (`READY=1`, call it once the
/// listeners are bound) and returns the task to spawn: it sends
/// `WATCHDOG=1` at half the unit's watchdog interval while the runtime is
/// alive, until `cancel` fires.
pub fn ready(cancel: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
    send(&[NotifyState::Ready], "READY=1");
    let period = watchdog_period(sd_notify::watchdog_enabled());
    if let Some(p) = period {
        info!(every = %humantime::format_duration(p), "feeding the systemd watchdog");
    }
    async move {
        match period {
            Some(p) => {
                let mut tick = tokio::time::interval(p);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => send(&[NotifyState::Watchdog], "WATCHDOG=1"),
                    }
                }
            }
            None => cancel.cancelled().await,
        }
    }
}

/// Tells systemd the collector is shutting down (`STOPPING=1`).
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
            watchdog_period(Some(Duration::from_secs(60))),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_period(Some(Duration::ZERO)), None);
        assert_eq!(watchdog_period(None), None);
    }
}
