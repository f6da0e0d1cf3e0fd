//! Starting real collector, agent and CLI processes for end-to-end tests.
//!
//! Everything here runs the binaries cargo built (`siaga-collector`,
//! `siaga-agent`, `siaga`) as child processes, with the certificates,
//! configuration files and data directories they write themselves. Every
//! process is killed and every temporary directory removed on `Drop`, also
//! when a test panics; on a panic the tail of each process log is printed.
//!
//! ```no_run
//! use siaga_tests::harness::*;
//! # fn main() -> anyhow::Result<()> {
//! let mut c = Collector::init()?;
//! c.write_inventory(&Inventory::new("1s").opd("demo").device("demo-core", "demo", "127.0.0.1"))?;
//! c.serve()?;
//! let admin = c.enroll_user("budi", "admin")?;
//! let mut agent = Agent::start(c.enroll_agent("demo")?)?;
//! wait_until(secs(30), "agent connected", || Ok(admin.agent(&agent.id)?.map(|a| a["connected"] == true).unwrap_or(false)))?;
//! # agent.kill9(); Ok(()) }
//! ```

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;

/// A duration of `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Builds the binaries of this profile when a benchmark example runs
/// through cargo, so that its figures are those of the source at hand.
pub fn build_binaries() -> Result<()> {
    if std::env::var_os("SIAGA_BIN_DIR").is_some() {
        return Ok(());
    }
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--workspace", "--bins"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let st = cmd.status().context("running cargo build")?;
    ensure!(st.success(), "cargo build --workspace --bins failed");
    Ok(())
}

/// Where cargo put the binaries: the test executable lives in
/// `<target>/<profile>/deps/`, the binaries one level up. `SIAGA_BIN_DIR`
/// overrides this (e.g. to test a release build).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIAGA_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir.pop();
    }
    dir
}

/// The path of one of Siaga's binaries; fails with what to do when absent.
pub fn bin(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "{} not found: run `cargo build --workspace --bins` first",
            path.display()
        )
    }
}

/// A free TCP port on 127.0.0.1 (bound once, then released), for a process
/// that must keep the same address across restarts.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Polls `cond` every 100 ms until it returns `Ok(true)` or `deadline` has
/// passed. Errors from `cond` count as "not yet"; the last one is reported
/// on timeout.
pub fn wait_until(
    deadline: Duration,
    what: &str,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match cond() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() > deadline {
            return Err(match last_err {
                Some(e) => {
                    anyhow!("timed out after {deadline:?} waiting for {what}; last error: {e:#}")
                }
                None => anyhow!("timed out after {deadline:?} waiting for {what}"),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A 64-bit number from `--json`: the canonical proto3 JSON mapping writes
/// `uint64`/`int64` fields as decimal strings, so both forms are read.
pub fn json_u64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64(),
    }
}

/// A `double` from `--json`: the canonical proto3 JSON mapping leaves out a
/// field that is 0 (so a missing one is 0) and writes NaN and the
/// infinities as strings; `None` when it is something else.
pub fn json_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Null => Some(0.0),
        Value::String(s) => s.parse().ok(),
        other => other.as_f64(),
    }
}

/// A boolean from `--json`: the canonical proto3 JSON mapping leaves out a
/// field that is false, so a missing one is false; `None` when it is
/// something else than a boolean.
pub fn json_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Null => Some(false),
        other => other.as_bool(),
    }
}

/// Reads a timestamp as the CLI prints it (RFC 3339 text, or a number of
/// microseconds, milliseconds or seconds since the epoch) as microseconds.
pub fn ts_us(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_micros())
            .or_else(|| s.parse::<i64>().ok()),
        Value::Number(n) => {
            let x = n.as_f64()?;
            Some(if x > 1e14 {
                x as i64
            } else if x > 1e11 {
                (x * 1e3) as i64
            } else {
                (x * 1e6) as i64
            })
        }
        _ => None,
    }
}

/// A child process with its log file; killed on drop.
struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Proc {
    fn new(name: &str, program: PathBuf, args: Vec<String>, log: PathBuf) -> Self {
        Proc {
            name: name.to_string(),
            program,
            args,
            log,
            env: Vec::new(),
            child: None,
        }
    }

    fn spawn(&mut self) -> Result<()> {
        self.kill9();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut banner = log.try_clone()?;
        writeln!(banner, "==== start {} {:?}", self.name, self.args)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY-free: `kill` through libc is a plain syscall wrapper.
            let _ = nix_kill(pid, sig);
        }
    }

    /// Whether the process is still running (not exited).
    fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Resume a paused process first so that it can die.
            let _ = nix_kill(c.id() as i32, libc::SIGCONT);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; SIGKILL after.
    fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = nix_kill(c.id() as i32, libc::SIGCONT);
        let _ = nix_kill(c.id() as i32, libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of {} ({}) ----\n{}\n----",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
        self.kill9();
    }
}

#[allow(unsafe_code)]
fn nix_kill(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs a command to completion and returns its output.
fn run(program: &Path, args: &[&str]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {:?}", program.display(), args))
}

fn ok_output(program: &Path, args: &[&str]) -> Result<Output> {
    let out = run(program, args)?;
    if !out.status.success() {
        bail!(
            "{} {:?} failed ({}):\n{}{}",
            program.display(),
            args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn read_toml(path: &Path) -> Result<toml::Table> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse::<toml::Table>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// Sets `key` (dotted for a table, e.g. `spool.max_bytes`) in a TOML file.
pub fn set_toml(path: &Path, key: &str, value: toml::Value) -> Result<()> {
    let mut t = read_toml(path)?;
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().ok_or_else(|| anyhow!("empty key"))?;
    let mut table = &mut t;
    for p in parts {
        table = table
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| anyhow!("{p} is not a table in {}", path.display()))?;
    }
    table.insert(last.to_string(), value);
    fs::write(path, toml::to_string(&t)?)?;
    Ok(())
}

/// A builder for the collector's `inventory.toml`.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    interval: String,
    opds: Vec<String>,
    devices: Vec<(String, String, String)>,
}

impl Inventory {
    /// An inventory whose probe cycle is `interval` (e.g. `"1s"`).
    pub fn new(interval: &str) -> Self {
        Inventory {
            interval: interval.to_string(),
            ..Default::default()
        }
    }

    /// Adds an OPD.
    pub fn opd(mut self, id: &str) -> Self {
        self.opds.push(id.to_string());
        self
    }

    /// Adds a device (kind `server`) of `opd` at `address` (loopback only).
    pub fn device(mut self, id: &str, opd: &str, address: &str) -> Self {
        self.devices
            .push((id.to_string(), opd.to_string(), address.to_string()));
        self
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let mut s = format!("interval = \"{}\"\n", self.interval);
        for o in &self.opds {
            s.push_str(&format!("\n[[opd]]\nid = \"{o}\"\nname = \"OPD {o}\"\n"));
        }
        for (id, opd, addr) in &self.devices {
            s.push_str(&format!(
                "\n[[device]]\nid = \"{id}\"\nopd = \"{opd}\"\nkind = \"server\"\naddress = \"{addr}\"\n"
            ));
        }
        s
    }
}

/// A collector made by `siaga-collector init` in its own temporary
/// directory, on a port chosen once so that agents find it again after a
/// restart.
pub struct Collector {
    // Dropped first (fields drop in order): the process, and its log printed
    // on a panic, go before the directory does.
    proc: Proc,
    root: tempfile::TempDir,
    /// `collector.toml`.
    pub config: PathBuf,
    /// The data directory from `collector.toml`.
    pub data_dir: PathBuf,
    /// The uplink/admin address.
    pub listen: SocketAddr,
    enrolled: usize,
}

impl Collector {
    /// `siaga-collector init --dir <tmp>/collector --listen 127.0.0.1:<free port>`.
    pub fn init() -> Result<Self> {
        Collector::init_with(&[])
    }

    /// [`Collector::init`] with further arguments to `init` (e.g.
    /// `["--store", URL]`); `init` must succeed.
    pub fn init_with(extra: &[&str]) -> Result<Self> {
        let root = tempfile::Builder::new().prefix("siaga-e2e-").tempdir()?;
        let dir = root.path().join("collector");
        let port = free_port()?;
        let listen: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let exe = bin("siaga-collector")?;
        let listen_arg = listen.to_string();
        let mut args = vec!["init", "--dir", path_str(&dir)?, "--listen", &listen_arg];
        args.extend_from_slice(extra);
        ok_output(&exe, &args)?;
        let config = dir.join("collector.toml");
        let t = read_toml(&config)?;
        let data_dir = resolve(
            &dir,
            t.get("data_dir")
                .and_then(|v| v.as_str())
                .ok_or_else(|| anyhow!("collector.toml has no data_dir"))?,
        );
        let log = root.path().join("collector.log");
        let proc = Proc::new(
            "siaga-collector",
            exe,
            vec!["serve".into(), "--config".into(), path_str(&config)?.into()],
            log,
        );
        Ok(Collector {
            root,
            config,
            data_dir,
            listen,
            proc,
            enrolled: 0,
        })
    }

    /// A further collector made the way an operator makes one: a copy of
    /// this collector's directory (same CA, certificates, users and store
    /// settings; its data as it is now), with its own `listen` on a free
    /// port. This collector must be stopped while it is copied.
    pub fn copy_as_another(&mut self) -> Result<Collector> {
        ensure!(
            !self.proc.running(),
            "stop the collector before copying its directory"
        );
        let root = tempfile::Builder::new().prefix("siaga-e2e-").tempdir()?;
        let dir = root.path().join("collector");
        let out = Command::new("cp")
            .args(["-a", path_str(&self.dir())?, path_str(&dir)?])
            .output()
            .context("running cp")?;
        ensure!(
            out.status.success(),
            "cp -a: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let config = dir.join("collector.toml");
        // A line edit, so that the copy keeps the comments `init` wrote.
        let text = fs::read_to_string(&config)?;
        let mut replaced = false;
        let text: Vec<String> = text
            .lines()
            .map(|l| {
                if !replaced && l.trim_start().starts_with("listen ") {
                    replaced = true;
                    format!("listen = \"{listen}\"")
                } else {
                    l.to_string()
                }
            })
            .collect();
        ensure!(replaced, "{} has no listen line", config.display());
        fs::write(&config, text.join("\n") + "\n")?;
        let data_dir = self
            .data_dir
            .strip_prefix(self.dir())
            .map(|rel| dir.join(rel))
            .unwrap_or_else(|_| self.data_dir.clone());
        let log = root.path().join("collector.log");
        let proc = Proc::new(
            "siaga-collector (copy)",
            bin("siaga-collector")?,
            vec!["serve".into(), "--config".into(), path_str(&config)?.into()],
            log,
        );
        Ok(Collector {
            root,
            config,
            data_dir,
            listen,
            proc,
            enrolled: 0,
        })
    }

    /// `https://127.0.0.1:PORT`, the URL agents and people use.
    pub fn url(&self) -> String {
        format!("https://{}", self.listen)
    }

    /// The temporary directory everything of this test lives in.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The directory `init` wrote.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("collector")
    }

    /// The inventory file named in `collector.toml`.
    pub fn inventory_path(&self) -> Result<PathBuf> {
        let t = read_toml(&self.config)?;
        let inv = t
            .get("inventory")
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow!("collector.toml has no inventory"))?;
        Ok(resolve(&self.dir(), inv))
    }

    /// Replaces the inventory file.
    pub fn write_inventory(&self, inv: &Inventory) -> Result<()> {
        self.write_inventory_text(&inv.to_toml())
    }

    /// Replaces the inventory file with `text`.
    pub fn write_inventory_text(&self, text: &str) -> Result<()> {
        let p = self.inventory_path()?;
        fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    }

    /// Starts `siaga-collector serve` and waits until it wrote
    /// `collector.addr` and accepts connections.
    pub fn serve(&mut self) -> Result<&mut Self> {
        let addr_file = self.data_dir.join("collector.addr");
        let _ = fs::remove_file(&addr_file);
        self.proc.spawn()?;
        let listen = self.listen;
        let proc = &mut self.proc;
        let mut exited = false;
        wait_until(secs(30), "the collector to write collector.addr", || {
            if !proc.running() {
                exited = true;
                return Ok(true);
            }
            let text = fs::read_to_string(&addr_file).unwrap_or_default();
            Ok(text.contains(&listen.port().to_string())
                && TcpStream::connect_timeout(&listen, Duration::from_millis(500)).is_ok())
        })?;
        if exited {
            bail!("siaga-collector exited:\n{}", self.proc.log_tail(20));
        }
        Ok(self)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Sets an environment variable for the next start (e.g. `RUST_LOG`).
    pub fn env(&mut self, key: &str, value: &str) -> &mut Self {
        self.proc.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.proc.pid()
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        self.proc.terminate(secs(20)).is_some_and(|s| s.success())
    }

    /// SIGSTOP: the process freezes with its sockets open.
    pub fn pause(&self) {
        self.proc.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Collector::pause`].
    pub fn resume(&self) {
        self.proc.signal(libc::SIGCONT);
    }

    /// Starts the collector again on the same address and data.
    pub fn restart(&mut self) -> Result<&mut Self> {
        self.serve()
    }

    /// `siaga-collector <args>` (not started in the background).
    pub fn cmd(&self, args: &[&str]) -> Result<Output> {
        run(&bin("siaga-collector")?, args)
    }

    /// `siaga-collector validate --config collector.toml`.
    pub fn validate(&self) -> Result<Output> {
        self.cmd(&["validate", "--config", path_str(&self.config)?])
    }

    /// `siaga-collector reload --config collector.toml`.
    pub fn reload(&self) -> Result<Output> {
        self.cmd(&["reload", "--config", path_str(&self.config)?])
    }

    /// `siaga-collector enroll agent --opd OPD`, into a fresh directory.
    pub fn enroll_agent(&mut self, opd: &str) -> Result<AgentConfig> {
        self.enrolled += 1;
        let out = self
            .root
            .path()
            .join(format!("agent-{opd}-{}", self.enrolled));
        let dir = self.dir();
        ok_output(
            &bin("siaga-collector")?,
            &[
                "enroll",
                "agent",
                "--dir",
                path_str(&dir)?,
                "--opd",
                opd,
                "--out",
                path_str(&out)?,
            ],
        )?;
        AgentConfig::load(&out.join("agent.toml"))
    }

    /// `siaga-collector enroll user --name NAME --role ROLE`; returns the CLI
    /// bound to the written `siaga.toml`. A running collector learns of the
    /// user on `reload`, so enroll before [`Collector::serve`]. A `pemohon`
    /// needs an OPD: use [`Collector::enroll_user_in`].
    pub fn enroll_user(&mut self, name: &str, role: &str) -> Result<Siaga> {
        self.enroll(name, role, None, &[])
    }

    /// [`Collector::enroll_user`] with `--opd OPD`: the person works for that OPD.
    pub fn enroll_user_in(&mut self, name: &str, role: &str, opd: &str) -> Result<Siaga> {
        self.enroll(name, role, Some(opd), &[])
    }

    /// [`Collector::enroll_user`] with more `enroll user` flags
    /// (`--full-name`, `--nip`, `--jabatan`, `--opd`).
    pub fn enroll_user_with(&mut self, name: &str, role: &str, extra: &[&str]) -> Result<Siaga> {
        self.enroll(name, role, None, extra)
    }

    fn enroll(
        &mut self,
        name: &str,
        role: &str,
        opd: Option<&str>,
        extra: &[&str],
    ) -> Result<Siaga> {
        let out = self.root.path().join(format!("user-{name}"));
        let dir = self.dir();
        let mut args = vec![
            "enroll",
            "user",
            "--dir",
            path_str(&dir)?,
            "--name",
            name,
            "--role",
            role,
            "--out",
            path_str(&out)?,
        ];
        if let Some(opd) = opd {
            args.extend(["--opd", opd]);
        }
        args.extend_from_slice(extra);
        ok_output(&bin("siaga-collector")?, &args)?;
        Ok(Siaga {
            config: out.join("siaga.toml"),
        })
    }

    /// Turns the web console on (`[web] listen` on a free loopback port);
    /// before [`Collector::serve`].
    pub fn enable_web(&self) -> Result<()> {
        let mut text = fs::read_to_string(&self.config)?;
        text.push_str("\n[web]\nlisten = \"127.0.0.1:0\"\n");
        fs::write(&self.config, text).with_context(|| format!("writing {}", self.config.display()))
    }

    /// `host:port` of the web console of a serving collector.
    pub fn web_addr(&self) -> Result<SocketAddr> {
        let file = self.data_dir.join("web.addr");
        let text = fs::read_to_string(&file)
            .with_context(|| format!("reading {} (is [web] on?)", file.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{}: {text:?}", file.display()))
    }

    /// The last lines of the collector's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

/// A path as the `&str` a command line takes.
pub fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", p.display()))
}

/// An enrolled agent's `agent.toml` and the files beside it.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// `agent.toml`.
    pub path: PathBuf,
    /// Agent id (from the file).
    pub id: String,
    /// The OPD it speaks for.
    pub opd: String,
    /// The collector URL.
    pub collector: String,
    /// TLS name of the collector.
    pub server_name: String,
    /// CA certificate PEM.
    pub ca: PathBuf,
    /// Client certificate PEM.
    pub cert: PathBuf,
    /// Client key PEM.
    pub key: PathBuf,
    /// The agent's data directory.
    pub data_dir: PathBuf,
}

impl AgentConfig {
    fn load(path: &Path) -> Result<Self> {
        let t = read_toml(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let s = |k: &str| -> Result<String> {
            t.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| anyhow!("{} has no {k}", path.display()))
        };
        let tls = t
            .get("tls")
            .and_then(|v| v.as_table())
            .ok_or_else(|| anyhow!("{} has no [tls]", path.display()))?;
        let tls_path = |k: &str| -> Result<PathBuf> {
            tls.get(k)
                .and_then(|v| v.as_str())
                .map(|p| resolve(dir, p))
                .ok_or_else(|| anyhow!("{} has no tls.{k}", path.display()))
        };
        let collector = s("collector")?;
        let server_name = match t.get("server_name").and_then(|v| v.as_str()) {
            Some(n) => n.to_string(),
            None => url_host(&collector),
        };
        Ok(AgentConfig {
            path: path.to_path_buf(),
            id: s("id")?,
            opd: s("opd")?,
            collector,
            server_name,
            ca: tls_path("ca")?,
            cert: tls_path("cert")?,
            key: tls_path("key")?,
            data_dir: resolve(dir, &s("data_dir").unwrap_or_else(|_| "data".into())),
        })
    }

    /// Sets a key in `agent.toml` (dotted for a table: `spool.max_bytes`).
    pub fn set(&self, key: &str, value: impl Into<toml::Value>) -> Result<&Self> {
        set_toml(&self.path, key, value.into())?;
        Ok(self)
    }

    /// The TLS material to speak the protocol directly as this agent.
    pub fn tls(&self) -> Result<Tls> {
        Tls::from_config(&self.path)
    }
}

fn url_host(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((h, _)) => h.trim_matches(['[', ']']).to_string(),
        None => hostport.to_string(),
    }
}

/// A running `siaga-agent run --config agent.toml`.
pub struct Agent {
    /// Its configuration.
    pub cfg: AgentConfig,
    /// Agent id.
    pub id: String,
    proc: Proc,
}

impl Agent {
    /// Starts the agent.
    pub fn start(cfg: AgentConfig) -> Result<Self> {
        Agent::start_with_env(cfg, &[])
    }

    /// Starts the agent with extra environment variables.
    pub fn start_with_env(cfg: AgentConfig, env: &[(&str, &str)]) -> Result<Self> {
        let log = cfg
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join("agent.log");
        let mut proc = Proc::new(
            "siaga-agent",
            bin("siaga-agent")?,
            vec!["run".into(), "--config".into(), path_str(&cfg.path)?.into()],
            log,
        );
        proc.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        proc.spawn()?;
        Ok(Agent {
            id: cfg.id.clone(),
            cfg,
            proc,
        })
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// SIGTERM and wait; whether it exited 0.
    pub fn stop(&mut self) -> bool {
        self.proc.terminate(secs(20)).is_some_and(|s| s.success())
    }

    /// Starts it again with the same config and spool.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.spawn()
    }

    /// Whether the process is running.
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.proc.pid()
    }

    /// The text of the agent's Prometheus endpoint (needs `metrics_listen`).
    pub fn metrics(&self) -> Result<String> {
        let addr = fs::read_to_string(self.cfg.data_dir.join("metrics.addr"))?;
        http_get(addr.trim(), "/metrics")
    }

    /// The last lines of the agent's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

/// A tokio runtime for speaking the protocol from a (synchronous) test.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// `WhoAmI` on the admin API with the given TLS material.
pub async fn whoami(tls: &Tls) -> Result<siaga_proto::v1::WhoAmIResponse> {
    let ch = tls.channel().await?;
    let mut c = siaga_proto::v1::admin_client::AdminClient::new(ch);
    Ok(c.who_am_i(siaga_proto::v1::WhoAmIRequest {})
        .await?
        .into_inner())
}

/// A minimal HTTP/1.0 GET (for the metrics endpoints).
pub fn http_get(addr: &str, path: &str) -> Result<String> {
    let addr: SocketAddr = addr.parse().with_context(|| format!("address {addr:?}"))?;
    let mut s = TcpStream::connect_timeout(&addr, secs(2))?;
    s.set_read_timeout(Some(secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(buf))
}

/// The sum of the Prometheus samples whose metric name contains `part`
/// (e.g. `dropped`), if there is any.
pub fn metric_containing(text: &str, part: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, val)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = key.split('{').next().unwrap_or(key);
        if metric.contains(part)
            && let Ok(v) = val.parse::<f64>()
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The sum of every sample of the Prometheus metric `name` (any labels).
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (key, val) = line.rsplit_once(' ')?;
        let metric = key.split('{').next().unwrap_or(key);
        if metric == name {
            *found.get_or_insert(0.0) += val.parse::<f64>().ok()?;
        }
    }
    found
}

/// The URL of the collector an agent's stream is on, from the agent's
/// metrics text (`siaga_agent_uplink_collector{url="…"} 1`); `None`
/// while it streams to none.
pub fn agent_on_collector(metrics: &str) -> Option<String> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix("siaga_agent_uplink_collector{url=\"")?;
        let (url, value) = rest.split_once("\"} ")?;
        (value.trim().parse::<f64>().ok()? == 1.0).then(|| url.to_string())
    })
}

/// The `siaga` CLI bound to one `siaga.toml`.
#[derive(Clone, Debug)]
pub struct Siaga {
    /// The `siaga.toml` it uses.
    pub config: PathBuf,
}

impl Siaga {
    /// The same person on collector `c`: a copy of `siaga.toml` beside the
    /// original (so that its relative paths still hold) naming `c`'s URL.
    pub fn on(&self, c: &Collector) -> Result<Siaga> {
        let config = self
            .config
            .with_file_name(format!("siaga-{}.toml", c.listen.port()));
        fs::copy(&self.config, &config)
            .with_context(|| format!("copying {}", self.config.display()))?;
        set_toml(&config, "collector", c.url().into())?;
        Ok(Siaga { config })
    }

    /// `siaga --config FILE <args>`; the raw output.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_env(args, &[])
    }

    /// `siaga --config FILE <args>` with these environment variables set
    /// (e.g. `COLUMNS`); the raw output.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
        let mut all = vec!["--config", path_str(&self.config)?];
        all.extend_from_slice(args);
        let program = bin("siaga")?;
        Command::new(&program)
            .args(&all)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} {:?}", program.display(), all))
    }

    /// `siaga --config FILE <args>` with `input` on its standard input
    /// (a pipe, not a terminal); the raw output.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Result<Output> {
        let mut all = vec!["--config", path_str(&self.config)?];
        all.extend_from_slice(args);
        let program = bin("siaga")?;
        let mut child = Command::new(&program)
            .args(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {} {:?}", program.display(), all))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes())?;
        }
        child
            .wait_with_output()
            .with_context(|| format!("waiting for {} {:?}", program.display(), all))
    }

    /// `siaga --config FILE <args>`, which must succeed and print JSON.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "siaga {:?} failed ({}): {}",
                args,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "siaga {:?} printed no JSON: {}",
                args,
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The TLS material in this `siaga.toml`.
    pub fn tls(&self) -> Result<Tls> {
        Tls::from_config(&self.config)
    }

    /// `siaga agents --json`.
    pub fn agents(&self) -> Result<Vec<Value>> {
        as_array(self.json(&["agents", "--json"])?)
    }

    /// The entry of `siaga agents --json` for one agent id.
    pub fn agent(&self, id: &str) -> Result<Option<Value>> {
        Ok(self.agents()?.into_iter().find(|a| a["id"] == id))
    }

    /// `siaga devices --json`.
    pub fn devices(&self) -> Result<Vec<Value>> {
        as_array(self.json(&["devices", "--json"])?)
    }

    /// `siaga history DEVICE --since 1h --json`.
    pub fn history(&self, device: &str) -> Result<Vec<Value>> {
        as_array(self.json(&["history", device, "--since", "1h", "--json"])?)
    }

    /// The timestamps (µs) of `siaga history DEVICE`, in the order printed.
    pub fn history_ts(&self, device: &str) -> Result<Vec<i64>> {
        self.history(device)?
            .iter()
            .map(|s| ts_us(&s["ts"]).ok_or_else(|| anyhow!("sample without a ts: {s}")))
            .collect()
    }
}

fn as_array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => bail!("expected a JSON array, got {other}"),
    }
}

/// Largest gap (µs) between consecutive timestamps within `[from, to]`,
/// counting the edges of the window too.
pub fn largest_gap(ts: &[i64], from: i64, to: i64) -> i64 {
    let mut inside: Vec<i64> = ts
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    inside.sort_unstable();
    let mut prev = from;
    let mut gap = 0;
    for t in inside.into_iter().chain(std::iter::once(to)) {
        gap = gap.max(t - prev);
        prev = t;
    }
    gap
}

/// Timestamps that occur more than once.
pub fn duplicates(ts: &[i64]) -> Vec<i64> {
    let mut sorted = ts.to_vec();
    sorted.sort_unstable();
    let mut d: Vec<i64> = sorted
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    d.dedup();
    d
}

/// Where and how to reach the collector over TLS, and with which client
/// certificate (none for the "no certificate" case).
#[derive(Clone, Debug)]
pub struct Tls {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The name the server certificate must carry.
    pub server_name: String,
    /// The CA to trust.
    pub ca_pem: String,
    /// Client certificate and key PEM.
    pub identity: Option<(String, String)>,
}

impl Tls {
    /// Reads `collector`, `server_name` and `[tls]` from an `agent.toml` or
    /// `siaga.toml`.
    pub fn from_config(path: &Path) -> Result<Tls> {
        let t = read_toml(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        // An agent's `collector` may be a list: the first of it.
        let url = t
            .get("collector")
            .and_then(|v| match v {
                toml::Value::Array(a) => a.first().and_then(|v| v.as_str()),
                v => v.as_str(),
            })
            .ok_or_else(|| anyhow!("{} has no collector", path.display()))?
            .to_string();
        let server_name = match t.get("server_name").and_then(|v| v.as_str()) {
            Some(n) => n.to_string(),
            None => url_host(&url),
        };
        let tls = t
            .get("tls")
            .and_then(|v| v.as_table())
            .ok_or_else(|| anyhow!("{} has no [tls]", path.display()))?;
        let read = |k: &str| -> Result<String> {
            let p = tls
                .get(k)
                .and_then(|v| v.as_str())
                .ok_or_else(|| anyhow!("{} has no tls.{k}", path.display()))?;
            let p = resolve(dir, p);
            fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
        };
        Ok(Tls {
            url,
            server_name,
            ca_pem: read("ca")?,
            identity: Some((read("cert")?, read("key")?)),
        })
    }

    /// Connects a gRPC channel.
    pub async fn channel(&self) -> Result<tonic::transport::Channel> {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let mut cfg = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(self.server_name.clone());
        if let Some((cert, key)) = &self.identity {
            cfg = cfg.identity(Identity::from_pem(cert, key));
        }
        let ch = Endpoint::from_shared(self.url.clone())?
            .tls_config(cfg)?
            .connect_timeout(secs(5))
            .timeout(secs(30))
            .connect()
            .await?;
        Ok(ch)
    }

    /// The same, but with a client certificate from a CA the collector has
    /// never seen (made here with rcgen), carrying `uri_san`.
    pub fn with_foreign_identity(&self, uri_san: &str) -> Result<Tls> {
        let (cert, key) = foreign_client_cert(uri_san)?;
        Ok(Tls {
            identity: Some((cert, key)),
            ..self.clone()
        })
    }

    /// The same without any client certificate.
    pub fn without_identity(&self) -> Tls {
        Tls {
            identity: None,
            ..self.clone()
        }
    }
}

/// A CA of our own and a client certificate it signed; (cert PEM, key PEM).
pub fn foreign_client_cert(uri_san: &str) -> Result<(String, String)> {
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Not the Siaga CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.subject_alt_names = vec![SanType::URI(uri_san.try_into()?)];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// One agent's uplink stream spoken directly with the protocol.
pub struct Uplink {
    tx: tokio::sync::mpsc::Sender<siaga_proto::v1::AgentMessage>,
    rx: tonic::Streaming<siaga_proto::v1::CollectorMessage>,
    /// The inventory the collector sent after `Welcome`, if any.
    pub inventory: Option<siaga_proto::v1::Inventory>,
    next_batch: u64,
}

impl Uplink {
    /// Opens the stream, says `Hello` and waits for `Welcome` (and the
    /// inventory, if the collector sends one right after).
    pub async fn open(tls: &Tls, agent_id: &str, opd: &str) -> Result<Self> {
        Self::open_as(tls, agent_id, opd, "harness").await
    }

    /// As [`Uplink::open`], saying `hostname` (and it as the version) in `Hello`.
    pub async fn open_as(tls: &Tls, agent_id: &str, opd: &str, hostname: &str) -> Result<Self> {
        use siaga_proto::v1::{AgentMessage, Hello, agent_message, collector_message};
        let ch = tls.channel().await?;
        let mut client = siaga_proto::v1::uplink_client::UplinkClient::new(ch)
            .max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(siaga_proto::MAX_MESSAGE_BYTES);
        let (tx, rx_out) = tokio::sync::mpsc::channel(64);
        tx.send(AgentMessage {
            msg: Some(agent_message::Msg::Hello(Hello {
                protocol_major: siaga_proto::PROTOCOL_MAJOR,
                protocol_minor: siaga_proto::PROTOCOL_MINOR,
                agent_version: hostname.into(),
                agent_id: agent_id.into(),
                opd: opd.into(),
                hostname: hostname.into(),
                ..Default::default()
            })),
        })
        .await?;
        let resp = client
            .stream(tokio_stream::wrappers::ReceiverStream::new(rx_out))
            .await?;
        let mut rx = resp.into_inner();
        let first = rx
            .message()
            .await?
            .ok_or_else(|| anyhow!("stream closed before Welcome"))?;
        match first.msg {
            Some(collector_message::Msg::Welcome(_)) => {}
            other => bail!("expected Welcome, got {other:?}"),
        }
        Ok(Uplink {
            tx,
            rx,
            inventory: None,
            next_batch: 1,
        })
    }

    /// Sends one batch and waits for its acknowledgement (inventory and
    /// commands arriving meanwhile are kept or skipped).
    pub async fn send(
        &mut self,
        samples: Vec<siaga_proto::v1::Sample>,
    ) -> Result<siaga_proto::v1::Ack> {
        use siaga_proto::v1::collector_message;
        let batch_id = self.send_batch(samples).await?;
        loop {
            let m = self
                .rx
                .message()
                .await?
                .ok_or_else(|| anyhow!("stream closed before the ack of batch {batch_id}"))?;
            match m.msg {
                Some(collector_message::Msg::Ack(a)) if a.batch_id == batch_id => return Ok(a),
                Some(collector_message::Msg::Inventory(inv)) => self.inventory = Some(inv),
                // The reason for samples of this batch the Ack counts as refused.
                Some(collector_message::Msg::Refusal(r)) if r.batch_id == batch_id => {}
                Some(collector_message::Msg::Refusal(r)) => bail!("refused: {}", r.reason),
                _ => {}
            }
        }
    }
}

impl Uplink {
    /// Sends one batch under the next batch id; that id.
    async fn send_batch(&mut self, samples: Vec<siaga_proto::v1::Sample>) -> Result<u64> {
        use siaga_proto::v1::{AgentMessage, SampleBatch, agent_message};
        let batch_id = self.next_batch;
        self.next_batch += 1;
        self.tx
            .send(AgentMessage {
                msg: Some(agent_message::Msg::Batch(SampleBatch { batch_id, samples })),
            })
            .await
            .map_err(|_| anyhow!("uplink stream closed"))?;
        Ok(batch_id)
    }

    /// Sends a heartbeat stamped `ts_us` by the agent's clock (no answer comes).
    pub async fn heartbeat(&self, ts_us: i64) -> Result<()> {
        use siaga_proto::v1::{AgentMessage, Heartbeat, agent_message};
        self.tx
            .send(AgentMessage {
                msg: Some(agent_message::Msg::Heartbeat(Heartbeat {
                    ts_us,
                    ..Default::default()
                })),
            })
            .await
            .map_err(|_| anyhow!("uplink stream closed"))
    }

    /// Sends one batch and waits for what answers it: its acknowledgement,
    /// or the error that ends the stream (inventory, refusals and commands
    /// meanwhile are kept or skipped).
    pub async fn send_or_status(
        &mut self,
        samples: Vec<siaga_proto::v1::Sample>,
    ) -> Result<std::result::Result<siaga_proto::v1::Ack, tonic::Status>> {
        use siaga_proto::v1::collector_message;
        let batch_id = self.send_batch(samples).await?;
        loop {
            let m = match self.rx.message().await {
                Ok(Some(m)) => m,
                Ok(None) => bail!("stream closed before the ack of batch {batch_id}"),
                Err(status) => return Ok(Err(status)),
            };
            match m.msg {
                Some(collector_message::Msg::Ack(a)) if a.batch_id == batch_id => return Ok(Ok(a)),
                Some(collector_message::Msg::Inventory(inv)) => self.inventory = Some(inv),
                _ => {}
            }
        }
    }

    /// Sends one batch and waits for its acknowledgement, returning the
    /// `Refusal`s the collector sent for it on the way.
    pub async fn send_with_refusals(
        &mut self,
        samples: Vec<siaga_proto::v1::Sample>,
    ) -> Result<(siaga_proto::v1::Ack, Vec<siaga_proto::v1::Refusal>)> {
        use siaga_proto::v1::collector_message;
        let batch_id = self.send_batch(samples).await?;
        let mut refusals = Vec::new();
        loop {
            let m = self
                .rx
                .message()
                .await?
                .ok_or_else(|| anyhow!("stream closed before the ack of batch {batch_id}"))?;
            match m.msg {
                Some(collector_message::Msg::Ack(a)) if a.batch_id == batch_id => {
                    return Ok((a, refusals));
                }
                Some(collector_message::Msg::Inventory(inv)) => self.inventory = Some(inv),
                Some(collector_message::Msg::Refusal(r)) => refusals.push(r),
                _ => {}
            }
        }
    }
}

/// An ICMP sample for `device` with sequence `seq` at `ts_us`.
pub fn icmp_sample(seq: u64, ts_us: i64, device: &str) -> siaga_proto::v1::Sample {
    use siaga_proto::v1::{IcmpResult, sample};
    siaga_proto::v1::Sample {
        seq,
        ts_us,
        device: device.to_string(),
        kind: Some(sample::Kind::Icmp(IcmpResult {
            sent: 3,
            received: 3,
            loss_pct: 0.0,
            rtt_min_us: Some(40),
            rtt_avg_us: Some(50 + seq % 7),
            rtt_median_us: Some(50),
            rtt_max_us: Some(60),
            jitter_us: Some(5),
            ..Default::default()
        })),
    }
}

/// What a command printed: its standard output, then its standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The state `siaga devices --json` shows `who` for `device` (empty when
/// the device is not listed).
pub fn device_state(who: &Siaga, device: &str) -> Result<String> {
    Ok(who
        .devices()?
        .iter()
        .find(|d| d["id"] == device)
        .and_then(|d| d["state"].as_str())
        .unwrap_or_default()
        .to_string())
}

/// Whether `siaga agents --json` shows `who` agent `id` connected.
pub fn agent_connected(who: &Siaga, id: &str) -> Result<bool> {
    Ok(who.agent(id)?.is_some_and(|a| a["connected"] == true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_count_the_window_edges() {
        assert_eq!(largest_gap(&[], 0, 10), 10);
        assert_eq!(largest_gap(&[2, 4, 9], 0, 10), 5);
        assert_eq!(largest_gap(&[4, 2, 9, 50], 1, 10), 5);
        assert_eq!(largest_gap(&[0, 5, 10], 0, 10), 5);
    }

    #[test]
    fn duplicates_are_listed_once() {
        assert_eq!(duplicates(&[3, 1, 3, 2, 3, 1]), [1, 3]);
        assert!(duplicates(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn timestamps_in_any_form() {
        let us = 1_795_000_000_123_456_i64;
        assert_eq!(ts_us(&serde_json::json!(us)), Some(us));
        assert_eq!(
            ts_us(&serde_json::json!(1_795_000_000_123_i64)),
            Some(us - 456)
        );
        assert_eq!(
            ts_us(&serde_json::json!("1970-01-01T00:00:01.5Z")),
            Some(1_500_000)
        );
        assert_eq!(ts_us(&serde_json::json!(null)), None);
    }

    #[test]
    fn metrics_are_summed_over_labels() {
        let text = "# HELP x y\nsiaga_spool_dropped_total{a=\"1\"} 3\nsiaga_spool_dropped_total{a=\"2\"} 4\nother 1\n";
        assert_eq!(metric_containing(text, "dropped"), Some(7.0));
        assert_eq!(metric_value(text, "other"), Some(1.0));
        assert_eq!(metric_containing(text, "absent"), None);
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://127.0.0.1:7443"), "127.0.0.1");
        assert_eq!(url_host("https://[::1]:7443/x"), "::1");
        assert_eq!(url_host("https://localhost"), "localhost");
    }

    #[test]
    fn foreign_certificates_are_pem() -> Result<()> {
        let (cert, key) = foreign_client_cert("siaga://user/mallory")?;
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        Ok(())
    }
}
