//! Where the status socket is, one rule for the daemon (`gasdtu run` binds it) and for its
//! clients (`status`, `read`/`write`/`scan`, `modem`): `--socket`, else `[gateway] socket` of
//! the config (relative to the config file's directory), else /run/gasdtu/gasdtu.sock. When
//! /run/gasdtu is missing or not writable (a normal user running by hand, no package
//! installed) the daemon falls back to `$XDG_RUNTIME_DIR/gasdtu.sock`, else
//! `<state_dir>/gasdtu.sock`, and says so once in its log; a client takes the first of those
//! places where a socket exists. `raw_gateway` reads the few `[gateway]` keys the clients need
//! from the TOML without validating the rest (a config with errors still finds its daemon).
//! `choose` is pure; the probes are at the edges.

use std::path::{Path, PathBuf};

use crate::config;
use crate::gateway::status_socket::DEFAULT_SOCKET;

/// File name of the socket in a fallback directory.
pub const SOCKET_NAME: &str = "gasdtu.sock";

/// Why this path was chosen (the daemon logs it when it is a fallback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Config,
    Default,
    /// The default's directory is unusable; the value says which fallback was taken.
    Fallback(&'static str),
}

/// The daemon's choice, pure: `default_dir_usable` tells whether the default socket's
/// directory exists and is writable for this process.
pub fn choose(
    flag: Option<&Path>,
    configured: Option<&Path>,
    default_dir_usable: bool,
    xdg_runtime_dir: Option<&Path>,
    state_dir: &Path,
) -> (PathBuf, Source) {
    if let Some(p) = flag {
        return (p.to_path_buf(), Source::Flag);
    }
    if let Some(p) = configured {
        return (p.to_path_buf(), Source::Config);
    }
    if default_dir_usable {
        return (PathBuf::from(DEFAULT_SOCKET), Source::Default);
    }
    match xdg_runtime_dir.filter(|d| d.is_absolute()) {
        Some(d) => (d.join(SOCKET_NAME), Source::Fallback("$XDG_RUNTIME_DIR")),
        None => (
            state_dir.join(SOCKET_NAME),
            Source::Fallback("the state directory"),
        ),
    }
}

/// Every place a client looks, in order: flag or configured path alone; otherwise the
/// default, then `$XDG_RUNTIME_DIR`, then the state directory.
pub fn candidates(
    flag: Option<&Path>,
    configured: Option<&Path>,
    xdg_runtime_dir: Option<&Path>,
    state_dir: &Path,
) -> Vec<PathBuf> {
    if let Some(p) = flag.or(configured) {
        return vec![p.to_path_buf()];
    }
    let mut out = vec![PathBuf::from(DEFAULT_SOCKET)];
    if let Some(d) = xdg_runtime_dir.filter(|d| d.is_absolute()) {
        out.push(d.join(SOCKET_NAME));
    }
    out.push(state_dir.join(SOCKET_NAME));
    out
}

/// The `[gateway]` keys clients need, read leniently from the raw TOML.
#[derive(Debug, Clone, PartialEq)]
pub struct RawGateway {
    /// `gateway.state_dir` resolved against the config's directory (default /var/lib/gasdtu).
    pub state_dir: PathBuf,
    /// `gateway.socket` resolved against the config's directory.
    pub socket: Option<PathBuf>,
    /// `gateway.commissioned` (default true).
    pub commissioned: bool,
}

/// Pure: the keys from a TOML text; None when it is not TOML. `base_dir` is the config's dir.
pub fn raw_gateway_str(text: &str, base_dir: &Path) -> Option<RawGateway> {
    let raw: toml::Table = toml::from_str(text).ok()?;
    let gw = raw.get("gateway");
    let get = |k: &str| gw.and_then(|g| g.get(k));
    let path = |k: &str| {
        get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(|s| config::resolve_path(s, base_dir))
    };
    Some(RawGateway {
        state_dir: path("state_dir").unwrap_or_else(|| PathBuf::from(config::DEFAULT_STATE_DIR)),
        socket: path("socket"),
        commissioned: get("commissioned")
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
    })
}

/// `raw_gateway_str` of the file at `path` (bounded read); None when unreadable or not TOML.
pub fn raw_gateway(path: &Path) -> Option<RawGateway> {
    let bytes = config::read_bounded(path, config::MAX_CONFIG_BYTES).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    raw_gateway_str(&text, &config::config_dir(path))
}

fn xdg() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
}

/// True when `dir` exists and this process may create files in it.
fn dir_usable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    dir.is_dir() && rc == 0
}

/// The daemon's socket for `flag` and the validated config.
pub fn for_daemon(flag: Option<&Path>, gw: &config::GatewayConfig) -> (PathBuf, Source) {
    let default_dir = Path::new(DEFAULT_SOCKET).parent().unwrap_or(Path::new("/"));
    choose(
        flag,
        gw.socket.as_deref(),
        dir_usable(default_dir),
        xdg().as_deref(),
        &gw.state_dir,
    )
}

/// A client's socket: the first candidate where a socket exists, else the first candidate
/// (so an error names the place the daemon would normally be).
pub fn for_client(flag: Option<&Path>, config_path: &Path) -> PathBuf {
    let raw = raw_gateway(config_path);
    let state_dir = raw
        .as_ref()
        .map(|r| r.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_STATE_DIR));
    let configured = raw.as_ref().and_then(|r| r.socket.clone());
    let all = candidates(flag, configured.as_deref(), xdg().as_deref(), &state_dir);
    use std::os::unix::fs::FileTypeExt;
    all.iter()
        .find(|p| {
            std::fs::symlink_metadata(p)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false)
        })
        .unwrap_or(&all[0])
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_takes_flag_then_config_then_default_then_a_fallback() {
        let sd = Path::new("/var/lib/x");
        let xdg = Some(Path::new("/run/user/1000"));
        // (flag, configured, default dir usable, $XDG_RUNTIME_DIR, chosen, why)
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            bool,
            Option<&'a Path>,
            &'a str,
            Source,
        );
        let cases: &[Case] = &[
            (
                Some("/f.sock"),
                Some("/c.sock"),
                true,
                xdg,
                "/f.sock",
                Source::Flag,
            ),
            (None, Some("/c.sock"), false, xdg, "/c.sock", Source::Config),
            (None, None, true, xdg, DEFAULT_SOCKET, Source::Default),
            (
                None,
                None,
                false,
                xdg,
                "/run/user/1000/gasdtu.sock",
                Source::Fallback("$XDG_RUNTIME_DIR"),
            ),
            (
                None,
                None,
                false,
                None,
                "/var/lib/x/gasdtu.sock",
                Source::Fallback("the state directory"),
            ),
            // A relative XDG_RUNTIME_DIR is invalid by the spec: ignored.
            (
                None,
                None,
                false,
                Some(Path::new("rel")),
                "/var/lib/x/gasdtu.sock",
                Source::Fallback("the state directory"),
            ),
        ];
        for (flag, conf, usable, xdg, want, src) in cases {
            let got = choose(flag.map(Path::new), conf.map(Path::new), *usable, *xdg, sd);
            assert_eq!(got, (PathBuf::from(want), src.clone()), "{flag:?} {conf:?}");
        }
    }

    #[test]
    fn clients_look_where_the_daemon_may_be() {
        let sd = Path::new("/s");
        let xdg = Some(Path::new("/run/user/7"));
        assert_eq!(
            candidates(None, None, xdg, sd),
            [
                PathBuf::from(DEFAULT_SOCKET),
                PathBuf::from("/run/user/7/gasdtu.sock"),
                PathBuf::from("/s/gasdtu.sock")
            ]
        );
        assert_eq!(
            candidates(None, Some(Path::new("/c")), xdg, sd),
            [PathBuf::from("/c")]
        );
        assert_eq!(
            candidates(Some(Path::new("/f")), Some(Path::new("/c")), None, sd),
            [PathBuf::from("/f")]
        );
    }

    #[test]
    fn raw_gateway_keys_resolve_against_the_config_directory() {
        let base = Path::new("/etc/gasdtu");
        let cases = [
            (
                "[gateway]\nid = \"a\"\n",
                Some(("/var/lib/gasdtu", None, true)),
            ),
            (
                "[gateway]\nstate_dir = \"state\"\nsocket = \"run/g.sock\"\ncommissioned = false\n",
                Some(("/etc/gasdtu/state", Some("/etc/gasdtu/run/g.sock"), false)),
            ),
            (
                "[gateway]\nstate_dir = \"/abs\"\nsocket = \"/x.sock\"\n# errors elsewhere do not matter\n[devices.x]\nbogus = 1\n",
                Some(("/abs", Some("/x.sock"), true)),
            ),
            ("[gateway\n", None),
        ];
        for (text, want) in cases {
            let got = raw_gateway_str(text, base);
            let want = want.map(|(s, k, c)| RawGateway {
                state_dir: PathBuf::from(s),
                socket: k.map(PathBuf::from),
                commissioned: c,
            });
            assert_eq!(got, want, "{text}");
        }
    }
}
