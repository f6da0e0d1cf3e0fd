//! Telegram: one Bot API `sendMessage` per ticket event to a chat, for every
//! OPD or only some, for every role or only some.
//!
//! The bot token is part of the request URL, so it is kept out of every log
//! line and error: errors are built from the API's answer or from a
//! `reqwest::Error` with its URL removed, and targets are named by chat id.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::template::Renderer;
use super::{Language, SendError, TicketEvent};

/// The real Bot API.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// A secret string: shown as `***` by `Debug` and when serialized.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// A chat id: a number (`-1001234567890`) or a public `@channelname`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatId {
    /// A numeric chat id (groups are negative).
    Id(i64),
    /// `@channelname`.
    Name(String),
}

impl std::fmt::Display for ChatId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatId::Id(n) => write!(f, "{n}"),
            ChatId::Name(s) => f.write_str(s),
        }
    }
}

/// One `[[notify.telegram]]` chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot's token from @BotFather (a secret: never logged or shown).
    pub token: Secret,
    /// The chat the bot writes to.
    pub chat_id: ChatId,
    /// Only tickets of these OPDs; empty (the default) = every OPD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opds: Vec<String>,
    /// Only events that concern one of these roles (whose turn it is, or who
    /// an escalation tells); empty (the default) = every event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// `id` (default) or `en`.
    #[serde(default)]
    pub language: Language,
    /// Base URL of the Bot API.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Time limit of one attempt.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_string()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl TelegramConfig {
    /// Values the types allow but that cannot work: `(leaf key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let token = self.token.expose();
        // "123456:ABC-…": digits, a colon, then URL-safe characters. Checked
        // so that the token cannot change the request's path; not echoed.
        let well_formed = token.split_once(':').is_some_and(|(id, rest)| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !well_formed {
            return Err((
                "token",
                "not a bot token (the form is DIGITS:LETTERS, as @BotFather gives it)".into(),
            ));
        }
        match &self.chat_id {
            ChatId::Name(n) if !n.starts_with('@') || n.len() < 2 => {
                return Err((
                    "chat_id",
                    format!("{n:?}: a number (e.g. -1001234567890) or \"@channelname\""),
                ));
            }
            _ => {}
        }
        let url: reqwest::Url = self
            .api_url
            .parse()
            .map_err(|e| ("api_url", format!("{:?}: {e}", self.api_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err((
                "api_url",
                format!("{:?}: only http and https", self.api_url),
            ));
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be more than 0 (e.g. \"10s\")".into()));
        }
        Ok(())
    }
}

/// A Telegram chat sink.
#[derive(Clone)]
pub struct Telegram {
    endpoint: reqwest::Url,
    chat_id: ChatId,
    opds: Vec<String>,
    roles: Vec<String>,
    language: Language,
    client: reqwest::Client,
    renderer: Renderer,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telegram")
            .field("chat_id", &self.chat_id)
            .finish_non_exhaustive()
    }
}

/// The `sendMessage` request body.
#[derive(Debug, Serialize)]
struct SendMessage<'a> {
    chat_id: &'a ChatId,
    text: &'a str,
    disable_web_page_preview: bool,
}

/// The Bot API's answer.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Debug, Default, Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// Telegram's limit on one message.
const MAX_TEXT_CHARS: usize = 4096;

impl Telegram {
    /// Builds the client. Errors name the key (`notify.telegram.KEY`) and
    /// never contain the token.
    pub fn new(cfg: &TelegramConfig, renderer: Renderer) -> Result<Self, String> {
        cfg.check()
            .map_err(|(k, m)| format!("notify.telegram.{k}: {m}"))?;
        let base = cfg.api_url.trim_end_matches('/');
        let endpoint: reqwest::Url = format!("{base}/bot{}/sendMessage", cfg.token.expose())
            .parse()
            .map_err(|_| "notify.telegram.token: does not make a valid URL".to_string())?;
        super::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("siaga-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("notify.telegram: HTTP client: {e}"))?;
        Ok(Self {
            endpoint,
            chat_id: cfg.chat_id.clone(),
            opds: cfg.opds.clone(),
            roles: cfg.roles.clone(),
            language: cfg.language,
            client,
            renderer,
        })
    }

    /// The chat, for logs (never the token).
    pub fn target(&self) -> String {
        format!("telegram chat {}", self.chat_id)
    }

    /// Whether this chat is told about `ev`: its OPD and one of its roles.
    pub fn wants(&self, ev: &TicketEvent) -> bool {
        let opd_ok = self.opds.is_empty() || self.opds.contains(&ev.opd);
        let roles_ok = self.roles.is_empty() || {
            let mut concerned = ev.role.split(',').map(str::trim).collect::<Vec<_>>();
            if let Some(e) = &ev.escalation {
                concerned.extend(e.notify_roles.iter().map(String::as_str));
            }
            self.roles.iter().any(|r| concerned.contains(&r.as_str()))
        };
        opd_ok && roles_ok
    }

    /// The message text: the body template.
    pub fn text(&self, ev: &TicketEvent) -> String {
        let (_, body) = self.renderer.render(ev, self.language);
        if body.chars().count() > MAX_TEXT_CHARS {
            let mut t: String = body.chars().take(MAX_TEXT_CHARS - 1).collect();
            t.push('…');
            t
        } else {
            body
        }
    }

    /// One attempt. `ok: true` is delivered; 429 is retried after the
    /// `retry_after` the API asks for; 5xx and network errors are retried
    /// with the backoff; other refusals (400 bad chat, 401 bad token, 403
    /// bot blocked) will not get better and are permanent.
    pub async fn send(&self, ev: &TicketEvent) -> Result<(), SendError> {
        let text = self.text(ev);
        let body = SendMessage {
            chat_id: &self.chat_id,
            text: &text,
            disable_web_page_preview: true,
        };
        let resp = self
            .client
            .post(self.endpoint.clone())
            .json(&body)
            .send()
            .await
            // The URL holds the token: drop it from the error.
            .map_err(|e| SendError::Retry(format!("sendMessage: {}", e.without_url())))?;
        let status = resp.status();
        let answer: Answer = resp.json().await.unwrap_or_default();
        if status.is_success() && answer.ok {
            return Ok(());
        }
        let msg = format!(
            "sendMessage: HTTP {status}: {}",
            answer.description.as_deref().unwrap_or("no description")
        );
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let after = answer
                .parameters
                .and_then(|p| p.retry_after)
                .map(Duration::from_secs);
            return Err(match after {
                Some(after) => SendError::RetryAfter(msg, after),
                None => SendError::Retry(msg),
            });
        }
        // Anything else (400 bad chat, 401 bad token, 403 blocked, or a 200
        // with ok: false) is a refusal of these very bytes: not sent again.
        if status.is_server_error() || status == reqwest::StatusCode::REQUEST_TIMEOUT {
            Err(SendError::Retry(msg))
        } else {
            Err(SendError::Permanent(msg))
        }
    }
}
