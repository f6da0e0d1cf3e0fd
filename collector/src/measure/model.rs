//! What a measurement is: who asked for it, of what, and the figures the
//! agent sent back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use siaga_proto::v1::{IcmpResult, Interface, MeasureResult, SnmpStatus, sample};

/// Before or after the technician's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Taken before the work started.
    Before,
    /// Taken after the work was finished.
    After,
}

impl Phase {
    /// `before` / `after`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::After => "after",
        }
    }
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "before" | "sebelum" => Ok(Phase::Before),
            "after" | "sesudah" => Ok(Phase::After),
            other => Err(format!("phase must be before or after, not {other:?}")),
        }
    }
}

/// Where a measurement is in its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum MeasureState {
    /// Waiting for the OPD's agent to reconnect; dropped after `expires_at`.
    Queued {
        /// When the queued request lapses.
        expires_at: DateTime<Utc>,
    },
    /// Sent to the agent, result not yet back.
    Running {
        /// When it was sent down the stream.
        sent_at: DateTime<Utc>,
    },
    /// The agent sent the figures.
    Done,
    /// The agent could not take it, or the stream broke.
    Failed {
        /// Why, in a sentence.
        error: String,
    },
    /// Queued and never run before it lapsed.
    Expired,
}

impl MeasureState {
    /// Finished one way or the other.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            MeasureState::Done | MeasureState::Failed { .. } | MeasureState::Expired
        )
    }
}

/// ICMP figures of one device, from an extended burst. Times in µs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceFigures {
    /// Device id.
    pub device: String,
    /// Echo requests sent.
    pub sent: u32,
    /// Replies received.
    pub received: u32,
    /// Loss in percent.
    pub loss_pct: f64,
    /// Smallest round trip.
    pub rtt_min_us: Option<u64>,
    /// Mean round trip.
    pub rtt_avg_us: Option<u64>,
    /// Median round trip.
    pub rtt_median_us: Option<u64>,
    /// 95th percentile round trip.
    pub rtt_p95_us: Option<u64>,
    /// Largest round trip.
    pub rtt_max_us: Option<u64>,
    /// Mean absolute difference of consecutive round trips.
    pub jitter_us: Option<u64>,
    /// Every round trip received, in order (for the report's distribution).
    pub rtts_us: Vec<u64>,
    /// The burst could not be run.
    pub error: Option<String>,
    /// CPU busy, percent (the device's own MIBs, end of the window).
    pub cpu_pct: Option<f64>,
    /// Memory used, percent.
    pub mem_pct: Option<f64>,
    /// Temperature, °C.
    pub temp_c: Option<f64>,
    /// The device's own temperature threshold, °C.
    pub temp_threshold_c: Option<f64>,
}

impl DeviceFigures {
    /// From the agent's ICMP result.
    pub fn from_icmp(device: &str, r: &IcmpResult) -> Self {
        Self {
            device: device.to_string(),
            sent: r.sent,
            received: r.received,
            loss_pct: r.loss_pct,
            rtt_min_us: r.rtt_min_us,
            rtt_avg_us: r.rtt_avg_us,
            rtt_median_us: r.rtt_median_us,
            rtt_p95_us: r.rtt_p95_us,
            rtt_max_us: r.rtt_max_us,
            jitter_us: r.jitter_us,
            rtts_us: r.rtts_us.clone(),
            error: (!r.error.is_empty()).then(|| r.error.clone()),
            ..Self::default()
        }
    }
}

/// SNMP figures of one inventory link over the measurement window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkFigures {
    /// Inventory link name.
    pub name: String,
    /// Device carrying the interface.
    pub device: String,
    /// Interface name as the device reports it.
    pub interface: String,
    /// `up`, `down`, `testing`, … (IF-MIB ifOperStatus).
    pub oper_status: String,
    /// `up`, `down`, `testing` (IF-MIB ifAdminStatus).
    pub admin_status: String,
    /// Link speed in Mbit/s.
    pub speed_mbps: Option<f64>,
    /// Received bits per second over the window.
    pub in_bps: Option<f64>,
    /// Sent bits per second over the window.
    pub out_bps: Option<f64>,
    /// Inbound utilisation of the link speed, %.
    pub util_in_pct: Option<f64>,
    /// Outbound utilisation of the link speed, %.
    pub util_out_pct: Option<f64>,
    /// In + out errors per second.
    pub errors_per_s: Option<f64>,
    /// In + out discards per second.
    pub discards_per_s: Option<f64>,
    /// The device could not be polled (timeout, credentials, garbage).
    pub error: Option<String>,
}

/// IF-MIB status names.
pub fn if_status(v: u32) -> &'static str {
    match v {
        1 => "up",
        2 => "down",
        3 => "testing",
        4 => "unknown",
        5 => "dormant",
        6 => "notPresent",
        7 => "lowerLayerDown",
        _ => "unknown",
    }
}

impl LinkFigures {
    /// From one interface of the agent's SNMP result.
    pub fn from_interface(name: &str, device: &str, i: &Interface) -> Self {
        Self {
            name: name.to_string(),
            device: device.to_string(),
            interface: if i.if_name.is_empty() {
                i.if_descr.clone()
            } else {
                i.if_name.clone()
            },
            oper_status: if_status(i.oper_status).to_string(),
            admin_status: if_status(i.admin_status).to_string(),
            speed_mbps: (i.speed_bps > 0).then(|| i.speed_bps as f64 / 1e6),
            in_bps: i.in_bps,
            out_bps: i.out_bps,
            util_in_pct: i.util_in_pct,
            util_out_pct: i.util_out_pct,
            errors_per_s: i.errors_per_s,
            discards_per_s: i.discards_per_s,
            error: None,
        }
    }
}

/// One measurement: the request and, once back, its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Unique id (`M-000042`).
    pub id: String,
    /// Ticket it belongs to, if taken for one.
    pub ticket: Option<String>,
    /// Before or after the work (only on a ticket).
    pub phase: Option<Phase>,
    /// OPD whose agent takes it.
    pub opd: String,
    /// Devices to burst-ping.
    pub devices: Vec<String>,
    /// Inventory link names to watch.
    pub links: Vec<String>,
    /// Echo requests per device.
    pub icmp_count: u32,
    /// SNMP window, milliseconds.
    pub window_ms: u64,
    /// User who asked.
    pub requested_by: String,
    /// When they asked.
    pub requested_at: DateTime<Utc>,
    /// When the figures came back.
    pub completed_at: Option<DateTime<Utc>>,
    /// Agent that took it.
    pub agent: Option<String>,
    /// Where it is.
    #[serde(flatten)]
    pub state: MeasureState,
    /// ICMP figures per device.
    #[serde(default)]
    pub device_figures: Vec<DeviceFigures>,
    /// SNMP figures per link.
    #[serde(default)]
    pub link_figures: Vec<LinkFigures>,
}

impl Measurement {
    /// The figures of `device`, if measured.
    pub fn device(&self, device: &str) -> Option<&DeviceFigures> {
        self.device_figures.iter().find(|d| d.device == device)
    }

    /// The figures of the link called `name`, if measured.
    pub fn link(&self, name: &str) -> Option<&LinkFigures> {
        self.link_figures.iter().find(|l| l.name == name)
    }

    /// Fills the figures from the agent's answer and marks it done (or
    /// failed when the agent reported an error). `link_device` tells which
    /// device carries an inventory link, so a device that could not be
    /// polled marks each of its links with the reason.
    pub fn complete(
        &mut self,
        result: &MeasureResult,
        agent: &str,
        at: DateTime<Utc>,
        link_device: impl Fn(&str) -> Option<String>,
    ) {
        self.agent = Some(agent.to_string());
        self.completed_at = Some(at);
        if !result.error.is_empty() {
            self.state = MeasureState::Failed {
                error: result.error.clone(),
            };
            return;
        }
        let mut devices = Vec::new();
        let mut links = Vec::new();
        for s in &result.samples {
            match &s.kind {
                Some(sample::Kind::Icmp(r)) => devices.push(DeviceFigures::from_icmp(&s.device, r)),
                Some(sample::Kind::Snmp(r)) => {
                    let status = SnmpStatus::try_from(r.status).unwrap_or(SnmpStatus::Unspecified);
                    let error = (status != SnmpStatus::Ok).then(|| {
                        let what = match status {
                            SnmpStatus::Timeout => "SNMP: no answer (timeout)",
                            SnmpStatus::AuthFailure => "SNMP: credentials rejected",
                            SnmpStatus::Malformed => "SNMP: malformed answer",
                            _ => "SNMP: poll failed",
                        };
                        if r.error.is_empty() {
                            what.to_string()
                        } else {
                            format!("{what}: {}", r.error)
                        }
                    });
                    for name in &self.links {
                        if link_device(name).as_deref() != Some(s.device.as_str()) {
                            continue;
                        }
                        let found = r.interfaces.iter().find(|i| i.link_name == *name);
                        links.push(match (&error, found) {
                            (None, Some(i)) => LinkFigures::from_interface(name, &s.device, i),
                            (Some(e), _) => LinkFigures {
                                name: name.clone(),
                                device: s.device.clone(),
                                error: Some(e.clone()),
                                ..Default::default()
                            },
                            (None, None) => LinkFigures {
                                name: name.clone(),
                                device: s.device.clone(),
                                error: Some("interface not found on the device".into()),
                                ..Default::default()
                            },
                        });
                    }
                }
                _ => {}
            }
        }
        // The device's own health, from its SNMP poll, beside its ICMP figures.
        for s in &result.samples {
            if let Some(sample::Kind::Snmp(r)) = &s.kind
                && r.status == SnmpStatus::Ok as i32
                && let Some(h) = &r.health
                && let Some(d) = devices.iter_mut().find(|d| d.device == s.device)
            {
                d.cpu_pct = h.cpu_pct;
                d.mem_pct = h.mem_pct;
                d.temp_c = h.temp_c;
                d.temp_threshold_c = h.temp_threshold_c;
            }
        }
        self.device_figures = devices;
        self.link_figures = links;
        self.state = MeasureState::Done;
    }
}
