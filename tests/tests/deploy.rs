//! Deployment, checked the way an operator would: the Debian packages'
//! contents, an install, a removal and a purge in a scratch root (an overlay
//! of this machine's root filesystem, so the maintainer scripts run for real
//! without touching the machine), `systemd-analyze verify` and `security` on
//! the installed units, and the agent binary probing with CAP_NET_RAW as its
//! only privilege, or failing with the fix when it lacks it.
//!
//! systemd does not run as PID 1 here, but `systemd-analyze` works offline:
//! `verify --root=` and `security --offline=yes --root=` read the units as
//! installed in the scratch root.
//!
//! Needs root (overlay mount, chroot, network namespaces, setpriv) and the
//! binaries built (`cargo build --workspace --bins`): the packages are made
//! from those by `deploy/build-debs.sh --no-build`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use siaga_tests::harness::{bin, bin_dir};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
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

fn need_root() -> Result<()> {
    ensure!(
        is_root(),
        "this test mounts, chroots and creates network namespaces: run the tests as root"
    );
    Ok(())
}

/// Runs `cmd`, returning its output whatever the exit status.
fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))
}

/// Runs `cmd` and returns its stdout; fails with its stderr unless it exits 0.
fn run(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The two packages, built by the documented script from the binaries of
/// this test build.
struct Debs {
    _dir: tempfile::TempDir,
    agent: PathBuf,
    collector: PathBuf,
}

fn build_debs() -> Result<Debs> {
    let dir = tempfile::tempdir()?;
    let bins = bin_dir();
    let profile = if bins.file_name().is_some_and(|n| n == "release") {
        "release"
    } else {
        "dev"
    };
    let target = bins.parent().context("no target directory")?;
    let printed = run(Command::new(repo().join("deploy/build-debs.sh"))
        .args(["--profile", profile, "--no-build", "--out"])
        .arg(dir.path())
        .env("CARGO_TARGET_DIR", target))?;
    let arch = run(Command::new("dpkg").arg("--print-architecture"))?;
    let arch = arch.trim();
    let agent = dir.path().join(format!("siaga-agent_{VERSION}_{arch}.deb"));
    let collector = dir
        .path()
        .join(format!("siaga-collector_{VERSION}_{arch}.deb"));
    for deb in [&agent, &collector] {
        ensure!(
            printed.lines().any(|l| Path::new(l) == deb.as_path()) && deb.is_file(),
            "build-debs.sh did not report {} (it printed {printed:?})",
            deb.display()
        );
    }
    Ok(Debs {
        _dir: dir,
        agent,
        collector,
    })
}

/// One line of `dpkg-deb -c`: mode, owner, link target.
#[derive(Debug)]
struct Entry {
    mode: String,
    owner: String,
    link: Option<String>,
}

fn contents(deb: &Path) -> Result<BTreeMap<String, Entry>> {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    let mut map = BTreeMap::new();
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        ensure!(f.len() >= 6, "unexpected dpkg-deb -c line {line:?}");
        let path = f[5].trim_start_matches('.').to_string();
        let link = (f.get(6) == Some(&"->")).then(|| f[7..].join(" "));
        map.insert(
            path,
            Entry {
                mode: f[0].to_string(),
                owner: f[1].to_string(),
                link,
            },
        );
    }
    Ok(map)
}

fn field(deb: &Path, name: &str) -> Result<String> {
    Ok(run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))?
        .trim()
        .to_string())
}

fn control_file(deb: &Path, name: &str) -> Result<String> {
    run(Command::new("dpkg-deb").arg("-I").arg(deb).arg(name))
}

#[test]
fn packages_carry_binaries_units_maintainer_scripts_and_conffiles() -> Result<()> {
    let debs = build_debs()?;
    let arch = run(Command::new("dpkg").arg("--print-architecture"))?;
    for (deb, pkg, bins, other) in [
        (
            &debs.agent,
            "siaga-agent",
            &["siaga-agent"][..],
            "siaga-collector",
        ),
        (
            &debs.collector,
            "siaga-collector",
            &["siaga-collector", "siaga"][..],
            "siaga-agent",
        ),
    ] {
        let c = contents(deb)?;
        let get = |p: &str| c.get(p).with_context(|| format!("{pkg}: no {p} in {c:#?}"));
        for b in bins {
            let e = get(&format!("/usr/bin/{b}"))?;
            assert_eq!(e.mode, "-rwxr-xr-x", "{pkg}: /usr/bin/{b}");
        }
        assert!(
            !c.contains_key(&format!("/usr/bin/{other}")),
            "{pkg} must not carry {other}"
        );
        let unit = get(&format!("/lib/systemd/system/{pkg}.service"))?;
        assert_eq!(unit.mode, "-rw-r--r--");
        get(&format!("/etc/default/{pkg}"))?;
        get(&format!("/usr/share/doc/{pkg}/README.Debian"))?;
        get(&format!("/usr/share/doc/{pkg}/copyright"))?;
        let data = get(&format!("/etc/{pkg}/data"))?;
        assert_eq!(
            data.link.as_deref(),
            Some(format!("/var/lib/{pkg}").as_str()),
            "{pkg}: the enrolled data_dir = \"data\" must land in the state directory"
        );
        for (p, e) in &c {
            assert_eq!(e.owner, "root/root", "{pkg}: {p} owned by {}", e.owner);
        }

        assert_eq!(field(deb, "Package")?, pkg);
        assert_eq!(field(deb, "Version")?, VERSION);
        assert_eq!(field(deb, "Architecture")?, arch.trim());
        let depends = field(deb, "Depends")?;
        assert!(depends.contains("adduser"), "{pkg}: Depends {depends}");
        assert!(depends.contains("libc6"), "{pkg}: Depends {depends}");

        assert_eq!(
            control_file(deb, "conffiles")?.trim(),
            format!("/etc/default/{pkg}")
        );
        let postinst = control_file(deb, "postinst")?;
        assert!(
            postinst.contains("adduser --system --group --no-create-home"),
            "{pkg}: postinst creates no system user"
        );
        assert!(postinst.contains("dpkg-statoverride --update --add root"));
        let postrm = control_file(deb, "postrm")?;
        assert!(postrm.contains("purge)") && postrm.contains("deluser"));
        let prerm = control_file(deb, "prerm")?;
        assert!(prerm.contains("stop"));

        // What is packaged is what is in the repository, and it runs.
        let x = tempfile::tempdir()?;
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(x.path()))?;
        let shipped = fs::read(x.path().join(format!("lib/systemd/system/{pkg}.service")))?;
        let source = fs::read(repo().join(format!("deploy/systemd/{pkg}.service")))?;
        assert!(
            shipped == source,
            "{pkg}: packaged unit differs from deploy/systemd"
        );
        for b in bins {
            let v = run(Command::new(x.path().join("usr/bin").join(b)).arg("--version"))?;
            assert_eq!(v.trim(), format!("{b} {VERSION}"));
        }
    }
    // siaga's completions (bash, zsh, fish) and manual pages: one per
    // command, made from the binary's own command line definition.
    let c = contents(&debs.collector)?;
    for p in [
        "/usr/share/bash-completion/completions/siaga",
        "/usr/share/zsh/vendor-completions/_siaga",
        "/usr/share/fish/vendor_completions.d/siaga.fish",
        "/usr/share/man/man1/siaga.1.gz",
        "/usr/share/man/man1/siaga-tickets.1.gz",
        "/usr/share/man/man1/siaga-ticket-new.1.gz",
        "/usr/share/man/man1/siaga-maintenance-add.1.gz",
        "/usr/share/siaga/grafana/siaga-network.json",
    ] {
        let e = c
            .get(p)
            .with_context(|| format!("siaga-collector: no {p}"))?;
        assert_eq!(e.mode, "-rw-r--r--", "{p}");
    }
    let x = tempfile::tempdir()?;
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&debs.collector)
        .arg(x.path()))?;
    // The Grafana dashboard is the one in the repository.
    let shipped = fs::read(x.path().join("usr/share/siaga/grafana/siaga-network.json"))?;
    let source = fs::read(repo().join("deploy/grafana/siaga-network.json"))?;
    assert!(
        shipped == source,
        "siaga-collector: packaged dashboard differs from deploy/grafana"
    );
    // Bash completes a command and a flag as a person would type them.
    let completion = x.path().join("usr/share/bash-completion/completions/siaga");
    let complete = |line: &str| -> Result<String> {
        let words: Vec<&str> = line.split(' ').collect();
        let script = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
             _siaga siaga '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            completion.display(),
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len() - 2],
        );
        run(Command::new("bash").arg("-c").arg(script))
    };
    let commands = complete("siaga tick")?;
    assert!(
        commands.lines().any(|l| l == "tickets") && commands.lines().any(|l| l == "ticket"),
        "siaga tick<TAB>: {commands}"
    );
    let flags = complete("siaga maintenance add --dev")?;
    assert!(
        flags.lines().any(|l| l == "--device"),
        "siaga maintenance add --dev<TAB>: {flags}"
    );
    // The manual page names every command and the flags of one.
    let page = |name: &str| -> Result<String> {
        run(Command::new("zcat").arg(x.path().join("usr/share/man/man1").join(name)))
    };
    let top = page("siaga.1.gz")?;
    assert!(top.contains(".TH siaga 1"), "{top}");
    for cmd in ["tickets", "ticket", "maintenance", "completion"] {
        assert!(top.contains(cmd), "siaga.1 lists {cmd}: {top}");
    }
    let add = page("siaga-maintenance-add.1.gz")?;
    assert!(
        add.contains("\\-\\-device") && add.contains("\\-\\-link"),
        "{add}"
    );

    let c = contents(&debs.agent)?;
    assert!(c.contains_key("/usr/share/doc/siaga-agent/examples/trap-receiver.conf"));
    assert!(c.contains_key("/usr/share/doc/siaga-agent/examples/agent.toml"));
    Ok(())
}

/// The settings of a unit's [Service] section: key -> every value given.
fn service_section(path: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section == "[Service]"
            && let Some((k, v)) = line.split_once('=')
        {
            map.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    Ok(map)
}

#[test]
fn units_hold_the_promised_hardening() -> Result<()> {
    let common = [
        ("Type", "notify"),
        ("Restart", "always"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"),
    ];
    for (unit, user, caps, families) in [
        (
            "siaga-agent",
            "siaga-agent",
            "CAP_NET_RAW",
            "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        ),
        ("siaga-collector", "siaga", "", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        let s = service_section(&repo().join(format!("deploy/systemd/{unit}.service")))?;
        let one = |k: &str| -> Result<String> {
            let v = s.get(k).with_context(|| format!("{unit}: no {k}="))?;
            ensure!(v.len() == 1, "{unit}: {k}= set {} times", v.len());
            Ok(v[0].clone())
        };
        for (k, v) in common {
            assert!(
                s.get(k).is_some_and(|vs| vs.iter().any(|x| x == v)),
                "{unit}: {k}={v} missing"
            );
        }
        assert_eq!(one("User")?, user);
        assert_eq!(one("StateDirectory")?, unit);
        assert_eq!(one("AmbientCapabilities")?, caps, "{unit}");
        assert_eq!(one("CapabilityBoundingSet")?, caps, "{unit}");
        assert_eq!(one("RestrictAddressFamilies")?, families);
        assert_eq!(
            one("ExecStartPre")?,
            format!(
                "/usr/bin/{unit} validate --config /etc/{unit}/{}.toml",
                unit.trim_start_matches("siaga-")
            )
        );
        let watchdog = humantime_secs(&one("WatchdogSec")?)?;
        assert!(watchdog >= 10, "{unit}: WatchdogSec too short to feed");
        // Either would take CAP_NET_RAW's power over the host network away
        // (agent) or is simply not set; never PrivateNetwork for a prober.
        assert!(!s.contains_key("PrivateNetwork"), "{unit}");
    }
    // CAP_NET_BIND_SERVICE only through the example drop-in.
    let dropin = fs::read_to_string(repo().join("deploy/systemd/trap-receiver.conf"))?;
    assert!(dropin.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"));
    assert!(dropin.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE"));
    let agent = fs::read_to_string(repo().join("deploy/systemd/siaga-agent.service"))?;
    assert!(
        !agent
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("CAP_NET_BIND_SERVICE")),
        "the agent unit itself must not grant CAP_NET_BIND_SERVICE"
    );
    Ok(())
}

fn humantime_secs(v: &str) -> Result<u64> {
    let n = v.trim_end_matches('s');
    n.parse()
        .with_context(|| format!("WatchdogSec={v}: expected seconds like 30s"))
}

/// A scratch root: this machine's root filesystem as the lower layer of an
/// overlay, so everything dpkg and the maintainer scripts write lands in a
/// temporary upper layer. Unmounted and deleted on drop.
struct ScratchRoot {
    merged: PathBuf,
    _dir: tempfile::TempDir,
}

impl ScratchRoot {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (upper, work, merged) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("root"),
        );
        for d in [&upper, &work, &merged] {
            fs::create_dir(d)?;
        }
        run(Command::new("mount")
            .args(["-t", "overlay", "siaga-scratch", "-o"])
            .arg(format!(
                "lowerdir=/,upperdir={},workdir={}",
                upper.display(),
                work.display()
            ))
            .arg(&merged))?;
        let root = Self { merged, _dir: dir };
        // The overlay shows the root filesystem only: /dev and /proc are
        // mounts of their own.
        run(Command::new("mount")
            .args(["--bind", "/dev"])
            .arg(root.path("/dev")))?;
        run(Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(root.path("/proc")))?;
        fs::create_dir_all(root.path("/tmp/debs"))?;
        Ok(root)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.merged.join(p.trim_start_matches('/'))
    }

    /// A command run inside the root (chroot).
    fn chroot(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("chroot");
        c.arg(&self.merged).args(argv);
        c.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        c
    }

    /// dpkg run inside the root, as on the machine it stands for (`dpkg
    /// --root` would resolve the packages' users against this machine's).
    fn dpkg(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec!["dpkg"];
        argv.extend_from_slice(args);
        run(self.chroot(&argv).env("DEBIAN_FRONTEND", "noninteractive"))
    }

    /// Copies a package into the root; returns its path there.
    fn put(&self, deb: &Path) -> Result<String> {
        let name = deb.file_name().context("package name")?;
        fs::copy(deb, self.path("/tmp/debs").join(name))?;
        Ok(format!("/tmp/debs/{}", name.to_string_lossy()))
    }

    /// uid and gid of a user of the scratch root.
    fn user(&self, name: &str) -> Result<Option<(u32, u32, String)>> {
        let passwd = fs::read_to_string(self.path("/etc/passwd"))?;
        for l in passwd.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 7 && f[0] == name {
                return Ok(Some((f[2].parse()?, f[3].parse()?, f[6].to_string())));
            }
        }
        Ok(None)
    }

    fn group(&self, name: &str) -> Result<Option<u32>> {
        let group = fs::read_to_string(self.path("/etc/group"))?;
        for l in group.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 3 && f[0] == name {
                return Ok(Some(f[2].parse()?));
            }
        }
        Ok(None)
    }

    /// (uid, gid, mode & 0o7777) of a path inside the root.
    fn stat(&self, p: &str) -> Result<(u32, u32, u32)> {
        let m = fs::symlink_metadata(self.path(p)).with_context(|| format!("stat {p}"))?;
        Ok((m.uid(), m.gid(), m.mode() & 0o7777))
    }

    /// `systemd-analyze` on the units installed in the root; fails on any
    /// warning too (an unknown key or bad value is only a warning to systemd).
    fn analyze(&self, args: &[&str]) -> Result<String> {
        let out = output(
            Command::new("systemd-analyze")
                .args(args)
                .arg(format!("--root={}", self.merged.display())),
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success(),
            "systemd-analyze {args:?} failed ({}): {stderr}",
            out.status
        );
        Ok(format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)))
    }
}

impl Drop for ScratchRoot {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["--recursive", "--lazy"])
            .arg(&self.merged)
            .status();
    }
}

/// Fails unless `systemd-analyze verify` reports nothing at all.
fn verify_clean(root: &ScratchRoot, units: &[&str]) -> Result<()> {
    let mut args = vec!["verify"];
    args.extend_from_slice(units);
    let said = root.analyze(&args)?;
    ensure!(
        said.trim().is_empty(),
        "systemd-analyze verify {units:?} warned:\n{said}"
    );
    Ok(())
}

#[test]
fn packages_install_run_as_their_users_and_remove_cleanly() -> Result<()> {
    need_root()?;
    let debs = build_debs()?;
    let root = ScratchRoot::new()?;
    let agent_deb = root.put(&debs.agent)?;
    let collector_deb = root.put(&debs.collector)?;
    root.dpkg(&["--install", &agent_deb, &collector_deb])?;

    // Users, directories, permissions.
    for (pkg, user) in [("siaga-agent", "siaga-agent"), ("siaga-collector", "siaga")] {
        let (uid, gid, shell) = root
            .user(user)?
            .with_context(|| format!("no user {user} after installing {pkg}"))?;
        assert!(uid < 1000, "{user} is not a system user (uid {uid})");
        assert_eq!(root.group(user)?, Some(gid), "{user}'s own group");
        assert_eq!(shell, "/usr/sbin/nologin");
        assert_eq!(
            root.stat(&format!("/etc/{pkg}"))?,
            (0, gid, 0o750),
            "/etc/{pkg}"
        );
        assert_eq!(
            root.stat(&format!("/var/lib/{pkg}"))?,
            (uid, gid, 0o750),
            "/var/lib/{pkg}"
        );
        assert!(root.path(&format!("/usr/bin/{pkg}")).is_file());
        // Not enabled until the operator has a configuration.
        assert!(
            !root
                .path(&format!(
                    "/etc/systemd/system/multi-user.target.wants/{pkg}.service"
                ))
                .exists(),
            "{pkg} enabled on install"
        );
    }
    assert!(root.path("/usr/bin/siaga").is_file());

    // The units as installed: systemd finds nothing to complain about, also
    // with the trap drop-in, and rates their exposure low.
    verify_clean(&root, &["siaga-agent.service", "siaga-collector.service"])?;
    let dropin_dir = root.path("/etc/systemd/system/siaga-agent.service.d");
    fs::create_dir_all(&dropin_dir)?;
    fs::copy(
        root.path("/usr/share/doc/siaga-agent/examples/trap-receiver.conf"),
        dropin_dir.join("trap-receiver.conf"),
    )?;
    verify_clean(&root, &["siaga-agent.service"])?;
    fs::remove_dir_all(&dropin_dir)?;
    for (unit, threshold) in [
        ("siaga-agent.service", "20"),
        ("siaga-collector.service", "15"),
    ] {
        let report = root.analyze(&[
            "security",
            "--offline=yes",
            &format!("--threshold={threshold}"),
            unit,
        ])?;
        assert!(
            report.contains(&format!("Overall exposure level for {unit}")),
            "{report}"
        );
    }

    // The collector set up as README.Debian says: init, then
    // dpkg-reconfigure gives the service user what it must read.
    run(&mut root.chroot(&[
        "siaga-collector",
        "init",
        "--dir",
        "/etc/siaga-collector",
        "--listen",
        "127.0.0.1:7443",
        "--host",
        "localhost",
    ]))?;
    run(&mut root.chroot(&["dpkg-reconfigure", "siaga-collector"]))?;
    let (_, siaga_gid, _) = root.user("siaga")?.context("user siaga")?;
    assert_eq!(
        root.stat("/etc/siaga-collector/server.key")?,
        (0, siaga_gid, 0o640)
    );
    assert_eq!(root.stat("/etc/siaga-collector/ca.key")?, (0, 0, 0o600));
    // The ExecStartPre of the unit, as the unit's user.
    let as_user = |user: &str, group: &str, argv: &[&str]| {
        let mut a = vec![
            "setpriv",
            "--reuid",
            user,
            "--regid",
            group,
            "--clear-groups",
            "--",
        ];
        a.extend_from_slice(argv);
        root.chroot(&a)
    };
    run(&mut as_user(
        "siaga",
        "siaga",
        &[
            "siaga-collector",
            "validate",
            "--config",
            "/etc/siaga-collector/collector.toml",
        ],
    ))?;
    // The data link is where init put the store's directory.
    assert!(
        fs::read_link(root.path("/etc/siaga-collector/data"))?
            == Path::new("/var/lib/siaga-collector")
    );

    // An agent bundle enrolled straight into /etc/siaga-agent, then
    // dpkg-reconfigure: readable by siaga-agent, by nobody else.
    run(&mut root.chroot(&[
        "siaga-collector",
        "enroll",
        "agent",
        "--dir",
        "/etc/siaga-collector",
        "--opd",
        "dinkes",
        "--out",
        "/etc/siaga-agent",
    ]))?;
    run(&mut root.chroot(&["dpkg-reconfigure", "siaga-agent"]))?;
    let (agent_uid, agent_gid, _) = root.user("siaga-agent")?.context("user siaga-agent")?;
    for f in ["agent.toml", "agent.key", "agent.pem", "ca.pem"] {
        assert_eq!(
            root.stat(&format!("/etc/siaga-agent/{f}"))?,
            (0, agent_gid, 0o640),
            "/etc/siaga-agent/{f}"
        );
    }
    let validate = [
        "siaga-agent",
        "validate",
        "--config",
        "/etc/siaga-agent/agent.toml",
    ];
    run(&mut as_user("siaga-agent", "siaga-agent", &validate))?;
    let stranger = output(&mut as_user("nobody", "nogroup", &validate))?;
    assert_eq!(
        stranger.status.code(),
        Some(64),
        "another user read the agent's configuration: {stranger:?}"
    );

    // Reinstalling (an upgrade's path through the scripts) keeps it all.
    root.dpkg(&["--install", &agent_deb])?;
    assert_eq!(root.user("siaga-agent")?.map(|u| u.0), Some(agent_uid));
    assert_eq!(
        root.stat("/etc/siaga-agent/agent.key")?,
        (0, agent_gid, 0o640)
    );

    // remove: programs and units go, data, configuration and users stay.
    fs::write(root.path("/var/lib/siaga-agent/spool.redb"), b"kept")?;
    root.dpkg(&["--remove", "siaga-agent", "siaga-collector"])?;
    for gone in [
        "/usr/bin/siaga-agent",
        "/usr/bin/siaga-collector",
        "/usr/bin/siaga",
        "/lib/systemd/system/siaga-agent.service",
        "/lib/systemd/system/siaga-collector.service",
    ] {
        assert!(!root.path(gone).exists(), "{gone} left after remove");
    }
    for kept in [
        "/var/lib/siaga-agent/spool.redb",
        "/etc/siaga-agent/agent.key",
        "/etc/siaga-collector/ca.key",
        "/etc/default/siaga-agent",
    ] {
        assert!(root.path(kept).exists(), "{kept} lost on remove");
    }
    assert!(root.user("siaga-agent")?.is_some() && root.user("siaga")?.is_some());

    // purge: everything goes.
    root.dpkg(&["--purge", "siaga-agent", "siaga-collector"])?;
    for gone in [
        "/var/lib/siaga-agent",
        "/var/lib/siaga-collector",
        "/etc/siaga-agent",
        "/etc/siaga-collector",
        "/etc/default/siaga-agent",
        "/etc/default/siaga-collector",
    ] {
        assert!(!root.path(gone).exists(), "{gone} left after purge");
    }
    for user in ["siaga-agent", "siaga"] {
        assert!(root.user(user)?.is_none(), "user {user} left after purge");
        assert!(root.group(user)?.is_none(), "group {user} left after purge");
    }
    let overrides = run(&mut root.chroot(&["dpkg-statoverride", "--list"]))?;
    assert!(!overrides.contains("siaga"), "{overrides}");
    let status = output(&mut root.chroot(&["dpkg", "--status", "siaga-agent"]))?;
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("Status: install"),
        "siaga-agent still installed"
    );
    Ok(())
}

/// A network namespace of its own (so `net.ipv4.ping_group_range` is the
/// kernel default there, `1 0`, whatever this host allows), with loopback up.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Result<Self> {
        let name = format!("siaga-deploy-{}-{tag}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns(name);
        run(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    fn exec(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(argv);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An enrolled agent directory owned by nobody, whose spool already holds
/// an inventory with one device at 127.0.0.1 probed every second, so the
/// agent probes without a collector.
fn agent_dir() -> Result<tempfile::TempDir> {
    agent_dir_with("")
}

/// [`agent_dir`] with more top-level keys in agent.toml.
fn agent_dir_with(extra: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let ctl = dir.path().join("collector");
    let agent = dir.path().join("agent");
    run(Command::new(bin("siaga-collector")?)
        .args([
            "init",
            "--listen",
            "127.0.0.1:7443",
            "--host",
            "localhost",
            "--dir",
        ])
        .arg(&ctl))?;
    run(Command::new(bin("siaga-collector")?)
        .args(["enroll", "agent", "--opd", "dinkes", "--dir"])
        .arg(&ctl)
        .arg("--out")
        .arg(&agent))?;
    let cfg = agent.join("agent.toml");
    let text = fs::read_to_string(&cfg)?;
    let text = text
        .lines()
        .filter(|l| !l.starts_with("metrics_listen") && !l.starts_with("interval"))
        .collect::<Vec<_>>()
        .join("\n");
    // Top-level keys must precede the first table.
    let text = text.replacen(
        "[tls]",
        &format!("metrics_listen = \"127.0.0.1:0\"\ninterval = \"1s\"\n{extra}\n[tls]"),
        1,
    );
    fs::write(&cfg, text)?;

    let inventory = siaga_proto::v1::Inventory {
        revision: 1,
        opd: "dinkes".into(),
        interval_ms: 1000,
        devices: vec![siaga_proto::v1::Device {
            id: "loopback".into(),
            opd: "dinkes".into(),
            kind: "host".into(),
            address: "127.0.0.1".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let data = agent.join("data");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let spool = siaga_agent::spool::Spool::open(
            &data,
            &siaga_agent::config::SpoolConfig::default(),
            siaga_agent::metrics::Metrics::default(),
        )?;
        spool.save_inventory(&inventory).await?;
        // Releases the file now, not whenever the writer thread ends.
        spool.close().await?;
        anyhow::Ok(())
    })?;
    drop(rt);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    run(Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&agent))?;
    Ok(dir)
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agent_with_only_cap_net_raw_probes_as_an_unprivileged_user() -> Result<()> {
    need_root()?;
    let dir = agent_dir()?;
    let agent = dir.path().join("agent");
    let ns = Netns::new("cap")?;
    let range = run(&mut ns.exec(&["sysctl", "-n", "net.ipv4.ping_group_range"]))?;
    assert_eq!(
        range.split_whitespace().collect::<Vec<_>>(),
        ["1", "0"],
        "unprivileged ping must be off for this test to mean anything"
    );
    let agent_bin = bin("siaga-agent")?;
    let cfg = agent.join("agent.toml");
    let child = ns
        .exec(&[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--bounding-set=-all,+net_raw",
            "--inh-caps=-all,+net_raw",
            "--ambient-caps=+net_raw",
            "--",
        ])
        .arg(&agent_bin)
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut child = Kill(child);
    let pid = child.0.id();

    let addr_file = agent.join("data/metrics.addr");
    let addr = wait_for("metrics.addr", Duration::from_secs(60), || {
        if let Ok(Some(status)) = child.0.try_wait() {
            bail!("the agent exited early: {status}");
        }
        Ok(fs::read_to_string(&addr_file)
            .ok()
            .filter(|s| !s.trim().is_empty()))
    })?;
    let addr = addr.trim().to_string();

    // The running agent: uid nobody, exactly CAP_NET_RAW (bit 13) effective
    // and nothing else anywhere.
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .map(|l| l[k.len()..].split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(line("Uid:"), ["65534"; 4]);
    assert_eq!(line("CapEff:"), ["0000000000002000"]);
    assert_eq!(line("CapPrm:"), ["0000000000002000"]);
    assert_eq!(line("CapBnd:"), ["0000000000002000"]);

    // Its own metrics say it probed 127.0.0.1 and got answers.
    let (host, port) = addr.rsplit_once(':').context("metrics.addr")?;
    let scrape = format!(
        "exec 3<>/dev/tcp/{host}/{port} && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
    );
    wait_for("an answered ICMP probe", Duration::from_secs(60), || {
        if let Ok(Some(status)) = child.0.try_wait() {
            bail!("the agent exited: {status}");
        }
        let out = output(&mut ns.exec(&["timeout", "5", "bash", "-c", &scrape]))?;
        let body = String::from_utf8_lossy(&out.stdout);
        Ok(body
            .lines()
            .find(|l| l.starts_with("siaga_agent_probes_total{kind=\"icmp\",outcome=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|n| *n >= 1.0))
    })?;

    run(Command::new("kill").args(["-TERM", &pid.to_string()]))?;
    let exit = wait_for("the agent to stop", Duration::from_secs(30), || {
        Ok(child.0.try_wait()?)
    })?;
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut stderr)?;
    }
    assert!(exit.success(), "agent exit {exit}: {stderr}");

    // And the spool holds the answered samples for the device.
    let rt = tokio::runtime::Runtime::new()?;
    let samples = rt.block_on(async {
        let spool = siaga_agent::spool::Spool::open(
            &agent.join("data"),
            &siaga_agent::config::SpoolConfig::default(),
            siaga_agent::metrics::Metrics::default(),
        )?;
        anyhow::Ok(spool.read_after(0, 10_000, 64 << 20).await?.samples)
    })?;
    let answered = samples.iter().any(|s| {
        s.device == "loopback"
            && matches!(&s.kind, Some(siaga_proto::v1::sample::Kind::Icmp(r)) if r.received > 0 && r.error.is_empty())
    });
    assert!(
        answered,
        "no answered ICMP sample in the spool: {samples:?}"
    );
    Ok(())
}

#[test]
fn agent_without_cap_net_raw_says_how_to_fix_it() -> Result<()> {
    need_root()?;
    let dir = agent_dir()?;
    let agent = dir.path().join("agent");
    let ns = Netns::new("nocap")?;
    let out = output(
        ns.exec(&[
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ])
        .arg(bin("siaga-agent")?)
        .arg("run")
        .arg("--config")
        .arg(agent.join("agent.toml")),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for hint in [
        "CAP_NET_RAW",
        "AmbientCapabilities=CAP_NET_RAW",
        "net.ipv4.ping_group_range",
    ] {
        assert!(stderr.contains(hint), "no {hint:?} in: {stderr}");
    }
    // The message names the group to allow: nogroup's id.
    assert!(stderr.contains("65534 65534"), "{stderr}");
    Ok(())
}

/// What a service manager hears on its notify socket.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    heard: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Result<Self> {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path)?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Self {
            sock,
            path,
            heard: Vec::new(),
        })
    }

    /// Waits until `count` messages with the line `line` have arrived.
    fn wait_for(&mut self, line: &str, count: usize, child: &mut Kill) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 4096];
        loop {
            let n = self
                .heard
                .iter()
                .filter(|m| m.lines().any(|l| l == line))
                .count();
            if n >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "no {count} x {line} on the notify socket; heard {:?}",
                    self.heard
                );
            }
            match self.sock.recv(&mut buf) {
                Ok(n) => self
                    .heard
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Some(status) = child.0.try_wait()? {
                        bail!("exited ({status}) before {line}; heard {:?}", self.heard);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[test]
fn agent_tells_systemd_it_is_ready_and_feeds_the_watchdog() -> Result<()> {
    need_root()?;
    let dir = agent_dir()?;
    let agent = dir.path().join("agent");
    let ns = Netns::new("notify")?;
    let mut notify = NotifySocket::bind(dir.path())?;
    // Started as the unit starts it with SIAGA_AGENT_OPTS="--log-format json".
    let child = ns
        .exec(&[])
        .arg(bin("siaga-agent")?)
        .args(["run", "--log-format", "json", "--config"])
        .arg(agent.join("agent.toml"))
        .env("NOTIFY_SOCKET", &notify.path)
        // 1 s: the agent feeds it every 500 ms.
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut child = Kill(child);
    notify.wait_for("READY=1", 1, &mut child)?;
    notify.wait_for("WATCHDOG=1", 3, &mut child)?;
    let ready_at = notify
        .heard
        .iter()
        .position(|m| m.lines().any(|l| l == "READY=1"));
    assert_eq!(
        ready_at,
        Some(0),
        "READY=1 must come first: {:?}",
        notify.heard
    );
    run(Command::new("kill").args(["-TERM", &child.0.id().to_string()]))?;
    // Datagrams queued before the agent exits are still read first.
    notify.wait_for("STOPPING=1", 1, &mut child)?;
    let exit = wait_for("the agent to stop", Duration::from_secs(30), || {
        Ok(child.0.try_wait()?)
    })?;
    assert!(exit.success(), "agent exit {exit}");

    // The journal gets one JSON object per line, one line per event.
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut stderr)?;
    }
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("log line is not one JSON object: {line:?}"))?;
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    for m in ["starting", "feeding the systemd watchdog", "shutting down"] {
        assert!(messages.iter().any(|x| x == m), "no {m:?} in {messages:?}");
    }
    Ok(())
}

/// Runs the agent of `dir` in `ns` as nobody with exactly `caps` (setpriv
/// capability names, e.g. "net_raw").
fn agent_as_nobody(ns: &Netns, dir: &Path, caps: &[&str]) -> Result<Command> {
    let list: String = caps.iter().map(|c| format!(",+{c}")).collect();
    let ambient: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
    let mut cmd = ns.exec(&[
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        &format!("--bounding-set=-all{list}"),
        &format!("--inh-caps=-all{list}"),
    ]);
    if !caps.is_empty() {
        cmd.arg(format!("--ambient-caps={}", ambient.join(",")));
    }
    cmd.arg("--")
        .arg(bin("siaga-agent")?)
        .arg("run")
        .arg("--config")
        .arg(dir.join("agent/agent.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(cmd)
}

#[test]
fn trap_receiver_on_port_162_needs_exactly_the_dropin_capability() -> Result<()> {
    need_root()?;
    let dir = agent_dir_with("trap_listen = \"127.0.0.1:162\"\n")?;
    let ns = Netns::new("trap")?;

    // The unit's capability alone: the agent refuses to start, naming the port.
    let out = output(&mut agent_as_nobody(&ns, dir.path(), &["net_raw"])?)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot listen for SNMP traps on 127.0.0.1:162"),
        "{stderr}"
    );

    // With the drop-in's CAP_NET_BIND_SERVICE added it listens on 162.
    let child = agent_as_nobody(&ns, dir.path(), &["net_raw", "net_bind_service"])?
        .stderr(Stdio::null())
        .spawn()?;
    let mut child = Kill(child);
    wait_for(
        "a listener on udp 127.0.0.1:162",
        Duration::from_secs(60),
        || {
            if let Some(status) = child.0.try_wait()? {
                bail!("the agent exited: {status}");
            }
            let ss = run(&mut ns.exec(&["ss", "-Hlun", "sport", "=", ":162"]))?;
            Ok(ss.contains("127.0.0.1:162").then_some(()))
        },
    )?;
    Ok(())
}

#[test]
fn collector_tells_systemd_it_is_ready_once_bound_and_feeds_the_watchdog() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ctl = dir.path().join("collector");
    run(Command::new(bin("siaga-collector")?)
        .args([
            "init",
            "--listen",
            "127.0.0.1:0",
            "--host",
            "localhost",
            "--dir",
        ])
        .arg(&ctl))?;
    let mut notify = NotifySocket::bind(dir.path())?;
    // Started as the unit starts it with SIAGA_COLLECTOR_OPTS="--log-format json".
    let child = Command::new(bin("siaga-collector")?)
        .args(["serve", "--log-format", "json", "--config"])
        .arg(ctl.join("collector.toml"))
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .env_remove("SIAGA_LOG_FORMAT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut child = Kill(child);
    notify.wait_for("READY=1", 1, &mut child)?;
    // Ready means bound: the address is already published.
    let addr = fs::read_to_string(ctl.join("data/collector.addr"))
        .context("READY=1 before collector.addr was written")?;
    assert!(addr.trim().starts_with("127.0.0.1:"), "{addr}");
    notify.wait_for("WATCHDOG=1", 3, &mut child)?;
    run(Command::new("kill").args(["-TERM", &child.0.id().to_string()]))?;
    notify.wait_for("STOPPING=1", 1, &mut child)?;
    let exit = wait_for("the collector to stop", Duration::from_secs(60), || {
        Ok(child.0.try_wait()?)
    })?;
    assert!(exit.success(), "collector exit {exit}");

    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read;
        e.read_to_string(&mut stderr)?;
    }
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("log line is not one JSON object: {line:?}"))?;
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    for m in ["collector serving", "feeding the systemd watchdog"] {
        assert!(messages.iter().any(|x| x == m), "no {m:?} in {messages:?}");
    }
    Ok(())
}
