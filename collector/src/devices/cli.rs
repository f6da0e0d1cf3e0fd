//! `siaga agents`, `devices [--watch]`, `links`, `device`, `history`: the
//! `Devices` service from the CLI (siaga_proto and crate::cli only).

use std::io::Write as _;
use std::time::Duration;

use serde_json::Value;
use siaga_proto::v1::{self, devices_client::DevicesClient};
use tonic::transport::Channel;

use crate::cli::{self, CliError, SiagaConfig};

/// Reads a `--since` (`30m`, `6h`, `2d`, `yesterday`, `2026-12-07 08:00`
/// in the province's zone …) as µs since the epoch.
pub fn since_us(cfg: &SiagaConfig, since: &str) -> Result<i64, CliError> {
    let t = crate::when::since(since, cfg.zone(), chrono::Utc::now())
        .map_err(|e| CliError::Usage(format!("--since: {e}")))?;
    Ok(t.timestamp_micros().max(0))
}

fn timestamp(us: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

fn client(ch: Channel) -> DevicesClient<Channel> {
    DevicesClient::new(ch).max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES)
}

fn json<T: serde::Serialize>(v: &T) -> Result<Value, CliError> {
    serde_json::to_value(v).map_err(|e| CliError::Message(e.to_string()))
}

fn print_json(v: &Value) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(|e| CliError::Message(e.to_string()))?;
    println!("{s}");
    Ok(())
}

/// `siaga agents`: every page.
pub async fn agents(cfg: &SiagaConfig, json_out: bool) -> Result<(), CliError> {
    let url = cfg.collector.clone();
    let c = client(cli::channel(cfg).await?);
    let all = cli::every_page(&url, |page_token| {
        let mut c = c.clone();
        async move {
            let r = c
                .list_agents(cli::request(v1::ListAgentsRequest {
                    page_token,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            Ok((r.agents, r.next_page_token))
        }
    })
    .await?;
    if json_out {
        print_json(&cli::agents_json(&all))
    } else {
        println!("{}", cli::agents_table(cli::output(), &all));
        for w in cli::cert_warnings(&all, chrono::Utc::now().timestamp_micros()) {
            eprintln!("{w}");
        }
        Ok(())
    }
}

async fn all_devices(
    c: &mut DevicesClient<Channel>,
    url: &str,
    opd: &str,
    state: v1::device_info::State,
) -> Result<Vec<v1::DeviceInfo>, CliError> {
    cli::every_page(url, |page_token| {
        let mut c = c.clone();
        let (opd, state) = (opd.to_string(), state.into());
        async move {
            let r = c
                .list_devices(cli::request(v1::ListDevicesRequest {
                    page_token,
                    opd,
                    state,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            Ok((r.devices, r.next_page_token))
        }
    })
    .await
}

/// `siaga devices`: every page.
pub async fn devices(
    cfg: &SiagaConfig,
    opd: Option<String>,
    state: Option<v1::device_info::State>,
    json_out: bool,
) -> Result<(), CliError> {
    let url = cfg.collector.clone();
    let mut c = client(cli::channel(cfg).await?);
    let all = all_devices(
        &mut c,
        &url,
        opd.as_deref().unwrap_or(""),
        state.unwrap_or_default(),
    )
    .await?;
    if json_out {
        print_json(&cli::devices_json(&all))
    } else {
        println!("{}", cli::devices_table(cli::output(), &all));
        Ok(())
    }
}

/// Waits before reconnecting: 1 s, doubling up to 30 s.
fn next_wait(wait: Duration) -> Duration {
    (wait * 2).min(Duration::from_secs(30))
}

/// `siaga devices --watch`: a line per state change as the collector sees
/// it (a JSON object per line with --json), across collector restarts.
pub async fn watch(cfg: &SiagaConfig, opd: Option<String>, json_out: bool) -> Result<(), CliError> {
    let url = cfg.collector.clone();
    let mut shown: std::collections::HashMap<String, v1::device_info::State> = Default::default();
    let mut wait = Duration::from_secs(1);
    let mut connected_once = false;
    loop {
        let stream = async {
            let mut c = client(cli::channel(cfg).await?);
            c.watch_devices(v1::WatchDevicesRequest {
                opd: opd.clone().unwrap_or_default(),
            })
            .await
            .map_err(|s| cli::status_error(&url, s))
            .map(tonic::Response::into_inner)
        }
        .await;
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) if connected_once => {
                eprintln!("siaga: {e}; trying again in {}s", wait.as_secs());
                tokio::time::sleep(wait).await;
                wait = next_wait(wait);
                continue;
            }
            Err(e) => return Err(e),
        };
        connected_once = true;
        wait = Duration::from_secs(1);
        loop {
            match stream.message().await {
                Ok(Some(change)) => {
                    let Some(d) = change.device else { continue };
                    // After a reconnect the collector starts with every
                    // device again: print only what changed meanwhile.
                    let before = shown.insert(d.id.clone(), d.state());
                    if before == Some(d.state()) {
                        continue;
                    }
                    if json_out {
                        let mut v = json(&d)?;
                        v["from"] =
                            Value::String(before.map(|b| b.word()).unwrap_or_default().into());
                        println!("{v}");
                    } else {
                        let when = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
                        match before {
                            Some(b) => println!("{when}  {}  {}  {b} → {}", d.opd, d.id, d.state()),
                            None => println!("{when}  {}  {}  {}", d.opd, d.id, d.state()),
                        }
                    }
                    let _ = std::io::stdout().flush();
                }
                Ok(None) => {
                    eprintln!("siaga: the collector closed the watch; reconnecting");
                    break;
                }
                Err(s) if cli::is_reconnectable(&s) => {
                    eprintln!("siaga: {}; reconnecting", cli::status_error(&url, s));
                    break;
                }
                Err(s) => return Err(cli::status_error(&url, s)),
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// `siaga links`: every page.
pub async fn links(cfg: &SiagaConfig, json_out: bool) -> Result<(), CliError> {
    let url = cfg.collector.clone();
    let c = client(cli::channel(cfg).await?);
    let all = cli::every_page(&url, |page_token| {
        let mut c = c.clone();
        async move {
            let r = c
                .list_links(cli::request(v1::ListLinksRequest {
                    page_token,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            Ok((r.links, r.next_page_token))
        }
    })
    .await?;
    let v = json(&all)?;
    if json_out {
        print_json(&v)
    } else {
        println!(
            "{}",
            cli::links_table(cli::output(), &v, cfg.zone()).map_err(CliError::Message)?
        );
        Ok(())
    }
}

/// `siaga device ID`.
pub async fn device(
    cfg: &SiagaConfig,
    id: String,
    since: &str,
    json_out: bool,
) -> Result<(), CliError> {
    let url = cfg.collector.clone();
    let since = since_us(cfg, since)?;
    let mut c = client(cli::channel(cfg).await?);
    let d = c
        .get_device(cli::request(v1::GetDeviceRequest {
            id,
            since: Some(timestamp(since)),
        }))
        .await
        .map_err(|s| cli::status_error(&url, s))?
        .into_inner();
    let v = json(&d)?;
    if json_out {
        print_json(&v)
    } else {
        println!(
            "{}",
            cli::device_view(cli::output(), &v, cfg.zone()).map_err(CliError::Message)?
        );
        Ok(())
    }
}

/// `siaga history DEVICE`: the samples as they arrive, chunk by chunk (with
/// --json a JSON array written as it comes).
pub async fn history(
    cfg: &SiagaConfig,
    device: String,
    since: &str,
    json_out: bool,
) -> Result<(), CliError> {
    let url = cfg.collector.clone();
    let since = since_us(cfg, since)?;
    let mut c = client(cli::channel(cfg).await?);
    let mut stream = c
        .history(v1::HistoryRequest {
            device,
            since: Some(timestamp(since)),
            until: None,
        })
        .await
        .map_err(|s| cli::status_error(&url, s))?
        .into_inner();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let io = |e: std::io::Error| CliError::Message(format!("writing the history: {e}"));
    let mut rows = Vec::new();
    let mut first = true;
    if json_out {
        write!(out, "[").map_err(io)?;
    }
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| cli::status_error(&url, s))?
    {
        for s in &chunk.samples {
            if json_out {
                let line =
                    serde_json::to_string(s).map_err(|e| CliError::Message(e.to_string()))?;
                write!(out, "{}\n  {line}", if first { "" } else { "," }).map_err(io)?;
                first = false;
            } else {
                rows.push(json(s)?);
            }
        }
    }
    if json_out {
        writeln!(out, "{}]", if first { "" } else { "\n" }).map_err(io)?;
    } else {
        writeln!(
            out,
            "{}",
            cli::history_table(cli::output(), &rows, cfg.zone())
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)
}
