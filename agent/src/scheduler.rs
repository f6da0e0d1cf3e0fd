//! The probe cycle: every interval, one ICMP burst per inventory device.
//!
//! The cycle keeps ticking while the collector is away; results go to the
//! spool and reach the collector when the uplink is back.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use siaga_proto::v1::{Device, IcmpResult, Inventory, sample};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::SpoolError;
use crate::metrics::Metrics;
use crate::probe::icmp::{BurstOptions, IcmpProber};
use crate::spool::SampleSink;

/// Echo requests per device and cycle unless the inventory says otherwise.
pub const DEFAULT_ICMP_COUNT: u32 = 5;
/// Echo requests per device and cycle at most, whatever the inventory says.
pub use siaga_proto::MAX_ICMP_COUNT;
/// Samples of one ICMP cycle waiting for the spool at once.
const PUSHES_IN_FLIGHT: usize = 1024;
/// Devices polled over SNMP at the same time.
pub const CONCURRENCY: usize = 64;

/// The inventory in force, shared between the uplink (writer) and the
/// probes (readers).
pub type InventoryWatch = watch::Receiver<Option<Arc<Inventory>>>;

/// Runs the ICMP cycle.
#[derive(Debug)]
pub struct Scheduler {
    /// The prober shared by all bursts.
    pub prober: Arc<IcmpProber>,
    /// Where results go.
    pub sink: SampleSink,
    /// The inventory in force.
    pub inventory: InventoryWatch,
    /// Cycle used while the inventory names none.
    pub default_interval: Duration,
    /// Probe counters.
    pub metrics: Metrics,
}

/// The cycle length: the inventory's if it names one, else `default`.
pub fn cycle_interval(inv: Option<&Inventory>, default: Duration) -> Duration {
    match inv.map(|i| i.interval_ms) {
        Some(ms) if ms > 0 => Duration::from_millis(ms).max(Duration::from_millis(100)),
        _ => default,
    }
}

/// The SNMP poll cycle: the inventory's `snmp_interval_ms` if it names
/// one, else the probe cycle.
pub fn snmp_cycle_interval(inv: Option<&Inventory>, default: Duration) -> Duration {
    match inv.map(|i| i.snmp_interval_ms) {
        Some(ms) if ms > 0 => Duration::from_millis(ms).max(Duration::from_millis(100)),
        _ => cycle_interval(inv, default),
    }
}

/// A cycle's rhythm: when the next cycle is due and how late each one
/// starts (`siaga_agent_cycle_lateness_seconds`).
///
/// Cycles are due every `cycle` from the first, not `cycle` after the
/// previous one began, so wake-up delays do not add up over months. A
/// cycle still running when the next was due is counted as an overrun
/// (`siaga_agent_cycle_overruns_total`); the next starts at once, and if it
/// is a whole cycle late the rhythm starts again from it rather than
/// running cycles back to back to catch up.
#[derive(Debug)]
pub struct Rhythm {
    due: Option<Instant>,
    lateness: Histogram,
    overruns: Counter,
}

impl Rhythm {
    /// The rhythm of the `probe` ("icmp", "snmp") cycle.
    pub fn new(metrics: &Metrics, probe: &str) -> Self {
        let (lateness, overruns) = metrics.cycle(probe);
        Self {
            due: None,
            lateness,
            overruns,
        }
    }

    /// A cycle starts at `now`: records how late it is against its due
    /// time and returns the slot it fills (the due time, or `now` when it
    /// is a whole cycle late or off the rhythm).
    pub fn begin(&mut self, now: Instant, cycle: Duration) -> Instant {
        match self.due.take() {
            Some(due) => {
                let late = now.saturating_duration_since(due);
                self.lateness.observe(late.as_secs_f64());
                if late >= cycle { now } else { due }
            }
            None => now,
        }
    }

    /// The cycle of `slot` has ended at `now`: returns when the next is due.
    pub fn end(&mut self, slot: Instant, cycle: Duration, now: Instant) -> Instant {
        let due = slot + cycle;
        if now > due {
            self.overruns.inc();
        }
        self.due = Some(due);
        due
    }

    /// The next cycle starts off the rhythm (a new inventory is probed at
    /// once): it is not measured, and the rhythm starts again from it.
    pub fn restart(&mut self) {
        self.due = None;
    }
}

/// Burst shape for one device so that a burst fits well inside a cycle.
pub fn burst_options(device: &Device, cycle: Duration) -> BurstOptions {
    // The inventory's count is not trusted: at most MAX_ICMP_COUNT.
    let count = if device.icmp_count > 0 {
        device.icmp_count.min(MAX_ICMP_COUNT)
    } else {
        DEFAULT_ICMP_COUNT
    };
    BurstOptions {
        count,
        interval: Duration::from_millis(100).min(cycle / (4 * count)),
        timeout: Duration::from_secs(1).min(cycle / 2),
        keep_rtts: false,
    }
}

impl Scheduler {
    /// Runs until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut announced = None;
        let mut rhythm = Rhythm::new(&self.metrics, "icmp");
        loop {
            let inv = self.inventory.borrow_and_update().clone();
            let cycle = cycle_interval(inv.as_deref(), self.default_interval);
            if inv.is_none() {
                rhythm.restart();
            }
            let slot = rhythm.begin(Instant::now(), cycle);
            if let Some(inv) = &inv {
                if announced != Some((inv.revision, cycle)) {
                    info!(
                        revision = inv.revision,
                        devices = inv.devices.len(),
                        cycle = %humantime::format_duration(cycle),
                        "probing inventory"
                    );
                    announced = Some((inv.revision, cycle));
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = self.cycle(inv, cycle) => {}
                }
            }
            let next = rhythm.end(slot, cycle, Instant::now());
            let current = inv.as_ref().map(|i| (i.revision, cycle));
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep_until(next) => break,
                    r = self.inventory.changed() => {
                        if r.is_err() {
                            // The uplink is gone: keep the last inventory.
                            tokio::select! {
                                () = cancel.cancelled() => return,
                                () = tokio::time::sleep_until(next) => {}
                            }
                            break;
                        }
                        // A different inventory (e.g. the first one) is
                        // probed at once; the same one again (sent on every
                        // reconnect) keeps the rhythm.
                        let new = self.inventory.borrow().clone();
                        let new = new.as_ref().map(|i| {
                            (i.revision, cycle_interval(Some(i), self.default_interval))
                        });
                        if new != current {
                            rhythm.restart();
                            break;
                        }
                    }
                }
            }
        }
    }

    /// One burst per device, all as one submission to the prober; each
    /// device's sample is spooled as soon as its burst is done.
    async fn cycle(&self, inv: &Inventory, cycle: Duration) {
        let mut device = Vec::with_capacity(inv.devices.len());
        let mut targets = Vec::with_capacity(inv.devices.len());
        for (i, d) in inv.devices.iter().enumerate() {
            match d.address.trim().parse::<IpAddr>() {
                Ok(addr) => {
                    device.push(i);
                    targets.push((addr, burst_options(d, cycle)));
                }
                Err(_) => {
                    let result = IcmpResult {
                        error: format!("address {:?} is not an IP address", d.address),
                        ..Default::default()
                    };
                    self.record(d, result).await;
                }
            }
        }
        // Up to PUSHES_IN_FLIGHT samples wait for the spool at once, so its
        // writer commits them in groups (one commit per sample, awaited one
        // after the other, cost a 3,000-device cycle half a core).
        let bursts = self.prober.bursts(targets);
        futures::stream::unfold(
            bursts,
            |mut b| async move { b.next().await.map(|r| (r, b)) },
        )
        .for_each_concurrent(PUSHES_IN_FLIGHT, |(k, result)| {
            self.record(&inv.devices[device[k]], result)
        })
        .await;
    }

    async fn record(&self, device: &Device, result: IcmpResult) {
        self.metrics.probe("icmp", result.error.is_empty());
        match self
            .sink
            .push(device.id.clone(), sample::Kind::Icmp(result))
            .await
        {
            Ok(seq) => debug!(device = %device.id, seq, "icmp sample spooled"),
            Err(SpoolError::Closed) => {}
            Err(e) => warn!(device = %device.id, error = %e, "cannot spool sample"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    fn metric_line(metrics: &Metrics, name: &str) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry())
            .expect("a String takes any text");
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn cycles_keep_their_rhythm_and_lateness_is_measured_against_it() {
        let metrics = Metrics::default();
        let mut r = Rhythm::new(&metrics, "icmp");
        let cycle = Duration::from_secs(1);
        let t0 = Instant::now();
        // The first cycle fills the slot it starts in.
        let slot = r.begin(t0, cycle);
        assert_eq!(slot, t0);
        let due = r.end(slot, cycle, t0 + Duration::from_millis(700));
        assert_eq!(due, t0 + cycle);
        // Woken 30 ms late: measured, but the rhythm stays on the second
        // (the next is due at t0 + 2 s, not 2.03 s).
        let slot = r.begin(due + Duration::from_millis(30), cycle);
        assert_eq!(slot, due);
        let due = r.end(slot, cycle, slot + Duration::from_millis(600));
        assert_eq!(due, t0 + 2 * cycle);
        // A cycle that ran 1.5 s is an overrun; the next starts late and
        // the rhythm starts again from it.
        let slot = r.begin(due, cycle);
        let due = r.end(slot, cycle, slot + Duration::from_millis(2500));
        let late = due + Duration::from_millis(1500);
        assert_eq!(r.begin(late, cycle), late);
        // A new inventory: probed at once, not measured.
        r.restart();
        let t = late + Duration::from_secs(30);
        assert_eq!(r.begin(t, cycle), t);

        assert_eq!(
            metric_line(
                &metrics,
                "siaga_agent_cycle_lateness_seconds_count{probe=\"icmp\"}"
            ),
            "siaga_agent_cycle_lateness_seconds_count{probe=\"icmp\"} 3"
        );
        assert_eq!(
            metric_line(&metrics, "siaga_agent_cycle_overruns_total{probe=\"icmp\"}"),
            "siaga_agent_cycle_overruns_total{probe=\"icmp\"} 1"
        );
        assert_eq!(
            metric_line(
                &metrics,
                "siaga_agent_cycle_lateness_seconds_bucket{le=\"0.05\",probe=\"icmp\"}"
            ),
            "siaga_agent_cycle_lateness_seconds_bucket{le=\"0.05\",probe=\"icmp\"} 2"
        );
    }

    #[test]
    fn snmp_polls_on_their_own_cycle_when_the_inventory_names_one() {
        let default = Duration::from_secs(10);
        let mut inv = Inventory {
            interval_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(
            snmp_cycle_interval(Some(&inv), default),
            Duration::from_secs(1)
        );
        inv.snmp_interval_ms = 10_000;
        assert_eq!(
            snmp_cycle_interval(Some(&inv), default),
            Duration::from_secs(10)
        );
        assert_eq!(cycle_interval(Some(&inv), default), Duration::from_secs(1));
        assert_eq!(snmp_cycle_interval(None, default), default);
    }

    #[test_case(0, 10_000, 5, 100, 1000; "defaults on a 10 s cycle")]
    #[test_case(5, 1_000, 5, 50, 500; "short cycle shrinks spacing and timeout")]
    #[test_case(0, 200, 5, 10, 100; "very short cycle")]
    #[test_case(u32::MAX, 10_000, 100, 25, 1000; "a count beyond the cap (found by fuzzing)")]
    fn bursts_fit_the_cycle(count: u32, cycle_ms: u64, n: u32, spacing_ms: u64, timeout_ms: u64) {
        let d = Device {
            icmp_count: count,
            ..Default::default()
        };
        let cycle = Duration::from_millis(cycle_ms);
        let o = burst_options(&d, cycle);
        assert_eq!(o.count, n);
        assert_eq!(o.interval.as_millis(), u128::from(spacing_ms));
        assert_eq!(o.timeout.as_millis(), u128::from(timeout_ms));
        assert!(o.interval * (o.count - 1) + o.timeout < cycle);
    }

    #[test]
    fn inventory_interval_wins_over_config() {
        let default = Duration::from_secs(10);
        assert_eq!(cycle_interval(None, default), default);
        let inv = Inventory {
            interval_ms: 2500,
            ..Default::default()
        };
        assert_eq!(
            cycle_interval(Some(&inv), default),
            Duration::from_millis(2500)
        );
        let zero = Inventory::default();
        assert_eq!(cycle_interval(Some(&zero), default), default);
    }

    /// Real ICMP to loopback through a real spool: the samples a user would
    /// see arrive, one per device and cycle.
    #[tokio::test]
    async fn cycles_spool_one_sample_per_device() {
        let Ok(prober) = IcmpProber::new() else {
            return; // no ICMP rights here; covered by probe::icmp tests
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = crate::spool::Spool::open(
            dir.path(),
            &crate::config::SpoolConfig::default(),
            Metrics::default(),
        )
        .expect("spool");
        let inv = Inventory {
            revision: 1,
            interval_ms: 200,
            devices: vec![
                Device {
                    id: "lo1".into(),
                    address: "127.0.0.1".into(),
                    icmp_count: 2,
                    ..Default::default()
                },
                Device {
                    id: "bad".into(),
                    address: "not-an-ip".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let (_tx, rx) = watch::channel(Some(Arc::new(inv)));
        let cancel = CancellationToken::new();
        let sched = Scheduler {
            prober: Arc::new(prober),
            sink: spool.sink(),
            inventory: rx,
            default_interval: Duration::from_secs(10),
            metrics: Metrics::default(),
        };
        let task = tokio::spawn(sched.run(cancel.clone()));
        let mut committed = spool.watch_committed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while *committed.borrow_and_update() < 4 {
            tokio::time::timeout_at(deadline, committed.changed())
                .await
                .expect("4 samples within the deadline")
                .expect("spool alive");
        }
        cancel.cancel();
        task.await.expect("scheduler ends on cancel");
        let samples = spool
            .read_after(0, 100, usize::MAX)
            .await
            .expect("read")
            .samples;
        let lo: Vec<_> = samples.iter().filter(|s| s.device == "lo1").collect();
        let bad: Vec<_> = samples.iter().filter(|s| s.device == "bad").collect();
        assert!(lo.len() >= 2 && bad.len() >= 2, "{samples:?}");
        for s in lo {
            let Some(sample::Kind::Icmp(r)) = &s.kind else {
                panic!("not icmp: {s:?}")
            };
            assert_eq!((r.sent, r.received), (2, 2));
            assert!(s.ts_us > 0);
        }
        for s in bad {
            let Some(sample::Kind::Icmp(r)) = &s.kind else {
                panic!("not icmp: {s:?}")
            };
            assert!(r.error.contains("not an IP address"));
        }
    }
}
