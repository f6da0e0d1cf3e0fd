//! The sample store on both backends: the embedded one (redb) and
//! PostgreSQL on a real cluster the test starts itself
//! ([`siaga_tests::postgres::Cluster`]).

use anyhow::{Context, Result, ensure};
use siaga_tests::harness::{secs, wait_until};
use siaga_tests::postgres::Cluster;

/// Whether process `pid` still runs (a zombie waiting for its reaper does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let (_, after) = s.rsplit_once(')')?;
            after.split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn the_test_cluster_starts_answers_and_leaves_nothing_behind() -> Result<()> {
    let pg = Cluster::start()?;
    let data = pg.data();
    let pid = pg.pid()?;
    ensure!(alive(pid), "the postmaster {pid} is not running");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer: i32 = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .context("connecting")?;
        tokio::spawn(conn);
        let row = client.query_one("SELECT 6 * 7", &[]).await?;
        anyhow::Ok(row.get::<_, i32>(0))
    })?;
    ensure!(answer == 42, "{answer}");
    // Not as root: PostgreSQL refuses to.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .context("no Uid in /proc/pid/status")?;
    ensure!(uid != "0", "the server runs as root");
    let children = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()?;
    ensure!(
        !children.stdout.is_empty(),
        "pgrep -P {pid} finds no server processes"
    );
    drop(pg);
    // `pg_ctl stop -w` returns once the postmaster removed its pid file,
    // a moment before it exits.
    wait_until(secs(10), "the postmaster gone", || Ok(!alive(pid)))?;
    let left = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()?;
    ensure!(
        left.stdout.is_empty(),
        "server processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    ensure!(!data.exists(), "{} left behind", data.display());
    Ok(())
}
