//! `siaga-collector`: the collector daemon and its administration commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use siaga_collector::config::CollectorConfig;
use siaga_collector::error::{ConfigError, PkiError};
use siaga_collector::inventory::Inventory;
use siaga_collector::{backup, pki, safe_file, users};
use siaga_proto::client::{self, SiagaConfig};

/// Exit code for a bad command line or configuration (EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit code for a service the configuration names that does not answer
/// (EX_UNAVAILABLE): `validate` with `[store] url` on an unreachable database.
const EX_UNAVAILABLE: u8 = 69;

#[derive(Debug, Parser)]
#[command(
    name = "siaga-collector",
    version,
    about = "Siaga collector: stores what the agents see, serves the admin API"
)]
struct Cli {
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
        /// Keep samples, rollups, newest readings and agents in PostgreSQL: `[store] url`, e.g.
        /// postgres://siaga:PASSWORD@db:5432/siaga?sslmode=verify-full&sslrootcert=/etc/siaga/pg-ca.pem.
        /// A malformed URL is refused (exit 64, nothing written). A database that does not
        /// answer only warns: it is often set up after the collector, and `validate` checks it
        /// again. With a password in it, collector.toml is readable by its owner only.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
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
        /// Log format on stderr: one line per event, text or JSON.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SIAGA_LOG_FORMAT")]
        log_format: LogFormat,
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
    /// Work on inventory.toml (write a reviewed discovery proposal).
    Inventory {
        #[command(subcommand)]
        what: InventoryCmd,
    },
    /// Print a commented example collector.toml (`gen-config` is the old name).
    #[command(alias = "gen-config")]
    PrintConfig,
    /// Check every page of each store file against its checksum, every
    /// ticket's hash-chained audit trail and the stored frozen work reports
    /// against the hashes it records (run with the collector stopped).
    Verify {
        /// collector.toml
        #[arg(long)]
        config: PathBuf,
    },
    /// Create the key that signs the audit trails' heads, if there is none
    /// (`init` makes it; `serve` too, where it may write), and print its id.
    AuditKey {
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
    /// Move everything the embedded stores hold (samples, rollups, newest
    /// readings, agents; tickets, SOP trails, measurements, frozen reports)
    /// into PostgreSQL, check the copy, then add `[store] url` to
    /// collector.toml (run with the collector stopped; run again after an
    /// interruption: nothing is copied twice).
    Migrate {
        /// collector.toml
        #[arg(long)]
        config: PathBuf,
        /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
        #[arg(long)]
        to: String,
        /// Check and count only: write nothing to PostgreSQL or collector.toml.
        #[arg(long)]
        dry_run: bool,
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
    /// Refuse a certificate from now on (a lost laptop, a stolen agent host):
    /// every certificate issued to a user or an agent, one PEM file, or one
    /// serial. Streams open with it end within a second or two.
    RevokeCert {
        /// collector.toml
        #[arg(long)]
        config: PathBuf,
        /// A user: every certificate `enroll user` and `renew` issued to them
        /// (`--user`, as `renew` names it, is the same).
        #[arg(long, visible_alias = "user", group = "which")]
        name: Option<String>,
        /// An agent id: every certificate issued to that agent.
        #[arg(long, group = "which")]
        agent: Option<String>,
        /// A certificate (PEM), e.g. a `user.pem` or `agent.pem`.
        #[arg(long, group = "which")]
        cert: Option<PathBuf>,
        /// A serial number: hex (5ab3…), colon-separated hex (5A:B3:…) or 0x5ab3….
        #[arg(long, group = "which")]
        serial: Option<String>,
        /// Revoke a --serial that the ledger does not know (a certificate
        /// issued before the ledger existed).
        #[arg(long, requires = "serial")]
        unlisted: bool,
        /// Why (kept in the list).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List every certificate the CA issued (the ledger) with its revocation
    /// state and expiry.
    Certs {
        /// collector.toml
        #[arg(long)]
        config: PathBuf,
        /// One JSON object per certificate.
        #[arg(long)]
        json: bool,
    },
    /// A new certificate and key for an agent or a person already enrolled
    /// (before the old one expires); the old one stays valid until it expires
    /// or is revoked.
    Renew {
        /// The collector directory (with collector.toml).
        #[arg(long)]
        dir: PathBuf,
        /// The agent id.
        #[arg(long, group = "who", required = true)]
        agent: Option<String>,
        /// The agent's OPD; needed only for an agent enrolled before the ledger.
        #[arg(long, requires = "agent")]
        opd: Option<String>,
        /// The user name.
        #[arg(long, group = "who", required = true)]
        user: Option<String>,
        /// Output directory (an agent.toml or siaga.toml already there is kept).
        #[arg(long)]
        out: PathBuf,
        /// Lifetime in days (default: tls.agent_cert_days or tls.user_cert_days).
        #[arg(long)]
        days: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
enum InventoryCmd {
    /// Write a proposal of `siaga discover --save` into inventory.toml: new
    /// devices and links added, names, addresses and parents changed. The
    /// file is validated as a whole first; then `reload` puts it in force.
    Apply {
        /// collector.toml (names inventory.toml).
        #[arg(long)]
        config: PathBuf,
        /// The proposal (JSON, as `siaga discover --save` or `--json` wrote it).
        proposal: PathBuf,
        /// Print the resulting inventory.toml instead of writing it.
        #[arg(long)]
        dry_run: bool,
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
        /// Agent id (default: `<opd>-agent`); unique across OPDs.
        #[arg(long)]
        id: Option<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Lifetime in days (default: tls.agent_cert_days, 730).
        #[arg(long)]
        days: Option<u32>,
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
        /// The OPD the person works for (an inventory OPD id). Needed for a
        /// pemohon, who sees only this OPD; province roles see every OPD.
        #[arg(long)]
        opd: Option<String>,
        /// Full name with titles, as signed on documents (e.g. "Budi Santoso, S.Kom.").
        #[arg(long)]
        full_name: Option<String>,
        /// NIP, 18 digits (e.g. 198001012005011001), printed under the signature.
        #[arg(long)]
        nip: Option<String>,
        /// Position (jabatan), printed above the signature (e.g. "Pranata Komputer Ahli Pertama").
        #[arg(long)]
        jabatan: Option<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Lifetime in days (default: tls.user_cert_days, 365).
        #[arg(long)]
        days: Option<u32>,
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
    let cli = match siaga_collector::usage::parse::<Cli>() {
        Ok(c) => c,
        Err(code) => return code,
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
        Cmd::Init {
            dir,
            listen,
            hosts,
            store,
        } => {
            let report = pki::init_with_store(&dir, listen, &hosts, store.as_deref())?;
            for f in &report.files {
                println!("wrote {}", f.display());
            }
            if let Some(url) = &store {
                init_store_check(&report.config, url);
            }
            println!(
                "next: edit {}, then `siaga-collector enroll agent --dir {} --opd demo --out AGENT_DIR`",
                dir.join("inventory.toml").display(),
                dir.display()
            );
            Ok(())
        }
        Cmd::Enroll {
            what:
                Enroll::Agent {
                    dir,
                    opd,
                    id,
                    out,
                    days,
                },
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
            let identity = pki::enroll_agent(&dir, &opd, id.as_deref(), &out, days)?;
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
                    opd,
                    full_name,
                    nip,
                    jabatan,
                    out,
                    days,
                },
        } => {
            let person = siaga_collector::sop::Person {
                full_name,
                nip,
                jabatan,
            };
            let identity =
                pki::enroll_person(&dir, &name, &roles, opd.as_deref(), &person, &out, days)?;
            println!(
                "enrolled {identity} ({}); wrote {}; a running collector knows the user at once",
                roles.join(", "),
                out.join("siaga.toml").display()
            );
            Ok(())
        }
        Cmd::Validate { config } => {
            let cfg = validate(&config)?;
            for w in warnings(&cfg)? {
                eprintln!("warning: {w}");
            }
            println!("{}", store_check(&config, &cfg)?);
            println!("{}: ok", config.display());
            Ok(())
        }
        Cmd::PrintConfig => {
            print!(
                "{}",
                CollectorConfig::example(CollectorConfig::default().listen)
            );
            Ok(())
        }
        Cmd::Serve { config, log_format } => {
            let cfg = validate(&config)?;
            serve(config, cfg, log_format)
        }
        Cmd::Reload { config } => reload(&config),
        Cmd::Inventory {
            what:
                InventoryCmd::Apply {
                    config,
                    proposal,
                    dry_run,
                },
        } => apply_proposal(&config, &proposal, dry_run),
        Cmd::Verify { config } => verify(&config),
        Cmd::AuditKey { config } => {
            let cfg = CollectorConfig::load(&config).map_err(usage)?;
            let (key, created) = siaga_collector::anchor::AuditKey::load_or_create(&cfg.audit_key)?;
            println!(
                "{} {} (key id {})",
                if created { "created" } else { "exists:" },
                cfg.audit_key.display(),
                key.id()
            );
            Ok(())
        }
        Cmd::Backup { out, user_config } => backup(&out, user_config),
        Cmd::Migrate {
            config,
            to,
            dry_run,
        } => migrate(config, to, dry_run),
        Cmd::Restore {
            from,
            config,
            force,
        } => restore(&from, &config, force),
        Cmd::RevokeCert {
            config,
            name,
            agent,
            cert,
            serial,
            unlisted,
            reason,
        } => {
            let which = match (name, agent, cert, serial) {
                (Some(n), ..) => Revoke::User(n),
                (None, Some(a), ..) => Revoke::Agent(a),
                (None, None, Some(p), _) => Revoke::Cert(p),
                (None, None, None, Some(s)) => Revoke::Serial { given: s, unlisted },
                (None, None, None, None) => {
                    return Err(usage(anyhow::anyhow!(
                        "give --name USER, --agent ID, --cert FILE or --serial HEX"
                    )));
                }
            };
            revoke_cert(&config, which, &reason)
        }
        Cmd::Certs { config, json } => certs(&config, json),
        Cmd::Renew {
            dir,
            agent,
            opd,
            user,
            out,
            days,
        } => {
            let who = match (agent, user) {
                (Some(id), _) => pki::RenewWho::Agent { id, opd },
                (None, Some(name)) => pki::RenewWho::User { name },
                (None, None) => {
                    return Err(usage(anyhow::anyhow!("give --agent ID or --user NAME")));
                }
            };
            let r = pki::renew(&dir, &who, &out, days)?;
            println!(
                "renewed {}: certificate {} valid until {}; wrote {}",
                r.identity,
                r.issued.serial,
                r.issued
                    .not_after
                    .map_or("?".into(), |t| t.format("%Y-%m-%d").to_string()),
                out.display()
            );
            for e in &r.earlier {
                println!(
                    "earlier certificate {} stays valid{}: once the new one is in place, `siaga-collector revoke-cert --serial {}`",
                    e.serial,
                    e.not_after.map_or(String::new(), |t| format!(
                        " until {}",
                        t.format("%Y-%m-%d")
                    )),
                    e.serial
                );
            }
            Ok(())
        }
    }
}

/// `migrate`: exit 64 for what the command line or collector.toml must
/// change, 69 for a database that does not answer (as `validate`).
fn migrate(config: PathBuf, to: String, dry_run: bool) -> Result<(), Failure> {
    use siaga_collector::migrate::{self, MigrateError, Options};
    let options = Options {
        config,
        to,
        dry_run,
    };
    let mut out = std::io::stdout();
    migrate::run(&options, &mut out).map_err(|e| {
        let code = match &e {
            MigrateError::Config(_)
            | MigrateError::AlreadyOnPostgres { .. }
            | MigrateError::BadUrl { .. }
            | MigrateError::NothingThere { .. } => EX_USAGE,
            MigrateError::Unreachable { .. } => EX_UNAVAILABLE,
            _ => 1,
        };
        Failure {
            code,
            error: e.into(),
        }
    })
}

/// Loads and checks everything the collector reads at start.
fn validate(config: &Path) -> Result<CollectorConfig, Failure> {
    // collector.toml names the other files: without it nothing else is read.
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    // Every other file and check is tried, so one run lists every error.
    let mut errors: Vec<String> = Vec::new();
    let mut check = |r: Result<(), String>| {
        if let Err(e) = r {
            errors.push(e);
        }
    };
    let in_config = |e: &dyn std::fmt::Display| format!("{}: {e}", config.display());
    let inventory = Inventory::load(&cfg.inventory);
    check(inventory.as_ref().map(drop).map_err(|e| e.to_string()));
    check(
        std::fs::read_to_string(&cfg.sop)
            .map_err(|error| {
                ConfigError::Read {
                    file: cfg.sop.clone(),
                    error,
                }
                .to_string()
            })
            .and_then(|sop| {
                siaga_collector::sop::file::parse(&sop, &cfg.sop)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
    );
    check(cfg.health.validate().map_err(|e| in_config(&e)));
    check(
        siaga_collector::notify::Notifier::new(&cfg.notify, cfg.web.public_url.as_deref())
            .map(drop)
            .map_err(|e| in_config(&e)),
    );
    check(cfg.measure.validate().map_err(|e| in_config(&e)));
    check(cfg.ingest.validate().map_err(|e| in_config(&e)));
    check(
        pki::enrolled_agents(&cfg)
            .map(drop)
            .map_err(|e| format!("{e:#}")),
    );
    let users = users::load_users(&cfg.users)
        .map(drop)
        .map_err(|e| e.to_string());
    let users_ok = users.is_ok();
    check(users);
    if let (Ok(inv), true) = (&inventory, users_ok) {
        check(users::check_opds(&cfg.users, inv.opds.keys()).map_err(|e| e.to_string()));
    }
    if users_ok {
        check(
            users::check_roles(&cfg.users, &users::known_roles(&cfg.sop))
                .map_err(|e| e.to_string()),
        );
    }
    check(
        cfg.check_telegram_roles(config, &users::known_roles(&cfg.sop))
            .map_err(|e| e.to_string()),
    );
    check(
        siaga_collector::revoke::load(&cfg.data_dir)
            .map(drop)
            .map_err(|e| e.to_string()),
    );
    for f in [&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key] {
        if !f.exists() {
            check(Err(format!(
                "{}: not found (tls in {})",
                f.display(),
                config.display()
            )));
        }
    }
    match errors.len() {
        0 => {}
        1 => return Err(usage(anyhow::anyhow!("{}", errors[0]))),
        n => {
            return Err(usage(anyhow::anyhow!(
                "{n} errors:\n{}",
                errors
                    .iter()
                    .map(|e| format!("  {e}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )));
        }
    }
    expiry_warnings(&cfg)?;
    Ok(cfg)
}

/// `init --store`: whether the database answers already. It need not (it
/// is often set up after the collector), so this only says what it found
/// and what to do next.
fn init_store_check(config: &Path, url: &str) {
    use siaga_collector::store::{PgStore, database_at};
    let at = siaga_collector::store::pg_config(url)
        .map(|c| database_at(&c))
        .unwrap_or_else(|_| "?".into());
    match PgStore::inspect(url) {
        Ok(found) => println!(
            "store: PostgreSQL at {at} answers, the connection {}{}",
            found.encryption,
            if found.schema_version.is_none() {
                "; the first `serve` creates the schema"
            } else {
                ""
            }
        ),
        Err(e) => eprintln!(
            "warning: --store: PostgreSQL at {at} does not answer as asked yet: {e}; {} is \
             written with this URL anyway: create the role and the database (or fix the URL in \
             it), then `siaga-collector validate --config {}`",
            config.display(),
            config.display()
        ),
    }
}

/// Where the collector keeps what, and for `[store] url` whether the
/// database answers and holds a schema this collector can use.
fn store_check(config: &Path, cfg: &CollectorConfig) -> Result<String, Failure> {
    use siaga_collector::store::{PG_SCHEMA_VERSION, PgStore, database_at};
    let tickets = cfg
        .data_dir
        .join(siaga_collector::schema::TICKETS_FILE.name);
    let Some(url) = &cfg.store.url else {
        return Ok(format!(
            "store: everything in the data directory: samples, rollups, newest readings and \
             agents in {}; tickets, SOP trails, measurements and reports in {}; users in {}, \
             revoked certificates in {}, the certificates issued in {}",
            cfg.data_dir
                .join(siaga_collector::schema::SAMPLES_FILE.name)
                .display(),
            tickets.display(),
            cfg.users.display(),
            cfg.data_dir.join(siaga_collector::revoke::FILE).display(),
            cfg.data_dir.join(siaga_collector::ledger::FILE).display(),
        ));
    };
    // The URL may hold a password: name the database without it.
    let at = siaga_collector::store::pg_config(url)
        .map(|c| database_at(&c))
        .unwrap_or_else(|_| "?".into());
    let found = match PgStore::inspect(url) {
        Ok(v) => v,
        Err(e) => {
            return Err(Failure {
                code: EX_UNAVAILABLE,
                error: anyhow::anyhow!(
                    "{}: store.url: PostgreSQL at {at} does not answer as asked: {e}; check that \
                     it runs and that the URL's host, port, user, password and database are right \
                     (`pg_isready -h HOST -p PORT`, then `psql URL`)",
                    config.display()
                ),
            });
        }
    };
    if found.synchronous_commit == "off" {
        let user = siaga_collector::store::pg_config(url)
            .ok()
            .and_then(|c| c.get_user().map(str::to_string))
            .map_or_else(
                || "USER".to_string(),
                |u| {
                    if u.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    {
                        u
                    } else {
                        format!("\"{}\"", u.replace('"', "\"\""))
                    }
                },
            );
        eprintln!(
            "warning: {}: store.url: PostgreSQL at {at} runs the collector's sessions with \
             synchronous_commit = off: it confirms a commit before it is on disk, so samples the \
             collector acknowledged (and the agents then deleted) are lost if the server crashes; \
             turn it on where it is set (postgresql.conf, `ALTER DATABASE`, `ALTER ROLE`, the \
             URL's options), e.g. `ALTER ROLE {user} SET synchronous_commit = on`",
            config.display()
        );
    }
    let schema = match found.schema_version {
        None => {
            format!("no Siaga schema yet: the first `serve` creates version {PG_SCHEMA_VERSION}")
        }
        Some(v) if v == PG_SCHEMA_VERSION => format!("schema version {v}"),
        Some(v) if v < PG_SCHEMA_VERSION => {
            format!("schema version {v}: `serve` migrates it to {PG_SCHEMA_VERSION}")
        }
        Some(v) => {
            return Err(Failure {
                code: 1,
                error: anyhow::anyhow!(
                    "{}: store.url: PostgreSQL at {at} holds schema version {v}, newer than this \
                     collector's ({PG_SCHEMA_VERSION}): run a collector of that version or newer",
                    config.display()
                ),
            });
        }
    };
    // A file of tickets the collector would no longer read: `serve`
    // refuses it too, rather than lose them from view.
    let left = siaga_collector::kv::tickets_left_in(&cfg.data_dir).map_err(|e| Failure {
        code: 1,
        error: anyhow::anyhow!("{e}"),
    })?;
    if let Some((file, n)) = left {
        return Err(Failure {
            code: 1,
            error: anyhow::anyhow!(
                "{}: store.url: the tickets are to be in PostgreSQL at {at}, but {} holds {n} \
                 ticket(s): move them there first with `siaga-collector migrate --config {} \
                 --to URL`, or remove [store] url",
                config.display(),
                file.display(),
                config.display()
            ),
        });
    }
    Ok(format!(
        "store: everything in PostgreSQL at {at} ({schema}), the connection {}: samples, \
         rollups, newest readings, agents, tickets, SOP trails, health records, events, \
         measurements and frozen reports; users, revoked certificates and the certificates \
         issued in PostgreSQL for every collector on it as well as in {}, {} and {} (a user's \
         record in PostgreSQL wins over a file of the same name)",
        found.encryption,
        cfg.users.display(),
        cfg.data_dir.join(siaga_collector::revoke::FILE).display(),
        cfg.data_dir.join(siaga_collector::ledger::FILE).display(),
    ))
}

/// What `validate` warns about without refusing the configuration.
fn warnings(cfg: &CollectorConfig) -> Result<Vec<String>, Failure> {
    let inventory = Inventory::load(&cfg.inventory).map_err(usage)?;
    let enrolled = pki::enrolled_agents(cfg).map_err(usage)?;
    Ok(
        siaga_collector::hub::opds_without_agent(&inventory, &enrolled, &[])
            .into_iter()
            .map(|opd| {
                let devices = inventory.devices.values().filter(|d| d.opd == opd).count();
                format!(
                    "{}: OPD {opd:?} has {devices} device(s) but no agent is enrolled for it, so nothing probes them \
                     (`siaga-collector enroll agent --opd {opd}`)",
                    cfg.inventory.display()
                )
            })
            .collect(),
    )
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
        .with_ansi(siaga_collector::logs::colour_for_stderr())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn apply_proposal(config: &Path, proposal: &Path, dry_run: bool) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt as _;
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    let text = std::fs::read_to_string(proposal)
        .map_err(|e| usage(anyhow::anyhow!("{}: {e}", proposal.display())))?;
    let p = siaga_collector::discover::apply::read_proposal(&text)
        .map_err(|e| usage(anyhow::anyhow!("{}: {e}", proposal.display())))?;
    let file = &cfg.inventory;
    let current = std::fs::read_to_string(file)
        .map_err(|e| usage(anyhow::anyhow!("{}: {e}", file.display())))?;
    let (out, done) = siaga_collector::discover::apply::apply(file, &current, &p)
        .map_err(|e| usage(anyhow::anyhow!(e)))?;
    if dry_run {
        print!("{out}");
        return Ok(());
    }
    let mode = std::fs::metadata(file)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    siaga_collector::safe_file::write(file, out.as_bytes(), mode)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
    println!(
        "{}: {} device(s) added, {} change(s), {} link(s) added; `siaga-collector reload --config {}` puts it in force",
        file.display(),
        done.devices,
        done.changes,
        done.links,
        config.display()
    );
    Ok(())
}

fn reload(config: &Path) -> Result<(), Failure> {
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    // Say what is wrong here too; the collector would only log it.
    let inventory = Inventory::load(&cfg.inventory).map_err(usage)?;
    users::load_users(&cfg.users).map_err(usage)?;
    users::check_opds(&cfg.users, inventory.opds.keys()).map_err(usage)?;
    users::check_roles(&cfg.users, &users::known_roles(&cfg.sop)).map_err(usage)?;
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

/// `verify`'s check of the store files in the data directory: every page
/// of each against its checksum; the tickets' database, migrated if older.
fn verify_files(cfg: &CollectorConfig) -> Result<siaga_collector::kv::Db, Failure> {
    use siaga_collector::schema;
    // Every page of every store file against its checksum first.
    let mut damaged = Vec::new();
    let mut tickets_db = None;
    for file in schema::FILES {
        let path = cfg.data_dir.join(file.name);
        if !path.exists() {
            println!("{}: not there yet", path.display());
            continue;
        }
        match schema::open_checked(&path) {
            Ok(db) => {
                println!("{}: every page intact", path.display());
                if file == schema::TICKETS_FILE {
                    tickets_db = Some(db);
                }
            }
            Err(siaga_collector::error::StoreError::Open { message, .. }) => {
                return Err(anyhow::anyhow!(
                    "{}: {message} (stop the collector first: it holds the store)",
                    path.display()
                )
                .into());
            }
            Err(e) => {
                println!("{e}");
                damaged.push(file.name);
            }
        }
    }
    if !damaged.is_empty() {
        return Err(anyhow::anyhow!(
            "damaged store file(s): {}; restore the last backup",
            damaged.join(", ")
        )
        .into());
    }
    let path = cfg.data_dir.join(schema::TICKETS_FILE.name);
    let Some(db) = tickets_db else {
        return Err(usage(anyhow::anyhow!(
            "{}: no tickets here yet",
            path.display()
        )));
    };
    schema::check_and_migrate(&db, &path, schema::TICKETS_FILE, &schema::migrate_tickets)?;
    Ok(siaga_collector::kv::Db::Redb(std::sync::Arc::new(db)))
}

/// `verify`: every ticket's audit trail and every frozen work report, with the
/// collector stopped (the store is opened directly). Exit 1 if any trail was
/// tampered with or any frozen report's bytes differ from their recorded hash.
fn verify(config: &Path) -> Result<(), Failure> {
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    let db = match &cfg.store.url {
        // The records are in PostgreSQL: no file here to check.
        Some(url) => siaga_collector::kv::Db::Pg(std::sync::Arc::new(
            siaga_collector::kv::postgres::PgKv::open(url).map_err(|e| anyhow::anyhow!("{e}"))?,
        )),
        None => verify_files(&cfg)?,
    };
    let text = std::fs::read_to_string(&cfg.sop)
        .map_err(|e| usage(anyhow::anyhow!("{}: cannot read: {e}", cfg.sop.display())))?;
    let calendar = siaga_collector::sop::Calendar::new(&cfg.calendar)
        .map_err(|e| usage(anyhow::anyhow!("{}: {e}", config.display())))?;
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
    // The trails against the heads the collector signed, outside the store:
    // a trail rewritten together with its head, or rolled back, shows here.
    let (unanchored, anchored) = verify_anchor(&cfg, &store, &results)?;
    bad += unanchored;
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
        "{} audit trails intact ({anchored} checked against their signed heads), {} frozen report documents match",
        results.len(),
        reports.len()
    );
    Ok(())
}

/// Each ticket's trail against its newest signed head (see `anchor.rs`):
/// prints a line per trail that does not run through it; returns how many
/// failed and how many were checked.
fn verify_anchor(
    cfg: &CollectorConfig,
    store: &siaga_collector::sop::store::SopStore,
    results: &[(String, Result<(), siaga_collector::sop::audit::Tamper>)],
) -> Result<(usize, usize), Failure> {
    use siaga_collector::anchor::{self, AuditKey};
    // This collector's log and, on a database shared by several
    // collectors, the heads every one of them signed there: a trail walked
    // on by another collector is anchored by its heads; one rolled back in
    // the database still meets the newer head of this collector's log.
    let shared = store
        .shared_signed_heads()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let signed = anchor::union(anchor::read_heads(&cfg.data_dir)?, shared);
    let key = match AuditKey::load(&cfg.audit_key) {
        Ok(k) => k,
        Err(e) if signed.is_empty() && !cfg.audit_key.exists() => {
            println!(
                "no audit key yet ({e}): the collector creates it and signs the trails on its next start"
            );
            return Ok((0, 0));
        }
        Err(e) => return Err(anyhow::anyhow!("{e}").into()),
    };
    let mut tickets: std::collections::BTreeSet<&str> =
        results.iter().map(|(t, _)| t.as_str()).collect();
    tickets.extend(signed.keys().map(String::as_str));
    let mut bad = 0;
    for t in &tickets {
        let trail = store.trail(t).map_err(|e| anyhow::anyhow!("{e}"))?;
        let hashes: Vec<&str> = trail.iter().map(|r| r.hash.as_str()).collect();
        match anchor::check(&hashes, signed.get(*t), key.public()) {
            anchor::Anchored::Ok => {}
            problem => {
                bad += 1;
                println!("{t}: audit trail {problem}");
            }
        }
    }
    Ok((bad, tickets.len()))
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
        .chain(m.samples_elsewhere.iter().map(|e| {
            format!(
                "  samples, tickets, SOP trails, measurements and reports: not in this backup, \
                 they are in PostgreSQL at {}; back them up with `{}` (it asks for the password)",
                e.postgresql, e.pg_dump
            )
        }))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `backup`: the running collector streams a consistent copy of its stores
/// (admin role); written to a new file under a random name beside OUT (mode
/// 0600), checked against its manifest, then renamed to OUT.
fn backup(out: &Path, user_config: Option<PathBuf>) -> Result<(), Failure> {
    use sha2::Digest as _;
    use std::io::Write as _;
    let path = client::config_path(user_config).map_err(usage)?;
    let cfg = SiagaConfig::load(&path).map_err(usage)?;
    // It holds everything the collector knows: for its owner's eyes only.
    let mut file = safe_file::create_beside(out, safe_file::PRIVATE)?;
    let partial = file.path().to_path_buf();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    let fetched = rt.block_on(async {
        let mut client = client::connect(&cfg).await?;
        let mut stream = client
            .backup(siaga_proto::v1::BackupRequest {})
            .await
            .map_err(|s| client::status_error(&cfg, s))?
            .into_inner();
        let mut hash = sha2::Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| client::status_error(&cfg, s))?
        {
            hash.update(&chunk.data);
            bytes += chunk.data.len() as u64;
            file.write_all(&chunk.data)
                .map_err(|e| anyhow::anyhow!("{}: {e}", partial.display()))?;
        }
        file.flush()
            .map_err(|e| anyhow::anyhow!("{}: {e}", partial.display()))?;
        Ok::<_, anyhow::Error>((bytes, hex::encode(hash.finalize())))
    });
    // Dropped on failure, the unfinished file is removed.
    let checked = fetched.and_then(|(bytes, sha)| {
        let m = backup::verify(&partial)?;
        safe_file::persist(file, out)?;
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
        Err(e) => Err(Failure { code: 1, error: e }),
    }
}

/// `restore`: a backup into the data directory of `config` (collector stopped).
fn restore(from: &Path, config: &Path, force: bool) -> Result<(), Failure> {
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    let losses = backup::audit_rollback(from, &cfg.data_dir)?;
    if !losses.is_empty() {
        let records: u64 = losses.iter().map(|l| l.signed - l.in_backup).sum();
        let list: Vec<String> = losses
            .iter()
            .take(10)
            .map(|l| {
                if l.in_backup == 0 {
                    format!("{}: {} records, not in the backup", l.ticket, l.signed)
                } else {
                    format!("{}: {} → {} records", l.ticket, l.signed, l.in_backup)
                }
            })
            .collect();
        let what = format!(
            "{}: its audit trails end before the newest heads the collector signed \
             ({}): restoring it would lose {records} audit record(s) of {} ticket(s):\n  {}{}",
            from.display(),
            cfg.data_dir
                .join(siaga_collector::anchor::HEADS_FILE)
                .display(),
            losses.len(),
            list.join("\n  "),
            if losses.len() > 10 { "\n  …" } else { "" }
        );
        if !force {
            return Err(anyhow::anyhow!(
                "{what}\nrefusing to roll the trails back; restore a newer backup, or pass --force \
                 to restore this one anyway (the loss is then recorded beside the signed heads)"
            )
            .into());
        }
        eprintln!("warning: {what}");
    }
    let restored = backup::restore(from, &cfg.data_dir, force)?;
    let m = &restored.manifest;
    if !losses.is_empty() {
        record_rollback(&cfg, &losses)?;
    }
    println!(
        "restored {} (taken {} by collector {}) into {}:\n{}\nnext: start the collector (`siaga-collector serve --config {}` or `systemctl start siaga-collector`)",
        from.display(),
        m.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        m.collector_version,
        cfg.data_dir.display(),
        describe(m),
        config.display()
    );
    if let Some(e) = &m.samples_elsewhere {
        println!(
            "the samples, tickets and trails stay in PostgreSQL at {}: untouched by this restore. \
             Only if that database was lost, load its dump (`pg_restore --clean --if-exists \
             --dbname=… siaga.dump`, the dump made with `{}`), then run `siaga-collector verify \
             --config {}` to check the trails against the signed heads",
            e.postgresql,
            e.pg_dump,
            config.display()
        );
    }
    // The list only grows: what the backup had revoked and the list here did
    // not is added; what was revoked since the backup stays revoked.
    if restored.revocations_added.is_empty() {
        println!(
            "revocation list: {} kept; nothing to add from the backup",
            cfg.data_dir.join(backup::REVOKED).display()
        );
    } else {
        println!(
            "revocation list: added {} revoked certificate(s) from the backup:",
            restored.revocations_added.len()
        );
        for r in &restored.revocations_added {
            println!("  {} {} (revoked {})", r.serial, r.identity, r.at);
        }
    }
    if restored.certificates_added > 0 {
        println!(
            "certificate ledger: added {} certificate(s) from the backup",
            restored.certificates_added
        );
    }
    Ok(())
}

/// What `revoke-cert` revokes.
enum Revoke {
    /// Every certificate of a user.
    User(String),
    /// Every certificate of an agent.
    Agent(String),
    /// One certificate file.
    Cert(PathBuf),
    /// One serial, as typed.
    Serial { given: String, unlisted: bool },
}

/// After a forced restore that rolled trails back: their restored heads are
/// signed and logged with a note, so that `verify` checks them from here on
/// and the log keeps what was lost.
fn record_rollback(cfg: &CollectorConfig, losses: &[backup::AuditLoss]) -> Result<(), Failure> {
    use siaga_collector::anchor::{Anchor, AuditKey};
    let key = AuditKey::load(&cfg.audit_key)?;
    let anchor = Anchor::open(key, &cfg.data_dir)?;
    let path = cfg.data_dir.join("tickets.redb");
    let heads: std::collections::BTreeMap<String, siaga_collector::sop::audit::Head> =
        if path.exists() {
            let db = redb::Database::open(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            siaga_collector::sop::store::heads_in(std::sync::Arc::new(db))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .into_iter()
                .collect()
        } else {
            Default::default()
        };
    let empty = siaga_collector::sop::audit::Head {
        len: 0,
        hash: siaga_collector::sop::audit::GENESIS.to_string(),
    };
    for l in losses {
        let head = heads.get(&l.ticket).unwrap_or(&empty);
        let note = format!(
            "restore --force at {}: rolled back from {} to {} records",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            l.signed,
            head.len
        );
        anchor.record(&l.ticket, head, Some(&note))?;
    }
    Ok(())
}

/// `revoke-cert`: add certificates to the list the running collector checks
/// (re-read on change, so no reload is needed; open streams end).
fn revoke_cert(config: &Path, which: Revoke, reason: &str) -> Result<(), Failure> {
    use siaga_collector::ledger::{Issued, Kind, Ledger};
    use siaga_collector::revoke;
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    // With several collectors on PostgreSQL the revocation goes to the
    // database too, where every one of them reads it.
    let shared = siaga_collector::trust::open(&cfg).map_err(|e| {
        anyhow::anyhow!(
            "[store] url of {}: {e}; nothing was revoked: the other collectors would not \
             learn of it (run again when the database answers)",
            config.display()
        )
    })?;
    let mut ledger = Ledger::load(&cfg.data_dir, &cfg.users).map_err(usage)?;
    if let Some(db) = &shared {
        ledger.absorb(siaga_collector::trust::issued(db).map_err(|e| anyhow::anyhow!(e))?);
    }
    let ledger_file = ledger.path().display().to_string();
    // (serial, identity) pairs.
    let targets: Vec<(String, String)> = match which {
        Revoke::User(n) => {
            let mut all = users::load_users(&cfg.users).map_err(usage)?;
            if let Some(db) = &shared
                && let Some(there) =
                    siaga_collector::trust::user(db, &n).map_err(|e| anyhow::anyhow!(e))?
            {
                // Enrolled (or given a certificate) on another collector:
                // the serials of both records.
                let u = all.entry(n.clone()).or_insert_with(|| there.clone());
                for s in there.certificates {
                    if !u.certificates.contains(&s) {
                        u.certificates.push(s);
                    }
                }
            }
            let mut serials: Vec<String> = ledger
                .of(Kind::User, &n)
                .iter()
                .map(|e| e.serial.clone())
                .collect();
            if let Some(u) = all.get(&n) {
                for s in &u.certificates {
                    let s = revoke::parse_serial(s).map_err(|e| {
                        usage(anyhow::anyhow!(
                            "{}: certificates: {e}",
                            cfg.users.join(format!("{n}.toml")).display()
                        ))
                    })?;
                    if !serials.contains(&s) {
                        serials.push(s);
                    }
                }
            } else if serials.is_empty() {
                return Err(usage(anyhow::anyhow!(
                    "--name: no user {n:?} in {}",
                    cfg.users.display()
                )));
            }
            if serials.is_empty() {
                return Err(usage(anyhow::anyhow!(
                    "{}: user {n:?} has no recorded certificate serials; revoke with --cert FILE or --serial HEX",
                    cfg.users.join(format!("{n}.toml")).display()
                )));
            }
            let identity = format!("siaga://user/{n}");
            serials.into_iter().map(|s| (s, identity.clone())).collect()
        }
        Revoke::Agent(id) => {
            let issued = ledger.of(Kind::Agent, &id);
            if issued.is_empty() {
                return Err(usage(anyhow::anyhow!(
                    "--agent: no certificate of agent {id:?} in {ledger_file}; an agent enrolled before the ledger is revoked with --cert its agent.pem, or --serial HEX --unlisted (its serial: `openssl x509 -noout -serial -in agent.pem`)"
                )));
            }
            issued
                .iter()
                .map(|e| (e.serial.clone(), e.identity_uri()))
                .collect()
        }
        Revoke::Cert(p) => {
            let pem = std::fs::read_to_string(&p)
                .map_err(|e| usage(anyhow::anyhow!("{}: cannot read: {e}", p.display())))?;
            let der = revoke::pem_to_der(&pem)
                .map_err(|e| usage(anyhow::anyhow!("{}: {e}", p.display())))?;
            let (serial, uri) = revoke::cert_serial(&der)
                .map_err(|e| usage(anyhow::anyhow!("{}: {e}", p.display())))?;
            let serial = revoke::parse_serial(&serial)
                .map_err(|e| usage(anyhow::anyhow!("{}: {e}", p.display())))?;
            // A certificate from before the ledger: the ledger learns of it.
            if ledger.by_serial(&serial).is_none()
                && let Some(identity) = siaga_collector::pki::Identity::from_uri(&uri)
            {
                let (_, not_after) = pki::serial_and_expiry(&pem)?;
                let _lock = revoke::lock(&cfg.data_dir).map_err(|e| anyhow::anyhow!(e))?;
                let mut ledger = Ledger::load(&cfg.data_dir, &cfg.users).map_err(usage)?;
                let mut entry = Issued::new(&identity, &serial, not_after);
                entry.issued_at = None;
                entry.seeded = true;
                ledger.record(entry).map_err(|e| anyhow::anyhow!(e))?;
            }
            vec![(serial, uri)]
        }
        Revoke::Serial { given, unlisted } => {
            let serial = revoke::parse_serial(&given)
                .map_err(|e| usage(anyhow::anyhow!("--serial: {e}")))?;
            match ledger.by_serial(&serial) {
                Some(e) => vec![(serial, e.identity_uri())],
                None if unlisted => {
                    eprintln!(
                        "WARNING: serial {serial} is not in {ledger_file}: this CA never recorded issuing it.\nWARNING: revoking it anyway (--unlisted); check that it is the certificate you mean."
                    );
                    vec![(serial, String::new())]
                }
                None => {
                    return Err(usage(anyhow::anyhow!(
                        "--serial: {serial} is not a certificate this CA recorded ({ledger_file}; see `siaga-collector certs`); for a certificate issued before the ledger, add --unlisted"
                    )));
                }
            }
        }
    };
    let mut entries = Vec::new();
    for (serial, identity) in &targets {
        let entry = revoke::revoke_serial(&cfg.data_dir, serial, identity, reason)
            .map_err(|e| anyhow::anyhow!(e))?;
        if let Some(db) = &shared {
            siaga_collector::trust::put_revoked(db, &entry).map_err(|e| {
                anyhow::anyhow!(
                    "certificate {} is revoked in {} but not in the database the other \
                     collectors read ({e}); run the same revoke-cert again when the database \
                     answers",
                    entry.serial,
                    cfg.data_dir.join(revoke::FILE).display()
                )
            })?;
        }
        entries.push(entry);
    }
    let who = if shared.is_some() {
        "every collector on the database refuses it within seconds"
    } else {
        "the collector refuses it from its next call"
    };
    for e in &entries {
        println!(
            "revoked certificate {} {}; {who} and ends its open streams",
            e.serial, e.identity
        );
    }
    Ok(())
}

/// `certs`: the ledger with each certificate's revocation state and expiry.
fn certs(config: &Path, json: bool) -> Result<(), Failure> {
    use siaga_collector::ledger::Ledger;
    use siaga_collector::revoke;
    let cfg = CollectorConfig::load(config).map_err(usage)?;
    let mut ledger = Ledger::load(&cfg.data_dir, &cfg.users).map_err(usage)?;
    let mut revoked: std::collections::HashMap<String, revoke::Revoked> =
        revoke::load(&cfg.data_dir)
            .map_err(usage)?
            .into_iter()
            .filter_map(|r| revoke::parse_serial(&r.serial).ok().map(|s| (s, r)))
            .collect();
    // Several collectors on PostgreSQL: what any of them issued and revoked.
    let shared = siaga_collector::trust::open(&cfg)
        .map_err(|e| anyhow::anyhow!("[store] url of {}: {e}", config.display()))?;
    if let Some(db) = &shared {
        use siaga_collector::trust;
        ledger.absorb(trust::issued(db).map_err(|e| anyhow::anyhow!(e))?);
        for r in trust::revoked(db).map_err(|e| anyhow::anyhow!(e))? {
            if let Ok(s) = revoke::parse_serial(&r.serial) {
                revoked.entry(s).or_insert(r);
            }
        }
    }
    let now = chrono::Utc::now();
    let state = |e: &siaga_collector::ledger::Issued| -> String {
        if let Some(r) = revoked.get(&e.serial) {
            return format!("revoked {}", r.at.get(..10).unwrap_or(&r.at));
        }
        match e.not_after {
            Some(t) if t <= now => "expired".into(),
            Some(t) if t <= now + chrono::Duration::days(EXPIRY_WARNING_DAYS) => {
                format!("expires in {} days", (t - now).num_days())
            }
            Some(_) => "valid".into(),
            None => "valid (expiry unknown)".into(),
        }
    };
    if json {
        for e in &ledger.entries {
            println!(
                "{}",
                serde_json::json!({
                    "kind": e.kind, "name": e.name, "opd": e.opd, "serial": e.serial,
                    "issued_at": e.issued_at, "not_after": e.not_after,
                    "revoked": revoked.contains_key(&e.serial), "state": state(e),
                    "seeded": e.seeded,
                })
            );
        }
        return Ok(());
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(["kind", "name", "opd", "serial", "not after", "state"]);
    for e in &ledger.entries {
        t.add_row(vec![
            e.kind.to_string(),
            e.name.clone(),
            e.opd.clone().unwrap_or_default(),
            e.serial.clone(),
            e.not_after
                .map_or("?".into(), |t| t.format("%Y-%m-%d").to_string()),
            state(e),
        ]);
    }
    println!("{t}");
    if ledger.seeded {
        println!(
            "(no {} yet: seeded from the users' files and the revocation list; agents enrolled before the ledger are not listed)",
            ledger.path().display()
        );
    }
    Ok(())
}

/// Days before expiry from which `validate` and `siaga agents` warn.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// Warnings (on stderr) for certificates that expire within
/// [`EXPIRY_WARNING_DAYS`]: the server's and the newest of each agent and user.
fn expiry_warnings(cfg: &CollectorConfig) -> Result<(), Failure> {
    use siaga_collector::ledger::Ledger;
    let now = chrono::Utc::now();
    let soon = now + chrono::Duration::days(EXPIRY_WARNING_DAYS);
    if let Ok(pem) = std::fs::read_to_string(&cfg.tls.cert)
        && let Ok((_, t)) = pki::serial_and_expiry(&pem)
        && t <= soon
    {
        eprintln!(
            "warning: the server certificate {} expires {} ({} days)",
            cfg.tls.cert.display(),
            t.format("%Y-%m-%d"),
            (t - now).num_days()
        );
    }
    let ledger = Ledger::load(&cfg.data_dir, &cfg.users).map_err(usage)?;
    let revoked: std::collections::HashSet<String> = siaga_collector::revoke::load(&cfg.data_dir)
        .map_err(usage)?
        .iter()
        .filter_map(|r| siaga_collector::revoke::parse_serial(&r.serial).ok())
        .collect();
    for e in ledger.expiring(&revoked, now, EXPIRY_WARNING_DAYS) {
        let Some(t) = e.not_after else { continue };
        let renew = match e.kind {
            siaga_collector::ledger::Kind::Agent => {
                format!("siaga-collector renew --agent {}", e.name)
            }
            siaga_collector::ledger::Kind::User => {
                format!("siaga-collector renew --user {}", e.name)
            }
            siaga_collector::ledger::Kind::Server => continue,
        };
        eprintln!(
            "warning: the certificate of {} {} ({}) {} {} ({} days): `{renew} --dir DIR --out OUT`",
            e.kind,
            e.name,
            e.serial,
            if t <= now { "expired" } else { "expires" },
            t.format("%Y-%m-%d"),
            (t - now).num_days()
        );
    }
    Ok(())
}
