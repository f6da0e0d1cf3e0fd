//! Fault → ticket latency in the lab: how long after a fault is applied the
//! helpdesk can see its ticket with `siaga tickets --json`, for
//!
//! - a cut link seen by the SNMP poll (two bad polls, hysteresis),
//! - a cut link reported by a linkDown trap the device sends at once,
//! - 50 % packet loss on a device (nftables, the lab has no netem),
//!
//! each `--runs` times (default 20), with real `siaga-collector`,
//! `siaga-agent` and `siaga` processes probing every second. Needs root.
//!
//! ```sh
//! cargo run --release -p siaga-tests --example fault_latency -- --runs 20
//! ```
//!
//! Run through cargo it first builds the binaries of the same profile
//! (`cargo build --workspace --bins`), unless `SIAGA_BIN_DIR` names others.
//! Each run uses a subject of its own (a spare link or a device), so every
//! fault opens a new ticket; runs start at random points of the probe cycle.
//! Two figures per run: when the ticket became visible to the CLI (polled
//! every 50 ms), and `opened_at` (the time of the reading that opened it)
//! minus the fault time. Goals: at most 3 probe intervals + 1 s for faults
//! found by probing, at most 1 s for traps.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use siaga_tests::harness::{Agent, Collector, Siaga, now_us, secs, wait_until};
use siaga_tests::lab::Lab;

/// Probe interval of the lab's OPD.
const INTERVAL_MS: f64 = 1000.0;
/// Loss applied in the loss case.
const LOSS_PCT: u32 = 50;
/// How long one run may take before it counts as missed.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn usage() -> ! {
    eprintln!("usage: fault_latency [--runs N]   (N: 1..=50, default 20)");
    std::process::exit(64)
}

fn parse_args() -> usize {
    let mut runs = 20;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = match args.next().and_then(|v| v.parse().ok()) {
                    Some(n) if (1..=50).contains(&n) => n,
                    _ => usage(),
                }
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    runs
}

/// A cheap random delay below one probe interval, so that faults land at
/// any point of the cycle.
fn jitter() -> Duration {
    let x = (now_us() as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .rotate_left(17);
    Duration::from_millis(x % INTERVAL_MS as u64)
}

struct Case {
    name: &'static str,
    goal_ms: f64,
    /// ms from the fault to the ticket in `siaga tickets --json`.
    visible: Vec<f64>,
    /// ms from the fault to the ticket's `opened_at`.
    opened: Vec<f64>,
    missed: usize,
    /// Runs whose ticket names the trap (trap case only).
    by_trap: usize,
}

impl Case {
    fn new(name: &'static str, goal_ms: f64) -> Self {
        Case {
            name,
            goal_ms,
            visible: Vec::new(),
            opened: Vec::new(),
            missed: 0,
            by_trap: 0,
        }
    }
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

fn tickets(siaga: &Siaga) -> Result<Vec<Value>> {
    Ok(siaga
        .json(&["tickets", "--json"])?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Applies `fault`, then waits for a ticket matching `is_ours`; records both
/// latencies in `case`.
fn measure(
    siaga: &Siaga,
    case: &mut Case,
    fault: impl FnOnce() -> Result<()>,
    is_ours: impl Fn(&Value) -> bool,
) -> Result<()> {
    std::thread::sleep(jitter());
    let t0 = now_us();
    let started = Instant::now();
    fault()?;
    let ticket = loop {
        if let Some(t) = tickets(siaga)?.into_iter().find(|t| is_ours(t)) {
            break Some(t);
        }
        if started.elapsed() > RUN_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let seen = now_us();
    let Some(t) = ticket else {
        case.missed += 1;
        eprintln!("  {}: no ticket within {RUN_TIMEOUT:?}", case.name);
        return Ok(());
    };
    let id = t["id"].as_str().unwrap_or_default().to_string();
    // `opened_at` to the microsecond: the ticket's "opened" event.
    let events = siaga.json(&["events", "--since", "1h", "--json"])?;
    let opened_us = events
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["kind"] == "opened" && e["ticket"] == id.as_str())
        .and_then(|e| e["ts_us"].as_i64())
        .with_context(|| format!("no opened event for {id}"))?;
    if t["problem"]
        .as_str()
        .is_some_and(|p| p.contains("linkDown trap"))
    {
        case.by_trap += 1;
    }
    case.visible.push((seen - t0) as f64 / 1000.0);
    case.opened.push((opened_us - t0) as f64 / 1000.0);
    eprintln!(
        "  {:<16} {id}: visible after {:>6.0} ms, opened_at − fault {:>6.0} ms",
        case.name,
        (seen - t0) as f64 / 1000.0,
        (opened_us - t0) as f64 / 1000.0
    );
    Ok(())
}

fn main() -> Result<()> {
    let runs = parse_args();
    siaga_tests::harness::build_binaries()?;
    let total = Instant::now();

    // One switch with 2 × runs spare links (poll case, trap case) and one
    // device per loss run.
    let mut b = Lab::new()?.device("sw1").snmpd_v2c("public");
    for i in 1..=runs {
        b = b.spare_link(&format!("p{i}")).spare_link(&format!("t{i}"));
    }
    for i in 1..=runs {
        b = b.device(&format!("d{i}"));
    }
    eprintln!("building the lab ({} namespaces)…", runs + 1);
    let lab = b.start()?;
    let trap_addr = UdpSocket::bind((lab.agent_addr("sw1")?, 0))?.local_addr()?;

    let mut inv = format!(
        "interval = \"{}ms\"\n\n[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n\n\
         [[device]]\nid = \"dinkes-sw1\"\nopd = \"dinkes\"\nkind = \"switch\"\n\
         address = \"{}\"\n\n[device.snmp]\nversion = \"2c\"\ncommunity = \"public\"\n",
        INTERVAL_MS as u64,
        lab.addr("sw1")?
    );
    for i in 1..=runs {
        for (kind, port) in [("poll", "p"), ("trap", "t")] {
            inv.push_str(&format!(
                "\n[[link]]\ndevice = \"dinkes-sw1\"\ninterface = \"{port}{i}\"\nname = \"{kind}-{i}\"\n"
            ));
        }
    }
    for i in 1..=runs {
        inv.push_str(&format!(
            "\n[[device]]\nid = \"dinkes-d{i}\"\nopd = \"dinkes\"\nkind = \"server\"\n\
             address = \"{}\"\nicmp_count = 20\n",
            lab.addr(&format!("d{i}"))?
        ));
    }
    let mut c = Collector::init()?;
    c.write_inventory_text(&inv)?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    agent_cfg.set("trap_listen", trap_addr.to_string())?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let agent = Agent::start(agent_cfg)?;
    eprintln!("waiting for every link and device to be up…");
    let subjects = 2 * runs + runs + 1;
    wait_until(secs(120), "every link and device up", || {
        let ev = siaga.json(&["events", "--since", "1h", "--json"])?;
        let mut up = std::collections::BTreeSet::new();
        for e in ev.as_array().into_iter().flatten() {
            if e["kind"] == "state" {
                let s = e["subject"].as_str().unwrap_or_default().to_string();
                if e["to"] == "up" {
                    up.insert(s);
                } else {
                    up.remove(&s);
                }
            }
        }
        Ok(up.len() >= subjects)
    })
    .map_err(|e| {
        e.context(format!(
            "agent log:\n{}\ncollector log:\n{}",
            agent.log_tail(20),
            c.log_tail(20)
        ))
    })?;
    ensure!(tickets(&siaga)?.is_empty(), "no ticket before any fault");

    let poll_goal = 3.0 * INTERVAL_MS + 1000.0;
    let mut poll = Case::new("cut link, poll", poll_goal);
    let mut trap = Case::new("cut link, trap", 1000.0);
    let mut loss = Case::new("50 % loss", poll_goal);

    eprintln!("cut links, found by polling…");
    for i in 1..=runs {
        let name = format!("poll-{i}");
        let port = format!("p{i}");
        measure(
            &siaga,
            &mut poll,
            || lab.cut_link("sw1", &port),
            |t| t["link"] == name.as_str(),
        )?;
        lab.mend_link("sw1", &port)?;
    }

    eprintln!("cut links, reported by a linkDown trap…");
    let sink = trap_addr.to_string();
    for i in 1..=runs {
        let name = format!("trap-{i}");
        let port = format!("t{i}");
        // The ifIndex the device gives the interface (the kernel's).
        let line = lab.exec("sw1", &["ip", "-o", "link", "show", &port])?;
        let idx: u32 = line
            .split(':')
            .next()
            .and_then(|s| s.trim().parse().ok())
            .with_context(|| format!("no ifindex in {line:?}"))?;
        let vb = |col: u32| format!("1.3.6.1.2.1.2.2.1.{col}.{idx}");
        let (c1, c2, c7, c8) = (vb(1), vb(2), vb(7), vb(8));
        let idx_s = idx.to_string();
        measure(
            &siaga,
            &mut trap,
            || {
                // The cable is cut and the device says so at once, as a
                // switch does on losing carrier.
                lab.cut_link("sw1", &port)?;
                lab.exec(
                    "sw1",
                    &[
                        "snmptrap",
                        "-v",
                        "2c",
                        "-c",
                        "public",
                        &sink,
                        "",
                        "1.3.6.1.6.3.1.1.5.3",
                        &c1,
                        "i",
                        &idx_s,
                        &c7,
                        "i",
                        "1",
                        &c8,
                        "i",
                        "2",
                        &c2,
                        "s",
                        &port,
                    ],
                )
                .map(drop)
            },
            |t| t["link"] == name.as_str(),
        )?;
        lab.mend_link("sw1", &port)?;
    }

    eprintln!("{LOSS_PCT} % loss…");
    for i in 1..=runs {
        let dev = format!("d{i}");
        let id = format!("dinkes-d{i}");
        measure(
            &siaga,
            &mut loss,
            || lab.set_loss(&dev, LOSS_PCT),
            |t| t["device"] == id.as_str() && t["link"].is_null(),
        )?;
        lab.set_loss(&dev, 0)?;
    }

    let all = tickets(&siaga)?;
    if all.len() != 3 * runs - poll.missed - trap.missed - loss.missed {
        bail!("expected one ticket per run, found {}: {all:#?}", all.len());
    }

    println!();
    println!(
        "fault → ticket latency, {runs} runs per case, probe interval {INTERVAL_MS:.0} ms \
         (lab: {} namespaces; total {:.0} s)",
        runs + 1,
        total.elapsed().as_secs_f64()
    );
    println!(
        "{:<16} {:>26} {:>26} {:>10} {:>8}",
        "", "visible in siaga tickets", "opened_at − fault", "goal", ""
    );
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "case", "p50 ms", "max ms", "max ×iv", "p50 ms", "max ms", "max ×iv", "ms", "missed"
    );
    for case in [&poll, &trap, &loss] {
        let (vp, vm) = (pct(&case.visible, 50.0), pct(&case.visible, 100.0));
        let (op, om) = (pct(&case.opened, 50.0), pct(&case.opened, 100.0));
        println!(
            "{:<16} {:>8.0} {:>8.0} {:>8.2} {:>8.0} {:>8.0} {:>8.2} {:>10.0} {:>8}",
            case.name,
            vp,
            vm,
            vm / INTERVAL_MS,
            op,
            om,
            om / INTERVAL_MS,
            case.goal_ms,
            case.missed
        );
    }
    println!();
    for case in [&poll, &trap, &loss] {
        let (vp, vm) = (pct(&case.visible, 50.0), pct(&case.visible, 100.0));
        println!(
            "{:<16} p50 {:.2} × interval, max {:.2} × interval; goal ≤ {:.0} ms: {} (p50), {} (max)",
            case.name,
            vp / INTERVAL_MS,
            vm / INTERVAL_MS,
            case.goal_ms,
            if vp <= case.goal_ms { "met" } else { "missed" },
            if vm <= case.goal_ms && case.missed == 0 {
                "met"
            } else {
                "missed"
            },
        );
    }
    println!(
        "trap case: {} of {} tickets name the linkDown trap (the rest were found by polling)",
        trap.by_trap,
        trap.visible.len()
    );
    Ok(())
}
