//! `siaga agents`, `devices [--watch]`, `links`, `device`, `history`: the
//! `Devices` service from the CLI (siaga_proto and crate::client only).

use std::io::Write as _;
use std::time::Duration;

use serde_json::Value;
use siaga_proto::v1::{self, devices_client::DevicesClient};
use tonic::transport::Channel;

use crate::client::{self, CliError, Output, SiagaConfig};

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
pub async fn agents(cfg: &SiagaConfig, out: Output, json_out: bool) -> Result<(), CliError> {
    let c = client(client::channel(cfg).await?);
    let all = client::every_page(cfg, |page_token| {
        let mut c = c.clone();
        async move {
            let r = c
                .list_agents(client::request(v1::ListAgentsRequest {
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
        print_json(&client::agents_json(&all))
    } else {
        println!("{}", client::agents_table(out, &all));
        for w in client::cert_warnings(&all, chrono::Utc::now().timestamp_micros()) {
            eprintln!("{w}");
        }
        Ok(())
    }
}

async fn all_devices(
    c: &mut DevicesClient<Channel>,
    cfg: &SiagaConfig,
    opd: &str,
    state: v1::device_info::State,
) -> Result<Vec<v1::DeviceInfo>, CliError> {
    client::every_page(cfg, |page_token| {
        let mut c = c.clone();
        let (opd, state) = (opd.to_string(), state.into());
        async move {
            let r = c
                .list_devices(client::request(v1::ListDevicesRequest {
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
    out: Output,
    opd: Option<String>,
    state: Option<v1::device_info::State>,
    json_out: bool,
) -> Result<(), CliError> {
    let mut c = client(client::channel(cfg).await?);
    let all = all_devices(
        &mut c,
        cfg,
        opd.as_deref().unwrap_or(""),
        state.unwrap_or_default(),
    )
    .await?;
    if json_out {
        print_json(&client::devices_json(&all))
    } else {
        println!("{}", client::devices_table(out, &all));
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
    let mut shown: std::collections::HashMap<String, v1::device_info::State> = Default::default();
    let mut wait = Duration::from_secs(1);
    let mut connected_once = false;
    loop {
        let stream = async {
            let mut c = client(client::channel(cfg).await?);
            c.watch_devices(v1::WatchDevicesRequest {
                opd: opd.clone().unwrap_or_default(),
            })
            .await
            .map_err(|s| client::status_error(cfg, s))
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
                Err(s) if client::is_reconnectable(&s) => {
                    eprintln!("siaga: {}; reconnecting", client::status_error(cfg, s));
                    break;
                }
                Err(s) => return Err(client::status_error(cfg, s)),
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// `siaga links`: every page.
pub async fn links(cfg: &SiagaConfig, out: Output, json_out: bool) -> Result<(), CliError> {
    let c = client(client::channel(cfg).await?);
    let all = client::every_page(cfg, |page_token| {
        let mut c = c.clone();
        async move {
            let r = c
                .list_links(client::request(v1::ListLinksRequest {
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
            client::links_table(out, &v, cfg.zone()).map_err(CliError::Message)?
        );
        Ok(())
    }
}

/// `siaga device ID`.
pub async fn device(
    cfg: &SiagaConfig,
    out: Output,
    id: String,
    since: &str,
    json_out: bool,
) -> Result<(), CliError> {
    let since = since_us(cfg, since)?;
    let mut c = client(client::channel(cfg).await?);
    let d = c
        .get_device(client::request(v1::GetDeviceRequest {
            id,
            since: Some(timestamp(since)),
        }))
        .await
        .map_err(|s| client::status_error(cfg, s))?
        .into_inner();
    let v = json(&d)?;
    if json_out {
        print_json(&v)
    } else {
        println!(
            "{}",
            client::device_view(out, &v, cfg.zone()).map_err(CliError::Message)?
        );
        Ok(())
    }
}

/// `siaga history DEVICE`: the samples as they arrive, chunk by chunk (with
/// --json a JSON array written as it comes).
pub async fn history(
    cfg: &SiagaConfig,
    o: Output,
    device: String,
    since: &str,
    json_out: bool,
) -> Result<(), CliError> {
    let since = since_us(cfg, since)?;
    let mut c = client(client::channel(cfg).await?);
    let mut stream = c
        .history(v1::HistoryRequest {
            device,
            since: Some(timestamp(since)),
            until: None,
        })
        .await
        .map_err(|s| client::status_error(cfg, s))?
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
        .map_err(|s| client::status_error(cfg, s))?
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
        writeln!(out, "{}", client::history_table(o, &rows, cfg.zone())).map_err(io)?;
    }
    out.flush().map_err(io)
}
