//! Link layout of the x86_64 release binaries, glibc and static musl (issue 13, peak RSS).
//!
//! The kernel maps 64 KiB of a file around every page fault ("fault-around"), so a daemon whose
//! hot code is spread over a 5.6 MiB text segment ends up with nearly all of it resident. This
//! build script hands rust-lld a symbol ordering file (packaging/link-order.txt, one mangled
//! symbol per line, written by scripts/link-order from a callgrind run of the same build) so
//! that every function a run executes sits together at the start of .text; fault-around then
//! maps hot code instead of unrelated code. It also asks the linker for a map file
//! (target/<profile>/gasdtu.map) that scripts/link-order reads to name the functions of a
//! stripped binary and to check that the order was applied.
//!
//! Only release-based profiles (PROFILE=release: release, bench) of two x86_64 targets get the
//! two arguments, each with its own list (symbol hashes differ between targets): the host build
//! x86_64-unknown-linux-gnu (Rust links it with rust-lld by default) and the static build
//! x86_64-unknown-linux-musl that cross/build amd64 links with rust-lld (the binary the W1
//! figures are measured on). Debug and test builds are untouched, and the ARM builds (cross/build:
//! cargo-zigbuild, zig's linker has no ordering option) keep their default layout.
//! GASDTU_LINK_ORDER=0 turns both off (e.g. when another linker is forced on this target).

use std::env;
use std::path::PathBuf;

/// The host build's list (`cargo build --release`) and the static build's (cross/build amd64:
/// x86_64-unknown-linux-musl, linked by rust-lld too). Symbol hashes differ between the two
/// targets, so each has its own list.
const ORDER_FILE: &str = "packaging/link-order.txt";
const ORDER_FILE_MUSL: &str = "packaging/link-order-x86_64-unknown-linux-musl.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-changed={ORDER_FILE_MUSL}");
    println!("cargo:rerun-if-env-changed=GASDTU_LINK_ORDER");
    println!("cargo:rerun-if-changed=build.rs");

    let profile = env::var("PROFILE").unwrap_or_default();
    let target = env::var("TARGET").unwrap_or_default();
    let enabled = env::var("GASDTU_LINK_ORDER").map_or(true, |v| v != "0");
    let list = match target.as_str() {
        "x86_64-unknown-linux-gnu" => ORDER_FILE,
        "x86_64-unknown-linux-musl" => ORDER_FILE_MUSL,
        _ => return,
    };
    if profile != "release" || !enabled {
        return;
    }

    // OUT_DIR is target/<profile>/build/gasdtu-<hash>/out: the map goes next to the binary.
    if let Some(dir) = env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .and_then(|out| out.ancestors().nth(3).map(PathBuf::from))
    {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,-Map={}",
            dir.join("gasdtu.map").display()
        );
    }

    let manifest = env::var_os("CARGO_MANIFEST_DIR").map_or_else(PathBuf::new, PathBuf::from);
    let order = manifest.join(list);
    let has_order = std::fs::metadata(&order).is_ok_and(|m| m.len() > 0);
    if has_order {
        // Names missing from this build (code changed since the list was taken) are skipped
        // silently; scripts/link-order --check says how much of the list still matches.
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
