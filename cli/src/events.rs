//! `siaga events [--follow]`: the `Events` service from the CLI
//! (siaga_proto and crate::client only).

use std::io::Write as _;
use std::time::Duration;

use clap::Args;
use siaga_proto::v1::{self, events_client::EventsClient};
use tonic::transport::Channel;

use crate::client::{self, CliError, Output, SiagaConfig};

/// `siaga events`.
#[derive(Debug, Clone, Args)]
pub struct EventsCmd {
    /// From when: how far back, e.g. 1h, 30m, 2d, or a time such as
    /// yesterday or "2026-12-07 08:00" (default 24h; with --follow: only new events).
    #[arg(long, value_parser = crate::usage::since_arg)]
    pub since: Option<String>,
    /// Only this OPD.
    #[arg(long)]
    pub opd: Option<String>,
    /// Only this device (not with --follow).
    #[arg(long, conflicts_with = "follow")]
    pub device: Option<String>,
    /// Only this kind: state, opened, recovered, suppressed, flapping … (not with --follow).
    #[arg(long, conflicts_with = "follow")]
    pub kind: Option<v1::log_event_kind::Kind>,
    /// Print at most this many (the oldest first).
    #[arg(long, conflicts_with = "follow")]
    pub limit: Option<usize>,
    /// Keep printing events as the collector records them (a server stream;
    /// reconnects when the collector restarts, nothing twice).
    #[arg(long)]
    pub follow: bool,
    /// Print JSON: an array, or with --follow one object per line.
    #[arg(long)]
    pub json: bool,
}

fn timestamp(us: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// Where `--since` starts, read in the province's zone.
fn since(cfg: &SiagaConfig, text: &str) -> Result<pbjson_types::Timestamp, CliError> {
    let us = crate::devices::since_us(cfg, text)?;
    Ok(timestamp(us))
}

fn when(e: &v1::LogEvent, tz: chrono_tz::Tz) -> String {
    e.ts.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| client::local_time(tz, t))
        .unwrap_or_default()
}

fn what(e: &v1::LogEvent) -> String {
    if e.kind() == v1::log_event_kind::Kind::State {
        let mut w = format!("{} → {}", e.from(), e.to());
        if e.flapping {
            w.push_str(" (flapping)");
        }
        w
    } else {
        e.kind().to_string()
    }
}

fn client(ch: Channel) -> EventsClient<Channel> {
    EventsClient::new(ch).max_decoding_message_size(siaga_proto::MAX_MESSAGE_BYTES)
}

/// Runs `siaga events`.
pub async fn run(cfg: &SiagaConfig, out: Output, c: &EventsCmd) -> Result<(), CliError> {
    if c.follow {
        follow(cfg, c).await
    } else {
        list(cfg, out, c).await
    }
}

async fn list(cfg: &SiagaConfig, out: Output, c: &EventsCmd) -> Result<(), CliError> {
    let mut client = client(client::channel(cfg).await?);
    let since = since(cfg, c.since.as_deref().unwrap_or("24h"))?;
    let limit = c.limit.unwrap_or(usize::MAX);
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let r = client
            .list_events(client::request(v1::ListEventsRequest {
                page_size: 0,
                page_token: token,
                since: Some(since),
                until: None,
                opd: c.opd.clone().unwrap_or_default(),
                device: c.device.clone().unwrap_or_default(),
                kind: c.kind.unwrap_or_default().into(),
            }))
            .await
            .map_err(|s| client::status_error(cfg, s))?
            .into_inner();
        all.extend(r.events);
        if all.len() >= limit || r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    all.truncate(limit);
    if c.json {
        let s = serde_json::to_string_pretty(&all).map_err(|e| CliError::Message(e.to_string()))?;
        println!("{s}");
        return Ok(());
    }
    let mut t = client::table(out, &["time", "subject", "what", "reason", "ticket"]);
    for e in &all {
        t.add_row(vec![
            when(e, cfg.zone()),
            e.subject.clone(),
            what(e),
            e.reason.clone(),
            e.ticket.clone(),
        ]);
    }
    println!("{}", client::show(out, &t));
    Ok(())
}

async fn follow(cfg: &SiagaConfig, c: &EventsCmd) -> Result<(), CliError> {
    let mut after = String::new();
    let mut wait = Duration::from_secs(1);
    let mut connected_once = false;
    loop {
        let req = v1::FollowEventsRequest {
            since: match (&c.since, after.is_empty()) {
                (Some(text), true) => Some(since(cfg, text)?),
                _ => None,
            },
            opd: c.opd.clone().unwrap_or_default(),
            after: after.clone(),
        };
        let stream = async {
            let mut client = client(client::channel(cfg).await?);
            client
                .follow_events(req)
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
                wait = (wait * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(e) => return Err(e),
        };
        connected_once = true;
        wait = Duration::from_secs(1);
        loop {
            match stream.message().await {
                Ok(Some(e)) => {
                    if c.json {
                        let s = serde_json::to_string(&e)
                            .map_err(|e| CliError::Message(e.to_string()))?;
                        println!("{s}");
                    } else {
                        println!(
                            "{}  {}  {}  {}  {}",
                            when(&e, cfg.zone()),
                            e.subject,
                            what(&e),
                            e.reason,
                            e.ticket
                        );
                    }
                    let _ = std::io::stdout().flush();
                    after = e.key;
                }
                Ok(None) => {
                    eprintln!("siaga: the collector closed the stream; reconnecting");
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
