//! Bytes from the network as the agent receives them on its SNMP sockets:
//! answers to its polls and traps. The SNMP message decoder (async-snmp,
//! every version, the decode configuration the agent uses), then, for a
//! trap or notification, the agent's own turning of it into a link event.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use async_snmp::message::Message;
use async_snmp::{DecodeConfig, Oid, Value};
use libfuzzer_sys::fuzz_target;
use siaga_agent::probe::trap::{TrapSource, event_of};
use siaga_proto::v1::{Link, SnmpTarget};

/// snmpTrapOID.0: the varbind of a v2c/v3 notification that names it.
const SNMP_TRAP_OID: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];

fuzz_target!(|data: &[u8]| {
    let from = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    let source = TrapSource {
        device: "sw1".into(),
        links: vec![
            Link {
                device: "sw1".into(),
                interface: "port2".into(),
                if_index: 0,
                name: "ke-puskesmas".into(),
            },
            Link {
                device: "sw1".into(),
                interface: String::new(),
                if_index: 7,
                name: "uplink".into(),
            },
        ],
        snmp: Some(SnmpTarget {
            version: "2c".into(),
            community: "public".into(),
            ..Default::default()
        }),
    };
    for config in [DecodeConfig::default(), DecodeConfig::STRICT] {
        let Ok(decoded) = Message::decode(bytes::Bytes::copy_from_slice(data), config) else {
            continue;
        };
        let msg = decoded.value;
        let version = msg.version();
        if let Message::Community(m) = &msg
            && let Some(trap) = m.pdu().trap_v1()
            && let Ok(oid) = trap.v2_trap_oid()
        {
            let _ = event_of(&oid, trap.varbinds(), version, from, &source);
        }
        if let Some(pdu) = msg.pdu() {
            let trap_oid = Oid::from_slice(SNMP_TRAP_OID);
            let named = pdu.varbinds().iter().find_map(|vb| match &vb.value {
                Value::ObjectIdentifier(o) if vb.oid == trap_oid => Some(o.clone()),
                _ => None,
            });
            if let Some(oid) = named {
                let _ = event_of(&oid, pdu.varbinds(), version, from, &source);
            }
            // What the poller reads from an answer.
            let _ = (pdu.error_status_enum(), pdu.error_index(), pdu.is_error());
        }
    }
});
