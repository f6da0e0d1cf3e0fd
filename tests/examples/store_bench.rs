//! Store benchmark: the same batches through `Store::commit` into the
//! embedded store (redb, fsync per commit) and into PostgreSQL (a cluster
//! this run starts itself, `synchronous_commit = on`), in one run; prints
//! durable samples per second of each and their ratio.
//!
//! ```text
//! cargo run --release -p siaga-tests --example store_bench
//! cargo run --release -p siaga-tests --example store_bench -- --samples 1000000 --agents 60 --devices 50
//! ```
//!
//! A province's shape: `--agents` agents (one per OPD) of `--devices`
//! devices each send batches of `--batch` samples (ICMP readings, one per
//! device and second, at today's time); the collector's writer
//! group-commits `--group` batches per transaction. Only the commits are
//! timed (the batches are made before, as sessions make them before the
//! writer sees them). A final round replays the first commit (all
//! duplicates) to show a resend's cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use siaga_collector::store::{IngestBatch, PgStore, RedbStore, Store};
use siaga_proto::v1;
use siaga_tests::postgres::Cluster;

#[derive(Debug)]
struct Args {
    samples: usize,
    agents: usize,
    devices: usize,
    batch: usize,
    group: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        samples: 500_000,
        agents: 60,
        devices: 50,
        batch: 500,
        group: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || -> Result<usize> {
            it.next()
                .with_context(|| format!("{flag} needs a value"))?
                .parse::<usize>()
                .with_context(|| format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--samples" => a.samples = val()?,
            "--agents" => a.agents = val()?.max(1),
            "--devices" => a.devices = val()?.max(1),
            "--batch" => a.batch = val()?.max(1),
            "--group" => a.group = val()?.max(1),
            "-h" | "--help" => {
                println!(
                    "store_bench [--samples 500000] [--agents 60] [--devices 50] [--batch 500] [--group 20]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// The commits of the run: `group` batches each, agents in turn, each
/// agent's sequence numbers and times going up.
fn commits(a: &Args, start_us: i64) -> Vec<Vec<IngestBatch>> {
    let mut next_seq = vec![0u64; a.agents];
    let mut made = 0usize;
    let mut agent = 0usize;
    let mut out = Vec::new();
    while made < a.samples {
        let mut group = Vec::with_capacity(a.group);
        while group.len() < a.group && made < a.samples {
            let n = a.batch.min(a.samples - made);
            let samples: Vec<v1::Sample> = (0..n)
                .map(|_| {
                    let seq = next_seq[agent];
                    next_seq[agent] += 1;
                    let device = seq as usize % a.devices;
                    let second = (seq / a.devices as u64) as i64;
                    v1::Sample {
                        seq,
                        ts_us: start_us + second * 1_000_000 + agent as i64,
                        device: format!("opd{agent:02}-sw{device:02}"),
                        kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
                            sent: 4,
                            received: 4,
                            loss_pct: (seq % 5) as f64 * 25.0,
                            rtt_min_us: Some(900),
                            rtt_avg_us: Some(1_200 + seq % 300),
                            rtt_max_us: Some(2_000),
                            jitter_us: Some(150),
                            ..Default::default()
                        })),
                    }
                })
                .collect();
            group.push(IngestBatch::new(
                format!("opd{agent:02}-agent"),
                start_us,
                Arc::from(samples),
            ));
            made += n;
            agent = (agent + 1) % a.agents;
        }
        out.push(group);
    }
    out
}

struct Run {
    samples: usize,
    stored: u64,
    took: Duration,
    commits: Vec<Duration>,
    replay: Duration,
}

impl Run {
    fn per_s(&self) -> f64 {
        self.samples as f64 / self.took.as_secs_f64()
    }

    fn p(&self, q: f64) -> Duration {
        let mut c = self.commits.clone();
        c.sort();
        let i = ((c.len() as f64 - 1.0) * q).round() as usize;
        c.get(i).copied().unwrap_or_default()
    }
}

fn run(store: &dyn Store, commits: &[Vec<IngestBatch>]) -> Result<Run> {
    let mut r = Run {
        samples: 0,
        stored: 0,
        took: Duration::ZERO,
        commits: Vec::with_capacity(commits.len()),
        replay: Duration::ZERO,
    };
    for group in commits {
        let t = Instant::now();
        let outcomes = store.commit(group, &[])?;
        let d = t.elapsed();
        r.took += d;
        r.commits.push(d);
        r.samples += group.iter().map(|b| b.samples.len()).sum::<usize>();
        r.stored += outcomes.iter().map(|o| u64::from(o.stored)).sum::<u64>();
    }
    if let Some(first) = commits.first() {
        let t = Instant::now();
        let outcomes = store.commit(first, &[])?;
        r.replay = t.elapsed();
        anyhow::ensure!(
            outcomes.iter().all(|o| o.stored == 0),
            "a replay stored samples again"
        );
    }
    Ok(r)
}

fn print(name: &str, r: &Run) {
    println!(
        "{name:<11} {:>9.0} samples/s  ({} samples, {} stored, {} commits in {:.2} s; \
         commit p50 {:.1} ms, p99 {:.1} ms; a replayed commit {:.1} ms)",
        r.per_s(),
        r.samples,
        r.stored,
        r.commits.len(),
        r.took.as_secs_f64(),
        r.p(0.5).as_secs_f64() * 1e3,
        r.p(0.99).as_secs_f64() * 1e3,
        r.replay.as_secs_f64() * 1e3,
    );
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let start_us = chrono::Utc::now().timestamp_micros() - 3_600_000_000;
    let commits = commits(&a, start_us);
    println!(
        "{} samples: {} agents x {} devices, batches of {}, {} batches per commit ({} commits)",
        a.samples,
        a.agents,
        a.devices,
        a.batch,
        a.group,
        commits.len()
    );

    let dir = tempfile::tempdir()?;
    let embedded = RedbStore::open(dir.path())?;
    let e = run(&embedded, &commits)?;
    drop(embedded);

    let pg = Cluster::start()?;
    let mut settings = Vec::new();
    for s in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "full_page_writes",
        "shared_buffers",
        "wal_buffers",
        "max_wal_size",
        "checkpoint_timeout",
    ] {
        settings.push(format!("{s}={}", pg.show(s)?));
    }
    println!("PostgreSQL: {}", settings.join(" "));
    let store = PgStore::open(&pg.url())?;
    let p = run(&store, &commits)?;
    drop(store);

    print("embedded", &e);
    print("PostgreSQL", &p);
    println!(
        "PostgreSQL / embedded: {:.2}",
        p.per_s() / e.per_s().max(f64::MIN_POSITIVE)
    );
    Ok(())
}
