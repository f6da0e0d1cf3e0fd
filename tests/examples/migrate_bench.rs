//! Migration benchmark: an embedded store of `--samples` samples moved
//! into PostgreSQL (a cluster this run starts itself) by the real
//! `siaga-collector migrate`; prints its summary (samples per second of
//! the copy, the time of the check) and the whole command's time.
//!
//! ```text
//! cargo run --release -p siaga-tests --example migrate_bench
//! cargo run --release -p siaga-tests --example migrate_bench -- --samples 1000000 --devices 3000
//! ```
//!
//! The store is filled through `Store::commit` as ingest fills it: ICMP
//! readings of `--devices` devices, one per device and 10 s, spread over
//! 60 agents, 10,000 samples per commit.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use siaga_collector::store::{IngestBatch, RedbStore, Store};
use siaga_tests::harness::{bin, build_binaries, icmp_sample, now_us};
use siaga_tests::postgres::Cluster;

fn main() -> Result<()> {
    let (mut samples, mut devices) = (1_000_000usize, 3_000usize);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || -> Result<usize> {
            it.next()
                .with_context(|| format!("{flag} needs a value"))?
                .parse::<usize>()
                .with_context(|| format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--samples" => samples = val()?,
            "--devices" => devices = val()?.max(1),
            "-h" | "--help" => {
                println!("migrate_bench [--samples 1000000] [--devices 3000]");
                return Ok(());
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    build_binaries()?;
    let dir = tempfile::Builder::new()
        .prefix("siaga-migrate-bench-")
        .tempdir()?;
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        "# the benchmark's collector\nlisten = \"127.0.0.1:1\"\ndata_dir = \"data\"\n",
    )?;

    let filling = Instant::now();
    {
        let store = RedbStore::open(&dir.path().join("data"))?;
        let agents = 60;
        let rounds = samples.div_ceil(devices);
        let start = now_us() - rounds as i64 * 10_000_000;
        let mut made = 0;
        let mut seq = vec![0u64; agents];
        let mut commit = Vec::new();
        let mut in_commit = 0;
        'fill: for round in 0..rounds {
            let ts = start + round as i64 * 10_000_000;
            for (a, next) in seq.iter_mut().enumerate() {
                let mine: Vec<_> = (a..devices)
                    .step_by(agents)
                    .take(samples - made)
                    .map(|d| {
                        *next += 1;
                        icmp_sample(*next, ts + d as i64, &format!("dev-{d:05}"))
                    })
                    .collect();
                made += mine.len();
                in_commit += mine.len();
                commit.push(IngestBatch::new(
                    format!("agent-{a:02}"),
                    ts,
                    Arc::from(mine),
                ));
                if in_commit >= 10_000 || made >= samples {
                    store.commit(&commit, &[])?;
                    commit.clear();
                    in_commit = 0;
                }
                if made >= samples {
                    break 'fill;
                }
            }
        }
        if !commit.is_empty() {
            store.commit(&commit, &[])?;
        }
    }
    println!(
        "filled the embedded store: {samples} samples of {devices} devices in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    let pg = Cluster::start()?;
    let exe = bin("siaga-collector")?;
    let started = Instant::now();
    let out = std::process::Command::new(&exe)
        .args(["migrate", "--config"])
        .arg(&config)
        .args(["--to", &pg.url()])
        .output()?;
    let took = started.elapsed().as_secs_f64();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "migrate failed: {}", out.status);
    println!(
        "the whole command (open, copy, check, config): {took:.1} s, {:.0} samples/s; \
         PostgreSQL {}",
        samples as f64 / took,
        pg.sql("SHOW server_version")?
    );
    Ok(())
}
