//! What every `siaga` command shares: the channel to the collector and its
//! errors as sentences, paging, documents, times and tables as `-o` asks.

use std::path::Path;
use std::time::Duration;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use siaga_proto::client::ClientError;
use siaga_proto::config::ConfigError;
use siaga_proto::time::rfc3339;
use siaga_proto::v1::admin_client::AdminClient;
use siaga_proto::v1::{self};
use tonic::transport::Channel;

pub use siaga_proto::client::{SiagaConfig, config_path};

/// A time as people read it: local to the province, with the zone's
/// abbreviation ("2026-12-07 16:00:05 WIB").
pub fn local_time(tz: chrono_tz::Tz, t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// A time from an answer (RFC 3339 text) as people read it, local with
/// the zone's abbreviation; anything else (null, "-") as text.
pub fn local_text(v: &serde_json::Value, tz: chrono_tz::Tz) -> String {
    match v.as_str().map(chrono::DateTime::parse_from_rfc3339) {
        Some(Ok(t)) => local_time(tz, t.with_timezone(&chrono::Utc)),
        Some(Err(_)) => v.as_str().unwrap_or_default().to_string(),
        None if v.is_null() => String::new(),
        None => v.to_string(),
    }
}

/// Something the user should read: one line, then a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A bad command line that clap cannot see (flags that do not go
    /// together): exit 64 like clap's own.
    #[error("{0}")]
    Usage(String),
    /// Another problem, already phrased for the user.
    #[error("{0}")]
    Message(String),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Config(c) => CliError::Config(c),
            ClientError::Message(m) => CliError::Message(m),
        }
    }
}

/// Connects to the admin API with the user's certificate.
pub async fn connect(cfg: &SiagaConfig) -> Result<AdminClient<Channel>, CliError> {
    Ok(siaga_proto::client::connect(cfg).await?)
}

/// A TLS channel to the collector with the user's certificate, for the
/// typed clients (`XClient::new(channel)`). Streams (history, following,
/// watching) have no overall deadline; a unary call sets its own
/// ([`request`]).
pub async fn channel(cfg: &SiagaConfig) -> Result<Channel, CliError> {
    Ok(siaga_proto::client::channel(cfg).await?)
}

/// A gRPC status of a call made with `cfg` as one line.
pub fn status_error(cfg: &SiagaConfig, s: tonic::Status) -> CliError {
    siaga_proto::client::status_error(cfg, s).into()
}

/// Every page of a listing: `page(token)` asks for one page and answers
/// its items and the next page's token (empty after the last).
pub async fn every_page<T, F, Fut>(cfg: &SiagaConfig, mut page: F) -> Result<Vec<T>, CliError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await.map_err(|s| status_error(cfg, s))?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}

/// Receives a streamed document and writes it to `out` (replacing a file
/// there), or, without `out`, gives its text for standard output. With
/// `json`, what was received as one JSON object: the document's
/// description (proto3 JSON), `out` when written, `text` when not.
pub async fn save_document(
    cfg: &SiagaConfig,
    answer: Result<tonic::Response<tonic::Streaming<v1::DocumentChunk>>, tonic::Status>,
    out: Option<&Path>,
    what: &str,
    json: bool,
) -> Result<(v1::DocumentInfo, String), CliError> {
    use siaga_proto::document::{ReceiveError, receive};
    let stream = answer.map_err(|s| status_error(cfg, s))?.into_inner();
    let doc = receive(stream).await.map_err(|e| match e {
        ReceiveError::Status(s) => status_error(cfg, s),
        ReceiveError::Bad(m) => CliError::Message(format!("{what}: {m}")),
    })?;
    let existed = out.is_some_and(Path::exists);
    if let Some(p) = out {
        write_file(p, &doc.bytes)
            .map_err(|e| CliError::Message(format!("{}: cannot write: {e}", p.display())))?;
    }
    if json {
        let mut v =
            serde_json::to_value(&doc.info).map_err(|e| CliError::Message(e.to_string()))?;
        match out {
            Some(p) => v["out"] = p.display().to_string().into(),
            None => v["text"] = String::from_utf8_lossy(&doc.bytes).into_owned().into(),
        }
        let text =
            serde_json::to_string_pretty(&v).map_err(|e| CliError::Message(e.to_string()))?;
        return Ok((doc.info, text));
    }
    let Some(p) = out else {
        let text = String::from_utf8_lossy(&doc.bytes).trim_end().to_string();
        return Ok((doc.info, text));
    };
    let said = format!(
        "wrote {what} to {}{}: {} bytes, sha256 {}",
        p.display(),
        if existed {
            " (replaced the file there)"
        } else {
            ""
        },
        doc.bytes.len(),
        doc.info.sha256
    );
    Ok((doc.info, said))
}

/// Writes `data` to `path` (mode 0644): a new file under a random name
/// beside it, renamed into place, so a reader sees the old file or the new
/// one, never half; a rename replaces a symlink there, it does not write
/// through it. A regular file it replaces keeps its owner and group (as far
/// as the user may give them) and is never made more readable than it was.
fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut mode = 0o644;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    if let Ok(old) = std::fs::symlink_metadata(path)
        && old.file_type().is_file()
    {
        mode &= old.mode() & 0o777;
        // Not permitted to an ordinary user for another's file: then the
        // new file is the user's, with the narrower mode.
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(old.uid()), Some(old.gid()));
    }
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Whether a stream that ended with `s` is worth reconnecting: the
/// collector went away or restarted, not a refusal of the caller.
pub fn is_reconnectable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
    )
}

/// A unary request with the CLI's deadline of a minute.
pub fn request<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(Duration::from_secs(60));
    r
}

fn ts_or_null(us: i64) -> Value {
    if us <= 0 {
        Value::Null
    } else {
        json!(rfc3339(us))
    }
}

/// `siaga agents --json` objects.
pub fn agents_json(agents: &[v1::AgentInfo]) -> Value {
    Value::Array(
        agents
            .iter()
            .map(|a| {
                json!({
                    "id": (!a.id.is_empty()).then_some(&a.id), "opd": a.opd, "version": a.version,
                    "connected": a.connected, "status": a.status().is_set().then(|| a.status().word()),
                    "clock_offset_ms": a.clock_offset_us.map(|us| us as f64 / 1000.0),
                    "future_refused": a.future_refused,
                    "last_seen": ts_or_null(a.last_seen_us), "spool_depth": a.spool_depth,
                    "dropped": a.dropped, "refused": a.refused, "cpu_pct": a.cpu_pct,
                    "mem_used_pct": a.mem_used_pct, "disk_used_pct": a.disk_used_pct, "hostname": a.hostname,
                    "cert_not_after": ts_or_null(a.cert_not_after_us),
                    "spool": spool_condition(a.spool_condition), "spool_error": a.spool_error,
                    "samples_cut": a.samples_cut, "undeliverable": a.samples_undeliverable,
                })
            })
            .collect(),
    )
}

/// `siaga devices --json` objects.
pub fn devices_json(devices: &[v1::DeviceInfo]) -> Value {
    Value::Array(
        devices
            .iter()
            .map(|d| {
                json!({
                    "id": d.id, "opd": d.opd, "kind": d.kind, "address": d.address, "state": d.state().word(),
                    "reading_age_s": d.reading_age_us.map(|us| us / 1_000_000),
                    "last_sample_at": ts_or_null(d.last_sample_at_us), "rtt_ms": d.rtt_ms,
                    "loss_pct": d.loss_pct, "jitter_ms": d.jitter_ms,
                })
            })
            .collect(),
    )
}

/// How `siaga` prints its tables (`-o`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Boxed, long columns wrapped to fit the terminal's width (or
    /// `COLUMNS` when set).
    #[default]
    Table,
    /// Boxed, every cell whole on one line, however wide.
    Wide,
    /// Tab-separated, a header line then one line per row, no borders and
    /// nothing wrapped: for `cut`, `awk` and spreadsheets.
    Plain,
    /// The answer as JSON, as the command's `--json` gives it.
    Json,
}

/// Columns whose every cell is at most this wide are never wrapped (ids,
/// states, times): only the long text columns give way to the width.
const KEEP_WHOLE: u16 = 24;

/// An empty table with `header`, in the CLI's style: fitted to the
/// terminal's width unless `-o wide`.
pub fn table(o: Output, header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    if o == Output::Table {
        t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        if let Some(cols) = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<u16>().ok())
            .filter(|c| *c >= 20)
        {
            t.set_width(cols);
        }
    }
    t
}

/// A table of `rows` under `header` as `-o` asks: the default table keeps
/// only the columns named in `narrow` (what a person scans for, to fit an
/// 80-column terminal); `-o wide` and `-o plain` have every column.
pub fn fitted(o: Output, header: &[&str], narrow: &[&str], rows: Vec<Vec<String>>) -> String {
    let keep: Vec<usize> = if o == Output::Table {
        (0..header.len())
            .filter(|i| narrow.contains(&header[*i]))
            .collect()
    } else {
        (0..header.len()).collect()
    };
    let pick = |r: &[String]| -> Vec<String> {
        keep.iter()
            .map(|i| r.get(*i).cloned().unwrap_or_default())
            .collect()
    };
    let mut t = table(o, &keep.iter().map(|i| header[*i]).collect::<Vec<_>>());
    for r in rows {
        t.add_row(pick(&r));
    }
    show(o, &t)
}

/// A table as `-o` asks: drawn, or tab-separated (`plain`; tabs and line
/// breaks inside a cell become spaces).
pub fn show(o: Output, t: &Table) -> String {
    if o == Output::Table {
        let mut t = t.clone();
        let widths = t.column_max_content_widths();
        // Borders and padding take 3 columns per column and one more; a
        // column that wraps needs room for a word or so.
        let budget = t.width().map_or(usize::MAX, usize::from);
        let mut used = 3 * widths.len() + 1;
        let mut order: Vec<usize> = (0..widths.len()).collect();
        order.sort_by_key(|i| widths[*i]);
        let wrapping = widths.iter().filter(|w| **w > KEEP_WHOLE).count();
        used += 8 * wrapping;
        for i in order {
            let w = usize::from(widths[i]);
            if widths[i] > KEEP_WHOLE {
                continue;
            }
            // Short columns stay whole while they fit, narrowest first.
            if used + w > budget {
                used += 8;
                continue;
            }
            used += w;
            if let Some(c) = t.column_mut(i) {
                c.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
            }
        }
        return t.to_string();
    }
    if o != Output::Plain {
        return t.to_string();
    }
    let clean = |c: &comfy_table::Cell| c.content().replace(['\t', '\n', '\r'], " ");
    let mut lines = Vec::new();
    if let Some(h) = t.header() {
        lines.push(h.cell_iter().map(clean).collect::<Vec<_>>().join("\t"));
    }
    for r in t.row_iter() {
        lines.push(r.cell_iter().map(clean).collect::<Vec<_>>().join("\t"));
    }
    lines.join("\n")
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn ago(us: i64) -> String {
    if us <= 0 {
        return "never".into();
    }
    let secs = (chrono::Utc::now().timestamp_micros() - us).max(0) / 1_000_000;
    let d = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    format!("{} ago", humantime::format_duration(d))
}

/// Days before its certificate expires from which `siaga agents` warns.
pub const CERT_WARNING_DAYS: i64 = 30;

/// One line per agent whose certificate expires within
/// [`CERT_WARNING_DAYS`] of `now_us` (or has expired).
pub fn cert_warnings(agents: &[v1::AgentInfo], now_us: i64) -> Vec<String> {
    let day_us = 86_400_000_000;
    agents
        .iter()
        .filter(|a| a.cert_not_after_us > 0 && a.cert_not_after_us - now_us <= CERT_WARNING_DAYS * day_us)
        .map(|a| {
            let date = chrono::DateTime::from_timestamp_micros(a.cert_not_after_us)
                .map_or_else(String::new, |t| t.format("%Y-%m-%d").to_string());
            let days = (a.cert_not_after_us - now_us).div_euclid(day_us);
            let when = if days < 0 {
                format!("expired on {date}")
            } else {
                format!("expires on {date} (in {days} days)")
            };
            format!(
                "warning: the certificate of agent {} {when}: renew it with `siaga-collector renew --agent {} --dir DIR --out OUT`",
                a.id, a.id
            )
        })
        .collect()
}

/// An agent's clock offset as people read it: "+1.250 s" means the
/// collector's clock is ahead of the agent's.
fn clock_offset(us: i64) -> String {
    format!("{:+.3} s", us as f64 / 1e6)
}

/// Microseconds as a short duration in whole seconds ("2m 10s").
/// sysUpTime (hundredths of a second; a number or, in proto3 JSON, a
/// decimal string) as people read it: "3d 4h", "5h 12m", "42m", "-".
pub fn uptime_text(v: &Value) -> String {
    let cs = match v {
        Value::String(s) => s.parse::<u64>().ok(),
        other => other.as_u64(),
    };
    let Some(cs) = cs else {
        return "-".into();
    };
    let m = cs / 6_000;
    let (d, h, m) = (m / 1_440, m / 60 % 24, m % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn secs_text(us: i64) -> String {
    let secs = u64::try_from(us / 1_000_000).unwrap_or(0);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// How `siaga agents` names an agent's spool condition.
pub fn spool_condition(c: i32) -> &'static str {
    match v1::SpoolCondition::try_from(c) {
        Ok(v1::SpoolCondition::Ok) => "ok",
        Ok(v1::SpoolCondition::DiskFull) => "disk full",
        Ok(v1::SpoolCondition::WriteError) => "write error",
        // An agent from before the condition was reported.
        Ok(v1::SpoolCondition::Unspecified) | Err(_) => "unknown",
    }
}

/// Human table of agents.
pub fn agents_table(o: Output, agents: &[v1::AgentInfo]) -> String {
    let header = [
        "agent",
        "opd",
        "version",
        "status",
        "last seen",
        "clock offset",
        "spool",
        "dropped",
        "refused",
        "cpu %",
        "mem %",
        "disk %",
        "host",
    ];
    let mut rows = Vec::new();
    for a in agents {
        let status = if a.status().is_set() {
            a.status().label()
        } else if a.connected {
            "connected"
        } else {
            "disconnected"
        }
        .to_string();
        rows.push(vec![
            if a.id.is_empty() {
                "-".into()
            } else {
                a.id.clone()
            },
            a.opd.clone(),
            a.version.clone(),
            status,
            ago(a.last_seen_us),
            a.clock_offset_us.map_or("-".into(), clock_offset),
            match v1::SpoolCondition::try_from(a.spool_condition) {
                Ok(v1::SpoolCondition::DiskFull | v1::SpoolCondition::WriteError) => {
                    format!("{} ({})", a.spool_depth, spool_condition(a.spool_condition))
                }
                _ => a.spool_depth.to_string(),
            },
            a.dropped.to_string(),
            // Refused by the collector (also as stamped in the future), and
            // given up by the agent after the collector refused them alone.
            (a.refused + a.future_refused + a.samples_undeliverable).to_string(),
            format!("{:.1}", a.cpu_pct),
            format!("{:.1}", a.mem_used_pct),
            format!("{:.1}", a.disk_used_pct),
            a.hostname.clone(),
        ]);
    }
    let narrow = [
        "agent",
        "opd",
        "status",
        "last seen",
        "clock offset",
        "spool",
        "refused",
    ];
    fitted(o, &header, &narrow, rows)
}

/// Human table of devices.
pub fn devices_table(o: Output, devices: &[v1::DeviceInfo]) -> String {
    let header = [
        "device",
        "opd",
        "kind",
        "address",
        "state",
        "last sample",
        "rtt ms",
        "loss %",
        "jitter ms",
    ];
    let mut rows = Vec::new();
    for d in devices {
        rows.push(vec![
            d.id.clone(),
            d.opd.clone(),
            d.kind.clone(),
            d.address.clone(),
            match (d.state(), d.reading_age_us) {
                (v1::device_info::State::Stale, Some(age)) => {
                    format!("stale ({} old)", secs_text(age))
                }
                (s, _) => s.to_string(),
            },
            ago(d.last_sample_at_us),
            num(d.rtt_ms, 2),
            num(d.loss_pct, 1),
            num(d.jitter_ms, 2),
        ]);
    }
    let narrow = ["device", "opd", "state", "last sample", "rtt ms", "loss %"];
    fitted(o, &header, &narrow, rows)
}

/// Human table of history samples (already JSON objects): the agent's time
/// of each sample and the collector's time of its arrival, local in `tz`.
pub fn history_table(o: Output, samples: &[Value], tz: chrono_tz::Tz) -> String {
    let header = [
        "time",
        "received",
        "kind",
        "sent",
        "recv",
        "loss %",
        "rtt avg ms",
        "rtt max ms",
        "jitter ms",
        "detail",
    ];
    let mut rows = Vec::new();
    let f = |v: &Value, k: &str, d: usize| {
        v.get(k)
            .and_then(Value::as_f64)
            .map_or("-".into(), |x| format!("{x:.d$}"))
    };
    let s = |v: &Value, k: &str| {
        v.get(k).map_or(String::new(), |x| {
            x.as_str().map_or(x.to_string(), str::to_string)
        })
    };
    for v in samples {
        let kind = s(v, "kind");
        let detail = match kind.as_str() {
            "snmp" => format!("{} {}", s(v, "status"), s(v, "error")),
            "event" => format!("{} {} {}", s(v, "event"), s(v, "link"), s(v, "detail")),
            _ => s(v, "error"),
        };
        let received = match v.get("received_at") {
            Some(r) if r.is_string() => local_text(r, tz),
            _ => "-".into(),
        };
        rows.push(vec![
            v.get("ts").map_or(String::new(), |t| local_text(t, tz)),
            received,
            kind,
            s(v, "sent"),
            s(v, "received"),
            f(v, "loss_pct", 1),
            f(v, "rtt_avg_ms", 2),
            f(v, "rtt_max_ms", 2),
            f(v, "jitter_ms", 2),
            detail.trim().to_string(),
        ]);
    }
    let narrow = ["time", "kind", "loss %", "rtt avg ms", "detail"];
    fitted(o, &header, &narrow, rows)
}

/// A terminal sparkline of `values` (`None` is a gap, drawn as a space),
/// scaled from `lo` (or the smallest value) to the largest value.
pub fn sparkline(values: &[Option<f64>], lo: Option<f64>) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let finite = || values.iter().flatten().copied().filter(|v| v.is_finite());
    let min = lo.unwrap_or_else(|| finite().fold(f64::INFINITY, f64::min));
    let max = finite().fold(f64::NEG_INFINITY, f64::max);
    values
        .iter()
        .map(|v| match v {
            Some(v) if v.is_finite() => {
                let span = max - min;
                if span <= 0.0 {
                    BARS[0]
                } else {
                    let i = ((v - min) / span * 7.0).round().clamp(0.0, 7.0);
                    BARS[i as usize]
                }
            }
            _ => ' ',
        })
        .collect()
}

/// At most `width` values: consecutive points are averaged into buckets.
fn squeeze(values: &[Option<f64>], width: usize) -> Vec<Option<f64>> {
    if values.len() <= width || width == 0 {
        return values.to_vec();
    }
    (0..width)
        .map(|b| {
            let a = b * values.len() / width;
            let z = ((b + 1) * values.len() / width).max(a + 1);
            let xs: Vec<f64> = values[a..z].iter().flatten().copied().collect();
            if xs.is_empty() {
                None
            } else {
                Some(xs.iter().sum::<f64>() / xs.len() as f64)
            }
        })
        .collect()
}

fn jstr(v: &Value, k: &str) -> String {
    match v.get(k) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
    }
}

fn jnum(v: &Value, k: &str, digits: usize) -> String {
    num(v.get(k).and_then(Value::as_f64), digits)
}

fn bps(v: &Value, k: &str) -> String {
    match v.get(k).and_then(Value::as_f64) {
        None => "-".into(),
        Some(x) if x >= 1e9 => format!("{:.2} G", x / 1e9),
        Some(x) if x >= 1e6 => format!("{:.2} M", x / 1e6),
        Some(x) if x >= 1e3 => format!("{:.1} k", x / 1e3),
        Some(x) => format!("{x:.0}"),
    }
}

/// Human table of `links.list`.
/// Times local in `tz`.
pub fn links_table(o: Output, links: &Value, tz: chrono_tz::Tz) -> Result<String, String> {
    let rows = links
        .as_array()
        .ok_or("collector sent links that are not a list")?;
    let header = [
        "device",
        "interface",
        "link",
        "oper",
        "admin",
        "speed Mbit/s",
        "in b/s",
        "out b/s",
        "util in %",
        "util out %",
        "errors/s",
        "last sample",
    ];
    let mut out = Vec::new();
    for l in rows {
        out.push(vec![
            jstr(l, "device"),
            jstr(l, "interface"),
            jstr(l, "name"),
            jstr(l, "oper_status"),
            jstr(l, "admin_status"),
            jnum(l, "speed_mbps", 0),
            bps(l, "in_bps"),
            bps(l, "out_bps"),
            jnum(l, "util_in_pct", 1),
            jnum(l, "util_out_pct", 1),
            jnum(l, "errors_per_s", 2),
            l.get("last_sample_at")
                .map_or("-".into(), |t| local_text(t, tz)),
        ]);
    }
    let narrow = [
        "device",
        "link",
        "oper",
        "util in %",
        "util out %",
        "errors/s",
        "last sample",
    ];
    Ok(fitted(o, &header, &narrow, out))
}

/// What the agent cut, left out or refused for a device, when anything:
/// strings cut to 255 octets, interfaces beyond its cap, forged answers
/// and refused or storm-dropped traps.
fn snmp_bounds_line(d: &Value) -> String {
    let n = |k: &str| d.get(k).and_then(Value::as_u64).unwrap_or(0);
    let truncated_ifs = d
        .get("interfaces")
        .and_then(Value::as_array)
        .map_or(0, |l| {
            l.iter()
                .filter(|i| i.get("truncated").and_then(Value::as_bool) == Some(true))
                .count()
        });
    let mut parts = Vec::new();
    if d.get("sys_truncated").and_then(Value::as_bool) == Some(true) {
        parts.push("sysDescr/sysName cut to 255 octets".to_string());
    }
    if truncated_ifs > 0 {
        parts.push(format!("{truncated_ifs} interface names cut to 255 octets"));
    }
    for (key, what) in [
        (
            "interfaces_omitted",
            "interfaces beyond the agent's cap, not polled",
        ),
        ("snmp_forged_answers", "forged SNMP answers dropped"),
        (
            "traps_refused",
            "traps refused (not authenticated as this device)",
        ),
        ("traps_suppressed", "traps dropped in trap storms"),
    ] {
        if n(key) > 0 {
            parts.push(format!("{} {what}", n(key)));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("snmp: {}\n", parts.join("; "))
    }
}

/// The device's own CPU, memory and temperature, with the MIB each came
/// from, and why a detected MIB gave no reading; empty when none is known.
fn health_line(d: &Value) -> String {
    let Some(h) = d.get("health").filter(|h| h.is_object()) else {
        return String::new();
    };
    let num = |k: &str| h.get(k).and_then(Value::as_f64);
    let src = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or_default();
    let mut parts = Vec::new();
    for (key, what, unit, source) in [
        ("cpu_pct", "cpu", " %", "cpu_source"),
        ("mem_pct", "memory", " %", "mem_source"),
        ("temp_c", "temperature", " °C", "temp_source"),
    ] {
        let Some(v) = num(key) else {
            parts.push(format!("{what} -"));
            continue;
        };
        let mut s = format!("{what} {v:.1}{unit}");
        let threshold = num("temp_threshold_c").filter(|_| key == "temp_c");
        match threshold {
            Some(t) => s += &format!(" (limit {t:.0}{unit}, {})", src(source)),
            None => s += &format!(" ({})", src(source)),
        }
        parts.push(s);
    }
    if let Some(l) = num("load1") {
        parts.push(format!("load {l:.2}"));
    }
    let mut out = format!("health  {}\n", parts.join("  "));
    if let Some(p) = h.get("problems").and_then(Value::as_array) {
        for p in p.iter().filter_map(Value::as_str) {
            out += &format!("health problem: {p}\n");
        }
    }
    out
}

/// Width of the sparklines of `siaga device`.
const SPARK_WIDTH: usize = 60;

/// Human view of `device.show`: a header, the RTT and loss sparklines, the
/// interfaces and the recent events.
/// Times local in `tz`.
pub fn device_view(o: Output, d: &Value, tz: chrono_tz::Tz) -> Result<String, String> {
    let empty = Vec::new();
    let list = |k: &str| d.get(k).and_then(Value::as_array).unwrap_or(&empty);
    let mut out = format!(
        "{} ({}) {}  opd {}  kind {}  state {}\n",
        jstr(d, "id"),
        jstr(d, "name"),
        jstr(d, "address"),
        jstr(d, "opd"),
        jstr(d, "kind"),
        match (
            jstr(d, "state").as_str(),
            d.get("reading_age_s").and_then(Value::as_i64),
        ) {
            ("stale", Some(age)) =>
                format!("stale (newest reading {} old)", secs_text(age * 1_000_000)),
            (s, _) => s.to_string(),
        },
    );
    out += &format!(
        "snmp {}  sysName {}  uptime {}  last poll {}\n",
        jstr(d, "snmp_status"),
        jstr(d, "sys_name"),
        uptime_text(&d["sys_uptime_cs"]),
        d.get("last_snmp_at")
            .map_or("-".into(), |t| local_text(t, tz)),
    );
    if let Some(e) = d.get("snmp_error").and_then(Value::as_str) {
        out += &format!("snmp error: {e}\n");
    }
    out += &snmp_bounds_line(d);
    out += &health_line(d);
    if let Some(n) = d
        .get("traps_not_confirmed")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
    {
        out += &format!("linkDown traps not confirmed by polling: {n}\n");
    }
    let history = list("history");
    let series = |k: &str| -> Vec<Option<f64>> {
        history
            .iter()
            .map(|p| p.get(k).and_then(Value::as_f64))
            .collect()
    };
    let rtt = series("rtt_ms");
    let loss = series("loss_pct");
    let range = |xs: &[Option<f64>]| {
        let v: Vec<f64> = xs.iter().flatten().copied().collect();
        if v.is_empty() {
            "no data".to_string()
        } else {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.2} … {hi:.2}")
        }
    };
    out += &format!(
        "\nsince {} ({} probes)\nrtt ms  {}  {}\nloss %  {}  {}\n",
        d.get("since").map_or("-".into(), |t| local_text(t, tz)),
        history.len(),
        sparkline(&squeeze(&rtt, SPARK_WIDTH), None),
        range(&rtt),
        sparkline(&squeeze(&loss, SPARK_WIDTH), Some(0.0)),
        range(&loss),
    );
    let ifs = list("interfaces");
    if !ifs.is_empty() {
        let header = [
            "ifIndex",
            "interface",
            "alias",
            "link",
            "oper",
            "admin",
            "speed Mbit/s",
            "in b/s",
            "out b/s",
            "util in %",
            "util out %",
            "errors/s",
        ];
        let mut rows = Vec::new();
        for i in ifs {
            let link = i.get("link").and_then(Value::as_str).unwrap_or_default();
            rows.push(vec![
                jstr(i, "if_index"),
                jstr(i, "if_name"),
                jstr(i, "if_alias"),
                if link.is_empty() {
                    "-".into()
                } else {
                    link.to_string()
                },
                jstr(i, "oper_status"),
                jstr(i, "admin_status"),
                jnum(i, "speed_mbps", 0),
                bps(i, "in_bps"),
                bps(i, "out_bps"),
                jnum(i, "util_in_pct", 1),
                jnum(i, "util_out_pct", 1),
                jnum(i, "errors_per_s", 2),
            ]);
        }
        let narrow = [
            "ifIndex",
            "interface",
            "link",
            "oper",
            "util in %",
            "util out %",
            "errors/s",
        ];
        out += &format!("\n{}\n", fitted(o, &header, &narrow, rows));
    }
    let events = list("events");
    if !events.is_empty() {
        out += "\nevents\n";
        for e in events {
            out += &format!(
                "  {}  {} {} {}\n",
                e.get("ts").map_or("-".into(), |t| local_text(t, tz)),
                jstr(e, "event"),
                jstr(e, "link"),
                e.get("detail").and_then(Value::as_str).unwrap_or_default()
            );
        }
    }
    Ok(out.trim_end().to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case(&[Some(1.0), Some(8.0)], None, "▁█"; "min to max")]
    #[test_case(&[Some(0.0), Some(50.0), Some(100.0)], Some(0.0), "▁▅█"; "loss from zero")]
    #[test_case(&[Some(3.0), None, Some(3.0)], None, "▁ ▁"; "flat with a gap")]
    #[test_case(&[Some(0.0), Some(0.0)], Some(0.0), "▁▁"; "no loss")]
    #[test_case(&[], None, ""; "empty")]
    fn sparkline_scales(values: &[Option<f64>], lo: Option<f64>, want: &str) {
        assert_eq!(sparkline(values, lo), want);
    }

    const DAY: i64 = 86_400_000_000;

    #[test_case(0, None; "not connected since start")]
    #[test_case(400 * DAY, None; "far off")]
    #[test_case(31 * DAY, None; "31 days")]
    #[test_case(30 * DAY, Some("(in 30 days)"); "30 days")]
    #[test_case(3 * DAY + 5, Some("(in 3 days)"); "3 days")]
    #[test_case(-DAY, Some("expired on"); "expired")]
    fn agent_certificates_near_their_end_are_warned_of(left: i64, want: Option<&str>) {
        let now = 1_800_000_000_000_000;
        let a = v1::AgentInfo {
            id: "dinkes-agent".into(),
            cert_not_after_us: if left == 0 { 0 } else { now + left },
            ..Default::default()
        };
        let w = cert_warnings(&[a], now);
        match want {
            None => assert!(w.is_empty(), "{w:?}"),
            Some(s) => {
                assert_eq!(w.len(), 1);
                assert!(
                    w[0].contains(s) && w[0].contains("renew --agent dinkes-agent"),
                    "{w:?}"
                );
            }
        }
    }

    #[test_case("https://127.0.0.1:7443", None; "https")]
    #[test_case("https://collector.example", None; "https without port")]
    #[test_case("http://127.0.0.1:7443",
        Some("siaga.toml:2: collector: \"http://127.0.0.1:7443\" is not an https:// URL; the collector speaks TLS only: write collector = \"https://127.0.0.1:7443\""); "plain http")]
    #[test_case("127.0.0.1:7443",
        Some("siaga.toml:2: collector: \"127.0.0.1:7443\" is not an https:// URL"); "no scheme")]
    #[test_case("grpc://h:1", Some("write collector = \"https://h:1\""); "other scheme")]
    #[test_case("https://", Some("siaga.toml:2: collector: \"https://\" has no host"); "no host")]
    fn only_https_collectors(url: &str, refused: Option<&str>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("siaga.toml");
        std::fs::write(
            &path,
            format!("user = \"budi\"\ncollector = \"{url}\"\n[tls]\nca = \"ca.pem\"\ncert = \"user.pem\"\nkey = \"user.key\"\n"),
        )
        .unwrap();
        let got = SiagaConfig::load(&path).map(|_| ()).map_err(|e| {
            e.to_string()
                .replace(&format!("{}", path.display()), "siaga.toml")
        });
        match refused {
            None => assert_eq!(got, Ok(())),
            Some(words) => {
                let err = got.unwrap_err();
                assert!(err.contains(words), "{err}");
            }
        }
    }

    #[test]
    fn squeeze_averages_buckets() {
        let v: Vec<Option<f64>> = (0..10).map(|i| Some(f64::from(i))).collect();
        assert_eq!(
            squeeze(&v, 5),
            vec![Some(0.5), Some(2.5), Some(4.5), Some(6.5), Some(8.5)]
        );
        assert_eq!(squeeze(&v[..3], 5).len(), 3);
        assert_eq!(
            squeeze(&[None, None, Some(2.0), Some(4.0)], 2),
            vec![None, Some(3.0)]
        );
    }

    /// The widest line of `t`, in characters.
    fn widest(t: &str) -> usize {
        t.lines().map(|l| l.chars().count()).max().unwrap_or(0)
    }

    #[test]
    fn the_default_tables_keep_what_people_scan_for_and_wide_has_every_column() {
        let links = json!([{
            "device": "dinkes-core-switch-01", "interface": "GigabitEthernet1/0/48",
            "name": "Uplink ke Diskominfo lantai 3", "oper_status": "up",
            "admin_status": "up", "speed_mbps": 1000.0, "in_bps": 12345678.0,
            "out_bps": 2345678.0, "util_in_pct": 1.2, "util_out_pct": 0.2,
            "errors_per_s": 0.0, "last_sample_at": "2026-12-05T03:00:00.000Z",
        }]);
        let agents = [v1::AgentInfo {
            id: "dinkes-agent-kantor-pusat".into(),
            opd: "dinkes".into(),
            version: "0.1.0".into(),
            status: v1::agent_status::Status::Connected.into(),
            last_seen_us: 1,
            hostname: "agent-dinkes.kabupaten.go.id".into(),
            ..Default::default()
        }];
        let devices = [v1::DeviceInfo {
            id: "dinkes-core-switch-01".into(),
            opd: "dinkes".into(),
            kind: "switch".into(),
            address: "198.18.200.200".into(),
            state: v1::device_info::State::Up.into(),
            rtt_ms: Some(0.25),
            loss_pct: Some(0.0),
            jitter_ms: Some(0.01),
            ..Default::default()
        }];
        let history = [json!({"ts": "2026-11-24T10:00:00.000Z",
            "received_at": "2026-11-24T10:00:00.250Z", "kind": "snmp", "status": "timeout",
            "error": "no answer from 198.18.200.200:161 after 4 s (3 tries)"})];
        let fit = |o| {
            [
                links_table(o, &links, chrono_tz::Asia::Jakarta).unwrap(),
                agents_table(o, &agents),
                devices_table(o, &devices),
                history_table(o, &history, chrono_tz::Asia::Jakarta),
            ]
        };
        let narrow = fit(Output::Table);
        let wide = fit(Output::Wide);
        for (n, w) in narrow.iter().zip(&wide) {
            // The fit to 80 columns itself is checked end to end, with
            // COLUMNS=80 (tests/tests/links.rs).
            assert!(widest(n) < widest(w), "narrow:\n{n}\nwide:\n{w}");
        }
        assert!(wide[0].contains("GigabitEthernet1/0/48") && wide[0].contains("12.35 M"));
        assert!(
            !narrow[0].contains("GigabitEthernet1/0/48"),
            "{}",
            narrow[0]
        );
        assert!(narrow[0].contains("Uplink ke Diskominfo"), "{}", narrow[0]);
        assert!(wide[1].contains("agent-dinkes.kabupaten.go.id"));
        assert!(wide[2].contains("198.18.200.200") && !narrow[2].contains("198.18.200.200"));
        assert!(
            narrow[3].contains("2026-11-24 17:00:00 WIB"),
            "{}",
            narrow[3]
        );
    }

    #[test]
    fn agent_statuses_read_as_words_in_the_table_and_as_wire_words_in_json() {
        use v1::agent_status::Status;
        let row = |status: Status, connected: bool| v1::AgentInfo {
            id: "a1".into(),
            opd: "dinkes".into(),
            status: status.into(),
            connected,
            ..Default::default()
        };
        let agents = [
            row(Status::NeverConnected, false),
            row(Status::NoAgentEnrolled, false),
            // From a collector that did not say: read from `connected`.
            row(Status::Unspecified, true),
        ];
        let t = agents_table(Output::Wide, &agents);
        assert!(t.contains("never connected"), "{t}");
        assert!(t.contains("no agent enrolled"), "{t}");
        assert!(t.contains(" connected"), "{t}");
        assert!(!t.contains("never_connected") && !t.contains('?'), "{t}");
        let j = agents_json(&agents);
        assert_eq!(j[0]["status"], "never_connected");
        assert_eq!(j[1]["status"], "no_agent_enrolled");
        assert!(j[2]["status"].is_null(), "{j}");
    }

    #[test]
    fn history_table_shows_when_each_sample_arrived() {
        let rows = [
            json!({"ts": "2026-11-24T10:00:00.000Z", "received_at": "2026-11-24T10:00:00.250Z", "kind": "icmp", "sent": 5, "received": 5}),
            json!({"ts": "2026-11-24T09:00:01.000Z", "received_at": null, "kind": "icmp", "sent": 5, "received": 5}),
        ];
        let t = history_table(Output::Wide, &rows, chrono_tz::Asia::Makassar);
        let lines: Vec<&str> = t.lines().filter(|l| l.contains("icmp")).collect();
        assert_eq!(lines.len(), 2, "{t}");
        let cell = |l: &str, i| l.split('┆').nth(i).map(str::trim).map(str::to_string);
        // Both times local, with the zone's abbreviation.
        assert_eq!(
            cell(lines[0], 0).as_deref(),
            Some("│ 2026-11-24 18:00:00 WITA"),
            "{t}"
        );
        assert_eq!(
            cell(lines[0], 1).as_deref(),
            Some("2026-11-24 18:00:00 WITA"),
            "{t}"
        );
        assert_eq!(cell(lines[1], 1).as_deref(), Some("-"), "{t}");
    }

    #[test]
    fn device_view_draws_history_and_interfaces() {
        let d = json!({
            "id": "sw1", "name": "Switch", "address": "198.18.0.2", "opd": "dinkes",
            "kind": "switch", "state": "up", "snmp_status": "ok", "sys_name": "sw1",
            "sys_uptime_cs": 100, "last_snmp_at": "2026-01-01T00:00:00.000Z",
            "since": "2026-01-01T00:00:00.000Z",
            "history": [{"rtt_ms": 1.0, "loss_pct": 0.0}, {"rtt_ms": 2.0, "loss_pct": 100.0}],
            "interfaces": [{"if_index": 2, "if_name": "eth0", "link": "uplink",
                            "oper_status": "down", "admin_status": "up", "speed_mbps": 1000.0}],
            "events": [{"ts": "2026-01-01T00:00:01.000Z", "event": "link_down", "link": "uplink"}],
        });
        let out = device_view(Output::Table, &d, chrono_tz::Asia::Jakarta).unwrap();
        assert!(out.contains("since 2026-01-01 07:00:00 WIB"), "{out}");
        assert!(out.contains("2026-01-01 07:00:01 WIB  link_down"), "{out}");
        assert!(out.contains("rtt ms  ▁█"), "{out}");
        assert!(out.contains("loss %  ▁█"), "{out}");
        assert!(out.contains("uplink") && out.contains("down"), "{out}");
        assert!(out.contains("link_down"), "{out}");
        assert!(device_view(Output::Table, &json!({}), chrono_tz::UTC).is_ok());
        assert!(links_table(Output::Table, &json!({}), chrono_tz::UTC).is_err());
    }

    #[test]
    fn device_view_shows_health_with_its_sources_and_problems() {
        let d = json!({
            "id": "core", "snmp_status": "ok",
            "health": {"cpu_pct": 97.0, "cpu_source": "huawei", "mem_pct": 41.5,
                       "mem_source": "huawei", "temp_c": 52.0, "temp_threshold_c": 55.0,
                       "temp_source": "huawei", "load1": 0.42,
                       "problems": ["cisco: cpmCPUTotal5minRev.1 = 250 is not a percentage"]},
        });
        let out = device_view(Output::Table, &d, chrono_tz::UTC).unwrap();
        for want in [
            "cpu 97.0 % (huawei)",
            "memory 41.5 % (huawei)",
            "temperature 52.0 °C (limit 55 °C, huawei)",
            "load 0.42",
            "health problem: cisco: cpmCPUTotal5minRev.1 = 250 is not a percentage",
        ] {
            assert!(out.contains(want), "{want}: {out}");
        }
        let partial = device_view(
            Output::Table,
            &json!({"id": "sw", "health": {"mem_pct": 10.0, "mem_source": "ucd"}}),
            chrono_tz::UTC,
        )
        .unwrap();
        assert!(
            partial.contains("health  cpu -  memory 10.0 % (ucd)  temperature -"),
            "{partial}"
        );
        let none = device_view(Output::Table, &json!({"id": "sw"}), chrono_tz::UTC).unwrap();
        assert!(!none.contains("health"), "{none}");
    }

    #[test]
    fn device_view_shows_what_the_agent_cut_dropped_and_refused() {
        let d = json!({
            "id": "sw1", "snmp_status": "ok", "sys_truncated": true,
            "interfaces_omitted": 904, "snmp_forged_answers": 3, "traps_refused": 2,
            "traps_suppressed": 0,
            "interfaces": [{"if_index": 2, "if_name": "eth0", "truncated": true},
                           {"if_index": 3, "if_name": "eth1", "truncated": false}],
        });
        let out = device_view(Output::Table, &d, chrono_tz::UTC).unwrap();
        for want in [
            "sysDescr/sysName cut to 255 octets",
            "1 interface names cut to 255 octets",
            "904 interfaces beyond the agent's cap, not polled",
            "3 forged SNMP answers dropped",
            "2 traps refused",
        ] {
            assert!(out.contains(want), "{want}: {out}");
        }
        assert!(!out.contains("trap storms"), "{out}");
        let quiet = device_view(
            Output::Table,
            &json!({"id": "sw2", "snmp_status": "ok"}),
            chrono_tz::UTC,
        )
        .unwrap();
        assert!(!quiet.contains("snmp: "), "{quiet}");
    }

    #[test]
    fn json_has_exactly_the_documented_fields() {
        let a = agents_json(&[v1::AgentInfo {
            id: "x".into(),
            last_seen_us: 0,
            ..Default::default()
        }]);
        let mut keys: Vec<&String> = a[0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "cert_not_after",
                "clock_offset_ms",
                "connected",
                "cpu_pct",
                "disk_used_pct",
                "dropped",
                "future_refused",
                "hostname",
                "id",
                "last_seen",
                "mem_used_pct",
                "opd",
                "refused",
                "samples_cut",
                "spool",
                "spool_depth",
                "spool_error",
                "status",
                "undeliverable",
                "version"
            ]
        );
        assert!(a[0]["last_seen"].is_null());
        assert!(
            a[0]["cert_not_after"].is_null(),
            "not connected since start"
        );
        assert!(a[0]["clock_offset_ms"].is_null());
        assert_eq!(a[0]["spool"], "unknown", "an agent that never said");
        let full = agents_json(&[v1::AgentInfo {
            spool_condition: v1::SpoolCondition::DiskFull as i32,
            ..Default::default()
        }]);
        assert_eq!(full[0]["spool"], "disk full");
        let d = devices_json(&[v1::DeviceInfo {
            id: "d".into(),
            rtt_ms: Some(1.5),
            last_sample_at_us: 1_700_000_000_000_000,
            ..Default::default()
        }]);
        let mut keys: Vec<&String> = d[0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "address",
                "id",
                "jitter_ms",
                "kind",
                "last_sample_at",
                "loss_pct",
                "opd",
                "reading_age_s",
                "rtt_ms",
                "state"
            ]
        );
        assert_eq!(d[0]["rtt_ms"], json!(1.5));
        assert!(d[0]["loss_pct"].is_null());
        assert_eq!(d[0]["last_sample_at"], json!("2023-11-14T22:13:20.000Z"));
    }

    #[test_case(json!(100), "0m" ; "a second")]
    #[test_case(json!(6_000 * 42), "42m" ; "minutes")]
    #[test_case(json!("1872000"), "5h 12m" ; "hours, as a proto3 JSON string")]
    #[test_case(json!(27_360_000), "3d 4h" ; "days")]
    #[test_case(Value::Null, "-" ; "none")]
    fn uptime_is_told_in_days_hours_and_minutes(v: Value, want: &str) {
        assert_eq!(uptime_text(&v), want);
    }
}
