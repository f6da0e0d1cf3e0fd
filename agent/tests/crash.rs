//! The real `siaga-agent` binary killed with SIGKILL: its spool keeps every
//! committed sample and numbering continues after a restart.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Pki;
use siaga_agent::config::SpoolConfig;
use siaga_agent::metrics::Metrics;
use siaga_agent::spool::Spool;
use siaga_proto::v1::{Device, Inventory};

/// Kills the agent when the test ends, however it ends.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &Path) -> Agent {
    Agent(
        Command::new(env!("CARGO_BIN_EXE_siaga-agent"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start siaga-agent"),
    )
}

/// `samples_spooled` from the agent's metrics endpoint, if it answers.
fn spooled(data: &Path) -> Option<u64> {
    let addr = std::fs::read_to_string(data.join("metrics.addr")).ok()?;
    let mut s = std::net::TcpStream::connect(addr.trim()).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("siaga_agent_samples_spooled_total "))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_spooled(data: &Path, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if spooled(data).is_some_and(|n| n >= at_least) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent spooled fewer than {at_least} samples"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn seqs(data: &Path) -> Vec<u64> {
    let spool = Spool::open(data, &SpoolConfig::default(), Metrics::default()).expect("open");
    let page = spool
        .read_after(0, usize::MAX, usize::MAX)
        .await
        .expect("read");
    spool.close().await.expect("close");
    page.samples.iter().map(|s| s.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_the_spool_and_the_numbering() {
    if siaga_agent::probe::icmp::IcmpProber::new().is_err() {
        eprintln!("skipped: no ICMP rights (run as root or with CAP_NET_RAW)");
        return;
    }
    let pki = Pki::new(false);
    let dir = pki.dir.path();
    let data = dir.join("data");
    // Nothing listens here: the collector is away the whole time.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "id = \"a1\"\nopd = \"dinkes\"\ncollector = \"https://127.0.0.1:{port}\"\n\
             server_name = \"localhost\"\ninterval = \"10s\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             [tls]\nca = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\n"
        ),
    )
    .expect("write config");

    // An inventory cached by an earlier run: the agent must probe it
    // without ever reaching the collector.
    let spool = Spool::open(&data, &SpoolConfig::default(), Metrics::default()).expect("open");
    spool
        .save_inventory(&Inventory {
            revision: 3,
            opd: "dinkes".into(),
            interval_ms: 200,
            devices: vec![Device {
                id: "lo".into(),
                address: "127.0.0.1".into(),
                icmp_count: 1,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("cache inventory");
    spool.close().await.expect("close");

    let mut agent = start(&config);
    wait_spooled(&data, 5);
    let seen = spooled(&data).expect("metrics");
    agent.0.kill().expect("SIGKILL");
    agent.0.wait().expect("reap");
    drop(agent);
    let first = seqs(&data).await;
    assert!(
        first.len() as u64 >= seen,
        "{} samples on disk, the agent had reported {seen} committed",
        first.len()
    );
    assert!(first.windows(2).all(|w| w[0] < w[1]));

    let mut agent = start(&config);
    wait_spooled(&data, 3);
    agent.0.kill().expect("SIGKILL");
    agent.0.wait().expect("reap");
    drop(agent);
    let second = seqs(&data).await;
    let before: BTreeSet<u64> = first.iter().copied().collect();
    let after: BTreeSet<u64> = second.iter().copied().collect();
    assert!(
        before.is_subset(&after),
        "samples of the first run were lost"
    );
    let new: Vec<u64> = second
        .iter()
        .filter(|s| !before.contains(s))
        .copied()
        .collect();
    assert!(new.len() >= 3);
    let last_first = first.last().copied().unwrap_or(0);
    assert!(
        new.iter().all(|s| *s > last_first),
        "numbers were reused after the restart: {new:?} vs {last_first}"
    );
}
