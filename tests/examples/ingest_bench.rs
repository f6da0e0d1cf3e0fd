//! Collector ingest benchmark: K simulated agents stream samples over mTLS
//! into a real `siaga-collector serve` with its durable redb store.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p siaga-tests --example ingest_bench -- --agents 20 --seconds 10
//! ```
//!
//! Each agent is enrolled for its own OPD (with a few loopback devices in
//! `inventory.toml`), speaks `siaga.v1` with its own certificate, and keeps
//! up to `--window` batches of `--batch` samples in flight. It prints the
//! acknowledged samples per second and the acknowledgement latency of a
//! batch (send to ack) at p50/p99.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use siaga_proto::v1::{AgentMessage, Hello, SampleBatch, agent_message, collector_message};
use siaga_tests::harness::*;
use tokio::sync::{Mutex, Semaphore};

#[derive(Debug)]
struct Args {
    agents: usize,
    seconds: u64,
    batch: usize,
    window: usize,
    devices: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        agents: 20,
        seconds: 10,
        batch: 1000,
        window: 4,
        devices: 5,
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
            "--agents" => a.agents = val()?,
            "--seconds" => a.seconds = val()? as u64,
            "--batch" => a.batch = val()?,
            "--window" => a.window = val()?,
            "--devices" => a.devices = val()?,
            "-h" | "--help" => {
                println!(
                    "ingest_bench [--agents 20] [--seconds 10] [--batch 1000] [--window 4] [--devices 5]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if a.agents == 0 || a.batch == 0 || a.window == 0 || a.devices == 0 || a.seconds == 0 {
        bail!("every number must be at least 1");
    }
    Ok(a)
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

struct Shared {
    running: AtomicBool,
    acked: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
}

async fn run_agent(
    tls: Tls,
    id: String,
    opd: String,
    devices: Vec<String>,
    args: Arc<Args>,
    shared: Arc<Shared>,
    start: Arc<tokio::sync::Barrier>,
) -> Result<()> {
    let ch = tls.channel().await?;
    let mut client = siaga_proto::v1::uplink_client::UplinkClient::new(ch)
        .max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(siaga_proto::MAX_MESSAGE_BYTES);
    let (tx, rx) = tokio::sync::mpsc::channel::<AgentMessage>(args.window + 2);
    tx.send(AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            protocol_major: siaga_proto::PROTOCOL_MAJOR,
            protocol_minor: siaga_proto::PROTOCOL_MINOR,
            agent_version: "ingest-bench".into(),
            agent_id: id.clone(),
            opd,
            hostname: "bench".into(),
            ..Default::default()
        })),
    })
    .await
    .map_err(|_| anyhow!("stream closed"))?;
    let mut incoming = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();

    let window = Arc::new(Semaphore::new(args.window));
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();

    // Acknowledgements.
    let reader = {
        let (window, sent_at, shared) = (window.clone(), sent_at.clone(), shared.clone());
        let batch = args.batch as u32;
        tokio::spawn(async move {
            while let Some(m) = incoming.message().await? {
                match m.msg {
                    Some(collector_message::Msg::Ack(a)) => {
                        let t0 = sent_at.lock().await.remove(&a.batch_id);
                        if a.stored != batch {
                            bail!("batch {} acknowledged with {a:?}", a.batch_id);
                        }
                        if let Some(t0) = t0 {
                            shared.latencies.lock().await.push(t0.elapsed());
                        }
                        shared.acked.fetch_add(a.stored as u64, Ordering::Relaxed);
                        window.add_permits(1);
                    }
                    Some(collector_message::Msg::Refusal(r)) => bail!("refused: {}", r.reason),
                    _ => {}
                }
            }
            anyhow::Ok(())
        })
    };

    start.wait().await;
    let mut seq = 0u64;
    let mut batch_id = 0u64;
    while shared.running.load(Ordering::Relaxed) {
        window.acquire().await?.forget();
        batch_id += 1;
        let now = now_us();
        let samples = (0..args.batch)
            .map(|i| {
                seq += 1;
                icmp_sample(seq, now + i as i64, &devices[seq as usize % devices.len()])
            })
            .collect();
        sent_at.lock().await.insert(batch_id, Instant::now());
        tx.send(AgentMessage {
            msg: Some(agent_message::Msg::Batch(SampleBatch { batch_id, samples })),
        })
        .await
        .map_err(|_| anyhow!("{id}: stream closed"))?;
    }
    // Wait for what is in flight, then close.
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        window.acquire_many(args.window as u32),
    )
    .await;
    drop(tx);
    reader.abort();
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let args = Arc::new(parse_args()?);
    eprintln!("setting up a collector and {} agents ...", args.agents);
    let mut c = Collector::init()?;
    let mut inv = Inventory::new("10s");
    let mut devices = Vec::new();
    for a in 0..args.agents {
        let opd = format!("opd{a}");
        inv = inv.opd(&opd);
        let mut ds = Vec::new();
        for d in 0..args.devices {
            let id = format!("{opd}-dev{d}");
            inv = inv.device(&id, &opd, &format!("127.0.{}.{}", a % 250, d % 250 + 1));
            ds.push(id);
        }
        devices.push(ds);
    }
    c.write_inventory(&inv)?;
    let mut agents = Vec::new();
    for a in 0..args.agents {
        agents.push(c.enroll_agent(&format!("opd{a}"))?);
    }
    c.env("RUST_LOG", "warn");
    c.serve()?;
    let pid = c.pid().context("collector not running")?;

    let rt = runtime()?;
    let shared = Arc::new(Shared {
        running: AtomicBool::new(true),
        acked: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
    });
    let barrier = Arc::new(tokio::sync::Barrier::new(args.agents + 1));
    let mut tasks = Vec::new();
    for (cfg, ds) in agents.iter().zip(devices) {
        tasks.push(rt.spawn(run_agent(
            cfg.tls()?,
            cfg.id.clone(),
            cfg.opd.clone(),
            ds,
            args.clone(),
            shared.clone(),
            barrier.clone(),
        )));
    }
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), barrier.wait()).await })
        .map_err(|_| anyhow!("agents did not connect within 60 s:\n{}", c.log_tail(20)))?;
    let t0 = Instant::now();
    let cpu0 = cpu_ticks(pid);
    let mut last = 0;
    for s in 1..=args.seconds {
        std::thread::sleep(Duration::from_secs(1));
        let now = shared.acked.load(Ordering::Relaxed);
        eprintln!("  {s:>3}s  {:>9} samples/s", now - last);
        last = now;
    }
    let elapsed = t0.elapsed();
    let acked = shared.acked.load(Ordering::Relaxed);
    let cpu1 = cpu_ticks(pid);
    shared.running.store(false, Ordering::Relaxed);
    for t in tasks {
        rt.block_on(t)??;
    }
    let mut lat = rt.block_on(async { shared.latencies.lock().await.clone() });
    lat.sort_unstable();
    let tick = 100.0; // USER_HZ on Linux
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => format!("{:.2}", (b - a) as f64 / tick / elapsed.as_secs_f64()),
        _ => "?".into(),
    };
    println!(
        "agents {}  batch {}  window {}  duration {:.1}s",
        args.agents,
        args.batch,
        args.window,
        elapsed.as_secs_f64()
    );
    println!(
        "acknowledged {acked} samples: {:.0} samples/s",
        acked as f64 / elapsed.as_secs_f64()
    );
    println!(
        "ack latency per batch: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} batches)",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        lat.len()
    );
    println!(
        "collector CPU: {cpu} cores; data dir {:.1} MiB",
        dir_size(&c.data_dir) as f64 / (1024.0 * 1024.0)
    );
    if !c.stop() {
        eprintln!("warning: the collector did not exit cleanly on SIGTERM");
    }
    Ok(())
}
