//! `siaga`: the CLI for people. Talks to the collector's admin API only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use siaga_cli::client::{self, CliError};
use siaga_cli::{availability, devices, discover, events, measure, report, sop, ticket};
use siaga_proto::client::SiagaConfig;
use siaga_proto::v1;

#[derive(Debug, Parser)]
#[command(
    name = "siaga",
    version,
    about = "Siaga: network health of the OPDs, from the collector"
)]
struct Args {
    /// siaga.toml (default: $SIAGA_CONFIG, else ~/.config/siaga/siaga.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// How answers are printed: table (fitted to the terminal, or $COLUMNS),
    /// wide (never cut), plain (tab-separated, for cut and awk) or json (the
    /// command's --json), e.g. -o plain.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value_t
    )]
    output: client::Output,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The agents: connected, last seen, spool, dropped and refused samples, host health.
    Agents {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// The devices of the inventory with their state and newest readings.
    Devices {
        /// Print a JSON array (with --watch: one object per line).
        #[arg(long)]
        json: bool,
        /// Only this OPD.
        #[arg(long)]
        opd: Option<String>,
        /// Only devices in this state: up, degraded, down, unreachable, unknown, stale.
        #[arg(long, conflicts_with = "watch")]
        state: Option<v1::device_info::State>,
        /// Keep printing each device's state changes as they happen (a
        /// server stream; reconnects when the collector restarts).
        #[arg(long)]
        watch: bool,
    },
    /// One device's samples in time order (streamed: any length).
    History {
        /// Device id.
        device: String,
        /// How far back, e.g. 30m, 6h, 2d.
        #[arg(long, default_value = "1h", value_parser = siaga_cli::usage::since_arg)]
        since: String,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// The links of the inventory with their newest SNMP reading.
    Links {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One device: its interfaces and its recent RTT and loss.
    Device {
        /// Device id.
        id: String,
        /// How far back the history goes, e.g. 30m, 6h, 2d.
        #[arg(long, default_value = "1h", value_parser = siaga_cli::usage::since_arg)]
        since: String,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Who the collector thinks you are.
    Whoami {
        /// Print JSON (the WhoAmI answer in proto3 JSON).
        #[arg(long)]
        json: bool,
    },
    /// Tickets: the SOP's requests and the faults the collector found.
    Tickets(ticket::TicketsCmd),
    /// One ticket: show it, or take an SOP action on it.
    Ticket {
        #[command(subcommand)]
        cmd: TicketSub,
    },
    /// State changes and what the health engine did about them.
    Events(events::EventsCmd),
    /// What waits on you (your roles' turn in the SOP).
    Inbox(sop::InboxCmd),
    /// The Buku permintaan Layanan dan Gangguan for a period (CSV or xlsx).
    Register(sop::RegisterCmd),
    /// Monthly reports (availability and SLA).
    Report {
        #[command(subcommand)]
        cmd: ReportSub,
    },
    /// Every ticket's hash-chained audit trail, checked by the collector
    /// while it serves (admin); a broken trail exits 1.
    Trails(sop::TrailsCmd),
    /// Users and their roles (admin).
    User {
        #[command(subcommand)]
        cmd: sop::UserCmd,
    },
    /// Maintenance windows: no tickets are opened inside one.
    Maintenance {
        #[command(subcommand)]
        cmd: ticket::MaintenanceCmd,
    },
    /// Have the OPD's agent measure a device now (ICMP burst; with --link,
    /// the link's SNMP status and rates); waits for the figures.
    Measure(measure::MeasureCmd),
    /// One measurement (see `siaga ticket measurements`).
    Measurement(measure::MeasurementCmd),
    /// Have the OPD's agent sweep a subnet (ICMP, then SNMP and LLDP of what
    /// answers) and propose inventory changes: new devices, changed names
    /// and addresses, links and parents (Tim Teknis, admin). Nothing is
    /// written: `--save` the proposal for `siaga-collector inventory apply`.
    Discover(discover::DiscoverCmd),
    /// Print the shell completion script, e.g. `siaga completion bash`
    /// (the package installs those of bash, zsh and fish).
    Completion {
        /// bash, zsh or fish (also elvish, powershell).
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (siaga.1 and one per command) into DIR.
    #[command(hide = true)]
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ReportSub {
    /// Availability % per OPD, device and link over a month, from the stored
    /// samples: maintenance windows, time behind a down parent and time
    /// without data left out; incidents, MTTR and the longest outage.
    Availability(availability::AvailabilityCmd),
}

#[derive(Debug, Subcommand)]
enum TicketSub {
    #[command(flatten)]
    Show(ticket::TicketShowCmd),
    #[command(flatten)]
    Sop(sop::TicketCmd),
    /// The control card (Kartu Kendali / Lembar Disposisi).
    Card(sop::CardCmd),
    #[command(flatten)]
    Measure(measure::TicketMeasureCmd),
    /// The work report (laporan pekerjaan): a draft until the Kepala Dinas's
    /// review, then the frozen final one.
    Report(report::ReportCmd),
}

fn main() -> ExitCode {
    let mut args = match siaga_cli::usage::parse::<Args>() {
        Ok(a) => a,
        Err(code) => return code,
    };
    // `-o json` is the command's own `--json`.
    if args.output == client::Output::Json {
        let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if !argv.iter().any(|a| a == "--json") {
            argv.push("--json".into());
        }
        args = match <Args as clap::Parser>::try_parse_from(&argv) {
            Ok(a) => a,
            Err(_) => {
                eprintln!(
                    "siaga: -o json: this command prints no JSON; use -o table, wide or plain, \
                     e.g. siaga tickets -o json"
                );
                return ExitCode::from(siaga_cli::usage::EX_USAGE);
            }
        };
    }
    // What needs no configuration and no collector.
    match &args.cmd {
        Cmd::Completion { shell } => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "siaga", &mut script);
            // A closed pipe (`| head`) is not worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return ExitCode::SUCCESS;
        }
        Cmd::Man { dir } => {
            let written = std::fs::create_dir_all(dir).and_then(|()| {
                clap_mangen::generate_to(<Args as clap::CommandFactory>::command(), dir)
            });
            return match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "siaga: writing the manual pages into {}: {e}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    // Flags that do not go together are a bad command line too, told
    // before any connection is tried.
    if let Err(e) = check(&args.cmd) {
        eprintln!("siaga: {e}");
        return ExitCode::from(siaga_cli::usage::EX_USAGE);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("siaga: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (CliError::Config(_) | CliError::Usage(_))) => {
            eprintln!("siaga: {e}");
            ExitCode::from(siaga_cli::usage::EX_USAGE)
        }
        Err(e) => {
            eprintln!("siaga: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The combinations of flags each command refuses, checked before connecting.
fn check(cmd: &Cmd) -> Result<(), CliError> {
    match cmd {
        Cmd::Register(c) => c.check().map_err(CliError::Usage),
        Cmd::Maintenance { cmd } => cmd
            .add_request(chrono_tz::Asia::Jakarta)
            .map(drop)
            .map_err(CliError::Usage),
        _ => Ok(()),
    }
}

async fn run(args: Args) -> Result<(), CliError> {
    let path = client::config_path(args.config)?;
    let cfg = SiagaConfig::load(&path)?;
    // How answers are printed (`-o`), handed to each command.
    let out = args.output;
    // Every command asks one typed service (on its own channel).
    match args.cmd {
        Cmd::Agents { json } => devices::agents(&cfg, out, json).await,
        Cmd::Devices {
            json,
            opd,
            state,
            watch,
        } => {
            if watch {
                devices::watch(&cfg, opd, json).await
            } else {
                devices::devices(&cfg, out, opd, state, json).await
            }
        }
        Cmd::History {
            device,
            since,
            json,
        } => devices::history(&cfg, out, device, &since, json).await,
        Cmd::Links { json } => devices::links(&cfg, out, json).await,
        Cmd::Device { id, since, json } => devices::device(&cfg, out, id, &since, json).await,
        Cmd::Events(c) => events::run(&cfg, out, &c).await,
        // Documents, streamed.
        Cmd::Register(c) => print(c.run(&cfg).await?),
        Cmd::Report {
            cmd: ReportSub::Availability(c),
        } => print(c.run(&cfg).await?),
        Cmd::Ticket {
            cmd: TicketSub::Card(c),
        } => print(c.run(&cfg).await?),
        Cmd::Ticket {
            cmd: TicketSub::Report(c),
        } => print(c.run(&cfg).await?),
        Cmd::Tickets(c) => c.run(&cfg, out).await,
        // Measurements.
        Cmd::Ticket {
            cmd: TicketSub::Measure(c),
        } => measure::ticket(&cfg, out, &c).await,
        Cmd::Measure(c) => measure::device(&cfg, out, &c).await,
        Cmd::Measurement(c) => measure::show(&cfg, out, &c).await,
        Cmd::Discover(c) => c.run(&cfg).await,
        Cmd::Maintenance { cmd } => cmd.run(&cfg, out).await,
        Cmd::Ticket {
            cmd: TicketSub::Show(c),
        } => c.run(&cfg, out).await,
        Cmd::Ticket {
            cmd: TicketSub::Sop(c),
        } => c.run_typed(&cfg, out).await.map(drop),
        Cmd::Inbox(c) => c.run(&cfg, out).await,
        Cmd::Trails(c) => c.run(&cfg, out).await,
        Cmd::User { cmd } => print(cmd.run(client::channel(&cfg).await?, &cfg, out).await?),
        // Handled before the configuration is read.
        Cmd::Completion { .. } | Cmd::Man { .. } => Ok(()),
        Cmd::Whoami { json } => {
            let r = client::connect(&cfg)
                .await?
                .who_am_i(v1::WhoAmIRequest {})
                .await
                .map_err(|s| client::status_error(&cfg, s))?
                .into_inner();
            if json {
                let text = serde_json::to_string_pretty(&r)
                    .map_err(|e| CliError::Message(e.to_string()))?;
                println!("{text}");
                return Ok(());
            }
            println!(
                "{} ({}) at collector {}",
                r.user,
                r.roles.join(", "),
                r.collector_version
            );
            Ok(())
        }
    }
}

/// Prints what a command said.
fn print(said: String) -> Result<(), CliError> {
    println!("{said}");
    Ok(())
}
