//! ICMP benchmark, side by side in one run (root needed):
//! 1. N lab targets × 5 echo requests 100 ms apart, for each N of `--hosts`
//!    (default 1,000 and 10,000): `siaga-agent check --inventory` (N
//!    devices, ICMP only: what an installer runs) vs `fping -q -C 5 -p 100
//!    -i 0 -t 1000` (fping at its fastest: as root it may send with no gap
//!    between packets), each under `/usr/bin/time`: wall, CPU (user + sys),
//!    peak RSS, replies; `--rounds` rounds (default 3), interleaved, and the
//!    best of each;
//! 2. accuracy: median RTT to one lab host, the agent's prober vs `ping`.
//!
//! `cargo build --release -p siaga-agent && cargo run --release -p siaga-tests --example icmp_bench [-- --hosts 1000,10000 --rounds 3]`

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use siaga_agent::probe::icmp::{BurstOptions, IcmpProber};
use siaga_tests::lab::Lab;

fn main() -> Result<()> {
    let mut sizes = vec![1000usize, 10_000];
    let mut rounds = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--hosts" => {
                sizes = args
                    .next()
                    .context("--hosts N[,N...]")?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?;
            }
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            other => bail!("unknown argument {other:?} (--hosts N[,N...], --rounds N)"),
        }
    }
    let agent = siaga_tests::harness::bin("siaga-agent")?;
    let most = sizes.iter().copied().max().unwrap_or(1000);
    let setup = Instant::now();
    let lab = Lab::new()?
        .hosts("targets", u32::try_from(most)?)
        .device("one")
        .start()?;
    let all: Vec<String> = lab
        .host_addrs("targets")?
        .iter()
        .map(|a| a.to_string())
        .collect();
    println!(
        "ICMP: lab of {most} hosts set up in {:.1} s; 2 shared cores, other builds may run",
        setup.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "id = \"bench\"\nopd = \"lab\"\ncollector = \"https://127.0.0.1:7443\"\ndata_dir = \"data\"\n\
         [tls]\nca = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\n",
    )?;

    for &n in &sizes {
        let addrs = &all[..n.min(all.len())];
        let list = dir.path().join(format!("targets-{n}.txt"));
        std::fs::write(&list, addrs.join("\n") + "\n")?;
        let inventory = dir.path().join(format!("inventory-{n}.toml"));
        let mut inv = String::with_capacity(n * 64);
        for (i, a) in addrs.iter().enumerate() {
            inv.push_str(&format!(
                "[[device]]\nid = \"h{i}\"\nopd = \"lab\"\naddress = \"{a}\"\n"
            ));
        }
        std::fs::write(&inventory, inv)?;
        let list = list.to_string_lossy().into_owned();
        let ours: Vec<String> = [
            agent.to_string_lossy().as_ref(),
            "check",
            "--config",
            &config.to_string_lossy(),
            "--inventory",
            &inventory.to_string_lossy(),
        ]
        .map(String::from)
        .to_vec();
        let fping: Vec<String> = [
            "fping", "-q", "-C", "5", "-p", "100", "-i", "0", "-t", "1000", "-f", &list,
        ]
        .map(String::from)
        .to_vec();
        // Warm the route and neighbour caches so neither side pays for them.
        let _ = run_timed(
            &["fping", "-q", "-c", "1", "-t", "500", "-f", &list].map(String::from),
            Count::None,
        );
        println!("\n{n} hosts x 5 echo requests, 100 ms apart, timeout 1 s");
        println!("  siaga: {}", shown(&ours, dir.path()));
        println!(
            "         (inventory: {n} devices, ICMP only; 5 requests, 100 ms, 1 s are its defaults)"
        );
        println!("  fping: {}", shown(&fping, dir.path()));
        println!(
            "  {:<7} {:<6} {:>9} {:>9} {:>12} {:>9}",
            "round", "side", "wall ms", "CPU ms", "peak RSS KB", "replies"
        );
        let mut best_ours = Best::default();
        let mut best_fping = Best::default();
        for round in 0..rounds {
            // Alternate which side goes first, so neither always runs on the
            // machine the other just warmed or loaded.
            let order: [bool; 2] = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for is_ours in order {
                let t = if is_ours {
                    run_timed(&ours, Count::CheckTable)?
                } else {
                    run_timed(&fping, Count::Fping)?
                };
                let (side, best) = if is_ours {
                    ("siaga", &mut best_ours)
                } else {
                    ("fping", &mut best_fping)
                };
                println!(
                    "  {:<7} {:<6} {:>9} {:>9} {:>12} {:>9}",
                    round,
                    side,
                    t.wall.as_millis(),
                    t.cpu.as_millis(),
                    t.rss_kb,
                    t.replies
                );
                best.add(&t);
            }
        }
        println!(
            "  best of {rounds}: siaga {} ms wall, {} ms CPU, {} KB; fping {} ms wall, {} ms CPU, {} KB",
            best_ours.wall.as_millis(),
            best_ours.cpu.as_millis(),
            best_ours.rss_kb,
            best_fping.wall.as_millis(),
            best_fping.cpu.as_millis(),
            best_fping.rss_kb
        );
        println!(
            "  ratio siaga/fping: wall {:.2} (goal <= 1.0), CPU {:.2} (goal <= 0.8), peak RSS {:.2}",
            best_ours.wall.as_secs_f64() / best_fping.wall.as_secs_f64(),
            best_ours.cpu.as_secs_f64() / best_fping.cpu.as_secs_f64().max(1e-9),
            best_ours.rss_kb as f64 / (best_fping.rss_kb as f64).max(1.0)
        );
    }

    // Accuracy against the kernel's ping, interleaved rounds.
    let one = lab.target(IpAddr::V4(lab.addr("one")?))?;
    let prober = IcmpProber::new()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
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
        "\nAccuracy to {one} ({} vs {} replies; 5 x 40 requests 10 ms apart, `ping -n -c 40 -i 0.01`):",
        ours_all.len(),
        ping_all.len()
    );
    println!(
        "  median RTT siaga {mo:.1} us, ping {mp:.1} us, difference {:.1} us (goal <= 50)",
        mo - mp
    );
    Ok(())
}

/// A command line as printed: the temporary directory shown as `$DIR`.
fn shown(argv: &[String], dir: &Path) -> String {
    let d = dir.to_string_lossy();
    argv.iter()
        .map(|a| a.replace(d.as_ref(), "$DIR"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// "0m0.123s" as seconds.
fn minutes_seconds(v: &str) -> Option<f64> {
    let (m, s) = v.strip_suffix('s')?.split_once('m')?;
    Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
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

/// How to count the replies in a command's output.
#[derive(Clone, Copy)]
enum Count {
    None,
    /// `siaga-agent check`: the "recv" column of the device table.
    CheckTable,
    /// `fping -C`: "198.18.4.1 : 0.05 0.04 - 0.03 0.04" on stderr.
    Fping,
}

struct Timed {
    wall: Duration,
    cpu: Duration,
    rss_kb: u64,
    replies: u64,
}

#[derive(Default)]
struct Best {
    wall: Duration,
    cpu: Duration,
    rss_kb: u64,
}

impl Best {
    fn add(&mut self, t: &Timed) {
        let first = self.wall.is_zero();
        if first || t.wall < self.wall {
            self.wall = t.wall;
        }
        if first || t.cpu < self.cpu {
            self.cpu = t.cpu;
        }
        if first || t.rss_kb < self.rss_kb {
            self.rss_kb = t.rss_kb;
        }
    }
}

/// Runs a command under `/usr/bin/time -f %M` (peak RSS in KB, on the last
/// line of its stderr), itself under bash, which reads the clock around it
/// (`$EPOCHREALTIME`) and whose `times` gives the CPU (user and system) of
/// the command to the millisecond (`time` prints only hundredths).
fn run_timed(argv: &[String], count: Count) -> Result<Timed> {
    let dir = tempfile::tempdir()?;
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"s=$EPOCHREALTIME; /usr/bin/time -f %M "$@" >"$OUT" 2>"$ERR"; e=$EPOCHREALTIME; echo "$s $e"; times"#)
        .arg("bash")
        .args(argv)
        .env("OUT", &o)
        .env("ERR", &e)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    let stderr = std::fs::read_to_string(&e).unwrap_or_default();
    let stdout = std::fs::read_to_string(&o).unwrap_or_default();
    let rss: f64 = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| {
            format!(
                "{}: no peak RSS from /usr/bin/time: {stderr}",
                argv.join(" ")
            )
        })?;
    // The clock before and after; `times`: the shell's own CPU, then its
    // children's (the command's, waited for by time).
    let report = String::from_utf8_lossy(&out.stdout);
    let mut lines = report.lines();
    let clock: Vec<f64> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.replace(',', ".").parse().ok())
        .collect();
    let children: Vec<f64> = lines
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(minutes_seconds)
        .collect();
    let (&[s, e], &[user, sys]) = (&clock[..], &children[..]) else {
        bail!(
            "{}: no clock or CPU figures from bash: {report}",
            argv.join(" ")
        );
    };
    let wall = Duration::from_secs_f64((e - s).max(0.0));
    let replies = match count {
        Count::None => 0,
        Count::CheckTable => stdout
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split(['│', '┆']).map(str::trim).collect();
                // │ device │ address │ sent │ recv │ ...
                cells.get(2)?.parse::<IpAddr>().ok()?;
                cells.get(4)?.parse::<u64>().ok()
            })
            .sum(),
        Count::Fping => stderr
            .lines()
            .filter(|l| l.contains(" : "))
            .map(|l| {
                l.split(" : ").nth(1).map_or(0, |v| {
                    v.split_whitespace().filter(|x| *x != "-").count() as u64
                })
            })
            .sum(),
    };
    Ok(Timed {
        wall,
        cpu: Duration::from_secs_f64(user + sys),
        rss_kb: rss as u64,
        replies,
    })
}
