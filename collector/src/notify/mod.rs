//! Telling people: ticket events (opened, recovered, step changed, escalated)
//! delivered by webhook, e-mail and Telegram in the background, their texts
//! from templates (`template.rs`).
//!
//! [`Notifier::notify`] never waits: it puts the event on a bounded queue and
//! returns. When the queue is full the new event is dropped, counted in
//! `siaga_collector_notify_dropped_total` and logged (the ticket itself is safe in the
//! store; only the message is lost). A dispatcher task takes events off the
//! queue and delivers each to every sink in its own task, retrying with
//! exponential backoff until it is delivered, permanently refused, or out of
//! attempts.

pub mod backoff;
pub mod email;
pub mod telegram;
pub mod template;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use backoff::Backoff;
pub use email::{Email, EmailConfig, Language, Security};
pub use telegram::{ChatId, Secret, Telegram, TelegramConfig};
pub use template::{MessageTemplate, Renderer, TemplatesConfig};
pub use webhook::{Webhook, WebhookConfig};

/// What happened to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A ticket was opened.
    Opened,
    /// Its device or link recovered (the ticket stays open).
    Recovered,
    /// It moved to another SOP step.
    StepChanged,
    /// Its current SOP step is past its time standard (level 1) or past
    /// twice the standard (level 2); `escalation` says who is told.
    Escalated,
}

impl EventKind {
    /// Stable name, used in idempotency keys.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::Recovered => "recovered",
            EventKind::StepChanged => "step_changed",
            EventKind::Escalated => "escalated",
        }
    }
}

/// One ticket event, as sent to receivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketEvent {
    /// Ticket number, e.g. `PJ-2026-0001`.
    pub ticket: String,
    /// What happened.
    pub event: EventKind,
    /// Per-ticket event sequence (1 = opened); with ticket and kind it makes
    /// the idempotency key.
    pub sequence: u64,
    /// When it happened (RFC 3339).
    pub at: String,
    /// OPD id.
    pub opd: String,
    /// Device id, if the ticket is about one.
    pub device: Option<String>,
    /// Link name, if the ticket is about one.
    pub link: Option<String>,
    /// The problem in a sentence (English).
    pub problem: String,
    /// The problem in Bahasa Indonesia, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_id: Option<String>,
    /// `detected` or `letter`.
    pub origin: String,
    /// Current SOP step number.
    pub step: u32,
    /// Whose turn it is (role id).
    pub role: String,
    /// When the ticket was opened (RFC 3339).
    pub opened_at: String,
    /// When it recovered (RFC 3339), if it has.
    pub recovered_at: Option<String>,
    /// Occurrences of the problem.
    pub occurrences: u32,
    /// Devices unreachable because of it.
    #[serde(default)]
    pub affected: Vec<String>,
    /// For `escalated`: the late step and who is told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<EscalationNotice>,
}

/// A late SOP step, as sent to receivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationNotice {
    /// The late step.
    pub step: u32,
    /// 1: past the standard; 2: past twice the standard.
    pub level: u8,
    /// When the step was due (RFC 3339).
    pub due_at: String,
    /// Roles told: the step's actors and the roles above them.
    pub notify_roles: Vec<String>,
    /// Users told by name (the assignee).
    pub notify_users: Vec<String>,
}

impl TicketEvent {
    /// `TICKET:KIND:SEQUENCE`: the same for every attempt of one event.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.ticket, self.event.as_str(), self.sequence)
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another try (network, timeout, 5xx, SMTP 4xx).
    #[error("{0}")]
    Retry(String),
    /// Will not get better (4xx, SMTP 5xx, bad message).
    #[error("{0} (permanent)")]
    Permanent(String),
    /// Worth another try, but not before the receiver says (HTTP 429 with
    /// the Bot API's `retry_after`).
    #[error("{0} (retry after {1:?})")]
    RetryAfter(String, Duration),
}

/// The `[notify]` section of `collector.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Webhook receivers (`[[notify.webhook]]`).
    pub webhook: Vec<WebhookConfig>,
    /// E-mail (`[notify.email]`); none = no e-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
    /// Telegram chats (`[[notify.telegram]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub telegram: Vec<TelegramConfig>,
    /// Subject and body per event kind (`[notify.templates.opened]` …);
    /// absent ones keep the built-in texts.
    pub templates: TemplatesConfig,
    /// Events waiting for delivery; beyond this new events are dropped and counted.
    pub queue_capacity: usize,
    /// Deliveries in flight at once (retries included).
    pub max_in_flight: usize,
    /// Attempts per event and sink before giving up.
    pub max_attempts: u32,
    /// Delay before the first retry.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest delay between retries.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How often late SOP steps are looked for (and escalated).
    #[serde(with = "humantime_serde")]
    pub escalation_every: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            webhook: Vec::new(),
            email: None,
            telegram: Vec::new(),
            templates: TemplatesConfig::default(),
            queue_capacity: 1024,
            max_in_flight: 64,
            // 2 s doubling to 5 min: about an hour and a half of trying.
            max_attempts: 24,
            retry_initial: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            escalation_every: Duration::from_secs(60),
        }
    }
}

/// Delivery counters, labelled by sink (`webhook`, `email` or `telegram`).
#[derive(Debug, Clone, Default)]
pub struct NotifyMetrics {
    /// Events accepted for a sink.
    pub queued: Family<Vec<(String, String)>, Counter>,
    /// Events delivered.
    pub delivered: Family<Vec<(String, String)>, Counter>,
    /// Attempts that failed and were retried.
    pub retries: Family<Vec<(String, String)>, Counter>,
    /// Events given up on (permanent refusal or out of attempts).
    pub failed: Family<Vec<(String, String)>, Counter>,
    /// Events dropped because the queue was full.
    pub dropped: Counter,
}

fn sink(name: &str) -> Vec<(String, String)> {
    vec![("sink".to_string(), name.to_string())]
}

impl NotifyMetrics {
    /// Registers the counters as `notify_*` in the collector's registry
    /// (whose prefix makes them `siaga_collector_notify_*`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("notify");
        r.register(
            "queued",
            "Ticket events accepted for delivery",
            self.queued.clone(),
        );
        r.register(
            "delivered",
            "Ticket events delivered",
            self.delivered.clone(),
        );
        r.register(
            "retries",
            "Delivery attempts that failed and are retried",
            self.retries.clone(),
        );
        r.register("failed", "Ticket events given up on", self.failed.clone());
        r.register(
            "dropped",
            "Ticket events dropped because the queue was full",
            self.dropped.clone(),
        );
    }
    /// Delivered count of one sink.
    pub fn delivered_of(&self, name: &str) -> u64 {
        self.delivered.get_or_create(&sink(name)).get()
    }
    /// Retry count of one sink.
    pub fn retries_of(&self, name: &str) -> u64 {
        self.retries.get_or_create(&sink(name)).get()
    }
    /// Failed count of one sink.
    pub fn failed_of(&self, name: &str) -> u64 {
        self.failed.get_or_create(&sink(name)).get()
    }
}

/// Longest wait a receiver's `retry_after` can impose between two attempts.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The queue was full: the event was dropped (and counted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification queue full: event {0} dropped")]
pub struct QueueFull(pub String);

/// The handle the rest of the collector uses.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::Sender<TicketEvent>,
    metrics: NotifyMetrics,
}

#[derive(Debug, Clone)]
enum Sink {
    Webhook(Webhook),
    Email(Email),
    Telegram(Telegram),
}

impl Sink {
    fn name(&self) -> &'static str {
        match self {
            Sink::Webhook(_) => "webhook",
            Sink::Email(_) => "email",
            Sink::Telegram(_) => "telegram",
        }
    }
    /// Whether the event is for this sink (a Telegram chat may be limited
    /// to some OPDs or roles; webhooks and e-mail take every event).
    fn wants(&self, ev: &TicketEvent) -> bool {
        match self {
            Sink::Telegram(t) => t.wants(ev),
            Sink::Webhook(_) | Sink::Email(_) => true,
        }
    }
    fn target(&self) -> String {
        match self {
            Sink::Webhook(w) => w.url().to_string(),
            Sink::Email(_) => "smtp".to_string(),
            Sink::Telegram(t) => t.target(),
        }
    }
    async fn send(&self, ev: &TicketEvent) -> Result<(), SendError> {
        match self {
            Sink::Webhook(w) => w.send(ev).await,
            Sink::Email(e) => e.send(ev).await,
            Sink::Telegram(t) => t.send(ev).await,
        }
    }
}

/// The background half: run it with [`Dispatcher::run`].
#[derive(Debug)]
pub struct Dispatcher {
    rx: mpsc::Receiver<TicketEvent>,
    sinks: Vec<Sink>,
    metrics: NotifyMetrics,
    backoff: Backoff,
    max_attempts: u32,
    in_flight: Arc<Semaphore>,
}

/// rustls needs one process-wide crypto provider; ours is ring.
pub(crate) fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Notifier {
    /// Builds the sinks from the config. `console` is the web console's
    /// public base URL (`[web] public_url`): messages link to the ticket's
    /// page there. Errors name the key.
    pub fn new(
        cfg: &NotifyConfig,
        console: Option<&str>,
    ) -> Result<(Notifier, Dispatcher), String> {
        let renderer = Renderer::new(&cfg.templates, console)?;
        let mut sinks = Vec::new();
        for w in &cfg.webhook {
            sinks.push(Sink::Webhook(Webhook::new(w, renderer.clone())?));
        }
        if let Some(e) = &cfg.email {
            sinks.push(Sink::Email(Email::new(e, renderer.clone())?));
        }
        for t in &cfg.telegram {
            sinks.push(Sink::Telegram(Telegram::new(t, renderer.clone())?));
        }
        if cfg.queue_capacity == 0 {
            return Err("notify.queue_capacity: must be at least 1".into());
        }
        if cfg.max_attempts == 0 {
            return Err("notify.max_attempts: must be at least 1".into());
        }
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let metrics = NotifyMetrics::default();
        Ok((
            Notifier {
                tx,
                metrics: metrics.clone(),
            },
            Dispatcher {
                rx,
                sinks,
                metrics,
                backoff: Backoff {
                    initial: cfg.retry_initial,
                    max: cfg.retry_max,
                },
                max_attempts: cfg.max_attempts,
                in_flight: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            },
        ))
    }

    /// The counters, to register with the collector's metrics.
    pub fn metrics(&self) -> &NotifyMetrics {
        &self.metrics
    }

    /// Queues an event; never waits. A full queue drops it (counted, logged).
    pub fn notify(&self, ev: TicketEvent) -> Result<(), QueueFull> {
        let key = ev.idempotency_key();
        match self.tx.try_send(ev) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.dropped.inc();
                warn!(event = %key, "notification queue full: event dropped");
                Err(QueueFull(key))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.dropped.inc();
                warn!(event = %key, "notifier stopped: event dropped");
                Err(QueueFull(key))
            }
        }
    }
}

impl Dispatcher {
    /// Delivers until the queue closes or `cancel` fires. Deliveries still
    /// retrying when cancelled are abandoned with a log line.
    pub async fn run(mut self, cancel: CancellationToken) {
        info!(
            task = "notify",
            sinks = self.sinks.len(),
            "notifier started"
        );
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = self.rx.recv() => {
                    let Some(ev) = ev else { break };
                    for s in self.sinks.iter().filter(|s| s.wants(&ev)) {
                        self.metrics.queued.get_or_create(&sink(s.name())).inc();
                        let permit = tokio::select! {
                            _ = cancel.cancelled() => break,
                            p = self.in_flight.clone().acquire_owned() => match p {
                                Ok(p) => p,
                                Err(_) => break,
                            },
                        };
                        tasks.spawn(deliver(
                            s.clone(),
                            ev.clone(),
                            self.metrics.clone(),
                            self.backoff,
                            self.max_attempts,
                            cancel.clone(),
                            permit,
                        ));
                    }
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        // Queue closed: let the deliveries in flight finish (they end on cancel).
        while tasks.join_next().await.is_some() {}
        info!(task = "notify", "notifier stopped");
    }
}

async fn deliver(
    s: Sink,
    ev: TicketEvent,
    metrics: NotifyMetrics,
    backoff: Backoff,
    max_attempts: u32,
    cancel: CancellationToken,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let key = ev.idempotency_key();
    let label = sink(s.name());
    for attempt in 1..=max_attempts {
        let err = match s.send(&ev).await {
            Ok(()) => {
                metrics.delivered.get_or_create(&label).inc();
                info!(sink = s.name(), target = %s.target(), event = %key, attempt, "notification delivered");
                return;
            }
            Err(e) => e,
        };
        if matches!(err, SendError::Permanent(_)) || attempt == max_attempts {
            metrics.failed.get_or_create(&label).inc();
            error!(sink = s.name(), target = %s.target(), event = %key, attempt, error = %err, "notification given up");
            return;
        }
        metrics.retries.get_or_create(&label).inc();
        let delay = match err {
            // The receiver said when: sooner is refused again, and later
            // than asked only wastes the time of the people waiting.
            SendError::RetryAfter(_, after) => after.min(MAX_RETRY_AFTER),
            _ => backoff.delay(attempt),
        };
        warn!(sink = s.name(), target = %s.target(), event = %key, attempt, error = %err, retry_in = ?delay, "notification failed, will retry");
        tokio::select! {
            _ = cancel.cancelled() => {
                warn!(sink = s.name(), event = %key, "shutting down: notification not delivered");
                return;
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests;
