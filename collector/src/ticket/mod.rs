//! Tickets opened from incidents: numbering, the durable records, the health
//! task that opens them, and the admin calls that show them.

pub mod api;
pub mod number;
pub mod service;
pub mod store;
pub mod wire;

pub use number::TicketNumber;
pub use service::{HealthCore, HealthHandle, Shared};
pub use store::{TicketHealth, TicketStore};

use std::sync::Arc;

use prometheus_client::registry::Registry;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::CollectorConfig;
use crate::inventory::Inventory;
use crate::notify::Notifier;
use crate::sop::store::SopStore;

/// A window longer than `max` (`[maintenance] max_window`) is refused: a
/// window left open by mistake would hide every fault of what it covers.
pub fn check_window_length(
    schedule: &crate::health::incident::Schedule,
    max: std::time::Duration,
) -> Result<(), String> {
    use crate::health::incident::Schedule;
    let length_s = match schedule {
        Schedule::Once { start_us, end_us } => end_us.saturating_sub(*start_us) / 1_000_000,
        Schedule::Weekly { duration_s, .. } => i64::try_from(*duration_s).unwrap_or(i64::MAX),
    };
    let max_s = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
    if length_s > max_s {
        return Err(format!(
            "maintenance window of {} is longer than the {} allowed ([maintenance] max_window \
             in collector.toml); give an end within that, or several windows",
            humantime::format_duration(std::time::Duration::from_secs(length_s.unsigned_abs())),
            humantime::format_duration(max)
        ));
    }
    Ok(())
}

/// Capacity of the health input queue, in sample batches.
pub const HEALTH_QUEUE: usize = 4096;

/// The running health part: what the server holds.
#[derive(Debug)]
pub struct HealthPart {
    /// Feed samples, heartbeats and inventories here (never waits).
    pub handle: HealthHandle,
    /// Health records, incidents, events, maintenance windows.
    pub store: Arc<TicketStore>,
    /// Ticket event delivery.
    pub notifier: Notifier,
    /// The SOP store tickets live in.
    pub sop_store: Arc<SopStore>,
    /// The health task and the notifier task.
    pub tasks: Vec<JoinHandle<()>>,
    /// The health rules in force (`[health]`).
    pub rules: crate::health::HealthRules,
    /// Longest maintenance window accepted (`[maintenance] max_window`).
    pub max_window: std::time::Duration,
    /// Oldest letter a ticket is entered from (`[tickets] max_letter_age`).
    pub max_letter_age: std::time::Duration,
}

impl HealthPart {
    /// Starts the health engine and the notifier. `db` is the database the
    /// SOP store uses (the health tables sit beside its tables). Counters are
    /// registered in `registry` when given.
    pub fn start(
        cfg: &CollectorConfig,
        inv: &Inventory,
        db: impl Into<crate::kv::Db>,
        sop_store: Arc<SopStore>,
        registry: Option<&mut Registry>,
        cancel: CancellationToken,
    ) -> Result<Self, String> {
        Self::start_with_leases(
            cfg,
            inv,
            db,
            sop_store,
            registry,
            cancel,
            crate::lease::Leases::all(),
        )
    }

    /// [`Self::start`] judging only the OPDs `leases` holds (several
    /// collectors on PostgreSQL).
    pub fn start_with_leases(
        cfg: &CollectorConfig,
        inv: &Inventory,
        db: impl Into<crate::kv::Db>,
        sop_store: Arc<SopStore>,
        registry: Option<&mut Registry>,
        cancel: CancellationToken,
        leases: Arc<crate::lease::Leases>,
    ) -> Result<Self, String> {
        cfg.health.validate().map_err(|e| e.to_string())?;
        let store = Arc::new(TicketStore::new(db).map_err(|e| e.to_string())?);
        let (notifier, dispatcher) = Notifier::new(&cfg.notify, cfg.web.public_url.as_deref())?;
        let core = HealthCore::new(
            cfg.health.clone(),
            inv,
            store.clone(),
            sop_store.clone(),
            Some(notifier.clone()),
        )
        .map_err(|e| e.to_string())?
        .with_leases(leases);
        if let Some(r) = registry {
            notifier.metrics().register(r);
            r.register(
                "health_skipped_batches",
                "Sample batches the health engine skipped because its queue was full (stored all the same)",
                core.shared().skipped_batches.clone(),
            );
            r.register(
                "traps_not_confirmed",
                "linkDown traps that the next poll contradicted (the link was up and no linkUp came), per device",
                core.shared().unconfirmed_traps_metric.clone(),
            );
        }
        if cfg.notify.escalation_every.is_zero() {
            return Err("notify.escalation_every: must be more than 0".into());
        }
        let (handle, health_task) = service::spawn(core, HEALTH_QUEUE, cancel.clone())
            .map_err(|e| format!("cannot start the health engine's thread: {e}"))?;
        let escalation_task = tokio::spawn(escalation_loop(
            sop_store.clone(),
            store.clone(),
            notifier.clone(),
            cfg.notify.escalation_every,
            cancel.clone(),
        ));
        let notify_task = tokio::spawn(dispatcher.run(cancel));
        Ok(Self {
            handle,
            store,
            notifier,
            sop_store,
            tasks: vec![health_task, notify_task, escalation_task],
            rules: cfg.health.clone(),
            max_window: cfg.maintenance.max_window,
            max_letter_age: cfg.tickets.max_letter_age,
        })
    }

    /// After an SOP step taken without error on ticket `number`: a ticket
    /// that moved to another step (disposed or returned) is announced
    /// (webhook, e-mail). (The work report's freezing after the review is
    /// the reports' business: [`crate::hub::Hub::after_step`].)
    pub fn after_step(&self, number: &str, step: crate::sop::workflow::StepTaken) {
        let number = number.trim().to_ascii_uppercase();
        use crate::sop::workflow::StepTaken;
        if matches!(step, StepTaken::Disposed | StepTaken::Returned) {
            self.announce(&number);
        }
    }

    fn announce(&self, number: &str) {
        let moved = self
            .sop_store
            .trail(number)
            .ok()
            .and_then(|t| t.last().cloned())
            .is_some_and(|r| {
                matches!(
                    r.event.kind,
                    crate::sop::workflow::EventKind::Disposed { .. }
                        | crate::sop::workflow::EventKind::Returned { .. }
                )
            });
        if moved
            && let Err(e) =
                service::notify_step_changed(&self.sop_store, &self.store, &self.notifier, number)
        {
            tracing::warn!(ticket = %number, error = %e, "cannot announce the step change");
        }
    }
}

/// Looks for late SOP steps every `every`: each is recorded on its ticket
/// (once per step visit and level, by the SOP store) and sent to the receivers.
async fn escalation_loop(
    sop_store: Arc<SopStore>,
    store: Arc<TicketStore>,
    notifier: Notifier,
    every: std::time::Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (s, t, n) = (sop_store.clone(), store.clone(), notifier.clone());
        let r = tokio::task::spawn_blocking(move || {
            let found = match s.escalations(chrono::Utc::now()) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "escalation check failed");
                    return;
                }
            };
            for e in &found {
                tracing::warn!(
                    ticket = %e.ticket.info.number,
                    step = e.escalation.step,
                    level = e.escalation.level,
                    notify = %e.escalation.notify_roles.join(","),
                    "SOP step overdue; escalated"
                );
                if let Err(err) = service::notify_escalation(&s, &t, &n, e) {
                    tracing::warn!(ticket = %e.ticket.info.number, error = %err, "cannot send the escalation");
                }
            }
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "escalation task failed");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use chrono::Utc;
    use siaga_proto::v1::{IcmpResult, Sample, sample::Kind};

    use super::*;
    use crate::notify::WebhookConfig;
    use crate::notify::tests::{receiver, until};
    use crate::sop::Calendar;
    use crate::sop::file::DEFAULT_SOP;
    use crate::sop::workflow::{Action, Actor};

    #[test]
    fn maintenance_windows_longer_than_the_limit_are_refused() {
        use crate::health::incident::Schedule;
        let day = 86_400_000_000i64;
        let week = Duration::from_secs(7 * 86_400);
        let once = |days: i64| Schedule::Once {
            start_us: 1_800_000_000_000_000,
            end_us: 1_800_000_000_000_000 + days * day,
        };
        assert_eq!(check_window_length(&once(7), week), Ok(()));
        let err = check_window_length(&once(8), week).unwrap_err();
        assert!(
            err.starts_with("maintenance window of 8days is longer than the 7days allowed"),
            "{err}"
        );
        // "Without an end": one that runs for ever.
        let forever = Schedule::Once {
            start_us: 0,
            end_us: i64::MAX,
        };
        assert!(check_window_length(&forever, week).is_err());
        let weekly = |h: u64| Schedule::Weekly {
            days: vec!["sat".into()],
            start: "22:00".into(),
            duration_s: h * 3600,
            utc_offset_minutes: 420,
        };
        assert_eq!(
            check_window_length(&weekly(4), Duration::from_secs(4 * 3600)),
            Ok(())
        );
        assert!(check_window_length(&weekly(5), Duration::from_secs(4 * 3600)).is_err());
    }

    const INV: &str = r#"
interval = "10s"
[[opd]]
id = "dinkes"
name = "Dinas Kesehatan"
[[device]]
id = "dinkes-sw1"
opd = "dinkes"
kind = "switch"
address = "198.18.1.2"
"#;

    fn icmp(seq: u64, loss: f64) -> Sample {
        Sample {
            seq,
            ts_us: Utc::now().timestamp_micros(),
            device: "dinkes-sw1".into(),
            kind: Some(Kind::Icmp(IcmpResult {
                sent: 10,
                received: ((100.0 - loss) / 10.0) as u32,
                loss_pct: loss,
                rtt_avg_us: Some(1_000),
                ..Default::default()
            })),
        }
    }

    #[tokio::test]
    async fn loss_opens_one_ticket_told_once_by_webhook_and_step_changes_are_told_too() {
        let dir = tempfile::tempdir().unwrap();
        let (url, seen) = receiver(vec![500]).await;
        let mut cfg = CollectorConfig::default();
        cfg.notify.webhook.push(WebhookConfig {
            url,
            timeout: Duration::from_secs(5),
            template: None,
        });
        cfg.notify.retry_initial = Duration::from_millis(20);
        let inv = Inventory::parse(Path::new("inventory.toml"), INV).unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("tickets.redb")).unwrap());
        let sop_store = Arc::new(
            SopStore::new(
                db.clone(),
                DEFAULT_SOP,
                Path::new("sop.toml"),
                Calendar::default(),
            )
            .unwrap(),
        );
        sop_store.init().unwrap();
        let mut registry = Registry::with_prefix("siaga_collector");
        let cancel = CancellationToken::new();
        let part = HealthPart::start(
            &cfg,
            &inv,
            db,
            sop_store.clone(),
            Some(&mut registry),
            cancel.clone(),
        )
        .unwrap();
        for seq in 0..3 {
            part.handle.samples("dinkes", vec![icmp(seq, 0.0)]);
        }
        for seq in 3..8 {
            part.handle.samples("dinkes", vec![icmp(seq, 40.0)]);
        }
        let list = || {
            part.sop_store
                .list()
                .unwrap()
                .iter()
                .map(|t| api::ticket_of(&part.store, &part.sop_store, t, Utc::now()).unwrap())
                .collect::<Vec<_>>()
        };
        until("a ticket", || !list().is_empty()).await;
        let tickets = list();
        assert_eq!(tickets.len(), 1);
        let id = tickets[0].id.clone();
        assert!(tickets[0].problem.starts_with("Packet loss 40 %"));
        let m = part.notifier.metrics().clone();
        until("opened delivered", || m.delivered_of("webhook") == 1).await;

        // The Kepala Dinas disposes (step 1 was done by the detection): the
        // ticket moves on and receivers are told.
        let kadis = Actor::new("kadis", &["kepala_dinas"]);
        let action = Action::Dispose {
            to: None,
            note: None,
            measurements: Default::default(),
        };
        let (_, outcome) = sop_store.act(&id, action, &kadis, Utc::now()).unwrap();
        outcome.unwrap();
        part.after_step(&id, crate::sop::workflow::StepTaken::Disposed);
        until("step change delivered", || m.delivered_of("webhook") == 2).await;

        let seen = seen.lock().unwrap().clone();
        let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
        let opened = format!("{id}:opened:1");
        let stepped = format!("{id}:step_changed:2");
        assert_eq!(keys, [opened.as_str(), opened.as_str(), stepped.as_str()]);
        assert_eq!(seen[0].1["step"], 2);
        assert_eq!(seen[0].1["role"], "kepala_dinas");
        assert_eq!(seen[2].1["step"], 3);
        assert_eq!(seen[2].1["role"], "kabid_aptika");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"siaga_collector_notify_retries_total{sink="webhook"} 1"#),
            "{text}"
        );
        cancel.cancel();
        for t in part.tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_restarted_collector_does_not_tell_telegram_of_the_open_ticket_again() {
        use crate::notify::tests::{bot_api, telegram};
        let dir = tempfile::tempdir().unwrap();
        let (api, bot) = bot_api(vec![]).await;
        let mut cfg = CollectorConfig::default();
        cfg.notify.telegram.push(telegram(&api));
        cfg.notify.retry_initial = Duration::from_millis(20);
        let inv = Inventory::parse(Path::new("inventory.toml"), INV).unwrap();
        let db = Arc::new(redb::Database::create(dir.path().join("tickets.redb")).unwrap());
        let sop_store = Arc::new(
            SopStore::new(
                db.clone(),
                DEFAULT_SOP,
                Path::new("sop.toml"),
                Calendar::default(),
            )
            .unwrap(),
        );
        sop_store.init().unwrap();
        let texts = || -> Vec<String> {
            bot.lock()
                .unwrap()
                .iter()
                .map(|(_, b, _)| b["text"].as_str().unwrap_or_default().to_string())
                .collect()
        };

        // First run: the loss opens a ticket; the chat is told once.
        let cancel = CancellationToken::new();
        let part = HealthPart::start(
            &cfg,
            &inv,
            db.clone(),
            sop_store.clone(),
            None,
            cancel.clone(),
        )
        .unwrap();
        for seq in 0..3 {
            part.handle.samples("dinkes", vec![icmp(seq, 0.0)]);
        }
        for seq in 3..8 {
            part.handle.samples("dinkes", vec![icmp(seq, 40.0)]);
        }
        let m = part.notifier.metrics().clone();
        until("opened told", || m.delivered_of("telegram") == 1).await;
        let id = sop_store.list().unwrap()[0].info.number.clone();
        cancel.cancel();
        for t in part.tasks {
            t.await.unwrap();
        }

        // Second run on the same store: the loss goes on, then ends.
        let cancel = CancellationToken::new();
        let part =
            HealthPart::start(&cfg, &inv, db, sop_store.clone(), None, cancel.clone()).unwrap();
        for seq in 8..14 {
            part.handle.samples("dinkes", vec![icmp(seq, 40.0)]);
        }
        for seq in 14..24 {
            part.handle.samples("dinkes", vec![icmp(seq, 0.0)]);
        }
        let m = part.notifier.metrics().clone();
        // The recovery comes after the loss samples: once it is told, the
        // engine has seen them all.
        until("recovery told", || m.delivered_of("telegram") == 1).await;
        let texts = texts();
        assert_eq!(texts.len(), 2, "{texts:#?}");
        assert!(
            texts[0].starts_with(&format!("Tiket pemeliharaan jaringan {id} dibuka.")),
            "{texts:#?}"
        );
        assert!(
            texts[1].starts_with(&format!("Tiket pemeliharaan jaringan {id} pulih pada ")),
            "the only message after the restart is the recovery: {texts:#?}"
        );
        assert_eq!(sop_store.list().unwrap().len(), 1, "still one ticket");
        cancel.cancel();
        for t in part.tasks {
            t.await.unwrap();
        }
    }
}
