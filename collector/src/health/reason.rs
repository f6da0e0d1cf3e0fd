//! Why the health engine acts, as facts: a [`Reason`] holds the subject and
//! the figures (values, thresholds, the SNMP failure, since when), and is
//! written out in Bahasa Indonesia (documents that leave the system: the
//! register, the control card, the work report, e-mail) or English (the CLI,
//! events, logs) from one template per language. The raw diagnostic a device
//! or agent gave (an SNMP library's error text) is kept beside the facts, for
//! the ticket's JSON and the report's appendix, and never in the sentence.

use serde::{Deserialize, Serialize};

use super::state::{Finding, Problem, Resource, Subject, TsUs, fmt_num};
use crate::sop::Lang;

/// How an SNMP poll failed, as the agent classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnmpFailure {
    /// No answer within the time allowed.
    Timeout,
    /// The device refused the credentials (community, user, keys).
    AuthFailure,
    /// The answer could not be decoded.
    Malformed,
    /// Anything else.
    Error,
}

/// What a finding was seen through, beyond its number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// An SNMP poll failed.
    Snmp {
        /// How.
        failure: SnmpFailure,
        /// How long the agent waited, milliseconds, when it said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waited_ms: Option<u64>,
    },
    /// A poll read the interface's oper status (admin up).
    OperStatus {
        /// ifOperStatus (RFC 2863): 2 down, 7 lowerLayerDown, …
        status: u32,
    },
    /// A linkDown trap from the device.
    Trap,
    /// A link-down event the agent saw itself (not a trap).
    AgentEvent,
    /// The threshold crossed is the device's own (a temperature).
    DeviceThreshold,
}

/// How a link was found down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum LinkDownCause {
    /// A poll read its oper status (ifOperStatus, RFC 2863).
    Poll {
        /// The status read: 2 down, 7 lowerLayerDown, …
        oper_status: u32,
    },
    /// A linkDown trap.
    Trap,
    /// The agent saw it go down.
    AgentEvent,
}

/// Why an incident opened, with its facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Every echo request went unanswered.
    NoReply {
        /// Device.
        on: Subject,
        /// The threshold crossed, percent.
        threshold_pct: Option<f64>,
    },
    /// ICMP packet loss.
    Loss {
        /// Device.
        on: Subject,
        /// Loss, percent.
        pct: f64,
        /// The threshold crossed, percent.
        threshold_pct: Option<f64>,
    },
    /// ICMP round-trip time.
    Rtt {
        /// Device.
        on: Subject,
        /// Average round trip, milliseconds.
        ms: f64,
        /// The threshold crossed, milliseconds.
        threshold_ms: Option<f64>,
    },
    /// ICMP jitter.
    Jitter {
        /// Device.
        on: Subject,
        /// Jitter, milliseconds.
        ms: f64,
        /// The threshold crossed, milliseconds.
        threshold_ms: Option<f64>,
    },
    /// The device does not answer SNMP.
    SnmpSilent {
        /// Device id.
        device: String,
        /// How the poll failed.
        failure: SnmpFailure,
        /// How long the agent waited, milliseconds, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waited_ms: Option<u64>,
        /// The agent's raw error text: for the JSON and the appendix only.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        diagnostic: String,
    },
    /// A link is down.
    LinkDown {
        /// Device id.
        device: String,
        /// Link name.
        link: String,
        /// How it was seen.
        cause: LinkDownCause,
    },
    /// A link is too busy.
    Utilisation {
        /// Link (or device).
        on: Subject,
        /// Utilisation, percent.
        pct: f64,
        /// The threshold crossed, percent.
        threshold_pct: Option<f64>,
    },
    /// A link counts errors.
    Errors {
        /// Link (or device).
        on: Subject,
        /// Errors per second.
        per_s: f64,
        /// The threshold crossed, per second.
        threshold_per_s: Option<f64>,
    },
    /// The subject keeps changing state.
    Flapping {
        /// What flaps.
        on: Subject,
        /// Weighted percent of state change.
        pct: f64,
    },
    /// The OPD's agent went silent.
    AgentSilent {
        /// OPD id.
        opd: String,
        /// Last heard, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<TsUs>,
    },
    /// The OPD's agent was enrolled but never connected.
    AgentNeverConnected {
        /// OPD id.
        opd: String,
        /// Watched since.
        watched_since: TsUs,
    },
    /// A device's own CPU, memory or temperature above its threshold.
    Resource {
        /// Device id.
        device: String,
        /// Which resource.
        resource: Resource,
        /// The reading (percent, °C).
        value: f64,
        /// The threshold crossed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold: Option<f64>,
        /// The threshold is the device's own.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        device_threshold: bool,
    },
}

// Figures are finite (non-finite values are never classified as a
// problem), so equality is an equivalence.
impl Eq for Reason {}

/// ifOperStatus by name (RFC 2863).
pub fn oper_name(v: u32) -> &'static str {
    match v {
        1 => "up",
        2 => "down",
        3 => "testing",
        4 => "unknown",
        5 => "dormant",
        6 => "notPresent",
        7 => "lowerLayerDown",
        _ => "invalid",
    }
}

/// A number as people of `lang` write it: at most one decimal, a decimal
/// comma in Bahasa Indonesia.
fn num(lang: Lang, v: f64) -> String {
    let s = fmt_num(v);
    match lang {
        Lang::Id => s.replace('.', ","),
        Lang::En => s,
    }
}

/// The subject inside a sentence ("perangkat X", "link L di perangkat X").
fn on(lang: Lang, s: &Subject) -> String {
    match (lang, s) {
        (Lang::Id, Subject::Device { device }) => format!("perangkat {device}"),
        (Lang::Id, Subject::Link { device, link }) => format!("link {link} di perangkat {device}"),
        (Lang::Id, Subject::Opd { opd }) => format!("OPD {opd}"),
        (Lang::En, Subject::Device { device }) => device.clone(),
        (Lang::En, Subject::Link { device, link }) => format!("link {link} of {device}"),
        (Lang::En, Subject::Opd { opd }) => format!("OPD {opd}"),
        (Lang::Id, Subject::Resource { device, resource }) => {
            format!("{} perangkat {device}", resource_id(*resource))
        }
        (Lang::En, Subject::Resource { device, resource }) => {
            format!("{} of {device}", resource_en(*resource))
        }
    }
}

fn resource_en(r: Resource) -> &'static str {
    match r {
        Resource::Cpu => "CPU",
        Resource::Memory => "memory",
        Resource::Temperature => "temperature",
    }
}

fn resource_id(r: Resource) -> &'static str {
    match r {
        Resource::Cpu => "CPU",
        Resource::Memory => "memori",
        Resource::Temperature => "suhu",
    }
}

/// The first letter in capitals.
fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// " (ambang 20 %)" / " (threshold 20 %)", or nothing.
fn threshold(lang: Lang, t: Option<f64>, unit: &str) -> String {
    let word = match lang {
        Lang::Id => "ambang",
        Lang::En => "threshold",
    };
    t.map(|t| format!(" ({word} {}{unit})", num(lang, t)))
        .unwrap_or_default()
}

/// Whole seconds of a wait, at least 1.
fn seconds(ms: u64) -> u64 {
    ((ms + 500) / 1000).max(1)
}

impl Reason {
    /// The reason for `problem` on `subject`, from the finding that showed
    /// it (and the flap percentage, for flapping).
    pub fn of(
        subject: &Subject,
        problem: Problem,
        finding: Option<&Finding>,
        flap_pct: f64,
    ) -> Self {
        let value = finding.map_or(0.0, |f| f.value);
        let th = finding.and_then(|f| f.threshold);
        let device = subject.device_id().unwrap_or_default().to_string();
        let cause = finding.and_then(|f| f.cause.clone());
        match problem {
            Problem::Loss if value >= 100.0 => Reason::NoReply {
                on: subject.clone(),
                threshold_pct: th,
            },
            Problem::Loss => Reason::Loss {
                on: subject.clone(),
                pct: value,
                threshold_pct: th,
            },
            Problem::Rtt => Reason::Rtt {
                on: subject.clone(),
                ms: value,
                threshold_ms: th,
            },
            Problem::Jitter => Reason::Jitter {
                on: subject.clone(),
                ms: value,
                threshold_ms: th,
            },
            Problem::SnmpUnreachable => {
                let (failure, waited_ms) = match cause {
                    Some(Cause::Snmp { failure, waited_ms }) => (failure, waited_ms),
                    _ => (SnmpFailure::Error, None),
                };
                Reason::SnmpSilent {
                    device,
                    failure,
                    waited_ms,
                    diagnostic: finding.map(|f| f.detail.clone()).unwrap_or_default(),
                }
            }
            Problem::OperDown => Reason::LinkDown {
                device,
                link: subject.link_name().unwrap_or_default().to_string(),
                cause: match cause {
                    Some(Cause::Trap) => LinkDownCause::Trap,
                    Some(Cause::AgentEvent) => LinkDownCause::AgentEvent,
                    Some(Cause::OperStatus { status }) => LinkDownCause::Poll {
                        oper_status: status,
                    },
                    _ => LinkDownCause::Poll {
                        oper_status: u32::try_from(value as i64).unwrap_or(2),
                    },
                },
            },
            Problem::Utilisation => Reason::Utilisation {
                on: subject.clone(),
                pct: value,
                threshold_pct: th,
            },
            Problem::Errors => Reason::Errors {
                on: subject.clone(),
                per_s: value,
                threshold_per_s: th,
            },
            Problem::Flapping => Reason::Flapping {
                on: subject.clone(),
                pct: flap_pct,
            },
            Problem::Cpu | Problem::Memory | Problem::Temperature => Reason::Resource {
                device,
                resource: match problem {
                    Problem::Cpu => Resource::Cpu,
                    Problem::Memory => Resource::Memory,
                    _ => Resource::Temperature,
                },
                value,
                threshold: th,
                device_threshold: matches!(cause, Some(Cause::DeviceThreshold)),
            },
            Problem::AgentUnreachable => Reason::AgentSilent {
                opd: match subject {
                    Subject::Opd { opd } => opd.clone(),
                    other => other.to_string(),
                },
                since: None,
            },
        }
    }

    /// The raw diagnostic behind the reason (an SNMP library's error), if any.
    pub fn diagnostic(&self) -> Option<&str> {
        match self {
            Reason::SnmpSilent { diagnostic, .. } if !diagnostic.is_empty() => Some(diagnostic),
            _ => None,
        }
    }

    /// The reason in one sentence of `lang`; `time` writes a moment (the
    /// documents' local time, or UTC for logs).
    pub fn text(&self, lang: Lang, time: &dyn Fn(TsUs) -> String) -> String {
        use Lang::{En, Id};
        match (self, lang) {
            (
                Reason::NoReply {
                    on: s,
                    threshold_pct,
                },
                Id,
            ) => format!(
                "{} tidak membalas ping: kehilangan paket 100 %{}",
                cap(&on(Id, s)),
                threshold(Id, *threshold_pct, " %")
            ),
            (
                Reason::NoReply {
                    on: s,
                    threshold_pct,
                },
                En,
            ) => format!(
                "No reply from {}: packet loss 100 %{}",
                on(En, s),
                threshold(En, *threshold_pct, " %")
            ),
            (
                Reason::Loss {
                    on: s,
                    pct,
                    threshold_pct,
                },
                Id,
            ) => format!(
                "Kehilangan paket {} % pada {}{}",
                num(Id, *pct),
                on(Id, s),
                threshold(Id, *threshold_pct, " %")
            ),
            (
                Reason::Loss {
                    on: s,
                    pct,
                    threshold_pct,
                },
                En,
            ) => format!(
                "Packet loss {} % on {}{}",
                num(En, *pct),
                on(En, s),
                threshold(En, *threshold_pct, " %")
            ),
            (
                Reason::Rtt {
                    on: s,
                    ms,
                    threshold_ms,
                },
                Id,
            ) => format!(
                "Waktu respons (RTT) {} ms pada {}{}",
                num(Id, *ms),
                on(Id, s),
                threshold(Id, *threshold_ms, " ms")
            ),
            (
                Reason::Rtt {
                    on: s,
                    ms,
                    threshold_ms,
                },
                En,
            ) => format!(
                "Round-trip time {} ms on {}{}",
                num(En, *ms),
                on(En, s),
                threshold(En, *threshold_ms, " ms")
            ),
            (
                Reason::Jitter {
                    on: s,
                    ms,
                    threshold_ms,
                },
                Id,
            ) => format!(
                "Variasi waktu respons (jitter) {} ms pada {}{}",
                num(Id, *ms),
                on(Id, s),
                threshold(Id, *threshold_ms, " ms")
            ),
            (
                Reason::Jitter {
                    on: s,
                    ms,
                    threshold_ms,
                },
                En,
            ) => format!(
                "Jitter {} ms on {}{}",
                num(En, *ms),
                on(En, s),
                threshold(En, *threshold_ms, " ms")
            ),
            (
                Reason::SnmpSilent {
                    device,
                    failure,
                    waited_ms,
                    ..
                },
                Id,
            ) => match (failure, waited_ms) {
                (SnmpFailure::Timeout, Some(ms)) => format!(
                    "Perangkat {device} tidak menjawab SNMP (ditunggu {} detik)",
                    seconds(*ms)
                ),
                (SnmpFailure::Timeout, None) => {
                    format!("Perangkat {device} tidak menjawab SNMP (waktu tunggu habis)")
                }
                (SnmpFailure::AuthFailure, _) => {
                    format!("Perangkat {device} menolak kredensial SNMP yang dipakai")
                }
                (SnmpFailure::Malformed, _) => {
                    format!("Perangkat {device} mengirim jawaban SNMP yang tidak dapat dibaca")
                }
                (SnmpFailure::Error, _) => {
                    format!("Perangkat {device} tidak dapat dibaca melalui SNMP")
                }
            },
            (
                Reason::SnmpSilent {
                    device,
                    failure,
                    waited_ms,
                    ..
                },
                En,
            ) => match (failure, waited_ms) {
                (SnmpFailure::Timeout, Some(ms)) => {
                    format!("{device} does not answer SNMP (waited {} s)", seconds(*ms))
                }
                (SnmpFailure::Timeout, None) => {
                    format!("{device} does not answer SNMP (timed out)")
                }
                (SnmpFailure::AuthFailure, _) => {
                    format!("{device} rejects the SNMP credentials in use")
                }
                (SnmpFailure::Malformed, _) => {
                    format!("{device} sends SNMP answers that cannot be read")
                }
                (SnmpFailure::Error, _) => format!("{device} cannot be read over SNMP"),
            },
            (
                Reason::LinkDown {
                    device,
                    link,
                    cause,
                },
                Id,
            ) => {
                let how = match cause {
                    LinkDownCause::Trap => "trap linkDown".to_string(),
                    LinkDownCause::AgentEvent => "dilaporkan agen".to_string(),
                    LinkDownCause::Poll { oper_status } => {
                        format!("status operasional {}", oper_name(*oper_status))
                    }
                };
                format!("Link {link} di perangkat {device} terputus ({how})")
            }
            (
                Reason::LinkDown {
                    device,
                    link,
                    cause,
                },
                En,
            ) => {
                let how = match cause {
                    LinkDownCause::Trap => "linkDown trap".to_string(),
                    LinkDownCause::AgentEvent => "link down".to_string(),
                    LinkDownCause::Poll { oper_status } => {
                        format!("oper status {}", oper_name(*oper_status))
                    }
                };
                format!("Link {link} of {device} is down ({how})")
            }
            (
                Reason::Utilisation {
                    on: s,
                    pct,
                    threshold_pct,
                },
                Id,
            ) => format!(
                "Utilisasi {} % pada {}{}",
                num(Id, *pct),
                on(Id, s),
                threshold(Id, *threshold_pct, " %")
            ),
            (
                Reason::Utilisation {
                    on: s,
                    pct,
                    threshold_pct,
                },
                En,
            ) => format!(
                "Utilisation {} % on {}{}",
                num(En, *pct),
                on(En, s),
                threshold(En, *threshold_pct, " %")
            ),
            (
                Reason::Errors {
                    on: s,
                    per_s,
                    threshold_per_s,
                },
                Id,
            ) => format!(
                "Galat antarmuka {}/detik pada {}{}",
                num(Id, *per_s),
                on(Id, s),
                threshold(Id, *threshold_per_s, "/detik")
            ),
            (
                Reason::Errors {
                    on: s,
                    per_s,
                    threshold_per_s,
                },
                En,
            ) => format!(
                "Interface errors {}/s on {}{}",
                num(En, *per_s),
                on(En, s),
                threshold(En, *threshold_per_s, "/s")
            ),
            (Reason::Flapping { on: s, pct }, Id) => format!(
                "{} naik-turun berulang kali (flapping, {} % perubahan status)",
                cap(&on(Id, s)),
                num(Id, *pct)
            ),
            (Reason::Flapping { on: s, pct }, En) => format!(
                "{} is flapping ({} % state change)",
                cap(&on(En, s)),
                num(En, *pct)
            ),
            (Reason::AgentSilent { opd, since }, Id) => match since {
                Some(t) => format!(
                    "Agen OPD {opd} tidak terhubung: tidak ada kabar sejak {}",
                    time(*t)
                ),
                None => format!("Agen OPD {opd} tidak terhubung"),
            },
            (Reason::AgentSilent { opd, since }, En) => match since {
                Some(t) => format!(
                    "The agent of OPD {opd} is unreachable: no heartbeat since {}",
                    time(*t)
                ),
                None => format!("The agent of OPD {opd} is unreachable"),
            },
            (Reason::AgentNeverConnected { opd, watched_since }, Id) => format!(
                "Agen OPD {opd} tidak terhubung: belum pernah terhubung (dipantau sejak {})",
                time(*watched_since)
            ),
            (Reason::AgentNeverConnected { opd, watched_since }, En) => format!(
                "The agent of OPD {opd} is unreachable: it has never connected (watched since {})",
                time(*watched_since)
            ),
            (
                Reason::Resource {
                    device,
                    resource,
                    value,
                    threshold: t,
                    device_threshold,
                },
                lang,
            ) => {
                let unit = if *resource == Resource::Temperature {
                    " °C"
                } else {
                    " %"
                };
                let limit = match (lang, t, device_threshold) {
                    (Id, Some(t), true) => {
                        format!(" (ambang perangkat itu sendiri {}{unit})", num(Id, *t))
                    }
                    (En, Some(t), true) => {
                        format!(" (the device's own threshold {}{unit})", num(En, *t))
                    }
                    (_, t, _) => threshold(lang, *t, unit),
                };
                match lang {
                    Id => format!(
                        "{} perangkat {device} {}{unit}{limit}",
                        cap(resource_id(*resource)),
                        num(Id, *value)
                    ),
                    En => format!(
                        "{} of {device} at {}{unit}{limit}",
                        cap(resource_en(*resource)),
                        num(En, *value)
                    ),
                }
            }
        }
    }

    /// [`Reason::text`] with times in UTC, for logs and events.
    pub fn text_utc(&self, lang: Lang) -> String {
        self.text(lang, &super::incident::fmt_time)
    }
}

/// A line of a ticket's health log, as facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// The collector opened the ticket.
    Opened {
        /// Why.
        reason: Reason,
    },
    /// The fault came back while the ticket was open.
    Occurrence {
        /// Occurrences now.
        count: u32,
    },
    /// Readings replayed by an agent that was cut off.
    Evidence {
        /// How many.
        readings: usize,
    },
    /// A device is unreachable because of this fault.
    Affected {
        /// The device.
        device: String,
    },
    /// The subject is healthy again.
    Recovered {
        /// When.
        at: TsUs,
    },
    /// Flapping started or stopped.
    Flapping {
        /// Started (else stopped).
        started: bool,
        /// Percent state change.
        pct: f64,
    },
    /// The linkDown trap that opened it was contradicted by the next poll.
    NotConfirmed {
        /// The poll's time.
        at: TsUs,
    },
    /// The collector closed the ticket by itself, or would have.
    Closed {
        /// Why.
        reason: super::incident::CloseReason,
        /// How long the subject had been stable, microseconds.
        stable_for: TsUs,
        /// Closed; else left open because people already act on it.
        closed: bool,
    },
}

impl Eq for Note {}

impl Note {
    /// The note's kind, as stored beside its text.
    pub fn kind(&self) -> &'static str {
        match self {
            Note::Opened { .. } => "opened",
            Note::Occurrence { .. } => "occurrence",
            Note::Evidence { .. } => "evidence",
            Note::Affected { .. } => "affected",
            Note::Recovered { .. } => "recovered",
            Note::Flapping { started: true, .. } => "flapping",
            Note::Flapping { started: false, .. } => "settled",
            Note::NotConfirmed { .. } => "not_confirmed",
            Note::Closed { closed: true, .. } => "closed",
            Note::Closed { closed: false, .. } => "not_closed",
        }
    }

    /// The note in one sentence of `lang`; `time` writes a moment.
    pub fn text(&self, lang: Lang, time: &dyn Fn(TsUs) -> String) -> String {
        use Lang::{En, Id};
        match (self, lang) {
            (Note::Opened { reason }, Id) => format!("dibuka otomatis: {}", reason.text(Id, time)),
            (Note::Opened { reason }, En) => {
                format!("opened automatically: {}", reason.text(En, time))
            }
            (Note::Occurrence { count }, Id) => {
                format!("gangguan terjadi lagi (kejadian ke-{count})")
            }
            (Note::Occurrence { count }, En) => {
                format!("the fault occurred again (occurrence {count})")
            }
            (Note::Evidence { readings }, Id) => {
                format!("{readings} pengukuran dari masa agen terputus")
            }
            (Note::Evidence { readings }, En) => {
                format!("{readings} readings from while the agent was cut off")
            }
            (Note::Affected { device }, Id) => {
                format!("{device} tidak terjangkau karena gangguan ini")
            }
            (Note::Affected { device }, En) => {
                format!("{device} is unreachable because of this fault")
            }
            (Note::Recovered { at }, Id) => format!("pulih pada {}", time(*at)),
            (Note::Recovered { at }, En) => format!("recovered at {}", time(*at)),
            (Note::Flapping { started, pct }, Id) => format!(
                "{} ({} % perubahan status)",
                if *started {
                    "mulai flapping"
                } else {
                    "flapping berhenti"
                },
                num(Id, pct.round())
            ),
            (Note::Flapping { started, pct }, En) => format!(
                "{} ({} % state change)",
                if *started {
                    "flapping started"
                } else {
                    "flapping stopped"
                },
                num(En, pct.round())
            ),
            (Note::NotConfirmed { at }, Id) => format!(
                "tidak terkonfirmasi oleh polling: polling pada {} mendapati link up tanpa trap linkUp",
                time(*at)
            ),
            (Note::NotConfirmed { at }, En) => format!(
                "not confirmed by polling: the poll at {} found the link up with no linkUp trap",
                time(*at)
            ),
            (
                Note::Closed {
                    reason,
                    stable_for,
                    closed,
                },
                Id,
            ) => {
                if *closed {
                    format!("ditutup otomatis: {}", reason.sentence_id(*stable_for))
                } else {
                    format!(
                        "{}; tidak ditutup otomatis karena tiket sudah ditangani",
                        reason.sentence_id(*stable_for)
                    )
                }
            }
            (
                Note::Closed {
                    reason,
                    stable_for,
                    closed,
                },
                En,
            ) => {
                if *closed {
                    format!("closed automatically: {}", reason.sentence(*stable_for))
                } else {
                    format!(
                        "{}; left open: people already act on the ticket",
                        reason.sentence(*stable_for)
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::rules::Level;
    use test_case::test_case;

    fn f(problem: Problem, value: f64, threshold: Option<f64>, cause: Option<Cause>) -> Finding {
        Finding {
            problem,
            level: Level::Degraded,
            value,
            threshold,
            detail: "timeout: no answer: request timed out after 4.001963783s (retries 1)".into(),
            cause,
        }
    }

    fn snmp_timeout() -> Option<Cause> {
        Some(Cause::Snmp {
            failure: SnmpFailure::Timeout,
            waited_ms: Some(4_002),
        })
    }

    #[test_case(Subject::device("dinkes-rtr"), Problem::Loss, f(Problem::Loss, 40.0, Some(20.0), None),
        "Kehilangan paket 40 % pada perangkat dinkes-rtr (ambang 20 %)",
        "Packet loss 40 % on dinkes-rtr (threshold 20 %)"; "loss")]
    #[test_case(Subject::device("dinkes-rtr"), Problem::Loss, f(Problem::Loss, 100.0, Some(100.0), None),
        "Perangkat dinkes-rtr tidak membalas ping: kehilangan paket 100 % (ambang 100 %)",
        "No reply from dinkes-rtr: packet loss 100 % (threshold 100 %)"; "no reply")]
    #[test_case(Subject::device("sw"), Problem::Rtt, f(Problem::Rtt, 212.46, Some(150.0), None),
        "Waktu respons (RTT) 212,5 ms pada perangkat sw (ambang 150 ms)",
        "Round-trip time 212.5 ms on sw (threshold 150 ms)"; "rtt")]
    #[test_case(Subject::device("demo-ap"), Problem::SnmpUnreachable, f(Problem::SnmpUnreachable, 0.0, None, snmp_timeout()),
        "Perangkat demo-ap tidak menjawab SNMP (ditunggu 4 detik)",
        "demo-ap does not answer SNMP (waited 4 s)"; "snmp timeout")]
    #[test_case(Subject::device("sw"), Problem::SnmpUnreachable, f(Problem::SnmpUnreachable, 0.0, None, Some(Cause::Snmp { failure: SnmpFailure::AuthFailure, waited_ms: None })),
        "Perangkat sw menolak kredensial SNMP yang dipakai",
        "sw rejects the SNMP credentials in use"; "snmp credentials")]
    #[test_case(Subject::link("rtr", "uplink"), Problem::OperDown, f(Problem::OperDown, 2.0, None, Some(Cause::Trap)),
        "Link uplink di perangkat rtr terputus (trap linkDown)",
        "Link uplink of rtr is down (linkDown trap)"; "link down by trap")]
    #[test_case(Subject::link("rtr", "uplink"), Problem::OperDown, f(Problem::OperDown, 7.0, None, Some(Cause::OperStatus { status: 7 })),
        "Link uplink di perangkat rtr terputus (status operasional lowerLayerDown)",
        "Link uplink of rtr is down (oper status lowerLayerDown)"; "link down by poll")]
    #[test_case(Subject::link("rtr", "uplink"), Problem::Errors, f(Problem::Errors, 12.5, Some(10.0), None),
        "Galat antarmuka 12,5/detik pada link uplink di perangkat rtr (ambang 10/detik)",
        "Interface errors 12.5/s on link uplink of rtr (threshold 10/s)"; "errors")]
    #[test_case(Subject::link("rtr", "uplink"), Problem::Flapping, f(Problem::Flapping, 0.0, None, None),
        "Link uplink di perangkat rtr naik-turun berulang kali (flapping, 45 % perubahan status)",
        "Link uplink of rtr is flapping (45 % state change)"; "flapping")]
    fn templates(s: Subject, p: Problem, finding: Finding, id: &str, en: &str) {
        let r = Reason::of(&s, p, Some(&finding), 45.0);
        assert_eq!(r.text_utc(Lang::Id), id);
        assert_eq!(r.text_utc(Lang::En), en);
    }

    #[test]
    fn the_raw_diagnostic_stays_out_of_the_sentence_but_in_the_json() {
        let finding = f(Problem::SnmpUnreachable, 0.0, None, snmp_timeout());
        let r = Reason::of(
            &Subject::device("demo-ap"),
            Problem::SnmpUnreachable,
            Some(&finding),
            0.0,
        );
        for lang in [Lang::Id, Lang::En] {
            let t = r.text_utc(lang);
            assert!(!t.contains("4.001963783") && !t.contains("retries"), "{t}");
        }
        assert_eq!(r.diagnostic(), Some(finding.detail.as_str()));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["reason"], "snmp_silent");
        assert_eq!(json["diagnostic"], finding.detail.as_str());
        let back: Reason = serde_json::from_value(json).expect("back");
        assert_eq!(back, r);
    }

    #[test_case(Note::Recovered { at: 0 }, "recovered", "pulih pada T", "recovered at T"; "recovered")]
    #[test_case(Note::Occurrence { count: 3 }, "occurrence", "gangguan terjadi lagi (kejadian ke-3)", "the fault occurred again (occurrence 3)"; "occurrence")]
    #[test_case(Note::Flapping { started: true, pct: 44.6 }, "flapping", "mulai flapping (45 % perubahan status)", "flapping started (45 % state change)"; "flapping")]
    #[test_case(Note::Flapping { started: false, pct: 10.0 }, "settled", "flapping berhenti (10 % perubahan status)", "flapping stopped (10 % state change)"; "settled")]
    #[test_case(Note::Opened { reason: Reason::AgentSilent { opd: "dinkes".into(), since: Some(0) } }, "opened",
        "dibuka otomatis: Agen OPD dinkes tidak terhubung: tidak ada kabar sejak T",
        "opened automatically: The agent of OPD dinkes is unreachable: no heartbeat since T"; "opened")]
    fn notes(n: Note, kind: &str, id: &str, en: &str) {
        let t = |_: TsUs| "T".to_string();
        assert_eq!(n.kind(), kind);
        assert_eq!(n.text(Lang::Id, &t), id);
        assert_eq!(n.text(Lang::En, &t), en);
    }

    #[test]
    fn agent_reasons_name_the_time_as_told() {
        let r = Reason::AgentNeverConnected {
            opd: "bappeda".into(),
            watched_since: 0,
        };
        let local = |_t: TsUs| "1970-01-01 07:00 WIB".to_string();
        assert_eq!(
            r.text(Lang::Id, &local),
            "Agen OPD bappeda tidak terhubung: belum pernah terhubung (dipantau sejak 1970-01-01 07:00 WIB)"
        );
        assert!(
            r.text_utc(Lang::En)
                .starts_with("The agent of OPD bappeda is unreachable: it has never connected")
        );
    }
}
