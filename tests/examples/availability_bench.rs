//! The availability of a province's month (60 OPDs × 50 devices, ICMP
//! every `--interval` seconds, 300 by default, for November 2026): the
//! answer of a request before the collector's background task prepared the
//! month (at once, with the progress), the time of that task's round
//! (every device-day replayed and kept), the time of the first and the next
//! request after it (every day read from the cache), the size of the answer
//! as the `Reports/GetAvailability` message, and the time of the same month
//! replayed without the cache.
//!
//! ```text
//! cargo run --release -p siaga-tests --example availability_bench [-- --interval 300]
//! ```
//!
//! The samples are written straight into a store in a temporary directory,
//! as the collector's writer would have stored them over the month. Each
//! OPD's first device is its router, the others hang behind it; every
//! OPD's router is down for 3 hours on one day and one of its switches for
//! 3 hours on another, so the month has two incidents per OPD to find.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use prost::Message as _;
use siaga_collector::health::state::DeviceNode;
use siaga_collector::health::{HealthRules, Topology};
use siaga_collector::metrics::Metrics;
use siaga_collector::report::availability::{Period, compute, compute_prepared};
use siaga_collector::report::prepare;
use siaga_collector::store::{IngestBatch, RedbStore, Store};
use siaga_proto::v1;
use siaga_tests::province::{DEVICES_PER_OPD, OPDS, device, opd};
use tokio_util::sync::CancellationToken;

const S: i64 = 1_000_000;

fn interval_s() -> Result<i64> {
    let mut interval = 300;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--interval" => interval = it.next().context("--interval SECONDS")?.parse()?,
            other => anyhow::bail!("unknown argument {other:?} (known: --interval SECONDS)"),
        }
    }
    ensure!(interval > 0, "--interval must be above 0");
    Ok(interval)
}

fn main() -> Result<()> {
    let interval = interval_s()? * S;
    let period = Period::month("2026-11", 420).map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let store = RedbStore::open(dir.path())?;

    let started = Instant::now();
    let mut seq = 0u64;
    let mut written = 0u64;
    let mut devices = BTreeMap::new();
    for o in 0..OPDS {
        let day = |d: i64| period.from_us + (d % 30) * 86_400 * S;
        // (device index, outage from, until)
        let outages = [
            (
                0,
                day(o as i64) + 9 * 3600 * S,
                day(o as i64) + 9 * 3600 * S + 1800 * S,
            ),
            (
                1 + o % (DEVICES_PER_OPD - 1),
                day(o as i64 + 7) + 13 * 3600 * S,
                day(o as i64 + 7) + 15 * 3600 * S,
            ),
        ];
        for d in 0..DEVICES_PER_OPD {
            let id = device(o, d);
            devices.insert(
                id.clone(),
                DeviceNode {
                    opd: opd(o),
                    parent: (d > 0).then(|| device(o, 0)),
                },
            );
            let mut batch = Vec::new();
            let mut t = period.from_us - 3600 * S + (d as i64 % 60) * S;
            while t < period.until_us + 3600 * S {
                let lost = outages
                    .iter()
                    .any(|&(who, a, b)| (who == d || (who == 0 && d > 0)) && a <= t && t < b);
                seq += 1;
                batch.push(v1::Sample {
                    seq,
                    ts_us: t,
                    device: id.clone(),
                    kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
                        sent: 4,
                        received: if lost { 0 } else { 4 },
                        loss_pct: if lost { 100.0 } else { 0.0 },
                        rtt_avg_us: (!lost).then_some(1500),
                        ..Default::default()
                    })),
                });
                t += interval;
            }
            written += batch.len() as u64;
            for chunk in batch.chunks(20_000) {
                let b = IngestBatch::new("bench", 0, Arc::from(chunk.to_vec()));
                store.commit(&[b], &[])?;
            }
        }
    }
    println!(
        "store: {} devices, {written} samples (one every {} s) written in {:.1} s",
        devices.len(),
        interval / S,
        started.elapsed().as_secs_f64()
    );

    let topo = Topology {
        devices,
        links: Vec::new(),
        intervals_us: BTreeMap::new(),
        default_interval_us: interval,
    };
    let rules = HealthRules::default();
    // At 00:00 WIB on 2 December: November and the 1st are over.
    let now = period.until_us + 86_400 * S;
    let store: Arc<dyn Store> = Arc::new(store);
    let limit = 3000;

    // Before the background task: a request answers at once with the
    // progress instead of replaying the month.
    let started = Instant::now();
    match compute_prepared(&*store, &topo, &rules, &[], period, None, now, limit)? {
        Ok(_) => anyhow::bail!("a request before the background fill replayed the month"),
        Err(ready) => println!(
            "request before the fill: {:.3} s: {}",
            started.elapsed().as_secs_f64(),
            ready.preparing("2026-11")
        ),
    }

    // The collector's background task, one round at `now`.
    let started = Instant::now();
    let metrics = Metrics::new();
    let round = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(prepare::round(
            store.clone(),
            Arc::new(topo.clone()),
            Arc::new(rules.clone()),
            420,
            now,
            &metrics,
            &CancellationToken::new(),
        ));
    println!(
        "background fill: {:.1} s; {} device-days replayed and kept, {} devices failed",
        started.elapsed().as_secs_f64(),
        round.days,
        round.failed
    );

    let mut answers = Vec::new();
    for label in ["first request after the fill", "next request"] {
        let started = Instant::now();
        let a = compute_prepared(&*store, &topo, &rules, &[], period, None, now, limit)?
            .map_err(|r| anyhow::anyhow!("{}", r.preparing("2026-11")))?;
        let took = started.elapsed();
        let size = siaga_collector::report::api::availability_message("2026-11", &a).encoded_len();
        println!(
            "{label}: {:.3} s; {} device-days replayed, {} from the cache; {} OPD rows, {} device rows, answer {} bytes",
            took.as_secs_f64(),
            a.stats.days_replayed,
            a.stats.days_cached,
            a.opds.len(),
            a.subjects.len(),
            size
        );
        ensure!(
            a.stats.days_replayed == 0,
            "a request after the fill replayed days"
        );
        answers.push(a);
    }
    let started = Instant::now();
    let raw = compute(&*store, &topo, &rules, &[], period, None, None)?;
    println!(
        "the same month replayed without the cache: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    ensure!(
        answers[0].opds == raw.opds && answers[0].subjects == raw.subjects,
        "the cached figures differ from the replayed ones"
    );
    let incidents: u32 = answers[1].opds.iter().map(|o| o.figures.incidents).sum();
    ensure!(
        incidents == 2 * OPDS as u32,
        "{incidents} incidents, not {}",
        2 * OPDS
    );
    println!("both give the same figures; {incidents} incidents in the province");
    Ok(())
}
