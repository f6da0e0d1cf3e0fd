#!/usr/bin/env bash
# Builds the Debian packages siaga-agent and siaga-collector (the latter
# with the `siaga` CLI, built from cli/):
#
#   deploy/build-debs.sh                  # release build -> target/debian/*.deb
#   deploy/build-debs.sh --profile dev    # debug binaries (what the tests use)
#   deploy/build-debs.sh --no-build --out DIR
#
# Options: --profile release|dev (default release), --no-build (package the
# binaries already in the target directory), --out DIR (default
# <target>/debian). The target directory is $CARGO_TARGET_DIR or ./target.
# Prints the paths of the packages it wrote, one per line.
#
# Why a script and not cargo-deb: cargo-deb is a separate `cargo install`
# (minutes of compiling on every build machine) for what is here a staged
# tree and one `dpkg-deb --build --root-owner-group`, which every Debian has.
# The maintainer scripts, units and conffiles are plain files in deploy/,
# where they can be read, reviewed and tested.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
profile=release
build=1
out=""
while (($#)); do
  case "$1" in
  --profile)
    profile="${2:?--profile needs release or dev}"
    shift 2
    ;;
  --no-build)
    build=0
    shift
    ;;
  --out)
    out="${2:?--out needs a directory}"
    shift 2
    ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "build-debs.sh: unknown argument $1 (see --help)" >&2
    exit 64
    ;;
  esac
done
case "$profile" in
release) bindir_name=release ;;
dev | debug) profile=dev bindir_name=debug ;;
*)
  echo "build-debs.sh: --profile must be release or dev, not $profile" >&2
  exit 64
  ;;
esac

for tool in dpkg-deb dpkg strip md5sum; do
  if ! command -v "$tool" >/dev/null; then
    echo "build-debs.sh: $tool is missing (Debian packages dpkg, binutils, coreutils)" >&2
    exit 1
  fi
done

target="${CARGO_TARGET_DIR:-$repo/target}"
bindir="$target/$bindir_name"
out="${out:-$target/debian}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ((build)); then
  (cd "$repo" && cargo build --profile "$profile" -p siaga-agent -p siaga-collector -p siaga-cli --bins)
fi
for b in siaga-agent siaga-collector siaga; do
  if [ ! -x "$bindir/$b" ]; then
    echo "build-debs.sh: $bindir/$b not found; build it or drop --no-build" >&2
    exit 1
  fi
done

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
if [ -z "$version" ]; then
  echo "build-debs.sh: no version in [workspace.package] of Cargo.toml" >&2
  exit 1
fi
arch="$(dpkg --print-architecture)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The shared libraries the binaries link (libc6, libgcc-s1) with the minimum
# versions their symbols need, as dh_shlibdeps would compute them.
shlib_depends() {
  local d="$work/shlibs" deps=""
  mkdir -p "$d/debian"
  printf 'Source: siaga\n\nPackage: siaga\nArchitecture: any\n' >"$d/debian/control"
  if command -v dpkg-shlibdeps >/dev/null; then
    deps="$(cd "$d" && dpkg-shlibdeps -O "$@" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')" || deps=""
  fi
  echo "${deps:-libc6, libgcc-s1}"
}

# stage PACKAGE DESCRIPTION BINARY... : a tree with everything but DEBIAN/.
stage() {
  local pkg="$1" root="$work/$1"
  shift
  install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
    "$root/etc/default" "$root/usr/share/doc/$pkg/examples"
  local b
  for b in "$@"; do
    # Debug info stays in the target directory; packages carry symbols only.
    strip --strip-debug -o "$root/usr/bin/$b" "$bindir/$b"
    chmod 0755 "$root/usr/bin/$b"
  done
  install -m 0644 "$repo/deploy/systemd/$pkg.service" "$root/lib/systemd/system/"
  install -m 0644 "$repo/deploy/debian/$pkg/default" "$root/etc/default/$pkg"
  install -m 0644 "$repo/deploy/debian/$pkg/README.Debian" "$repo/deploy/debian/copyright" \
    "$root/usr/share/doc/$pkg/"
  local s
  for s in postinst prerm postrm; do
    install -m 0755 "$repo/deploy/debian/$pkg/$s" "$root/DEBIAN/$s"
  done
  echo "/etc/default/$pkg" >"$root/DEBIAN/conffiles"
  # The configuration directory gets its owner and mode (root:<user> 0750)
  # from postinst through dpkg-statoverride.
  install -d -m 0755 "$root/etc/$pkg"
}

# finish PACKAGE SECTION DESCRIPTION : control file, md5sums, .deb
finish() {
  local pkg="$1" section="$2" description="$3" root="$work/$1"
  local bins=()
  local f
  for f in "$root"/usr/bin/*; do bins+=("$f"); done
  (cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$root/DEBIAN/md5sums"
  cat >"$root/DEBIAN/control" <<EOF
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: Siaga developers <siaga@example.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: adduser, $(shlib_depends "${bins[@]}")
Section: $section
Priority: optional
Homepage: https://example.invalid/siaga
Description: $description
EOF
  local deb="$out/${pkg}_${version}_${arch}.deb"
  # Debug builds are large; gzip keeps the test runs quick.
  local z=(-Zxz)
  [ "$profile" = dev ] && z=(-Zgzip -z1)
  dpkg-deb --build --root-owner-group "${z[@]}" "$root" "$deb" >/dev/null
  echo "$deb"
}

stage siaga-agent siaga-agent
install -m 0644 "$repo/deploy/systemd/trap-receiver.conf" \
  "$work/siaga-agent/usr/share/doc/siaga-agent/examples/"
"$bindir/siaga-agent" print-config >"$work/siaga-agent/usr/share/doc/siaga-agent/examples/agent.toml"
ln -s /var/lib/siaga-agent "$work/siaga-agent/etc/siaga-agent/data"
finish siaga-agent net "Siaga agent: network probes for one OPD
 Probes an office's switches, routers and links with ICMP and SNMP and
 streams the samples over mutual TLS to the Siaga collector, keeping them
 in a durable spool while the collector is away. Runs as its own system
 user with CAP_NET_RAW only."

stage siaga-collector siaga-collector siaga
# siaga's shell completions and manual pages, made by siaga itself from its
# command line definition, so they cannot drift from it.
c="$work/siaga-collector/usr/share"
install -d "$c/bash-completion/completions" "$c/zsh/vendor-completions" \
  "$c/fish/vendor_completions.d" "$c/man/man1"
"$bindir/siaga" completion bash >"$c/bash-completion/completions/siaga"
"$bindir/siaga" completion zsh >"$c/zsh/vendor-completions/_siaga"
"$bindir/siaga" completion fish >"$c/fish/vendor_completions.d/siaga.fish"
"$bindir/siaga" man --dir "$c/man/man1"
gzip -9n "$c"/man/man1/*.1
chmod 0644 "$c/bash-completion/completions/siaga" "$c/zsh/vendor-completions/_siaga" \
  "$c/fish/vendor_completions.d/siaga.fish" "$c"/man/man1/*.1.gz
"$bindir/siaga-collector" print-config >"$work/siaga-collector/usr/share/doc/siaga-collector/examples/collector.toml"
# The Grafana dashboard of the network's series on /metrics, to import.
install -d "$c/siaga/grafana"
install -m 0644 "$repo/deploy/grafana/siaga-network.json" "$c/siaga/grafana/"
ln -s /var/lib/siaga-collector "$work/siaga-collector/etc/siaga-collector/data"
finish siaga-collector net "Siaga collector and the siaga command line
 The central Siaga server: its own small CA for agents and people, ingest
 over mutual TLS into an embedded store, health states per device and link,
 maintenance tickets walked through the SOP, and the admin API. Includes
 siaga, the command line for the technical team and the helpdesk. Runs as
 its own system user with no capabilities."
