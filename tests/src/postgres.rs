//! A real PostgreSQL cluster of a test's own: `initdb` in a fresh temporary
//! directory, `pg_ctl start` on a free loopback port, one database, and on
//! `Drop` (also when the test panics) `pg_ctl stop -m immediate` and the
//! directory removed.
//!
//! It installs nothing: Debian's `postgresql` package (which `tests/run.sh`
//! installs) puts `initdb` and `pg_ctl` in `/usr/lib/postgresql/<version>/bin`.
//! PostgreSQL refuses to run as root, so as root the cluster runs as an
//! unprivileged system user created once ([`USER`]).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let pg = siaga_tests::postgres::Cluster::start()?;
//! let url = pg.url(); // postgres://postgres@127.0.0.1:<port>/siaga
//! # Ok(()) }
//! ```
//!
//! [`Cluster::start_tls`] starts one that speaks TLS with a server
//! certificate of a CA the test makes ([`Cluster::ca_pem`]) and refuses
//! plain TCP connections (pg_hba.conf: `hostssl` only).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

/// The system user the clusters run as when the tests run as root.
pub const USER: &str = "siaga-pgtest";
/// The database [`Cluster::start`] creates.
pub const DATABASE: &str = "siaga";

/// A running cluster; stopped and removed on `Drop`.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// `(uid, gid)` to run PostgreSQL's programs as; `None`: as ourselves.
    run_as: Option<(u32, u32)>,
    /// The CA file of its server certificate, when it speaks TLS.
    ca: Option<PathBuf>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and
/// `pg_ctl` (`SIAGA_PG_BIN` overrides).
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SIAGA_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no PostgreSQL server in /usr/lib/postgresql/*/bin: install Debian's \
             `postgresql` package (tests/run.sh does)"
        ),
    }
}

/// The uid and gid of [`USER`], creating it (a system user without a home
/// or a shell) if it does not exist yet. Several tests may race here: a
/// failed `useradd` is fine if the user then exists.
fn test_user() -> Result<(u32, u32)> {
    let lookup = || -> Result<Option<(u32, u32)>> {
        let id = |flag: &str| -> Result<Option<u32>> {
            let out = Command::new("id").args([flag, USER]).output()?;
            if !out.status.success() {
                return Ok(None);
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        };
        Ok(id("-u")?.zip(id("-g")?))
    };
    if let Some(ids) = lookup()? {
        return Ok(ids);
    }
    let out = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            USER,
        ])
        .output()
        .context("running useradd")?;
    match lookup()? {
        Some(ids) => Ok(ids),
        None => bail!(
            "could not create the user {USER}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

impl Cluster {
    /// Creates and starts a cluster with the database [`DATABASE`].
    pub fn start() -> Result<Cluster> {
        Cluster::start_with(false)
    }

    /// As [`Cluster::start`], with `ssl = on`, a server certificate for
    /// the IP address 127.0.0.1 only (no DNS name: `localhost` does not
    /// match it) signed by a CA of its own ([`Cluster::ca_pem`]), and TCP
    /// connections without TLS refused by pg_hba.conf (`hostssl` only).
    pub fn start_tls() -> Result<Cluster> {
        Cluster::start_with(true)
    }

    fn start_with(tls: bool) -> Result<Cluster> {
        let bin = bin_dir()?;
        let run_as = if rustix::process::geteuid().is_root() {
            Some(test_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("siaga-pg-")
            .tempdir()
            .context("creating the cluster's directory")?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("handing the cluster's directory to its user")?;
        }
        let mut c = Cluster {
            bin,
            dir,
            port: 0,
            run_as,
            ca: None,
        };
        c.run(
            "initdb",
            &[
                "-D",
                &c.data().to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        if tls {
            c.ca = Some(c.make_tls()?);
        }
        // A free port may be taken by someone else before the server binds
        // it: try a few.
        let mut last = None;
        for _ in 0..5 {
            c.port = crate::harness::free_port()?;
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {}",
                c.port,
                c.dir.path().display()
            );
            let log = c.dir.path().join("server.log");
            match c.run(
                "pg_ctl",
                &[
                    "-D",
                    &c.data().to_string_lossy(),
                    "-l",
                    &log.to_string_lossy(),
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            ) {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    last = Some(e.context(tail));
                }
            }
        }
        if let Some(e) = last {
            return Err(e.context("starting PostgreSQL"));
        }
        c.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &c.port.to_string(),
                "-U",
                "postgres",
                DATABASE,
            ],
        )?;
        Ok(c)
    }

    /// Writes a CA (its certificate beside the data directory, returned)
    /// and a server certificate and key in the data directory, turns TLS
    /// on and lets TCP clients in only over TLS.
    fn make_tls(&self) -> Result<PathBuf> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "siaga test PostgreSQL CA");
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let data = self.data();
        let ca = self.dir.path().join("ca.pem");
        std::fs::write(&ca, ca_cert.pem())?;
        for (name, text, mode) in [
            ("server.crt", cert.pem(), 0o644),
            ("server.key", key.serialize_pem(), 0o600),
        ] {
            let path = data.join(name);
            std::fs::write(&path, text)?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
            }
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).context("reading postgresql.conf")?;
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).context("writing postgresql.conf")?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .context("writing pg_hba.conf")?;
        Ok(ca)
    }

    /// The CA certificate (PEM file) that signed the server's certificate
    /// of a cluster started with [`Cluster::start_tls`].
    pub fn ca_pem(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The cluster's data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Its TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of [`DATABASE`] as the superuser `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The server's process id (the postmaster), from `postmaster.pid`.
    pub fn pid(&self) -> Result<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .context("reading postmaster.pid")?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .context("postmaster.pid without a pid")
    }

    /// The value of a server setting (`SHOW name`) through `psql`.
    pub fn show(&self, name: &str) -> Result<String> {
        self.sql(&format!("SHOW {name}"))
    }

    /// Runs `sql` in [`DATABASE`] as `postgres` through `psql`; its output
    /// (unaligned, tuples only).
    pub fn sql(&self, sql: &str) -> Result<String> {
        let out = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                DATABASE,
                "-At",
                "-c",
                sql,
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs one of PostgreSQL's programs as the cluster's user.
    fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        let path = self.bin.join(program);
        let mut cmd = Command::new(&path);
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .env("PGCONNECT_TIMEOUT", "10");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).env_remove("HOME");
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        if !out.status.success() {
            bail!(
                "{program} {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.port == 0 {
            return;
        }
        let data = self.data();
        if let Err(e) = self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        ) {
            eprintln!("stopping the test's PostgreSQL: {e:#}");
        }
    }
}
