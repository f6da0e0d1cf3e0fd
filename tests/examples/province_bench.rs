//! A province on one agent: what does the agent cost, and does it keep up?
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p siaga-tests --example province_bench -- --minutes 10
//! ```
//!
//! One real `siaga-agent` probes `--hosts` lab hosts (default 3,000) over
//! ICMP every `--interval` seconds (default 1 s); `--snmp` of them (default
//! 300) are lab devices each with its own real `snmpd` (SNMP v2c, one
//! network namespace each), polled every `--snmp-interval` seconds
//! (default 10 s). It streams to a real `siaga-collector` on loopback that
//! stores every sample and runs the health engine.
//!
//! After a warm-up (`--warmup`, default 60 s: the first cycles, TLS, the
//! first SNMP walks) it measures for `--minutes` and prints:
//! - the agent's CPU (user + system from /proc/PID/stat) as % of one core,
//!   and the collector's beside it;
//! - the agent's RSS: median and largest of one reading per second, and
//!   the kernel's high-water mark (VmHWM);
//! - samples: the cycles that ran (from the agent's lateness histogram)
//!   against the cycles due in the window, the samples expected (every due
//!   cycle, every device), spooled and acknowledged, and what was lost
//!   (dropped, refused, undeliverable): the goal is that every sample is
//!   acknowledged (within one cycle's samples at the window's two edges);
//! - how late each cycle started against its rhythm
//!   (`siaga_agent_cycle_lateness_seconds`): the bucket holding the 99th
//!   percentile and the share of cycles within 100 ms, and the overruns.
//!
//! Goals (issue "probing at fping's own speed"): CPU < 15 % of one core,
//! RSS < 40 MB, all samples acknowledged, lateness p99 < 100 ms. The bench
//! prints the figures and whether each goal holds; it does not fail on
//! them (these machines are shared and noisy).
//!
//! Needs root (namespaces, raw ICMP) and `snmpd`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use siaga_tests::harness::*;
use siaga_tests::lab::Lab;

#[derive(Debug, Clone)]
struct Args {
    minutes: f64,
    hosts: usize,
    snmp: usize,
    interval: u64,
    snmp_interval: u64,
    warmup: u64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        minutes: 10.0,
        hosts: 3000,
        snmp: 300,
        interval: 1,
        snmp_interval: 10,
        warmup: 60,
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
            "--hosts" => a.hosts = num(val()?)? as usize,
            "--snmp" => a.snmp = num(val()?)? as usize,
            "--interval" => a.interval = num(val()?)? as u64,
            "--snmp-interval" => a.snmp_interval = num(val()?)? as u64,
            "--warmup" => a.warmup = num(val()?)? as u64,
            "-h" | "--help" => {
                println!(
                    "province_bench [--minutes 10] [--hosts 3000] [--snmp 300] [--interval 1] \
                     [--snmp-interval 10] [--warmup 60]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if a.snmp > a.hosts || a.hosts > 60_000 || a.interval == 0 || a.snmp_interval == 0 {
        bail!("--snmp at most --hosts, --hosts at most 60000, intervals at least 1 s");
    }
    if a.minutes <= 0.0 {
        bail!("--minutes must be above 0");
    }
    Ok(a)
}

/// user + system CPU time of a process, seconds.
fn cpu_s(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after ')'.
    let clk = 100.0; // USER_HZ: 100 on Linux for every architecture Debian ships
    (ticks(11) + ticks(12)) / clk
}

/// A field of /proc/PID/status, KiB.
fn status_kib(pid: i32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The value of the sample whose name and labels are exactly `key`.
fn sample(text: &str, key: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == key).then(|| v.parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// The cumulative bucket counts of the lateness histogram of `probe`,
/// by upper bound (`+Inf` as infinity).
fn lateness_buckets(text: &str, probe: &str) -> BTreeMap<u64, (f64, f64)> {
    let mut out = BTreeMap::new();
    let label = format!("probe=\"{probe}\"");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("siaga_agent_cycle_lateness_seconds_bucket{") else {
            continue;
        };
        if !rest.contains(&label) {
            continue;
        }
        let Some(le) = rest.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let count = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0);
        // Keyed by the bound's bits so the map orders by bound (positive floats).
        out.insert(bound.to_bits(), (bound, count));
    }
    out
}

/// Lateness over the window: (cycles, bucket bound holding p99, share of
/// cycles within 100 ms).
fn lateness(before: &str, after: &str, probe: &str) -> (f64, f64, f64) {
    let (b0, b1) = (
        lateness_buckets(before, probe),
        lateness_buckets(after, probe),
    );
    let delta: Vec<(f64, f64)> = b1
        .values()
        .map(|&(bound, n)| {
            let was = b0
                .get(&bound.to_bits())
                .map_or(0.0, |&(_, n0): &(f64, f64)| n0);
            (bound, n - was)
        })
        .collect();
    let total = delta.last().map_or(0.0, |d| d.1);
    let p99 = delta
        .iter()
        .find(|(_, n)| *n >= 0.99 * total)
        .map_or(f64::NAN, |d| d.0);
    let within = delta
        .iter()
        .find(|(b, _)| (*b - 0.1).abs() < 1e-9)
        .map_or(f64::NAN, |d| d.1 / total.max(1.0));
    (total, p99, within)
}

fn inventory(a: &Args, hosts: &[std::net::Ipv4Addr], snmp: &[std::net::Ipv4Addr]) -> String {
    let mut s = format!(
        "interval = \"{}s\"\nsnmp_interval = \"{}s\"\n\n[[opd]]\nid = \"prov\"\nname = \"Provinsi\"\n",
        a.interval, a.snmp_interval
    );
    for (i, addr) in hosts.iter().enumerate() {
        let _ = write!(
            s,
            "\n[[device]]\nid = \"h{i:05}\"\nopd = \"prov\"\nkind = \"server\"\naddress = \"{addr}\"\n"
        );
    }
    for (i, addr) in snmp.iter().enumerate() {
        let _ = write!(
            s,
            "\n[[device]]\nid = \"sw{i:03}\"\nopd = \"prov\"\nkind = \"switch\"\naddress = \"{addr}\"\n\n\
             [device.snmp]\nversion = \"2c\"\ncommunity = \"public\"\n"
        );
    }
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn goal(ok: bool) -> &'static str {
    if ok { "goal holds" } else { "GOAL MISSED" }
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let plain = a.hosts - a.snmp;
    let setup = Instant::now();
    let mut lab = Lab::new()?;
    if plain > 0 {
        lab = lab.hosts("targets", u32::try_from(plain)?);
    }
    for i in 0..a.snmp {
        lab = lab.device(&format!("sw{i}")).snmpd_v2c("public");
    }
    let lab = lab.start()?;
    let hosts: Vec<std::net::Ipv4Addr> = if plain > 0 {
        lab.host_addrs("targets")?.to_vec()
    } else {
        Vec::new()
    };
    let snmp: Vec<std::net::Ipv4Addr> = (0..a.snmp)
        .map(|i| lab.addr(&format!("sw{i}")))
        .collect::<Result<_>>()?;
    println!(
        "province_bench: lab of {plain} hosts and {} snmpd devices set up in {:.1} s; \
         2 shared cores, other builds may run",
        a.snmp,
        setup.elapsed().as_secs_f64()
    );

    let mut c = Collector::init()?;
    c.write_inventory_text(&inventory(&a, &hosts, &snmp))?;
    let agent_cfg = c.enroll_agent("prov")?;
    agent_cfg.set("metrics_listen", "127.0.0.1:0")?;
    c.serve()?;
    let mut agent = Agent::start(agent_cfg)?;
    let pid = agent.pid().context("agent pid")?;
    let cpid = c.pid().context("collector pid")?;
    println!(
        "agent: {} devices, ICMP every {} s (5 echo requests each), {} of them SNMP v2c every {} s; \
         warm-up {} s, then {} min measured",
        a.hosts, a.interval, a.snmp, a.snmp_interval, a.warmup, a.minutes
    );
    std::thread::sleep(Duration::from_secs(a.warmup));
    if !agent.running() {
        bail!("the agent died:\n{}", agent.log_tail(30));
    }

    let m0 = agent.metrics()?;
    let (cpu0, ccpu0, t0) = (cpu_s(pid), cpu_s(cpid), Instant::now());
    let window = Duration::from_secs_f64(a.minutes * 60.0);
    let mut rss = Vec::new();
    let mut next = Instant::now();
    let mut last_print = Instant::now();
    while t0.elapsed() < window {
        if !agent.running() {
            bail!("the agent died:\n{}", agent.log_tail(30));
        }
        rss.push(status_kib(pid, "VmRSS:") as f64 / 1024.0);
        if last_print.elapsed() >= Duration::from_secs(60) {
            println!(
                "  minute {:.0}: agent RSS {:.1} MiB, CPU {:.1} % of a core so far",
                t0.elapsed().as_secs_f64() / 60.0,
                rss.last().copied().unwrap_or(0.0),
                100.0 * (cpu_s(pid) - cpu0) / t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let (cpu1, ccpu1, secs_run) = (cpu_s(pid), cpu_s(cpid), t0.elapsed().as_secs_f64());
    let m1 = agent.metrics()?;
    let hwm = status_kib(pid, "VmHWM:") as f64 / 1024.0;
    // Let the last cycles' samples reach the collector.
    let drain = Instant::now();
    let mut m2 = agent.metrics()?;
    while drain.elapsed() < Duration::from_secs(30)
        && sample(&m2, "siaga_agent_spool_depth") > a.hosts as f64
    {
        std::thread::sleep(Duration::from_secs(1));
        m2 = agent.metrics()?;
    }

    let d = |text: &str, key: &str| sample(text, key) - sample(&m0, key);
    let spooled = d(&m1, "siaga_agent_samples_spooled_total");
    let acked = d(&m1, "siaga_agent_samples_acked_total");
    let lost: f64 = [
        "siaga_agent_samples_dropped_total",
        "siaga_agent_samples_refused_total",
        "siaga_agent_samples_undeliverable_total",
    ]
    .iter()
    .map(|k| d(&m2, k))
    .sum();
    let icmp_ok = d(
        &m1,
        "siaga_agent_probes_total{kind=\"icmp\",outcome=\"ok\"}",
    );
    let icmp_err = d(
        &m1,
        "siaga_agent_probes_total{kind=\"icmp\",outcome=\"error\"}",
    );
    let snmp_ok = d(
        &m1,
        "siaga_agent_probes_total{kind=\"snmp\",outcome=\"ok\"}",
    );
    let snmp_err = d(
        &m1,
        "siaga_agent_probes_total{kind=\"snmp\",outcome=\"error\"}",
    );
    let (icmp_cycles, icmp_p99, icmp_within) = lateness(&m0, &m1, "icmp");
    let (snmp_cycles, snmp_p99, snmp_within) = lateness(&m0, &m1, "snmp");
    let overruns_icmp = d(&m1, "siaga_agent_cycle_overruns_total{probe=\"icmp\"}");
    let overruns_snmp = d(&m1, "siaga_agent_cycle_overruns_total{probe=\"snmp\"}");
    let due_icmp = secs_run / a.interval as f64;
    let due_snmp = secs_run / a.snmp_interval as f64;
    // What the window owes: every cycle due in it, each device once.
    let expected = due_icmp.round() * a.hosts as f64 + due_snmp.round() * a.snmp as f64;
    let cpu = 100.0 * (cpu1 - cpu0) / secs_run;
    let ccpu = 100.0 * (ccpu1 - ccpu0) / secs_run;
    let depth = (
        sample(&m0, "siaga_agent_spool_depth"),
        sample(&m1, "siaga_agent_spool_depth"),
        sample(&m2, "siaga_agent_spool_depth"),
    );
    let rss_med = median(rss.clone());
    let rss_max = rss.iter().copied().fold(0.0f64, f64::max);
    drop(agent);
    drop(c);
    drop(lab);

    println!("\nmeasured {:.1} min", secs_run / 60.0);
    println!(
        "agent CPU  {cpu:.1} % of one core (user+sys)  [{}: < 15 %]; collector {ccpu:.1} %",
        goal(cpu < 15.0)
    );
    println!(
        "agent RSS  median {rss_med:.1} MiB, largest {rss_max:.1} MiB, VmHWM {hwm:.1} MiB  [{}: < 40 MB]",
        goal(hwm * 1.048_576 < 40.0)
    );
    println!(
        "cycles     ICMP {icmp_cycles:.0} of {due_icmp:.1} due, SNMP {snmp_cycles:.0} of {due_snmp:.1} due; \
         overruns ICMP {overruns_icmp:.0}, SNMP {overruns_snmp:.0}"
    );
    println!(
        "probes     ICMP {icmp_ok:.0} answered + {icmp_err:.0} failed, SNMP {snmp_ok:.0} answered + {snmp_err:.0} failed"
    );
    // The window's two edges cut a cycle each: within one cycle's samples
    // of what was due counts as all.
    let slack = a.hosts as f64;
    println!(
        "samples    expected {expected:.0} (every due cycle, every device); spooled {spooled:.0}; \
         acknowledged {acked:.0} = {:.2} % of expected (spool depth {:.0} at the start, {:.0} at the end, \
         {:.0} after {:.0} s more); lost {lost:.0}  [{}: all, within one cycle at the window's edges]",
        100.0 * acked / expected.max(1.0),
        depth.0,
        depth.1,
        depth.2,
        drain.elapsed().as_secs_f64(),
        goal(lost == 0.0 && acked + slack >= expected && depth.2 <= slack)
    );
    let share = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{:.2} %", 100.0 * v)
        }
    };
    println!(
        "lateness   ICMP p99 <= {icmp_p99} s, {} of cycles within 100 ms  [{}: < 100 ms]",
        share(icmp_within),
        goal(icmp_p99 <= 0.1)
    );
    println!(
        "           SNMP p99 <= {snmp_p99} s, {} of cycles within 100 ms  [{}: < 100 ms]",
        share(snmp_within),
        goal(snmp_p99 <= 0.1)
    );
    Ok(())
}
