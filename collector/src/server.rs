//! `siaga-collector serve`: the gRPC server (uplink, admin, health) over
//! mutual TLS, the ingest writer, retention, metrics, reload and shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use siaga_proto::MAX_MESSAGE_BYTES;
use siaga_proto::v1::admin_server::AdminServer;
use siaga_proto::v1::uplink_server::UplinkServer;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::{error, info, warn};

use crate::admin::AdminService;
use crate::config::CollectorConfig;
use crate::hub::Hub;
use crate::ingest::{UplinkService, now_us};
use crate::inventory::Inventory;
use crate::metrics::{self, Metrics};
use crate::store::{PgStore, RedbStore, Store, Writer};
use crate::users;

/// How long shutdown waits for streams and the writer before giving up.
pub const GRACE: Duration = Duration::from_secs(10);
/// Ingest queue length (batches) before streams wait.
const WRITE_QUEUE: usize = 256;
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often the revocation list is looked at, so that streams open with a
/// certificate just revoked end within about this long.
const REVOCATION_POLL: Duration = Duration::from_secs(1);
/// How often queued measurements are checked for expiry.
const MEASURE_SWEEP_EVERY: Duration = Duration::from_secs(15);
/// How often queued measurements asked on another collector are looked for.
const MEASURE_PICKUP_EVERY: Duration = Duration::from_millis(500);

/// Writes `text` to `path` atomically (readers never see half a file).
fn write_atomic(path: &Path, text: &str) -> Result<(), crate::safe_file::WriteError> {
    crate::safe_file::write(path, text.as_bytes(), crate::safe_file::PUBLIC)
}

/// Re-reads the inventory: a broken file is logged and the old one stays.
pub fn reload_inventory(hub: &Hub, path: &Path) {
    match Inventory::load(path) {
        Ok(new) => {
            let old = hub.inventory();
            if new.revision == old.revision {
                info!(revision = new.revision, "inventory unchanged");
                return;
            }
            let changed = old.changed_opds(&new);
            info!(revision = new.revision, devices = new.devices.len(), changed_opds = ?changed, "inventory reloaded");
            let new = Arc::new(new);
            hub.health.handle.inventory(new.clone());
            hub.inventory.send_replace(new);
        }
        Err(e) => {
            hub.metrics.inventory_rejected.inc();
            error!(error = %e, "inventory rejected; the previous one stays in force");
        }
    }
}

/// This host's name, for the `leases` table (who holds an OPD).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "collector".into())
}

/// Runs the collector until SIGTERM or SIGINT.
pub async fn serve(config_path: PathBuf, cfg: CollectorConfig) -> anyhow::Result<()> {
    serve_until(config_path, cfg, CancellationToken::new()).await
}

/// Runs the collector until SIGTERM, SIGINT or `cancel`.
pub async fn serve_until(
    config_path: PathBuf,
    cfg: CollectorConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let inventory = Inventory::load(&cfg.inventory)?;
    let store: Arc<dyn Store> = match &cfg.store.url {
        Some(url) => {
            let s = PgStore::open(url)?;
            info!(store = ?s, "samples, rollups and agents in PostgreSQL");
            Arc::new(s)
        }
        None => Arc::new(RedbStore::open(&cfg.data_dir)?),
    };
    crate::backup::remove_leftovers(&cfg.data_dir);
    let mut metrics = Metrics::new();
    // Tickets, their SOP state and the health records share one database:
    // a file beside the samples, or the PostgreSQL database they are in.
    let tickets_db = crate::kv::open(&cfg)?;
    let sop_text = std::fs::read_to_string(&cfg.sop)
        .with_context(|| format!("reading {}", cfg.sop.display()))?;
    let calendar =
        crate::sop::Calendar::new(&cfg.calendar).map_err(|e| anyhow::anyhow!("[calendar]: {e}"))?;
    let sop_store = Arc::new(
        crate::sop::store::SopStore::new(tickets_db.clone(), &sop_text, &cfg.sop, calendar)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    sop_store.init().map_err(|e| anyhow::anyhow!("{e}"))?;
    // The users' roles are checked against the SOP file's, as `validate` does.
    let users = users::load_users_checked(&cfg.users, &users::roles_of(sop_store.sop()))?;
    cfg.check_telegram_roles(&config_path, &users::roles_of(sop_store.sop()))?;
    let (audit_key, created) = crate::anchor::AuditKey::load_or_create(&cfg.audit_key)
        .with_context(|| {
            format!(
                "the audit key {} (create it as root with `siaga-collector audit-key --config {}`)",
                cfg.audit_key.display(),
                config_path.display()
            )
        })?;
    if created {
        warn!(key = %cfg.audit_key.display(), id = %audit_key.id(), "created the audit key; keep it apart from backups");
    }
    let anchor = Arc::new(crate::anchor::Anchor::open(audit_key, &cfg.data_dir)?);
    let first = sop_store
        .set_anchor(anchor)
        .map_err(|e| anyhow::anyhow!("signing the audit trails: {e}"))?;
    if first > 0 {
        info!(
            trails = first,
            "signed the heads of audit trails written before the audit key"
        );
    }
    // Which OPDs this collector judges: all of them, or with several
    // collectors on PostgreSQL those whose lease it holds (`lease.rs`).
    let leases = match &tickets_db {
        crate::kv::Db::Pg(kv) => crate::lease::Leases::on_postgres(
            kv.clone(),
            format!(
                "{}/{}/{:08x}",
                hostname(),
                cfg.listen,
                rand::random::<u32>()
            ),
        ),
        crate::kv::Db::Redb(_) => crate::lease::Leases::all(),
    };
    cfg.measure
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    let measure_store = crate::measure::MeasureStore::new(tickets_db.clone())
        .map_err(|e| anyhow::anyhow!("opening the measurements: {e}"))?;
    let measure = Arc::new(
        if leases.shared() {
            crate::measure::MeasureService::shared(
                measure_store,
                cfg.measure.clone(),
                leases.clone(),
            )
        } else {
            crate::measure::MeasureService::new(measure_store, cfg.measure.clone())
                .map_err(|e| anyhow::anyhow!("opening the measurements: {e}"))?
        }
        .with_zone(sop_store.calendar().zone()),
    );
    let leases_held = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    metrics.registry_mut().register(
        "opd_leases_held",
        "OPDs whose health engine runs on this collector (several collectors on PostgreSQL: the OPD leases it holds)",
        leases_held.clone(),
    );
    let health = crate::ticket::HealthPart::start_with_leases(
        &cfg,
        &inventory,
        tickets_db.clone(),
        sop_store.clone(),
        Some(metrics.registry_mut()),
        cancel.clone(),
        leases.clone(),
    )
    .map_err(|e| anyhow::anyhow!("starting the health engine: {e}"))?;
    // Several collectors on PostgreSQL share revocations and users there
    // (`trust.rs`); the embedded store has only the files.
    let shared = match &tickets_db {
        crate::kv::Db::Pg(_) => Some(tickets_db.clone()),
        crate::kv::Db::Redb(_) => None,
    };
    let reports = {
        let users = cfg.users.clone();
        let shared = shared.clone();
        Arc::new(
            crate::report::Reports::new(tickets_db, sop_store, health.store.clone())
                .map_err(|e| anyhow::anyhow!("opening the work reports: {e}"))?
                .with_people(move || crate::trust::people(&users, shared.as_ref())),
        )
    };
    let metrics = Arc::new(metrics);
    let hook_metrics = metrics.clone();
    let (writer, writer_thread) = Writer::start(
        store.clone(),
        WRITE_QUEUE,
        Box::new(move |took, batches, _samples| {
            hook_metrics.commit_seconds.observe(took.as_secs_f64());
            hook_metrics.commit_batches.observe(batches as f64);
        }),
    );
    let mut revoked =
        crate::revoke::RevocationList::open(&cfg.data_dir).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(db) = &shared {
        revoked = revoked
            .with_shared(db.clone())
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let hub = Arc::new(
        Hub::new(
            inventory,
            users,
            cfg.users.clone(),
            store.clone(),
            writer,
            metrics.clone(),
            cancel.clone(),
            revoked,
            cfg.data_dir.clone(),
            Arc::new(health),
            reports,
            measure.clone(),
        )?
        .with_shared_users(shared),
    );
    hub.refresh_shared_users();
    metrics.watch_network(&hub);
    hub.max_clock_skew_us.store(
        cfg.ingest.max_clock_skew_us(),
        std::sync::atomic::Ordering::Relaxed,
    );
    // Every OPD with an agent is watched from now, also one whose agent went
    // away while the collector was down or never connected.
    hub.refresh_agents(&cfg).await;

    // The TLS handshake is done here rather than by tonic, so that a refused
    // one is seen: logged with the peer and the reason, and counted.
    let tls = crate::listen::server_tls(
        &std::fs::read(&cfg.tls.cert)
            .with_context(|| format!("reading {}", cfg.tls.cert.display()))?,
        &std::fs::read(&cfg.tls.key)
            .with_context(|| format!("reading {}", cfg.tls.key.display()))?,
        &std::fs::read(&cfg.tls.ca).with_context(|| format!("reading {}", cfg.tls.ca.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("TLS configuration: {e}"))?;

    let incoming = TcpIncoming::bind(cfg.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?
        .with_nodelay(Some(true));
    let local = incoming.local_addr().context("listener address")?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    write_atomic(
        &cfg.data_dir.join("collector.pid"),
        &format!("{}\n", std::process::id()),
    )
    .context("writing collector.pid")?;

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = cfg.metrics_listen {
        let listener = metrics::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        let bound = listener.local_addr().context("metrics address")?;
        write_atomic(&cfg.data_dir.join("metrics.addr"), &format!("{bound}\n"))
            .context("writing metrics.addr")?;
        info!(%bound, "metrics at http://{bound}/metrics");
        tasks.spawn(metrics::serve(listener, metrics.clone(), cancel.clone()));
    }
    // The web console: its own listener and task; a failure in it ends at
    // most that task, never the gRPC server below.
    if let Some(addr) = cfg.web.listen {
        let (cert, key) = cfg.web.cert_and_key(&cfg.tls);
        let tls = crate::web::tls_config(
            &std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?,
            &std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
        )
        .map_err(|e| anyhow::anyhow!("[web] TLS: {e}"))?;
        let listener = metrics::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for the web console"))?;
        let bound = listener.local_addr().context("web console address")?;
        write_atomic(&cfg.data_dir.join("web.addr"), &format!("{bound}\n"))
            .context("writing web.addr")?;
        info!(%bound, "web console at https://{bound}/");
        let calendar = crate::sop::Calendar::new(&cfg.calendar)
            .map_err(|e| anyhow::anyhow!("[calendar]: {e}"))?;
        let proxies = cfg
            .web
            .proxies()
            .map_err(|bad| anyhow::anyhow!("[web] trusted_proxies: {bad:?}"))?;
        let web = crate::web::Web::new(hub.clone(), calendar, proxies);
        tasks.spawn(crate::web::serve(listener, tls, web, cancel.clone()));
    }

    // Retention: raw samples older than raw_days.
    if cfg.retention.raw_days > 0 {
        let days = i64::from(cfg.retention.raw_days);
        let store = store.clone();
        let metrics = metrics.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_EVERY);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let before = now_us() - days * 86_400_000_000;
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.prune(before)).await {
                    Ok(Ok(n)) => {
                        metrics.samples_pruned.inc_by(n);
                        if n > 0 {
                            info!(removed = n, days, "retention pruned raw samples");
                        }
                    }
                    Ok(Err(e)) => warn!(error = %e, "retention failed"),
                    Err(e) => warn!(error = %e, "retention task failed"),
                }
            }
        });
    }

    // The availability of finished days, prepared before anyone asks.
    tasks.spawn(crate::report::prepare::run(hub.clone()));

    // A revocation reaches the streams already open without waiting for a call.
    {
        let hub = hub.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(REVOCATION_POLL);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let h = hub.clone();
                let checked = tokio::task::spawn_blocking(move || {
                    h.revoked.refresh();
                    h.revoked.refresh_shared()
                })
                .await;
                match checked {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "revoked certificates in the database unreadable; those known so far stay revoked"),
                    Err(e) => warn!(error = %e, "revocation list check failed"),
                }
            }
        });
    }

    // Users enrolled or changed on another collector of the database.
    if hub.shares_users() {
        let hub = hub.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(crate::hub::SHARED_USERS_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let h = hub.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || h.refresh_shared_users()).await
                {
                    warn!(error = %e, "shared users task failed");
                }
            }
        });
    }

    // Queued measurements expire, lost ones time out, even with no one looking.
    {
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(MEASURE_SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let m = measure.clone();
                match tokio::task::spawn_blocking(move || m.sweep(chrono::Utc::now())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "measurement sweep failed"),
                    Err(e) => warn!(error = %e, "measurement sweep task failed"),
                }
            }
        });
    }

    // The OPD leases: renewed and taken each second; the health engine is
    // told what changed. A clean stop gives them up for the others at once.
    if leases.shared() {
        let hub = hub.clone();
        let cancel = cancel.clone();
        let leases = leases.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(crate::lease::RENEW);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let opds: Vec<String> = hub.inventory().opds.keys().cloned().collect();
                let streams: std::collections::HashSet<String> = hub
                    .agents()
                    .into_iter()
                    .filter(|a| a.streams > 0)
                    .map(|a| a.record.opd)
                    .collect();
                let l = leases.clone();
                let changed = tokio::task::spawn_blocking(move || l.round(&opds, &streams)).await;
                let changed = match changed {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(error = %e, "OPD lease task failed");
                        continue;
                    }
                };
                leases_held.set(i64::try_from(leases.held().len()).unwrap_or(i64::MAX));
                if !changed.is_empty() {
                    info!(gained = ?changed.gained, lost = ?changed.lost, holder = ?leases.holder(), "OPD leases");
                    hub.health.handle.leases(changed).await;
                }
            }
            let l = leases.clone();
            match tokio::task::spawn_blocking(move || l.release()).await {
                Ok(Ok(())) => info!("OPD leases given up"),
                Ok(Err(e)) => warn!(error = %e, "OPD leases not given up; they expire"),
                Err(e) => warn!(error = %e, "OPD lease task failed"),
            }
        });
    }

    // Several collectors: measurements asked on another collector for an
    // agent streaming here are taken from the shared store.
    if leases.shared() {
        let cancel = cancel.clone();
        let measure = hub.measure.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(MEASURE_PICKUP_EVERY);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                measure.pickup().await;
            }
        });
    }

    // Signals: HUP reloads, TERM/INT stop.
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    {
        let hub = hub.clone();
        let cancel = cancel.clone();
        let cfg = cfg.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        info!("SIGHUP: reloading inventory, users and enrolled agents");
                        reload_inventory(&hub, &cfg.inventory);
                        hub.reload_users();
                        hub.refresh_agents(&cfg).await;
                    }
                    _ = term.recv() => { info!("SIGTERM: shutting down"); cancel.cancel(); return; }
                    _ = int.recv() => { info!("SIGINT: shutting down"); cancel.cancel(); return; }
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }

    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<UplinkServer<UplinkService>>().await;
    health.set_serving::<AdminServer<AdminService>>().await;

    let uplink = UplinkServer::new(UplinkService::new(hub.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = AdminServer::new(AdminService::new(hub.clone()))
        .max_decoding_message_size(crate::api::limits::MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    // The people's services: small requests, answers up to the message cap.
    macro_rules! people {
        ($server:ty, $svc:expr) => {{
            health.set_serving::<$server>().await;
            <$server>::new($svc)
                .max_decoding_message_size(crate::api::limits::MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        }};
    }
    use siaga_proto::v1::{
        devices_server::DevicesServer, documents_server::DocumentsServer,
        events_server::EventsServer, measure_server::MeasureServer, reports_server::ReportsServer,
        sop_server::SopServer, tickets_server::TicketsServer, users_server::UsersServer,
    };
    let devices = people!(
        DevicesServer<crate::devices::api::DevicesApi>,
        crate::devices::api::DevicesApi::new(hub.clone())
    );
    let events = people!(
        EventsServer<crate::events::api::EventsApi>,
        crate::events::api::EventsApi::new(hub.clone())
    );
    let tickets = people!(
        TicketsServer<crate::ticket::api::TicketsApi>,
        crate::ticket::api::TicketsApi::new(hub.clone())
    );
    let sop = people!(
        SopServer<crate::sop::api::SopApi>,
        crate::sop::api::SopApi::new(hub.clone())
    );
    let documents = people!(
        DocumentsServer<crate::sop::documents::DocumentsApi>,
        crate::sop::documents::DocumentsApi::new(hub.clone())
    );
    let measure = people!(
        MeasureServer<crate::measure::api::MeasureApi>,
        crate::measure::api::MeasureApi::new(hub.clone())
    );
    let reports = people!(
        ReportsServer<crate::report::api::ReportsApi>,
        crate::report::api::ReportsApi::new(hub.clone())
    );
    let discovery = people!(
        siaga_proto::v1::discovery_server::DiscoveryServer<crate::discover::api::DiscoveryApi>,
        crate::discover::api::DiscoveryApi::new(hub.clone())
    );
    let users = people!(
        UsersServer<crate::users::UsersApi>,
        crate::users::UsersApi::new(hub.clone())
    );

    let server = Server::builder()
        // The policy gate, in front of every service (see api::policy).
        .layer(crate::api::gate::GateLayer::new(hub.clone()))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(health_svc)
        .add_service(uplink)
        .add_service(admin)
        .add_service(devices)
        .add_service(events)
        .add_service(tickets)
        .add_service(sop)
        .add_service(documents)
        .add_service(measure)
        .add_service(reports)
        .add_service(users)
        .add_service(discovery)
        .serve_with_incoming_shutdown(
            crate::listen::tls_handshakes(
                crate::listen::with_backoff(
                    incoming,
                    crate::listen::AcceptErrors::new(
                        "grpc",
                        metrics.accept_errors_of(metrics::Listener::Grpc),
                    ),
                ),
                tls,
                crate::listen::HandshakeRefusals::new(metrics.clone()),
            ),
            cancel.clone().cancelled_owned(),
        );

    write_atomic(&cfg.data_dir.join("collector.addr"), &format!("{local}\n"))
        .context("writing collector.addr")?;
    info!(%local, config = %config_path.display(), inventory_revision = hub.inventory().revision, "collector serving");
    tasks.spawn(crate::systemd::ready(cancel.clone()));

    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        _ = async { cancel.cancelled().await; tokio::time::sleep(GRACE).await } => {
            warn!(grace = ?GRACE, "streams did not close within the grace period; stopping anyway");
            Ok(())
        }
    };
    cancel.cancel();
    crate::systemd::stopping();
    health
        .set_not_serving::<UplinkServer<UplinkService>>()
        .await;
    if let Err(e) = result {
        error!(error = %e, "server failed");
    }
    tasks.shutdown().await;
    // Last handle to the writer: once sessions let go of the hub, the writer
    // commits what is queued and ends.
    drop(hub);
    let joined = tokio::time::timeout(
        GRACE,
        tokio::task::spawn_blocking(move || writer_thread.join()),
    )
    .await;
    if joined.is_err() {
        warn!("the ingest writer did not finish within the grace period");
    }
    for f in [
        "collector.pid",
        "collector.addr",
        "metrics.addr",
        "web.addr",
    ] {
        let _ = std::fs::remove_file(cfg.data_dir.join(f));
    }
    info!("collector stopped");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The real server on a loopback port with certificates made by `init`/`enroll`.

    use std::path::Path;

    use siaga_proto::v1::admin_client::AdminClient;
    use siaga_proto::v1::uplink_client::UplinkClient;
    use siaga_proto::v1::{
        self, AgentMessage, agent_message::Msg as A, collector_message::Msg as C,
    };
    use tonic::transport::{
        Certificate, Channel, ClientTlsConfig, Endpoint, Identity as TlsIdentity,
    };

    use super::*;
    use crate::pki::{self, Ca, Identity};

    const INVENTORY: &str = r#"
interval = "10s"
[[opd]]
id = "a"
[[opd]]
id = "b"
[[device]]
id = "a-dev"
opd = "a"
kind = "switch"
address = "127.0.0.1"
[[device]]
id = "b-dev"
opd = "b"
kind = "switch"
address = "127.0.0.2"
"#;

    async fn channel(
        addr: &str,
        ca: &Path,
        cert_key: Option<(String, String)>,
    ) -> Result<Channel, String> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
            .domain_name("localhost");
        if let Some((cert, key)) = cert_key {
            tls = tls.identity(TlsIdentity::from_pem(cert, key));
        }
        Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))
    }

    fn files(dir: &Path, cert: &str, key: &str) -> Option<(String, String)> {
        Some((
            std::fs::read_to_string(dir.join(cert)).unwrap(),
            std::fs::read_to_string(dir.join(key)).unwrap(),
        ))
    }

    fn icmp(seq: u64, device: &str, received: u32) -> v1::Sample {
        v1::Sample {
            seq,
            ts_us: now_us() - 1000 + seq as i64,
            device: device.into(),
            kind: Some(v1::sample::Kind::Icmp(v1::IcmpResult {
                sent: 4,
                received,
                loss_pct: 100.0 * f64::from(4 - received) / 4.0,
                rtt_avg_us: Some(800),
                ..Default::default()
            })),
        }
    }

    async fn who(ch: Result<Channel, String>) -> Result<String, String> {
        let mut c = AdminClient::new(ch?);
        c.who_am_i(v1::WhoAmIRequest {})
            .await
            .map(|r| r.into_inner().user)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mtls_identities_opd_binding_and_durable_acks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        pki::init(&dir, "127.0.0.1:0".parse().unwrap(), &[]).unwrap();
        std::fs::write(dir.join("inventory.toml"), INVENTORY).unwrap();
        let agent_dir = tmp.path().join("agent");
        pki::enroll_agent(&dir, "a", None, &agent_dir, None).unwrap();
        let user_dir = tmp.path().join("user");
        pki::enroll_user(&dir, "budi", &["helpdesk".into()], None, &user_dir, None).unwrap();

        let config = dir.join("collector.toml");
        let cfg = CollectorConfig::load(&config).unwrap();
        let data_dir = cfg.data_dir.clone();
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve_until(config, cfg, cancel.clone()));
        let addr_file = data_dir.join("collector.addr");
        let mut addr = String::new();
        for _ in 0..300 {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                addr = a.trim().to_string();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!addr.is_empty(), "collector.addr written");
        let ca = dir.join("ca.pem");

        // People: an enrolled user is known; no certificate or another CA's certificate is refused.
        let user = files(&user_dir, "user.pem", "user.key");
        assert_eq!(
            who(channel(&addr, &ca, user.clone()).await).await,
            Ok("budi".into())
        );
        assert!(
            who(channel(&addr, &ca, None).await).await.is_err(),
            "no client certificate"
        );
        let (other_ca, _) = Ca::generate("another CA").unwrap();
        let forged = other_ca
            .client_cert(
                &Identity::User {
                    name: "budi".into(),
                },
                30,
            )
            .unwrap();
        assert!(
            who(channel(&addr, &ca, Some(forged)).await).await.is_err(),
            "certificate of another CA"
        );
        // An agent certificate is refused on the admin API.
        let agent = files(&agent_dir, "agent.pem", "agent.key");
        let err = who(channel(&addr, &ca, agent.clone()).await)
            .await
            .unwrap_err();
        assert!(err.starts_with("PermissionDenied"), "{err}");
        // A user certificate is refused on the uplink.
        let (utx, urx) = tokio::sync::mpsc::channel::<AgentMessage>(4);
        let mut up = UplinkClient::new(channel(&addr, &ca, user.clone()).await.unwrap());
        utx.send(AgentMessage {
            msg: Some(A::Hello(v1::Hello {
                protocol_major: 1,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let status = up
            .stream(tokio_stream::wrappers::ReceiverStream::new(urx))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);

        // The agent of OPD a: Welcome, a's inventory only, acks after commit, b's device refused.
        let (tx, rx) = tokio::sync::mpsc::channel::<AgentMessage>(16);
        let mut up = UplinkClient::new(channel(&addr, &ca, agent).await.unwrap());
        let hello = v1::Hello {
            protocol_major: siaga_proto::PROTOCOL_MAJOR,
            agent_version: "t".into(),
            hostname: "h".into(),
            ..Default::default()
        };
        tx.send(AgentMessage {
            msg: Some(A::Hello(hello)),
        })
        .await
        .unwrap();
        let mut down = up
            .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let next = |m: Option<v1::CollectorMessage>| m.and_then(|m| m.msg);
        match next(down.message().await.unwrap()) {
            Some(C::Welcome(w)) => {
                assert_eq!((w.agent_id.as_str(), w.opd.as_str()), ("a-agent", "a"))
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
        match next(down.message().await.unwrap()) {
            Some(C::Inventory(i)) => {
                assert_eq!(
                    i.devices.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
                    ["a-dev"]
                );
                assert_eq!(i.interval_ms, 10_000);
            }
            other => panic!("expected Inventory, got {other:?}"),
        }
        let batch = v1::SampleBatch {
            batch_id: 7,
            samples: vec![
                icmp(1, "a-dev", 4),
                icmp(2, "b-dev", 4),
                icmp(3, "a-dev", 3),
            ],
        };
        let sent_ts = batch.samples[0].ts_us;
        tx.send(AgentMessage {
            msg: Some(A::Batch(batch.clone())),
        })
        .await
        .unwrap();
        // The reason comes first, naming the batch; then its Ack.
        match next(down.message().await.unwrap()) {
            Some(C::Refusal(r)) => {
                assert_eq!((r.batch_id, r.samples), (7, 1));
                assert!(r.reason.contains("outside the agent's OPD"), "{}", r.reason);
            }
            other => panic!("expected Refusal, got {other:?}"),
        }
        match next(down.message().await.unwrap()) {
            Some(C::Ack(a)) => assert_eq!(
                (a.batch_id, a.stored, a.duplicates, a.refused),
                (7, 2, 0, 1)
            ),
            other => panic!("expected Ack, got {other:?}"),
        }
        // A replay is acknowledged again without doubling anything.
        tx.send(AgentMessage {
            msg: Some(A::Batch(v1::SampleBatch {
                batch_id: 8,
                ..batch
            })),
        })
        .await
        .unwrap();
        // The reason comes first, naming the batch; then its Ack.
        match next(down.message().await.unwrap()) {
            Some(C::Refusal(r)) => {
                assert_eq!((r.batch_id, r.samples), (8, 1));
                assert!(r.reason.contains("outside the agent's OPD"), "{}", r.reason);
            }
            other => panic!("expected Refusal, got {other:?}"),
        }
        match next(down.message().await.unwrap()) {
            Some(C::Ack(a)) => assert_eq!(
                (a.batch_id, a.stored, a.duplicates, a.refused),
                (8, 0, 2, 1)
            ),
            other => panic!("expected Ack, got {other:?}"),
        }

        let ch = channel(&addr, &ca, user).await.unwrap();
        let mut devices_api = v1::devices_client::DevicesClient::new(ch);
        let agents = devices_api
            .list_agents(v1::ListAgentsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .agents;
        let a = agents.iter().find(|a| a.id == "a-agent").unwrap();
        assert!(a.connected);
        assert_eq!(
            (a.opd.as_str(), a.refused, a.hostname.as_str()),
            ("a", 2, "h")
        );
        let history = |device: &'static str| {
            let mut c = devices_api.clone();
            async move {
                let mut s = c
                    .history(v1::HistoryRequest {
                        device: device.into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let mut out = Vec::new();
                while let Some(chunk) = s.message().await.unwrap() {
                    out.extend(chunk.samples);
                }
                out
            }
        };
        let hist = history("a-dev").await;
        assert_eq!(hist.len(), 2);
        assert_eq!((hist[0].received, hist[1].loss_pct), (Some(4), Some(25.0)));
        assert_eq!((hist[0].seq, hist[1].seq), (1, 3));
        // The collector's own receive time, beside the agent's time.
        let received = hist[0]
            .received_at
            .as_ref()
            .map(crate::devices::api::ts_us)
            .unwrap();
        assert!(received >= sent_ts && received <= now_us(), "{received}");
        assert!(history("b-dev").await.is_empty());
        let devices = devices_api
            .list_devices(v1::ListDevicesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .devices;
        let state = |id: &str| {
            devices
                .iter()
                .find(|d| d.id == id)
                .map(|d| d.state().word())
                .unwrap()
        };
        // The health engine confirms a state only after enough cycles in a
        // row (hysteresis); one clean and one lossy burst confirm nothing yet.
        assert_eq!(state("a-dev"), "unknown");
        assert_eq!(state("b-dev"), "unknown");

        // A revoked certificate is refused from the next call on.
        let pem = std::fs::read_to_string(user_dir.join("user.pem")).unwrap();
        crate::revoke::revoke(
            &data_dir,
            &crate::revoke::pem_to_der(&pem).unwrap(),
            "lost laptop",
        )
        .unwrap();
        let err = who(channel(&addr, &ca, files(&user_dir, "user.pem", "user.key")).await)
            .await
            .unwrap_err();
        assert!(
            err.starts_with("Unauthenticated") && err.contains("revoked"),
            "{err}"
        );

        // Shutdown ends the agent's stream and the server.
        cancel.cancel();
        drop(tx);
        while let Ok(Some(_)) = down.message().await {}
        server.await.unwrap().unwrap();
        assert!(!data_dir.join("collector.pid").exists());
        let store = RedbStore::open(&data_dir).unwrap();
        assert_eq!(store.history("a-dev", 0, 10).unwrap().len(), 2);
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_agent_stream_ends_when_its_certificate_is_revoked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        pki::init(&dir, "127.0.0.1:0".parse().unwrap(), &[]).unwrap();
        std::fs::write(dir.join("inventory.toml"), INVENTORY).unwrap();
        let agent_dir = tmp.path().join("agent");
        pki::enroll_agent(&dir, "a", None, &agent_dir, None).unwrap();
        let config = dir.join("collector.toml");
        let cfg = CollectorConfig::load(&config).unwrap();
        let data_dir = cfg.data_dir.clone();
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve_until(config, cfg, cancel.clone()));
        let addr_file = data_dir.join("collector.addr");
        let mut addr = String::new();
        for _ in 0..300 {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                addr = a.trim().to_string();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!addr.is_empty(), "collector.addr written");
        let ca = dir.join("ca.pem");
        let agent = files(&agent_dir, "agent.pem", "agent.key");
        let (tx, rx) = tokio::sync::mpsc::channel::<AgentMessage>(16);
        let mut up = UplinkClient::new(channel(&addr, &ca, agent).await.unwrap());
        tx.send(AgentMessage {
            msg: Some(A::Hello(v1::Hello {
                protocol_major: siaga_proto::PROTOCOL_MAJOR,
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let mut down = up
            .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        assert!(matches!(
            down.message().await.unwrap().and_then(|m| m.msg),
            Some(C::Welcome(_))
        ));
        assert!(matches!(
            down.message().await.unwrap().and_then(|m| m.msg),
            Some(C::Inventory(_))
        ));
        // Nothing more is sent: the stream is idle when the certificate is revoked.
        let pem = std::fs::read_to_string(agent_dir.join("agent.pem")).unwrap();
        crate::revoke::revoke(
            &data_dir,
            &crate::revoke::pem_to_der(&pem).unwrap(),
            "stolen",
        )
        .unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), down.message())
            .await
            .expect("the open stream ends without any call");
        let status = ended.expect_err("ended with an error");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().contains("revoked"), "{status:?}");
        cancel.cancel();
        drop(tx);
        server.await.unwrap().unwrap();
    }
}
