//! The agent host's own health (sysinfo), sent with every heartbeat.

use std::path::{Path, PathBuf};

use siaga_proto::v1::HostMetrics;
use sysinfo::{Disks, Networks, Pid, ProcessesToUpdate, System};

/// Keeps sysinfo's state between samples (CPU usage is a difference).
pub struct HostSampler {
    system: System,
    disks: Disks,
    networks: Networks,
    data_dir: PathBuf,
    pid: Option<Pid>,
    cpu_refreshed: std::time::Instant,
}

impl std::fmt::Debug for HostSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSampler")
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl HostSampler {
    /// A sampler reporting disk usage of the filesystem holding `data_dir`.
    pub fn new(data_dir: &Path) -> Result<Self, sysinfo::Error> {
        let mut s = HostSampler {
            system: System::new()?,
            disks: Disks::new_with_refreshed_list()?,
            networks: Networks::new_with_refreshed_list()?,
            data_dir: std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
            pid: sysinfo::get_current_pid().ok(),
            cpu_refreshed: std::time::Instant::now(),
        };
        // Prime the CPU counters so the first sample has a baseline.
        s.system.refresh_cpu_usage();
        Ok(s)
    }

    /// Current figures. CPU usage is over the time since the previous call.
    pub fn sample(&mut self) -> HostMetrics {
        // Closer together than this, sysinfo's CPU figure is noise; keep
        // the previous one.
        if self.cpu_refreshed.elapsed() >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            self.system.refresh_cpu_usage();
            self.cpu_refreshed = std::time::Instant::now();
        }
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);
        let rss = self.pid.map_or(0, |pid| {
            self.system
                .refresh_processes(ProcessesToUpdate::Some(&[pid]), true);
            self.system.process(pid).map_or(0, |p| p.memory())
        });
        let total = self.system.total_memory();
        let used = total.saturating_sub(self.system.available_memory());
        let (net_rx, net_tx) = self
            .networks
            .iter()
            .filter(|(name, _)| name.as_os_str() != "lo")
            .fold((0u64, 0u64), |(rx, tx), (_, n)| {
                (
                    rx.saturating_add(n.total_received()),
                    tx.saturating_add(n.total_transmitted()),
                )
            });
        HostMetrics {
            cpu_pct: f64::from(self.system.global_cpu_usage()),
            mem_used_pct: pct(used, total),
            disk_used_pct: self.disk_used_pct(),
            mem_total_bytes: total,
            net_rx_bytes: net_rx,
            net_tx_bytes: net_tx,
            agent_rss_bytes: rss,
            uptime_s: System::uptime().unwrap_or(0),
            load1: System::load_average().map_or(0.0, |l| l.one),
        }
    }

    /// Usage of the filesystem with the longest mount point containing the
    /// data directory.
    fn disk_used_pct(&self) -> f64 {
        self.disks
            .iter()
            .filter(|d| self.data_dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
            .map_or(0.0, |d| {
                let total = d.total_space();
                pct(total.saturating_sub(d.available_space()), total)
            })
    }
}

fn pct(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// This host's name, for the Hello.
pub fn hostname() -> String {
    System::host_name().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_plausible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = HostSampler::new(dir.path()).expect("sysinfo");
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let m = s.sample();
        assert!(m.mem_total_bytes > 0);
        assert!(m.mem_used_pct > 0.0 && m.mem_used_pct <= 100.0, "{m:?}");
        assert!(m.disk_used_pct > 0.0 && m.disk_used_pct <= 100.0, "{m:?}");
        assert!((0.0..=100.0).contains(&m.cpu_pct), "{m:?}");
        assert!(m.agent_rss_bytes > 0, "{m:?}");
        assert!(m.uptime_s > 0);
    }
}
