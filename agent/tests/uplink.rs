//! The uplink against a fake collector: a real tonic server with real mTLS
//! (certificates made by rcgen), a real spool on disk.

mod common;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siaga_agent::backoff::{Backoff, Jitter};
use siaga_agent::config::SpoolConfig;
use siaga_agent::metrics::Metrics;
use siaga_agent::spool::Spool;
use siaga_agent::uplink::{CollectorTarget, MEASURE_UNSUPPORTED, Uplink, UplinkSettings};
use siaga_proto::v1::uplink_server::{Uplink as UplinkService, UplinkServer};
use siaga_proto::v1::{
    Ack, AgentMessage, CollectorMessage, Device, DiscoverCommand, DiscoverResult, Event, Hello,
    Inventory, MeasureCommand, MeasureResult, Welcome, agent_message, collector_message, sample,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use common::Pki;

/// What the fake collector saw.
#[derive(Default, Debug)]
struct Seen {
    hellos: Vec<Hello>,
    /// (session, seq) in arrival order.
    received: Vec<(usize, u64)>,
    acked: BTreeSet<u64>,
    acked_in_first_session: BTreeSet<u64>,
    heartbeats_with_host: usize,
    measure_results: Vec<MeasureResult>,
    discover_results: Vec<DiscoverResult>,
    /// Batches that arrived before this collector sent its Welcome.
    batches_before_welcome: usize,
}

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Seen>>,
    /// In the first session, acknowledge this many batches, then break the
    /// stream when the next one arrives.
    first_session_acks: usize,
    /// Measurement commands sent after each Hello.
    measure: Vec<MeasureCommand>,
    /// Discovery commands sent after each Hello.
    discover: Vec<DiscoverCommand>,
    /// How long after a Hello the Welcome is sent (a collector busy
    /// storing the agent's record).
    welcome_after: Duration,
}

fn unsupported_probe() -> Vec<MeasureCommand> {
    vec![MeasureCommand {
        id: "m1".into(),
        ticket: "T-1".into(),
        ..Default::default()
    }]
}

type Out = Pin<Box<dyn Stream<Item = Result<CollectorMessage, Status>> + Send>>;

fn msg(m: collector_message::Msg) -> Result<CollectorMessage, Status> {
    Ok(CollectorMessage { msg: Some(m) })
}

#[tonic::async_trait]
impl UplinkService for Fake {
    type StreamStream = Out;

    async fn stream(&self, req: Request<Streaming<AgentMessage>>) -> Result<Response<Out>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let seen = self.seen.clone();
        let first_session_acks = self.first_session_acks;
        let measure = self.measure.clone();
        let discover = self.discover.clone();
        let welcome_after = self.welcome_after;
        tokio::spawn(async move {
            let mut session = 0;
            let mut acked_batches = 0;
            while let Ok(Some(m)) = inbound.message().await {
                match m.msg {
                    Some(agent_message::Msg::Hello(h)) => {
                        session = {
                            let mut s = seen.lock().expect("lock");
                            s.hellos.push(h);
                            s.hellos.len()
                        };
                        // Batches that arrive while the Welcome is held back
                        // are counted (and then dropped, unacknowledged).
                        let hold = tokio::time::sleep(welcome_after);
                        tokio::pin!(hold);
                        while !welcome_after.is_zero() {
                            tokio::select! {
                                biased;
                                () = &mut hold => break,
                                m = inbound.message() => match m {
                                    Ok(Some(AgentMessage {
                                        msg: Some(agent_message::Msg::Batch(_)),
                                    })) => seen.lock().expect("lock").batches_before_welcome += 1,
                                    Ok(Some(_)) => {}
                                    _ => return,
                                },
                            }
                        }
                        let _ = tx
                            .send(msg(collector_message::Msg::Welcome(Welcome {
                                protocol_major: siaga_proto::PROTOCOL_MAJOR,
                                protocol_minor: siaga_proto::PROTOCOL_MINOR,
                                collector_version: "fake".into(),
                                agent_id: "a1".into(),
                                opd: "dinkes".into(),
                            })))
                            .await;
                        let _ = tx
                            .send(msg(collector_message::Msg::Inventory(Inventory {
                                revision: 7,
                                opd: "dinkes".into(),
                                devices: vec![Device {
                                    id: "lo".into(),
                                    address: "127.0.0.1".into(),
                                    ..Default::default()
                                }],
                                interval_ms: 60_000,
                                ..Default::default()
                            })))
                            .await;
                        for m in &measure {
                            let _ = tx
                                .send(msg(collector_message::Msg::Measure(m.clone())))
                                .await;
                        }
                        for d in &discover {
                            let _ = tx
                                .send(msg(collector_message::Msg::Discover(d.clone())))
                                .await;
                        }
                    }
                    Some(agent_message::Msg::Batch(b)) => {
                        let seqs: Vec<u64> = b.samples.iter().map(|s| s.seq).collect();
                        let break_now = {
                            let mut s = seen.lock().expect("lock");
                            s.received.extend(seqs.iter().map(|q| (session, *q)));
                            let break_now = session == 1 && acked_batches >= first_session_acks;
                            if !break_now {
                                s.acked.extend(seqs.iter().copied());
                                if session == 1 {
                                    s.acked_in_first_session.extend(seqs.iter().copied());
                                }
                            }
                            break_now
                        };
                        if break_now {
                            let _ = tx.send(Err(Status::unavailable("going away"))).await;
                            return;
                        }
                        acked_batches += 1;
                        let _ = tx
                            .send(msg(collector_message::Msg::Ack(Ack {
                                batch_id: b.batch_id,
                                stored: u32::try_from(seqs.len()).unwrap_or(0),
                                duplicates: 0,
                                refused: 0,
                            })))
                            .await;
                    }
                    Some(agent_message::Msg::Heartbeat(h))
                        if h.host.is_some_and(|h| h.mem_total_bytes > 0) =>
                    {
                        seen.lock().expect("lock").heartbeats_with_host += 1;
                    }
                    Some(agent_message::Msg::MeasureResult(r)) => {
                        seen.lock().expect("lock").measure_results.push(r);
                    }
                    Some(agent_message::Msg::DiscoverResult(r)) => {
                        seen.lock().expect("lock").discover_results.push(r);
                    }
                    Some(agent_message::Msg::Heartbeat(_)) | None => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn start_fake(pki: &Pki, fake: Fake) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            pki.read("server.pem"),
            pki.read("server.key"),
        ))
        .client_ca_root(Certificate::from_pem(pki.read("ca.pem")));
    let stop = CancellationToken::new();
    let s = stop.clone();
    let server = Server::builder()
        .tls_config(tls)
        .expect("server tls")
        .add_service(UplinkServer::new(fake));
    tokio::spawn(async move {
        let _ = server
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), s.cancelled())
            .await;
    });
    (format!("https://{addr}"), stop)
}

fn settings(pki: &Pki, url: String) -> UplinkSettings {
    UplinkSettings {
        agent_id: "a1".into(),
        opd: "dinkes".into(),
        collectors: vec![CollectorTarget {
            url,
            tls_name: "localhost".into(),
        }],
        ca: pki.dir.path().join("ca.pem"),
        cert: pki.dir.path().join("agent.pem"),
        key: pki.dir.path().join("agent.key"),
        default_interval: Duration::from_secs(1),
        batch_samples: 100,
        batch_bytes: 1 << 20,
        window: 4,
        backoff: Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(200),
            Jitter::Full,
        ),
        data_dir: pki.dir.path().to_path_buf(),
    }
}

fn event(i: usize) -> sample::Kind {
    sample::Kind::Event(Event {
        kind: "test".into(),
        detail: format!("n{i}"),
        source: "agent".into(),
        ..Default::default()
    })
}

/// Waits (with a generous deadline, never a fixed sleep) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_exactly_the_unacknowledged_after_a_broken_stream() {
    let pki = Pki::new(false);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (url, stop) = start_fake(
        &pki,
        Fake {
            seen: seen.clone(),
            first_session_acks: 2,
            measure: unsupported_probe(),
            discover: vec![],
            welcome_after: Duration::ZERO,
        },
    )
    .await;

    let spool_dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(
        spool_dir.path(),
        &SpoolConfig::default(),
        Metrics::default(),
    )
    .expect("spool");
    let sink = spool.sink();
    // Pushed concurrently, so that the spool commits them in groups.
    let mut pushed: BTreeSet<u64> =
        futures::future::join_all((0..1200).map(|i| sink.push("dev".into(), event(i))))
            .await
            .into_iter()
            .map(|r| r.expect("push"))
            .collect();
    assert_eq!(pushed.len(), 1200);

    let metrics = Metrics::default();
    let (inv_tx, inv_rx) = watch::channel(None);
    let uplink = Uplink::new(settings(&pki, url), spool.clone(), inv_tx, metrics.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(uplink.run(cancel.clone()));

    // Session 2 begins after the fake broke session 1.
    until("a second session", || {
        seen.lock().expect("lock").hellos.len() >= 2
    })
    .await;
    // New samples keep flowing while the replay runs.
    for r in futures::future::join_all((0..300).map(|i| sink.push("dev".into(), event(i)))).await {
        pushed.insert(r.expect("push"));
    }
    until("every sample acknowledged", || {
        seen.lock().expect("lock").acked.len() == pushed.len()
    })
    .await;
    until("the spool emptied", || spool.stats().depth == 0).await;
    until("the measure answer", || {
        !seen.lock().expect("lock").measure_results.is_empty()
    })
    .await;
    cancel.cancel();
    task.await.expect("uplink ends on cancel");
    stop.cancel();

    let s = seen.lock().expect("lock");
    assert_eq!(s.acked, pushed, "everything pushed was delivered");
    assert_eq!(
        s.acked_in_first_session.len(),
        200,
        "two batches of 100 acked"
    );
    let second: Vec<u64> = s
        .received
        .iter()
        .filter(|(sess, _)| *sess == 2)
        .map(|(_, q)| *q)
        .collect();
    // The replay starts at the oldest unacknowledged sample and goes in order.
    let oldest_unacked = pushed
        .iter()
        .find(|q| !s.acked_in_first_session.contains(q))
        .copied();
    assert_eq!(second.first().copied(), oldest_unacked);
    assert!(second.windows(2).all(|w| w[0] < w[1]), "not oldest first");
    // Exactly the unacknowledged ones are sent again: nothing acknowledged
    // in session 1 comes back.
    assert!(second.iter().all(|q| !s.acked_in_first_session.contains(q)));
    let expected_second: BTreeSet<u64> = pushed
        .difference(&s.acked_in_first_session)
        .copied()
        .collect();
    assert_eq!(
        second.iter().copied().collect::<BTreeSet<_>>(),
        expected_second
    );
    // Hello reports what was left: 1200 pushed, 200 acknowledged.
    assert_eq!(s.hellos[1].spool_depth, 1000);
    assert_eq!(s.hellos[0].agent_id, "a1");
    assert_eq!(s.hellos[0].protocol_major, siaga_proto::PROTOCOL_MAJOR);
    assert!(s.heartbeats_with_host >= 1);
    assert_eq!(s.measure_results[0].id, "m1");
    assert_eq!(s.measure_results[0].error, MEASURE_UNSUPPORTED);
    assert!(metrics.reconnects.get() >= 1);
    // The inventory reached the scheduler's watch and the on-disk cache.
    assert_eq!(inv_rx.borrow().as_ref().map(|i| i.revision), Some(7));
    assert_eq!(
        spool.cached_inventory().expect("read").map(|i| i.revision),
        Some(7)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_never_gets_a_stream() {
    let pki = Pki::new(true);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (url, stop) = start_fake(
        &pki,
        Fake {
            seen: seen.clone(),
            first_session_acks: usize::MAX,
            measure: unsupported_probe(),
            discover: vec![],
            welcome_after: Duration::ZERO,
        },
    )
    .await;
    let spool_dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(
        spool_dir.path(),
        &SpoolConfig::default(),
        Metrics::default(),
    )
    .expect("spool");
    spool
        .sink()
        .push("dev".into(), event(0))
        .await
        .expect("push");
    let metrics = Metrics::default();
    let (inv_tx, _inv_rx) = watch::channel(None);
    let uplink = Uplink::new(settings(&pki, url), spool.clone(), inv_tx, metrics.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(uplink.run(cancel.clone()));
    until("several refused attempts", || metrics.reconnects.get() >= 3).await;
    cancel.cancel();
    task.await.expect("uplink ends on cancel");
    stop.cancel();
    assert!(seen.lock().expect("lock").hellos.is_empty());
    assert_eq!(spool.stats().depth, 1, "nothing deleted without an ack");
}

/// A measurement runs in its own task: batches keep being sent and
/// acknowledged while it runs, its answer carries every round trip, and an
/// unknown device is an answer naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurements_run_beside_the_stream_and_answer() {
    let Ok(prober) = siaga_agent::probe::icmp::IcmpProber::new() else {
        return; // no ICMP rights here; the lab tests cover it
    };
    let pki = Pki::new(false);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (url, stop) = start_fake(
        &pki,
        Fake {
            seen: seen.clone(),
            first_session_acks: usize::MAX,
            measure: vec![
                MeasureCommand {
                    id: "M-000001".into(),
                    ticket: "PJ-2026-0001".into(),
                    devices: vec!["lo".into()],
                    icmp_count: 20,
                    window_ms: 2000,
                    ..Default::default()
                },
                MeasureCommand {
                    id: "M-000002".into(),
                    devices: vec!["nope".into()],
                    ..Default::default()
                },
            ],
            discover: vec![],
            welcome_after: Duration::ZERO,
        },
    )
    .await;
    let spool_dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(
        spool_dir.path(),
        &SpoolConfig::default(),
        Metrics::default(),
    )
    .expect("spool");
    let (inv_tx, inv_rx) = watch::channel(None);
    let measurer = siaga_agent::probe::measure::Measurer::new(Arc::new(prober), inv_rx);
    let uplink = Uplink::new(
        settings(&pki, url),
        spool.clone(),
        inv_tx,
        Metrics::default(),
    )
    .with_measurer(measurer);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(uplink.run(cancel.clone()));
    until("the refusal of the unknown device", || {
        !seen.lock().expect("lock").measure_results.is_empty()
    })
    .await;
    // While the burst to "lo" runs (20 echoes over 2 s), samples flow.
    let sink = spool.sink();
    for r in futures::future::join_all((0..300).map(|i| sink.push("dev".into(), event(i)))).await {
        r.expect("push");
    }
    until("every sample acknowledged", || {
        seen.lock().expect("lock").acked.len() == 300
    })
    .await;
    until("the measurement's answer", || {
        seen.lock().expect("lock").measure_results.len() == 2
    })
    .await;
    cancel.cancel();
    task.await.expect("uplink ends on cancel");
    stop.cancel();

    let s = seen.lock().expect("lock");
    // The second command was answered first: the first one's burst did not
    // hold up the stream.
    let refused = &s.measure_results[0];
    assert_eq!(refused.id, "M-000002");
    assert!(refused.error.contains("\"nope\""), "{refused:?}");
    let done = &s.measure_results[1];
    assert_eq!(done.id, "M-000001");
    assert!(done.error.is_empty(), "{done:?}");
    let icmp = match done.samples.first().and_then(|x| x.kind.as_ref()) {
        Some(sample::Kind::Icmp(i)) => i.clone(),
        other => panic!("expected the burst of lo, got {other:?}"),
    };
    assert_eq!(done.samples[0].device, "lo");
    assert_eq!((icmp.sent, icmp.received), (20, 20));
    assert_eq!(icmp.rtts_us.len(), 20);
    assert!(icmp.rtt_p95_us >= icmp.rtt_median_us);
}

/// A discovery runs on the agent beside the stream: a subnet too large is
/// refused with a clear answer; a small one is swept and each host that
/// answers comes back as its own part, then a last part with the counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoveries_sweep_and_answer_in_parts() {
    let Ok(prober) = siaga_agent::probe::icmp::IcmpProber::new() else {
        return; // no ICMP rights here; the lab tests cover it
    };
    let pki = Pki::new(false);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (url, stop) = start_fake(
        &pki,
        Fake {
            seen: seen.clone(),
            first_session_acks: usize::MAX,
            measure: vec![],
            discover: vec![
                DiscoverCommand {
                    id: "D-000001".into(),
                    // 127.0.0.1 and 127.0.0.2: loopback answers both.
                    subnet: "127.0.0.0/30".into(),
                    ..Default::default()
                },
                DiscoverCommand {
                    id: "D-000002".into(),
                    subnet: "10.0.0.0/8".into(),
                    ..Default::default()
                },
            ],
            welcome_after: Duration::ZERO,
        },
    )
    .await;
    let spool_dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(
        spool_dir.path(),
        &SpoolConfig::default(),
        Metrics::default(),
    )
    .expect("spool");
    let (inv_tx, _inv_rx) = watch::channel(None);
    let uplink = Uplink::new(settings(&pki, url), spool, inv_tx, Metrics::default())
        .with_discoverer(siaga_agent::probe::discover::Discoverer::new(Arc::new(
            prober,
        )));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(uplink.run(cancel.clone()));
    until("both discoveries done", || {
        seen.lock()
            .expect("lock")
            .discover_results
            .iter()
            .filter(|r| r.done)
            .count()
            == 2
    })
    .await;
    cancel.cancel();
    task.await.expect("uplink ends on cancel");
    stop.cancel();

    let s = seen.lock().expect("lock");
    let refused: Vec<_> = s
        .discover_results
        .iter()
        .filter(|r| r.id == "D-000002")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].error.contains("at most a /20"),
        "{:?}",
        refused[0]
    );
    let parts: Vec<_> = s
        .discover_results
        .iter()
        .filter(|r| r.id == "D-000001")
        .collect();
    let last = parts.last().expect("parts");
    assert!(last.done && last.error.is_empty(), "{last:?}");
    assert_eq!((last.swept, last.answered), (2, 2));
    let mut hosts: Vec<_> = parts
        .iter()
        .flat_map(|p| p.hosts.iter())
        .map(|h| (h.address.as_str(), h.snmp_error.as_str()))
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        [
            ("127.0.0.1", "no SNMP credentials given"),
            ("127.0.0.2", "no SNMP credentials given")
        ]
    );
}

/// Two collectors listed, the first down from the start and the second
/// breaking its stream after two acknowledged batches: the agent goes on
/// to the next in the list each time, replays exactly the unacknowledged
/// samples there, stays on the collector that works, and says on its
/// metrics where it is and how many failovers it made.
/// A collector that takes a while to welcome the agent (it stores the
/// agent's record first) gets no batch before its Welcome: a stream that
/// ends early has always told which collector took it, and a collector
/// that refuses the agent does so before any sample is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_no_sample_before_the_collectors_welcome() {
    let pki = Pki::new(false);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (url, stop) = start_fake(
        &pki,
        Fake {
            seen: seen.clone(),
            first_session_acks: usize::MAX,
            measure: vec![],
            discover: vec![],
            welcome_after: Duration::from_millis(500),
        },
    )
    .await;
    let spool_dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(
        spool_dir.path(),
        &SpoolConfig::default(),
        Metrics::default(),
    )
    .expect("spool");
    let sink = spool.sink();
    let pushed: BTreeSet<u64> =
        futures::future::join_all((0..300).map(|i| sink.push("dev".into(), event(i))))
            .await
            .into_iter()
            .map(|r| r.expect("push"))
            .collect();
    let (inv_tx, _inv_rx) = watch::channel(None);
    let metrics = Metrics::default();
    let uplink = Uplink::new(settings(&pki, url), spool.clone(), inv_tx, metrics.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(uplink.run(cancel.clone()));

    until("the Hello", || {
        !seen.lock().expect("lock").hellos.is_empty()
    })
    .await;
    // Past the held-back Welcome: whatever the agent sent meanwhile has
    // arrived.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        seen.lock().expect("lock").batches_before_welcome,
        0,
        "batches sent before the Welcome"
    );
    until("the spool emptied", || spool.stats().depth == 0).await;
    cancel.cancel();
    task.await.expect("uplink ends on cancel");
    stop.cancel();
    let s = seen.lock().expect("lock");
    assert_eq!(s.acked, pushed, "every sample acknowledged");
    assert_eq!(s.hellos.len(), 1, "one stream: nothing went wrong");
    assert_eq!(metrics.reconnects.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_next_collector_and_replays_only_the_unacknowledged() {
    let pki = Pki::new(false);
    // A port nothing listens on: connection refused.
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        format!("https://{}", l.local_addr().expect("addr"))
    };
    let seen_a = Arc::new(Mutex::new(Seen::default()));
    let (url_a, stop_a) = start_fake(
        &pki,
        Fake {
            seen: seen_a.clone(),
            first_session_acks: 2,
            measure: vec![],
            discover: vec![],
            welcome_after: Duration::ZERO,
        },
    )
    .await;
    let seen_b = Arc::new(Mutex::new(Seen::default()));
    let (url_b, stop_b) = start_fake(
        &pki,
        Fake {
            seen: seen_b.clone(),
            first_session_acks: usize::MAX,
            measure: vec![],
            discover: vec![],
            welcome_after: Duration::ZERO,
        },
    )
    .await;

    let spool_dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(
        spool_dir.path(),
        &SpoolConfig::default(),
        Metrics::default(),
    )
    .expect("spool");
    let sink = spool.sink();
    let mut pushed: BTreeSet<u64> =
        futures::future::join_all((0..1200).map(|i| sink.push("dev".into(), event(i))))
            .await
            .into_iter()
            .map(|r| r.expect("push"))
            .collect();

    let mut s = settings(&pki, dead.clone());
    for url in [&url_a, &url_b] {
        s.collectors.push(CollectorTarget {
            url: url.clone(),
            tls_name: "localhost".into(),
        });
    }
    let metrics = Metrics::default();
    let (inv_tx, _inv_rx) = watch::channel(None);
    let uplink = Uplink::new(s, spool.clone(), inv_tx, metrics.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(uplink.run(cancel.clone()));

    until("a stream on the third collector", || {
        !seen_b.lock().expect("lock").hellos.is_empty()
    })
    .await;
    for r in futures::future::join_all((0..300).map(|i| sink.push("dev".into(), event(i)))).await {
        pushed.insert(r.expect("push"));
    }
    until("the spool emptied", || spool.stats().depth == 0).await;
    let text = {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &metrics.registry()).expect("encode");
        out
    };
    cancel.cancel();
    task.await.expect("uplink ends on cancel");
    stop_a.cancel();
    stop_b.cancel();

    let (a, b) = (seen_a.lock().expect("lock"), seen_b.lock().expect("lock"));
    assert_eq!(a.acked_in_first_session.len(), 200, "two batches on A");
    let all: BTreeSet<u64> = a.acked.union(&b.acked).copied().collect();
    assert_eq!(all, pushed, "every sample acknowledged by one of them");
    let on_b: Vec<u64> = b.received.iter().map(|(_, q)| *q).collect();
    assert!(
        on_b.iter().all(|q| !a.acked.contains(q)),
        "nothing acknowledged by A is sent to B"
    );
    let oldest_unacked = pushed.iter().find(|q| !a.acked.contains(q)).copied();
    assert_eq!(on_b.first().copied(), oldest_unacked, "replay starts there");
    assert_eq!(
        on_b.iter().copied().collect::<BTreeSet<_>>().len(),
        on_b.len(),
        "nothing sent twice to B"
    );
    // No eager fail-back: A is up again all along, the agent stays on B.
    assert_eq!((a.hellos.len(), b.hellos.len()), (1, 1));
    // Down at the start is no failover; A to B is one.
    assert_eq!(metrics.uplink_failovers.get(), 1);
    assert!(
        text.contains("siaga_agent_uplink_failovers_total 1\n"),
        "{text}"
    );
    for (url, v) in [(&dead, 0), (&url_a, 0), (&url_b, 1)] {
        let line = format!("siaga_agent_uplink_collector{{url=\"{url}\"}} {v}\n");
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
}
