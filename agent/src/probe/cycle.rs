//! The SNMP side of the probe cycle: every interval, one poll per device
//! that has SNMP credentials; and the trap receiver, fed by the inventory.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use siaga_proto::v1::{Device, Event, Inventory, sample};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{ProbeError, SpoolError};
use crate::metrics::Metrics;
use crate::probe::snmp::SnmpPoller;
use crate::probe::trap::{TrapCredentials, TrapReceiver, TrapSource};
use crate::scheduler::{CONCURRENCY, InventoryWatch, Rhythm, snmp_cycle_interval};
use crate::spool::SampleSink;

/// Traps waiting to be spooled; beyond this, new ones are dropped (counted
/// in the log) rather than holding up the receiver.
const TRAP_QUEUE: usize = 1024;

/// Whether a device is to be polled over SNMP.
pub fn polled(device: &Device) -> bool {
    device.snmp.as_ref().is_some_and(|t| !t.version.is_empty())
}

/// Runs the SNMP poll cycle.
#[derive(Debug)]
pub struct SnmpCycle {
    /// The poller (keeps each device's previous counters).
    pub poller: Arc<SnmpPoller>,
    /// Where results go.
    pub sink: SampleSink,
    /// The inventory in force.
    pub inventory: InventoryWatch,
    /// Cycle used while the inventory names none.
    pub default_interval: Duration,
    /// Probe counters.
    pub metrics: Metrics,
}

impl SnmpCycle {
    /// Polls every SNMP cycle until `cancel` fires; a new inventory is
    /// polled at once.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut rhythm = Rhythm::new(&self.metrics, "snmp");
        loop {
            let inv = self.inventory.borrow_and_update().clone();
            let cycle = snmp_cycle_interval(inv.as_deref(), self.default_interval);
            if inv.is_none() {
                rhythm.restart();
            }
            let slot = rhythm.begin(Instant::now(), cycle);
            if let Some(inv) = &inv {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = self.cycle(inv) => {}
                }
            }
            let next = rhythm.end(slot, cycle, Instant::now());
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(next) => {}
                r = self.inventory.changed() => {
                    if r.is_err() {
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep_until(next) => {}
                        }
                    } else {
                        rhythm.restart();
                    }
                }
            }
        }
    }

    async fn cycle(&self, inv: &Inventory) {
        futures::stream::iter(inv.devices.iter().filter(|d| polled(d)))
            .for_each_concurrent(CONCURRENCY, |device| async move {
                let (result, events) = self.poller.poll(device, &inv.links).await;
                self.metrics.probe("snmp", result.error.is_empty());
                for event in events {
                    info!(device = %device.id, kind = %event.kind, detail = %event.detail, "snmp event");
                    self.push(&device.id, sample::Kind::Event(event)).await;
                }
                self.push(&device.id, sample::Kind::Snmp(result)).await;
            })
            .await;
    }

    async fn push(&self, device: &str, kind: sample::Kind) {
        match self.sink.push(device.to_string(), kind).await {
            Ok(seq) => debug!(device, seq, "snmp sample spooled"),
            Err(SpoolError::Closed) => {}
            Err(e) => warn!(device, error = %e, "cannot spool sample"),
        }
    }
}

/// The device at `ip` in the inventory, with its links.
pub fn trap_source(inv: &Inventory, ip: IpAddr) -> Option<TrapSource> {
    let device = inv
        .devices
        .iter()
        .find(|d| d.address.trim().parse::<IpAddr>().is_ok_and(|a| a == ip))?;
    Some(TrapSource {
        device: device.id.clone(),
        links: inv
            .links
            .iter()
            .filter(|l| l.device == device.id)
            .cloned()
            .collect(),
        snmp: device.snmp.clone(),
    })
}

/// Binds the trap receiver on `addr` now (so that a bad address fails the
/// start), then keeps it running with the credentials of the inventory in
/// force, rebinding when a new inventory arrives. Events are spooled at once.
pub async fn spawn_trap_receiver(
    addr: SocketAddr,
    mut inventory: InventoryWatch,
    sink: SampleSink,
    metrics: Metrics,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>, ProbeError> {
    let creds = |inv: &Option<Arc<Inventory>>| {
        inv.as_ref()
            .map(|i| TrapCredentials::from_devices(&i.devices))
            .unwrap_or_default()
    };
    let first = TrapReceiver::bind(addr, &creds(&inventory.borrow_and_update()))
        .await?
        .with_metrics(metrics.clone());
    info!(addr = %first.local_addr(), "listening for SNMP traps");
    let (tx, mut rx) = mpsc::channel::<(String, Event)>(TRAP_QUEUE);
    let forward = {
        let cancel = cancel.clone();
        async move {
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => None,
                    n = rx.recv() => n,
                };
                let Some((device, event)) = next else { return };
                match sink.push(device.clone(), sample::Kind::Event(event)).await {
                    Ok(seq) => debug!(device, seq, "trap event spooled"),
                    Err(SpoolError::Closed) => return,
                    Err(e) => warn!(device, error = %e, "cannot spool trap event"),
                }
            }
        }
    };
    Ok(tokio::spawn(async move {
        let forwarder = tokio::spawn(forward);
        let mut receiver = Some(first);
        loop {
            let generation = cancel.child_token();
            let lookup = {
                let inv = inventory.clone();
                move |ip: IpAddr| inv.borrow().as_deref().and_then(|i| trap_source(i, ip))
            };
            let sink = {
                let tx = tx.clone();
                move |device: &str, event: Event| {
                    if tx.try_send((device.to_string(), event)).is_err() {
                        warn!(device, "trap queue full or closed; trap event dropped");
                    }
                }
            };
            let running = receiver
                .take()
                .map(|r| tokio::spawn(r.run(lookup, sink, generation.clone())));
            tokio::select! {
                () = cancel.cancelled() => {
                    generation.cancel();
                    break;
                }
                r = inventory.changed() => {
                    if r.is_err() {
                        // No more inventories: keep the last credentials.
                        cancel.cancelled().await;
                        generation.cancel();
                        break;
                    }
                    generation.cancel();
                    if let Some(t) = running {
                        let _ = t.await;
                    }
                    // Rebind with the new inventory's communities and users.
                    let c = creds(&inventory.borrow_and_update());
                    loop {
                        match TrapReceiver::bind(addr, &c).await {
                            Ok(r) => { receiver = Some(r.with_metrics(metrics.clone())); break; }
                            Err(e) => {
                                warn!(error = %e, "trap receiver rebind failed; retrying in 5 s");
                                tokio::select! {
                                    () = cancel.cancelled() => break,
                                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                                }
                            }
                        }
                    }
                    if cancel.is_cancelled() {
                        break;
                    }
                }
            }
        }
        drop(tx);
        let _ = forwarder.await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use siaga_proto::v1::{Link, SnmpTarget};

    #[test]
    fn traps_are_attributed_by_source_address() {
        let inv = Inventory {
            devices: vec![
                Device {
                    id: "sw1".into(),
                    address: "198.18.0.2".into(),
                    ..Device::default()
                },
                Device {
                    id: "rtr".into(),
                    address: " 198.18.0.6 ".into(),
                    snmp: Some(SnmpTarget {
                        version: "2c".into(),
                        ..SnmpTarget::default()
                    }),
                    ..Device::default()
                },
            ],
            links: vec![
                Link {
                    device: "rtr".into(),
                    interface: "ge0".into(),
                    if_index: 0,
                    name: "wan".into(),
                },
                Link {
                    device: "sw1".into(),
                    interface: "port2".into(),
                    if_index: 0,
                    name: "lan".into(),
                },
            ],
            ..Inventory::default()
        };
        let s = trap_source(&inv, "198.18.0.6".parse().expect("ip")).expect("known");
        assert_eq!(s.device, "rtr");
        assert_eq!(
            s.links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["wan"]
        );
        assert!(trap_source(&inv, "198.18.0.9".parse().expect("ip")).is_none());
        assert!(polled(&inv.devices[1]) && !polled(&inv.devices[0]));
    }
}
