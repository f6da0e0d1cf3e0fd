//! The collector's listeners cannot be starved, and the daemons' logs fit
//! where they go: idle /metrics connections do not take the admin API or
//! ingest down, a collector out of file descriptors backs off instead of
//! spinning and flooding its log, and logs written to a file carry no
//! terminal colour codes.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use siaga_tests::harness::*;

#[allow(unsafe_code)]
fn set_nofile(pid: i32, limit: u64) -> Result<()> {
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit.max(4096),
    };
    // SAFETY: prlimit(2) reads `new` and writes nothing (old limit pointer is null).
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    ensure!(
        rc == 0,
        "prlimit({pid}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// This test process may hold many client sockets.
fn raise_own_nofile() -> Result<()> {
    set_nofile(std::process::id() as i32, 4096)
}

fn open_fds(pid: i32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let utime: u64 = f.get(11).context("utime")?.parse()?;
    let stime: u64 = f.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn metrics_addr(c: &Collector) -> Result<SocketAddr> {
    let text = std::fs::read_to_string(c.data_dir.join("metrics.addr"))?;
    Ok(text.trim().parse()?)
}

fn collector_with_metrics() -> Result<(Collector, Siaga)> {
    let mut c = Collector::init()?;
    c.write_inventory(
        &Inventory::new("1s")
            .opd("demo")
            .device("demo-core", "demo", "127.0.0.1"),
    )?;
    set_toml(&c.config, "metrics_listen", "127.0.0.1:0".into())?;
    let root = c.enroll_user("root", "admin")?;
    c.serve()?;
    Ok((c, root))
}

#[test]
fn a_thousand_idle_metrics_connections_leave_the_admin_api_and_ingest_answering() -> Result<()> {
    raise_own_nofile()?;
    let (mut c, root) = collector_with_metrics()?;
    let agent = Agent::start(c.enroll_agent("demo")?)?;
    wait_until(secs(60), "samples of demo-core", || {
        Ok(root.history("demo-core")?.len() >= 2)
    })?;
    let pid = c.pid().ok_or_else(|| anyhow!("collector not running"))?;
    // As in the report that found it: the file limit at 256.
    set_nofile(pid, 256)?;
    let addr = metrics_addr(&c)?;
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect_timeout(&addr, secs(5)))
        .collect::<std::io::Result<_>>()
        .context("opening 1,000 idle connections")?;
    // The collector holds only its capped share of them.
    wait_until(secs(10), "the collector to take its share", || {
        Ok(open_fds(pid)? >= 32)
    })?;
    let fds = open_fds(pid)?;
    println!("1,000 idle /metrics connections: the collector holds {fds} descriptors");
    ensure!(fds < 200, "the collector holds {fds} descriptors");

    // The admin API answers, and samples keep arriving.
    let agents = root.agents()?;
    ensure!(agents.len() == 1, "{agents:?}");
    let before = root.history("demo-core")?.len();
    wait_until(
        secs(30),
        "new samples while the connections are open",
        || Ok(root.history("demo-core")?.len() > before),
    )?;
    ensure!(
        open_fds(pid)? < 200,
        "the collector holds {} descriptors",
        open_fds(pid)?
    );
    drop(idle);
    drop(agent);
    ensure!(c.stop(), "the collector did not stop cleanly");
    Ok(())
}

#[test]
fn a_thousand_idle_metrics_connections_leave_the_agent_probing_and_streaming() -> Result<()> {
    raise_own_nofile()?;
    let (mut c, root) = collector_with_metrics()?;
    let cfg = c.enroll_agent("demo")?;
    cfg.set("metrics_listen", "127.0.0.1:0")?;
    let mut agent = Agent::start(cfg.clone())?;
    wait_until(secs(60), "samples of demo-core", || {
        Ok(root.history("demo-core")?.len() >= 2)
    })?;
    let pid = agent.pid().ok_or_else(|| anyhow!("agent not running"))?;
    set_nofile(pid, 256)?;
    let addr: SocketAddr = std::fs::read_to_string(cfg.data_dir.join("metrics.addr"))?
        .trim()
        .parse()?;
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect_timeout(&addr, secs(5)))
        .collect::<std::io::Result<_>>()
        .context("opening 1,000 idle connections")?;
    wait_until(secs(10), "the agent to take its share", || {
        Ok(open_fds(pid)? >= 16)
    })?;
    let fds = open_fds(pid)?;
    println!("1,000 idle /metrics connections: the agent holds {fds} descriptors");
    ensure!(fds < 150, "the agent holds {fds} descriptors");
    let before = root.history("demo-core")?.len();
    wait_until(
        secs(30),
        "new samples while the connections are open",
        || Ok(root.history("demo-core")?.len() > before),
    )?;
    drop(idle);
    ensure!(agent.stop(), "the agent did not stop cleanly");
    ensure!(c.stop(), "the collector did not stop cleanly");
    Ok(())
}

#[test]
fn out_of_file_descriptors_the_collector_backs_off_instead_of_spinning() -> Result<()> {
    raise_own_nofile()?;
    let (mut c, root) = collector_with_metrics()?;
    let pid = c.pid().ok_or_else(|| anyhow!("collector not running"))?;
    let addr = metrics_addr(&c)?;
    // A few descriptors to spare, then more connections than that.
    set_nofile(pid, open_fds(pid)? as u64 + 4)?;
    let idle: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect_timeout(&addr, secs(5)))
        .collect::<std::io::Result<_>>()?;
    wait_until(secs(20), "the first failed accept in the log", || {
        Ok(c.log_tail(200).contains("accept failed"))
    })?;
    let failed_lines = |c: &Collector| c.log_tail(100_000).matches("accept failed").count();
    let lines_before = failed_lines(&c);
    let ticks_before = cpu_ticks(pid)?;
    let started = Instant::now();
    // A measurement window, not a wait for readiness.
    std::thread::sleep(Duration::from_secs(4));
    let elapsed = started.elapsed().as_secs_f64();
    #[allow(unsafe_code)]
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (cpu_ticks(pid)? - ticks_before) as f64 / hz;
    let lines = failed_lines(&c) - lines_before;
    println!(
        "out of descriptors: {lines} 'accept failed' lines and {cpu:.2} s CPU in {elapsed:.1} s"
    );
    ensure!(
        lines <= 2,
        "{lines} 'accept failed' lines in {elapsed:.1} s:\n{}",
        c.log_tail(10)
    );
    ensure!(
        cpu < elapsed * 0.25,
        "the collector used {cpu:.2} s of CPU in {elapsed:.1} s while out of descriptors"
    );

    // Once the connections go, it accepts again by itself.
    drop(idle);
    set_nofile(pid, 4096)?;
    wait_until(secs(30), "the admin API to answer again", || {
        Ok(root.agents().is_ok())
    })?;
    let text = http_get(&addr.to_string(), "/metrics")?;
    let errors = metric_containing(&text, "accept_errors").unwrap_or(0.0);
    ensure!(errors >= 1.0, "accept errors not counted:\n{text}");
    ensure!(c.stop(), "the collector did not stop cleanly");
    Ok(())
}

#[test]
fn daemons_logging_to_a_file_write_no_escape_bytes() -> Result<()> {
    let (mut c, root) = collector_with_metrics()?;
    let mut agent = Agent::start(c.enroll_agent("demo")?)?;
    wait_until(secs(60), "the agent's samples", || {
        Ok(root.history("demo-core")?.len() >= 2)
    })?;
    let collector_log = c.log_tail(100_000);
    let agent_log = agent.log_tail(100_000);
    ensure!(agent.stop(), "the agent did not stop cleanly");
    ensure!(c.stop(), "the collector did not stop cleanly");
    for (who, log) in [("collector", &collector_log), ("agent", &agent_log)] {
        ensure!(log.lines().count() > 2, "{who} logged nothing:\n{log}");
        ensure!(
            !log.contains('\u{1b}'),
            "{who}'s log has escape sequences:\n{log}"
        );
    }
    Ok(())
}
