//! A device's state from its newest readings, in one place until the health
//! engine (with hysteresis, flaps and parents) takes over.

use siaga_proto::v1;

/// Round trips above this count as degraded.
pub const HIGH_RTT_US: u64 = 200_000;
/// An agent or device silent for this many probe intervals is unknown.
pub const SILENT_INTERVALS: i64 = 3;

/// up | degraded | down | unknown.
pub fn device_state(
    latest_icmp: Option<&v1::Sample>,
    agent_last_seen_us: Option<i64>,
    interval_us: i64,
    now_us: i64,
) -> &'static str {
    let horizon = interval_us.saturating_mul(SILENT_INTERVALS);
    let silent = |t: i64| now_us.saturating_sub(t) > horizon;
    match agent_last_seen_us {
        Some(t) if !silent(t) => {}
        _ => return "unknown",
    }
    let Some(sample) = latest_icmp else {
        return "unknown";
    };
    if silent(sample.ts_us) {
        return "unknown";
    }
    let Some(v1::sample::Kind::Icmp(icmp)) = &sample.kind else {
        return "unknown";
    };
    if !icmp.error.is_empty() || icmp.sent == 0 {
        return "unknown";
    }
    if icmp.received == 0 {
        return "down";
    }
    if icmp.loss_pct > 0.0 || icmp.rtt_avg_us.is_some_and(|r| r > HIGH_RTT_US) {
        return "degraded";
    }
    "up"
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

    #[test_case(Some(icmp(95 * S, 4, 4, 1_000)), Some(99 * S), "up" ; "all answered")]
    #[test_case(Some(icmp(95 * S, 4, 3, 1_000)), Some(99 * S), "degraded" ; "some loss")]
    #[test_case(Some(icmp(95 * S, 4, 4, 500_000)), Some(99 * S), "degraded" ; "high rtt")]
    #[test_case(Some(icmp(95 * S, 4, 0, 0)), Some(99 * S), "down" ; "burst lost")]
    #[test_case(None, Some(99 * S), "unknown" ; "no sample")]
    #[test_case(Some(icmp(95 * S, 4, 4, 1_000)), Some(50 * S), "unknown" ; "agent silent")]
    #[test_case(Some(icmp(50 * S, 4, 4, 1_000)), Some(99 * S), "unknown" ; "sample stale")]
    #[test_case(Some(icmp(95 * S, 4, 4, 1_000)), None, "unknown" ; "agent never seen")]
    fn states(sample: Option<v1::Sample>, agent_seen: Option<i64>, want: &str) {
        assert_eq!(
            device_state(sample.as_ref(), agent_seen, 10 * S, 100 * S),
            want
        );
    }
}
