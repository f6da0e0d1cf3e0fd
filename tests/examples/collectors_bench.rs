//! A province on two collectors sharing one PostgreSQL against the same
//! province on one collector with its embedded store, in the same run.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p siaga-tests --example collectors_bench -- --minutes 10
//! ```
//!
//! The load: `--agents` synthetic agents (default 60), each enrolled for an
//! OPD of its own with `--devices` devices (default 50), speaking `siaga.v1`
//! over the real uplink with its own certificate (real mTLS): every second
//! one batch of one ICMP sample per device and a heartbeat, the agents'
//! cycles spread over the second (3,000 samples/s by default). With
//! PostgreSQL the agents are split over the two collectors (even ones on
//! the first, odd ones on the second); each collector holds the leases of
//! the OPDs streaming to it.
//!
//! After `--warmup` seconds (default 30) it measures for `--minutes`
//! (default 10):
//! - CPU (user + system from /proc/PID/stat) as % of one core of each
//!   collector and of the PostgreSQL server (the postmaster and its
//!   children, `pgrep -P`; a child's time counts up to its last reading,
//!   one per second);
//! - memory: the median of one reading per second of each collector's RSS
//!   and of the PostgreSQL processes' PSS summed (PSS, not RSS: the shared
//!   buffers every backend maps are counted once);
//! - ack latency: from sending a batch to its `Ack`, p50 and p99;
//! - fault → ticket: `--faults` times (default 3) a device's samples turn
//!   to 100 % loss, and `siaga tickets --json` (as an admin, polled every
//!   200 ms) is read until its ticket shows; p50 and max.
//!
//! Beside the synthetic load, `--real` real `siaga-agent` processes
//! (default 2), each for an OPD of its own probing `--real-devices` devices
//! of the lab (network namespaces, so the bench runs as root) over real
//! ICMP at a 1 s interval, listing both collectors (the first agent the
//! first collector first, the second the second). In the window each real
//! agent's first device has its cable cut once (`ip link set down` in its
//! namespace), timed like the synthetic faults to its ticket, and joined
//! again: faults found by the whole path (probe, hysteresis, ticket), not
//! only by the collector's engine.
//!
//! Then it prints both side by side with their ratios. It does not fail on
//! the figures: these machines are shared (the load average is printed).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use siaga_tests::harness::*;
use siaga_tests::lab::Lab;
use siaga_tests::postgres::Cluster;

/// How often `siaga tickets --json` is read while a fault waits for its ticket.
const TICKET_POLL: Duration = Duration::from_millis(200);
/// Longest a fault may wait for its ticket before it counts as missed.
const TICKET_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Args {
    minutes: f64,
    warmup: u64,
    agents: usize,
    devices: usize,
    faults: usize,
    real: usize,
    real_devices: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        minutes: 10.0,
        warmup: 30,
        agents: 60,
        devices: 50,
        faults: 3,
        real: 2,
        real_devices: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        let num = |v: String| -> Result<f64> {
            v.parse::<f64>()
                .with_context(|| format!("{flag}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--minutes" => a.minutes = num(val()?)?,
            "--warmup" => a.warmup = num(val()?)? as u64,
            "--agents" => a.agents = num(val()?)? as usize,
            "--devices" => a.devices = num(val()?)? as usize,
            "--faults" => a.faults = num(val()?)? as usize,
            "--real" => a.real = num(val()?)? as usize,
            "--real-devices" => a.real_devices = num(val()?)? as usize,
            "-h" | "--help" => {
                println!(
                    "collectors_bench [--minutes 10] [--warmup 30] [--agents 60] [--devices 50] [--faults 3] [--real 2] [--real-devices 3]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if !(a.minutes > 0.0 && a.minutes <= 600.0) {
        bail!("--minutes must be above 0 and at most 600");
    }
    if !(2..=250).contains(&a.agents) || !(1..=250).contains(&a.devices) {
        bail!("--agents must be 2..=250 and --devices 1..=250");
    }
    if a.real > 8 || !(1..=8).contains(&a.real_devices) {
        bail!("--real must be 0..=8 and --real-devices 1..=8");
    }
    if a.faults == 0 || a.faults > a.agents {
        bail!("--faults must be 1..=--agents (one device of a different agent each)");
    }
    Ok(a)
}

/// user + system CPU time of a process, seconds (`None`: gone).
fn cpu_s(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after ')'.
    // USER_HZ is 100 on Linux for every architecture Debian ships.
    Some((ticks(11) + ticks(12)) / 100.0)
}

/// A `Name:   N kB` line of a /proc file, KiB.
fn proc_kib(path: &str, name: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The postmaster and its children.
fn pg_pids(postmaster: u32) -> Vec<i32> {
    let mut pids = vec![postmaster as i32];
    if let Ok(out) = std::process::Command::new("pgrep")
        .args(["-P", &postmaster.to_string()])
        .output()
    {
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    pids
}

/// Nearest-rank percentile.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank - 1]
}

/// What the synthetic agents share with the bench.
struct Shared {
    running: AtomicBool,
    /// Whether ack latencies and samples count (the measured window).
    measuring: AtomicBool,
    /// Agents that got their `Welcome`.
    connected: AtomicU64,
    acked: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
    /// Devices whose samples report 100 % loss.
    faulty: Mutex<HashSet<String>>,
    errors: Mutex<Vec<String>>,
}

/// One ICMP sample of `device`: all answered, or (faulty) none.
fn sample(seq: u64, ts_us: i64, device: &str, faulty: bool) -> siaga_proto::v1::Sample {
    let mut s = icmp_sample(seq, ts_us, device);
    if faulty && let Some(siaga_proto::v1::sample::Kind::Icmp(r)) = &mut s.kind {
        r.received = 0;
        r.loss_pct = 100.0;
        r.rtt_min_us = None;
        r.rtt_avg_us = None;
        r.rtt_median_us = None;
        r.rtt_max_us = None;
        r.jitter_us = None;
    }
    s
}

/// One synthetic agent: a batch and a heartbeat every second from `first`.
async fn run_agent(
    tls: Tls,
    cfg: AgentConfig,
    devices: Vec<String>,
    first: tokio::time::Instant,
    shared: Arc<Shared>,
) -> Result<()> {
    let mut up = Uplink::open_as(&tls, &cfg.id, &cfg.opd, "collectors-bench").await?;
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let mut tick = tokio::time::interval_at(first, Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    while shared.running.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = now_us();
        let faulty = shared
            .faulty
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        let batch: Vec<_> = devices
            .iter()
            .map(|d| {
                seq += 1;
                sample(seq, now, d, faulty.contains(d))
            })
            .collect();
        let sent = Instant::now();
        let ack = up.send(batch).await?;
        let ms = sent.elapsed().as_secs_f64() * 1000.0;
        if shared.measuring.load(Ordering::Relaxed) {
            shared
                .acked
                .fetch_add(u64::from(ack.stored), Ordering::Relaxed);
            if let Ok(mut l) = shared.latencies_ms.lock() {
                l.push(ms);
            }
        }
        up.heartbeat(now_us()).await?;
    }
    Ok(())
}

/// The figures of one setup.
struct Figures {
    /// Per collector: CPU % of one core.
    cpu: Vec<f64>,
    /// PostgreSQL's CPU % of one core, if it ran.
    pg_cpu: Option<f64>,
    /// Per collector: median RSS, MiB.
    rss: Vec<f64>,
    /// PostgreSQL's median PSS summed over its processes, MiB.
    pg_pss: Option<f64>,
    acks_ms: Vec<f64>,
    tickets_s: Vec<f64>,
    missed_tickets: usize,
    samples_per_s: f64,
    errors: Vec<String>,
}

fn tickets_for(root: &Siaga, device: &str) -> Result<bool> {
    let v: Value = root.json(&["tickets", "--json"])?;
    Ok(v.as_array()
        .is_some_and(|a| a.iter().any(|t| t["device"] == device)))
}

/// Runs the load on `collectors` (their PostgreSQL `pg`, if any) and
/// measures. `cfgs[i]` streams to `collectors[i % collectors.len()]`.
fn measure(
    a: &Args,
    collectors: &[Collector],
    cfgs: &[AgentConfig],
    root: &Siaga,
    pg: Option<&Cluster>,
    lab: Option<&Lab>,
) -> Result<Figures> {
    let rt = runtime()?;
    let shared = Arc::new(Shared {
        running: AtomicBool::new(true),
        measuring: AtomicBool::new(false),
        connected: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        latencies_ms: Mutex::new(Vec::new()),
        faulty: Mutex::new(HashSet::new()),
        errors: Mutex::new(Vec::new()),
    });
    let start = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for (i, cfg) in cfgs.iter().enumerate() {
        let mut tls = cfg.tls()?;
        tls.url = collectors[i % collectors.len()].url();
        let devices = (0..a.devices).map(|d| device_id(i, d)).collect();
        // Spread over the second, as real agents started at random times are.
        let first = start + Duration::from_millis((i * 1000 / cfgs.len()) as u64);
        let shared2 = shared.clone();
        let cfg = cfg.clone();
        tasks.push(rt.spawn(async move {
            if let Err(e) = run_agent(tls, cfg.clone(), devices, first, shared2.clone()).await
                && let Ok(mut errs) = shared2.errors.lock()
            {
                errs.push(format!("agent {}: {e:#}", cfg.opd));
            }
        }));
    }
    wait_until(secs(60), "every synthetic agent welcomed", || {
        Ok(shared.connected.load(Ordering::Relaxed) == cfgs.len() as u64)
    })?;
    std::thread::sleep(Duration::from_secs(a.warmup));

    let cpids: Vec<i32> = collectors
        .iter()
        .map(|c| c.pid().context("a collector is not running"))
        .collect::<Result<_>>()?;
    let postmaster = pg.map(Cluster::pid).transpose()?;
    // PostgreSQL's processes come and go: each one's CPU time at its first
    // and last reading in the window.
    let mut pg_cpu: BTreeMap<i32, (f64, f64)> = BTreeMap::new();
    let read_pg = |pg_cpu: &mut BTreeMap<i32, (f64, f64)>, first: bool| -> f64 {
        let Some(pm) = postmaster else { return 0.0 };
        let mut pss_kib = 0;
        for pid in pg_pids(pm) {
            if let Some(t) = cpu_s(pid) {
                // A child born in the window starts from zero.
                let e = pg_cpu
                    .entry(pid)
                    .or_insert((if first { t } else { 0.0 }, t));
                e.1 = t;
            }
            pss_kib += proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:");
        }
        pss_kib as f64 / 1024.0
    };
    let c0: Vec<f64> = cpids.iter().map(|p| cpu_s(*p).unwrap_or(0.0)).collect();
    read_pg(&mut pg_cpu, true);
    shared.measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    let window = Duration::from_secs_f64(a.minutes * 60.0);

    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); cpids.len()];
    let mut pss = Vec::new();
    let mut tickets_s = Vec::new();
    let mut missed_tickets = 0;
    let mut next_fault = 0usize;
    // The synthetic faults, then one cable cut per real agent.
    let real = if lab.is_some() { a.real } else { 0 };
    let faults = a.faults + real;
    // A fault in the middle of each of `faults` equal slices of the window.
    let fault_at = |k: usize| window.mul_f64((k as f64 + 0.5) / faults as f64);
    let mut tick = Instant::now();
    while t0.elapsed() < window {
        for (i, pid) in cpids.iter().enumerate() {
            rss[i].push(proc_kib(&format!("/proc/{pid}/status"), "VmRSS:") as f64 / 1024.0);
        }
        pss.push(read_pg(&mut pg_cpu, false));
        if next_fault < faults && t0.elapsed() >= fault_at(next_fault) {
            // Agents in turn, so that with two collectors both judge faults.
            let cut = (next_fault >= a.faults).then(|| lab_name(next_fault - a.faults, 0));
            let device = match &cut {
                Some(_) => real_device_id(next_fault - a.faults, 0),
                None => device_id(next_fault, 0),
            };
            next_fault += 1;
            match (&cut, lab) {
                (Some(name), Some(lab)) => lab.set_link_down(name, "eth0")?,
                _ => {
                    shared
                        .faulty
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .insert(device.clone());
                }
            }
            let faulted = Instant::now();
            let mut seen = None;
            while faulted.elapsed() < TICKET_TIMEOUT {
                if tickets_for(root, &device)? {
                    seen = Some(faulted.elapsed().as_secs_f64());
                    break;
                }
                std::thread::sleep(TICKET_POLL);
            }
            match (&cut, lab) {
                (Some(name), Some(lab)) => lab.set_link_up(name, "eth0")?,
                _ => {
                    shared
                        .faulty
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .remove(&device);
                }
            }
            match seen {
                Some(s) => {
                    let how = if cut.is_some() {
                        "cable cut, real agent"
                    } else {
                        "synthetic"
                    };
                    println!("  fault on {device} ({how}): ticket shown after {s:.2} s");
                    tickets_s.push(s);
                }
                None => {
                    println!("  fault on {device}: no ticket within {TICKET_TIMEOUT:?}");
                    missed_tickets += 1;
                }
            }
        }
        tick += Duration::from_secs(1);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = cpids
        .iter()
        .zip(&c0)
        .map(|(p, c)| 100.0 * (cpu_s(*p).unwrap_or(*c) - c) / elapsed)
        .collect();
    read_pg(&mut pg_cpu, false);
    let pg_total = pg_cpu.values().map(|(a, b)| b - a).sum::<f64>();
    shared.running.store(false, Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(tasks);

    let median = |v: &[f64]| pct(v, 50.0);
    let acks_ms = shared
        .latencies_ms
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let errors = shared
        .errors
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(Figures {
        cpu,
        pg_cpu: postmaster.map(|_| 100.0 * pg_total / elapsed),
        rss: rss.iter().map(|v| median(v)).collect(),
        pg_pss: postmaster.map(|_| median(&pss)),
        acks_ms,
        tickets_s,
        missed_tickets,
        samples_per_s: shared.acked.load(Ordering::Relaxed) as f64 / elapsed,
        errors,
    })
}

fn device_id(agent: usize, device: usize) -> String {
    format!("o{agent:03}-d{device:03}")
}

/// The lab device `k` of real agent `j`: its name in the lab.
fn lab_name(j: usize, k: usize) -> String {
    format!("r{j}d{k}")
}

/// Its device id in the inventory (OPD `rl{j}`).
fn real_device_id(j: usize, k: usize) -> String {
    format!("rl{j}-d{k}")
}

fn inventory(a: &Args, lab: Option<&Lab>) -> Result<String> {
    let mut s = String::from("interval = \"1s\"\n");
    if let Some(lab) = lab {
        for j in 0..a.real {
            s.push_str(&format!(
                "\n[[opd]]\nid = \"rl{j}\"\nname = \"Lab OPD {j}\"\n"
            ));
            for k in 0..a.real_devices {
                s.push_str(&format!(
                    "\n[[device]]\nid = \"{}\"\nopd = \"rl{j}\"\nkind = \"switch\"\naddress = \"{}\"\n",
                    real_device_id(j, k),
                    lab.addr(&lab_name(j, k))?
                ));
            }
        }
    }
    for i in 0..a.agents {
        s.push_str(&format!(
            "\n[[opd]]\nid = \"o{i:03}\"\nname = \"OPD {i}\"\n"
        ));
    }
    for i in 0..a.agents {
        for d in 0..a.devices {
            // Never probed (the agents are synthetic): any distinct address.
            s.push_str(&format!(
                "\n[[device]]\nid = \"{}\"\nopd = \"o{i:03}\"\nkind = \"server\"\naddress = \"10.{}.{}.{}\"\n",
                device_id(i, d),
                i / 250,
                i % 250,
                d + 1
            ));
        }
    }
    Ok(s)
}

/// Sets up `n` collectors (on `pg`, or one with its embedded store) and
/// measures them.
fn setup(a: &Args, pg: Option<&Cluster>, lab: Option<&Lab>) -> Result<Figures> {
    let mut first = Collector::init()?;
    first.write_inventory_text(&inventory(a, lab)?)?;
    if let Some(pg) = pg {
        set_toml(&first.config, "store.url", pg.url().into())?;
    }
    let root = first.enroll_user("root", "admin")?;
    let cfgs: Vec<AgentConfig> = (0..a.agents)
        .map(|i| first.enroll_agent(&format!("o{i:03}")))
        .collect::<Result<_>>()?;
    let real_cfgs: Vec<AgentConfig> = match lab {
        Some(_) => (0..a.real)
            .map(|j| first.enroll_agent(&format!("rl{j}")))
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let mut collectors = vec![first];
    if pg.is_some() {
        let second = collectors[0].copy_as_another()?;
        collectors.push(second);
    }
    for c in &mut collectors {
        c.serve()?;
    }
    let mut real = Vec::new();
    for (j, cfg) in real_cfgs.into_iter().enumerate() {
        let n = collectors.len();
        let urls: Vec<toml::Value> = (0..n)
            .map(|i| collectors[(i + j) % n].url().into())
            .collect();
        cfg.set("collector", toml::Value::Array(urls))?;
        cfg.set("interval", "1s")?;
        real.push(Agent::start(cfg)?);
    }
    let figures = measure(a, &collectors, &cfgs, &root, pg, lab);
    drop(real);
    figures
}

fn ratio(x: f64, y: f64) -> String {
    if x.is_finite() && y.is_finite() && y > 0.0 {
        format!("{:.2}×", x / y)
    } else {
        "-".into()
    }
}

fn main() -> Result<()> {
    let a = parse_args()?;
    build_binaries()?;
    let command = format!(
        "cargo run --release -p siaga-tests --example collectors_bench -- --minutes {} --warmup {} --agents {} --devices {} --faults {} --real {} --real-devices {}",
        a.minutes, a.warmup, a.agents, a.devices, a.faults, a.real, a.real_devices
    );
    let lab = if a.real > 0 {
        let mut b = Lab::new()?;
        for j in 0..a.real {
            for k in 0..a.real_devices {
                b = b.device(&lab_name(j, k));
            }
        }
        Some(b.start()?)
    } else {
        None
    };
    println!(
        "collectors_bench: {} synthetic agents × {} devices at a 1 s cycle = {} samples/s, \
         and {} real agents × {} lab devices; warm-up {} s, then {} min measured per setup{}",
        a.agents,
        a.devices,
        a.agents * a.devices,
        a.real,
        a.real_devices,
        a.warmup,
        a.minutes,
        if a.minutes < 10.0 {
            " (shorter than the default 10 min)"
        } else {
            ""
        }
    );
    println!("two collectors on one PostgreSQL:");
    let pg_figs = {
        let pg = Cluster::start()?;
        setup(&a, Some(&pg), lab.as_ref())?
    };
    println!("one collector with its embedded store:");
    let emb = setup(&a, None, lab.as_ref())?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!();
    println!("{command}");
    println!(
        "load average at the end: {} (2 shared cores, other builds may run)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let pc = pg_figs.cpu.iter().sum::<f64>();
    let pgc = pg_figs.pg_cpu.unwrap_or(0.0);
    let ec = emb.cpu.iter().sum::<f64>();
    let pr = pg_figs.rss.iter().sum::<f64>();
    let er = emb.rss.iter().sum::<f64>();
    let pss = pg_figs.pg_pss.unwrap_or(0.0);
    let row = |name: &str, x: String, y: String, r: String| {
        println!("{name:<34} {x:>26} {y:>18} {r:>8}");
    };
    row(
        "",
        "2 collectors + PostgreSQL".into(),
        "1 coll., embedded".into(),
        "ratio".into(),
    );
    row(
        "samples acknowledged per s",
        format!("{:.0}", pg_figs.samples_per_s),
        format!("{:.0}", emb.samples_per_s),
        ratio(pg_figs.samples_per_s, emb.samples_per_s),
    );
    row(
        "CPU collectors, % of one core",
        format!(
            "{pc:.1} ({})",
            pg_figs
                .cpu
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        format!("{ec:.1}"),
        ratio(pc, ec),
    );
    row(
        "CPU PostgreSQL, % of one core",
        format!("{pgc:.1}"),
        "-".into(),
        "".into(),
    );
    row(
        "CPU in all, % of one core",
        format!("{:.1}", pc + pgc),
        format!("{ec:.1}"),
        ratio(pc + pgc, ec),
    );
    row(
        "RSS collectors (median), MiB",
        format!(
            "{pr:.1} ({})",
            pg_figs
                .rss
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        format!("{er:.1}"),
        ratio(pr, er),
    );
    row(
        "PSS PostgreSQL (median), MiB",
        format!("{pss:.1}"),
        "-".into(),
        "".into(),
    );
    row(
        "memory in all, MiB",
        format!("{:.1}", pr + pss),
        format!("{er:.1}"),
        ratio(pr + pss, er),
    );
    for (name, p) in [("ack latency p50, ms", 50.0), ("ack latency p99, ms", 99.0)] {
        let (x, y) = (pct(&pg_figs.acks_ms, p), pct(&emb.acks_ms, p));
        row(name, format!("{x:.1}"), format!("{y:.1}"), ratio(x, y));
    }
    let (x, y) = (pct(&pg_figs.tickets_s, 50.0), pct(&emb.tickets_s, 50.0));
    row(
        "fault → ticket p50, s",
        format!("{x:.2}"),
        format!("{y:.2}"),
        ratio(x, y),
    );
    let mx = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    row(
        "fault → ticket max, s (missed)",
        format!("{:.2} ({})", mx(&pg_figs.tickets_s), pg_figs.missed_tickets),
        format!("{:.2} ({})", mx(&emb.tickets_s), emb.missed_tickets),
        "".into(),
    );
    for e in pg_figs.errors.iter().chain(&emb.errors) {
        println!("error: {e}");
    }
    Ok(())
}
