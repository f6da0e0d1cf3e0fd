//! A device's state from its newest readings, in one place until the health
//! engine (with hysteresis, flaps and parents) takes over.

use siaga_proto::v1;
use siaga_proto::v1::device_info::State;

use crate::health::Health;

/// Round trips above this count as degraded.
pub const HIGH_RTT_US: u64 = 200_000;
/// An agent or device silent for this many probe intervals is unknown.
pub const SILENT_INTERVALS: i64 = 3;

/// How old a device's newest reading is, by the collector's clock, if it
/// is older than [`SILENT_INTERVALS`] probe intervals: a state computed from
/// it is no longer current. `newest_us` is the reading's time by the agent's
/// clock, `clock_offset_us` the agent's offset (collector minus agent) when
/// known. `None`: fresh, or no reading at all.
pub fn stale_age(
    newest_us: Option<i64>,
    clock_offset_us: Option<i64>,
    interval_us: i64,
    now_us: i64,
) -> Option<i64> {
    let at = newest_us?.saturating_add(clock_offset_us.unwrap_or(0));
    let age = now_us.saturating_sub(at).max(0);
    (age > interval_us.saturating_mul(SILENT_INTERVALS)).then_some(age)
}

/// The state people see: the health engine's `state`, but `stale` when the
/// newest reading is too old to stand for now (see [`stale_age`]); an
/// `unknown` state (agent silent, nothing confirmed) stays `unknown`.
pub fn shown_state(state: Health, stale_age_us: Option<i64>) -> State {
    match stale_age_us {
        Some(_) if state != Health::Unknown => State::Stale,
        _ => state.into(),
    }
}

/// up | degraded | down | unknown.
pub fn device_state(
    latest_icmp: Option<&v1::Sample>,
    agent_last_seen_us: Option<i64>,
    interval_us: i64,
    now_us: i64,
) -> Health {
    let horizon = interval_us.saturating_mul(SILENT_INTERVALS);
    let silent = |t: i64| now_us.saturating_sub(t) > horizon;
    match agent_last_seen_us {
        Some(t) if !silent(t) => {}
        _ => return Health::Unknown,
    }
    let Some(sample) = latest_icmp else {
        return Health::Unknown;
    };
    if silent(sample.ts_us) {
        return Health::Unknown;
    }
    let Some(v1::sample::Kind::Icmp(icmp)) = &sample.kind else {
        return Health::Unknown;
    };
    if !icmp.error.is_empty() || icmp.sent == 0 {
        return Health::Unknown;
    }
    if icmp.received == 0 {
        return Health::Down;
    }
    if icmp.loss_pct > 0.0 || icmp.rtt_avg_us.is_some_and(|r| r > HIGH_RTT_US) {
        return Health::Degraded;
    }
    Health::Up
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    fn icmp(ts_us: i64, sent: u32, received: u32, rtt_avg_us: u64) -> v1::Sample {
        let loss_pct = if sent == 0 {
            0.0
        } else {
            100.0 * f64::from(sent - received) / f64::from(sent)
        };
        v1::Sample {
            seq: 1,
            ts_us,
            device: "d".into(),
            kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
                sent,
                received,
                loss_pct,
                rtt_avg_us: (received > 0).then_some(rtt_avg_us),
                ..Default::default()
            })),
        }
    }

    const S: i64 = 1_000_000;

    // Interval 10 s, now 100 s: stale beyond 30 s.
    #[test_case(Health::Up, Some(80 * S), None, State::Up ; "fresh")]
    #[test_case(Health::Up, Some(70 * S), None, State::Up ; "exactly three intervals")]
    #[test_case(Health::Up, Some(50 * S), None, State::Stale ; "old reading")]
    #[test_case(Health::Degraded, Some(50 * S), None, State::Stale ; "old degraded reading")]
    #[test_case(Health::Unknown, Some(50 * S), None, State::Unknown ; "silent agent stays unknown")]
    #[test_case(Health::Up, None, None, State::Up ; "no reading")]
    #[test_case(Health::Up, Some(90 * S), Some(-60 * S), State::Stale ; "agent clock ahead hides the age")]
    #[test_case(Health::Up, Some(50 * S), Some(40 * S), State::Up ; "agent clock behind")]
    fn staleness(state: Health, newest: Option<i64>, offset: Option<i64>, want: State) {
        let age = stale_age(newest, offset, 10 * S, 100 * S);
        assert_eq!(shown_state(state, age), want);
        if want == State::Stale {
            assert!(age.is_some_and(|a| a > 30 * S), "{age:?}");
        }
    }

    #[test_case(Some(icmp(95 * S, 4, 4, 1_000)), Some(99 * S), Health::Up ; "all answered")]
    #[test_case(Some(icmp(95 * S, 4, 3, 1_000)), Some(99 * S), Health::Degraded ; "some loss")]
    #[test_case(Some(icmp(95 * S, 4, 4, 500_000)), Some(99 * S), Health::Degraded ; "high rtt")]
    #[test_case(Some(icmp(95 * S, 4, 0, 0)), Some(99 * S), Health::Down ; "burst lost")]
    #[test_case(None, Some(99 * S), Health::Unknown ; "no sample")]
    #[test_case(Some(icmp(95 * S, 4, 4, 1_000)), Some(50 * S), Health::Unknown ; "agent silent")]
    #[test_case(Some(icmp(50 * S, 4, 4, 1_000)), Some(99 * S), Health::Unknown ; "sample stale")]
    #[test_case(Some(icmp(95 * S, 4, 4, 1_000)), None, Health::Unknown ; "agent never seen")]
    fn states_from_samples(sample: Option<v1::Sample>, agent_seen: Option<i64>, want: Health) {
        assert_eq!(
            device_state(sample.as_ref(), agent_seen, 10 * S, 100 * S),
            want
        );
    }
}
