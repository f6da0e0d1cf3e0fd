//! Fills the cache of replayed availability days in the background, so that
//! a request for a month reads about 30 small rows per device instead of
//! replaying the month's samples (minutes for a province probed every 10 s).
//!
//! At start, and after each local midnight (once the samples read after the
//! day, two probe intervals, are in), every device's finished days of the
//! current and the previous month that are not cached are replayed and
//! kept. One device at a time on one blocking thread, yielding between
//! devices, so ingest and requests keep their share of the machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike, TimeZone};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::availability::{self, Period};
use crate::health::{HealthRules, Topology, TsUs};
use crate::metrics::Metrics;
use crate::store::{DAY_US, Store};

/// The current and previous month (`YYYY-MM`) at `now`, in local time
/// `offset_minutes` east of UTC, oldest first.
pub fn months(now: TsUs, offset_minutes: i32) -> Vec<Period> {
    let local = now + i64::from(offset_minutes) * 60_000_000;
    let Some(t) = chrono::Utc.timestamp_micros(local).single() else {
        return Vec::new();
    };
    let (y, m) = (t.year(), t.month());
    let prev = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    [prev, (y, m)]
        .into_iter()
        .filter_map(|(y, m)| Period::month(&format!("{y:04}-{m:02}"), offset_minutes).ok())
        .collect()
}

/// When the next round runs after `now`: the next local midnight plus
/// `settle` (the samples a day reads after its end).
pub fn next_round(now: TsUs, offset_minutes: i32, settle: i64) -> TsUs {
    let offset = i64::from(offset_minutes) * 60_000_000;
    let midnight = ((now + offset).div_euclid(DAY_US) + 1) * DAY_US - offset;
    let at = midnight + settle;
    // Just after midnight, before the day settled: this day's round.
    if at - DAY_US > now { at - DAY_US } else { at }
}

/// Finished device-days a request may replay itself in a month the
/// background task prepares; beyond, it answers at once that the month is
/// being prepared. One day of a province of 3,000 devices: what a request
/// just after midnight replays before the task reaches it, a few seconds at
/// a 10 s probe interval.
pub const REPLAY_LIMIT_DAYS: u64 = 3000;

/// The device-days a request for `period` at `now` may replay: the bound
/// for the months the background task prepares; none for older months,
/// which no task prepares (they were prepared while current or previous,
/// so they replay only what a prune or a change of rules removed).
pub fn replay_limit(period: Period, now: TsUs, offset_minutes: i32) -> u64 {
    if months(now, offset_minutes).contains(&period) {
        REPLAY_LIMIT_DAYS
    } else {
        u64::MAX
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Device-days replayed and kept.
    pub days: u64,
    /// Devices whose filling failed (logged).
    pub failed: u64,
}

/// One round at `now`: fills every device's finished, uncached days of the
/// current and previous month, device by device off the async workers.
/// Stops early when `cancel` fires.
pub async fn round(
    store: Arc<dyn Store>,
    topo: Arc<Topology>,
    rules: Arc<HealthRules>,
    offset_minutes: i32,
    now: TsUs,
    metrics: &Metrics,
    cancel: &CancellationToken,
) -> Round {
    let mut out = Round::default();
    for period in months(now, offset_minutes) {
        for (_, device) in availability::devices_for(&topo, None) {
            if cancel.is_cancelled() {
                return out;
            }
            let (store, topo, rules) = (store.clone(), topo.clone(), rules.clone());
            let started = Instant::now();
            let done = tokio::task::spawn_blocking(move || {
                let r = availability::fill(&*store, &topo, &rules, &device, period, now);
                (device, r)
            })
            .await;
            metrics
                .availability_prepare_seconds
                .inc_by(started.elapsed().as_secs_f64());
            match done {
                Ok((_, Ok(stats))) => {
                    out.days += stats.days_replayed;
                    metrics
                        .availability_days_prepared
                        .inc_by(stats.days_replayed);
                }
                Ok((device, Err(e))) => {
                    out.failed += 1;
                    warn!(%device, error = %e, "preparing availability days failed");
                }
                Err(e) => {
                    out.failed += 1;
                    warn!(error = %e, "preparing availability days: task failed");
                }
            }
            // Let ingest and requests run between devices.
            tokio::task::yield_now().await;
        }
    }
    out
}

/// The background task: a round at start, then one after each local
/// midnight, until `hub.cancel` fires.
pub async fn run(hub: Arc<crate::hub::Hub>) {
    let cancel = hub.cancel.clone();
    loop {
        let topo = Arc::new(crate::ticket::service::topology(&hub.inventory()));
        let offset = hub.health.sop_store.calendar().offset().local_minus_utc() / 60;
        let now = crate::ingest::now_us();
        let r = round(
            hub.store.clone(),
            topo.clone(),
            Arc::new(hub.health.rules.clone()),
            offset,
            now,
            &hub.metrics,
            &cancel,
        )
        .await;
        if r.days > 0 || r.failed > 0 {
            info!(
                days = r.days,
                failed = r.failed,
                "availability days prepared"
            );
        }
        // The longest interval's two readings after midnight, and a minute.
        let longest = topo
            .intervals_us
            .values()
            .copied()
            .chain([topo.default_interval_us])
            .max()
            .unwrap_or(0);
        let settle = 2 * longest + 60_000_000;
        let wait = next_round(crate::ingest::now_us(), offset, settle) - crate::ingest::now_us();
        let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use siaga_proto::v1;

    use super::*;
    use crate::health::state::DeviceNode;
    use crate::report::availability::{Readiness, Stats, compute, compute_prepared, readiness};
    use crate::store::{IngestBatch, RedbStore};

    const S: i64 = 1_000_000;
    const INTERVAL: i64 = 300 * S;
    const WIB: i32 = 420;

    fn icmp(seq: u64, ts_us: i64, device: &str, lost: bool) -> v1::Sample {
        v1::Sample {
            seq,
            ts_us,
            device: device.into(),
            kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
                sent: 4,
                received: if lost { 0 } else { 4 },
                loss_pct: if lost { 100.0 } else { 0.0 },
                rtt_avg_us: (!lost).then_some(1500),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn rounds_run_after_each_local_midnight_once_the_day_settled() {
        let nov = Period::month("2026-11", WIB).unwrap();
        let settle = 11 * 60 * S;
        // (now, next round): WIB midnight is 17:00 UTC.
        let cases = [
            // 12:00 WIB on 1 Nov: 00:11 WIB on 2 Nov.
            (nov.from_us + 12 * 3600 * S, nov.from_us + DAY_US + settle),
            // 00:05 WIB on 2 Nov, before the 1st settled: 00:11 that night.
            (
                nov.from_us + DAY_US + 5 * 60 * S,
                nov.from_us + DAY_US + settle,
            ),
            // Exactly then: the next night.
            (
                nov.from_us + DAY_US + settle,
                nov.from_us + 2 * DAY_US + settle,
            ),
        ];
        for (now, want) in cases {
            assert_eq!(next_round(now, WIB, settle), want, "now {now}");
        }
        // The months of a round: the previous and the current one, local.
        let dec = Period::month("2026-12", WIB).unwrap();
        let oct = Period::month("2026-10", WIB).unwrap();
        assert_eq!(months(dec.from_us, WIB), [nov, dec]);
        assert_eq!(months(dec.from_us - 1, WIB), [oct, nov]);
        let jan = Period::month("2027-01", WIB).unwrap();
        assert_eq!(months(jan.from_us + 3600 * S, WIB), [dec, jan]);
        // A request may replay a bounded number of days of those months
        // only; an older month no task prepares is replayed whatever it
        // takes.
        let now = dec.from_us + 3 * DAY_US;
        assert_eq!(replay_limit(dec, now, WIB), REPLAY_LIMIT_DAYS);
        assert_eq!(replay_limit(nov, now, WIB), REPLAY_LIMIT_DAYS);
        assert_eq!(replay_limit(oct, now, WIB), u64::MAX);
    }

    /// A store with November 2026 and the first two days and a bit of
    /// December probed every 300 s: `rtr` with `sw1` behind it, and `b1`
    /// of another OPD; `sw1` down 09:00 … 10:00 WIB on 10 November.
    fn province() -> (tempfile::TempDir, Arc<RedbStore>, Arc<Topology>, i64) {
        let nov = Period::month("2026-11", WIB).unwrap();
        // 01:00 WIB on 3 December.
        let now = nov.until_us + 2 * DAY_US + 3600 * S;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path()).unwrap());
        let mut seq = 0;
        let bad = (
            nov.from_us + 9 * DAY_US + 9 * 3600 * S,
            nov.from_us + 9 * DAY_US + 10 * 3600 * S,
        );
        for device in ["rtr", "sw1", "b1"] {
            let mut batch = Vec::new();
            let mut t = nov.from_us - 3600 * S;
            while t < now {
                seq += 1;
                let lost = device == "sw1" && bad.0 <= t && t < bad.1;
                batch.push(icmp(seq, t, device, lost));
                t += INTERVAL;
            }
            store
                .commit(&[IngestBatch::new("agent", 0, Arc::from(batch))], &[])
                .unwrap();
        }
        let node = |opd: &str, parent: Option<&str>| DeviceNode {
            opd: opd.into(),
            parent: parent.map(str::to_string),
        };
        let topo = Topology {
            devices: BTreeMap::from([
                ("rtr".into(), node("dinkes", None)),
                ("sw1".into(), node("dinkes", Some("rtr"))),
                ("b1".into(), node("bappeda", None)),
            ]),
            links: Vec::new(),
            intervals_us: BTreeMap::new(),
            default_interval_us: INTERVAL,
        };
        (dir, store, Arc::new(topo), now)
    }

    #[tokio::test]
    async fn after_a_round_a_finished_month_is_read_from_the_cache_alone() {
        let (_dir, store, topo, now) = province();
        let rules = Arc::new(HealthRules::default());
        let nov = Period::month("2026-11", WIB).unwrap();
        let dec = Period::month("2026-12", WIB).unwrap();
        let metrics = Metrics::new();
        let cancel = CancellationToken::new();
        let raw = compute(&*store, &topo, &rules, &[], nov, None, None).unwrap();
        let dyn_store: Arc<dyn Store> = store.clone();
        // Nothing prepared: a request that would replay more than the
        // limit answers with the progress instead.
        let ask = |period, limit| {
            compute_prepared(&*store, &topo, &rules, &[], period, None, now, limit).unwrap()
        };
        let not_yet = ask(nov, 10).unwrap_err();
        assert_eq!(
            not_yet,
            Readiness {
                ready: 0,
                missing: 90
            }
        );
        assert_eq!(
            not_yet.preparing("2026-11"),
            "the availability of 2026-11 is being prepared: 0 of 90 device-days ready (0 %); \
             try again in a few minutes"
        );

        // The round: 3 devices × (30 days of November + 1 and 2 December;
        // the 3rd is not over).
        let r = round(
            dyn_store.clone(),
            topo.clone(),
            rules.clone(),
            WIB,
            now,
            &metrics,
            &cancel,
        )
        .await;
        assert_eq!(
            r,
            Round {
                days: 3 * 32,
                failed: 0
            }
        );
        assert_eq!(metrics.availability_days_prepared.get(), 3 * 32);
        assert!(metrics.availability_prepare_seconds.get() > 0.0);

        // November now replays nothing, with the same figures.
        let warm = ask(nov, 10).unwrap();
        assert_eq!(
            warm.stats,
            Stats {
                days_replayed: 0,
                days_cached: 90
            }
        );
        assert_eq!((&warm.opds, &warm.subjects), (&raw.opds, &raw.subjects));
        // December: the two finished days are cached; the 29 others (the
        // 3rd and the days still to come) are replayed, within the limit.
        let d = ask(dec, 3 * 29).unwrap();
        assert_eq!(
            d.stats,
            Stats {
                days_replayed: 3 * 29,
                days_cached: 6
            }
        );
        // A second round finds nothing to do.
        let again = round(
            dyn_store.clone(),
            topo.clone(),
            rules.clone(),
            WIB,
            now,
            &metrics,
            &cancel,
        )
        .await;
        assert_eq!(again, Round::default());

        // A late sample of sw1 (12:00 WIB on the 15th, 05:00 UTC: the UTC
        // day read by the local 15th and 16th) makes those two days replay.
        store
            .commit(
                &[IngestBatch::new(
                    "late",
                    0,
                    Arc::from(vec![icmp(
                        1,
                        nov.from_us + 14 * DAY_US + 12 * 3600 * S + S,
                        "sw1",
                        false,
                    )]),
                )],
                &[],
            )
            .unwrap();
        assert_eq!(
            readiness(&*store, &topo, &rules, nov, None, now).unwrap(),
            Readiness {
                ready: 88,
                missing: 2
            }
        );
        let late = ask(nov, 10).unwrap();
        assert_eq!(
            late.stats,
            Stats {
                days_replayed: 2,
                days_cached: 88
            }
        );
    }
}
