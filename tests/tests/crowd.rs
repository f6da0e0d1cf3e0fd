//! One person's script cannot starve the others, against a real collector
//! over mutual TLS: at most `MAX_CALLS_PER_USER` calls of one person are in
//! flight (an open stream counts until it ends); the next is refused with
//! RESOURCE_EXHAUSTED and a retry hint, another person is served meanwhile,
//! and the slot comes back when one of the calls ends.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use siaga_collector::api::limits::MAX_CALLS_PER_USER;
use siaga_proto::v1::{self, devices_client::DevicesClient};
use siaga_tests::harness::*;

async fn list(ch: &tonic::transport::Channel) -> Result<v1::ListDevicesResponse, tonic::Status> {
    DevicesClient::new(ch.clone())
        .list_devices(v1::ListDevicesRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

#[test]
fn one_persons_open_streams_cannot_starve_the_others() -> Result<()> {
    let mut c = Collector::init()?;
    c.write_inventory(&Inventory::new("10s").opd("dinkes").device(
        "dinkes-sw1",
        "dinkes",
        "127.0.0.1",
    ))?;
    let script = c.enroll_user("skrip", "tim_teknis")?;
    let helpdesk = c.enroll_user("budi", "helpdesk")?;
    c.serve()?;
    let me = helpdesk.json(&["whoami", "--json"])?;
    ensure!(me["user"] == "budi" && me["roles"][0] == "helpdesk", "{me}");
    let rt = runtime()?;
    rt.block_on(async {
        let ch = script.tls()?.channel().await?;
        // The script watches the devices as many times as it may.
        let mut streams = Vec::new();
        for _ in 0..MAX_CALLS_PER_USER {
            let mut s = DevicesClient::new(ch.clone())
                .watch_devices(v1::WatchDevicesRequest::default())
                .await?
                .into_inner();
            ensure!(s.message().await?.is_some(), "the first snapshot");
            streams.push(s);
        }
        // One more call of the same person is refused, with a retry hint.
        match list(&ch).await {
            Err(s) => {
                ensure!(s.code() == tonic::Code::ResourceExhausted, "{s:?}");
                ensure!(
                    s.message().contains("in flight") && s.message().contains("retry"),
                    "{s:?}"
                );
                ensure!(
                    s.metadata().get("grpc-retry-pushback-ms").is_some(),
                    "a retry hint: {:?}",
                    s.metadata()
                );
            }
            Ok(r) => bail!("the call over the limit was served: {r:?}"),
        }
        // Another person is served meanwhile.
        let other = helpdesk.tls()?.channel().await?;
        let r = list(&other).await?;
        ensure!(r.devices.len() == 1, "{r:?}");
        // A stream the script ends gives its slot back.
        drop(streams.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match list(&ch).await {
                Ok(_) => break,
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    ensure!(
                        Instant::now() < deadline,
                        "the slot of the ended stream never came back"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => bail!("{s:?}"),
            }
        }
        Ok(())
    })
}
