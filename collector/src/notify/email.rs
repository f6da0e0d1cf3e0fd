//! E-mail over SMTP (STARTTLS, or plain for a local relay), in Bahasa
//! Indonesia by default.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::{EventKind, SendError, TicketEvent};

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
    pub fn new(cfg: &EmailConfig) -> Result<Self, String> {
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
        })
    }

    /// One attempt. SMTP permanent (5xx) replies are not retried.
    pub async fn send(&self, ev: &TicketEvent) -> Result<(), SendError> {
        let (subject, body) = render(ev, self.language);
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

/// Subject and body of the e-mail for one event.
pub fn render(ev: &TicketEvent, lang: Language) -> (String, String) {
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let problem = match lang {
        Language::Id => ev.problem_id.clone().unwrap_or_else(|| ev.problem.clone()),
        Language::En => ev.problem.clone(),
    };
    match lang {
        Language::Id => {
            let what = match ev.event {
                EventKind::Opened => "dibuka".to_string(),
                EventKind::Recovered => format!("pulih pada {}", dash(&ev.recovered_at)),
                EventKind::StepChanged => format!("pindah ke langkah {} ({})", ev.step, ev.role),
                EventKind::Escalated => format!(
                    "terlambat di langkah {} ({}){}",
                    ev.step,
                    ev.role,
                    if ev.escalation.as_ref().is_some_and(|e| e.level >= 2) {
                        ", melewati dua kali standar waktu"
                    } else {
                        ""
                    }
                ),
            };
            let subject = format!("[Siaga] Tiket {} {}: {}", ev.ticket, what, problem);
            let origin = if ev.origin == "detected" {
                "terdeteksi otomatis oleh Siaga"
            } else {
                ev.origin.as_str()
            };
            let body = format!(
                "Tiket pemeliharaan jaringan {ticket} {what}.\n\n\
                 OPD       : {opd}\n\
                 Perangkat : {device}\n\
                 Link      : {link}\n\
                 Masalah   : {problem}\n\
                 Asal      : {origin}\n\
                 Langkah   : {step} ({role})\n\
                 Waktu     : {at}\n\
                 Dibuka    : {opened}\n\
                 Pulih     : {recovered}\n\
                 Kejadian  : {occ}\n\n\
                 Lihat rinciannya dengan: siaga ticket show {ticket}\n",
                ticket = ev.ticket,
                opd = ev.opd,
                device = dash(&ev.device),
                link = dash(&ev.link),
                step = ev.step,
                role = ev.role,
                at = ev.at,
                opened = ev.opened_at,
                recovered = dash(&ev.recovered_at),
                occ = ev.occurrences,
            );
            (subject, body)
        }
        Language::En => {
            let what = match ev.event {
                EventKind::Opened => "opened".to_string(),
                EventKind::Recovered => format!("recovered at {}", dash(&ev.recovered_at)),
                EventKind::StepChanged => format!("moved to step {} ({})", ev.step, ev.role),
                EventKind::Escalated => format!(
                    "late at step {} ({}){}",
                    ev.step,
                    ev.role,
                    if ev.escalation.as_ref().is_some_and(|e| e.level >= 2) {
                        ", past twice the time standard"
                    } else {
                        ""
                    }
                ),
            };
            let subject = format!("[Siaga] Ticket {} {}: {}", ev.ticket, what, problem);
            let body = format!(
                "Network maintenance ticket {ticket} {what}.\n\n\
                 OPD        : {opd}\n\
                 Device     : {device}\n\
                 Link       : {link}\n\
                 Problem    : {problem}\n\
                 Origin     : {origin}\n\
                 Step       : {step} ({role})\n\
                 Time       : {at}\n\
                 Opened     : {opened}\n\
                 Recovered  : {recovered}\n\
                 Occurrences: {occ}\n\n\
                 Details: siaga ticket show {ticket}\n",
                ticket = ev.ticket,
                opd = ev.opd,
                device = dash(&ev.device),
                link = dash(&ev.link),
                origin = ev.origin,
                step = ev.step,
                role = ev.role,
                at = ev.at,
                opened = ev.opened_at,
                recovered = dash(&ev.recovered_at),
                occ = ev.occurrences,
            );
            (subject, body)
        }
    }
}
