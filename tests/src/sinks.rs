//! Receivers the collector's notifications go to, on loopback, for tests: a
//! webhook receiver that answers with scripted statuses and an SMTP sink.
//! Each runs on its own threads until the test process ends.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use siaga_tests::sinks::{SmtpSink, WebhookReceiver};
//! let hook = WebhookReceiver::start(&[500])?; // 500 to the first POST, 200 after
//! let smtp = SmtpSink::start()?;
//! println!("{} {}", hook.url(), smtp.addr());
//! # Ok(()) }
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use serde_json::Value;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One POST the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The request path (`/hook`; `/bot<TOKEN>/sendMessage` for the Bot API).
    pub path: String,
    /// The `Idempotency-Key` header ("" when absent).
    pub key: String,
    /// The status it was answered with.
    pub status: u16,
    /// The JSON body (`Null` when it was not JSON).
    pub body: Value,
}

/// An HTTP/1.1 server on 127.0.0.1 taking POSTs: the n-th POST is answered
/// with the n-th status of the script, every POST after the script with 200.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    url: String,
    seen: Arc<Mutex<Vec<Delivery>>>,
}

impl WebhookReceiver {
    /// Starts listening on a free port.
    pub fn start(script: &[u16]) -> Result<Self> {
        Self::start_as(script, false)
    }

    /// The same server speaking the Telegram Bot API's shape: answers are
    /// `{"ok":true,"result":{}}`, or `{"ok":false,"error_code":N,…}` for a
    /// scripted error. Its URL is the `api_url` to configure.
    pub fn bot_api(script: &[u16]) -> Result<Self> {
        let mut r = Self::start_as(script, true)?;
        r.url = r.url.trim_end_matches("/hook").to_string();
        Ok(r)
    }

    fn start_as(script: &[u16], bot: bool) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the webhook receiver")?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script.to_vec());
        let store = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (store, script) = (store.clone(), script.clone());
                std::thread::spawn(move || serve_http(conn, &store, &script, bot));
            }
        });
        Ok(Self { url, seen })
    }

    /// The URL to configure (`http://127.0.0.1:PORT/hook`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every POST so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.seen).clone()
    }
}

fn serve_http(conn: TcpStream, store: &Mutex<Vec<Delivery>>, script: &[u16], bot: bool) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut rd = BufReader::new(conn);
    loop {
        let mut len = 0usize;
        let mut key = String::new();
        let mut path = String::new();
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match rd.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if first {
                first = false;
                path = l.split(' ').nth(1).unwrap_or_default().to_string();
                continue;
            }
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("idempotency-key") {
                    key = v.trim().to_string();
                }
            }
        }
        let mut body = vec![0; len];
        if rd.read_exact(&mut body).is_err() {
            return;
        }
        let status = {
            let mut seen = lock(store);
            let status = script.get(seen.len()).copied().unwrap_or(200);
            seen.push(Delivery {
                path,
                key,
                status,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
            status
        };
        let reason = if status == 200 { "OK" } else { "Error" };
        let answer = match (bot, status) {
            (false, _) => String::new(),
            (true, 200..=299) => r#"{"ok":true,"result":{}}"#.to_string(),
            (true, _) => {
                format!(r#"{{"ok":false,"error_code":{status},"description":"scripted error"}}"#)
            }
        };
        let kind = if bot {
            "content-type: application/json\r\n"
        } else {
            ""
        };
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\n{kind}content-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// One message the SMTP sink accepted.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    /// The `MAIL FROM` address.
    pub from: String,
    /// The `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The message as sent after `DATA` (headers and body, CRLF line ends,
    /// dot-stuffing undone).
    pub data: String,
}

impl Mail {
    /// A header's value, folded lines joined (`None` when absent).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The body (after the blank line).
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

/// A plain SMTP server on 127.0.0.1 that accepts every message (EHLO/HELO,
/// MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS, no AUTH), as a local relay
/// would.
#[derive(Debug, Clone)]
pub struct SmtpSink {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    /// Starts listening on a free port.
    pub fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the SMTP sink")?;
        let addr = listener.local_addr()?;
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let store = store.clone();
                std::thread::spawn(move || {
                    let _ = serve_smtp(conn, &store);
                });
            }
        });
        Ok(Self { addr, mails })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        lock(&self.mails).clone()
    }
}

fn serve_smtp(conn: TcpStream, store: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut rd = BufReader::new(conn);
    out.write_all(b"220 sink.siaga.test ESMTP\r\n")?;
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end();
        let verb = cmd
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let arg = |prefix: &str| {
            cmd.get(prefix.len()..)
                .unwrap_or_default()
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_string()
        };
        match verb.as_str() {
            "EHLO" => out.write_all(b"250-sink.siaga.test\r\n250 8BITMIME\r\n")?,
            "HELO" => out.write_all(b"250 sink.siaga.test\r\n")?,
            "MAIL" => {
                mail = Mail {
                    from: arg("MAIL FROM:"),
                    ..Mail::default()
                };
                out.write_all(b"250 OK\r\n")?;
            }
            "RCPT" => {
                mail.to.push(arg("RCPT TO:"));
                out.write_all(b"250 OK\r\n")?;
            }
            "DATA" => {
                out.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if rd.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                mail.data = data;
                lock(store).push(std::mem::take(&mut mail));
                out.write_all(b"250 OK queued\r\n")?;
            }
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            "RSET" => {
                mail = Mail::default();
                out.write_all(b"250 OK\r\n")?;
            }
            "NOOP" => out.write_all(b"250 OK\r\n")?,
            _ => out.write_all(b"502 not implemented\r\n")?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_unfolded_and_the_body_split_off() {
        let m = Mail {
            data: "From: a@b\r\nSubject: [Siaga] Tiket PJ-1\r\n dibuka\r\n\r\nIsi\r\n".into(),
            ..Mail::default()
        };
        assert_eq!(
            m.header("subject").as_deref(),
            Some("[Siaga] Tiket PJ-1 dibuka")
        );
        assert_eq!(m.header("to"), None);
        assert_eq!(m.body(), "Isi\r\n");
    }

    #[test]
    fn the_smtp_sink_takes_a_message_and_the_receiver_follows_its_script() -> Result<()> {
        let smtp = SmtpSink::start()?;
        let mut s = TcpStream::connect(smtp.addr())?;
        let mut rd = BufReader::new(s.try_clone()?);
        let mut line = String::new();
        rd.read_line(&mut line)?;
        assert!(line.starts_with("220"), "{line}");
        s.write_all(
            b"HELO t\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n",
        )?;
        let mut rest = String::new();
        rd.read_to_string(&mut rest)?;
        assert!(
            rest.contains("250 OK queued") && rest.contains("221"),
            "{rest}"
        );
        let m = smtp.mails();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].from.as_str(), m[0].to.clone()),
            ("a@b.test", vec!["c@d.test".to_string()])
        );
        assert_eq!(m[0].body(), ".dot\r\n");

        let hook = WebhookReceiver::start(&[500])?;
        let addr = hook
            .url()
            .trim_start_matches("http://")
            .trim_end_matches("/hook")
            .to_string();
        let mut statuses = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(&addr)?;
            s.write_all(
                b"POST /hook HTTP/1.1\r\nIdempotency-Key: k1\r\ncontent-length: 2\r\n\r\n{}",
            )?;
            let mut rd = BufReader::new(s);
            let mut status = String::new();
            rd.read_line(&mut status)?;
            statuses.push(
                status
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        assert_eq!(statuses, ["500", "200"]);
        let d = hook.deliveries();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].key.as_str(), d[0].status), ("k1", 500));
        Ok(())
    }
}
