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
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};
use tracing::{error, info, warn};

use crate::admin::AdminService;
use crate::config::CollectorConfig;
use crate::hub::Hub;
use crate::ingest::{UplinkService, now_us};
use crate::inventory::Inventory;
use crate::metrics::{self, Metrics};
use crate::store::{RedbStore, Store, Writer};
use crate::users;

/// How long shutdown waits for streams and the writer before giving up.
pub const GRACE: Duration = Duration::from_secs(10);
/// Ingest queue length (batches) before streams wait.
const WRITE_QUEUE: usize = 256;
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Writes `text` to `path` atomically (readers never see half a file).
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
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
            hub.inventory.send_replace(Arc::new(new));
        }
        Err(e) => {
            hub.metrics.inventory_rejected.inc();
            error!(error = %e, "inventory rejected; the previous one stays in force");
        }
    }
}

/// Runs the collector until SIGTERM or SIGINT.
pub async fn serve(config_path: PathBuf, cfg: CollectorConfig) -> anyhow::Result<()> {
    let inventory = Inventory::load(&cfg.inventory)?;
    let users = users::load_users(&cfg.users)?;
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&cfg.data_dir).with_context(|| {
        format!(
            "opening the store in {} (is another collector running?)",
            cfg.data_dir.display()
        )
    })?);
    let metrics = Arc::new(Metrics::new());
    let hook_metrics = metrics.clone();
    let (writer, writer_thread) = Writer::start(
        store.clone(),
        WRITE_QUEUE,
        Box::new(move |took, batches, _samples| {
            hook_metrics.commit_seconds.observe(took.as_secs_f64());
            hook_metrics.commit_batches.observe(batches as f64);
        }),
    );
    let cancel = CancellationToken::new();
    let hub = Arc::new(Hub::new(
        inventory,
        users,
        cfg.users.clone(),
        store.clone(),
        writer,
        metrics.clone(),
        cancel.clone(),
    )?);

    let tls = ServerTlsConfig::new()
        .identity(TlsIdentity::from_pem(
            std::fs::read(&cfg.tls.cert)
                .with_context(|| format!("reading {}", cfg.tls.cert.display()))?,
            std::fs::read(&cfg.tls.key)
                .with_context(|| format!("reading {}", cfg.tls.key.display()))?,
        ))
        .client_ca_root(Certificate::from_pem(
            std::fs::read(&cfg.tls.ca)
                .with_context(|| format!("reading {}", cfg.tls.ca.display()))?,
        ))
        .client_auth_optional(false)
        .timeout(Duration::from_secs(10));

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

    // Signals: HUP reloads, TERM/INT stop.
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    {
        let hub = hub.clone();
        let cancel = cancel.clone();
        let inv_path = cfg.inventory.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        info!("SIGHUP: reloading inventory and users");
                        reload_inventory(&hub, &inv_path);
                        hub.reload_users();
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
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let server = Server::builder()
        .tls_config(tls)
        .context("TLS configuration")?
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(health_svc)
        .add_service(uplink)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, cancel.clone().cancelled_owned());

    write_atomic(&cfg.data_dir.join("collector.addr"), &format!("{local}\n"))
        .context("writing collector.addr")?;
    info!(%local, config = %config_path.display(), inventory_revision = hub.inventory().revision, "collector serving");

    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        _ = async { cancel.cancelled().await; tokio::time::sleep(GRACE).await } => {
            warn!(grace = ?GRACE, "streams did not close within the grace period; stopping anyway");
            Ok(())
        }
    };
    cancel.cancel();
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
    for f in ["collector.pid", "collector.addr", "metrics.addr"] {
        let _ = std::fs::remove_file(cfg.data_dir.join(f));
    }
    info!("collector stopped");
    Ok(())
}
