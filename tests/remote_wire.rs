//! The remote wire against real parts: `gasdtu keygen` as the ops engineer runs it (the real
//! binary: a 0600 key file, no silent overwrite, output that pastes into a config `gasdtu
//! check` accepts), `gasdtu check`'s warning for `allow_unsigned`, and interoperability with
//! an independent Ed25519 implementation: Python's `cryptography` (tests/py/remote_sign.py, the
//! example docs/remote.md ships) signs what gasdtu accepts and verifies what gasdtu signs.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use gasdtu::remote::request::{envelope, open, parse_command, Op};
use gasdtu::remote::sign::{key_id, parse_public_key, Kind, SigningKey};

fn gasdtu(args: &[&str]) -> Output {
    Command::new(common::gasdtu())
        .args(args)
        .output()
        .expect("run gasdtu")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The value printed after `label` by `gasdtu keygen`.
fn field(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {out}"))
        .trim()
        .to_string()
}

fn keygen(path: &Path) -> (String, String) {
    let o = gasdtu(&["keygen", "--out", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    (field(&out, "public key:"), out)
}

fn script() -> PathBuf {
    common::repo_root().join("tests/py/remote_sign.py")
}

/// Run the Python example with `stdin`; (exit code, stdout, stderr).
fn py(args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let mut child = Command::new(common::python())
        .arg(script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        o.stdout,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn now() -> i64 {
    gasdtu::time::now_ms()
}

fn write_body(gw: &str) -> String {
    format!(
        r#"{{"id":"ops-1","gw":"{gw}","expires":{},"op":"write","args":{{"point":"valve1.close","value":true}}}}"#,
        now() + 3_600_000
    )
}

#[test]
fn keygen_writes_a_0600_key_and_never_overwrites_silently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.pem");
    let (public_b64, out) = keygen(&path);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    // What it printed is the key in the file.
    let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
    let public = parse_public_key(&public_b64).unwrap();
    assert_eq!(key.public(), &public);
    assert_eq!(field(&out, "key id:"), key_id(&public).to_string());
    assert!(out.contains(&format!("keys = [\"{public_b64}\"]")), "{out}");

    // A second run refuses, exit 1, and the key is untouched.
    let o = gasdtu(&["keygen", "--out", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);

    // --force replaces it, and an old file's wider mode is not kept.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = gasdtu(&["keygen", "--out", path.to_str().unwrap(), "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_ne!(std::fs::read_to_string(&path).unwrap(), pem);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A directory that does not exist: exit 2 with the reason.
    let o = gasdtu(&[
        "keygen",
        "--out",
        dir.path().join("no/such/k.pem").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot write"), "{}", stderr(&o));
}

fn config_with(dir: &Path, remote: &str) -> PathBuf {
    let path = dir.join("gasdtu.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nid = \"gw-1\"\nstate_dir = \"{}\"\nprofile_dirs = []\n\n{remote}",
            dir.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn keygen_line_pastes_into_a_config_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (_, out) = keygen(&dir.path().join("k.pem"));
    let line = out.lines().find(|l| l.starts_with("keys = [")).unwrap();
    let cfg = config_with(dir.path(), &format!("[remote]\n{line}\n"));
    let o = gasdtu(&["--config", cfg.to_str().unwrap(), "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("remote."), "{}", stderr(&o));
    let loaded = gasdtu::config::load_file(&cfg).unwrap();
    assert_eq!(loaded.config.remote.unwrap().keys.len(), 1);
}

#[test]
fn check_warns_about_allow_unsigned_and_places_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(dir.path(), "[remote]\nallow_unsigned = true\n");
    let o = gasdtu(&["--config", cfg.to_str().unwrap(), "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.lines().any(|l| l.starts_with("warning: ")
            && l.contains(
                ":7:18: remote.allow_unsigned: unsigned writes and config pushes are accepted"
            )),
        "{err}"
    );
    let cfg = config_with(dir.path(), "[remote]\nkeys = [\"AAAA\"]\n");
    let o = gasdtu(&["--config", cfg.to_str().unwrap(), "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(":7:9: remote.keys[0]: not an Ed25519 public key"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn python_signs_and_gasdtu_accepts() {
    let dir = tempfile::tempdir().unwrap();
    // A key made by gasdtu keygen, used by the platform's Python.
    let pem_path = dir.path().join("ops.pem");
    let (public_b64, _) = keygen(&pem_path);
    let public = parse_public_key(&public_b64).unwrap();
    let body = write_body("gw-1");
    let (code, env, err) = py(
        &["sign", pem_path.to_str().unwrap(), "cmd", "gw-1"],
        body.as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    let opened = open(&env, Kind::Cmd, "gw-1", &[public]).unwrap();
    assert_eq!(opened.body, body);
    assert_eq!(opened.signer, Some(key_id(&public)));
    let c = parse_command(&opened.body, "gw-1", now()).unwrap();
    assert!(matches!(c.op, Op::Write { .. }));
    // The same envelope is refused by another gateway and as a config push.
    assert_eq!(
        open(&env, Kind::Cmd, "gw-2", &[public]).unwrap_err().code(),
        "bad_signature"
    );
    assert_eq!(
        open(&env, Kind::Config, "gw-1", &[public])
            .unwrap_err()
            .code(),
        "bad_signature"
    );

    // A config push signed by Python, non-ASCII body included (the body's exact UTF-8 is signed).
    let push = r#"{"version":"v1","note":"Zähler ✓"}"#;
    let (code, env, err) = py(
        &["sign", pem_path.to_str().unwrap(), "config", "gw-1"],
        push.as_bytes(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        open(&env, Kind::Config, "gw-1", &[public]).unwrap().body,
        push
    );

    // A key made by Python (`cryptography`'s PKCS#8) loads in gasdtu and signs for Python.
    let py_pem = dir.path().join("py.pem");
    let (code, out, err) = py(&["keygen", py_pem.to_str().unwrap()], b"");
    assert_eq!(code, 0, "{err}");
    let py_public = parse_public_key(String::from_utf8(out).unwrap().trim()).unwrap();
    let key = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&py_pem).unwrap()).unwrap();
    assert_eq!(key.public(), &py_public);
}

#[test]
fn gasdtu_signs_and_python_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("ops.pem");
    let (public_b64, _) = keygen(&pem_path);
    let key = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&pem_path).unwrap()).unwrap();
    let body = write_body("gw-1");
    let env = envelope(&body, Some((&key, Kind::Cmd, "gw-1")));
    let (code, out, err) = py(&["verify", &public_b64, "cmd", "gw-1"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8(out).unwrap(), body);
    // Python refuses what gasdtu would refuse.
    for (kind, gw) in [("cmd", "gw-2"), ("config", "gw-1")] {
        let (code, _, err) = py(&["verify", &public_b64, kind, gw], &env);
        assert_eq!(code, 1, "{kind} {gw}");
        assert!(err.contains("bad_signature"), "{err}");
    }
    let other = SigningKey::from_seed(&[9; 32]);
    let env = envelope(&body, Some((&other, Kind::Cmd, "gw-1")));
    let (code, _, err) = py(&["verify", &public_b64, "cmd", "gw-1"], &env);
    assert_eq!(code, 1);
    assert!(err.contains("unknown_key"), "{err}");
}

#[test]
fn docs_example_is_the_tested_script() {
    let doc = std::fs::read_to_string(common::repo_root().join("docs/remote.md")).unwrap();
    let script = std::fs::read_to_string(script()).unwrap();
    let start = doc
        .find("```python\n")
        .expect("docs/remote.md has a ```python block")
        + "```python\n".len();
    let len = doc[start..].find("```\n").expect("closed block");
    assert!(
        doc[start..start + len] == script,
        "the Python example in docs/remote.md differs from tests/py/remote_sign.py: copy the file into the doc"
    );
}
