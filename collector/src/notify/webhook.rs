//! Webhook delivery: one JSON POST per ticket event, with an idempotency key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::template::{Renderer, WebhookTemplate};
use super::{SendError, TicketEvent};

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// URL the events are POSTed to (http or https).
    pub url: String,
    /// Time limit of one attempt.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The request body instead of the event's JSON, e.g. for Slack-compatible
    /// incoming webhooks `{"text": "{{ subject }}"}`. Jinja syntax; values are
    /// escaped as JSON string content; the names are those of
    /// `[notify.templates]` plus `subject`, `body` and `idempotency_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The name of the header carrying the idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// A webhook sink with its HTTP client.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
    client: reqwest::Client,
    template: Option<WebhookTemplate>,
    renderer: Renderer,
}

impl Webhook {
    /// Builds the client; a bad URL is an error naming it.
    pub fn new(cfg: &WebhookConfig, renderer: Renderer) -> Result<Self, String> {
        let url: reqwest::Url = cfg
            .url
            .parse()
            .map_err(|e| format!("notify.webhook.url {:?}: {e}", cfg.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "notify.webhook.url {:?}: only http and https",
                cfg.url
            ));
        }
        super::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("siaga-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("notify.webhook: HTTP client: {e}"))?;
        let template = cfg
            .template
            .as_deref()
            .map(WebhookTemplate::new)
            .transpose()
            .map_err(|e| format!("notify.webhook.template: {e}"))?;
        Ok(Self {
            url,
            client,
            template,
            renderer,
        })
    }

    /// The URL, for logs.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// One attempt. 2xx is delivered; 408, 429 and 5xx are retried; other
    /// statuses are permanent failures.
    pub async fn send(&self, ev: &TicketEvent) -> Result<(), SendError> {
        let key = ev.idempotency_key();
        let req = self
            .client
            .post(self.url.clone())
            .header(IDEMPOTENCY_HEADER, &key);
        let req = match &self.template {
            None => req.json(&WebhookBody {
                idempotency_key: &key,
                event: ev,
            }),
            Some(t) => req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(t.render(&self.renderer, ev).map_err(SendError::Permanent)?),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("POST {}: {e}", self.url)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let msg = format!("POST {}: HTTP {status}", self.url);
        if status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Err(SendError::Retry(msg))
        } else {
            Err(SendError::Permanent(msg))
        }
    }
}

/// The JSON body: the event's fields plus `idempotency_key`.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    /// Same as the `Idempotency-Key` header.
    pub idempotency_key: &'a str,
    /// The event.
    #[serde(flatten)]
    pub event: &'a TicketEvent,
}
