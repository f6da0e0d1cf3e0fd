//! Delivery against real local receivers: an HTTP server and an SMTP sink
//! on loopback, both written here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;

fn event(kind: EventKind, seq: u64) -> TicketEvent {
    TicketEvent {
        ticket: "PJ-2026-0001".into(),
        event: kind,
        sequence: seq,
        at: "2026-11-24T03:00:00Z".into(),
        opd: "dinkes".into(),
        device: Some("dinkes-rtr".into()),
        link: None,
        problem: "Packet loss 40 % on dinkes-rtr (threshold 20 %)".into(),
        problem_id: Some("Packet loss 40 % pada dinkes-rtr (ambang 20 %)".into()),
        origin: "detected".into(),
        step: 1,
        role: "pemohon".into(),
        opened_at: "2026-11-24T03:00:00Z".into(),
        recovered_at: None,
        occurrences: 1,
        affected: vec![],
        escalation: None,
    }
}

/// What the test webhook receiver saw: (Idempotency-Key header, body).
pub(crate) type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// An HTTP receiver that answers `statuses[i]` to the i-th request, then 200.
pub(crate) async fn receiver(statuses: Vec<u16>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            let statuses = statuses.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    let statuses = statuses.clone();
                    async move {
                        let key = req
                            .headers()
                            .get(webhook::IDEMPOTENCY_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let body = req.into_body().collect().await?.to_bytes();
                        let json: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                        let n = {
                            let mut s = seen.lock().unwrap();
                            s.push((key, json));
                            s.len() - 1
                        };
                        let status = statuses.get(n).copied().unwrap_or(200);
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), seen)
}

fn config(url: Option<String>) -> NotifyConfig {
    NotifyConfig {
        webhook: url
            .into_iter()
            .map(|url| WebhookConfig {
                url,
                timeout: Duration::from_secs(5),
                template: None,
            })
            .collect(),
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        max_attempts: 5,
        ..NotifyConfig::default()
    }
}

/// Waits for a condition with a generous deadline (no timing is asserted).
pub(crate) async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn webhook_retries_after_500_and_the_receiver_sees_one_opened_per_key() {
    let (url, seen) = receiver(vec![500]).await;
    let (n, d) = Notifier::new(&config(Some(url)), None).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(d.run(cancel.clone()));
    n.notify(event(EventKind::Opened, 1)).unwrap();
    let m = n.metrics().clone();
    until("delivery", || m.delivered_of("webhook") == 1).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2,
        "one refused attempt, one delivered: {seen:?}"
    );
    assert_eq!(n.metrics().retries_of("webhook"), 1);
    assert_eq!(n.metrics().failed_of("webhook"), 0);
    // Both attempts carry the same key, in the header and in the body.
    for (key, body) in &seen {
        assert_eq!(key, "PJ-2026-0001:opened:1");
        assert_eq!(body["idempotency_key"], "PJ-2026-0001:opened:1");
        assert_eq!(body["event"], "opened");
        assert_eq!(body["ticket"], "PJ-2026-0001");
        assert_eq!(body["device"], "dinkes-rtr");
    }
    // What a receiver that dedups by key keeps: exactly one `opened`.
    let delivered: BTreeMap<&str, &serde_json::Value> = seen
        .iter()
        .filter(|(_, b)| b["event"] == "opened")
        .map(|(k, b)| (k.as_str(), b))
        .collect();
    assert_eq!(delivered.len(), 1);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_counts_as_failed() {
    let (url, seen) = receiver(vec![400]).await;
    let (n, d) = Notifier::new(&config(Some(url)), None).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(d.run(cancel.clone()));
    n.notify(event(EventKind::Recovered, 2)).unwrap();
    let m = n.metrics().clone();
    until("give-up", || m.failed_of("webhook") == 1).await;
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(m.retries_of("webhook"), 0);
    assert_eq!(seen.lock().unwrap()[0].0, "PJ-2026-0001:recovered:2");
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried_up_to_max_attempts() {
    // A port that was free a moment ago: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (n, d) = Notifier::new(&config(Some(format!("http://127.0.0.1:{port}/"))), None).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(d.run(cancel.clone()));
    n.notify(event(EventKind::Opened, 1)).unwrap();
    let m = n.metrics().clone();
    until("give-up", || m.failed_of("webhook") == 1).await;
    assert_eq!(m.retries_of("webhook"), 4, "5 attempts = 4 retries");
    assert_eq!(m.delivered_of("webhook"), 0);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_full_queue_drops_the_new_event_without_waiting() {
    let mut cfg = config(None);
    cfg.queue_capacity = 2;
    // The dispatcher is not running: nothing leaves the queue.
    let (n, _d) = Notifier::new(&cfg, None).unwrap();
    assert!(n.notify(event(EventKind::Opened, 1)).is_ok());
    assert!(n.notify(event(EventKind::Recovered, 2)).is_ok());
    let err = n.notify(event(EventKind::StepChanged, 3)).unwrap_err();
    assert_eq!(err.0, "PJ-2026-0001:step_changed:3");
    assert_eq!(n.metrics().dropped.get(), 1);
    let mut reg = Registry::with_prefix("siaga_collector");
    n.metrics().register(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("siaga_collector_notify_dropped_total 1"),
        "{text}"
    );
}

#[test]
fn bad_config_names_the_key() {
    let mut cfg = config(Some("ftp://x/".into()));
    assert!(
        Notifier::new(&cfg, None)
            .unwrap_err()
            .contains("notify.webhook.url")
    );
    cfg.webhook.clear();
    cfg.email = Some(EmailConfig {
        host: "127.0.0.1".into(),
        port: 25,
        security: Security::None,
        username: None,
        password: None,
        from: "not an address".into(),
        to: vec!["helpdesk@example.invalid".into()],
        language: Language::Id,
        timeout: Duration::from_secs(5),
    });
    assert!(
        Notifier::new(&cfg, None)
            .unwrap_err()
            .contains("notify.email.from")
    );
    let parsed: Result<NotifyConfig, _> = toml::from_str("queue = 3");
    assert!(parsed.unwrap_err().to_string().contains("queue"));
}

#[test]
fn the_email_is_in_bahasa_indonesia_by_default() {
    let (subject, body) = email::render(&event(EventKind::Opened, 1), Language::default());
    assert_eq!(
        subject,
        "[Siaga] Tiket PJ-2026-0001 dibuka: Packet loss 40 % pada dinkes-rtr (ambang 20 %)"
    );
    assert!(body.contains("Perangkat : dinkes-rtr"), "{body}");
    assert!(body.contains("Langkah   : 1 (pemohon)"), "{body}");
    let mut rec = event(EventKind::Recovered, 2);
    rec.recovered_at = Some("2026-11-24T03:10:00Z".into());
    let (subject, _) = email::render(&rec, Language::Id);
    assert!(
        subject.contains("pulih pada 2026-11-24T03:10:00Z"),
        "{subject}"
    );
    let (subject, _) = email::render(&rec, Language::En);
    assert!(
        subject.starts_with("[Siaga] Ticket PJ-2026-0001 recovered at"),
        "{subject}"
    );
}

/// An SMTP server that speaks just enough to accept mail; the first
/// `refuse` transactions get a 451 (try again later) at DATA.
async fn smtp_sink(refuse: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails: Arc<Mutex<Vec<String>>> = Arc::default();
    let mails2 = mails.clone();
    let refused = Arc::new(Mutex::new(0usize));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mails = mails2.clone();
            let refused = refused.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 sink ESMTP test\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
                        "DATA" => {
                            let refuse_now = {
                                let mut n = refused.lock().unwrap();
                                let r = *n < refuse;
                                if r {
                                    *n += 1;
                                }
                                r
                            };
                            if refuse_now {
                                b"451 try again later\r\n"
                            } else {
                                let _ = w.write_all(b"354 go ahead\r\n").await;
                                let mut data = String::new();
                                while let Ok(Some(l)) = lines.next_line().await {
                                    if l == "." {
                                        break;
                                    }
                                    data.push_str(&l);
                                    data.push('\n');
                                }
                                mails.lock().unwrap().push(data);
                                b"250 queued\r\n"
                            }
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"502 unknown\r\n",
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, mails)
}

#[tokio::test]
async fn the_smtp_sink_receives_the_mail_with_the_ticket_number() {
    let (port, mails) = smtp_sink(1).await;
    let mut cfg = config(None);
    cfg.email = Some(EmailConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: None,
        password: None,
        from: "Siaga <siaga@example.invalid>".into(),
        to: vec!["helpdesk@example.invalid".into()],
        language: Language::Id,
        timeout: Duration::from_secs(5),
    });
    let (n, d) = Notifier::new(&cfg, None).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(d.run(cancel.clone()));
    n.notify(event(EventKind::Opened, 1)).unwrap();
    let m = n.metrics().clone();
    until("e-mail delivered", || m.delivered_of("email") == 1).await;
    assert_eq!(m.retries_of("email"), 1, "the 451 was retried");
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(
        mail.contains("Subject: [Siaga] Tiket PJ-2026-0001 dibuka"),
        "{mail}"
    );
    assert!(mail.contains("To: helpdesk@example.invalid"), "{mail}");
    assert!(mail.contains("siaga ticket show PJ-2026-0001"), "{mail}");
    cancel.cancel();
    task.await.unwrap();
}

/// What the test Bot API saw: (path, JSON body, arrival), in order.
pub(crate) type BotSeen = Arc<Mutex<Vec<(String, serde_json::Value, Instant)>>>;

/// A local HTTP server that speaks the Bot API's shape: the i-th request is
/// answered with `script[i]` (status, JSON), every later one with
/// `{"ok":true,"result":{...}}`.
pub(crate) async fn bot_api(script: Vec<(u16, serde_json::Value)>) -> (String, BotSeen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: BotSeen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    let script = script.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await?.to_bytes();
                        let json: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                        let n = {
                            let mut s = seen.lock().unwrap();
                            s.push((path, json.clone(), Instant::now()));
                            s.len() - 1
                        };
                        let (status, answer) = script.get(n).cloned().unwrap_or_else(|| {
                            (
                                200,
                                serde_json::json!({"ok": true, "result": {
                                    "message_id": n + 1,
                                    "chat": {"id": json["chat_id"]},
                                    "text": json["text"],
                                }}),
                            )
                        });
                        let mut resp = Response::new(Full::new(Bytes::from(answer.to_string())));
                        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                        resp.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

pub(crate) const TOKEN: &str = "123456:AAH-test_token-not-real";

pub(crate) fn telegram(api_url: &str) -> TelegramConfig {
    TelegramConfig {
        token: Secret::from(TOKEN),
        chat_id: ChatId::Id(-1_001_234_567_890),
        opds: vec![],
        roles: vec![],
        language: Language::Id,
        api_url: api_url.to_string(),
        timeout: Duration::from_secs(5),
    }
}

const CONSOLE: &str = "https://siaga.diskominfo.example:8443/";

#[tokio::test]
async fn telegram_gets_a_new_ticket_once_in_bahasa_with_its_number_and_console_link() {
    let (api, seen) = bot_api(vec![]).await;
    let mut cfg = config(None);
    cfg.telegram.push(telegram(&api));
    let (n, d) = Notifier::new(&cfg, Some(CONSOLE)).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(d.run(cancel.clone()));
    n.notify(event(EventKind::Opened, 1)).unwrap();
    let m = n.metrics().clone();
    until("telegram delivery", || m.delivered_of("telegram") == 1).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "sent once: {seen:?}");
    let (path, body, _) = &seen[0];
    assert_eq!(path, &format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(body["chat_id"], -1_001_234_567_890i64);
    assert_eq!(body["disable_web_page_preview"], true);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("Tiket pemeliharaan jaringan PJ-2026-0001 dibuka."),
        "{text}"
    );
    assert!(
        text.contains("Masalah   : Packet loss 40 % pada dinkes-rtr (ambang 20 %)"),
        "{text}"
    );
    assert!(
        text.contains(
            "Buka di konsol web: https://siaga.diskominfo.example:8443/tiket/PJ-2026-0001"
        ),
        "{text}"
    );
    assert_eq!(m.retries_of("telegram"), 0);
    assert_eq!(m.failed_of("telegram"), 0);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn without_a_public_url_the_message_has_no_console_link() {
    let (api, _seen) = bot_api(vec![]).await;
    let r = Renderer::new(&TemplatesConfig::default(), None).unwrap();
    let t = Telegram::new(&telegram(&api), r).unwrap();
    let text = t.text(&event(EventKind::Opened, 1));
    assert!(!text.contains("konsol"), "{text}");
    assert!(text.ends_with("siaga ticket show PJ-2026-0001\n"), "{text}");
}

fn too_many_requests(after: u64) -> (u16, serde_json::Value) {
    (
        429,
        serde_json::json!({"ok": false, "error_code": 429,
            "description": format!("Too Many Requests: retry after {after}"),
            "parameters": {"retry_after": after}}),
    )
}

#[tokio::test]
async fn telegram_429_is_retried_after_the_retry_after_it_names() {
    let (api, seen) = bot_api(vec![too_many_requests(1)]).await;
    let mut cfg = config(None);
    cfg.telegram.push(telegram(&api));
    // The backoff alone would retry within 100 ms.
    let (n, d) = Notifier::new(&cfg, None).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(d.run(cancel.clone()));
    n.notify(event(EventKind::Opened, 1)).unwrap();
    let m = n.metrics().clone();
    until("telegram delivery", || m.delivered_of("telegram") == 1).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "refused once, then sent: {seen:?}");
    assert_eq!(seen[0].1, seen[1].1, "the same message both times");
    // Not before the API said it may be sent again.
    let waited = seen[1].2 - seen[0].2;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(m.retries_of("telegram"), 1);
    assert_eq!(m.failed_of("telegram"), 0);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn the_429_answer_is_read_as_retry_after_its_seconds() {
    let (api, _) = bot_api(vec![too_many_requests(7)]).await;
    let r = Renderer::new(&TemplatesConfig::default(), None).unwrap();
    let t = Telegram::new(&telegram(&api), r).unwrap();
    let err = t.send(&event(EventKind::Opened, 1)).await.unwrap_err();
    assert!(
        matches!(&err, SendError::RetryAfter(_, d) if *d == Duration::from_secs(7)),
        "{err:?}"
    );
}

#[tokio::test]
async fn telegram_401_is_given_up_at_once_counted_and_never_shows_the_token() {
    let (api, seen) = bot_api(vec![(
        401,
        serde_json::json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
    )])
    .await;
    let mut cfg = config(None);
    cfg.telegram.push(telegram(&api));
    let (n, d) = Notifier::new(&cfg, None).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(d.run(cancel.clone()));
    n.notify(event(EventKind::Opened, 1)).unwrap();
    let m = n.metrics().clone();
    until("give-up", || m.failed_of("telegram") == 1).await;
    // A second event still goes out (the 401 was for that one message).
    n.notify(event(EventKind::Recovered, 2)).unwrap();
    until("second delivery", || m.delivered_of("telegram") == 1).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "one attempt per event");
    assert_eq!(m.retries_of("telegram"), 0);
    let mut reg = Registry::with_prefix("siaga_collector");
    n.metrics().register(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains(r#"siaga_collector_notify_failed_total{sink="telegram"} 1"#),
        "{text}"
    );
    cancel.cancel();
    task.await.unwrap();

    // The error itself, and the one of an unreachable API, name no token.
    let r = Renderer::new(&TemplatesConfig::default(), None).unwrap();
    let (api, _) = bot_api(vec![(
        401,
        serde_json::json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
    )])
    .await;
    let t = Telegram::new(&telegram(&api), r.clone()).unwrap();
    let err = t.send(&event(EventKind::Opened, 1)).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent(_)), "{err:?}");
    assert!(err.to_string().contains("401"), "{err}");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = Telegram::new(&telegram(&format!("http://127.0.0.1:{port}")), r).unwrap();
    let down = t.send(&event(EventKind::Opened, 1)).await.unwrap_err();
    assert!(matches!(down, SendError::Retry(_)), "{down:?}");
    for e in [
        err.to_string(),
        down.to_string(),
        format!("{t:?}"),
        format!("{:?}", telegram(&api)),
    ] {
        assert!(!e.contains("AAH-test_token"), "token shown: {e}");
    }
}

#[test]
fn a_bad_telegram_config_names_the_key_but_not_the_token() {
    let mut cfg = config(None);
    let mut t = telegram("http://127.0.0.1:1");
    t.token = Secret::from("secret-without-colon");
    cfg.telegram.push(t);
    let err = Notifier::new(&cfg, None).unwrap_err();
    assert!(err.starts_with("notify.telegram.token:"), "{err}");
    assert!(!err.contains("secret-without-colon"), "{err}");
    cfg.telegram[0] = telegram("ftp://127.0.0.1/");
    let err = Notifier::new(&cfg, None).unwrap_err();
    assert!(err.starts_with("notify.telegram.api_url:"), "{err}");
    cfg.telegram[0] = telegram("http://127.0.0.1:1");
    cfg.telegram[0].chat_id = ChatId::Name("helpdesk".into());
    let err = Notifier::new(&cfg, None).unwrap_err();
    assert!(err.starts_with("notify.telegram.chat_id:"), "{err}");
}

#[tokio::test]
async fn a_chat_for_some_opds_or_roles_gets_only_their_events() {
    let (api, seen) = bot_api(vec![]).await;
    let mut cfg = config(None);
    let mut bappeda = telegram(&api);
    bappeda.chat_id = ChatId::Id(1);
    bappeda.opds = vec!["bappeda".into()];
    let mut kadis = telegram(&api);
    kadis.chat_id = ChatId::Name("@kadis_kominfo".into());
    kadis.roles = vec!["kepala_dinas".into()];
    cfg.telegram = vec![bappeda, kadis];
    let (n, d) = Notifier::new(&cfg, None).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(d.run(cancel.clone()));
    // dinkes, the pemohon's turn: neither chat.
    n.notify(event(EventKind::Opened, 1)).unwrap();
    // Late, and the escalation tells the Kepala Dinas: the second chat.
    let mut late = event(EventKind::Escalated, 2);
    late.escalation = Some(EscalationNotice {
        step: 1,
        level: 2,
        due_at: "2026-11-25T03:00:00Z".into(),
        notify_roles: vec!["pemohon".into(), "kepala_dinas".into()],
        notify_users: vec![],
    });
    n.notify(late).unwrap();
    let m = n.metrics().clone();
    until("the escalation", || m.delivered_of("telegram") == 1).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1["chat_id"], "@kadis_kominfo");
    let text = seen[0].1["text"].as_str().unwrap();
    assert!(
        text.contains("terlambat di langkah 1 (pemohon), melewati dua kali standar waktu"),
        "{text}"
    );
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn configured_templates_shape_the_chat_text_and_the_webhook_body() {
    let (api, bot) = bot_api(vec![]).await;
    let (url, hook) = receiver(vec![]).await;
    let mut cfg = config(Some(url));
    cfg.webhook[0].template = Some(r#"{"text": "{{ subject }}", "link": "{{ url }}"}"#.to_string());
    cfg.templates.opened.body = Some(
        "🚨 {{ ticket }} di {{ opd }}: {{ problem }}{% if url %} — {{ url }}{% endif %}".into(),
    );
    cfg.templates.opened.subject = Some("Gangguan \"{{ device }}\" ({{ ticket }})".into());
    cfg.telegram.push(telegram(&api));
    let (n, d) = Notifier::new(&cfg, Some(CONSOLE)).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(d.run(cancel.clone()));
    n.notify(event(EventKind::Opened, 1)).unwrap();
    let m = n.metrics().clone();
    until("both", || {
        m.delivered_of("telegram") == 1 && m.delivered_of("webhook") == 1
    })
    .await;
    let text = bot.lock().unwrap()[0].1["text"].clone();
    assert_eq!(
        text,
        "🚨 PJ-2026-0001 di dinkes: Packet loss 40 % pada dinkes-rtr (ambang 20 %) — \
         https://siaga.diskominfo.example:8443/tiket/PJ-2026-0001"
    );
    // A Slack-compatible body, the quotes in the subject escaped.
    let (key, body) = hook.lock().unwrap()[0].clone();
    assert_eq!(key, "PJ-2026-0001:opened:1");
    assert_eq!(
        body,
        serde_json::json!({
            "text": "Gangguan \"dinkes-rtr\" (PJ-2026-0001)",
            "link": "https://siaga.diskominfo.example:8443/tiket/PJ-2026-0001",
        })
    );
    cancel.cancel();
    task.await.unwrap();
}

#[test]
fn a_template_naming_an_unknown_placeholder_is_refused_with_its_key() {
    let mut cfg = config(None);
    cfg.templates.recovered.body = Some("{{ ticket }} pulih, {{ tiket }}".into());
    let err = Notifier::new(&cfg, None).unwrap_err();
    assert!(
        err.starts_with("notify.templates.recovered.body: unknown placeholder {{ tiket }}"),
        "{err}"
    );
    cfg.templates.recovered.body = None;
    cfg.templates.escalated.subject = Some("{{ ticket ".into());
    let err = Notifier::new(&cfg, None).unwrap_err();
    assert!(
        err.starts_with("notify.templates.escalated.subject: not a valid template"),
        "{err}"
    );
    cfg.templates.escalated.subject = None;
    cfg.webhook.push(WebhookConfig {
        url: "http://127.0.0.1:1/".into(),
        timeout: Duration::from_secs(1),
        template: Some(r#"{"text": "{{ judul }}"}"#.into()),
    });
    let err = Notifier::new(&cfg, None).unwrap_err();
    assert!(
        err.starts_with("notify.webhook.template: unknown placeholder {{ judul }}"),
        "{err}"
    );
}

#[test]
fn the_default_texts_of_every_kind_render_in_both_languages() {
    let r = Renderer::new(&TemplatesConfig::default(), Some(CONSOLE)).unwrap();
    for kind in [
        EventKind::Opened,
        EventKind::Recovered,
        EventKind::StepChanged,
        EventKind::Escalated,
    ] {
        for lang in [Language::Id, Language::En] {
            let (subject, body) = r.render(&event(kind, 1), lang);
            assert!(
                subject.starts_with("[Siaga] Ti"),
                "{kind:?} {lang:?}: {subject}"
            );
            assert!(body.contains("PJ-2026-0001"), "{kind:?} {lang:?}: {body}");
            assert!(
                body.contains("https://siaga.diskominfo.example:8443/tiket/PJ-2026-0001"),
                "{kind:?} {lang:?}: {body}"
            );
        }
    }
}
