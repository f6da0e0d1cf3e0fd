//! Measurements on the wire: the domain records of [`super::model`] as the
//! messages of measure.proto, and back (the CLI renders what it received
//! with the same tables as before).

use siaga_proto::v1;

use super::model::{DeviceFigures, LinkFigures, MeasureState, Measurement, Phase};
#[cfg(test)]
use siaga_proto::time::time;
use siaga_proto::time::ts;

#[cfg(test)]
fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// A state as the wire says it.
pub fn wire_state(s: &MeasureState) -> v1::measurement::State {
    match s {
        MeasureState::Queued { .. } => v1::measurement::State::Queued,
        MeasureState::Running { .. } => v1::measurement::State::Running,
        MeasureState::Done => v1::measurement::State::Done,
        MeasureState::Failed { .. } => v1::measurement::State::Failed,
        MeasureState::Expired => v1::measurement::State::Expired,
    }
}

impl From<Phase> for v1::measurement::Phase {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Before => Self::Before,
            Phase::After => Self::After,
        }
    }
}

/// The phase a wire value names; `None` for unspecified (or a value only a
/// newer peer knows).
pub fn phase(p: v1::measurement::Phase) -> Option<Phase> {
    match p {
        v1::measurement::Phase::Before => Some(Phase::Before),
        v1::measurement::Phase::After => Some(Phase::After),
        v1::measurement::Phase::Unspecified => None,
    }
}

/// A measurement as the Measure service gives it.
pub fn measurement(m: &Measurement) -> v1::Measurement {
    let (expires_at, sent_at, error) = match &m.state {
        MeasureState::Queued { expires_at } => (Some(ts(*expires_at)), None, String::new()),
        MeasureState::Running { sent_at } => (None, Some(ts(*sent_at)), String::new()),
        MeasureState::Failed { error } => (None, None, error.clone()),
        MeasureState::Done | MeasureState::Expired => (None, None, String::new()),
    };
    v1::Measurement {
        id: m.id.clone(),
        ticket: m.ticket.clone().unwrap_or_default(),
        phase: m
            .phase
            .map_or(v1::measurement::Phase::Unspecified, Into::into)
            .into(),
        opd: m.opd.clone(),
        devices: m.devices.clone(),
        links: m.links.clone(),
        icmp_count: m.icmp_count,
        window_ms: m.window_ms,
        requested_by: m.requested_by.clone(),
        requested_at: Some(ts(m.requested_at)),
        completed_at: m.completed_at.map(ts),
        agent: m.agent.clone().unwrap_or_default(),
        state: wire_state(&m.state).into(),
        expires_at,
        sent_at,
        error,
        device_figures: m.device_figures.iter().map(device).collect(),
        link_figures: m.link_figures.iter().map(link).collect(),
    }
}

fn device(d: &DeviceFigures) -> v1::DeviceFigures {
    v1::DeviceFigures {
        device: d.device.clone(),
        sent: d.sent,
        received: d.received,
        loss_pct: d.loss_pct,
        rtt_min_us: d.rtt_min_us,
        rtt_avg_us: d.rtt_avg_us,
        rtt_median_us: d.rtt_median_us,
        rtt_p95_us: d.rtt_p95_us,
        rtt_max_us: d.rtt_max_us,
        jitter_us: d.jitter_us,
        rtts_us: d.rtts_us.clone(),
        error: d.error.clone().unwrap_or_default(),
        cpu_pct: d.cpu_pct,
        mem_pct: d.mem_pct,
        temp_c: d.temp_c,
        temp_threshold_c: d.temp_threshold_c,
    }
}

/// An interface status as a measurement keeps it (`if_status`: IF-MIB's
/// own words, `notPresent`) on the wire; empty (no reading) or a word this
/// build does not know is unspecified.
fn if_status(word: &str) -> v1::interface_status::Status {
    use v1::interface_status::Status;
    match word {
        "notPresent" => Status::NotPresent,
        "lowerLayerDown" => Status::LowerLayerDown,
        w => w.parse().unwrap_or_default(),
    }
}

/// The word a measurement keeps of an interface status (see
/// [`super::model::if_status`]).
#[cfg(test)]
fn if_status_word(s: v1::interface_status::Status) -> String {
    use v1::interface_status::Status;
    match s {
        Status::Unspecified => String::new(),
        Status::NotPresent => "notPresent".into(),
        Status::LowerLayerDown => "lowerLayerDown".into(),
        s => s.word().into(),
    }
}

fn link(l: &LinkFigures) -> v1::LinkFigures {
    v1::LinkFigures {
        name: l.name.clone(),
        device: l.device.clone(),
        interface: l.interface.clone(),
        oper_status: if_status(&l.oper_status).into(),
        admin_status: if_status(&l.admin_status).into(),
        speed_mbps: l.speed_mbps,
        in_bps: l.in_bps,
        out_bps: l.out_bps,
        util_in_pct: l.util_in_pct,
        util_out_pct: l.util_out_pct,
        errors_per_s: l.errors_per_s,
        discards_per_s: l.discards_per_s,
        error: l.error.clone().unwrap_or_default(),
    }
}

/// A measurement the service gave, as the domain record; `Err` names what
/// does not read. (The CLI reads its own rows from the message; this
/// inverse checks that [`measurement`] loses nothing.)
#[cfg(test)]
fn measurement_back(m: &v1::Measurement) -> Result<Measurement, String> {
    let at = |t: &Option<pbjson_types::Timestamp>, what: &str| {
        t.as_ref()
            .map(time)
            .ok_or_else(|| format!("measurement {}: no {what}", m.id))
    };
    use v1::measurement::State;
    let state = match m.state() {
        State::Queued => MeasureState::Queued {
            expires_at: at(&m.expires_at, "expires_at")?,
        },
        State::Running => MeasureState::Running {
            sent_at: m.sent_at.as_ref().map(time).unwrap_or_default(),
        },
        State::Done => MeasureState::Done,
        State::Failed => MeasureState::Failed {
            error: m.error.clone(),
        },
        State::Expired => MeasureState::Expired,
        State::Unspecified => {
            return Err(format!("measurement {}: unknown state {}", m.id, m.state));
        }
    };
    let phase = phase(m.phase());
    Ok(Measurement {
        id: m.id.clone(),
        ticket: some(&m.ticket),
        phase,
        opd: m.opd.clone(),
        devices: m.devices.clone(),
        links: m.links.clone(),
        icmp_count: m.icmp_count,
        window_ms: m.window_ms,
        requested_by: m.requested_by.clone(),
        requested_at: at(&m.requested_at, "requested_at")?,
        completed_at: m.completed_at.as_ref().map(time),
        agent: some(&m.agent),
        state,
        device_figures: m
            .device_figures
            .iter()
            .map(|d| DeviceFigures {
                device: d.device.clone(),
                sent: d.sent,
                received: d.received,
                loss_pct: d.loss_pct,
                rtt_min_us: d.rtt_min_us,
                rtt_avg_us: d.rtt_avg_us,
                rtt_median_us: d.rtt_median_us,
                rtt_p95_us: d.rtt_p95_us,
                rtt_max_us: d.rtt_max_us,
                jitter_us: d.jitter_us,
                rtts_us: d.rtts_us.clone(),
                error: some(&d.error),
                cpu_pct: d.cpu_pct,
                mem_pct: d.mem_pct,
                temp_c: d.temp_c,
                temp_threshold_c: d.temp_threshold_c,
            })
            .collect(),
        link_figures: m
            .link_figures
            .iter()
            .map(|l| LinkFigures {
                name: l.name.clone(),
                device: l.device.clone(),
                interface: l.interface.clone(),
                oper_status: if_status_word(l.oper_status()),
                admin_status: if_status_word(l.admin_status()),
                speed_mbps: l.speed_mbps,
                in_bps: l.in_bps,
                out_bps: l.out_bps,
                util_in_pct: l.util_in_pct,
                util_out_pct: l.util_out_pct,
                errors_per_s: l.errors_per_s,
                discards_per_s: l.discards_per_s,
                error: some(&l.error),
            })
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{DateTime, Utc};
    use test_case::test_case;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn sample(state: MeasureState) -> Measurement {
        Measurement {
            id: "M-000007".into(),
            ticket: Some("PJ-2026-0001".into()),
            phase: Some(Phase::After),
            opd: "dinkes".into(),
            devices: vec!["dinkes-sw1".into()],
            links: vec!["ke-puskesmas".into()],
            icmp_count: 100,
            window_ms: 10_000,
            requested_by: "teknisi".into(),
            requested_at: t("2026-12-02T10:00:00Z"),
            completed_at: Some(t("2026-12-02T10:00:12Z")),
            agent: Some("dinkes-agent".into()),
            state,
            device_figures: vec![DeviceFigures {
                device: "dinkes-sw1".into(),
                sent: 100,
                received: 52,
                loss_pct: 48.0,
                rtt_min_us: Some(40),
                rtt_median_us: Some(70),
                rtts_us: vec![40, 70, 100],
                ..Default::default()
            }],
            link_figures: vec![
                LinkFigures {
                    name: "ke-puskesmas".into(),
                    device: "dinkes-sw1".into(),
                    interface: "port2".into(),
                    oper_status: "up".into(),
                    admin_status: "up".into(),
                    speed_mbps: Some(10_000.0),
                    in_bps: Some(0.0),
                    ..Default::default()
                },
                LinkFigures {
                    name: "wan".into(),
                    device: "dinkes-sw1".into(),
                    error: Some("SNMP: no answer (timeout)".into()),
                    ..Default::default()
                },
            ],
        }
    }

    #[test_case(MeasureState::Queued { expires_at: t("2026-12-03T10:00:00Z") } ; "queued")]
    #[test_case(MeasureState::Running { sent_at: t("2026-12-02T10:00:01Z") } ; "running")]
    #[test_case(MeasureState::Done ; "done")]
    #[test_case(MeasureState::Failed { error: "the agent left".into() } ; "failed")]
    #[test_case(MeasureState::Expired ; "expired")]
    fn a_measurement_reads_back_as_it_was_sent(state: MeasureState) {
        let m = sample(state);
        assert_eq!(measurement_back(&measurement(&m)).unwrap(), m);
    }

    #[test]
    fn interface_statuses_are_words_on_the_wire_and_read_back_as_kept() {
        let mut m = sample(MeasureState::Done);
        m.link_figures[0].oper_status = "lowerLayerDown".into();
        m.link_figures[0].admin_status = "testing".into();
        let w = measurement(&m);
        use v1::interface_status::Status;
        let l = &w.link_figures;
        assert_eq!(
            (l[0].oper_status(), l[0].admin_status()),
            (Status::LowerLayerDown, Status::Testing)
        );
        // The link that was not read has no status.
        assert_eq!(l[1].oper_status(), Status::Unspecified);
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["link_figures"][0]["oper_status"], "lower_layer_down");
        assert_eq!(v["link_figures"][0]["admin_status"], "testing");
        assert!(v["link_figures"][1].get("oper_status").is_none(), "{v}");
        assert_eq!(measurement_back(&w).unwrap(), m);
    }

    #[test]
    fn the_json_is_proto3() {
        let m = measurement(&sample(MeasureState::Done));
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["state"], "done");
        assert_eq!(v["phase"], "after");
        assert_eq!(v["window_ms"], "10000");
        assert_eq!(v["requested_at"], "2026-12-02T10:00:00+00:00");
        let d = &v["device_figures"][0];
        assert_eq!(d["rtt_median_us"], "70");
        assert!(d.get("rtt_max_us").is_none(), "{d}");
        assert_eq!(v["link_figures"][0]["in_bps"], 0.0);
        let back: v1::Measurement = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn an_unknown_state_is_refused() {
        let mut m = measurement(&sample(MeasureState::Done));
        m.state = 99;
        assert!(measurement_back(&m).unwrap_err().contains("unknown state"));
    }
}
