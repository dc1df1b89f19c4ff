# shellcheck shell=bash
# Sourced by cross/build, cross/check and cross/tarball (not run on its own): the ARM
# architectures and their Rust targets, the glibc floor of the gnu builds, and the tool set-up
# (zig and cargo-zigbuild from PyPI in a venv under target/, rustup targets), each installed
# only when missing so every script can be re-run.

# Builds for systems with a glibc older than this are refused by cross/check (gnu builds only).
GLIBC_FLOOR=2.28
# Pinned tool versions (PyPI wheels: no Docker, no system packages).
ZIGLANG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1
CROSS_VENV=target/cross-venv

cross_die() {
  echo "cross: $*" >&2
  exit 2
}

# triple_of ARCH LIBC: the Rust target. LIBC is musl (static) or gnu (glibc, floor above).
triple_of() {
  case "$1/$2" in
    amd64/musl) echo x86_64-unknown-linux-musl ;;
    amd64/gnu) cross_die "amd64 glibc builds are the host's own: cargo build --release (cross/build amd64 is the static one)" ;;
    arm64/musl) echo aarch64-unknown-linux-musl ;;
    armhf/musl) echo armv7-unknown-linux-musleabihf ;;
    arm64/gnu) echo aarch64-unknown-linux-gnu ;;
    armhf/gnu) echo armv7-unknown-linux-gnueabihf ;;
    */musl | */gnu) cross_die "unknown architecture '$1' (arm64, armhf)" ;;
    *) cross_die "unknown libc '$2' (musl, gnu)" ;;
  esac
}

# zig_target_of ARCH LIBC: what cargo-zigbuild is given; the .2.28 suffix makes zig link
# against glibc 2.28's symbol versions, so the binary runs on 2.28 and newer.
zig_target_of() {
  local t
  t=$(triple_of "$1" "$2")
  if [ "$2" = gnu ]; then echo "$t.$GLIBC_FLOOR"; else echo "$t"; fi
}

# qemu_of ARCH: the qemu-user that runs ARCH here; empty for amd64, which runs natively.
qemu_of() {
  case "$1" in
    amd64) echo "" ;;
    arm64) echo qemu-aarch64 ;;
    armhf) echo qemu-arm ;;
    *) cross_die "unknown architecture '$1' (arm64, armhf)" ;;
  esac
}

# Debian's multiarch name: where libc6-<arch>-cross puts the sysroot qemu runs gnu builds with.
multiarch_of() {
  case "$1" in
    amd64) echo x86_64-linux-gnu ;;
    arm64) echo aarch64-linux-gnu ;;
    armhf) echo arm-linux-gnueabihf ;;
    *) cross_die "unknown architecture '$1' (arm64, armhf)" ;;
  esac
}

# The package version, from Cargo.toml's [package] section.
gasdtu_version() {
  sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1
}

# setup_zig: zig (PyPI "ziglang") and cargo-zigbuild in target/cross-venv, put first on PATH.
# cargo-zigbuild finds zig through `python3 -m ziglang` of that venv.
setup_zig() {
  if [ ! -x "$CROSS_VENV/bin/cargo-zigbuild" ] || ! "$CROSS_VENV/bin/python3" -m ziglang version >/dev/null 2>&1; then
    echo "cross: installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $ZIGBUILD_VERSION into $CROSS_VENV" >&2
    [ -x "$CROSS_VENV/bin/python3" ] || python3 -m venv "$CROSS_VENV"
    "$CROSS_VENV/bin/pip" install -q "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION"
  fi
  PATH="$PWD/$CROSS_VENV/bin:$PATH"
  export PATH
}

# ensure_target TRIPLE: the Rust standard library for TRIPLE (rustup, when missing).
ensure_target() {
  rustup target list --installed | grep -qx "$1" && return 0
  rustup target add "$1" ||
    cross_die "rustup has no standard library for $1 here; for armhf try the gnu build: cross/build --gnu armhf"
}

# apt_install PKG...: Debian packages, when a script needs a host tool that is missing.
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "cross: installing $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# glibc_needed BINARY: the highest GLIBC_x.y symbol version BINARY asks of the loader (empty
# for a static binary).
glibc_needed() {
  readelf --dyn-syms -W "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1
}

# set_deb_depends DEB VALUE: rewrite the Depends: field of a built .deb (root-owned contents).
set_deb_depends() {
  local dir
  dir=$(mktemp -d)
  dpkg-deb -R "$1" "$dir/pkg"
  sed -i '/^Depends:/d' "$dir/pkg/DEBIAN/control"
  sed -i "/^Architecture:/a Depends: $2" "$dir/pkg/DEBIAN/control"
  dpkg-deb -Zxz --root-owner-group -b "$dir/pkg" "$1" >/dev/null
  rm -rf "$dir"
}

# build_static_amd64: the static x86_64 binary (target/x86_64-unknown-linux-musl/release/gasdtu).
# Not through cargo-zigbuild like the ARM builds: zig's linker has no --symbol-ordering-file,
# and this build is the one the W1 figures of issue 13 are measured on, so it must get the
# profile-guided function order (build.rs, packaging/link-order-x86_64-unknown-linux-musl.txt).
# Rust links it with the host cc driving rust-lld against Rust's self-contained musl; zig (the
# same venv) only compiles the C parts (bundled SQLite, ring) for musl.
build_static_amd64() {
  local sysroot cc
  sysroot=$(rustc --print sysroot)
  cc="$PWD/$CROSS_VENV/bin/zigcc-x86_64-linux-musl"
  cat >"$cc" <<EOW
#!/bin/sh
exec "$PWD/$CROSS_VENV/bin/cargo-zigbuild" zig cc -- -fno-sanitize=all -target x86_64-linux-musl "\$@"
EOW
  chmod +x "$cc"
  CC_x86_64_unknown_linux_musl="$cc" AR_x86_64_unknown_linux_musl=ar \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-arg=-fuse-ld=lld -C link-arg=-B$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld" \
    cargo build --release --locked --target x86_64-unknown-linux-musl
}
