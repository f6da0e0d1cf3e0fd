//! An in-process collector for the people's services' tests: a real server
//! with real TLS and certificates made in a temp dir, the inventory of two
//! OPDs (`dinkes` and `dishub`, a switch, a router and a link each), and one
//! enrolled person per role — the `pemohon` works for `dinkes` — each with
//! a channel of their own.
//!
//! The policy matrix ([`super::matrix`]) runs every RPC's [`Case`] as every
//! role against the own and the other OPD on one such collector.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::CollectorConfig;
use crate::pki;

/// The OPD the fixture's `pemohon` works for.
pub const OWN: &str = "dinkes";
/// The other OPD.
pub const OTHER: &str = "dishub";

/// (user name, role) of every person the fixture enrolls; `pemohon` is in [`OWN`].
pub const PEOPLE: &[(&str, &str)] = &[
    ("opd", "pemohon"),
    ("kadis", "kepala_dinas"),
    ("sekdis", "sekretaris_dinas"),
    ("kabid", "kabid_aptika"),
    ("prakom", "pranata_komputer"),
    ("hd", "helpdesk"),
    ("teknisi", "tim_teknis"),
    ("root", "admin"),
];

pub const INVENTORY: &str = r#"
interval = "10s"
[[opd]]
id = "dinkes"
name = "Dinas Kesehatan"
[[opd]]
id = "dishub"
name = "Dinas Perhubungan"
[[device]]
id = "dinkes-sw"
opd = "dinkes"
kind = "switch"
address = "127.0.0.1"
[[device]]
id = "dinkes-rtr"
opd = "dinkes"
kind = "router"
address = "127.0.0.2"
[[device]]
id = "dishub-sw"
opd = "dishub"
kind = "switch"
address = "127.0.0.3"
[[device]]
id = "dishub-rtr"
opd = "dishub"
kind = "router"
address = "127.0.0.4"
[[link]]
device = "dinkes-sw"
interface = "eth0"
name = "uplink"
[[link]]
device = "dishub-sw"
interface = "eth0"
name = "uplink"
"#;

/// A serving collector and a channel per person.
pub struct Fixture {
    /// The collector's directory (collector.toml, inventory.toml, data/ …).
    pub dir: PathBuf,
    /// Its configuration.
    pub cfg: CollectorConfig,
    /// `host:port` it serves on.
    pub addr: String,
    channels: HashMap<String, Channel>,
    made: tokio::sync::Mutex<HashMap<String, String>>,
    cancel: CancellationToken,
    /// The serving collector's task, and where its people's keys are.
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    users: Vec<(String, PathBuf)>,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    /// Starts one with [`PEOPLE`] enrolled.
    pub async fn start() -> Fixture {
        Self::start_with(INVENTORY).await
    }

    /// Starts one with `inventory` (which must have the OPD [`OWN`]).
    pub async fn start_with(inventory: &str) -> Fixture {
        Self::start_full(inventory, "").await
    }

    /// Starts one with the web console on a free loopback port too.
    pub async fn start_web() -> Fixture {
        Self::start_full(INVENTORY, "\n[web]\nlisten = \"127.0.0.1:0\"\n").await
    }

    /// `host:port` of the web console (of [`Fixture::start_web`]).
    pub async fn web_addr(&self) -> String {
        let file = self.cfg.data_dir.join("web.addr");
        for _ in 0..500 {
            if let Ok(a) = std::fs::read_to_string(&file) {
                return a.trim().to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the web console did not start");
    }

    /// Starts one with the web console, after `seed` wrote into the
    /// (closed) store of its data directory.
    pub async fn start_web_seeded(seed: impl FnOnce(&Path)) -> Fixture {
        Self::start_seeded(INVENTORY, "\n[web]\nlisten = \"127.0.0.1:0\"\n", seed).await
    }

    /// Starts one with `inventory` and `extra` appended to collector.toml.
    pub async fn start_full(inventory: &str, extra: &str) -> Fixture {
        Self::start_seeded(inventory, extra, |_| {}).await
    }

    /// As [`Fixture::start_full`], `seed` called with the data directory
    /// before the collector opens it.
    pub async fn start_seeded(inventory: &str, extra: &str, seed: impl FnOnce(&Path)) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("collector");
        pki::init(&dir, "127.0.0.1:0".parse().expect("addr"), &[]).expect("init");
        std::fs::write(dir.join("inventory.toml"), inventory).expect("inventory");
        let mut users = Vec::new();
        for (name, role) in PEOPLE {
            let out = tmp.path().join(format!("user-{name}"));
            let opd = (*role == "pemohon").then_some(OWN);
            pki::enroll_user(&dir, name, &[role.to_string()], opd, &out, None)
                .expect("enroll user");
            users.push((name.to_string(), out));
        }
        let config = dir.join("collector.toml");
        if !extra.is_empty() {
            let mut text = std::fs::read_to_string(&config).expect("collector.toml");
            text.push_str(extra);
            std::fs::write(&config, text).expect("collector.toml");
        }
        let cfg = CollectorConfig::load(&config).expect("collector.toml");
        seed(&cfg.data_dir);
        let mut f = Fixture {
            dir,
            cfg,
            addr: String::new(),
            channels: HashMap::new(),
            made: Default::default(),
            cancel: CancellationToken::new(),
            task: None,
            users,
            _tmp: tmp,
        };
        f.run().await;
        f
    }

    /// Starts the collector of this directory and connects everyone.
    async fn run(&mut self) {
        let config = self.dir.join("collector.toml");
        self.cancel = CancellationToken::new();
        self.task = Some(tokio::spawn(crate::server::serve_until(
            config,
            self.cfg.clone(),
            self.cancel.clone(),
        )));
        let addr_file = self.cfg.data_dir.join("collector.addr");
        let mut addr = String::new();
        for _ in 0..500 {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                addr = a.trim().to_string();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!addr.is_empty(), "the collector did not start");
        let ca = self.dir.join("ca.pem");
        self.channels.clear();
        for (name, out) in &self.users {
            self.channels
                .insert(name.clone(), connect(&addr, &ca, out).await);
        }
        self.addr = addr;
    }

    /// Stops the collector (as a shutdown does) and starts it again on
    /// the same directory: whatever it kept only in memory is gone.
    pub async fn restart(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("the collector's task")
                .expect("the collector stopped cleanly");
        }
        self.run().await;
    }

    /// The channel of person `name` (one of [`PEOPLE`]).
    pub fn channel(&self, name: &str) -> Channel {
        self.channels
            .get(name)
            .unwrap_or_else(|| panic!("no person {name} in the fixture"))
            .clone()
    }

    /// The channel of the person holding `role`.
    pub fn as_role(&self, role: &str) -> Channel {
        let (name, _) = PEOPLE
            .iter()
            .find(|(_, r)| *r == role)
            .unwrap_or_else(|| panic!("no person with role {role}"));
        self.channel(name)
    }

    /// What `make` gives, made the first time `key` is asked for and
    /// remembered (an object a matrix case needs: "ticket of dinkes" …).
    pub async fn once<F>(&self, key: &str, make: F) -> String
    where
        F: std::future::Future<Output = String>,
    {
        let mut made = self.made.lock().await;
        if let Some(v) = made.get(key) {
            return v.clone();
        }
        let v = make.await;
        made.insert(key.to_string(), v.clone());
        v
    }

    /// The number of a letter ticket of `opd`, filed once by the helpdesk.
    pub async fn ticket_of(&self, opd: &str) -> String {
        let key = format!("letter ticket of {opd}");
        self.once(&key, async {
            let today = chrono::Utc::now()
                .with_timezone(&chrono_tz::Asia::Jakarta)
                .date_naive();
            let mut c =
                siaga_proto::v1::tickets_client::TicketsClient::new(self.as_role("helpdesk"));
            c.new_ticket(siaga_proto::v1::NewTicketRequest {
                opd: opd.into(),
                letter_number: format!("005/{opd}/2026"),
                letter_date: today.to_string(),
                subject: "Internet putus".into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("NewTicket for {opd}: {s}"))
            .into_inner()
            .ticket
            .unwrap_or_else(|| panic!("no ticket in the answer for {opd}"))
            .id
        })
        .await
    }

    /// The running collector's shared state is not reachable from here;
    /// seed data through the services (or the stores under `cfg.data_dir`
    /// before [`Fixture::start`]) instead.
    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn connect(addr: &str, ca: &Path, user_dir: &Path) -> Channel {
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca.to_path_buf())))
        .identity(Identity::from_pem(
            read(user_dir.join("user.pem")),
            read(user_dir.join("user.key")),
        ))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect")
}
