//! `siaga-agent`: probes an OPD's devices and streams what it sees to the collector.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use siaga_agent::config::{AgentConfig, EXAMPLE};
use siaga_agent::metrics::Metrics;
use siaga_agent::probe::icmp::IcmpProber;
use siaga_agent::probe::measure::Measurer;
use siaga_agent::scheduler::Scheduler;
use siaga_agent::spool::Spool;
use siaga_agent::uplink::{Uplink, UplinkSettings};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

mod systemd;

/// Bad command line or configuration (sysexits.h EX_USAGE).
const EX_USAGE: u8 = 64;
/// How long tasks get to finish after a shutdown signal.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "siaga-agent",
    version,
    about = "Siaga agent: probes an OPD's devices and streams health data to the collector"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or SIGINT.
    Run {
        /// Path of agent.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// Log format on stderr: one line per event, text or JSON.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Check agent.toml and the files it names; exit 64 when unusable.
    Validate {
        /// Path of agent.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print a commented example agent.toml.
    PrintConfig,
    /// Probe every device once without a collector (ICMP, SNMP) and print
    /// a table per device and link; exit 1 when a device does not answer.
    Check {
        /// Path of agent.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// An inventory file (collector format) to probe instead of the
        /// cached one; only this agent's OPD is probed.
        #[arg(long)]
        inventory: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    siaga_agent::memory::limit_arenas();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            // Printing help or an error to a closed pipe is not worth a panic.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logs(match cli.command {
        Command::Run { log_format, .. } => log_format,
        _ => LogFormat::Text,
    });
    match cli.command {
        Command::PrintConfig => {
            print!("{EXAMPLE}");
            ExitCode::SUCCESS
        }
        Command::Validate { config } => match load(&config, Files::Strict) {
            Ok(cfg) => {
                println!(
                    "{}: ok (agent {} of OPD {}, {} {})",
                    config.display(),
                    cfg.id,
                    cfg.opd,
                    if cfg.collector.len() == 1 {
                        "collector"
                    } else {
                        "collectors"
                    },
                    cfg.collector.join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Check { config, inventory } => {
            let cfg = match load(&config, Files::Unchecked) {
                Ok(c) => c,
                Err(code) => return code,
            };
            check(&cfg, inventory.as_deref())
        }
        Command::Run { config, .. } => {
            let cfg = match load(&config, Files::Run) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e:#}");
                    eprintln!("siaga-agent: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// How much of the TLS files [`load`] checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Files {
    /// None: only the configuration.
    Unchecked,
    /// All, and what only a connection can settle is an error (`validate`).
    Strict,
    /// All, and what only a connection can settle is a warning (`run`: the
    /// uplink says which file is at fault once it connects).
    Run,
}

/// Loads the configuration; on error prints it (file:line: key: message)
/// and returns the exit code.
fn load(path: &Path, files: Files) -> Result<AgentConfig, ExitCode> {
    let cfg = AgentConfig::load(path).and_then(|c| {
        if files != Files::Unchecked {
            match c.check_files(path)? {
                Some(doubt) if files == Files::Strict => return Err(doubt),
                Some(doubt) => warn!("{doubt}"),
                None => {}
            }
        }
        Ok(c)
    });
    cfg.map_err(|e| {
        eprintln!("siaga-agent: {e}");
        ExitCode::from(EX_USAGE)
    })
}

/// `siaga-agent check`: one cycle against the given or cached inventory.
fn check(cfg: &AgentConfig, inventory: Option<&Path>) -> ExitCode {
    let inv = match inventory {
        Some(path) => match siaga_agent::probe::check::load_inventory(path, Some(&cfg.opd)) {
            Ok(inv) => inv,
            Err(e) => {
                eprintln!("siaga-agent: {e}");
                return ExitCode::from(EX_USAGE);
            }
        },
        None => {
            let cached = Spool::open(&cfg.data_dir, &cfg.spool, Metrics::default())
                .map_err(|e| format!("{e} (is the agent running? pass --inventory FILE)"))
                .and_then(|s| s.cached_inventory().map_err(|e| e.to_string()));
            match cached {
                Ok(Some(inv)) => inv,
                Ok(None) => {
                    eprintln!(
                        "siaga-agent: no cached inventory in {} yet: run the agent once with the \
                         collector reachable, or pass --inventory FILE",
                        cfg.data_dir.display()
                    );
                    return ExitCode::from(EX_USAGE);
                }
                Err(e) => {
                    eprintln!("siaga-agent: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("siaga-agent: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (out, all_ok) = rt.block_on(async {
        let prober = IcmpProber::new()
            .map_err(|e| eprintln!("siaga-agent: {e}; ICMP skipped"))
            .ok();
        siaga_agent::probe::check::check(&inv, prober.as_ref()).await
    });
    print!("{out}");
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // async-snmp logs every timed-out request at ERROR; the poller
        // reports the outcome in the sample (and at debug) instead.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_snmp=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(siaga_agent::logs::colour_for_stderr())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("siaga-agent")
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(run_async(cfg));
    // Everything that matters is committed by now; do not wait for stray
    // blocking threads (e.g. a socket poll) longer than a moment.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run_async(cfg: AgentConfig) -> anyhow::Result<()> {
    info!(
        agent = %cfg.id,
        opd = %cfg.opd,
        collector = %cfg.collector.join(", "),
        version = env!("CARGO_PKG_VERSION"),
        "starting"
    );
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let metrics = Metrics::default();
    let spool =
        Spool::open(&cfg.data_dir, &cfg.spool, metrics.clone()).context("opening the spool")?;
    let st = spool.stats();
    info!(
        depth = st.depth,
        dropped = st.dropped,
        last_seq = st.last_seq,
        "spool opened"
    );
    let cached = match spool.cached_inventory() {
        Ok(inv) => inv,
        Err(e) => {
            warn!(error = %e, "ignoring unreadable cached inventory");
            None
        }
    };
    if let Some(inv) = &cached {
        info!(
            revision = inv.revision,
            devices = inv.devices.len(),
            "probing the cached inventory until the collector sends one"
        );
    }
    let (inventory_tx, inventory_rx) = watch::channel(cached.map(Arc::new));

    let prober = Arc::new(IcmpProber::new().context("opening ICMP sockets")?);
    let measurer = Measurer::new(prober.clone(), inventory_rx.clone());
    let discoverer = siaga_agent::probe::discover::Discoverer::new(prober.clone());
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();

    if let Some(addr) = cfg.metrics_listen {
        let (_, task) =
            siaga_agent::metrics::serve(addr, &cfg.data_dir, &metrics, cancel.child_token())
                .await
                .context("starting the metrics endpoint")?;
        tasks.push(("metrics", task));
    }

    if let Some(addr) = cfg.trap_listen {
        let task = siaga_agent::probe::cycle::spawn_trap_receiver(
            addr,
            inventory_rx.clone(),
            spool.sink(),
            metrics.clone(),
            cancel.child_token(),
        )
        .await
        .context("starting the SNMP trap receiver")?;
        tasks.push(("traps", task));
    }
    let snmp = siaga_agent::probe::cycle::SnmpCycle {
        poller: Arc::new(siaga_agent::probe::snmp::SnmpPoller::with_limits(
            metrics.clone(),
            siaga_agent::probe::snmp::SnmpLimits {
                max_interfaces: cfg.snmp.max_interfaces,
            },
        )),
        sink: spool.sink(),
        inventory: inventory_rx.clone(),
        default_interval: cfg.interval,
        metrics: metrics.clone(),
    };
    tasks.push(("snmp", tokio::spawn(snmp.run(cancel.child_token()))));

    let scheduler = Scheduler {
        prober,
        sink: spool.sink(),
        inventory: inventory_rx,
        default_interval: cfg.interval,
        metrics: metrics.clone(),
    };
    tasks.push((
        "scheduler",
        tokio::spawn(scheduler.run(cancel.child_token())),
    ));

    let settings = UplinkSettings::from_config(&cfg).context("uplink settings")?;
    let uplink = Uplink::new(settings, spool.clone(), inventory_tx, metrics.clone())
        .with_measurer(measurer)
        .with_discoverer(discoverer);
    tasks.push(("uplink", tokio::spawn(uplink.run(cancel.child_token()))));

    if let Some(task) = systemd::ready(cancel.child_token()) {
        tasks.push(("watchdog", task));
    }

    shutdown_signal().await.context("waiting for a signal")?;
    info!("shutting down");
    systemd::stopping();
    cancel.cancel();
    let names: Vec<&str> = tasks.iter().map(|(n, _)| *n).collect();
    let joined = futures::future::join_all(tasks.into_iter().map(|(_, t)| t));
    match tokio::time::timeout(GRACE, joined).await {
        Ok(results) => {
            for (name, r) in names.iter().zip(results) {
                if let Err(e) = r {
                    warn!(task = name, error = %e, "task ended abnormally");
                }
            }
        }
        Err(_) => warn!(
            grace = %humantime::format_duration(GRACE),
            "grace period over; tasks still running are abandoned"
        ),
    }
    let st = spool.stats();
    spool.close().await.context("closing the spool")?;
    info!(
        depth = st.depth,
        dropped = st.dropped,
        "spool committed and closed; stopped"
    );
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    Ok(())
}
