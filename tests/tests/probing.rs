//! Probing against real devices: namespaced hosts, real ICMP, real snmpd.
//! Needs root (network namespaces, raw sockets).

use std::net::IpAddr;
use std::time::Duration;

use siaga_agent::probe::icmp::{BurstOptions, IcmpProber};
use siaga_tests::ber::{oid_ber, tlv};
use siaga_tests::lab::{Lab, router_port};

fn fast(count: u32) -> BurstOptions {
    BurstOptions {
        count,
        interval: Duration::from_millis(2),
        timeout: Duration::from_secs(1),
        keep_rtts: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icmp_burst_reaches_a_lab_host_and_never_reads_zero() -> anyhow::Result<()> {
    let lab = Lab::new()?.device("sw1").start()?;
    let prober = IcmpProber::new()?;
    let addr = lab.target(IpAddr::V4(lab.addr("sw1")?))?;
    let r = prober.burst(addr, &BurstOptions::default()).await;
    assert_eq!((r.sent, r.received, r.loss_pct), (5, 5, 0.0), "{r:?}");
    assert!(r.error.is_empty(), "{r:?}");
    let (min, med, max) = (
        r.rtt_min_us.unwrap_or(0),
        r.rtt_median_us.unwrap_or(0),
        r.rtt_max_us.unwrap_or(0),
    );
    assert!(0 < min && min <= med && med <= max, "{r:?}");
    assert!(r.rtt_p95_us.is_some() && r.jitter_us.is_some() && r.rtt_avg_us.is_some());
    assert!(r.rtts_us.is_empty(), "rtts kept without keep_rtts");

    // Behind a router too, and many bursts at once to the same host.
    let opts = fast(10);
    let results = futures::future::join_all((0..20).map(|_| prober.burst(addr, &opts))).await;
    for r in results {
        assert_eq!((r.sent, r.received), (10, 10), "{r:?}");
        assert_eq!(r.rtts_us.len(), 10);
        assert!(r.rtts_us.iter().all(|&us| us > 0), "{r:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icmp_through_a_router_and_to_a_silent_address() -> anyhow::Result<()> {
    let lab = Lab::new()?
        .router("r1")
        .device("sw2")
        .behind("r1")
        .start()?;
    let prober = IcmpProber::new()?;
    let addr = lab.target(IpAddr::V4(lab.addr("sw2")?))?;
    let r = prober.burst(addr, &fast(5)).await;
    assert_eq!((r.sent, r.received), (5, 5), "{r:?}");

    // The device's uplink cut: every request is lost, none reads as received.
    lab.set_link_down("r1", &router_port("sw2"))?;
    let r = prober
        .burst(
            addr,
            &BurstOptions {
                timeout: Duration::from_millis(300),
                ..fast(5)
            },
        )
        .await;
    assert_eq!((r.sent, r.received, r.loss_pct), (5, 0, 100.0), "{r:?}");
    assert_eq!(r.rtt_median_us, None);
    lab.set_link_up("r1", &router_port("sw2"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_loss_reads_thirty_percent() -> anyhow::Result<()> {
    let lab = Lab::new()?.device("lossy").start()?;
    lab.set_loss("lossy", 30)?;
    let prober = IcmpProber::new()?;
    let addr = lab.target(IpAddr::V4(lab.addr("lossy")?))?;
    let opts = BurstOptions {
        count: 200,
        interval: Duration::from_millis(1),
        timeout: Duration::from_millis(500),
        keep_rtts: false,
    };
    let r = prober.burst(addr, &opts).await;
    assert_eq!(r.sent, 200);
    assert!(
        (20.0..=40.0).contains(&r.loss_pct),
        "loss {} % of 200, want 30 ± 10: {r:?}",
        r.loss_pct
    );

    lab.set_loss("lossy", 0)?;
    let r = prober.burst(addr, &fast(20)).await;
    assert_eq!(r.loss_pct, 0.0, "loss rule not removed: {r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_targets_lose_no_reply() -> anyhow::Result<()> {
    let lab = Lab::new()?.hosts("many", 1000).start()?;
    let addrs = lab.host_addrs("many")?.to_vec();
    assert_eq!(addrs.len(), 1000);
    let prober = IcmpProber::new()?;
    let opts = BurstOptions {
        count: 3,
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        keep_rtts: false,
    };
    let results = futures::future::join_all(addrs.iter().map(|a| {
        let prober = prober.clone();
        let opts = opts.clone();
        let a = IpAddr::V4(*a);
        async move { prober.burst(a, &opts).await }
    }))
    .await;
    let received: u32 = results.iter().map(|r| r.received).sum();
    assert_eq!(received, 3000, "replies lost among 1,000 targets");
    Ok(())
}

/// What the far side of the 10,000-target tests does with each echo request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A forged reply (this request's identifier, sequence number and
    /// payload) from one of the `Mute` targets' addresses, then the right one.
    Right,
    /// Nothing at all: a target that does not answer.
    Mute,
    /// Only wrong replies from the target's own address: another
    /// identifier, another sequence number, another payload.
    Wrong,
}

/// Plays 10,000 hosts whose kernel does not answer echo requests (every
/// reply comes from here): reads each request arriving in the namespace
/// and answers it as `plan` says. Stops when `stop` is set.
struct FarSide {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<u64>>>,
}

impl FarSide {
    fn start(
        lab: &Lab,
        node: &str,
        plan: std::collections::HashMap<std::net::Ipv4Addr, Answer>,
    ) -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
        lab.exec(node, &["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"])?;
        let (rx, tx) = lab.raw_icmp_sockets_on(node)?;
        rx.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mute: Vec<std::net::Ipv4Addr> = plan
            .iter()
            .filter(|(_, a)| **a == Answer::Mute)
            .map(|(ip, _)| *ip)
            .collect();
        anyhow::ensure!(!mute.is_empty(), "the plan needs a mute target");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || -> anyhow::Result<u64> {
            use std::io::Read as _;
            let mut buf = [0u8; 2048];
            let mut sent = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let n = match (&rx).read(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let Some((src, dst, icmp)) = ipv4_icmp(&buf[..n]) else {
                    continue;
                };
                if icmp.len() < 16 || icmp[0] != 8 {
                    continue;
                }
                let (ident, seq) = (
                    u16::from_be_bytes([icmp[4], icmp[5]]),
                    u16::from_be_bytes([icmp[6], icmp[7]]),
                );
                let payload = &icmp[8..];
                let send = |from: std::net::Ipv4Addr, ident: u16, seq: u16, payload: &[u8]| {
                    let p = ipv4_echo_reply(from, src, ident, seq, payload);
                    let to = socket2::SockAddr::from(std::net::SocketAddrV4::new(src, 0));
                    tx.send_to(&p, &to)
                };
                match plan.get(&dst).copied().unwrap_or(Answer::Mute) {
                    Answer::Mute => {}
                    Answer::Right => {
                        send(mute[usize::from(seq) % mute.len()], ident, seq, payload)?;
                        send(dst, ident, seq, payload)?;
                        sent += 2;
                    }
                    Answer::Wrong => {
                        let mut other = payload.to_vec();
                        other[0] ^= 0xff;
                        send(dst, ident ^ 0x5a5a, seq, payload)?;
                        send(dst, ident, seq ^ 0x8000, payload)?;
                        send(dst, ident, seq, &other)?;
                        sent += 3;
                    }
                }
            }
            Ok(sent)
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the far side; how many replies it sent.
    fn stop(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the far side panicked"),
            None => Ok(0),
        }
    }
}

impl Drop for FarSide {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (source, destination, ICMP message) of an IPv4 packet.
fn ipv4_icmp(p: &[u8]) -> Option<(std::net::Ipv4Addr, std::net::Ipv4Addr, &[u8])> {
    let first = *p.first()?;
    if first >> 4 != 4 || p.get(9) != Some(&1) {
        return None;
    }
    let src = std::net::Ipv4Addr::new(*p.get(12)?, p[13], p[14], p[15]);
    let dst = std::net::Ipv4Addr::new(*p.get(16)?, p[17], p[18], p[19]);
    Some((src, dst, p.get(usize::from(first & 0x0f) * 4..)?))
}

/// A whole IPv4 echo reply (the kernel fills in the IP checksum and length).
fn ipv4_echo_reply(
    from: std::net::Ipv4Addr,
    to: std::net::Ipv4Addr,
    ident: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![0u8, 0, 0, 0];
    icmp.extend_from_slice(&ident.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let sum = inet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0];
    p.extend_from_slice(&from.octets());
    p.extend_from_slice(&to.octets());
    p.extend_from_slice(&icmp);
    p
}

fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// 10,000 targets at once, as a large inventory is probed: 9,980 answer
/// (each request first gets a forged reply from a silent target's address,
/// then the right one), 10 never answer, 10 get only replies with the wrong
/// identifier, sequence number or payload. Every right reply is counted and
/// no forged one is: the silent targets read 5 sent, 0 received.
fn far_side_plan(
    addrs: &[std::net::Ipv4Addr],
) -> std::collections::HashMap<std::net::Ipv4Addr, Answer> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let answer = match i % 1000 {
                0 => Answer::Mute,
                500 => Answer::Wrong,
                _ => Answer::Right,
            };
            (*a, answer)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_targets_count_every_reply_and_take_no_forged_one() -> anyhow::Result<()> {
    let lab = Lab::new()?.hosts("many", 10_000).start()?;
    let addrs = lab.host_addrs("many")?.to_vec();
    assert_eq!(addrs.len(), 10_000);
    let plan = far_side_plan(&addrs);
    let far = FarSide::start(&lab, "many", plan.clone())?;
    let prober = IcmpProber::new()?;
    let opts = BurstOptions {
        count: 5,
        interval: Duration::from_millis(100),
        // generous: the far side answers from one thread
        timeout: Duration::from_secs(3),
        keep_rtts: false,
    };
    // One burst per target, all at once (as callers of `burst` do).
    let results = futures::future::join_all(addrs.iter().map(|a| {
        let prober = prober.clone();
        let opts = opts.clone();
        let a = IpAddr::V4(*a);
        async move { prober.burst(a, &opts).await }
    }))
    .await;
    let forged = far.stop()?;
    assert!(forged > 50_000, "the far side sent only {forged} replies");
    let mut wrong = Vec::new();
    for (a, r) in addrs.iter().zip(&results) {
        let want = if plan[a] == Answer::Right { 5 } else { 0 };
        if (r.sent, r.received) != (5, want) {
            wrong.push(format!("{a}: {}/{} (want {want})", r.received, r.sent));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 10,000 targets miscounted: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
    Ok(())
}

/// The same far side, the 10,000 targets as one submission (as the agent's
/// cycle and `siaga-agent check` do): each result arrives as soon as its
/// target is done, so the 20 silent ones, reported lost after the timeout,
/// come after every answering one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_target_is_lost_after_its_timeout_and_holds_up_no_other() -> anyhow::Result<()> {
    let lab = Lab::new()?.hosts("many", 10_000).start()?;
    let addrs = lab.host_addrs("many")?.to_vec();
    let plan = far_side_plan(&addrs);
    let far = FarSide::start(&lab, "many", plan.clone())?;
    let prober = IcmpProber::new()?;
    let opts = BurstOptions {
        count: 5,
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(3),
        keep_rtts: false,
    };
    let mut bursts = prober.bursts(addrs.iter().map(|a| (IpAddr::V4(*a), opts.clone())));
    let mut order = Vec::new();
    while let Some((i, r)) = bursts.next().await {
        order.push((i, r));
    }
    far.stop()?;
    assert_eq!(order.len(), 10_000);
    let answering = order
        .iter()
        .filter(|(i, _)| plan[&addrs[*i]] == Answer::Right)
        .count();
    for (k, (i, r)) in order.iter().enumerate() {
        let a = addrs[*i];
        if plan[&a] == Answer::Right {
            assert_eq!((r.sent, r.received), (5, 5), "{a}: {r:?}");
            assert!(
                k < answering,
                "{a} (answering) reported after a silent target"
            );
        } else {
            assert_eq!(
                (r.sent, r.received, r.loss_pct),
                (5, 0, 100.0),
                "{a}: {r:?}"
            );
            assert!(
                k >= answering,
                "silent {a} reported before an answering target"
            );
        }
    }
    Ok(())
}

#[test]
fn lab_refuses_addresses_it_did_not_create() -> anyhow::Result<()> {
    let lab = Lab::new()?.device("sw1").start()?;
    let own = IpAddr::V4(lab.addr("sw1")?);
    assert!(lab.target(own).is_ok());
    for foreign in [
        "198.19.255.254",
        "192.168.1.1",
        "10.0.0.1",
        "127.0.0.1",
        "8.8.8.8",
    ] {
        let ip: IpAddr = foreign.parse()?;
        assert!(lab.target(ip).is_err(), "{foreign} accepted");
    }
    let netns = lab.netns("sw1")?.to_string();
    drop(lab);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&netns),
        "namespace {netns} left behind"
    );
    Ok(())
}

#[test]
fn lab_cleans_up_after_a_panic() -> anyhow::Result<()> {
    let netns = std::sync::Mutex::new((String::new(), 0u32));
    let outcome = std::panic::catch_unwind(|| {
        let lab = Lab::new().and_then(|b| b.device("doomed").snmpd_v2c("public").start());
        let lab = match lab {
            Ok(lab) => lab,
            Err(e) => return Err::<(), _>(e),
        };
        if let (Ok(mut n), Ok(ns), Some(pid)) =
            (netns.lock(), lab.netns("doomed"), lab.snmpd_pid("doomed"))
        {
            *n = (ns.to_string(), pid);
        }
        panic!("test failure inside a lab");
    });
    assert!(outcome.is_err(), "the closure should have panicked");
    let (netns, pid) = netns.lock().map(|n| n.clone()).unwrap_or_default();
    assert!(!netns.is_empty() && pid != 0);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&netns),
        "{netns} left behind"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "snmpd {pid} still running"
    );
    Ok(())
}

// ---------------------------------------------------------------- SNMP

use siaga_agent::probe::snmp::{SnmpPoller, decode_message};
use siaga_agent::probe::trap::{TrapCredentials, TrapReceiver, TrapSource};
use siaga_proto::v1::{Device, Event, Interface, Link, SnmpResult, SnmpStatus, SnmpTarget};

fn v2c(lab: &Lab, id: &str, community: &str) -> anyhow::Result<Device> {
    Ok(Device {
        id: id.into(),
        address: lab.target(IpAddr::V4(lab.addr(id)?))?.to_string(),
        snmp: Some(SnmpTarget {
            version: "2c".into(),
            community: community.into(),
            timeout_ms: 1500,
            retries: 1,
            ..SnmpTarget::default()
        }),
        ..Device::default()
    })
}

fn v3(
    lab: &Lab,
    id: &str,
    user: &str,
    auth: &str,
    auth_pw: &str,
    privacy: &str,
    priv_pw: &str,
) -> anyhow::Result<Device> {
    Ok(Device {
        id: id.into(),
        address: lab.target(IpAddr::V4(lab.addr(id)?))?.to_string(),
        snmp: Some(SnmpTarget {
            version: "3".into(),
            user: user.into(),
            auth_protocol: auth.into(),
            auth_password: auth_pw.into(),
            priv_protocol: privacy.into(),
            priv_password: priv_pw.into(),
            timeout_ms: 1500,
            retries: 1,
            ..SnmpTarget::default()
        }),
        ..Device::default()
    })
}

/// Longer than net-snmp's default interface cache (3 s; the lab switches it
/// off, a real device may not): one poll interval.
const SNMPD_CACHE: Duration = Duration::from_millis(3500);

fn iface<'a>(r: &'a SnmpResult, name: &str) -> &'a Interface {
    r.interfaces
        .iter()
        .find(|i| i.if_name == name)
        .unwrap_or_else(|| {
            panic!(
                "no interface {name} in {:?}",
                r.interfaces.iter().map(|i| &i.if_name).collect::<Vec<_>>()
            )
        })
}

fn status(r: &SnmpResult) -> SnmpStatus {
    SnmpStatus::try_from(r.status).unwrap_or(SnmpStatus::Unspecified)
}

/// Polls until `cond` holds or `deadline` passes (snmpd caches interface
/// state for a few seconds, as real devices do); returns the last poll.
async fn poll_until(
    poller: &SnmpPoller,
    dev: &Device,
    links: &[Link],
    deadline: Duration,
    cond: impl Fn(&SnmpResult) -> bool,
) -> (SnmpResult, Vec<Event>) {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        let (r, e) = poller.poll(dev, links).await;
        if cond(&r) || tokio::time::Instant::now() > end {
            return (r, e);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmp_v2c_interfaces_and_a_link_going_down_and_up() -> anyhow::Result<()> {
    let lab = Lab::new()?
        .device("sw1")
        .snmpd_v2c("public")
        .spare_link("port2")
        .start()?;
    let dev = v2c(&lab, "sw1", "public")?;
    let links = vec![Link {
        device: "sw1".into(),
        interface: "port2".into(),
        if_index: 0,
        name: "sw1-port2".into(),
    }];
    let poller = SnmpPoller::new();
    let (r, events) = poller.poll(&dev, &links).await;
    assert_eq!(status(&r), SnmpStatus::Ok, "{r:?}");
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(r.sys_name, "sw1");
    assert!(r.sys_descr.contains("sw1"), "{}", r.sys_descr);
    assert!(r.sys_uptime_cs.is_some());
    let port = iface(&r, "port2");
    assert_eq!(port.link_name, "sw1-port2");
    assert_eq!((port.admin_status, port.oper_status), (1, 1), "{port:?}");
    assert!(
        port.hc_counters && port.in_octets.is_some() && port.out_errors.is_some(),
        "{port:?}"
    );
    assert!(port.speed_bps > 0, "{port:?}");
    assert_eq!(
        iface(&r, "eth0").link_name,
        "",
        "only inventory links are named"
    );
    assert_eq!(port.in_bps, None, "no rate on a first poll");

    // Devices may cache interface state for a few seconds; an agent polls
    // less often than that, so the first poll after a change must show it.
    lab.set_link_down("sw1", "port2")?;
    tokio::time::sleep(SNMPD_CACHE).await;
    let (r, _) = poller.poll(&dev, &links).await;
    let port = iface(&r, "port2");
    assert_eq!((port.admin_status, port.oper_status), (2, 2), "{port:?}");
    lab.set_link_up("sw1", "port2")?;
    tokio::time::sleep(SNMPD_CACHE).await;
    let (r, _) = poller.poll(&dev, &links).await;
    assert_eq!(
        (
            iface(&r, "port2").admin_status,
            iface(&r, "port2").oper_status
        ),
        (1, 1)
    );

    // A cut cable: the interface stays admin up but is oper down.
    lab.cut_link("sw1", "port2")?;
    tokio::time::sleep(SNMPD_CACHE).await;
    let (r, _) = poller.poll(&dev, &links).await;
    let port = iface(&r, "port2");
    assert_eq!((port.admin_status, port.oper_status), (1, 2), "{port:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_shows_as_utilisation_matching_the_bytes_sent() -> anyhow::Result<()> {
    let lab = Lab::new()?.device("sw1").snmpd_v2c("public").start()?;
    let dev = v2c(&lab, "sw1", "public")?;
    let poller = SnmpPoller::new();
    let octets = |r: &SnmpResult| iface(r, "eth0").in_octets.unwrap_or(0);
    let poll = || async {
        let (r, _) = poller.poll(&dev, &[]).await;
        (r, std::time::Instant::now())
    };
    // The counter is live, so it also counts the polls' own requests (a few
    // hundred bytes each): "standing still" means growing by less than that.
    const POLLS_OWN: u64 = 8 * 1024;
    let quiet = |a: &SnmpResult, b: &SnmpResult| octets(a).saturating_sub(octets(b)) < POLLS_OWN;
    // Settle: wait until nothing but the polls reaches the device.
    let (mut base, mut base_at);
    (base, _) = poll().await;
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let (r, at) = poll().await;
        let still = quiet(&r, &base);
        (base, base_at) = (r, at);
        if still {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < give_up, "counter never settled");
    }
    let sent = lab.send_udp("sw1", 4000, 1000)?;
    // Poll on until the counter has taken the traffic in and stands still.
    let (mut prev, mut prev_at) = (base.clone(), base_at);
    let mut by_rate = 0.0;
    loop {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let (r, at) = poll().await;
        let e = iface(&r, "eth0");
        let bps = e.in_bps.ok_or_else(|| anyhow::anyhow!("no rate: {e:?}"))?;
        by_rate += bps * (at - prev_at).as_secs_f64() / 8.0;
        let util = e
            .util_in_pct
            .ok_or_else(|| anyhow::anyhow!("no utilisation: {e:?}"))?;
        assert!(
            (util - bps * 100.0 / e.speed_bps as f64).abs() < 1e-9,
            "{e:?}"
        );
        let settled = octets(&r) > octets(&base) + POLLS_OWN && quiet(&r, &prev);
        (prev, prev_at) = (r, at);
        if settled {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < give_up, "counter never settled");
    }
    let counted = octets(&prev) - octets(&base);
    for (what, v) in [("ifHCInOctets", counted as f64), ("in_bps x time", by_rate)] {
        let ratio = v / sent as f64;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "sent {sent} bytes, {what} says {v:.0}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpd_restart_gives_a_reset_event_not_a_spike() -> anyhow::Result<()> {
    let mut lab = Lab::new()?.device("sw1").snmpd_v2c("public").start()?;
    let dev = v2c(&lab, "sw1", "public")?;
    let poller = SnmpPoller::new();
    let (first, _) = poller.poll(&dev, &[]).await;
    assert_eq!(status(&first), SnmpStatus::Ok, "{first:?}");
    // Let the device be up a while, so that a restart visibly resets sysUpTime.
    let (second, events) = poll_until(&poller, &dev, &[], Duration::from_secs(20), |r| {
        r.sys_uptime_cs.unwrap_or(0) >= 200
    })
    .await;
    assert!(events.is_empty(), "{events:?}");
    assert!(
        iface(&second, "eth0").in_bps.is_some(),
        "rates from the second poll on"
    );

    lab.restart_snmpd("sw1")?;
    let (r, events) = poller.poll(&dev, &[]).await;
    assert_eq!(status(&r), SnmpStatus::Ok, "{r:?}");
    assert!(
        r.sys_uptime_cs < second.sys_uptime_cs,
        "sysUpTime should start again"
    );
    assert!(
        events
            .iter()
            .any(|e| e.kind == "device_rebooted" && e.source == "poll"),
        "{events:?}"
    );
    assert!(
        r.interfaces
            .iter()
            .all(|i| i.in_bps.is_none() && i.out_bps.is_none() && i.errors_per_s.is_none()),
        "rate right after a reboot: {r:?}"
    );
    // And the poll after that has rates again, without a spike.
    let (r, events) = poller.poll(&dev, &[]).await;
    assert!(events.is_empty(), "{events:?}");
    let e = iface(&r, "eth0");
    assert!(e.in_bps.is_some_and(|b| b < 1e9), "{e:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpv3_auth_priv_and_the_three_failure_states() -> anyhow::Result<()> {
    let lab = Lab::new()?
        .device("sw3")
        .snmpd_v2c("public")
        .snmpd_v3("admin", "authpass123", "privpass123")
        .snmpd_v3_user(siaga_tests::lab::V3User {
            user: "legacy".into(),
            auth_protocol: "SHA".into(),
            auth_password: "legacyauth1".into(),
            priv_protocol: "AES".into(),
            priv_password: "legacypriv1".into(),
        })
        .device("quiet")
        .start()?;
    let poller = SnmpPoller::new();

    let good = v3(
        &lab,
        "sw3",
        "admin",
        "sha256",
        "authpass123",
        "aes",
        "privpass123",
    )?;
    let (r, _) = poller.poll(&good, &[]).await;
    assert_eq!(status(&r), SnmpStatus::Ok, "SHA-256/AES: {r:?}");
    assert_eq!(r.sys_name, "sw3");
    assert!(
        r.interfaces
            .iter()
            .any(|i| i.if_name == "eth0" && i.hc_counters)
    );
    let sha1 = v3(
        &lab,
        "sw3",
        "legacy",
        "sha",
        "legacyauth1",
        "aes",
        "legacypriv1",
    )?;
    let (r, _) = poller.poll(&sha1, &[]).await;
    assert_eq!(status(&r), SnmpStatus::Ok, "SHA/AES: {r:?}");

    let wrong_pw = v3(
        &lab,
        "sw3",
        "admin",
        "sha256",
        "wrongpass123",
        "aes",
        "privpass123",
    )?;
    let (r, _) = poller.poll(&wrong_pw, &[]).await;
    assert_eq!(
        status(&r),
        SnmpStatus::AuthFailure,
        "wrong v3 password: {r:?}"
    );
    let unknown_user = v3(
        &lab,
        "sw3",
        "nobody",
        "sha256",
        "authpass123",
        "aes",
        "privpass123",
    )?;
    let (r, _) = poller.poll(&unknown_user, &[]).await;
    assert_eq!(
        status(&r),
        SnmpStatus::AuthFailure,
        "unknown v3 user: {r:?}"
    );

    let wrong_community = v2c(&lab, "sw3", "private")?;
    let (r, _) = poller.poll(&wrong_community, &[]).await;
    assert_eq!(
        status(&r),
        SnmpStatus::AuthFailure,
        "wrong community: {r:?}"
    );
    assert!(r.error.contains("community"), "{}", r.error);

    // A host without SNMP: silence, which is a timeout.
    let silent = v2c(&lab, "quiet", "public")?;
    let (r, _) = poller.poll(&silent, &[]).await;
    assert_eq!(status(&r), SnmpStatus::Timeout, "{r:?}");
    assert!(r.interfaces.is_empty());

    // v1 against the same device works too (no Counter64: 32-bit octets).
    let mut v1 = v2c(&lab, "sw3", "public")?;
    if let Some(t) = v1.snmp.as_mut() {
        t.version = "1".into();
    }
    let (r, _) = poller.poll(&v1, &[]).await;
    assert_eq!(status(&r), SnmpStatus::Ok, "v1: {r:?}");
    let e = iface(&r, "eth0");
    assert!(!e.hc_counters && e.in_octets.is_some(), "{e:?}");
    Ok(())
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

/// A fake v2c agent on loopback: answers every request with the right
/// request id but a sysUpTime that is a string (a malformed answer).
fn malformed_agent() -> anyhow::Result<std::net::SocketAddr> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let addr = sock.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Some((_, msg, _)) = read_tlv(&buf[..n]) else {
                continue;
            };
            let Some((_, _version, rest)) = read_tlv(msg) else {
                continue;
            };
            let Some((_, community, rest)) = read_tlv(rest) else {
                continue;
            };
            let Some((_, pdu, _)) = read_tlv(rest) else {
                continue;
            };
            let Some((_, reqid, _)) = read_tlv(pdu) else {
                continue;
            };
            let vb = |arcs: &[u32], value: Vec<u8>| tlv(0x30, &[oid_ber(arcs), value].concat());
            let vbs = [
                vb(&[1, 3, 6, 1, 2, 1, 1, 1, 0], tlv(0x04, b"descr")),
                vb(&[1, 3, 6, 1, 2, 1, 1, 3, 0], tlv(0x04, b"not a timetick")),
                vb(&[1, 3, 6, 1, 2, 1, 1, 5, 0], tlv(0x04, b"name")),
            ]
            .concat();
            let pdu = tlv(
                0xa2,
                &[
                    tlv(0x02, reqid),
                    tlv(0x02, &[0]),
                    tlv(0x02, &[0]),
                    tlv(0x30, &vbs),
                ]
                .concat(),
            );
            let reply = tlv(0x30, &[tlv(0x02, &[1]), tlv(0x04, community), pdu].concat());
            let _ = sock.send_to(&reply, from);
        }
    });
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_answer_is_its_own_state() -> anyhow::Result<()> {
    let addr = malformed_agent()?;
    let dev = Device {
        id: "odd".into(),
        address: addr.ip().to_string(),
        snmp: Some(SnmpTarget {
            version: "2c".into(),
            community: "public".into(),
            port: u32::from(addr.port()),
            timeout_ms: 1000,
            ..SnmpTarget::default()
        }),
        ..Device::default()
    };
    let (r, _) = SnmpPoller::new().poll(&dev, &[]).await;
    assert_eq!(status(&r), SnmpStatus::Malformed, "{r:?}");
    assert!(r.error.contains("sysUpTime"), "{}", r.error);
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let _ = decode_message(&bytes);
    }

    #[test]
    fn mangled_answers_never_panic_the_decoder(
        flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..8),
        cut in 0usize..400,
    ) {
        let vb = |arcs: &[u32], value: Vec<u8>| tlv(0x30, &[oid_ber(arcs), value].concat());
        let vbs = [
            vb(&[1, 3, 6, 1, 2, 1, 1, 3, 0], tlv(0x43, &[1, 2, 3])),
            vb(&[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 2], tlv(0x46, &[0x12, 0x34, 0x56, 0x78, 0x9a])),
            vb(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 2], tlv(0x04, b"eth0")),
        ].concat();
        let pdu = tlv(0xa2, &[tlv(0x02, &[7]), tlv(0x02, &[0]), tlv(0x02, &[0]), tlv(0x30, &vbs)].concat());
        let mut msg = tlv(0x30, &[tlv(0x02, &[1]), tlv(0x04, b"public"), pdu].concat());
        proptest::prop_assert!(decode_message(&msg).is_ok(), "the unmangled message must decode");
        for (at, byte) in flips {
            let n = msg.len();
            msg[at % n] = byte;
        }
        msg.truncate(cut.max(1));
        let _ = decode_message(&msg);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_traps_arrive_as_events_at_once() -> anyhow::Result<()> {
    let lab = Lab::new()?
        .device("sw1")
        .snmpd_v2c("public")
        .spare_link("port2")
        .start()?;
    let listen = std::net::SocketAddr::new(IpAddr::V4(lab.agent_addr("sw1")?), 0);
    let creds = TrapCredentials {
        users: vec![(
            "trapper".into(),
            "sha256".into(),
            "trapauth123".into(),
            "aes".into(),
            "trappriv123".into(),
        )],
    };
    let receiver = TrapReceiver::bind(listen, &creds).await?;
    let port = receiver.local_addr().port();
    let sw1 = IpAddr::V4(lab.addr("sw1")?);
    let links = vec![Link {
        device: "sw1".into(),
        interface: "port2".into(),
        if_index: 0,
        name: "sw1-port2".into(),
    }];
    // sw1 sends v2c traps with its community; SNMPv3 traps (and the rules
    // on whose credentials count) are in snmp_trust.rs.
    let lookup = move |ip: IpAddr| {
        (ip == sw1).then(|| TrapSource {
            device: "sw1".into(),
            links: links.clone(),
            snmp: Some(SnmpTarget {
                version: "2c".into(),
                community: "public".into(),
                ..SnmpTarget::default()
            }),
        })
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Event)>();
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(receiver.run(
        lookup,
        move |d: &str, e: Event| {
            let _ = tx.send((d.to_string(), e));
        },
        cancel.clone(),
    ));
    let dest = format!("{}:{port}", lab.agent_addr("sw1")?);

    let v2c_trap = [
        "snmptrap",
        "-v",
        "2c",
        "-c",
        "public",
        &dest,
        "",
        "1.3.6.1.6.3.1.1.5.3",
        "1.3.6.1.2.1.2.2.1.1.7",
        "i",
        "7",
        "1.3.6.1.2.1.2.2.1.2.7",
        "s",
        "port2",
    ];
    let v2c_link_up = [
        "snmptrap",
        "-v",
        "2c",
        "-c",
        "public",
        &dest,
        "",
        "1.3.6.1.6.3.1.1.5.4",
        "1.3.6.1.2.1.2.2.1.1.7",
        "i",
        "7",
        "1.3.6.1.2.1.31.1.1.1.1.7",
        "s",
        "port2",
    ];
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
        &dest,
        "",
        "1.3.6.1.6.3.1.1.5.4",
        "1.3.6.1.2.1.2.2.1.1.7",
        "i",
        "7",
        "1.3.6.1.2.1.31.1.1.1.1.7",
        "s",
        "port2",
    ];
    let wrong_community = [
        "snmptrap",
        "-v",
        "2c",
        "-c",
        "guess",
        &dest,
        "",
        "1.3.6.1.6.3.1.1.5.3",
        "1.3.6.1.2.1.2.2.1.1.9",
        "i",
        "9",
    ];
    lab.exec("sw1", &wrong_community)?;
    // Refused, and reported once (the next refusals within a minute are
    // only counted).
    let (device, event) = tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .map_err(|_| anyhow::anyhow!("no traps_refused event within 1 s"))?
        .ok_or_else(|| anyhow::anyhow!("receiver ended"))?;
    assert_eq!(
        (device.as_str(), event.kind.as_str()),
        ("sw1", "traps_refused")
    );
    // An SNMPv3 trap for a v2c device is refused like a wrong community.
    lab.exec("sw1", &v3_trap)?;
    for (argv, kind) in [(&v2c_trap[..], "link_down"), (&v2c_link_up[..], "link_up")] {
        lab.exec("sw1", argv)?;
        let got = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        let (device, event) = got
            .map_err(|_| anyhow::anyhow!("no {kind} event within 1 s"))?
            .ok_or_else(|| anyhow::anyhow!("receiver ended"))?;
        assert_eq!(device, "sw1");
        assert_eq!(
            (event.kind.as_str(), event.source.as_str(), event.if_index),
            (kind, "trap", 7),
            "{event:?}"
        );
        assert_eq!(event.link, "sw1-port2", "{event:?}");
    }
    assert!(
        rx.try_recv().is_err(),
        "the traps with a wrong community or version must be dropped"
    );
    cancel.cancel();
    task.await?;
    Ok(())
}

#[test]
fn agent_check_prints_devices_and_links_without_a_collector() -> anyhow::Result<()> {
    let lab = Lab::new()?
        .device("sw1")
        .snmpd_v2c("public")
        .device("mute")
        .start()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "id = \"lab-agent\"\nopd = \"lab\"\ncollector = \"https://127.0.0.1:7443\"\ndata_dir = \"data\"\n\
         [tls]\nca = \"ca.pem\"\ncert = \"agent.pem\"\nkey = \"agent.key\"\n",
    )?;
    let sw1 = lab.target(IpAddr::V4(lab.addr("sw1")?))?;
    let mute = lab.target(IpAddr::V4(lab.addr("mute")?))?;
    let inventory = dir.path().join("inventory.toml");
    let write = |extra: &str| {
        std::fs::write(
            &inventory,
            format!(
                "interval = \"10s\"\n[[opd]]\nid = \"lab\"\nname = \"Lab\"\n\n\
                 [[device]]\nid = \"sw1\"\nopd = \"lab\"\nkind = \"switch\"\naddress = \"{sw1}\"\n\
                 [device.snmp]\nversion = \"2c\"\ncommunity = \"public\"\n\n\
                 [[link]]\ndevice = \"sw1\"\ninterface = \"eth0\"\nname = \"sw1-uplink\"\n{extra}"
            ),
        )
    };
    let run = || {
        std::process::Command::new(siaga_tests::harness::bin("siaga-agent")?)
            .args(["check", "--config"])
            .arg(&config)
            .arg("--inventory")
            .arg(&inventory)
            .output()
            .map_err(anyhow::Error::from)
    };
    write("")?;
    let out = run()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("sw1 ").contains(" ok "), "{text}");
    assert!(
        row("sw1-uplink").contains("eth0") && row("sw1-uplink").contains(" up "),
        "{text}"
    );

    // A device that does not answer SNMP: its own state, and exit 1.
    write(&format!(
        "\n[[device]]\nid = \"mute\"\nopd = \"lab\"\naddress = \"{mute}\"\n[device.snmp]\nversion = \"2c\"\ncommunity = \"public\"\ntimeout_ms = 500\n"
    ))?;
    let out = run()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(row_of(&text, "mute").contains("timeout"), "{text}");
    Ok(())
}

fn row_of(text: &str, name: &str) -> String {
    text.lines()
        .find(|l| l.contains(name))
        .unwrap_or_default()
        .to_string()
}

/// `siaga-agent check` as an unprivileged user inside a lab namespace
/// (where `net.ipv4.ping_group_range` is the namespace's own): ICMP works
/// with CAP_NET_RAW only, and with a DGRAM ping socket where the range
/// allows it; with neither, one message says what to set up.
#[test]
fn icmp_without_root_raw_capability_or_ping_group() -> anyhow::Result<()> {
    let lab = Lab::new()?.device("sw1").start()?;
    let gw = lab.target(IpAddr::V4(lab.gateway("sw1")?))?;
    // World-readable files: the probe runs as nobody.
    let dir = tempfile::Builder::new().prefix("siaga-unpriv-").tempdir()?;
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "id = \"a\"\nopd = \"lab\"\ncollector = \"https://127.0.0.1:7443\"\n[tls]\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\n",
    )?;
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        format!("[[device]]\nid = \"gw\"\nopd = \"lab\"\naddress = \"{gw}\"\n"),
    )?;
    for f in [&config, &inventory] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    }
    // A copy the unprivileged user can reach whatever the build directory's modes.
    let agent = dir.path().join("siaga-agent");
    std::fs::copy(siaga_tests::harness::bin("siaga-agent")?, &agent)?;
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let agent = agent.to_string_lossy().into_owned();
    let (config, inventory) = (
        config.to_string_lossy().into_owned(),
        inventory.to_string_lossy().into_owned(),
    );
    let check = |range: &str, caps: &[&str]| -> anyhow::Result<std::process::Output> {
        lab.exec(
            "sw1",
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv4.ping_group_range={range}"),
            ],
        )?;
        let mut argv = vec![
            "ip",
            "netns",
            "exec",
            lab.netns("sw1")?,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ];
        argv.extend_from_slice(caps);
        argv.extend_from_slice(&[
            agent.as_str(),
            "check",
            "--config",
            &config,
            "--inventory",
            &inventory,
        ]);
        Ok(std::process::Command::new(argv[0])
            .args(&argv[1..])
            .output()?)
    };
    let no_caps = ["--inh-caps=-all", "--bounding-set=-all"];
    let raw_only = [
        "--inh-caps=-all,+net_raw",
        "--ambient-caps=+net_raw",
        "--bounding-set=-all,+net_raw",
    ];

    let out = check("1 0", &raw_only)?;
    assert!(
        out.status.success(),
        "CAP_NET_RAW only: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check("65534 65534", &no_caps)?;
    assert!(
        out.status.success(),
        "DGRAM: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check("1 0", &no_caps)?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("CAP_NET_RAW") && err.contains("ping_group_range") && err.contains("root"),
        "{err}"
    );
    Ok(())
}
