//! Soak benchmark: does the agent's memory and disk stay flat?
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p siaga-tests --example soak -- --minutes 30
//! ```
//!
//! One `siaga-agent` probes `--targets` loopback addresses (ICMP; on
//! 127.1.0.0/16) and `--snmp` lab devices in network namespaces running
//! snmpd (SNMP v2c polls and ICMP), every `--interval` seconds, and streams to
//! a `siaga-collector`. The collector is cut away (`kill -9`) from the
//! outage start to its end (default: the second sixth of the run, minutes
//! 10 to 15 of 30) and started again; the agent spools meanwhile and
//! replays afterwards. Every `--every` seconds it records the agent's RSS
//! (VmRSS of /proc/PID/status, and its parts: RssAnon, the heap and stacks
//! where a leak would show, and RssFile, pages of the binary and libraries
//! as code paths are first run), the spool file's size and the spool's
//! depth, bytes and dropped count (from the agent's metrics) into
//! `OUT/soak.csv`, and draws `OUT/soak.svg`. At the end it prints where
//! the RSS settled (the median between minutes 5 and 10 of 30, i.e. the
//! sixth before the outage), where it ended (median of the last minute) and
//! whether the end is within 10 % of the settled value.
//!
//! `--outages N` cuts the collector away N times, each as long as the first
//! and `--outage-every` minutes apart (default: three times the length), and
//! prints the RSS before each: a step that repeats with every outage would
//! grow without bound over months, one that does not is a high-water mark.
//!
//! Needs root (namespaces, raw ICMP); `--snmp 0` runs without the lab.
//! Ctrl-C ends it early and still writes the files and cleans up.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use siaga_tests::harness::*;
use siaga_tests::lab::Lab;

#[derive(Debug, Clone)]
struct Args {
    minutes: f64,
    targets: usize,
    snmp: usize,
    interval: u64,
    every: u64,
    outage: (f64, f64),
    outages: usize,
    outage_every: f64,
    out: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        minutes: 30.0,
        targets: 150,
        snmp: 2,
        interval: 5,
        every: 1,
        outage: (f64::NAN, f64::NAN),
        outages: 1,
        outage_every: f64::NAN,
        out: PathBuf::from("soak-out"),
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
            "--targets" => a.targets = num(val()?)? as usize,
            "--snmp" => a.snmp = num(val()?)? as usize,
            "--interval" => a.interval = num(val()?)? as u64,
            "--every" => a.every = num(val()?)? as u64,
            "--outage-from" => a.outage.0 = num(val()?)?,
            "--outage-to" => a.outage.1 = num(val()?)?,
            "--outages" => a.outages = num(val()?)? as usize,
            "--outage-every" => a.outage_every = num(val()?)?,
            "--out" => a.out = PathBuf::from(val()?),
            "-h" | "--help" => {
                println!(
                    "soak [--minutes 30] [--targets 150] [--snmp 2] [--interval 5] [--every 1] \
                     [--outage-from MIN] [--outage-to MIN] [--outages 1] [--outage-every MIN] \
                     [--out soak-out]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if a.outage.0.is_nan() {
        a.outage.0 = a.minutes / 3.0;
    }
    if a.outage.1.is_nan() {
        a.outage.1 = a.minutes / 2.0;
    }
    if a.outage_every.is_nan() {
        a.outage_every = 3.0 * (a.outage.1 - a.outage.0);
    }
    let last = a.outages.saturating_sub(1) as f64 * a.outage_every;
    if !(a.minutes > 0.0
        && a.outages >= 1
        && a.outage.0 < a.outage.1
        && a.outage_every > a.outage.1 - a.outage.0
        && a.outage.1 + last <= a.minutes)
    {
        bail!("the outages must lie within the run, each ending before the next starts");
    }
    if a.targets > 60_000 || a.every == 0 || a.interval == 0 {
        bail!("--targets at most 60000, --every and --interval at least 1");
    }
    Ok(a)
}

impl Args {
    /// (from, to) of every outage, in minutes.
    fn outages(&self) -> Vec<(f64, f64)> {
        (0..self.outages)
            .map(|i| {
                let shift = i as f64 * self.outage_every;
                (self.outage.0 + shift, self.outage.1 + shift)
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
struct Row {
    t_s: f64,
    rss_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    spool_file: u64,
    depth: Option<f64>,
    spool_bytes: Option<f64>,
    dropped: Option<f64>,
    collector_up: bool,
}

/// VmRSS, RssAnon and RssFile of a process, KiB.
fn rss_kib(pid: i32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn inventory(targets: usize, snmp: &[std::net::Ipv4Addr], interval: u64) -> String {
    let mut s = format!("interval = \"{interval}s\"\n\n[[opd]]\nid = \"soak\"\nname = \"Soak\"\n");
    for i in 0..targets {
        let _ = write!(
            s,
            "\n[[device]]\nid = \"soak-t{i:05}\"\nopd = \"soak\"\nkind = \"server\"\naddress = \"127.1.{}.{}\"\n",
            i / 250,
            i % 250 + 1
        );
    }
    for (i, addr) in snmp.iter().enumerate() {
        let _ = write!(
            s,
            "\n[[device]]\nid = \"soak-sw{i}\"\nopd = \"soak\"\nkind = \"switch\"\naddress = \"{addr}\"\n\n\
             [device.snmp]\nversion = \"2c\"\ncommunity = \"public\"\n"
        );
    }
    s
}

/// A plot of `points` (x in minutes) into the box at `y0` of height `h`.
#[allow(clippy::too_many_arguments)]
fn panel(
    svg: &mut String,
    title: &str,
    unit: &str,
    points: &[(f64, f64)],
    minutes: f64,
    y0: f64,
    h: f64,
    colour: &str,
) {
    let (x0, w) = (70.0, 820.0);
    let max = points.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let _ = writeln!(
        svg,
        r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#888"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{x0}" y="{}" font-size="14">{title}</text>"##,
        y0 - 8.0
    );
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let y = y0 + h - h * f64::from(k) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{v:.1} {unit}</text>"##,
            x0 + w,
            x0 - 4.0,
            y + 4.0
        );
    }
    let step = if minutes > 20.0 { 5.0 } else { 1.0 };
    let mut m = 0.0;
    while m <= minutes + 1e-9 {
        let x = x0 + w * m / minutes;
        let _ = writeln!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{m:.0}</text>"##,
            y0 + h + 14.0
        );
        m += step;
    }
    let pts: Vec<String> = points
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x0 + w * t / minutes, y0 + h - h * v / max))
        .collect();
    let _ = writeln!(
        svg,
        r##"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"##,
        pts.join(" ")
    );
}

fn svg(rows: &[Row], a: &Args, settled: f64) -> String {
    let minutes = a.minutes;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="920" height="560" font-family="sans-serif">"##
    );
    let _ = writeln!(s, r##"<rect width="920" height="560" fill="white"/>"##);
    let (x0, w) = (70.0, 820.0);
    // The outages, shaded across both panels.
    for (from, to) in a.outages() {
        let (o0, o1) = (x0 + w * from / minutes, x0 + w * to / minutes);
        let _ = writeln!(
            s,
            r##"<rect x="{o0:.1}" y="40" width="{:.1}" height="470" fill="#fdd"/><text x="{o0:.1}" y="536" font-size="11">collector cut away</text>"##,
            o1 - o0
        );
    }
    let rss: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.t_s / 60.0, r.rss_kib as f64 / 1024.0))
        .collect();
    let anon: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.t_s / 60.0, r.anon_kib as f64 / 1024.0))
        .collect();
    let max_rss = rss.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let pts: Vec<String> = anon
        .iter()
        .map(|(t, v)| {
            format!(
                "{:.1},{:.1}",
                x0 + w * t / minutes,
                40.0 + 200.0 - 200.0 * v / max_rss
            )
        })
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#2ca02c" stroke-width="1.5" points="{}"/>"##,
        pts.join(" ")
    );
    panel(
        &mut s,
        &format!(
            "siaga-agent RSS (blue; settled {:.1} MiB) and its anonymous part (green: heap, stacks)",
            settled / 1024.0
        ),
        "MiB",
        &rss,
        minutes,
        40.0,
        200.0,
        "#1f77b4",
    );
    let depth: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.t_s / 60.0, r.depth.unwrap_or(0.0)))
        .collect();
    let file: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.t_s / 60.0, r.spool_file as f64 / 1_048_576.0))
        .collect();
    panel(
        &mut s,
        "spool depth (samples, orange) and spool file (MiB, grey, own scale)",
        "",
        &depth,
        minutes,
        300.0,
        200.0,
        "#ff7f0e",
    );
    let max_file = file.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let pts: Vec<String> = file
        .iter()
        .map(|(t, v)| {
            format!(
                "{:.1},{:.1}",
                x0 + w * t / minutes,
                300.0 + 200.0 - 200.0 * v / max_file
            )
        })
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#999" stroke-dasharray="4 3" points="{}"/><text x="890" y="296" font-size="11" text-anchor="end">spool file max {:.2} MiB</text>"##,
        pts.join(" "),
        max_file / 1.1
    );
    let _ = writeln!(
        s,
        r##"<text x="480" y="554" font-size="12" text-anchor="middle">minutes</text></svg>"##
    );
    s
}

fn main() -> Result<()> {
    let a = parse_args()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let rt = runtime()?;
    {
        let stop = stop.clone();
        rt.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            stop.store(true, Ordering::SeqCst);
        });
    }

    let lab = if a.snmp > 0 {
        let mut b = Lab::new()?;
        for i in 0..a.snmp {
            b = b.device(&format!("sw{i}")).snmpd_v2c("public");
        }
        Some(b.start()?)
    } else {
        None
    };
    let snmp_addrs: Vec<std::net::Ipv4Addr> = match &lab {
        Some(l) => (0..a.snmp)
            .map(|i| l.addr(&format!("sw{i}")))
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let mut c = Collector::init()?;
    c.write_inventory_text(&inventory(a.targets, &snmp_addrs, a.interval))?;
    let agent_cfg = c.enroll_agent("soak")?;
    agent_cfg.set("metrics_listen", "127.0.0.1:0")?;
    c.serve()?;
    let mut agent = Agent::start(agent_cfg)?;
    let pid = agent.pid().context("agent pid")?;
    let outages = a.outages();
    let cuts: Vec<String> = outages
        .iter()
        .map(|(from, to)| format!("{from:.1} to {to:.1}"))
        .collect();
    println!(
        "soak: {} min, {} loopback targets + {} snmpd devices every {} s, collector cut from minute {}; writing {}",
        a.minutes,
        a.targets,
        a.snmp,
        a.interval,
        cuts.join(", "),
        a.out.display()
    );

    let spool = agent.cfg.data_dir.join("spool.redb");
    let start = Instant::now();
    let total = Duration::from_secs_f64(a.minutes * 60.0);
    let mut rows: Vec<Row> = Vec::new();
    let mut up = true;
    let mut next = Instant::now();
    let mut last_print = Instant::now();
    while start.elapsed() < total && !stop.load(Ordering::SeqCst) {
        let t_min = start.elapsed().as_secs_f64() / 60.0;
        let down = outages
            .iter()
            .any(|&(from, to)| t_min >= from && t_min < to);
        if up && down {
            c.kill9();
            up = false;
            println!("minute {t_min:.1}: collector killed");
        } else if !up && !down {
            c.restart()?;
            up = true;
            println!("minute {t_min:.1}: collector started again");
        }
        if !agent.running() {
            bail!("the agent died:\n{}", agent.log_tail(30));
        }
        let metrics = agent.metrics().unwrap_or_default();
        let (rss, anon, file) = rss_kib(pid);
        let row = Row {
            t_s: start.elapsed().as_secs_f64(),
            rss_kib: rss,
            anon_kib: anon,
            file_kib: file,
            spool_file: std::fs::metadata(&spool).map_or(0, |m| m.len()),
            depth: metric_containing(&metrics, "spool_depth"),
            spool_bytes: metric_containing(&metrics, "spool_bytes"),
            dropped: metric_containing(&metrics, "samples_dropped"),
            collector_up: up,
        };
        if last_print.elapsed() >= Duration::from_secs(60) {
            println!(
                "minute {:.1}: RSS {:.1} MiB (anon {:.1}), spool {} samples, file {:.2} MiB",
                row.t_s / 60.0,
                row.rss_kib as f64 / 1024.0,
                row.anon_kib as f64 / 1024.0,
                row.depth.unwrap_or(0.0),
                row.spool_file as f64 / 1_048_576.0
            );
            last_print = Instant::now();
        }
        rows.push(row);
        next += Duration::from_secs(a.every);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let ran_min = start.elapsed().as_secs_f64() / 60.0;
    drop(agent);
    drop(c);
    drop(lab);

    let mut csv = String::from(
        "t_s,rss_kib,rss_anon_kib,rss_file_kib,spool_file_bytes,spool_depth,spool_bytes,spool_dropped,collector_up\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    for r in &rows {
        let _ = writeln!(
            csv,
            "{:.1},{},{},{},{},{},{},{},{}",
            r.t_s,
            r.rss_kib,
            r.anon_kib,
            r.file_kib,
            r.spool_file,
            opt(r.depth),
            opt(r.spool_bytes),
            opt(r.dropped),
            u8::from(r.collector_up)
        );
    }
    std::fs::write(a.out.join("soak.csv"), csv)?;

    let window = |from_min: f64, to_min: f64, f: fn(&Row) -> u64| -> f64 {
        median(
            rows.iter()
                .filter(|r| r.t_s / 60.0 >= from_min && r.t_s / 60.0 < to_min)
                .map(|r| f(r) as f64)
                .collect(),
        )
        .unwrap_or(0.0)
    };
    let (s0, s1) = (a.outage.0 / 2.0, a.outage.0);
    let settled = window(s0, s1, |r| r.rss_kib);
    std::fs::write(a.out.join("soak.svg"), svg(&rows, &a, settled))?;
    let end_window = (ran_min / 30.0).max(1.0);
    let (e0, e1) = (ran_min - end_window, ran_min + 1.0);
    let end = window(e0, e1, |r| r.rss_kib);
    let peak = rows.iter().max_by_key(|r| r.rss_kib);
    let max_depth = rows.iter().filter_map(|r| r.depth).fold(0.0f64, f64::max);
    let last = rows.last();
    println!("ran {ran_min:.1} min, {} rows", rows.len());
    println!(
        "RSS settled at {:.2} MiB (median, minutes {:.1}-{:.1})",
        settled / 1024.0,
        a.outage.0 / 2.0,
        a.outage.0
    );
    if let Some(p) = peak {
        println!(
            "RSS peak {:.2} MiB at minute {:.1}",
            p.rss_kib as f64 / 1024.0,
            p.t_s / 60.0
        );
    }
    for (what, f) in [
        (
            "anon (heap, stacks)",
            (|r: &Row| r.anon_kib) as fn(&Row) -> u64,
        ),
        ("file (binary, libraries)", |r: &Row| r.file_kib),
    ] {
        println!(
            "  of which {what}: settled {:.2} MiB, end {:.2} MiB",
            window(s0, s1, f) / 1024.0,
            window(e0, e1, f) / 1024.0
        );
    }
    if outages.len() > 1 {
        // The minute before each outage, and the last one: a step per
        // outage shows as a staircase here.
        for (i, &(from, _)) in outages.iter().enumerate() {
            println!(
                "  RSS before outage {} (minute {:.1}): {:.2} MiB",
                i + 1,
                from,
                window(from - 1.0, from, |r| r.rss_kib) / 1024.0
            );
        }
    }
    let diff = if settled > 0.0 {
        100.0 * (end - settled) / settled
    } else {
        f64::NAN
    };
    println!(
        "RSS at the end {:.2} MiB (median of the last {end_window:.1} min): {:+.1} % from settled, {} 10 %",
        end / 1024.0,
        diff,
        if diff.abs() <= 10.0 {
            "within"
        } else {
            "NOT within"
        }
    );
    println!(
        "spool: deepest {max_depth:.0} samples during an outage; at the end {} samples, file {:.2} MiB, dropped {}",
        last.and_then(|r| r.depth).unwrap_or(0.0),
        last.map_or(0.0, |r| r.spool_file as f64 / 1_048_576.0),
        last.and_then(|r| r.dropped).unwrap_or(0.0)
    );
    println!(
        "wrote {} and {}",
        a.out.join("soak.csv").display(),
        a.out.join("soak.svg").display()
    );
    Ok(())
}
