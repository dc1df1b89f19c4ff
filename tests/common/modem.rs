//! The NB-IoT module simulator as a test fixture: `gasdtu simulate --modem <model>` on one end
//! of a pty pair (the other end, `port`, is the module's serial line for the code under test)
//! with its control socket (`hang`, `power-cycle`, `deregister`, `deny`, `sim`, `stats` ...).
//! `start` returns once the control socket exists; `power_cycle_command` is the power switch
//! that cuts the simulated module's power through that socket.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{gasdtu, socket_request, wait_for, Proc, PtyPair};

/// How the simulator is started besides its model (all optional).
#[derive(Default)]
pub struct SimArgs<'a> {
    /// `--modem-rtt`: the simulated network's round trip (e.g. "0.5s").
    pub rtt: Option<&'a str>,
    /// `--seed` of the simulator's randomness.
    pub seed: Option<u64>,
    /// `--modem-fault` quirks (e.g. "urc:1s", "sleep:1s").
    pub faults: &'a [&'a str],
}

/// A running simulator; killed when dropped (with its pty pair).
pub struct ModemSim {
    _proc: Proc,
    /// `None` once a test unplugged the pair to plug a new one in.
    pub pty: Option<PtyPair>,
    /// The control socket.
    pub ctl: PathBuf,
    /// The module's serial line, as the code under test opens it.
    pub port: PathBuf,
}

impl ModemSim {
    /// The simulator of `model` on a fresh pty pair in `dir` (control socket `<model>.ctl`),
    /// registering 1 s after boot; waits (10 s at most) for the control socket.
    pub fn start(dir: &Path, model: &str, args: SimArgs) -> ModemSim {
        let pty = PtyPair::new(dir, model);
        let ctl = dir.join(format!("{model}.ctl"));
        let mut cmd = Command::new(gasdtu());
        cmd.args(["simulate", "--modem", model, "--modem-port"])
            .arg(&pty.a)
            .arg("--modem-control")
            .arg(&ctl)
            .args(["--modem-register-delay", "1s"]);
        if let Some(rtt) = args.rtt {
            cmd.args(["--modem-rtt", rtt]);
        }
        if let Some(seed) = args.seed {
            cmd.arg("--seed").arg(seed.to_string());
        }
        for f in args.faults {
            cmd.args(["--modem-fault", f]);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let proc = Proc::spawn("modem simulator", &mut cmd);
        wait_for("the modem control socket", Duration::from_secs(10), || {
            ctl.exists().then_some(())
        });
        ModemSim {
            _proc: proc,
            port: pty.b.clone(),
            pty: Some(pty),
            ctl,
        }
    }

    /// One line to the control socket and its reply, trimmed (10 s at most).
    pub fn control(&self, line: &str) -> String {
        socket_request(
            &self.ctl,
            format!("{line}\n").as_bytes(),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("modem control `{line}`: {e}"))
        .trim()
        .to_string()
    }

    /// The argv of a power switch that power-cycles this simulated module.
    pub fn power_cycle_command(&self) -> Vec<String> {
        vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "echo power-cycle | socat - UNIX-CONNECT:{}",
                self.ctl.display()
            ),
        ]
    }

    /// `power_cycle_command` as a TOML array (`[modem.power] command = ...`).
    pub fn power_cycle_toml(&self) -> String {
        let quoted: Vec<String> = self
            .power_cycle_command()
            .iter()
            .map(|a| format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        format!("[{}]", quoted.join(", "))
    }
}
