//! Spool throughput: `cargo run -p siaga-agent --example spool_bench -- [SAMPLES] [PRODUCERS]`.
//!
//! Pushes SAMPLES ICMP samples from PRODUCERS concurrent producers into a
//! fresh spool on disk (every sample durably committed before its push
//! returns), then drains it the way the uplink does: read 500, acknowledge
//! them, repeat. Prints samples per second for both phases, and the
//! process's memory (RssAnon) before, when the spool is full and when it is
//! drained: the spool's page cache is bounded, so a deep spool (a long
//! collector outage) does not grow the agent's memory with it.

use std::time::Instant;

use siaga_agent::config::SpoolConfig;
use siaga_agent::metrics::Metrics;
use siaga_agent::spool::Spool;
use siaga_proto::v1::{IcmpResult, sample};

/// RssAnon of this process, MiB.
fn anon_mib() -> f64 {
    siaga_agent::memory::anon_kib() as f64 / 1024.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let before = anon_mib();
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let producers: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let spool = Spool::open(dir.path(), &SpoolConfig::default(), Metrics::default())?;

    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let sink = spool.sink();
        let n = total / producers + usize::from(p < total % producers);
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                let kind = sample::Kind::Icmp(IcmpResult {
                    sent: 3,
                    received: 3,
                    rtt_avg_us: Some(250 + i as u64 % 100),
                    ..Default::default()
                });
                sink.push(format!("dev-{p}"), kind).await?;
            }
            Ok::<_, siaga_agent::error::SpoolError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let push = start.elapsed();
    let st = spool.stats();
    println!(
        "push: {total} samples from {producers} producers in {push:.2?}: {:.0} samples/s durable ({} bytes spooled)",
        total as f64 / push.as_secs_f64(),
        st.bytes
    );
    let full = anon_mib();

    let start = Instant::now();
    let mut cursor = 0;
    let mut drained = 0;
    loop {
        let page = spool.read_after(cursor, 500, 4 << 20).await?;
        let Some(&last) = page.seqs.last() else { break };
        cursor = last;
        drained += page.samples.len();
        spool.ack(page.seqs).await?;
    }
    let drain = start.elapsed();
    println!(
        "drain: {drained} samples read and acknowledged in batches of 500 in {drain:.2?}: {:.0} samples/s",
        drained as f64 / drain.as_secs_f64()
    );
    println!(
        "memory (RssAnon): {before:.1} MiB at start, {full:.1} MiB with the spool full ({:.1} MiB on disk), {:.1} MiB drained",
        std::fs::metadata(spool.path()).map_or(0.0, |m| m.len() as f64 / 1_048_576.0),
        anon_mib()
    );
    assert_eq!(spool.stats().depth, 0);
    spool.close().await?;
    Ok(())
}
