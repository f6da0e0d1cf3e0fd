//! The `Events` service: the event log, paged and followed.

use std::sync::Arc;

use siaga_proto::v1;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::api::page::Page;
use crate::api::{ApiError, Caller, limits};
use crate::devices::api::{timestamp, ts_us};
use crate::hub::Hub;
use crate::ticket::store::{EventKey, HealthEvent};

/// Events read from the store at once while a follower catches up.
const FOLLOW_CHUNK: usize = 500;

/// The `Events` gRPC service (events.proto).
#[derive(Debug, Clone)]
pub struct EventsApi {
    hub: Arc<Hub>,
}

impl EventsApi {
    /// The service on `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// The collector's shared state.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

/// The text of an event's key: it sorts as the log does.
pub fn key_text((ts, seq): EventKey) -> String {
    format!("{:020}.{seq:020}", ts.max(0))
}

/// The key of [`key_text`]; `None` when it is not one.
pub fn parse_key(s: &str) -> Option<EventKey> {
    let (ts, seq) = s.split_once('.')?;
    Some((ts.parse().ok()?, seq.parse().ok()?))
}

/// One event as the service gives it.
pub fn event(key: EventKey, e: HealthEvent) -> v1::LogEvent {
    v1::LogEvent {
        ts: Some(timestamp(e.ts_us)),
        kind: v1::log_event_kind::Kind::from(e.kind).into(),
        subject: e.subject,
        device: e.device.unwrap_or_default(),
        link: e.link.unwrap_or_default(),
        opd: e.opd,
        from: e
            .from
            .map(v1::device_info::State::from)
            .unwrap_or_default()
            .into(),
        to: e
            .to
            .map(v1::device_info::State::from)
            .unwrap_or_default()
            .into(),
        flapping: e.flapping,
        reason: e.reason,
        ticket: e.ticket.unwrap_or_default(),
        key: key_text(key),
    }
}

/// Which events a caller's request keeps.
#[derive(Debug, Clone)]
struct Filter {
    caller: Caller,
    opd: String,
    device: String,
    /// Unspecified: every kind.
    kind: v1::log_event_kind::Kind,
}

impl Filter {
    fn keeps(&self, e: &HealthEvent) -> bool {
        self.caller.sees(&e.opd)
            && (self.opd.is_empty() || e.opd == self.opd)
            && (self.device.is_empty() || e.device.as_deref() == Some(self.device.as_str()))
            && (!self.kind.is_set() || v1::log_event_kind::Kind::from(e.kind) == self.kind)
    }
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl siaga_proto::v1::events_server::Events for EventsApi {
    type FollowEventsStream = Stream<v1::LogEvent>;

    async fn list_events(
        &self,
        req: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        limits::text("opd", &r.opd, limits::len::ID)?;
        limits::text("device", &r.device, limits::len::ID)?;
        let kind = v1::log_event_kind::Kind::try_from(r.kind)
            .map_err(|_| ApiError::invalid("kind", format!("{} is not a kind", r.kind)))?;
        let since = r.since.as_ref().map_or(0, ts_us).max(0);
        let until = r.until.as_ref().map_or(i64::MAX, ts_us);
        let page = Page::new(
            r.page_size,
            &r.page_token,
            &format!(
                "since={since}\nuntil={until}\nopd={}\ndevice={}\nkind={}",
                r.opd, r.device, r.kind
            ),
        )?;
        let after = match &page.after {
            Some(k) => Some(parse_key(k).ok_or_else(|| {
                ApiError::invalid("page_token", "not a token this collector gave")
            })?),
            None => None,
        };
        let store = self.hub.health.store.clone();
        let filter = Filter {
            caller,
            opd: r.opd,
            device: r.device,
            kind,
        };
        let size = page.size;
        let rows = crate::api::error::blocking("listing the events", move || {
            // One more than the page: whether there is a next one.
            store
                .events_range(after, since, until, size + 1, |e| filter.keeps(e))
                .map_err(|e| ApiError::internal("listing the events", e))
        })
        .await?;
        let (events, next_page_token) = page
            .take(rows.into_iter().map(|(k, e)| event(k, e)), |e| {
                e.key.clone()
            });
        Ok(Response::new(v1::ListEventsResponse {
            events,
            next_page_token,
        }))
    }

    async fn follow_events(
        &self,
        req: Request<v1::FollowEventsRequest>,
    ) -> Result<Response<Self::FollowEventsStream>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        limits::text("opd", &r.opd, limits::len::ID)?;
        limits::text("after", &r.after, limits::len::ID)?;
        let after = match r.after.as_str() {
            "" => None,
            k => Some(parse_key(k).ok_or_else(|| {
                ApiError::invalid("after", "not the key of an event this collector gave")
            })?),
        };
        let health = self.hub.health.clone();
        // Subscribed before the log is read: nothing recorded in between is lost.
        let mut live = health.handle.shared().feed.subscribe();
        let filter = Filter {
            caller,
            opd: r.opd,
            device: String::new(),
            kind: v1::log_event_kind::Kind::Unspecified,
        };
        let now = crate::ingest::now_us();
        let since = r.since.as_ref().map_or(now, ts_us).max(0);
        // Where the stream stands: what it sent last (or where it starts).
        let mut last: Option<EventKey> = after;
        let start_from_log = after.is_some() || r.since.is_some();
        let cancel = self.hub.cancel.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut catch_up = start_from_log;
            loop {
                if catch_up {
                    // Read the log after `last` until it is exhausted.
                    loop {
                        let (store, f) = (health.store.clone(), filter.clone());
                        let from = last;
                        let rows = crate::api::error::blocking("reading the events", move || {
                            store
                                .events_range(from, since, i64::MAX, FOLLOW_CHUNK, |e| f.keeps(e))
                                .map_err(|e| ApiError::internal("reading the events", e))
                        })
                        .await;
                        let rows = match rows {
                            Ok(r) => r,
                            Err(e) => {
                                let _ = tx.send(Err(e.into())).await;
                                return;
                            }
                        };
                        let n = rows.len();
                        for (k, e) in rows {
                            last = Some(k);
                            if tx.send(Ok(event(k, e))).await.is_err() {
                                return;
                            }
                        }
                        if n < FOLLOW_CHUNK {
                            break;
                        }
                    }
                    catch_up = false;
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = cancel.cancelled() => return,
                    got = live.recv() => match got {
                        Ok((k, e)) => {
                            if last.is_some_and(|l| k <= l) || !filter.keeps(&e) {
                                continue;
                            }
                            if last.is_none() && e.ts_us < since {
                                continue;
                            }
                            last = Some(k);
                            if tx.send(Ok(event(k, e))).await.is_err() {
                                return;
                            }
                        }
                        // Fell behind: what was dropped is in the log.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => catch_up = true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
pub mod tests {
    use std::sync::Arc;

    use siaga_proto::v1;
    use siaga_proto::v1::events_client::EventsClient;

    use crate::api::matrix::{Case, Outcome};
    use crate::api::testing::{Fixture, OWN};

    /// The fixture has no events yet: an answer without error is the OPD's
    /// (empty) log, except for the pemohon asking about the other OPD, whose
    /// answer must be empty too. Weak until the fixture can seed events.
    fn answer(person: &str, opd: &str, events: &[v1::LogEvent]) -> Outcome {
        if events.iter().any(|e| e.opd != opd) {
            return Outcome::Refused(tonic::Code::Internal, "another OPD's event".into());
        }
        if person == "opd" && opd != OWN {
            Outcome::Hidden
        } else {
            Outcome::Seen
        }
    }

    /// The matrix cases of the `Events` service.
    pub const CASES: &[Case] = &[
        Case {
            rpc: "/siaga.v1.Events/ListEvents",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = EventsClient::new(f.channel(p));
                    match c
                        .list_events(v1::ListEventsRequest {
                            opd: opd.into(),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(r) => answer(p, opd, &r.into_inner().events),
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Events/FollowEvents",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = EventsClient::new(f.channel(p));
                    match c
                        .follow_events(v1::FollowEventsRequest {
                            opd: opd.into(),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(_) => answer(p, opd, &[]),
                        Err(s) => s.into(),
                    }
                })
            },
        },
    ];
}
