//! SNMP benchmark, side by side in one run on the same lab (root needed):
//! ifTable + ifXTable of N lab devices (each a real snmpd with 3
//! interfaces), for each N of `--devices` (default 50 and 500):
//! 1. the agent's poller, all devices at once (one GETBULK stream per device);
//! 2. Prometheus's `snmp_exporter` (Debian: prometheus-snmp-exporter,
//!    installed here if missing), started on loopback with the `if_mib`
//!    module (`snmp_exporter_if_mib.yml` beside this file) and scraped for
//!    all devices at once, in parallel, as Prometheus does;
//! 3. `snmpbulkwalk` of both tables, one device after the other.
//!
//! Wall time of a round (all devices), and for the first two the CPU
//! (user + sys) that the round cost the poller's or the exporter's
//! process; `--rounds` warm rounds (default 3), best of them.
//!
//! `cargo run --release -p siaga-tests --example snmp_bench [-- --devices 50,500 --rounds 3]`

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use siaga_agent::probe::snmp::SnmpPoller;
use siaga_proto::v1::{Device, SnmpStatus, SnmpTarget};
use siaga_tests::lab::Lab;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EXPORTER: &str = "/usr/bin/prometheus-snmp-exporter";

fn main() -> Result<()> {
    let mut sizes = vec![50usize, 500];
    let mut rounds = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--devices" => {
                sizes = args
                    .next()
                    .context("--devices N[,N...]")?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?;
            }
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            other => bail!("unknown argument {other:?} (--devices N[,N...], --rounds N)"),
        }
    }
    install_exporter()?;
    let most = sizes.iter().copied().max().unwrap_or(50);
    let mut builder = Lab::new()?;
    for i in 0..most {
        builder = builder
            .device(&format!("d{i}"))
            .snmpd_v2c("public")
            .spare_link("port2");
    }
    let setup = Instant::now();
    let lab = builder.start()?;
    println!(
        "SNMP: {most} lab devices (snmpd, 3 interfaces each), set up in {:.1} s; \
         2 shared cores, other builds may run",
        setup.elapsed().as_secs_f64()
    );
    let mut devices = Vec::with_capacity(most);
    for i in 0..most {
        let id = format!("d{i}");
        let addr = lab.target(IpAddr::V4(lab.addr(&id)?))?;
        devices.push(Device {
            id,
            address: addr.to_string(),
            snmp: Some(SnmpTarget {
                version: "2c".into(),
                community: "public".into(),
                timeout_ms: 5000,
                retries: 1,
                ..SnmpTarget::default()
            }),
            ..Device::default()
        });
    }

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/snmp_exporter_if_mib.yml");
    let port = siaga_tests::harness::free_port()?;
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let mut exporter = Exporter::start(&config, listen)?;
    println!(
        "  snmp_exporter: {EXPORTER} --config.file=tests/examples/snmp_exporter_if_mib.yml \
         --web.listen-address={listen} (version {})",
        exporter_version()
    );
    println!(
        "  scraped as Prometheus does: GET /snmp?module=if_mib&target=ADDR, all devices at once"
    );
    println!(
        "  sequential walk: snmpbulkwalk -v2c -c public -On ADDR 1.3.6.1.2.1.2.2 (then .31.1.1)"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let poller = SnmpPoller::new();
    for &n in &sizes {
        let devs = &devices[..n.min(devices.len())];
        println!("\n{n} devices");
        println!(
            "  {:<26} {:>9} {:>9} {:>10}",
            "round", "wall ms", "CPU ms", "values"
        );
        let mut best = [Duration::MAX; 3];
        let mut best_cpu = [Duration::MAX; 2];
        // A cold round each for the poller's and the exporter's clients.
        for round in 0..=rounds {
            let cold = round == 0;
            // 1. the poller
            let cpu0 = cpu_of(std::process::id())?;
            let start = Instant::now();
            let results = rt.block_on(futures::future::join_all(
                devs.iter().map(|d| poller.poll(d, &[])),
            ));
            let took = start.elapsed();
            let cpu = cpu_of(std::process::id())?.saturating_sub(cpu0);
            let ok = results
                .iter()
                .filter(|(r, _)| r.status == SnmpStatus::Ok as i32)
                .count();
            ensure!(ok == n, "only {ok} of {n} devices answered the poller");
            let ifs: usize = results.iter().map(|(r, _)| r.interfaces.len()).sum();
            row(
                &format!("siaga poller {round}{}", if cold { " (cold)" } else { "" }),
                took,
                Some(cpu),
                &format!("{ifs} ifs"),
            );
            if !cold {
                best[0] = best[0].min(took);
                best_cpu[0] = best_cpu[0].min(cpu);
            }

            // 2. snmp_exporter, every target scraped at once
            let cpu0 = cpu_of(exporter.pid())?;
            let start = Instant::now();
            let lines = rt.block_on(scrape_all(listen, devs))?;
            let took = start.elapsed();
            let cpu = cpu_of(exporter.pid())?.saturating_sub(cpu0);
            row(
                &format!("snmp_exporter {round}{}", if cold { " (cold)" } else { "" }),
                took,
                Some(cpu),
                &format!("{lines} series"),
            );
            if !cold {
                best[1] = best[1].min(took);
                best_cpu[1] = best_cpu[1].min(cpu);
            }
        }
        for round in 0..rounds {
            let start = Instant::now();
            let mut values = 0;
            for d in devs {
                for table in ["1.3.6.1.2.1.2.2", "1.3.6.1.2.1.31.1.1"] {
                    let out = Command::new("snmpbulkwalk")
                        .args(["-v2c", "-c", "public", "-On", &d.address, table])
                        .output()?;
                    ensure!(
                        out.status.success(),
                        "snmpbulkwalk failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    values += out
                        .stdout
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.is_empty())
                        .count();
                }
            }
            let took = start.elapsed();
            row(
                &format!("sequential snmpbulkwalk {round}"),
                took,
                None,
                &format!("{values} values"),
            );
            best[2] = best[2].min(took);
        }
        println!(
            "  best of {rounds}: siaga poller {:.1} ms wall, {} ms CPU; snmp_exporter {:.1} ms wall, {} ms CPU; \
             sequential snmpbulkwalk {:.1} ms",
            ms(best[0]),
            best_cpu[0].as_millis(),
            ms(best[1]),
            best_cpu[1].as_millis(),
            ms(best[2])
        );
        println!(
            "  ratio siaga/snmp_exporter: wall {:.2}, CPU {:.2}; siaga/sequential walk: wall {:.3}",
            best[0].as_secs_f64() / best[1].as_secs_f64(),
            best_cpu[0].as_secs_f64() / best_cpu[1].as_secs_f64().max(1e-9),
            best[0].as_secs_f64() / best[2].as_secs_f64()
        );
    }
    println!(
        "\nsnmp_exporter peak RSS over the run: {} KB",
        exporter.peak_rss_kb().unwrap_or(0)
    );
    exporter.stop();
    Ok(())
}

fn row(what: &str, took: Duration, cpu: Option<Duration>, values: &str) {
    println!(
        "  {:<26} {:>9.1} {:>9} {:>10}",
        what,
        ms(took),
        cpu.map_or("-".into(), |c| c.as_millis().to_string()),
        values
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Installs Debian's prometheus-snmp-exporter if it is not there.
fn install_exporter() -> Result<()> {
    if Path::new(EXPORTER).is_file() {
        return Ok(());
    }
    println!("installing prometheus-snmp-exporter (apt-get)");
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "prometheus-snmp-exporter"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .context("running apt-get")?;
    ensure!(
        status.success() && Path::new(EXPORTER).is_file(),
        "apt-get install prometheus-snmp-exporter failed (run apt-get update first?)"
    );
    Ok(())
}

fn exporter_version() -> String {
    Command::new(EXPORTER)
        .arg("--version")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.split_whitespace()
                .skip_while(|w| *w != "version")
                .nth(1)
                .unwrap_or("?")
                .to_string()
        })
        .unwrap_or_else(|_| "?".into())
}

/// The exporter process; killed when dropped.
struct Exporter {
    child: Option<Child>,
}

impl Exporter {
    fn start(config: &Path, listen: SocketAddr) -> Result<Self> {
        let child = Command::new(EXPORTER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting snmp_exporter")?;
        let me = Self { child: Some(child) };
        siaga_tests::harness::wait_until(
            Duration::from_secs(10),
            "snmp_exporter listening",
            || Ok(std::net::TcpStream::connect(listen).is_ok()),
        )?;
        Ok(me)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn peak_rss_kb(&self) -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// User + system CPU of a process so far (from /proc, in clock ticks of 10 ms).
fn cpu_of(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Duration::from_millis(ticks * 10))
}

/// Scrapes every device through the exporter at once; the number of
/// interface series returned (each scrape checked for ifHCInOctets).
async fn scrape_all(exporter: SocketAddr, devices: &[Device]) -> Result<usize> {
    let scrapes = devices.iter().map(|d| async move {
        let mut s = tokio::net::TcpStream::connect(exporter).await?;
        let req = format!(
            "GET /snmp?module=if_mib&target={} HTTP/1.0\r\nHost: {exporter}\r\n\
             X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
            d.address
        );
        s.write_all(req.as_bytes()).await?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await?;
        let text = String::from_utf8_lossy(&body);
        ensure!(
            text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
            "scraping {}: {}",
            d.address,
            text.lines().next().unwrap_or_default()
        );
        let series = text
            .lines()
            .filter(|l| l.starts_with("ifHCInOctets{"))
            .count();
        ensure!(series > 0, "scraping {}: no ifHCInOctets", d.address);
        Ok(text.lines().filter(|l| !l.starts_with('#')).count())
    });
    let results = futures::future::join_all(scrapes).await;
    let mut total = 0;
    for r in results {
        total += r?;
    }
    Ok(total)
}
