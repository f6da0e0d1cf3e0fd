//! Notification texts: subject and body per event kind, from templates in
//! `[notify.templates]` (Jinja syntax, rendered with minijinja) or the
//! built-in texts. A template may name only the placeholders listed in
//! [`PLACEHOLDERS`]; any other name is refused when the config is checked,
//! so a typo shows at `validate`, not as an empty field in a message.

use std::collections::BTreeSet;
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use super::{EventKind, Language, TicketEvent};

/// The names a template may use, each a string (numbers are written out).
pub const PLACEHOLDERS: &[&str] = &[
    "ticket",
    "event",
    "what",
    "opd",
    "device",
    "link",
    "problem",
    "origin",
    "step",
    "role",
    "at",
    "opened_at",
    "recovered_at",
    "occurrences",
    "affected",
    "level",
    "due_at",
    "url",
];

/// What a webhook template may use besides [`PLACEHOLDERS`]: the rendered
/// subject and body, and the idempotency key.
pub const WEBHOOK_PLACEHOLDERS: &[&str] = &["subject", "body", "idempotency_key"];

/// Subject and body of one event kind; an absent one keeps the built-in text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageTemplate {
    /// The e-mail subject (one line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The e-mail body and the chat message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// The `[notify.templates]` section: one table per event kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesConfig {
    /// A ticket was opened.
    pub opened: MessageTemplate,
    /// Its device or link recovered.
    pub recovered: MessageTemplate,
    /// It moved to another SOP step.
    pub step_changed: MessageTemplate,
    /// Its step is late (overdue, or past twice the time standard).
    pub escalated: MessageTemplate,
}

impl TemplatesConfig {
    fn of(&self, kind: EventKind) -> &MessageTemplate {
        match kind {
            EventKind::Opened => &self.opened,
            EventKind::Recovered => &self.recovered,
            EventKind::StepChanged => &self.step_changed,
            EventKind::Escalated => &self.escalated,
        }
    }
}

const KINDS: [EventKind; 4] = [
    EventKind::Opened,
    EventKind::Recovered,
    EventKind::StepChanged,
    EventKind::Escalated,
];

const SUBJECT_ID: &str = "[Siaga] Tiket {{ ticket }} {{ what }}: {{ problem }}";
const SUBJECT_EN: &str = "[Siaga] Ticket {{ ticket }} {{ what }}: {{ problem }}";
const BODY_ID: &str = "Tiket pemeliharaan jaringan {{ ticket }} {{ what }}.

OPD       : {{ opd }}
Perangkat : {{ device }}
Link      : {{ link }}
Masalah   : {{ problem }}
Asal      : {{ origin }}
Langkah   : {{ step }} ({{ role }})
Waktu     : {{ at }}
Dibuka    : {{ opened_at }}
Pulih     : {{ recovered_at }}
Kejadian  : {{ occurrences }}

Lihat rinciannya dengan: siaga ticket show {{ ticket }}
{% if url %}Buka di konsol web: {{ url }}
{% endif %}";
const BODY_EN: &str = "Network maintenance ticket {{ ticket }} {{ what }}.

OPD        : {{ opd }}
Device     : {{ device }}
Link       : {{ link }}
Problem    : {{ problem }}
Origin     : {{ origin }}
Step       : {{ step }} ({{ role }})
Time       : {{ at }}
Opened     : {{ opened_at }}
Recovered  : {{ recovered_at }}
Occurrences: {{ occurrences }}

Details: siaga ticket show {{ ticket }}
{% if url %}Web console: {{ url }}
{% endif %}";

fn lang_name(lang: Language) -> &'static str {
    match lang {
        Language::Id => "id",
        Language::En => "en",
    }
}

fn name(lang: Language, kind: EventKind, part: &str) -> String {
    format!("{}.{}.{part}", lang_name(lang), kind.as_str())
}

fn environment(json: bool) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_keep_trailing_newline(true);
    // Every name was checked against the list: a missing one is a bug here,
    // better an error than a silently empty field.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    if json {
        // Values go inside JSON strings the template writes: escape them as
        // string content (quotes, backslashes, newlines), without quotes.
        env.set_formatter(|out, _state, value| {
            let s = value.to_string();
            let quoted = serde_json::to_string(&s).unwrap_or_default();
            let inner = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or_default();
            out.write_str(inner).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())
            })
        });
    }
    env
}

/// Compiles `source` and refuses names outside `allowed` (and the engine's
/// own globals such as `range`). The error says which and lists the known ones.
fn check(env: &Environment<'static>, source: &str, allowed: &[&str]) -> Result<(), String> {
    let t = env
        .template_from_str(source)
        .map_err(|e| format!("not a valid template: {e}"))?;
    let globals: BTreeSet<&str> = env.globals().map(|(k, _)| k).collect();
    let unknown: BTreeSet<String> = t
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !allowed.contains(&v.as_str()) && !globals.contains(v.as_str()))
        .collect();
    if let Some(first) = unknown.iter().next() {
        return Err(format!(
            "unknown placeholder {{{{ {first} }}}}; known: {}",
            allowed.join(", ")
        ));
    }
    Ok(())
}

/// A config key and what is wrong with it.
pub type KeyError = (String, String);

impl TemplatesConfig {
    /// Every configured template compiles and names only known placeholders.
    /// The error names the key, e.g. `notify.templates.opened.body`.
    pub fn check(&self) -> Result<(), KeyError> {
        let env = environment(false);
        for kind in KINDS {
            let t = self.of(kind);
            for (part, src) in [("subject", &t.subject), ("body", &t.body)] {
                if let Some(src) = src {
                    check(&env, src, PLACEHOLDERS)
                        .map_err(|m| (format!("notify.templates.{}.{part}", kind.as_str()), m))?;
                }
            }
        }
        Ok(())
    }
}

/// Checks a webhook's body template.
pub fn check_webhook(source: &str) -> Result<(), String> {
    let all: Vec<&str> = PLACEHOLDERS
        .iter()
        .chain(WEBHOOK_PLACEHOLDERS)
        .copied()
        .collect();
    check(&environment(true), source, &all)
}

/// The values a template sees for one event.
#[derive(Debug, Clone, Serialize)]
pub struct Vars {
    /// Ticket number.
    pub ticket: String,
    /// `opened`, `recovered`, `step_changed` or `escalated`.
    pub event: String,
    /// What happened, in the message's language ("dibuka", "pulih pada …").
    pub what: String,
    /// OPD id.
    pub opd: String,
    /// Device id or "-".
    pub device: String,
    /// Link name or "-".
    pub link: String,
    /// The problem, in the message's language when known.
    pub problem: String,
    /// Where the ticket came from, in the message's language.
    pub origin: String,
    /// Current SOP step.
    pub step: String,
    /// Whose turn it is (role ids).
    pub role: String,
    /// When it happened.
    pub at: String,
    /// When the ticket was opened.
    pub opened_at: String,
    /// When it recovered, or "-".
    pub recovered_at: String,
    /// Occurrences of the problem.
    pub occurrences: String,
    /// Devices unreachable because of it, comma-separated, or "-".
    pub affected: String,
    /// Escalation level ("1", "2"), or "" when not an escalation.
    pub level: String,
    /// When the late step was due, or "".
    pub due_at: String,
    /// The ticket's page in the web console, or "" without `[web] public_url`.
    pub url: String,
}

impl Vars {
    /// The values of `ev` in `lang`, with the console's base URL if known.
    pub fn new(ev: &TicketEvent, lang: Language, console: Option<&str>) -> Self {
        let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        let late2 = ev.escalation.as_ref().is_some_and(|e| e.level >= 2);
        let (what, problem, origin) = match lang {
            Language::Id => (
                match ev.event {
                    EventKind::Opened => "dibuka".to_string(),
                    EventKind::Recovered => format!("pulih pada {}", dash(&ev.recovered_at)),
                    EventKind::StepChanged => {
                        format!("pindah ke langkah {} ({})", ev.step, ev.role)
                    }
                    EventKind::Escalated => format!(
                        "terlambat di langkah {} ({}){}",
                        ev.step,
                        ev.role,
                        if late2 {
                            ", melewati dua kali standar waktu"
                        } else {
                            ""
                        }
                    ),
                },
                ev.problem_id.clone().unwrap_or_else(|| ev.problem.clone()),
                if ev.origin == "detected" {
                    "terdeteksi otomatis oleh Siaga".to_string()
                } else {
                    ev.origin.clone()
                },
            ),
            Language::En => (
                match ev.event {
                    EventKind::Opened => "opened".to_string(),
                    EventKind::Recovered => format!("recovered at {}", dash(&ev.recovered_at)),
                    EventKind::StepChanged => format!("moved to step {} ({})", ev.step, ev.role),
                    EventKind::Escalated => format!(
                        "late at step {} ({}){}",
                        ev.step,
                        ev.role,
                        if late2 {
                            ", past twice the time standard"
                        } else {
                            ""
                        }
                    ),
                },
                ev.problem.clone(),
                ev.origin.clone(),
            ),
        };
        Vars {
            ticket: ev.ticket.clone(),
            event: ev.event.as_str().to_string(),
            what,
            opd: ev.opd.clone(),
            device: dash(&ev.device),
            link: dash(&ev.link),
            problem,
            origin,
            step: ev.step.to_string(),
            role: ev.role.clone(),
            at: ev.at.clone(),
            opened_at: ev.opened_at.clone(),
            recovered_at: dash(&ev.recovered_at),
            occurrences: ev.occurrences.to_string(),
            affected: if ev.affected.is_empty() {
                "-".into()
            } else {
                ev.affected.join(", ")
            },
            level: ev
                .escalation
                .as_ref()
                .map(|e| e.level.to_string())
                .unwrap_or_default(),
            due_at: ev
                .escalation
                .as_ref()
                .map(|e| e.due_at.clone())
                .unwrap_or_default(),
            url: console
                .map(|base| ticket_url(base, &ev.ticket))
                .unwrap_or_default(),
        }
    }
}

/// The web console's page of a ticket under its public base URL.
pub fn ticket_url(base: &str, ticket: &str) -> String {
    format!("{}/tiket/{ticket}", base.trim_end_matches('/'))
}

/// Renders subjects and bodies of every kind in both languages: configured
/// templates where given, the built-in texts elsewhere.
#[derive(Clone)]
pub struct Renderer {
    env: Arc<Environment<'static>>,
    console: Option<String>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("console", &self.console)
            .finish()
    }
}

impl Renderer {
    /// Compiles every template; `console` is the web console's public base
    /// URL (`[web] public_url`), for the `url` placeholder.
    pub fn new(cfg: &TemplatesConfig, console: Option<&str>) -> Result<Self, String> {
        cfg.check().map_err(|(k, m)| format!("{k}: {m}"))?;
        let mut env = environment(false);
        for lang in [Language::Id, Language::En] {
            for kind in KINDS {
                let t = cfg.of(kind);
                let (subject, body) = match lang {
                    Language::Id => (SUBJECT_ID, BODY_ID),
                    Language::En => (SUBJECT_EN, BODY_EN),
                };
                for (part, given, default) in
                    [("subject", &t.subject, subject), ("body", &t.body, body)]
                {
                    let src = given.clone().unwrap_or_else(|| default.to_string());
                    env.add_template_owned(name(lang, kind, part), src)
                        .map_err(|e| format!("notify.templates.{}.{part}: {e}", kind.as_str()))?;
                }
            }
        }
        Ok(Self {
            env: Arc::new(env),
            console: console.map(str::to_string),
        })
    }

    /// The values of one event.
    pub fn vars(&self, ev: &TicketEvent, lang: Language) -> Vars {
        Vars::new(ev, lang, self.console.as_deref())
    }

    /// Subject and body of `ev` in `lang`. A template that fails at render
    /// time (it was checked, so only a bad filter call) falls back to the
    /// built-in text rather than losing the message.
    pub fn render(&self, ev: &TicketEvent, lang: Language) -> (String, String) {
        let vars = self.vars(ev, lang);
        let one = |part: &str| -> String {
            let n = name(lang, ev.event, part);
            match self.env.get_template(&n).and_then(|t| t.render(&vars)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(template = %n, error = %e, "notification template failed; built-in text used");
                    let default = match (lang, part) {
                        (Language::Id, "subject") => SUBJECT_ID,
                        (Language::Id, _) => BODY_ID,
                        (Language::En, "subject") => SUBJECT_EN,
                        (Language::En, _) => BODY_EN,
                    };
                    environment(false)
                        .render_str(default, &vars)
                        .unwrap_or_default()
                }
            }
        };
        (one("subject"), one("body"))
    }
}

/// A webhook's own body template, rendered with JSON-escaped values.
#[derive(Clone)]
pub struct WebhookTemplate {
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for WebhookTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookTemplate")
    }
}

#[derive(Serialize)]
struct WebhookVars<'a> {
    #[serde(flatten)]
    vars: &'a Vars,
    subject: &'a str,
    body: &'a str,
    idempotency_key: &'a str,
}

impl WebhookTemplate {
    /// Compiles and checks `source`.
    pub fn new(source: &str) -> Result<Self, String> {
        check_webhook(source)?;
        let mut env = environment(true);
        env.add_template_owned("webhook", source.to_string())
            .map_err(|e| format!("not a valid template: {e}"))?;
        Ok(Self { env: Arc::new(env) })
    }

    /// The request body for `ev` (Bahasa Indonesia texts).
    pub fn render(&self, r: &Renderer, ev: &TicketEvent) -> Result<String, String> {
        let vars = r.vars(ev, Language::Id);
        let (subject, body) = r.render(ev, Language::Id);
        let key = ev.idempotency_key();
        self.env
            .get_template("webhook")
            .and_then(|t| {
                t.render(WebhookVars {
                    vars: &vars,
                    subject: &subject,
                    body: &body,
                    idempotency_key: &key,
                })
            })
            .map_err(|e| format!("webhook template: {e}"))
    }
}
