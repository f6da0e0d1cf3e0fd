//! OPD networks out of network namespaces: hosts on 198.18.0.0/15, snmpd
//! devices, routers, spare links to cut, random loss.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use siaga_tests::lab::Lab;
//! let lab = Lab::new()?
//!     .device("sw1").snmpd_v2c("public").spare_link("port2")
//!     .router("r1")
//!     .device("sw2").behind("r1").snmpd_v3("admin", "authpass1", "privpass1")
//!     .start()?;
//! lab.set_loss("sw1", 30)?;
//! lab.set_link_down("sw1", "port2")?;
//! # Ok(()) }
//! ```
//!
//! The machine running the tests (the root namespace) plays the agent's
//! host: every device and router hangs off it on its own veth pair with a
//! /30, devices behind a router get a /30 to that router and the root
//! namespace routes the router's /24 through it. Address blocks (/24s of
//! 198.18.0.0/15) are claimed with a lock file per block so that labs of
//! parallel test processes never overlap; names carry the pid. Dropping the
//! [`Lab`] kills its snmpd processes and removes every link, route and
//! namespace, also when a test panics. Namespaces left by a killed process
//! are removed by the next lab that starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

/// First address of the lab range (198.18.0.0/15, RFC 2544 benchmarking).
const RANGE_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
/// Number of /24 blocks in the range.
const RANGE_BLOCKS: u32 = 512;
/// Point-to-point /30 links per /24 block.
const LINKS_PER_BLOCK: u32 = 64;
/// Prefix of every namespace this lab creates: `sg-<pid>-<lab>-<name>`.
const NS_PREFIX: &str = "sg-";

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// SNMPv3 user of a lab device.
#[derive(Debug, Clone)]
pub struct V3User {
    /// USM user name.
    pub user: String,
    /// net-snmp name of the auth protocol: "SHA", "SHA-256", "MD5", …
    pub auth_protocol: String,
    /// Auth password (at least 8 characters).
    pub auth_password: String,
    /// net-snmp name of the privacy protocol: "AES", "DES".
    pub priv_protocol: String,
    /// Privacy password (at least 8 characters).
    pub priv_password: String,
}

#[derive(Debug, Clone, Default)]
struct NodeSpec {
    name: String,
    router: bool,
    behind: Option<String>,
    communities: Vec<String>,
    v3: Vec<V3User>,
    spares: Vec<String>,
    hosts: u32,
    link_traps: bool,
    /// Extra interfaces in bulk: this many veth pairs.
    ports: Option<u32>,
    /// Runs lldpd, its LLDP-MIB served through snmpd over AgentX.
    lldpd: bool,
    /// Extra snmpd.conf lines (`override`, …).
    snmpd_lines: Vec<String>,
    /// Recorded walks snmpd answers under a subtree: (subtree, walk file).
    walks: Vec<(String, PathBuf)>,
}

/// Describes a lab before it is built; see [`Lab::new`].
#[derive(Debug)]
pub struct LabBuilder {
    nodes: Vec<NodeSpec>,
}

/// A running lab. Everything it made goes away when it is dropped.
#[derive(Debug)]
pub struct Lab {
    id: String,
    dir: tempfile::TempDir,
    claims: Vec<BlockClaim>,
    nodes: BTreeMap<String, Node>,
    /// Root-namespace ends of the lab's veth pairs.
    root_links: Vec<String>,
    /// Every namespace created, in order.
    namespaces: Vec<String>,
    /// Every address the lab created (root-side ends included).
    own: Vec<Ipv4Addr>,
}

#[derive(Debug)]
struct Node {
    spec: NodeSpec,
    netns: String,
    /// The node's address on its uplink.
    addr: Ipv4Addr,
    /// The other end of its uplink (root namespace or its router).
    gateway: Ipv4Addr,
    /// Extra addresses of a `hosts` node.
    host_addrs: Vec<Ipv4Addr>,
    /// Where its snmpd sends linkDown/linkUp traps, if it does.
    trap_sink: Option<SocketAddr>,
    snmpd: Option<Child>,
    lldpd: Option<Child>,
}

impl Lab {
    /// Starts describing a lab (a builder: the lab exists after
    /// [`LabBuilder::start`]). Fails unless the process is root and `ip`
    /// and `nft` are installed.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<LabBuilder> {
        ensure!(
            is_root(),
            "the lab builds network namespaces and needs root (run the tests as root)"
        );
        for tool in ["ip", "nft"] {
            ensure!(
                which(tool),
                "`{tool}` is not installed (Debian: apt-get install iproute2 nftables)"
            );
        }
        Ok(LabBuilder { nodes: Vec::new() })
    }

    /// The lab's identity, part of every name it creates.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn node(&self, name: &str) -> Result<&Node> {
        self.nodes
            .get(name)
            .ok_or_else(|| anyhow!("the lab has no device or router named {name:?}"))
    }

    /// The address of a device (its management address, where snmpd listens).
    pub fn addr(&self, device: &str) -> Result<Ipv4Addr> {
        Ok(self.node(device)?.addr)
    }

    /// The address on the device's uplink it talks to: the agent host's
    /// end, or its router's. Traps go here.
    pub fn gateway(&self, device: &str) -> Result<Ipv4Addr> {
        Ok(self.node(device)?.gateway)
    }

    /// The root-namespace address facing a device directly attached to it.
    /// A trap receiver for the lab can listen here.
    pub fn agent_addr(&self, device: &str) -> Result<Ipv4Addr> {
        let mut node = self.node(device)?;
        while let Some(router) = &node.spec.behind {
            node = self.node(router)?;
        }
        Ok(node.gateway)
    }

    /// The addresses of a `hosts` group.
    pub fn host_addrs(&self, group: &str) -> Result<&[Ipv4Addr]> {
        Ok(&self.node(group)?.host_addrs)
    }

    /// The network namespace of a device.
    pub fn netns(&self, device: &str) -> Result<&str> {
        Ok(&self.node(device)?.netns)
    }

    /// The UDP address on the agent host that the device's snmpd sends its
    /// linkDown/linkUp traps to (see [`LabBuilder::link_traps`]): let the
    /// agent's `trap_listen` listen there.
    pub fn trap_sink(&self, device: &str) -> Result<SocketAddr> {
        self.node(device)?
            .trap_sink
            .ok_or_else(|| anyhow!("{device} sends no traps (LabBuilder::link_traps)"))
    }

    /// The pid of a device's snmpd, if it runs one.
    pub fn snmpd_pid(&self, device: &str) -> Option<u32> {
        self.nodes.get(device)?.snmpd.as_ref().map(Child::id)
    }

    /// Whether the lab created this address.
    pub fn owns(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => {
                self.own.contains(&v4)
                    || self
                        .nodes
                        .values()
                        .any(|n| n.host_addrs.binary_search(&v4).is_ok())
            }
            IpAddr::V6(_) => false,
        }
    }

    /// Returns `ip` if the lab created it, an error otherwise: the lab never
    /// sends a packet to an address it did not create.
    pub fn target(&self, ip: IpAddr) -> Result<IpAddr> {
        ensure!(
            self.owns(ip),
            "refusing {ip}: not an address of lab {}",
            self.id
        );
        Ok(ip)
    }

    /// Runs a command inside a device's namespace and returns its stdout.
    pub fn exec(&self, device: &str, argv: &[&str]) -> Result<String> {
        let ns = self.netns(device)?;
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(argv);
        run(&full)
    }

    /// Sets an interface of a device administratively down
    /// (ifAdminStatus and ifOperStatus go down).
    pub fn set_link_down(&self, device: &str, ifname: &str) -> Result<()> {
        self.link_state(device, ifname, "down")
    }

    /// Sets an interface of a device up again.
    pub fn set_link_up(&self, device: &str, ifname: &str) -> Result<()> {
        self.link_state(device, ifname, "up")
    }

    /// Cuts the cable of a spare link: the far end goes down, so the
    /// device's interface stays admin up but goes oper down.
    pub fn cut_link(&self, device: &str, ifname: &str) -> Result<()> {
        self.link_state(device, &peer_name(ifname), "down")
    }

    /// Mends a cable cut with [`Lab::cut_link`].
    pub fn mend_link(&self, device: &str, ifname: &str) -> Result<()> {
        self.link_state(device, &peer_name(ifname), "up")
    }

    fn link_state(&self, device: &str, ifname: &str, state: &str) -> Result<()> {
        let ns = self.netns(device)?;
        run(&["ip", "-n", ns, "link", "set", ifname, state]).map(drop)
    }

    /// Drops `pct` % of the packets arriving at a device, at random
    /// (nftables `numgen random mod 100 < pct drop`); 0 removes the rule.
    pub fn set_loss(&self, device: &str, pct: u32) -> Result<()> {
        ensure!(pct <= 100, "loss must be 0..=100 %, not {pct}");
        let ns = self.netns(device)?;
        let mut rules =
            String::from("table inet siaga_lab_loss\ndelete table inet siaga_lab_loss\n");
        if pct > 0 {
            // nftables refuses `mod 100 < 100` (the value must be 0..=99):
            // total loss is a plain drop.
            let rule = if pct >= 100 {
                "drop".to_string()
            } else {
                format!("numgen random mod 100 < {pct} drop")
            };
            let _ = write!(
                rules,
                "table inet siaga_lab_loss {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    {rule}\n  }}\n}}\n"
            );
        }
        let file = self.dir.path().join(format!("{device}-loss.nft"));
        fs::write(&file, rules).context("writing the nftables rules")?;
        let file = file.to_string_lossy().into_owned();
        run(&["ip", "netns", "exec", ns, "nft", "-f", &file]).map(drop)
    }

    /// The system names of the LLDP neighbours a device's lldpd knows now
    /// (lldpRemSysName through its snmpd, first community), sorted.
    pub fn lldp_neighbours(&self, device: &str) -> Result<Vec<String>> {
        let node = self.node(device)?;
        let community = node
            .spec
            .communities
            .first()
            .ok_or_else(|| anyhow!("{device} runs no v2c snmpd"))?;
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &node.netns,
            "snmpwalk",
            "-v2c",
            "-c",
            community,
            "-On",
            "-Oq",
            &node.addr.to_string(),
            "1.0.8802.1.1.2.1.4.1.1.9",
        ])?;
        let mut names: Vec<String> = out
            .lines()
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(_, v)| v.trim().trim_matches('"').to_string())
            })
            .filter(|v| !v.is_empty() && !v.starts_with("No Such"))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Replaces the extra snmpd.conf lines of a device (see
    /// [`LabBuilder::snmpd_conf`]) and restarts its snmpd with them.
    pub fn set_snmpd_conf(&mut self, device: &str, lines: &[&str]) -> Result<()> {
        let node = self
            .nodes
            .get_mut(device)
            .ok_or_else(|| anyhow!("the lab has no device named {device:?}"))?;
        node.spec.snmpd_lines = lines.iter().map(|l| l.to_string()).collect();
        self.restart_snmpd(device)
    }

    /// Stops and starts a device's snmpd (sysUpTime starts again from 0;
    /// the interface counters, kept by the kernel, do not).
    pub fn restart_snmpd(&mut self, device: &str) -> Result<()> {
        let node = self
            .nodes
            .get_mut(device)
            .ok_or_else(|| anyhow!("the lab has no device named {device:?}"))?;
        let mut child = node
            .snmpd
            .take()
            .ok_or_else(|| anyhow!("{device} runs no snmpd"))?;
        let pid = child.id().to_string();
        let _ = run(&["kill", "-TERM", &pid]);
        wait_child(&mut child, Duration::from_secs(5));
        let dir = self.dir.path().to_path_buf();
        let node = self
            .nodes
            .get_mut(device)
            .ok_or_else(|| anyhow!("the lab has no device named {device:?}"))?;
        node.snmpd = Some(start_snmpd(&dir, node)?);
        Ok(())
    }

    /// A UDP socket bound to `port` on a device's address, inside the
    /// device's namespace (the socket stays there): for a test to play a
    /// device, or a forger standing in its place.
    pub fn udp_socket_on(&self, device: &str, port: u16) -> Result<UdpSocket> {
        let addr = SocketAddr::new(IpAddr::V4(self.addr(device)?), port);
        let path = format!("/var/run/netns/{}", self.netns(device)?);
        std::thread::scope(|s| {
            s.spawn(|| -> Result<UdpSocket> {
                enter_netns(&path)?;
                UdpSocket::bind(addr).with_context(|| format!("binding {addr} in {path}"))
            })
            .join()
            .map_err(|_| anyhow!("the thread entering {path} panicked"))?
        })
    }

    /// Two raw sockets inside a node's namespace, for a test that plays the
    /// far side of ICMP: one that receives every ICMP packet arriving there
    /// (IP header included, with a receive buffer large enough for a round
    /// to 10,000 hosts), and one (`IPPROTO_RAW`) that sends whole IPv4
    /// packets, its header written by the caller, so with any source.
    pub fn raw_icmp_sockets_on(&self, node: &str) -> Result<(socket2::Socket, socket2::Socket)> {
        use socket2::{Domain, Protocol, Socket, Type};
        let path = format!("/var/run/netns/{}", self.netns(node)?);
        std::thread::scope(|s| {
            s.spawn(|| -> Result<(Socket, Socket)> {
                enter_netns(&path)?;
                let rx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
                    .context("opening a raw ICMP socket")?;
                force_recv_buffer(&rx, 64 << 20)?;
                let tx = Socket::new(
                    Domain::IPV4,
                    Type::RAW,
                    Some(Protocol::from(libc::IPPROTO_RAW)),
                )
                .context("opening an IPPROTO_RAW socket")?;
                Ok((rx, tx))
            })
            .join()
            .map_err(|_| anyhow!("the thread entering {path} panicked"))?
        })
    }

    /// Sends `count` UDP datagrams of `payload` bytes from the agent host to
    /// a device (discard port), paced so that no queue drops them. Returns
    /// the bytes that cross the device's uplink as Ethernet frames.
    pub fn send_udp(&self, device: &str, count: u32, payload: usize) -> Result<u64> {
        let to = SocketAddr::new(self.target(IpAddr::V4(self.addr(device)?))?, 9);
        let sock = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
        let data = vec![0x5a_u8; payload];
        for i in 0..count {
            sock.send_to(&data, to)
                .with_context(|| format!("sending UDP to {to}"))?;
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Ethernet header 14 + IPv4 20 + UDP 8.
        Ok(u64::from(count) * (payload as u64 + 42))
    }
}

impl LabBuilder {
    fn push(mut self, spec: NodeSpec) -> Self {
        self.nodes.push(spec);
        self
    }

    fn current(&mut self) -> &mut NodeSpec {
        if self.nodes.is_empty() {
            self.nodes.push(NodeSpec {
                name: "dev".into(),
                ..NodeSpec::default()
            });
        }
        let last = self.nodes.len() - 1;
        &mut self.nodes[last]
    }

    /// Adds a device; the calls that follow configure it.
    pub fn device(self, name: &str) -> Self {
        self.push(NodeSpec {
            name: name.into(),
            ..NodeSpec::default()
        })
    }

    /// Adds a router: a namespace with forwarding on; devices can sit
    /// [`behind`](Self::behind) it.
    pub fn router(self, name: &str) -> Self {
        self.push(NodeSpec {
            name: name.into(),
            router: true,
            ..NodeSpec::default()
        })
    }

    /// Adds one namespace answering on `count` addresses (ping targets).
    pub fn hosts(self, name: &str, count: u32) -> Self {
        self.push(NodeSpec {
            name: name.into(),
            hosts: count.max(1),
            ..NodeSpec::default()
        })
    }

    /// Puts the current device behind a router added before it.
    pub fn behind(mut self, router: &str) -> Self {
        self.current().behind = Some(router.into());
        self
    }

    /// Runs snmpd on the current device, answering v1 and v2c for this
    /// read-only community (may be called for several communities).
    pub fn snmpd_v2c(mut self, community: &str) -> Self {
        self.current().communities.push(community.into());
        self
    }

    /// Runs snmpd on the current device with an SNMPv3 authPriv user
    /// (SHA-256 and AES-128).
    pub fn snmpd_v3(self, user: &str, auth_password: &str, priv_password: &str) -> Self {
        self.snmpd_v3_user(V3User {
            user: user.into(),
            auth_protocol: "SHA-256".into(),
            auth_password: auth_password.into(),
            priv_protocol: "AES".into(),
            priv_password: priv_password.into(),
        })
    }

    /// Runs snmpd on the current device with this SNMPv3 user.
    pub fn snmpd_v3_user(mut self, user: V3User) -> Self {
        self.current().v3.push(user);
        self
    }

    /// Makes the current device's snmpd send a linkDown (linkUp) trap,
    /// SNMPv2c with its first community, when an interface's oper status
    /// goes down (up), to a UDP port on the agent host ([`Lab::trap_sink`]).
    /// net-snmp does this with its DisMan event monitor, set here to look
    /// every second (`linkUpDownNotifications` looks every minute), so a
    /// trap leaves the device within about a second of the change (the lab
    /// switches snmpd's ifTable cache off). Needs [`Self::snmpd_v2c`].
    pub fn link_traps(mut self) -> Self {
        self.current().link_traps = true;
        self
    }

    /// Gives the current device a spare interface to cut: a veth pair with
    /// both ends in the device (`name` and `name` + "p").
    pub fn spare_link(mut self, name: &str) -> Self {
        self.current().spares.push(name.into());
        self
    }

    /// Runs lldpd on the current device (LLDP on every interface, a frame a
    /// second, system name the node's name, the node's address as its
    /// management address), its LLDP-MIB served by the device's snmpd over
    /// AgentX (`lldpd -x`, a socket per namespace). Needs an snmpd (call
    /// [`Self::snmpd_v2c`] or [`Self::snmpd_v3`] too).
    pub fn lldpd(mut self) -> Self {
        self.current().lldpd = true;
        self
    }

    /// Gives the current device `pairs` veth pairs with both ends in the
    /// device (`2 × pairs` extra interfaces, `q<N>a` and `q<N>b`, left
    /// down): a chassis switch's worth of ports. Its snmpd keeps its
    /// interface cache (see `warm_up`).
    pub fn ports(mut self, pairs: u32) -> Self {
        self.current().ports = Some(pairs);
        self
    }

    /// Adds a line to the current device's snmpd.conf, e.g.
    /// `override .1.3.6.1.2.1.25.3.3.1.2.196608 integer 97` to make the
    /// real snmpd answer a chosen value.
    pub fn snmpd_conf(mut self, line: &str) -> Self {
        self.current().snmpd_lines.push(line.into());
        self
    }

    /// Makes the current device's snmpd answer the `subtree` (a vendor's
    /// MIB) from a recorded walk: a text file of `OID TYPE VALUE` lines in
    /// OID order, TYPE one of snmpd's `pass` types (integer, gauge,
    /// counter, string, objectid, timeticks). snmpd runs a small `pass`
    /// script that answers GET and GETNEXT from it.
    pub fn recorded_walk(mut self, subtree: &str, walk: &Path) -> Self {
        self.current()
            .walks
            .push((subtree.into(), walk.to_path_buf()));
        self
    }

    /// Builds the namespaces, links, routes and snmpd processes.
    pub fn start(self) -> Result<Lab> {
        remove_stale_namespaces();
        let pid = std::process::id();
        let seq = LAB_SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{pid}-{seq}");
        let mut names = std::collections::HashSet::new();
        for n in &self.nodes {
            ensure!(
                names.insert(n.name.clone()),
                "two lab nodes are named {:?}",
                n.name
            );
            ensure!(
                !n.name.is_empty()
                    && n.name.len() <= 24
                    && n.name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "lab node name {:?} must be 1-24 characters of [A-Za-z0-9-]",
                n.name
            );
            if let Some(r) = &n.behind {
                ensure!(
                    self.nodes.iter().any(|x| x.router && &x.name == r),
                    "{} is behind {r:?}, which is not a router of this lab",
                    n.name
                );
            }
            if n.lldpd {
                ensure!(
                    !n.communities.is_empty() || !n.v3.is_empty(),
                    "{} runs lldpd but no snmpd to serve its LLDP-MIB (call snmpd_v2c first)",
                    n.name
                );
                ensure!(
                    which("lldpd"),
                    "`lldpd` is not installed (Debian: apt-get install lldpd)"
                );
            }
            ensure!(
                !n.link_traps || !n.communities.is_empty(),
                "{} sends link traps but runs no v2c snmpd (call snmpd_v2c first)",
                n.name
            );
            if !n.communities.is_empty() || !n.v3.is_empty() {
                ensure!(
                    which("snmpd"),
                    "`snmpd` is not installed (Debian: apt-get install snmpd)"
                );
            }
        }
        let mut lab = Lab {
            dir: tempfile::Builder::new()
                .prefix("siaga-lab-")
                .tempdir()
                .context("creating the lab directory")?,
            id,
            claims: Vec::new(),
            nodes: BTreeMap::new(),
            root_links: Vec::new(),
            namespaces: Vec::new(),
            own: Vec::new(),
        };
        // From here on, dropping `lab` undoes whatever was done.
        lab.build(self.nodes, pid, seq)?;
        Ok(lab)
    }
}

impl Lab {
    fn build(&mut self, specs: Vec<NodeSpec>, pid: u32, seq: u32) -> Result<()> {
        let direct = specs.iter().filter(|n| n.behind.is_none()).count() as u32;
        let mut links = LinkAlloc::default();
        let n = blocks_for_links(direct).next_power_of_two();
        let claim = self.claim(n)?;
        links.blocks.push((claim.first, n));
        self.claims.push(claim);
        let mut router_blocks: BTreeMap<String, LinkAlloc> = BTreeMap::new();
        let mut idx = 0u32;
        for spec in specs {
            idx += 1;
            let netns = format!("{NS_PREFIX}{pid}-{seq}-{}", spec.name);
            run(&["ip", "netns", "add", &netns])?;
            self.namespaces.push(netns.clone());
            let mut node = Node {
                netns: netns.clone(),
                addr: Ipv4Addr::UNSPECIFIED,
                gateway: Ipv4Addr::UNSPECIFIED,
                host_addrs: Vec::new(),
                trap_sink: None,
                snmpd: None,
                lldpd: None,
                spec,
            };
            run(&["ip", "-n", &netns, "link", "set", "lo", "up"])?;
            let (near, far) = match &node.spec.behind {
                None => {
                    let (near, far) = links.next(self)?;
                    let root_if = format!("s{}{}{}", base36(pid), base36(seq), base36(idx));
                    run(&[
                        "ip", "link", "add", &root_if, "type", "veth", "peer", "name", "eth0",
                        "netns", &netns,
                    ])?;
                    self.root_links.push(root_if.clone());
                    run(&["ip", "addr", "add", &format!("{near}/30"), "dev", &root_if])?;
                    run(&["ip", "link", "set", &root_if, "up"])?;
                    (near, far)
                }
                Some(router) => {
                    let router_ns = self.node(router)?.netns.clone();
                    let router_addr = self.node(router)?.addr;
                    if !router_blocks.contains_key(router) {
                        let block = self.claim(1)?;
                        let first = block.first;
                        // The agent host reaches everything behind the router through it.
                        run(&[
                            "ip",
                            "route",
                            "add",
                            &format!("{}/24", Ipv4Addr::from(first)),
                            "via",
                            &router_addr.to_string(),
                        ])?;
                        router_blocks.insert(
                            router.clone(),
                            LinkAlloc {
                                blocks: vec![(first, 1)],
                                used: 0,
                            },
                        );
                        self.claims.push(block);
                    }
                    let alloc = router_blocks
                        .get_mut(router)
                        .ok_or_else(|| anyhow!("router block vanished"))?;
                    let (near, far) = alloc.next_in_own()?;
                    self.own.extend([near, far]);
                    let port = router_port(&node.spec.name);
                    run(&[
                        "ip", "-n", &router_ns, "link", "add", &port, "type", "veth", "peer",
                        "name", "eth0", "netns", &netns,
                    ])?;
                    run(&[
                        "ip",
                        "-n",
                        &router_ns,
                        "addr",
                        "add",
                        &format!("{near}/30"),
                        "dev",
                        &port,
                    ])?;
                    run(&["ip", "-n", &router_ns, "link", "set", &port, "up"])?;
                    (near, far)
                }
            };
            run(&[
                "ip",
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{far}/30"),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", &netns, "link", "set", "eth0", "up"])?;
            run(&[
                "ip",
                "-n",
                &netns,
                "route",
                "add",
                "default",
                "via",
                &near.to_string(),
            ])?;
            node.addr = far;
            node.gateway = near;
            if node.spec.router {
                run(&[
                    "ip",
                    "netns",
                    "exec",
                    &netns,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ])?;
            }
            for spare in &node.spec.spares {
                ensure!(
                    spare.len() <= 14,
                    "spare link name {spare:?} is longer than 14 characters"
                );
                run(&[
                    "ip",
                    "-n",
                    &netns,
                    "link",
                    "add",
                    spare,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &peer_name(spare),
                ])?;
                run(&["ip", "-n", &netns, "link", "set", spare, "up"])?;
                run(&["ip", "-n", &netns, "link", "set", &peer_name(spare), "up"])?;
            }
            if let Some(pairs) = node.spec.ports {
                let mut batch = String::new();
                for n in 0..pairs {
                    let _ = writeln!(batch, "link add q{n}a type veth peer name q{n}b");
                }
                run_stdin(&["ip", "-n", &netns, "-batch", "-"], &batch)?;
            }
            if node.spec.hosts > 0 {
                node.host_addrs = self.add_hosts(&netns, far, node.spec.hosts)?;
            }
            let name = node.spec.name.clone();
            if node.spec.link_traps {
                // The agent host's address facing this device (or its router).
                let host = match &node.spec.behind {
                    None => near,
                    Some(router) => self.agent_addr(router)?,
                };
                // A port free a moment ago, for the agent to listen on.
                let port = UdpSocket::bind((host, 0))
                    .and_then(|s| s.local_addr())
                    .with_context(|| format!("choosing a trap port on {host}"))?
                    .port();
                node.trap_sink = Some(SocketAddr::new(IpAddr::V4(host), port));
            }
            if !node.spec.communities.is_empty() || !node.spec.v3.is_empty() {
                // Interfaces exist now: snmpd sees them all from its start.
                node.snmpd = Some(start_snmpd(self.dir.path(), &node)?);
            }
            if node.spec.lldpd {
                node.lldpd = Some(start_lldpd(self.dir.path(), &node)?);
            }
            self.nodes.insert(name, node);
        }
        Ok(())
    }

    /// Puts `count` addresses on the namespace's loopback and routes their
    /// block to it from the agent host, so the host needs one neighbour
    /// entry, not `count` (the kernel's neighbour table holds 1,024).
    fn add_hosts(&mut self, netns: &str, via: Ipv4Addr, count: u32) -> Result<Vec<Ipv4Addr>> {
        let blocks = count.div_ceil(254);
        let blocks = blocks.next_power_of_two();
        let claim = self.claim(blocks)?;
        let first = claim.first;
        let prefix = 24 - blocks.trailing_zeros();
        self.claims.push(claim);
        run(&[
            "ip",
            "route",
            "add",
            &format!("{}/{prefix}", Ipv4Addr::from(first)),
            "via",
            &via.to_string(),
        ])?;
        let mut batch = String::new();
        let mut addrs = Vec::with_capacity(count as usize);
        for i in 0..count {
            // Skip .0 and .255 of each /24 so that no address looks special.
            let a = Ipv4Addr::from(first + (i / 254) * 256 + (i % 254) + 1);
            let _ = writeln!(batch, "addr add {a}/32 dev lo");
            addrs.push(a);
        }
        run_stdin(&["ip", "-n", netns, "-batch", "-"], &batch)?;
        addrs.sort();
        Ok(addrs)
    }

    /// Claims `n` consecutive, aligned /24 blocks of the range.
    fn claim(&mut self, n: u32) -> Result<BlockClaim> {
        let dir = std::env::temp_dir().join("siaga-lab-blocks");
        fs::create_dir_all(&dir).context("creating the lab block registry")?;
        let n = n.max(1).next_power_of_two();
        let mut start = 0;
        while start + n <= RANGE_BLOCKS {
            if let Some(blocks) = claim_all(&dir, start, n) {
                return Ok(BlockClaim {
                    dir: dir.clone(),
                    blocks,
                    first: RANGE_BASE + start * 256,
                });
            }
            start += n;
        }
        bail!("no free address block in 198.18.0.0/15 (every block is claimed by a running lab)")
    }
}

#[derive(Debug, Default)]
struct LinkAlloc {
    /// (first address, number of /24 blocks).
    blocks: Vec<(u32, u32)>,
    used: u32,
}

impl LinkAlloc {
    fn next(&mut self, lab: &mut Lab) -> Result<(Ipv4Addr, Ipv4Addr)> {
        let (near, far) = self.next_in_own()?;
        lab.own.extend([near, far]);
        Ok((near, far))
    }

    fn next_in_own(&mut self) -> Result<(Ipv4Addr, Ipv4Addr)> {
        let mut i = self.used;
        for &(first, n) in &self.blocks {
            if i < n * LINKS_PER_BLOCK {
                self.used += 1;
                let base = first + i * 4;
                return Ok((Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2)));
            }
            i -= n * LINKS_PER_BLOCK;
        }
        bail!("the lab ran out of link addresses")
    }
}

/// Blocks needed for `links` /30 links.
fn blocks_for_links(links: u32) -> u32 {
    links.div_ceil(LINKS_PER_BLOCK).max(1)
}

#[derive(Debug)]
struct BlockClaim {
    dir: PathBuf,
    blocks: Vec<u32>,
    /// First address of the claimed range, as a number.
    first: u32,
}

impl Drop for BlockClaim {
    fn drop(&mut self) {
        for b in &self.blocks {
            let _ = fs::remove_file(self.dir.join(b.to_string()));
        }
    }
}

/// Claims blocks `start..start + n`, all or none.
fn claim_all(dir: &Path, start: u32, n: u32) -> Option<Vec<u32>> {
    let mut got: Vec<u32> = Vec::new();
    for b in start..start + n {
        if !matches!(try_claim(dir, b), Ok(true)) {
            for g in got {
                let _ = fs::remove_file(dir.join(g.to_string()));
            }
            return None;
        }
        got.push(b);
    }
    Some(got)
}

/// Claims one block by creating its file; a file left by a dead process is
/// taken over.
fn try_claim(dir: &Path, block: u32) -> Result<bool> {
    let path = dir.join(block.to_string());
    for _ in 0..2 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                let _ = write!(f, "{}", std::process::id());
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(&path).unwrap_or_default();
                let alive = owner
                    .trim()
                    .parse::<u32>()
                    .map(|p| Path::new(&format!("/proc/{p}")).exists())
                    // A file being written right now: treat as taken.
                    .unwrap_or(true);
                if alive {
                    return Ok(false);
                }
                let _ = fs::remove_file(&path);
            }
            Err(e) => return Err(e).context("claiming a lab address block"),
        }
    }
    Ok(false)
}

/// snmpd `pass` script answering GET (`-g OID`) and GETNEXT (`-n OID`)
/// from a recorded walk (its path the first argument): prints OID, type and
/// value, or nothing when there is no such object.
const RECORDED_WALK_SH: &str = r#"walk="$1"; mode="$2"; want="$3"
case "$want" in .*) ;; *) want=".$want" ;; esac
exec awk -v mode="$mode" -v want="$want" '
function cmp(a, b,   x, y, n, m, i) {
  n = split(a, x, "."); m = split(b, y, ".")
  for (i = 2; i <= n && i <= m; i++) {
    if (x[i] + 0 < y[i] + 0) return -1
    if (x[i] + 0 > y[i] + 0) return 1
  }
  return (n < m) ? -1 : (n > m) ? 1 : 0
}
/^[ 	]*(#|$)/ { next }
{
  o = $1; t = $2; v = $0; sub(/^[^ ]+ +[^ ]+ +/, "", v)
  if ((mode == "-g" && cmp(o, want) == 0) || (mode == "-n" && cmp(o, want) > 0)) {
    print o; print t; print v; exit
  }
}' "$walk"
"#;

fn start_snmpd(dir: &Path, node: &Node) -> Result<Child> {
    let name = &node.spec.name;
    let conf = dir.join(format!("{name}-snmpd.conf"));
    let persist = dir.join(format!("{name}-persist"));
    let log = dir.join(format!("{name}-snmpd.log"));
    let pidfile = dir.join(format!("{name}-snmpd.pid"));
    fs::create_dir_all(&persist).context("creating the snmpd state directory")?;
    let mut c = String::new();
    let _ = writeln!(c, "agentAddress udp:{}:161", node.addr);
    let _ = writeln!(c, "sysName {name}");
    let _ = writeln!(c, "sysDescr Siaga lab device {name}");
    let _ = writeln!(c, "sysLocation lab {}", node.netns);
    let _ = writeln!(c, "sysContact lab");
    for community in &node.spec.communities {
        let _ = writeln!(c, "rocommunity {community} default");
    }
    if node.spec.lldpd {
        // lldpd serves LLDP-MIB through this snmpd.
        let _ = writeln!(c, "master agentx");
        let _ = writeln!(c, "agentXSocket {}", agentx_socket(dir, name).display());
    }
    // Write access for the device itself only, to switch off the ifTable
    // cache once it runs (see `live_interface_status`).
    let _ = writeln!(c, "rwcommunity {LAB_RW_COMMUNITY} {}/32", node.addr);
    for u in &node.spec.v3 {
        let _ = writeln!(
            c,
            "createUser {} {} \"{}\" {} \"{}\"",
            u.user, u.auth_protocol, u.auth_password, u.priv_protocol, u.priv_password
        );
        let _ = writeln!(c, "rouser {} priv", u.user);
    }
    if let (Some(sink), Some(community)) = (node.trap_sink, node.spec.communities.first()) {
        // The event monitor reads the ifTable through an internal SNMPv3 user.
        let _ = writeln!(c, "createUser siagaiq SHA \"siaga-iquery-1\"");
        let _ = writeln!(c, "rouser siagaiq auth");
        let _ = writeln!(c, "iquerySecName siagaiq");
        let _ = writeln!(c, "trap2sink {sink} {community}");
        // linkUpDownNotifications, spelled out with numeric OIDs (no MIB
        // files) and checked every second instead of every minute: linkDown
        // / linkUp with ifIndex, ifAdminStatus and ifOperStatus.
        const IF_COLUMNS: &str =
            "-o .1.3.6.1.2.1.2.2.1.1 -o .1.3.6.1.2.1.2.2.1.7 -o .1.3.6.1.2.1.2.2.1.8";
        let _ = writeln!(
            c,
            "notificationEvent siagaLinkDown .1.3.6.1.6.3.1.1.5.3 {IF_COLUMNS}"
        );
        let _ = writeln!(
            c,
            "notificationEvent siagaLinkUp .1.3.6.1.6.3.1.1.5.4 {IF_COLUMNS}"
        );
        let _ = writeln!(
            c,
            "monitor -r 1 -S -e siagaLinkDown \"linkDown\" .1.3.6.1.2.1.2.2.1.8 == 2"
        );
        let _ = writeln!(
            c,
            "monitor -r 1 -S -e siagaLinkUp \"linkUp\" .1.3.6.1.2.1.2.2.1.8 == 1"
        );
    }
    if !node.spec.walks.is_empty() {
        let script = dir.join("recorded-walk.sh");
        fs::write(&script, RECORDED_WALK_SH).context("writing the pass script")?;
        for (subtree, walk) in &node.spec.walks {
            let _ = writeln!(
                c,
                "pass {subtree} /bin/sh {} {}",
                script.display(),
                walk.display()
            );
        }
    }
    for line in &node.spec.snmpd_lines {
        let _ = writeln!(c, "{line}");
    }
    fs::write(&conf, c).context("writing snmpd.conf")?;
    let child = Command::new("ip")
        .args(["netns", "exec", &node.netns, "snmpd", "-f", "-C", "-c"])
        .arg(&conf)
        .arg("-Lf")
        .arg(&log)
        .arg("-p")
        .arg(&pidfile)
        // No MIB files on Debian; numeric OIDs only.
        .args(["-m", ""])
        .env("SNMP_PERSISTENT_DIR", &persist)
        .env("MIBS", "")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting snmpd")?;
    let mut child = child;
    // Ready when the socket is bound; snmpd reads its users before that.
    let deadline = Instant::now() + Duration::from_secs(15);
    let want = format!("{}:161", node.addr);
    loop {
        let out = run(&["ip", "netns", "exec", &node.netns, "ss", "-Hlun"]).unwrap_or_default();
        if out.contains(&want) {
            // A device with ports in bulk keeps net-snmp's interface cache:
            // reading thousands of interfaces afresh for every request
            // would make every answer wait for it.
            let live = if node.spec.ports.is_some() {
                warm_up(node)
            } else {
                live_interface_status(node)
            };
            if let Err(e) = live {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(&log).unwrap_or_default();
            bail!("snmpd of {name} exited ({status}): {log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(&log).unwrap_or_default();
            bail!("snmpd of {name} did not listen on {want} within 15 s: {log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn agentx_socket(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-agentx"))
}

/// Starts lldpd in the node's namespace and waits until its LLDP-MIB
/// answers through snmpd (the AgentX session is up).
fn start_lldpd(dir: &Path, node: &Node) -> Result<Child> {
    let name = &node.spec.name;
    let conf = dir.join(format!("{name}-lldpd.conf"));
    let ctl = dir.join(format!("{name}-lldpd.sock"));
    let log = dir.join(format!("{name}-lldpd.log"));
    let caps = if node.spec.router { "router" } else { "bridge" };
    fs::write(
        &conf,
        format!(
            "configure system hostname {name}\n\
             configure lldp portidsubtype ifname\n\
             configure lldp tx-interval 1\n\
             configure system capabilities enabled {caps}\n"
        ),
    )
    .context("writing lldpd.conf")?;
    let log_file = fs::File::create(&log).context("creating the lldpd log")?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node.netns, "lldpd", "-d", "-x", "-X"])
        .arg(agentx_socket(dir, name))
        .arg("-u")
        .arg(&ctl)
        .arg("-O")
        .arg(&conf)
        .args(["-m", &node.addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .context("starting lldpd")?;
    let community = node.spec.communities.first().cloned().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // lldpLocSysName: answered once lldpd's AgentX session is up.
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &node.netns,
            "snmpget",
            "-v2c",
            "-c",
            &community,
            "-On",
            "-t",
            "1",
            "-r",
            "0",
            &node.addr.to_string(),
            "1.0.8802.1.1.2.1.3.3.0",
        ])
        .unwrap_or_default();
        if out.contains(&format!("\"{name}\"")) || community.is_empty() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(&log).unwrap_or_default();
            bail!("lldpd of {name} exited ({status}): {log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(&log).unwrap_or_default();
            bail!("lldpd of {name} did not serve LLDP-MIB within 20 s: {log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until snmpd has read its interfaces once: with thousands of them
/// its first answer takes seconds (about 20 s for 4,096 on a loaded
/// 2-core machine); later ones come from its cache.
fn warm_up(node: &Node) -> Result<()> {
    let addr = node.addr.to_string();
    let community = node
        .spec
        .communities
        .first()
        .map_or(LAB_RW_COMMUNITY, String::as_str);
    run(&[
        "ip",
        "netns",
        "exec",
        &node.netns,
        "snmpget",
        "-v2c",
        "-c",
        community,
        "-m",
        "",
        "-r",
        "1",
        "-t",
        "90",
        &addr,
        // ifDescr.1 and ifName.1: snmpd loads ifTable and ifXTable.
        ".1.3.6.1.2.1.2.2.1.2.1",
        ".1.3.6.1.2.1.31.1.1.1.1.1",
    ])
    .with_context(|| format!("waiting for the first answer of {}", node.spec.name))?;
    Ok(())
}

/// Community with write access from the device's own address only.
const LAB_RW_COMMUNITY: &str = "siaga-lab-rw";

/// net-snmp answers ifTable/ifXTable from a cache refreshed every 3 s, so a
/// cut shows up to 3 s late; a switch reports its ports' status live. Setting
/// the table's `nsCacheTimeout` (NET-SNMP-AGENT-MIB, indexed by the table's
/// OID) to 0 makes every request read the kernel's interfaces afresh.
fn live_interface_status(node: &Node) -> Result<()> {
    const IF_TABLE_CACHE_TIMEOUT: &str = ".1.3.6.1.4.1.8072.1.5.3.1.2.1.3.6.1.2.1.2.2";
    let addr = node.addr.to_string();
    run(&[
        "ip",
        "netns",
        "exec",
        &node.netns,
        "snmpset",
        "-v2c",
        "-c",
        LAB_RW_COMMUNITY,
        "-m",
        "",
        "-r",
        "3",
        "-t",
        "1",
        &addr,
        IF_TABLE_CACHE_TIMEOUT,
        "i",
        "0",
    ])
    .with_context(|| format!("switching off the ifTable cache of {}", node.spec.name))?;
    Ok(())
}

fn wait_child(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            for child in [node.lldpd.take(), node.snmpd.take()].into_iter().flatten() {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for link in &self.root_links {
            let _ = run(&["ip", "link", "del", link]);
        }
        for netns in &self.namespaces {
            kill_netns_pids(netns);
            let _ = run(&["ip", "netns", "del", netns]);
        }
        // Routes went with their links; block claims are released as
        // `self.claims` drops.
    }
}

fn kill_netns_pids(netns: &str) {
    if let Ok(pids) = run(&["ip", "netns", "pids", netns]) {
        for pid in pids.split_whitespace() {
            let _ = run(&["kill", "-KILL", pid]);
        }
    }
}

/// Removes namespaces of lab processes that no longer run (killed tests).
fn remove_stale_namespaces() {
    let Ok(list) = run(&["ip", "netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            kill_netns_pids(name);
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

/// The router's interface facing a device behind it.
pub fn router_port(device: &str) -> String {
    format!("to-{device}").chars().take(15).collect()
}

fn peer_name(ifname: &str) -> String {
    format!("{ifname}p")
}

fn base36(mut v: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a command; a failure carries its stderr.
/// Moves the calling thread (only) into the network namespace at `path`.
#[allow(unsafe_code)]
fn enter_netns(path: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns on a valid namespace file descriptor affects only the
    // calling thread, which the caller dedicates to this namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    ensure!(
        rc == 0,
        "entering {path}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Sets a socket's receive buffer past `net.core.rmem_max` (root).
#[allow(unsafe_code)]
fn force_recv_buffer(sock: &socket2::Socket, bytes: usize) -> Result<()> {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(bytes)?;
    // SAFETY: a plain integer option on a socket this function borrows; the
    // pointer and length describe `v`, which outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    ensure!(
        rc == 0,
        "SO_RCVBUFFORCE: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

fn run(argv: &[&str]) -> Result<String> {
    run_stdin_opt(argv, None)
}

fn run_stdin(argv: &[&str], stdin: &str) -> Result<String> {
    run_stdin_opt(argv, Some(stdin))
}

fn run_stdin_opt(argv: &[&str], stdin: Option<&str>) -> Result<String> {
    let (prog, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .with_context(|| format!("writing to {}", argv.join(" ")))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("running {}", argv.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_limits() {
        let name = format!("s{}{}{}", base36(4_194_304), base36(1295), base36(1295));
        assert!(name.len() <= 15, "{name}");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }

    #[test]
    fn link_addresses_are_slash30_pairs() {
        let mut a = LinkAlloc {
            blocks: vec![(RANGE_BASE, 1)],
            used: 0,
        };
        assert_eq!(
            a.next_in_own().ok(),
            Some((Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)))
        );
        assert_eq!(
            a.next_in_own().ok(),
            Some((Ipv4Addr::new(198, 18, 0, 5), Ipv4Addr::new(198, 18, 0, 6)))
        );
        for _ in 2..LINKS_PER_BLOCK {
            assert!(a.next_in_own().is_ok());
        }
        assert!(a.next_in_own().is_err());
    }
}
