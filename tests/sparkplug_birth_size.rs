//! `gasdtu check` refuses a Sparkplug config whose largest DBIRTH of some device exceeds
//! `[uplink] max_payload`, naming the device, the size and the limit, through the real binary;
//! the reported size is the encoder's (a limit of exactly that size passes, one byte less
//! fails) and bounds a real DBIRTH with full-length values.

mod common;

use std::process::Command;

use gasdtu::model::Value;
use gasdtu::uplink::sparkplug::{build, dbirth, size, MetricUpdate, Seq, Update};

/// `big` has six 250-byte strings (a DBIRTH over 1 KiB); `small` two numbers.
fn config(state: &str, protocol: &str, max_payload: Option<usize>) -> String {
    let mut s = format!(
        "[gateway]\nid = \"gw-1\"\nstate_dir = \"{state}\"\nprofile_dirs = []\n\
         [buses.b]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = 1\n\
         [devices.small]\nbus = \"b\"\nunit = 1\n\
         points.p = {{ table = \"input\", address = 0, type = \"f32\", unit = \"bar\" }}\n\
         points.n = {{ table = \"input\", address = 2, type = \"i16\" }}\n\
         [devices.big]\nbus = \"b\"\nunit = 2\n"
    );
    for i in 0..6 {
        s += &format!(
            "points.s{i} = {{ table = \"holding\", address = {}, type = \"string\", length = 250 }}\n",
            i * 125
        );
    }
    s += "[uplink]\nhost = \"127.0.0.1\"\nport = 1\ntls = false\n";
    if let Some(m) = max_payload {
        s += &format!("max_payload = {m}\n");
    }
    s += &format!("protocol = \"{protocol}\"\n");
    if protocol == "sparkplug" {
        s += "[uplink.sparkplug]\ngroup_id = \"gas\"\n";
    }
    s
}

/// Runs `gasdtu check` on `text`: exit code and stdout + stderr.
fn check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gasdtu.toml");
    std::fs::write(
        &path,
        text.replace("STATE", &dir.path().display().to_string()),
    )
    .unwrap();
    let out = Command::new(common::gasdtu())
        .arg("--config")
        .arg(&path)
        .arg("check")
        .env("NOTIFY_SOCKET", "")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), all)
}

/// The DBIRTH size `check` reports for device `big`.
fn reported_size(all: &str) -> usize {
    let at = all
        .find("can be ")
        .unwrap_or_else(|| panic!("no size in {all}"));
    all[at + 7..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in {all}"))
}

#[test]
fn check_refuses_a_dbirth_over_max_payload() {
    // Default max_payload (1024): `big` is refused with device, size, limit and the fix.
    let (code, all) = check(&config("STATE", "sparkplug", None));
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("devices.big"), "{all}");
    assert!(all.contains("DBIRTH of device `big`"), "{all}");
    assert!(all.contains("max_payload = 1024"), "{all}");
    assert!(all.contains("raise [uplink] max_payload"), "{all}");
    assert!(!all.contains("device `small`"), "{all}");
    let size = reported_size(&all);
    assert!(size > 1500, "six 250-byte strings: {size}");

    // The number is the one compared: exactly `size` passes, one byte less does not.
    for (limit, want, why) in [
        (size, Some(0), "limit == DBIRTH size"),
        (size - 1, Some(1), "limit one byte under"),
        (256 * 1024, Some(0), "largest limit"),
    ] {
        let (code, all) = check(&config("STATE", "sparkplug", Some(limit)));
        assert_eq!(code, want, "{why}: {all}");
        if want == Some(1) {
            assert_eq!(reported_size(&all), size, "{why}: {all}");
            assert!(
                all.contains(&format!("max_payload = {limit}")),
                "{why}: {all}"
            );
        }
    }

    // The gasdtu protocol does not send births: the same devices pass at the default.
    let (code, all) = check(&config("STATE", "gasdtu", None));
    assert_eq!(code, Some(0), "{all}");
}

#[test]
fn the_reported_size_bounds_a_real_full_length_dbirth() {
    let text = config("/tmp/unused", "sparkplug", Some(256 * 1024));
    let cfg = gasdtu::config::parse_str(&text, "t.toml", std::path::Path::new("/"))
        .unwrap()
        .config;
    let model = build(&cfg).unwrap();
    let big = model.device("big").unwrap();
    let max = size::dbirth_max_size(big, |_| 250);
    // A real birth: every string at its full 250 bytes, a realistic timestamp and seq.
    let current: Vec<MetricUpdate> = big
        .metrics
        .iter()
        .map(|m| MetricUpdate {
            name: m.name.clone(),
            at_ms: 1_796_000_000_000,
            update: Update::Point {
                value: Some(Value::Text("x".repeat(250))),
                good: true,
            },
        })
        .collect();
    let real = dbirth(big, &current, 1_796_000_000_000, &mut Seq::new()).unwrap();
    assert!(real.len() <= max, "{} > {max}", real.len());
    assert!(
        real.len() + 64 > max,
        "the bound is tight: {} vs {max}",
        real.len()
    );
    // No device is over the largest limit; `big` is over 1 KiB.
    assert!(size::oversize_births(&cfg, &model, 256 * 1024).is_empty());
    let over = size::oversize_births(&cfg, &model, 1024);
    assert_eq!(over.len(), 1);
    assert_eq!((over[0].device.as_str(), over[0].size), ("big", max));
}

/// Only `small`, with a `[modem]`: the NBIRTH carries the `Modem/` metrics.
fn modem_config(max_payload: usize) -> String {
    format!(
        "[gateway]\nid = \"gw-1\"\nstate_dir = \"STATE\"\nprofile_dirs = []\n\
         [buses.b]\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = 1\n\
         [devices.small]\nbus = \"b\"\nunit = 1\n\
         points.p = {{ table = \"input\", address = 0, type = \"f32\", unit = \"bar\" }}\n\
         [modem]\nmode = \"os\"\nport = \"/dev/ttyS2\"\n\
         [uplink]\nhost = \"127.0.0.1\"\nport = 1\ntls = false\nmax_payload = {max_payload}\n\
         protocol = \"sparkplug\"\n[uplink.sparkplug]\ngroup_id = \"gas\"\n"
    )
}

#[test]
fn check_refuses_an_nbirth_with_modem_metrics_over_max_payload() {
    // The bound `check` compares (a large limit: the config loads).
    let text = modem_config(256 * 1024);
    let cfg = gasdtu::config::parse_str(&text, "t.toml", std::path::Path::new("/"))
        .unwrap()
        .config;
    let nb = size::nbirth_max_size(&build(&cfg).unwrap());
    assert!(nb > 256, "{nb}");
    let (code, all) = check(&modem_config(256));
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("uplink.max_payload"), "{all}");
    assert!(
        all.contains(&format!("the NBIRTH can be {nb} bytes")),
        "{all}"
    );
    assert!(all.contains("with the modem's"), "{all}");
    for (limit, want) in [(nb, Some(0)), (nb - 1, Some(1))] {
        let (code, all) = check(&modem_config(limit));
        assert_eq!(code, want, "limit {limit}: {all}");
    }
}
