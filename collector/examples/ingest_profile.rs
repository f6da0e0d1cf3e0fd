//! The collector's per-sample costs without the network: the store's group
//! commit and the health engine, fed the samples `ingest_bench` sends (20
//! agents, 5 devices each, batches of 1,000), timed by the thread's CPU
//! clock so that other load on the machine counts little. For profiling
//! (`perf record`, `valgrind --tool=callgrind`) the ingest path piece by piece.
//!
//! ```text
//! cargo run --release -p siaga-collector --example ingest_profile -- [store|health|both] [groups]
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use siaga_collector::health::{Engine, HealthRules, Topology, state::DeviceNode};
use siaga_collector::store::{IngestBatch, RedbStore, Store};
use siaga_proto::v1;

const AGENTS: usize = 20;
const DEVICES: usize = 5;
const BATCH: usize = 1000;
/// Batches per commit group, about what the writer finds queued under load.
const GROUP: usize = 40;

/// CPU time of this thread so far.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = s
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn sample(seq: u64, ts_us: i64, device: &str) -> v1::Sample {
    v1::Sample {
        seq,
        ts_us,
        device: device.to_string(),
        kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
            sent: 3,
            received: 3,
            loss_pct: 0.0,
            rtt_min_us: Some(40),
            rtt_avg_us: Some(50 + seq % 7),
            rtt_median_us: Some(50),
            rtt_max_us: Some(60),
            jitter_us: Some(5),
            ..Default::default()
        })),
    }
}

fn batches(groups: usize) -> Vec<Vec<IngestBatch>> {
    let mut seq = [0u64; AGENTS];
    let t0 = 1_780_000_000_000_000i64;
    let mut out = Vec::new();
    for g in 0..groups {
        let mut group = Vec::new();
        for b in 0..GROUP {
            let a = b % AGENTS;
            let now = t0 + (g * GROUP + b) as i64 * 1000;
            let samples: std::sync::Arc<[v1::Sample]> = (0..BATCH)
                .map(|i| {
                    seq[a] += 1;
                    let dev = format!("opd{a}-dev{}", seq[a] as usize % DEVICES);
                    sample(seq[a], now + i as i64, &dev)
                })
                .collect();
            group.push(IngestBatch::new(format!("opd{a}-agent"), now, samples));
        }
        out.push(group);
    }
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "both".into());
    let groups: usize = args.next().and_then(|g| g.parse().ok()).unwrap_or(25);
    let data = batches(groups);
    let n = (groups * GROUP * BATCH) as f64;
    if what == "store" || what == "both" {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path()).expect("open");
        let mut cpu = Duration::ZERO;
        let warm = groups / 2;
        for (gi, g) in data.iter().enumerate() {
            let c0 = thread_cpu();
            let o = store.commit(g, &[]).expect("commit");
            assert_eq!(o.len(), g.len());
            if gi >= warm {
                cpu += thread_cpu() - c0;
            }
        }
        let n = ((groups - warm) * GROUP * BATCH) as f64;
        println!(
            "store: {:.3} µs CPU/sample over the last {n} samples",
            cpu.as_secs_f64() * 1e6 / n,
        );
    }
    if what == "health" || what == "both" {
        let mut devices = BTreeMap::new();
        for a in 0..AGENTS {
            for d in 0..DEVICES {
                devices.insert(
                    format!("opd{a}-dev{d}"),
                    DeviceNode {
                        opd: format!("opd{a}"),
                        parent: None,
                    },
                );
            }
        }
        let topo = Topology {
            devices,
            links: Vec::new(),
            intervals_us: BTreeMap::new(),
            default_interval_us: 10_000_000,
        };
        let mut engine = Engine::new(HealthRules::default(), topo);
        let c0 = thread_cpu();
        let mut changes = 0usize;
        for g in &data {
            for b in g {
                let opd = b.agent.trim_end_matches("-agent");
                for s in b.samples.iter() {
                    changes += engine.sample(opd, s, b.received_us).changes.len();
                }
            }
        }
        let cpu = thread_cpu() - c0;
        println!(
            "health: {n} samples, {:.3} µs CPU/sample ({changes} changes)",
            cpu.as_secs_f64() * 1e6 / n
        );
    }
}
