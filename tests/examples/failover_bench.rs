//! Failover time: seconds from `kill -9` of the collector an agent streams
//! to, to the agent's first acknowledged batch on the other collector.
//!
//! Two real collectors (the second a copy of the first one's directory with
//! its own `listen`, each with its embedded store) and one real agent
//! listing both, probing 10 loopback addresses every second. Each round
//! kills the collector the agent is on, waits for the agent's metrics to
//! show it on the other collector with more samples acknowledged than at
//! the kill (polled every 10 ms), then starts the killed collector again.
//! Needs root (ICMP).
//!
//! With `--postgres` it runs the same twice: first with both collectors on
//! one real PostgreSQL cluster of its own (`[store] url`), where it also
//! measures the seconds from the kill to the OPD's lease held by the
//! collector the agent went to (`SELECT holder FROM leases`, polled every
//! 50 ms), then with the embedded stores, and prints both side by side.
//!
//! ```sh
//! cargo run --release -p siaga-tests --example failover_bench -- --kills 10
//! cargo run --release -p siaga-tests --example failover_bench -- --postgres --kills 10
//! ```
//!
//! Run through cargo it first builds the binaries of the same profile
//! (`cargo build --workspace --bins`), unless `SIAGA_BIN_DIR` names others.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use siaga_agent::backoff::Backoff;
use siaga_agent::uplink::{ACK_TIMEOUT, CONNECT_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use siaga_tests::harness::{
    Agent, Collector, Inventory, agent_on_collector, metric_value, secs, set_toml, wait_until,
};
use siaga_tests::postgres::Cluster;

/// Probe cycle of the agent (also its heartbeat interval).
const INTERVAL: &str = "1s";
/// Loopback addresses probed.
const DEVICES: u8 = 10;
/// Longest a failover may take before the round counts as missed.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the lease row is read after a kill.
const LEASE_POLL: Duration = Duration::from_millis(50);

fn usage() -> ! {
    eprintln!("usage: failover_bench [--postgres] [--kills N]   (N: 1..=100, default 10)");
    std::process::exit(64)
}

/// `(kills, postgres)`.
fn parse_args() -> (usize, bool) {
    let mut kills = 10;
    let mut postgres = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--kills" => {
                kills = match args.next().and_then(|v| v.parse().ok()) {
                    Some(n) if (1..=100).contains(&n) => n,
                    _ => usage(),
                }
            }
            "--postgres" => postgres = true,
            _ => usage(),
        }
    }
    (kills, postgres)
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

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// What one mode measured.
struct Figures {
    /// Seconds from the kill to the first acknowledged batch elsewhere.
    acked: Vec<f64>,
    /// Seconds from the kill to the lease held there (PostgreSQL only).
    leased: Vec<f64>,
    missed: usize,
    failovers: f64,
}

/// The `holder` of `opd`'s lease (host/listen/nonce), empty if none.
fn holder(pg: &Cluster, opd: &str) -> Result<String> {
    pg.sql(&format!("SELECT holder FROM leases WHERE opd = '{opd}'"))
}

/// Whether `holder` names the collector listening on `listen`.
fn held_by(holder: &str, c: &Collector) -> bool {
    holder.contains(&format!("/{}/", c.listen))
}

fn print_settings() {
    let backoff = Backoff::reconnect();
    println!("agent settings that govern a failover:");
    println!(
        "  reconnect backoff     {:?} growing to {:?}, {:?} jitter, back to the base once a collector welcomes the agent",
        backoff.base(),
        backoff.cap(),
        backoff.jitter()
    );
    println!(
        "  HTTP/2 keep-alive     ping every {KEEPALIVE_INTERVAL:?}, lost after {KEEPALIVE_TIMEOUT:?} without answer (a host that vanishes)"
    );
    println!("  connect timeout       {CONNECT_TIMEOUT:?}");
    println!("  acknowledgement       stream dropped after {ACK_TIMEOUT:?} without one");
    println!("  heartbeat             every probe cycle ({INTERVAL}), agent → collector");
    println!(
        "  kill -9 on this host closes the collector's sockets: the agent sees the stream reset at once"
    );
    println!();
}

/// Runs `kills` rounds with two collectors on `pg` (or their embedded
/// stores when `None`).
fn run(kills: usize, pg: Option<&Cluster>) -> Result<Figures> {
    let mut inv = Inventory::new(INTERVAL).opd("a");
    for i in 1..=DEVICES {
        inv = inv.device(&format!("a-{i}"), "a", &format!("127.0.0.{i}"));
    }
    let mut first = Collector::init()?;
    first.write_inventory(&inv)?;
    if let Some(pg) = pg {
        set_toml(&first.config, "store.url", pg.url().into())?;
    }
    let cfg = first.enroll_agent("a")?;
    let second = first.copy_as_another()?;
    cfg.set(
        "collector",
        toml::Value::Array(vec![first.url().into(), second.url().into()]),
    )?;
    cfg.set("interval", INTERVAL)?;
    cfg.set("metrics_listen", "127.0.0.1:0")?;
    let mut collectors = [first, second];
    for c in &mut collectors {
        c.serve()?;
    }
    let agent = Agent::start(cfg)?;
    let scrape = || -> Result<String> { agent.metrics() };
    let acked = |m: &str| metric_value(m, "siaga_agent_samples_acked_total").unwrap_or(0.0);
    wait_until(secs(60), "the agent streaming with samples acked", || {
        let m = scrape()?;
        Ok(agent_on_collector(&m).is_some() && acked(&m) > 0.0)
    })?;

    let mut f = Figures {
        acked: Vec::new(),
        leased: Vec::new(),
        missed: 0,
        failovers: 0.0,
    };
    for round in 1..=kills {
        let m = scrape()?;
        let on = agent_on_collector(&m).context("agent on no collector")?;
        let Some(victim) = collectors.iter().position(|c| c.url() == on) else {
            bail!("agent on {on}, not one of ours");
        };
        let other = 1 - victim;
        let other_url = collectors[other].url();
        // Each round starts settled: the lease where the agent streams, so
        // that the figure is a move and not the end of the last one.
        if let Some(pg) = pg {
            let c = &collectors[victim];
            wait_until(secs(30), "the lease where the agent streams", || {
                Ok(held_by(&holder(pg, "a")?, c))
            })?;
        }
        let killed = Instant::now();
        collectors[victim].kill9();
        let before = acked(&scrape()?);
        let mut took = None;
        let mut leased = None;
        let mut last_poll: Option<Instant> = None;
        while killed.elapsed() < ROUND_TIMEOUT {
            if took.is_none() {
                let m = scrape().unwrap_or_default();
                if agent_on_collector(&m).as_deref() == Some(other_url.as_str())
                    && acked(&m) > before
                {
                    took = Some(killed.elapsed().as_secs_f64());
                }
            }
            if let Some(pg) = pg
                && leased.is_none()
                && last_poll.is_none_or(|t| t.elapsed() >= LEASE_POLL)
            {
                last_poll = Some(Instant::now());
                // A failed read (the server busy) is read again next time.
                if held_by(&holder(pg, "a").unwrap_or_default(), &collectors[other]) {
                    leased = Some(killed.elapsed().as_secs_f64());
                }
            }
            if took.is_some() && (pg.is_none() || leased.is_some()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let show = |v: Option<f64>| v.map_or("missed".to_string(), |s| format!("{s:.3} s"));
        match (took, pg) {
            (Some(s), None) => {
                println!(
                    "kill {round:>2}: {s:.3} s to the first acknowledged batch on {other_url}"
                );
            }
            (_, Some(_)) => println!(
                "kill {round:>2}: first acknowledged batch on {other_url} {}, lease there {}",
                show(took),
                show(leased)
            ),
            (None, None) => println!(
                "kill {round:>2}: no acknowledged batch on {other_url} within {ROUND_TIMEOUT:?}"
            ),
        }
        match (took, leased, pg) {
            (Some(s), Some(l), Some(_)) => {
                f.acked.push(s);
                f.leased.push(l);
            }
            (Some(s), _, None) => f.acked.push(s),
            _ => f.missed += 1,
        }
        // The killed collector back, so that the next kill has somewhere to
        // go; the agent stays where it is.
        collectors[victim].restart()?;
    }
    f.failovers = metric_value(&scrape()?, "siaga_agent_uplink_failovers_total").unwrap_or(0.0);
    Ok(f)
}

fn summary(what: &str, f: &Figures, postgres: bool) {
    println!(
        "{what}: kill -9 → first acknowledged batch on the other collector, {} kills: p50 {:.3} s, max {:.3} s, missed {}; agent counted {} failovers",
        f.acked.len() + f.missed,
        pct(&f.acked, 50.0),
        max(&f.acked),
        f.missed,
        f.failovers,
    );
    if postgres {
        println!(
            "{what}: kill -9 → the OPD's lease held by that collector: p50 {:.3} s, max {:.3} s",
            pct(&f.leased, 50.0),
            max(&f.leased),
        );
    }
}

fn main() -> Result<()> {
    let (kills, postgres) = parse_args();
    siaga_tests::harness::build_binaries()?;
    let command = format!(
        "cargo run --release -p siaga-tests --example failover_bench --{} --kills {kills}",
        if postgres { " --postgres" } else { "" }
    );
    print_settings();

    let on_pg = if postgres {
        println!("two collectors on one PostgreSQL ({kills} kills):");
        let pg = Cluster::start()?;
        Some(run(kills, Some(&pg))?)
    } else {
        None
    };
    println!("two collectors, each with its embedded store ({kills} kills):");
    let embedded = run(kills, None)?;

    println!();
    println!("{command}");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at the end: {} (2 shared cores, other builds may run)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(f) = &on_pg {
        summary("PostgreSQL", f, true);
    }
    summary("embedded  ", &embedded, false);
    Ok(())
}
