//! The `siaga` commands for measurements: `siaga ticket measure`,
//! `siaga ticket measurements`, `siaga measure DEVICE` and
//! `siaga measurement ID`, on the `Measure` service. A measurement is
//! started (`MeasureTicket`, `MeasureDevice`), then followed with
//! `GetMeasurement` until it is final (a progress line on standard error
//! when that is a terminal; standard output stays clean for the table or
//! the proto3 JSON of the measurement).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Subcommand};
use siaga_proto::v1::measurement::Phase as WirePhase;
use siaga_proto::v1::{self, measure_client::MeasureClient};
use tonic::transport::Channel;

use crate::client::{CliError, Output, SiagaConfig, status_error};
use crate::view::{MeasureState, Measurement};

/// How often a running measurement is looked at.
const POLL: Duration = Duration::from_millis(500);

/// `--window`: whole seconds, 1 s to 10 min.
pub fn parse_window(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 10s, 1m)"))?;
    if d.subsec_nanos() != 0 || d.is_zero() || d > Duration::from_secs(600) {
        return Err("whole seconds from 1s to 10m".into());
    }
    Ok(d.as_secs())
}

/// `siaga ticket measure|measurements`.
#[derive(Debug, Clone, Subcommand)]
pub enum TicketMeasureCmd {
    /// Have the OPD's agent measure the ticket's device(s) and link(s),
    /// before or after the work (Tim Teknis); waits for the figures.
    Measure {
        /// Ticket number, e.g. PJ-2026-0001.
        id: String,
        /// before or after the work.
        #[arg(long, value_parser = PossibleValuesParser::new(WirePhase::ALL.iter().map(|p| p.word()))
            .try_map(|s| s.parse::<WirePhase>()))]
        phase: WirePhase,
        /// ICMP echo requests per device (default 100).
        #[arg(long)]
        count: Option<u32>,
        /// SNMP window for the link rates, e.g. 10s (default 10s).
        #[arg(long, value_parser = parse_window)]
        window: Option<u64>,
        /// If the agent is offline, queue it to run when the agent reconnects.
        #[arg(long)]
        queue: bool,
        /// Print the measurement in proto3 JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every measurement of a ticket, oldest first.
    Measurements {
        /// Ticket number.
        id: String,
        /// Print a JSON array (the measurements in proto3 JSON).
        #[arg(long)]
        json: bool,
    },
}

/// `siaga measure DEVICE`: a measurement outside a ticket.
#[derive(Debug, Clone, Args)]
pub struct MeasureCmd {
    /// Device id.
    pub device: String,
    /// Also an inventory link of the device (its SNMP status and rates).
    #[arg(long)]
    pub link: Option<String>,
    /// ICMP echo requests (default 100).
    #[arg(long)]
    pub count: Option<u32>,
    /// SNMP window for the link rates, e.g. 10s (default 10s).
    #[arg(long, value_parser = parse_window)]
    pub window: Option<u64>,
    /// If the agent is offline, queue it to run when the agent reconnects.
    #[arg(long)]
    pub queue: bool,
    /// Print the measurement in proto3 JSON.
    #[arg(long)]
    pub json: bool,
}

/// `siaga measurement ID`: one measurement.
#[derive(Debug, Clone, Args)]
pub struct MeasurementCmd {
    /// Measurement id, e.g. M-000042.
    pub id: String,
    /// Wait until it is done, failed or expired.
    #[arg(long)]
    pub wait: bool,
    /// Print the measurement in proto3 JSON.
    #[arg(long)]
    pub json: bool,
}

impl TicketMeasureCmd {
    /// The `MeasureTicket` request of `siaga ticket measure` (`None` for
    /// `measurements`).
    pub fn request(&self) -> Option<v1::MeasureTicketRequest> {
        match self {
            TicketMeasureCmd::Measure {
                id,
                phase,
                count,
                window,
                queue,
                ..
            } => Some(v1::MeasureTicketRequest {
                ticket: id.clone(),
                phase: (*phase).into(),
                count: count.unwrap_or(0),
                window_s: window.unwrap_or(0),
                queue: *queue,
            }),
            TicketMeasureCmd::Measurements { .. } => None,
        }
    }
}

impl MeasureCmd {
    /// The `MeasureDevice` request.
    pub fn request(&self) -> v1::MeasureDeviceRequest {
        v1::MeasureDeviceRequest {
            device: self.device.clone(),
            link: self.link.clone().unwrap_or_default(),
            count: self.count.unwrap_or(0),
            window_s: self.window.unwrap_or(0),
            queue: self.queue,
        }
    }
}

fn client(ch: Channel) -> MeasureClient<Channel> {
    MeasureClient::new(ch).max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES)
}

/// The domain record of an answer, for the tables.
fn record(m: &v1::Measurement) -> Result<Measurement, CliError> {
    crate::view::measurement_back(m).map_err(|e| {
        CliError::Message(format!(
            "the collector sent an answer this siaga cannot read: {e}"
        ))
    })
}

/// Runs `siaga ticket measure|measurements`.
pub async fn ticket(
    cfg: &SiagaConfig,
    out: Output,
    cmd: &TicketMeasureCmd,
) -> Result<(), CliError> {
    let mut c = client(crate::client::channel(cfg).await?);
    let tz = cfg.zone();
    match cmd {
        TicketMeasureCmd::Measure { json, .. } => {
            let Some(r) = cmd.request() else {
                return Ok(());
            };
            let m = c
                .measure_ticket(crate::client::request(r))
                .await
                .map_err(|s| status_error(cfg, s))?
                .into_inner();
            wait(&mut c, cfg, m, *json, out, tz).await
        }
        TicketMeasureCmd::Measurements { id, json } => {
            let all = crate::client::every_page(cfg, |page_token| {
                let mut c = c.clone();
                let ticket = id.clone();
                async move {
                    let r = c
                        .list_ticket_measurements(crate::client::request(
                            v1::ListTicketMeasurementsRequest {
                                ticket,
                                page_size: 0,
                                page_token,
                            },
                        ))
                        .await?
                        .into_inner();
                    Ok((r.measurements, r.next_page_token))
                }
            })
            .await?;
            if *json {
                return print_json(&all);
            }
            let list = all.iter().map(record).collect::<Result<Vec<_>, _>>()?;
            println!("{}", list_table(&list, out, tz));
            Ok(())
        }
    }
}

/// Runs `siaga measure DEVICE`.
pub async fn device(cfg: &SiagaConfig, out: Output, cmd: &MeasureCmd) -> Result<(), CliError> {
    let mut c = client(crate::client::channel(cfg).await?);
    let m = c
        .measure_device(crate::client::request(cmd.request()))
        .await
        .map_err(|s| status_error(cfg, s))?
        .into_inner();
    wait(&mut c, cfg, m, cmd.json, out, cfg.zone()).await
}

/// Runs `siaga measurement ID`.
pub async fn show(cfg: &SiagaConfig, out: Output, cmd: &MeasurementCmd) -> Result<(), CliError> {
    let mut c = client(crate::client::channel(cfg).await?);
    let mut m = get(&mut c, cfg, &cmd.id).await?;
    if cmd.wait {
        m = follow(&mut c, cfg, m).await?;
    }
    finish(&m, cmd.json, false, out, cfg.zone())
}

async fn get(
    c: &mut MeasureClient<Channel>,
    cfg: &SiagaConfig,
    id: &str,
) -> Result<v1::Measurement, CliError> {
    Ok(
        c.get_measurement(crate::client::request(v1::GetMeasurementRequest {
            id: id.to_string(),
        }))
        .await
        .map_err(|s| status_error(cfg, s))?
        .into_inner(),
    )
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::Message(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// After a measurement was started: a queued one is shown at once with
/// how to follow it, a running one is followed until it is final.
async fn wait(
    c: &mut MeasureClient<Channel>,
    cfg: &SiagaConfig,
    m: v1::Measurement,
    json: bool,
    out: Output,
    tz: Tz,
) -> Result<(), CliError> {
    if matches!(record(&m)?.state, MeasureState::Queued { .. }) {
        return finish(&m, json, true, out, tz);
    }
    let m = follow(c, cfg, m).await?;
    finish(&m, json, false, out, tz)
}

/// Polls until `m` is final, with a progress line on a terminal.
async fn follow(
    c: &mut MeasureClient<Channel>,
    cfg: &SiagaConfig,
    mut m: v1::Measurement,
) -> Result<v1::Measurement, CliError> {
    let mut r = record(&m)?;
    let mut progress = Progress::new(&r);
    while !r.state.is_final() {
        progress.show(&r);
        tokio::time::sleep(POLL).await;
        m = match get(c, cfg, &r.id).await {
            Ok(m) => m,
            Err(e) => {
                progress.clear();
                return Err(e);
            }
        };
        r = record(&m)?;
    }
    progress.clear();
    Ok(m)
}

/// Prints the result; a failed or expired measurement is an error (exit 1).
fn finish(
    answer: &v1::Measurement,
    json: bool,
    queued_hint: bool,
    out: Output,
    tz: Tz,
) -> Result<(), CliError> {
    let m = record(answer)?;
    if json {
        print_json(answer)?;
    } else {
        println!("{}", render(&m, out, tz));
        if queued_hint {
            println!(
                "\nThe agent of OPD {} is offline; it runs when the agent reconnects. Follow it with `siaga measurement {} --wait`.",
                m.opd, m.id
            );
        }
    }
    match &m.state {
        MeasureState::Failed { error } => Err(CliError::Message(format!(
            "measurement {} failed: {error}",
            m.id
        ))),
        MeasureState::Expired => Err(CliError::Message(format!(
            "measurement {} expired: the agent of OPD {} did not reconnect in time",
            m.id, m.opd
        ))),
        _ => Ok(()),
    }
}

/// A spinner line on standard error, only when it is a terminal.
struct Progress {
    on: bool,
    started: Instant,
    frame: usize,
    about: Duration,
}

impl Progress {
    fn new(m: &Measurement) -> Self {
        let count = m.icmp_count.max(1);
        let window = Duration::from_millis(m.window_ms);
        let spacing = (window / count).clamp(Duration::from_millis(10), Duration::from_secs(1));
        Self {
            on: std::io::stderr().is_terminal(),
            started: Instant::now(),
            frame: 0,
            about: (spacing * count).max(window) + Duration::from_secs(1),
        }
    }

    fn show(&mut self, m: &Measurement) {
        if !self.on {
            return;
        }
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        self.frame += 1;
        let what = match &m.state {
            MeasureState::Queued { .. } => "queued, waiting for the agent".to_string(),
            _ => format!(
                "measuring {} ({} s of about {} s)",
                subject(m),
                self.started.elapsed().as_secs(),
                self.about.as_secs()
            ),
        };
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r\x1b[2K{} {} {what}",
            FRAMES[self.frame % FRAMES.len()],
            m.id
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.on {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

fn subject(m: &Measurement) -> String {
    let mut parts = m.devices.clone();
    parts.extend(m.links.iter().map(|l| format!("link {l}")));
    parts.join(", ")
}

fn when(t: DateTime<Utc>, tz: Tz) -> String {
    crate::client::local_time(tz, t)
}

fn state_word(s: &MeasureState, tz: Tz) -> String {
    match s {
        MeasureState::Queued { expires_at } => {
            format!("queued (expires {})", when(*expires_at, tz))
        }
        MeasureState::Running { .. } => "running".into(),
        MeasureState::Done => "done".into(),
        MeasureState::Failed { error } => format!("failed: {error}"),
        MeasureState::Expired => "expired".into(),
    }
}

fn ms(us: Option<u64>) -> String {
    us.map_or("-".into(), |v| format!("{:.2}", v as f64 / 1000.0))
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// "12.5 Mbit/s".
pub fn bps(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 1e9 => format!("{:.2} Gbit/s", v / 1e9),
        Some(v) if v >= 1e6 => format!("{:.2} Mbit/s", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1} kbit/s", v / 1e3),
        Some(v) => format!("{v:.0} bit/s"),
    }
}

/// One measurement as text: what, who, state, then a table of device
/// figures and one of link figures.
pub fn render(m: &Measurement, o: Output, tz: Tz) -> String {
    let mut out = String::new();
    let on = match (&m.ticket, m.phase) {
        (Some(t), Some(p)) => format!("ticket {t} ({})", p.as_str()),
        (Some(t), None) => format!("ticket {t}"),
        _ => "no ticket".into(),
    };
    out.push_str(&format!(
        "measurement {}  {on}  OPD {}  {}\n",
        m.id,
        m.opd,
        state_word(&m.state, tz)
    ));
    out.push_str(&format!(
        "requested by {} at {}",
        m.requested_by,
        when(m.requested_at, tz)
    ));
    if let Some(t) = m.completed_at {
        out.push_str(&format!("; finished {}", when(t, tz)));
    }
    if let Some(a) = &m.agent {
        out.push_str(&format!("; agent {a}"));
    }
    out.push_str(&format!(
        "\n{} echo requests per device; SNMP window {} s\n",
        m.icmp_count,
        m.window_ms / 1000
    ));
    if !m.device_figures.is_empty() {
        let mut t = crate::client::table(
            o,
            &[
                "device",
                "sent",
                "received",
                "loss %",
                "min ms",
                "avg ms",
                "median ms",
                "p95 ms",
                "max ms",
                "jitter ms",
            ],
        );
        for d in &m.device_figures {
            let mut device = d.device.clone();
            if let Some(e) = &d.error {
                device.push_str(&format!(" ({e})"));
            }
            t.add_row(vec![
                device,
                d.sent.to_string(),
                d.received.to_string(),
                format!("{:.1}", d.loss_pct),
                ms(d.rtt_min_us),
                ms(d.rtt_avg_us),
                ms(d.rtt_median_us),
                ms(d.rtt_p95_us),
                ms(d.rtt_max_us),
                ms(d.jitter_us),
            ]);
        }
        out.push('\n');
        out.push_str(&crate::client::show(o, &t));
        out.push('\n');
        for d in &m.device_figures {
            let part =
                |v: Option<f64>, what: &str, unit: &str| v.map(|v| format!("{what} {v:.1}{unit}"));
            let parts: Vec<String> = [
                part(d.cpu_pct, "cpu", " %"),
                part(d.mem_pct, "memory", " %"),
                part(d.temp_c, "temperature", " °C"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !parts.is_empty() {
                out.push_str(&format!("{} health: {}\n", d.device, parts.join(", ")));
            }
        }
    }
    if !m.link_figures.is_empty() {
        let mut t = crate::client::table(
            o,
            &[
                "link",
                "device",
                "interface",
                "oper",
                "admin",
                "speed Mbit/s",
                "in",
                "out",
                "util in %",
                "util out %",
                "errors/s",
                "discards/s",
            ],
        );
        for l in &m.link_figures {
            if let Some(e) = &l.error {
                t.add_row(vec![l.name.clone(), l.device.clone(), format!("({e})")]);
                continue;
            }
            t.add_row(vec![
                l.name.clone(),
                l.device.clone(),
                l.interface.clone(),
                l.oper_status.clone(),
                l.admin_status.clone(),
                num(l.speed_mbps, 0),
                bps(l.in_bps),
                bps(l.out_bps),
                num(l.util_in_pct, 2),
                num(l.util_out_pct, 2),
                num(l.errors_per_s, 2),
                num(l.discards_per_s, 2),
            ]);
        }
        out.push('\n');
        out.push_str(&crate::client::show(o, &t));
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// A ticket's measurements, one row each.
pub fn list_table(list: &[Measurement], o: Output, tz: Tz) -> String {
    if list.is_empty() {
        return "no measurements".into();
    }
    let mut t = crate::client::table(
        o,
        &[
            "id",
            "phase",
            "state",
            "requested by",
            "requested at",
            "loss %",
            "RTT median ms",
            "links",
        ],
    );
    for m in list {
        let loss: Vec<String> = m
            .device_figures
            .iter()
            .map(|d| format!("{} {:.1}", d.device, d.loss_pct))
            .collect();
        let rtt: Vec<String> = m
            .device_figures
            .iter()
            .map(|d| format!("{} {}", d.device, ms(d.rtt_median_us)))
            .collect();
        let links: Vec<String> = m
            .link_figures
            .iter()
            .map(|l| match &l.error {
                Some(e) => format!("{} ({e})", l.name),
                None => format!("{} {}", l.name, l.oper_status),
            })
            .collect();
        t.add_row(vec![
            m.id.clone(),
            m.phase.map_or("-".into(), |p| p.as_str().to_string()),
            state_word(&m.state, tz),
            m.requested_by.clone(),
            when(m.requested_at, tz),
            loss.join(", "),
            rtt.join(", "),
            links.join(", "),
        ]);
    }
    crate::client::show(o, &t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{DeviceFigures, LinkFigures, Phase};
    use test_case::test_case;

    #[test_case("10s", Ok(10) ; "seconds")]
    #[test_case("2m", Ok(120) ; "minutes")]
    #[test_case("500ms", Err("whole seconds") ; "fraction")]
    #[test_case("0s", Err("whole seconds") ; "zero")]
    #[test_case("11m", Err("whole seconds") ; "too long")]
    #[test_case("soon", Err("e.g. 10s") ; "not a duration")]
    fn windows(text: &str, want: Result<u64, &str>) {
        match (parse_window(text), want) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(e), Err(w)) => assert!(e.contains(w), "{e}"),
            (a, b) => panic!("{a:?} vs {b:?}"),
        }
    }

    #[test]
    fn the_table_shows_every_figure() {
        let m = Measurement {
            id: "M-000007".into(),
            ticket: Some("PJ-2026-0001".into()),
            phase: Some(Phase::Before),
            opd: "dinkes".into(),
            devices: vec!["dinkes-sw1".into()],
            links: vec!["ke-puskesmas".into()],
            icmp_count: 100,
            window_ms: 10_000,
            requested_by: "teknisi".into(),
            requested_at: "2026-12-02T10:00:00Z".parse().expect("time"),
            completed_at: Some("2026-12-02T10:00:12Z".parse().expect("time")),
            agent: Some("dinkes-agent".into()),
            state: MeasureState::Done,
            device_figures: vec![DeviceFigures {
                device: "dinkes-sw1".into(),
                sent: 100,
                received: 52,
                loss_pct: 48.0,
                rtt_min_us: Some(40),
                rtt_avg_us: Some(75),
                rtt_median_us: Some(70),
                rtt_p95_us: Some(130),
                rtt_max_us: Some(210),
                jitter_us: Some(22),
                cpu_pct: Some(97.0),
                mem_pct: Some(41.5),
                ..Default::default()
            }],
            link_figures: vec![LinkFigures {
                name: "ke-puskesmas".into(),
                device: "dinkes-sw1".into(),
                interface: "port2".into(),
                oper_status: "up".into(),
                admin_status: "up".into(),
                speed_mbps: Some(10_000.0),
                in_bps: Some(12_500.0),
                out_bps: Some(0.0),
                util_in_pct: Some(0.0),
                ..Default::default()
            }],
        };
        let text = render(&m, Output::Table, chrono_tz::Asia::Jakarta);
        for words in [
            "measurement M-000007  ticket PJ-2026-0001 (before)  OPD dinkes  done",
            "requested by teknisi at 2026-12-02 17:00:00 WIB; finished 2026-12-02 17:00:12 WIB; agent dinkes-agent",
            "48.0",
            "0.13",
            "ke-puskesmas",
            "12.5 kbit/s",
            "10000",
            "dinkes-sw1 health: cpu 97.0 %, memory 41.5 %\n",
        ] {
            assert!(text.contains(words), "{words:?} missing from:\n{text}");
        }
        let list = list_table(&[m], Output::Table, chrono_tz::Asia::Jakarta);
        assert!(list.contains("dinkes-sw1 48.0"), "{list}");
        assert!(list.contains("ke-puskesmas up"), "{list}");
    }
}
