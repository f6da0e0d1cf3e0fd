//! E-mail over SMTP (STARTTLS, or plain for a local relay), in Bahasa
//! Indonesia by default.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::template::Renderer;
use super::{SendError, TicketEvent};

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Upgrade with STARTTLS (required; the server certificate is verified).
    Starttls,
    /// No TLS: only for a relay on the same host or a trusted LAN.
    None,
}

/// Language of the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// Bahasa Indonesia.
    #[default]
    Id,
    /// English.
    En,
}

/// The `[notify.email]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server host name.
    pub host: String,
    /// SMTP port (587 for STARTTLS, 25 for a local relay).
    #[serde(default = "default_port")]
    pub port: u16,
    /// `starttls` or `none`.
    #[serde(default = "default_security")]
    pub security: Security,
    /// Login, if the server wants one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Sender address, e.g. `Siaga <siaga@diskominfo.go.id>`.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// `id` (default) or `en`.
    #[serde(default)]
    pub language: Language,
    /// Time limit of one attempt.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_port() -> u16 {
    587
}
fn default_security() -> Security {
    Security::Starttls
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// An SMTP sink.
#[derive(Clone)]
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    language: Language,
    renderer: Renderer,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish()
    }
}

impl Email {
    /// Builds the transport; bad addresses are errors naming the key.
    pub fn new(cfg: &EmailConfig, renderer: Renderer) -> Result<Self, String> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| format!("notify.email.from {:?}: {e}", cfg.from))?;
        if cfg.to.is_empty() {
            return Err("notify.email.to: at least one recipient".into());
        }
        let to = cfg
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| format!("notify.email.to {t:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        super::install_crypto_provider();
        let builder = match cfg.security {
            Security::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                .map_err(|e| format!("notify.email.host {:?}: {e}", cfg.host))?,
            Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
        };
        let mut builder = builder.port(cfg.port).timeout(Some(cfg.timeout));
        if let Some(user) = &cfg.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                cfg.password.clone().unwrap_or_default(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            to,
            language: cfg.language,
            renderer,
        })
    }

    /// One attempt. SMTP permanent (5xx) replies are not retried.
    pub async fn send(&self, ev: &TicketEvent) -> Result<(), SendError> {
        let (subject, body) = self.renderer.render(ev, self.language);
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for t in &self.to {
            b = b.to(t.clone());
        }
        let msg = b
            .body(body)
            .map_err(|e| SendError::Permanent(format!("building the e-mail: {e}")))?;
        match self.transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::Retry(format!("SMTP: {e}"))),
        }
    }
}

/// Subject and body of the e-mail for one event, with the built-in texts.
pub fn render(ev: &TicketEvent, lang: Language) -> (String, String) {
    match Renderer::new(&Default::default(), None) {
        Ok(r) => r.render(ev, lang),
        Err(e) => (e, String::new()),
    }
}
