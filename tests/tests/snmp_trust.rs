//! What a device (or someone standing in for one) can make the agent's SNMP
//! side believe: big devices polled whole and bounded, oversize and broken
//! answers named for what they are, forged answers and forged traps
//! dropped and counted. Needs root (network namespaces).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use siaga_agent::metrics::Metrics;
use siaga_agent::probe::snmp::{SnmpLimits, SnmpPoller};
use siaga_agent::probe::trap::{
    STORM_TRAPS, STORM_WINDOW, TrapCredentials, TrapReceiver, TrapSource,
};
use siaga_proto::v1::{Device, Event, SnmpResult, SnmpStatus, SnmpTarget};
use siaga_tests::ber::{oid_ber, tlv};
use siaga_tests::lab::Lab;

fn status(r: &SnmpResult) -> SnmpStatus {
    SnmpStatus::try_from(r.status).unwrap_or(SnmpStatus::Unspecified)
}

fn v2c_at(id: &str, addr: SocketAddr, community: &str) -> Device {
    Device {
        id: id.into(),
        address: addr.ip().to_string(),
        snmp: Some(SnmpTarget {
            version: "2c".into(),
            community: community.into(),
            port: u32::from(addr.port()),
            timeout_ms: 1000,
            retries: 1,
            ..SnmpTarget::default()
        }),
        ..Device::default()
    }
}

type DeviceFamily = prometheus_client::metrics::family::Family<
    siaga_agent::metrics::DeviceLabels,
    prometheus_client::metrics::counter::Counter,
>;

fn counter(family: &DeviceFamily, device: &str) -> u64 {
    Metrics::of(family, device).get()
}

// ------------------------------------------------------------ BER helpers

fn oid_arcs(body: &[u8]) -> Vec<u32> {
    let Some((&first, rest)) = body.split_first() else {
        return Vec::new();
    };
    let mut arcs = vec![u32::from(first / 40), u32::from(first % 40)];
    let mut v = 0u32;
    for &b in rest {
        v = (v << 7) | u32::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(v);
            v = 0;
        }
    }
    arcs
}

/// Reads (tag, body, rest) of the TLV at the start of `b`.
fn read_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 128 {
        (first as usize, 2)
    } else {
        let k = (first & 0x7f) as usize;
        let len = b
            .get(2..2 + k)?
            .iter()
            .fold(0usize, |acc, x| acc << 8 | *x as usize);
        (len, 2 + k)
    };
    Some((tag, b.get(hdr..hdr + len)?, b.get(hdr + len..)?))
}

/// A v2c request as read: community, request id (BER body), OIDs asked.
struct Request {
    community: Vec<u8>,
    request_id: Vec<u8>,
    oids: Vec<Vec<u32>>,
}

fn parse_request(b: &[u8]) -> Option<Request> {
    let (_, msg, _) = read_tlv(b)?;
    let (_, version, rest) = read_tlv(msg)?;
    if version != [1] {
        return None; // v2c only
    }
    let (_, community, rest) = read_tlv(rest)?;
    let (_, pdu, _) = read_tlv(rest)?;
    let (_, request_id, rest) = read_tlv(pdu)?;
    let (_, _, rest) = read_tlv(rest)?;
    let (_, _, rest) = read_tlv(rest)?;
    let (_, mut vbs, _) = read_tlv(rest)?;
    let mut oids = Vec::new();
    while !vbs.is_empty() {
        let (_, vb, rest) = read_tlv(vbs)?;
        let (_, oid, _) = read_tlv(vb)?;
        oids.push(oid_arcs(oid));
        vbs = rest;
    }
    Some(Request {
        community: community.to_vec(),
        request_id: request_id.to_vec(),
        oids,
    })
}

fn response(community: &[u8], request_id: &[u8], varbinds: &[Vec<u8>]) -> Vec<u8> {
    let pdu = tlv(
        0xa2,
        &[
            tlv(0x02, request_id),
            tlv(0x02, &[0]),
            tlv(0x02, &[0]),
            tlv(0x30, &varbinds.concat()),
        ]
        .concat(),
    );
    tlv(0x30, &[tlv(0x02, &[1]), tlv(0x04, community), pdu].concat())
}

fn vb(arcs: &[u32], value: Vec<u8>) -> Vec<u8> {
    tlv(0x30, &[oid_ber(arcs), value].concat())
}

const SYS_DESCR: [u32; 8] = [1, 3, 6, 1, 2, 1, 1, 1];
const IF_ENTRY: [u32; 9] = [1, 3, 6, 1, 2, 1, 2, 2, 1];
const IFX_ENTRY: [u32; 10] = [1, 3, 6, 1, 2, 1, 31, 1, 1, 1];

/// The answer of a device with one interface, up, to the poller's first
/// GETBULK (system scalars, then one row of every column asked); every
/// later request is answered with endOfMibView.
fn device_answer(req: &Request, sys_descr: &[u8]) -> Vec<Vec<u8>> {
    if req.oids.first().map(Vec::as_slice) != Some(&SYS_DESCR[..]) {
        return req.oids.iter().map(|o| vb(o, tlv(0x82, &[]))).collect();
    }
    let mut out = vec![
        vb(&[1, 3, 6, 1, 2, 1, 1, 1, 0], tlv(0x04, sys_descr)),
        vb(&[1, 3, 6, 1, 2, 1, 1, 3, 0], tlv(0x43, &[0, 0, 1, 0])),
        vb(&[1, 3, 6, 1, 2, 1, 1, 5, 0], tlv(0x04, b"ghost")),
    ];
    for o in req.oids.iter().skip(3) {
        let col = o.last().copied().unwrap_or(0);
        let value = if o.starts_with(&IFX_ENTRY) {
            match col {
                1 | 18 => tlv(0x04, b"port1"),
                6 | 10 => tlv(0x46, &[1]),
                _ => tlv(0x42, &[0x03, 0xe8]),
            }
        } else if o.starts_with(&IF_ENTRY) {
            match col {
                2 => tlv(0x04, b"port1"),
                5 => tlv(0x42, &[0x3b, 0x9a, 0xca, 0x00]),
                7 | 8 => tlv(0x02, &[1]),
                _ => tlv(0x41, &[1]),
            }
        } else {
            tlv(0x82, &[])
        };
        let mut row = o.clone();
        row.push(1);
        out.push(vb(&row, value));
    }
    out
}

/// Stops a helper thread when dropped (also when the test fails).
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Serves `answer(request)` to every request on `sock` until stopped.
fn serve(
    sock: UdpSocket,
    answer: impl Fn(&[u8], SocketAddr, &UdpSocket) + Send + 'static,
) -> anyhow::Result<Stop> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while !flag.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                answer(&buf[..n], from, &sock);
            }
        }
    });
    Ok(Stop(stop))
}

// ------------------------------------------------------ big devices (§1b)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_with_4096_interfaces_is_polled_whole_and_the_cap_counts_the_rest()
-> anyhow::Result<()> {
    // 2,047 veth pairs + eth0 + lo: 4,096 interfaces. Before, the walk
    // gave up after 500 requests ("malformed") and showed none.
    let lab = Lab::new()?
        .device("big")
        .snmpd_v2c("public")
        .ports(2047)
        .start()?;
    let addr = SocketAddr::new(lab.target(IpAddr::V4(lab.addr("big")?))?, 161);
    let mut dev = v2c_at("big", addr, "public");
    if let Some(t) = dev.snmp.as_mut() {
        t.timeout_ms = 5000;
    }
    let poller = SnmpPoller::new();
    let (r, _) = poller.poll(&dev, &[]).await;
    assert_eq!(status(&r), SnmpStatus::Ok, "{}", r.error);
    assert_eq!(r.interfaces.len(), 4096, "every interface is polled");
    assert_eq!(r.interfaces_omitted, 0);
    let ports: Vec<_> = r
        .interfaces
        .iter()
        .filter(|i| i.if_name.starts_with('q'))
        .collect();
    assert_eq!(ports.len(), 4094);
    let mut names: Vec<&str> = ports.iter().map(|i| i.if_name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 4094, "each port once, by name");
    eprintln!("4,096 interfaces polled in {:.2} s", r.poll_us as f64 / 1e6);

    // A cap below the table: that many interfaces, the rest counted.
    let capped = SnmpPoller::with_limits(
        Metrics::default(),
        SnmpLimits {
            max_interfaces: 1000,
        },
    );
    let (r, _) = capped.poll(&dev, &[]).await;
    assert_eq!(status(&r), SnmpStatus::Ok, "{}", r.error);
    assert_eq!(r.interfaces.len(), 1000);
    assert_eq!(r.interfaces_omitted, 3096);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60_kb_sys_descr_is_cut_and_flagged_and_a_broken_answer_is_malformed()
-> anyhow::Result<()> {
    let lab = Lab::new()?.device("fat").device("broken").start()?;
    let huge = vec![b'd'; 60_000];
    let fat = lab.udp_socket_on("fat", 0)?;
    let fat_addr = fat.local_addr()?;
    let _fat = serve(fat, move |b, from, sock| {
        if let Some(req) = parse_request(b) {
            let reply = response(&req.community, &req.request_id, &device_answer(&req, &huge));
            let _ = sock.send_to(&reply, from);
        }
    })?;
    let poller = SnmpPoller::new();
    let (r, _) = poller.poll(&v2c_at("fat", fat_addr, "public"), &[]).await;
    assert_eq!(status(&r), SnmpStatus::Ok, "{}", r.error);
    assert_eq!(r.sys_descr, "d".repeat(255));
    assert!(r.sys_truncated);
    assert_eq!(r.sys_name, "ghost");

    // An answer that does not decode, from the device's own address and
    // port, is a malformed answer, not a refused community.
    let broken = lab.udp_socket_on("broken", 0)?;
    let broken_addr = broken.local_addr()?;
    let _broken = serve(broken, |b, from, sock| {
        if parse_request(b).is_some() {
            let _ = sock.send_to(b"\x30\x84\x7f\xff\xff\xffthis is not SNMP", from);
        }
    })?;
    let (r, _) = poller
        .poll(&v2c_at("broken", broken_addr, "public"), &[])
        .await;
    assert_eq!(status(&r), SnmpStatus::Malformed, "{r:?}");
    assert!(r.error.starts_with("malformed answer"), "{}", r.error);
    Ok(())
}

// ------------------------------------------------------ forged answers (§2)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_answers_do_not_make_a_device_without_snmp_look_up() -> anyhow::Result<()> {
    // "ghost" runs no SNMP. A forger in its namespace sees the requests
    // sent to it (port 161) and answers with the right request id from
    // another port, and from another address (the lab's other end of the
    // ghost's link, on the agent host).
    let lab = Lab::new()?.device("ghost").device("echo").start()?;
    let ghost = SocketAddr::new(lab.target(IpAddr::V4(lab.addr("ghost")?))?, 161);
    let listen = lab.udp_socket_on("ghost", 161)?;
    let other_port = lab.udp_socket_on("ghost", 0)?;
    let other_addr = UdpSocket::bind(SocketAddr::new(IpAddr::V4(lab.gateway("ghost")?), 0))?;
    let _forger = serve(listen, move |b, from, _| {
        if let Some(req) = parse_request(b) {
            let reply = response(
                &req.community,
                &req.request_id,
                &device_answer(&req, b"forged"),
            );
            let _ = other_port.send_to(&reply, from);
            let _ = other_addr.send_to(&reply, from);
        }
    })?;
    let metrics = Metrics::default();
    let poller = SnmpPoller::with_limits(metrics.clone(), SnmpLimits::default());
    let dev = v2c_at("ghost", ghost, "public");
    let (r, _) = poller.poll(&dev, &[]).await;
    assert_ne!(status(&r), SnmpStatus::Ok, "{r:?}");
    assert!(r.interfaces.is_empty(), "no link shown up: {r:?}");
    assert!(r.forged_answers >= 2, "{r:?}");
    assert_eq!(
        counter(&metrics.snmp_forged_answers, "ghost"),
        r.forged_answers
    );

    // A forger that answers from the device's own address and port but
    // must guess the request id: it predicts the next ids from the last
    // request it saw (as sequential ids would allow), never reading the
    // id of the request it answers, nor replaying one it saw (a replay of
    // a retried request's first id is a late answer, accepted as such).
    let echo = SocketAddr::new(lab.target(IpAddr::V4(lab.addr("echo")?))?, 161);
    let guesser = lab.udp_socket_on("echo", 161)?;
    let last_id = std::sync::Mutex::new(None::<i64>);
    let _guesser = serve(guesser, move |b, from, sock| {
        let Some(req) = parse_request(b) else { return };
        let id = req
            .request_id
            .iter()
            .fold(0i64, |acc, x| (acc << 8) | i64::from(*x));
        let previous = last_id.lock().map(|mut l| l.replace(id)).unwrap_or(None);
        let Some(previous) = previous else { return };
        let answer = device_answer(&req, b"guessed");
        for k in 1..=16 {
            let guess = (previous + k) as u32;
            let bytes = guess.to_be_bytes();
            let start = bytes.iter().position(|b| *b != 0).unwrap_or(3);
            let mut body = bytes[start..].to_vec();
            if body[0] & 0x80 != 0 {
                body.insert(0, 0);
            }
            let _ = sock.send_to(&response(&req.community, &body, &answer), from);
        }
    })?;
    let dev = v2c_at("echo", echo, "public");
    for _ in 0..2 {
        let (r, _) = poller.poll(&dev, &[]).await;
        assert_ne!(status(&r), SnmpStatus::Ok, "{r:?}");
        assert!(r.interfaces.is_empty(), "no link shown up: {r:?}");
    }
    let forged = counter(&metrics.snmp_forged_answers, "echo");
    assert!(forged > 0, "guessed answers are counted");
    let text = {
        let mut t = String::new();
        prometheus_client::encoding::text::encode(&mut t, &metrics.registry())?;
        t
    };
    assert!(
        text.contains(&format!(
            "siaga_agent_snmp_forged_answers_total{{device=\"echo\"}} {forged}"
        )),
        "{text}"
    );
    Ok(())
}

// ------------------------------------------------------ forged traps (19 §1)

fn snmptrap_v2c(dest: &str, community: &str, if_index: u32) -> Vec<String> {
    [
        "snmptrap",
        "-v",
        "2c",
        "-c",
        community,
        dest,
        "",
        "1.3.6.1.6.3.1.1.5.3",
        &format!("1.3.6.1.2.1.2.2.1.1.{if_index}"),
        "i",
        &if_index.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn exec(lab: &Lab, device: &str, argv: &[String]) -> anyhow::Result<String> {
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    lab.exec(device, &argv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_count_only_with_their_devices_own_credentials() -> anyhow::Result<()> {
    let lab = Lab::new()?
        .device("sw1")
        .device("sw2")
        .device("sw3")
        .device("sw4")
        .start()?;
    let v3 = SnmpTarget {
        version: "3".into(),
        user: "trapper".into(),
        auth_protocol: "sha256".into(),
        auth_password: "trapauth123".into(),
        priv_protocol: "aes".into(),
        priv_password: "trappriv123".into(),
        ..SnmpTarget::default()
    };
    let v2c = |c: &str| SnmpTarget {
        version: "2c".into(),
        community: c.into(),
        ..SnmpTarget::default()
    };
    // sw1, sw2: v2c with communities of their own; sw3: SNMPv3 only;
    // sw4: no SNMP credentials (ICMP only).
    let mut table = Vec::new();
    for (id, snmp) in [
        ("sw1", Some(v2c("sw1-secret"))),
        ("sw2", Some(v2c("sw2-secret"))),
        ("sw3", Some(v3.clone())),
        ("sw4", None),
    ] {
        table.push((IpAddr::V4(lab.addr(id)?), id.to_string(), snmp));
    }
    let lookup = move |ip: IpAddr| {
        table
            .iter()
            .find(|(a, _, _)| *a == ip)
            .map(|(_, id, snmp)| TrapSource {
                device: id.clone(),
                links: Vec::new(),
                snmp: snmp.clone(),
            })
    };
    // One receiver for the four devices' links: every address of the
    // agent host, as the agent listens (`trap_listen = "0.0.0.0:162"`).
    let listen = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
    let creds = TrapCredentials {
        users: vec![(
            v3.user.clone(),
            v3.auth_protocol.clone(),
            v3.auth_password.clone(),
            v3.priv_protocol.clone(),
            v3.priv_password.clone(),
        )],
    };
    let metrics = Metrics::default();
    let receiver = TrapReceiver::bind(listen, &creds)
        .await?
        .with_metrics(metrics.clone());
    let port = receiver.local_addr().port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Event)>();
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(receiver.run(
        lookup,
        move |d: &str, e: Event| {
            let _ = tx.send((d.to_string(), e));
        },
        cancel.clone(),
    ));
    let dest =
        |dev: &str| -> anyhow::Result<String> { Ok(format!("{}:{port}", lab.agent_addr(dev)?)) };

    // Refused: a wrong community, another device's community, a v2c trap
    // for an SNMPv3-only device, any trap of a device without credentials.
    exec(
        &lab,
        "sw1",
        &snmptrap_v2c(&dest("sw1")?, "totally-wrong-community", 1),
    )?;
    exec(&lab, "sw1", &snmptrap_v2c(&dest("sw1")?, "sw2-secret", 2))?;
    exec(&lab, "sw3", &snmptrap_v2c(&dest("sw3")?, "sw1-secret", 3))?;
    exec(&lab, "sw4", &snmptrap_v2c(&dest("sw4")?, "public", 4))?;
    // Accepted: sw3's own v3 user with auth and privacy, sw1's own community.
    let v3_trap = [
        "snmptrap",
        "-v",
        "3",
        "-u",
        "trapper",
        "-l",
        "authPriv",
        "-a",
        "SHA-256",
        "-A",
        "trapauth123",
        "-x",
        "AES",
        "-X",
        "trappriv123",
        "-e",
        "0x8000000001020304",
        &dest("sw3")?,
        "",
        "1.3.6.1.6.3.1.1.5.4",
        "1.3.6.1.2.1.2.2.1.1.7",
        "i",
        "7",
    ]
    .map(String::from);
    exec(&lab, "sw3", &v3_trap)?;
    exec(&lab, "sw1", &snmptrap_v2c(&dest("sw1")?, "sw1-secret", 9))?;

    let mut got = Vec::new();
    let mut refused_events = Vec::new();
    while got.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        let (device, event) = next
            .map_err(|_| {
                anyhow::anyhow!(
                    "accepted traps did not arrive; got {got:?}; refused sw1 {} sw3 {} sw4 {}",
                    counter(&metrics.traps_refused, "sw1"),
                    counter(&metrics.traps_refused, "sw3"),
                    counter(&metrics.traps_refused, "sw4")
                )
            })?
            .ok_or_else(|| anyhow::anyhow!("receiver ended"))?;
        if event.kind == "traps_refused" {
            refused_events.push(device);
        } else {
            got.push((device, event.kind, event.if_index));
        }
    }
    assert_eq!(
        got,
        [
            ("sw3".to_string(), "link_up".to_string(), 7),
            ("sw1".to_string(), "link_down".to_string(), 9)
        ],
        "only the authenticated traps count"
    );
    // One report per device and minute (sw1's second refusal is counted,
    // not reported again), so devices not polled over SNMP show it too.
    assert_eq!(refused_events, ["sw1", "sw3", "sw4"]);
    assert!(rx.try_recv().is_err(), "nothing else was accepted");
    for (device, refused) in [("sw1", 2), ("sw2", 0), ("sw3", 1), ("sw4", 1)] {
        assert_eq!(
            counter(&metrics.traps_refused, device),
            refused,
            "refused traps of {device}"
        );
    }

    // A storm from sw2 (no trap of its own yet): the first STORM_TRAPS pass, the rest are dropped,
    // counted, and summed up in one trap_storm event.
    let storm = 3 * STORM_TRAPS;
    let one = snmptrap_v2c(&dest("sw2")?, "sw2-secret", 5)
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    exec(
        &lab,
        "sw2",
        &[
            "sh".to_string(),
            "-c".to_string(),
            format!("for i in $(seq {storm}); do {one}; done"),
        ],
    )?;
    let mut links = 0;
    let deadline = tokio::time::Instant::now() + STORM_WINDOW + Duration::from_secs(10);
    let summary = loop {
        let next = tokio::time::timeout_at(deadline, rx.recv()).await;
        let (_, event) = next
            .map_err(|_| anyhow::anyhow!("no trap_storm event; {links} link events"))?
            .ok_or_else(|| anyhow::anyhow!("receiver ended"))?;
        if event.kind == "trap_storm" {
            break event;
        }
        links += 1;
    };
    assert_eq!(links, STORM_TRAPS, "traps passed before the limit");
    assert_eq!(summary.suppressed, storm - STORM_TRAPS, "{summary:?}");
    assert_eq!(
        counter(&metrics.traps_suppressed, "sw2"),
        u64::from(storm - STORM_TRAPS)
    );
    cancel.cancel();
    task.await?;
    Ok(())
}

// ------------------------------------------- what people see (§2, 19 §1)

#[test]
fn siaga_device_and_metrics_show_forged_answers_and_refused_traps() -> anyhow::Result<()> {
    use siaga_tests::harness::{Agent, Collector, secs, wait_until};
    let lab = Lab::new()?.device("ghost").start()?;
    let addr = lab.addr("ghost")?;
    // The forger of the first test: sees the requests, answers from
    // another port of the ghost's address.
    let listen = lab.udp_socket_on("ghost", 161)?;
    let other_port = lab.udp_socket_on("ghost", 0)?;
    let _forger = serve(listen, move |b, from, _| {
        if let Some(req) = parse_request(b) {
            let reply = response(
                &req.community,
                &req.request_id,
                &device_answer(&req, b"forged"),
            );
            let _ = other_port.send_to(&reply, from);
        }
    })?;
    let trap_addr = UdpSocket::bind((lab.agent_addr("ghost")?, 0))?.local_addr()?;
    let mut c = Collector::init()?;
    c.write_inventory_text(&format!(
        "interval = \"1s\"\n\n[[opd]]\nid = \"dinkes\"\nname = \"Dinas Kesehatan\"\n\n\
         [[device]]\nid = \"dinkes-ghost\"\nopd = \"dinkes\"\nkind = \"switch\"\n\
         address = \"{addr}\"\n\n[device.snmp]\nversion = \"2c\"\ncommunity = \"ghost-secret\"\n\
         timeout = \"300ms\"\nretries = 0\n"
    ))?;
    let agent_cfg = c.enroll_agent("dinkes")?;
    agent_cfg.set("trap_listen", trap_addr.to_string())?;
    agent_cfg.set("metrics_listen", "127.0.0.1:0")?;
    let siaga = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let agent = Agent::start(agent_cfg)?;
    let fail = |e: anyhow::Error| {
        e.context(format!(
            "agent log:\n{}\ncollector log:\n{}",
            agent.log_tail(30),
            c.log_tail(30)
        ))
    };
    let to = trap_addr.to_string();
    let wrong = snmptrap_v2c(&to, "totally-wrong-community", 2);
    wait_until(
        secs(60),
        "forged answers and a refused trap in siaga device",
        || {
            // Traps go by UDP: send one more until the first is seen.
            exec(&lab, "ghost", &wrong)?;
            let d = siaga.json(&["device", "dinkes-ghost", "--json"])?;
            Ok(d["snmp_forged_answers"].as_u64().is_some_and(|n| n > 0)
                && d["traps_refused"].as_u64().is_some_and(|n| n > 0))
        },
    )
    .map_err(fail)?;
    let d = siaga.json(&["device", "dinkes-ghost", "--json"])?;
    anyhow::ensure!(d["snmp_status"] != "ok", "{d:#}");
    anyhow::ensure!(
        d["interfaces"].as_array().is_none_or(|l| l.is_empty()),
        "{d:#}"
    );
    anyhow::ensure!(
        d["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["event"] == "traps_refused")
            && !d["events"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["event"] == "link_down"),
        "{d:#}"
    );
    let human = String::from_utf8(siaga.run(&["device", "dinkes-ghost"])?.stdout)?;
    anyhow::ensure!(
        human.contains("forged SNMP answers dropped") && human.contains("traps refused"),
        "{human}"
    );
    let metrics = agent.metrics()?;
    for name in [
        "siaga_agent_snmp_forged_answers_total{device=\"dinkes-ghost\"} ",
        "siaga_agent_traps_refused_total{device=\"dinkes-ghost\"} ",
    ] {
        let value = metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok());
        anyhow::ensure!(value.is_some_and(|v| v > 0.0), "{name}: {metrics}");
    }
    Ok(())
}
