//! `history --since 7d` of a device probed every second (604,800 samples),
//! streamed by the `Devices/History` service: time to the first sample and
//! to the last, alone and as 50 concurrent calls, and the collector's
//! resident memory above idle meanwhile. Every stream is checked complete
//! and in order.
//!
//! ```text
//! cargo build --release -p siaga-collector --bins
//! cargo run --release -p siaga-tests --example history_bench
//! ```
//!
//! The samples are written straight into the collector's `collector.redb`
//! before it starts (as an agent would have sent them over a week).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use siaga_collector::store::{IngestBatch, RedbStore, Store as _};
use siaga_proto::v1;
use siaga_tests::harness::*;

const DEVICE: &str = "bench-dev";
const SAMPLES: u64 = 604_800;
const CONCURRENT: usize = 50;
/// Calls each person makes at once (under the 8 one person may have in flight).
const PER_PERSON: usize = 5;

fn rss_kb(pid: i32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("a number")?
        .parse()?)
}

/// One History call: (time to the first sample, total), after checking
/// that all samples came, in order.
async fn one_call(ch: tonic::transport::Channel, since_us: i64) -> Result<(Duration, Duration)> {
    let started = Instant::now();
    let mut c = v1::devices_client::DevicesClient::new(ch);
    let mut s = c
        .history(v1::HistoryRequest {
            device: DEVICE.into(),
            since: Some(siaga_collector::devices::api::timestamp(since_us)),
            until: None,
        })
        .await?
        .into_inner();
    let mut first = None;
    let mut n = 0u64;
    while let Some(chunk) = s.message().await? {
        if first.is_none() && !chunk.samples.is_empty() {
            first = Some(started.elapsed());
        }
        for smp in chunk.samples {
            n += 1;
            ensure!(smp.seq == n, "sample {n} has seq {}", smp.seq);
        }
    }
    ensure!(n == SAMPLES, "{n} samples of {SAMPLES}");
    Ok((first.unwrap_or_default(), started.elapsed()))
}

fn main() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("1s")
            .opd("dinkes")
            .device(DEVICE, "dinkes", "127.0.0.1"),
    )?;
    let people: Vec<Siaga> = (0..CONCURRENT.div_ceil(PER_PERSON))
        .map(|i| c.enroll_user(&format!("tim{i}"), "tim_teknis"))
        .collect::<Result<_>>()?;

    // A week of one sample a second, the last one a second ago.
    let now = chrono::Utc::now().timestamp_micros();
    let start = now - SAMPLES as i64 * 1_000_000;
    let t = Instant::now();
    {
        let store = RedbStore::open(&c.data_dir)?;
        let mut seq = 0u64;
        while seq < SAMPLES {
            let samples: Vec<v1::Sample> = (0..50_000u64.min(SAMPLES - seq))
                .map(|i| {
                    let n = seq + i + 1;
                    icmp_sample(n, start + (n as i64 - 1) * 1_000_000, DEVICE)
                })
                .collect();
            seq += samples.len() as u64;
            store.commit(
                &[IngestBatch::new("dinkes-agent", now, samples.into())],
                &[],
            )?;
        }
    }
    println!(
        "wrote {SAMPLES} samples of {DEVICE} in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    c.serve()?;
    let pid = c.pid().context("the collector's pid")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut channels = Vec::new();
        for p in &people {
            channels.push(p.tls()?.channel().await?);
        }
        // One call alone (also warms the collector up).
        let (first, total) = one_call(channels[0].clone(), start).await?;
        println!(
            "one call: first sample after {:.0} ms, all {SAMPLES} after {:.2} s",
            first.as_secs_f64() * 1e3,
            total.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = rss_kb(pid, "VmRSS:")?;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(idle));
        let watching = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(kb) = rss_kb(pid, "VmRSS:") {
                        peak.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let started = Instant::now();
        let calls: Vec<_> = (0..CONCURRENT)
            .map(|i| tokio::spawn(one_call(channels[i / PER_PERSON].clone(), start)))
            .collect();
        let mut firsts = Vec::new();
        let mut totals = Vec::new();
        for call in calls {
            let (f, t) = call.await??;
            firsts.push(f);
            totals.push(t);
        }
        let wall = started.elapsed();
        watching.abort();
        let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
        firsts.sort();
        totals.sort();
        println!(
            "{CONCURRENT} concurrent calls: all complete and in order; first sample after \
             {:.0} ms (median) / {:.0} ms (slowest), all samples after {:.1} s (median) / \
             {:.1} s (slowest), {:.1} s wall",
            firsts[CONCURRENT / 2].as_secs_f64() * 1e3,
            firsts[CONCURRENT - 1].as_secs_f64() * 1e3,
            totals[CONCURRENT / 2].as_secs_f64(),
            totals[CONCURRENT - 1].as_secs_f64(),
            wall.as_secs_f64()
        );
        println!(
            "collector RSS: idle {:.1} MB, peak {:.1} MB, peak above idle {:.1} MB (goal < 64 MB)",
            idle as f64 / 1024.0,
            peak as f64 / 1024.0,
            (peak.saturating_sub(idle)) as f64 / 1024.0
        );
        anyhow::Ok(())
    })?;
    ensure!(c.stop(), "the collector did not stop cleanly");
    Ok(())
}
