//! Probing against real devices: namespaced hosts, real ICMP, real snmpd.
//! Needs root (network namespaces, raw sockets).

use std::net::IpAddr;
use std::time::Duration;

use siaga_agent::probe::icmp::{BurstOptions, IcmpProber};
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
