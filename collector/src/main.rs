//! `siaga-collector`: the collector daemon and its administration commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use siaga_collector::cli::{self, SiagaConfig};
use siaga_collector::config::CollectorConfig;
use siaga_collector::error::{ConfigError, PkiError};
use siaga_collector::inventory::Inventory;
use siaga_collector::{backup, pki, users};

/// Exit code for a bad command line or configuration (EX_USAGE).
const EX_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "siaga-collector",
    version,
    about = "Siaga collector: stores what the agents see, serves the admin API"
)]
struct Cli {
    /// Log format of `serve` on stderr: one line per event, text or JSON.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "SIAGA_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a collector directory: CA, server certificate, collector.toml, inventory.toml, sop.toml.
    Init {
        /// Directory to create.
        #[arg(long)]
        dir: PathBuf,
        /// Address to listen on, e.g. 0.0.0.0:7443.
        #[arg(long)]
        listen: SocketAddr,
        /// Host names (or addresses) clients use to reach the collector; the first is the TLS name agents verify.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Issue a certificate and a config for an agent or a person.
    Enroll {
        #[command(subcommand)]
        what: Enroll,
    },
    /// Run the collector.
    Serve {
        /// collector.toml
        #[arg(long)]
        config: PathBuf,
    },
    /// Check collector.toml, inventory.toml, sop.toml and the users without starting.
    Validate {
        /// collector.toml
        #[arg(long)]
        config: PathBuf,
    },
    /// Make the running collector re-read inventory.toml and the users (like SIGHUP).
    Reload {
        /// collector.toml
        #[arg(long)]
        config: PathBuf,
    },
    /// Print a commented example collector.toml.
    GenConfig,
    /// Check every ticket's hash-chained audit trail and the stored frozen
    /// work reports against the hashes it records (run with the collector stopped).
    Verify {
        /// collector.toml
        #[arg(long)]
        config: PathBuf,
    },
    /// Take a consistent backup of the running collector's stores (admin role):
    /// the collector copies them while it serves and streams a tar archive.
    Backup {
        /// Where to write the archive.
        #[arg(long)]
        out: PathBuf,
        /// siaga.toml of a user with the admin role (default: $SIAGA_CONFIG,
        /// else ~/.config/siaga/siaga.toml).
        #[arg(long)]
        user_config: Option<PathBuf>,
    },
    /// Put a backup into the data directory of collector.toml (with the
    /// collector stopped); the next `serve` runs on it.
    Restore {
        /// The archive `backup` wrote.
        #[arg(long)]
        from: PathBuf,
        /// collector.toml
        #[arg(long)]
        config: PathBuf,
        /// Replace the stores of a data directory that is not empty.
        #[arg(long)]
        force: bool,
    },
    /// Refuse a certificate from now on (a lost laptop): every certificate
    /// issued to a user, one PEM file, or one serial.
    RevokeCert {
        /// collector.toml
        #[arg(long)]
        config: PathBuf,
        /// A user: every certificate `enroll user` issued to them.
        #[arg(long, group = "which")]
        name: Option<String>,
        /// A certificate (PEM), e.g. a `user.pem` or `agent.pem`.
        #[arg(long, group = "which")]
        cert: Option<PathBuf>,
        /// A serial number in hex.
        #[arg(long, group = "which")]
        serial: Option<String>,
        /// Why (kept in the list).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum Enroll {
    /// An agent for one OPD: writes OUT/agent.toml, agent.key, agent.pem, ca.pem.
    Agent {
        /// The collector directory (with collector.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The OPD the agent speaks for.
        #[arg(long)]
        opd: String,
        /// Agent id (default: `<opd>-agent`).
        #[arg(long)]
        id: Option<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// A person: writes OUT/siaga.toml, user.key, user.pem, ca.pem and records the user's roles.
    User {
        /// The collector directory (with collector.toml).
        #[arg(long)]
        dir: PathBuf,
        /// User name.
        #[arg(long)]
        name: String,
        /// SOP role (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

/// An error with the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error: anyhow::Error = e.into();
        let usage = error.chain().any(|c| {
            c.downcast_ref::<ConfigError>().is_some()
                || matches!(
                    c.downcast_ref::<PkiError>(),
                    Some(PkiError::InvalidName(_) | PkiError::Config(_))
                )
        });
        Failure {
            code: if usage { EX_USAGE } else { 1 },
            error,
        }
    }
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: EX_USAGE,
        error: error.into(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("siaga-collector: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.cmd {
        Cmd::Init { dir, listen, hosts } => {
            let report = pki::init(&dir, listen, &hosts)?;
            for f in &report.files {
                println!("wrote {}", f.display());
            }
            println!(
                "next: edit {}, then `siaga-collector enroll agent --dir {} --opd demo --out AGENT_DIR`",
                dir.join("inventory.toml").display(),
                dir.display()
            );
            Ok(())
        }
        Cmd::Enroll {
            what: Enroll::Agent { dir, opd, id, out },
        } => {
            if let Ok(cfg) = CollectorConfig::load(&dir.join("collector.toml"))
                && let Ok(inv) = Inventory::load(&cfg.inventory)
                && !inv.opds.contains_key(&opd)
            {
                eprintln!(
                    "warning: OPD {opd:?} is not in {} yet; the agent gets no devices until it is",
                    cfg.inventory.display()
                );
            }
            let identity = pki::enroll_agent(&dir, &opd, id.as_deref(), &out)?;
            println!(
                "enrolled {identity}; wrote {}",
                out.join("agent.toml").display()
            );
            Ok(())
        }
        Cmd::Enroll {
            what:
                Enroll::User {
                    dir,
                    name,
                    roles,
                    out,
                },
        } => {
            let identity = pki::enroll_user(&dir, &name, &roles, &out)?;
            println!(
                "enrolled {identity} ({}); wrote {}; a running collector knows the user at once",
                roles.join(", "),
                out.join("siaga.toml").display()
            );
            Ok(())
        }
        Cmd::Validate { config } => {
            validate(&config)?;
            println!("{}: ok", config.display());
            Ok(())
        }
        Cmd::GenConfig => {
            print!(
                "{}",
                CollectorConfig::example(CollectorConfig::default().listen)
            );
            Ok(())
        }
        Cmd::Serve { config } => {
            let cfg = validate(&config)?;
            serve(config, cfg, cli.log_format)
        }
        Cmd::Reload { config } => reload(&config),
        Cmd::Verify { config } => verify(&config),
        Cmd::Backup { out, user_config } => backup(&out, user_config),
        Cmd::Restore {
            from,
            config,
            force,
        } => restore(&from, &config, force),
        Cmd::RevokeCert {
            config,
            name,
            cert,
            serial,
            reason,
        } => revoke_cert(
            &config,
            name.as_deref(),
            cert.as_deref(),
            serial.as_deref(),
            &reason,
        ),
    }
}

/// Loads and checks everything the collector reads at start.
fn validate(config: &Path) -> Result<CollectorConfig, Failure> {
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    Inventory::load(&cfg.inventory).map_err(usage)?;
    let sop = std::fs::read_to_string(&cfg.sop).map_err(|error| {
        usage(ConfigError::Read {
            file: cfg.sop.clone(),
            error,
        })
    })?;
    siaga_collector::sop::file::parse(&sop, &cfg.sop).map_err(usage)?;
    siaga_collector::sop::Calendar::new(&cfg.calendar)
        .map_err(|e| usage(anyhow::anyhow!("{}: {e}", config.display())))?;
    cfg.health
        .validate()
        .map_err(|e| usage(anyhow::anyhow!("{}: {e}", config.display())))?;
    siaga_collector::notify::Notifier::new(&cfg.notify)
        .map_err(|e| usage(anyhow::anyhow!("{}: {e}", config.display())))?;
    cfg.measure
        .validate()
        .map_err(|e| usage(anyhow::anyhow!("{}: {e}", config.display())))?;
    users::load_users(&cfg.users).map_err(usage)?;
    for f in [&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key] {
        if !f.exists() {
            return Err(usage(anyhow::anyhow!(
                "{}: not found (tls in {})",
                f.display(),
                config.display()
            )));
        }
    }
    Ok(cfg)
}

fn serve(path: PathBuf, cfg: CollectorConfig, log_format: LogFormat) -> Result<(), Failure> {
    init_tracing(log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("collector")
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    rt.block_on(siaga_collector::server::serve(path, cfg))
        .map_err(|e| Failure { code: 1, error: e })
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = format == LogFormat::Json;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn reload(config: &Path) -> Result<(), Failure> {
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    // Say what is wrong here too; the collector would only log it.
    Inventory::load(&cfg.inventory).map_err(usage)?;
    users::load_users(&cfg.users).map_err(usage)?;
    let pid_file = cfg.data_dir.join("collector.pid");
    let text = std::fs::read_to_string(&pid_file)
        .map_err(|e| anyhow::anyhow!("{}: {e} (is the collector running?)", pid_file.display()))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: not a process id: {:?}",
                pid_file.display(),
                text.trim()
            )
        })?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
        anyhow::anyhow!(
            "signalling collector (pid {}): {e} (is it running?)",
            pid.as_raw_nonzero()
        )
    })?;
    println!(
        "reload requested (pid {}); the collector logs the outcome",
        pid.as_raw_nonzero()
    );
    Ok(())
}

/// `verify`: every ticket's audit trail and every frozen work report, with the
/// collector stopped (the store is opened directly). Exit 1 if any trail was
/// tampered with or any frozen report's bytes differ from their recorded hash.
fn verify(config: &Path) -> Result<(), Failure> {
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    let path = cfg.data_dir.join("tickets.redb");
    if !path.exists() {
        return Err(usage(anyhow::anyhow!(
            "{}: no tickets here yet",
            path.display()
        )));
    }
    let db = redb::Database::open(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (stop the collector first: it holds the store)",
            path.display()
        )
    })?;
    use siaga_collector::schema;
    schema::check_and_migrate(&db, &path, schema::TICKETS_FILE, &schema::migrate_tickets)?;
    let text = std::fs::read_to_string(&cfg.sop)
        .map_err(|e| usage(anyhow::anyhow!("{}: cannot read: {e}", cfg.sop.display())))?;
    let calendar = siaga_collector::sop::Calendar::new(&cfg.calendar)
        .map_err(|e| usage(anyhow::anyhow!("{}: {e}", config.display())))?;
    let db = std::sync::Arc::new(db);
    let store = siaga_collector::sop::store::SopStore::new(db.clone(), &text, &cfg.sop, calendar)
        .map_err(usage)?;
    let results = store.verify().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut bad = 0;
    for (ticket, r) in &results {
        match r {
            Ok(()) => println!("{ticket}: ok"),
            Err(t) => {
                bad += 1;
                println!("{ticket}: {t}");
            }
        }
    }
    // The frozen work reports: their bytes against the hashes in the trails.
    let reports =
        siaga_collector::report::store::verify(&db, &store).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut bad_reports = 0;
    for c in &reports {
        match &c.problem {
            None => println!("{}: frozen report {}: ok", c.ticket, c.document),
            Some(p) => {
                bad_reports += 1;
                println!("{}: frozen report {}: {p}", c.ticket, c.document);
            }
        }
    }
    if bad > 0 || bad_reports > 0 {
        let mut what = Vec::new();
        if bad > 0 {
            what.push(format!(
                "{bad} of {} audit trails tampered with",
                results.len()
            ));
        }
        if bad_reports > 0 {
            what.push(format!(
                "{bad_reports} of {} frozen reports do not match their audit records",
                reports.len()
            ));
        }
        return Err(anyhow::anyhow!("{}", what.join("; ")).into());
    }
    println!(
        "{} audit trails intact, {} frozen report documents match",
        results.len(),
        reports.len()
    );
    Ok(())
}

/// One line per store file of a manifest.
fn describe(m: &backup::Manifest) -> String {
    m.files
        .iter()
        .map(|f| {
            let what = match f.name.as_str() {
                "collector.redb" => format!(
                    ", {} samples of {} agents",
                    f.tables.get("samples").copied().unwrap_or(0),
                    f.tables.get("agents").copied().unwrap_or(0)
                ),
                "tickets.redb" => format!(
                    ", {} tickets, {} events, {} maintenance windows",
                    f.tables.get("sop_tickets").copied().unwrap_or(0),
                    f.tables.get("health_events").copied().unwrap_or(0),
                    f.tables.get("health_maintenance").copied().unwrap_or(0)
                ),
                _ => String::new(),
            };
            let schema = f
                .schema_version
                .map_or(String::new(), |v| format!(" schema {v}"));
            format!("  {}{schema}: {} bytes{what}", f.name, f.bytes)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `backup`: the running collector streams a consistent copy of its stores
/// (admin role); written to OUT.partial, checked against its manifest, then
/// renamed to OUT.
fn backup(out: &Path, user_config: Option<PathBuf>) -> Result<(), Failure> {
    use sha2::Digest as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = cli::config_path(user_config).map_err(usage)?;
    let cfg = SiagaConfig::load(&path).map_err(usage)?;
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    let fetched = rt.block_on(async {
        let mut client = cli::connect(&cfg).await?;
        let mut stream = client
            .backup(siaga_proto::v1::BackupRequest {})
            .await
            .map_err(|s| cli::status_error(&cfg.collector, s))?
            .into_inner();
        // It holds everything the collector knows: for its owner's eyes only.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| anyhow::anyhow!("{}: {e}", partial.display()))?;
        let mut hash = sha2::Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| cli::status_error(&cfg.collector, s))?
        {
            hash.update(&chunk.data);
            bytes += chunk.data.len() as u64;
            file.write_all(&chunk.data)
                .map_err(|e| anyhow::anyhow!("{}: {e}", partial.display()))?;
        }
        file.sync_all()
            .map_err(|e| anyhow::anyhow!("{}: {e}", partial.display()))?;
        Ok::<_, anyhow::Error>((bytes, hex::encode(hash.finalize())))
    });
    let checked = fetched.and_then(|(bytes, sha)| {
        let m = backup::verify(&partial)?;
        std::fs::rename(&partial, out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
        Ok((bytes, sha, m))
    });
    match checked {
        Ok((bytes, sha, m)) => {
            println!(
                "wrote {} ({bytes} bytes, sha256 {sha}), taken {} by collector {}:\n{}",
                out.display(),
                m.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                m.collector_version,
                describe(&m)
            );
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(Failure { code: 1, error: e })
        }
    }
}

/// `restore`: a backup into the data directory of `config` (collector stopped).
fn restore(from: &Path, config: &Path, force: bool) -> Result<(), Failure> {
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    let m = backup::restore(from, &cfg.data_dir, force)?;
    println!(
        "restored {} (taken {} by collector {}) into {}:\n{}\nnext: start the collector (`siaga-collector serve --config {}` or `systemctl start siaga-collector`)",
        from.display(),
        m.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        m.collector_version,
        cfg.data_dir.display(),
        describe(&m),
        config.display()
    );
    Ok(())
}

/// `revoke-cert`: add certificates to the list the running collector checks
/// (re-read on change, so no reload is needed).
fn revoke_cert(
    config: &Path,
    name: Option<&str>,
    cert: Option<&Path>,
    serial: Option<&str>,
    reason: &str,
) -> Result<(), Failure> {
    use siaga_collector::revoke;
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    let entries = match (name, cert, serial) {
        (Some(n), _, _) => {
            let all = users::load_users(&cfg.users).map_err(usage)?;
            let Some(user) = all.get(n) else {
                return Err(usage(anyhow::anyhow!(
                    "--name: no user {n:?} in {}",
                    cfg.users.display()
                )));
            };
            if user.certificates.is_empty() {
                return Err(usage(anyhow::anyhow!(
                    "{}: user {n:?} has no recorded certificate serials; revoke with --cert FILE or --serial HEX",
                    cfg.users.join(format!("{n}.toml")).display()
                )));
            }
            let identity = format!("siaga://user/{n}");
            user.certificates
                .iter()
                .map(|s| revoke::revoke_serial(&cfg.data_dir, s, &identity, reason))
                .collect::<Result<Vec<_>, _>>()
        }
        (None, Some(p), _) => {
            let pem = std::fs::read_to_string(p)
                .map_err(|e| usage(anyhow::anyhow!("{}: cannot read: {e}", p.display())))?;
            let der = revoke::pem_to_der(&pem)
                .map_err(|e| usage(anyhow::anyhow!("{}: {e}", p.display())))?;
            revoke::revoke(&cfg.data_dir, &der, reason).map(|e| vec![e])
        }
        (None, None, Some(s)) => {
            revoke::revoke_serial(&cfg.data_dir, s, "", reason).map(|e| vec![e])
        }
        (None, None, None) => {
            return Err(usage(anyhow::anyhow!(
                "give --name USER, --cert FILE or --serial HEX"
            )));
        }
    }
    .map_err(|e| anyhow::anyhow!(e))?;
    for e in &entries {
        println!(
            "revoked certificate {} {}; the collector refuses it from its next call",
            e.serial, e.identity
        );
    }
    Ok(())
}
