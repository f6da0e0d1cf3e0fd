//! ICMP benchmark, side by side in one run (root needed):
//! 1. 1,000 lab targets × 5 echo requests: the agent's prober vs `fping -C 5`
//!    (wall time ratio and peak RSS, each measured by `/usr/bin/time`);
//! 2. accuracy: median RTT to one lab host, the agent's prober vs `ping`.
//!
//! `cargo run --release -p siaga-tests --example icmp_bench [-- TARGETS]`

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use siaga_agent::probe::icmp::{BurstOptions, IcmpProber};
use siaga_tests::lab::Lab;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--probe") {
        let file = args.get(2).context("--probe FILE")?;
        return probe_child(file);
    }
    let targets: u32 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1000);

    let lab = Lab::new()?
        .hosts("targets", targets)
        .device("one")
        .start()?;
    let addrs: Vec<String> = lab
        .host_addrs("targets")?
        .iter()
        .map(|a| a.to_string())
        .collect();
    let dir = tempfile::tempdir()?;
    let list = dir.path().join("targets.txt");
    std::fs::write(&list, addrs.join("\n") + "\n")?;
    let me = std::env::current_exe()?;

    println!("ICMP: {targets} lab targets x 5 echo requests");
    // Warm the neighbour and route caches so neither side pays for them.
    let _ = run_timed(&[
        "fping",
        "-q",
        "-c",
        "1",
        "-t",
        "500",
        "-f",
        &list.to_string_lossy(),
    ]);

    let mut rows = Vec::new();
    for round in 0..2 {
        let ours = run_timed(&[&me.to_string_lossy(), "--probe", &list.to_string_lossy()])?;
        let fping_paced = run_timed(&[
            "fping",
            "-q",
            "-C",
            "5",
            "-p",
            "100",
            "-i",
            "1",
            "-t",
            "1000",
            "-f",
            &list.to_string_lossy(),
        ])?;
        let fping_default = if round == 0 {
            Some(run_timed(&[
                "fping",
                "-q",
                "-C",
                "5",
                "-f",
                &list.to_string_lossy(),
            ])?)
        } else {
            None
        };
        rows.push((ours, fping_paced, fping_default));
    }
    println!(
        "{:<34} {:>10} {:>12} {:>10}",
        "run", "wall ms", "peak RSS KB", "replies"
    );
    for (i, (ours, paced, default)) in rows.iter().enumerate() {
        println!("round {i}");
        println!(
            "  {:<32} {:>10} {:>12} {:>10}",
            "siaga prober (100 ms pacing)",
            ours.wall.as_millis(),
            ours.rss_kb,
            ours.replies.map_or("?".into(), |r| r.to_string())
        );
        println!(
            "  {:<32} {:>10} {:>12} {:>10}",
            "fping -C 5 -p 100 -i 1",
            paced.wall.as_millis(),
            paced.rss_kb,
            fping_replies(&paced.stderr)
        );
        println!(
            "  ratio siaga/fping (same pacing)  {:.3}",
            ours.wall.as_secs_f64() / paced.wall.as_secs_f64()
        );
        if let Some(d) = default {
            println!(
                "  {:<32} {:>10} {:>12} {:>10}",
                "fping -C 5 (defaults)",
                d.wall.as_millis(),
                d.rss_kb,
                fping_replies(&d.stderr)
            );
            println!(
                "  ratio siaga/fping (defaults)     {:.3}",
                ours.wall.as_secs_f64() / d.wall.as_secs_f64()
            );
        }
    }

    // Accuracy against the kernel's ping, interleaved rounds.
    let one = lab.target(IpAddr::V4(lab.addr("one")?))?;
    let rt = tokio::runtime::Runtime::new()?;
    let prober = IcmpProber::new()?;
    let mut ours_all = Vec::new();
    let mut ping_all = Vec::new();
    for _ in 0..5 {
        let r = rt.block_on(prober.burst(
            one,
            &BurstOptions {
                count: 40,
                interval: Duration::from_millis(10),
                timeout: Duration::from_secs(1),
                keep_rtts: true,
            },
        ));
        ours_all.extend(r.rtts_us.iter().map(|&u| u as f64));
        let out = Command::new("ping")
            .args(["-n", "-c", "40", "-i", "0.01", &one.to_string()])
            .output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(ms) = line
                .split("time=")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse::<f64>().ok())
            {
                ping_all.push(ms * 1000.0);
            }
        }
    }
    let (mo, mp) = (median(&mut ours_all), median(&mut ping_all));
    println!(
        "\nAccuracy to {one} ({} vs {} replies):",
        ours_all.len(),
        ping_all.len()
    );
    println!(
        "  median RTT siaga {mo:.1} us, ping {mp:.1} us, difference {:.1} us (goal <= 50)",
        mo - mp
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fping_replies(stderr: &str) -> String {
    // -C lines: "198.18.4.1 : 0.05 0.04 - 0.03 0.04"
    let n: usize = stderr
        .lines()
        .filter(|l| l.contains(" : "))
        .map(|l| {
            l.split(" : ")
                .nth(1)
                .map_or(0, |v| v.split_whitespace().filter(|x| *x != "-").count())
        })
        .sum();
    n.to_string()
}

struct Timed {
    wall: Duration,
    rss_kb: u64,
    replies: Option<u64>,
    stderr: String,
}

/// Runs a command under `/usr/bin/time -f %M` (peak RSS in KB, on the last
/// line of stderr).
fn run_timed(argv: &[&str]) -> Result<Timed> {
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .args(argv)
        .output()?;
    let wall = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rss_kb = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let replies = stdout.lines().find_map(|l| {
        l.strip_prefix("replies ")
            .and_then(|r| r.trim().parse().ok())
    });
    if !out.status.success() && argv[0] != "fping" {
        bail!("{} failed: {stderr}", argv.join(" "));
    }
    Ok(Timed {
        wall,
        rss_kb,
        replies,
        stderr,
    })
}

/// The prober alone, in its own process so that its RSS is its own.
fn probe_child(file: &str) -> Result<()> {
    let text = std::fs::read_to_string(file)?;
    let addrs: Vec<IpAddr> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse())
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let replies = rt.block_on(async {
        let prober = IcmpProber::new()?;
        let opts = BurstOptions::default();
        let results =
            futures::future::join_all(addrs.iter().map(|a| prober.burst(*a, &opts))).await;
        anyhow::Ok(results.iter().map(|r| u64::from(r.received)).sum::<u64>())
    })?;
    println!("replies {replies}");
    Ok(())
}
