//! The wire tests' gateway (tests/wire_exact.rs, tests/wire_v2.rs): a config with an int16 x
//! 0.1 pressure transmitter (`pt-int16`, unit 1) and a volume corrector (`evc-dcba`, unit 2) on
//! one `gasdtu simulate` TCP bus, polled every second, and the real `gasdtu run` on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{gasdtu, Proc};

/// Write `<dir>/<id>.toml`: the two devices on `sim_port`, state in `<dir>/<id>-state`, then
/// `uplink` (the `[uplink]` table's connection lines) with `encoding` and data `format`.
pub fn config(
    dir: &Path,
    id: &str,
    sim_port: u16,
    uplink: &str,
    encoding: &str,
    format: u8,
) -> PathBuf {
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[gateway]
id = "{id}"
state_dir = "{state}"

[buses.lan]
kind = "tcp"
host = "127.0.0.1"
port = {sim_port}
timeout = "500ms"

[devices.pt1]
bus = "lan"
unit = 1
poll = "1s"
profile = "pt-int16"

[devices.evc1]
bus = "lan"
unit = 2
poll = "1s"
profile = "evc-dcba"

{uplink}encoding = "{encoding}"
format = {format}
"#,
            state = dir.join(format!("{id}-state")).display(),
        ),
    )
    .unwrap();
    path
}

/// The real `gasdtu run --poll-now` on `config`, status socket at `socket`.
pub fn daemon(config: &Path, socket: &Path) -> Proc {
    Proc::spawn(
        "gasdtu run",
        Command::new(gasdtu())
            .args(["run", "--poll-now", "--log-level", "warn"])
            .arg("--config")
            .arg(config)
            .arg("--socket")
            .arg(socket)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
}
