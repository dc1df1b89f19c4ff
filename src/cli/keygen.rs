//! `gasdtu keygen --out <path>`: makes an Ed25519 key pair for signing remote commands and
//! config pushes. Writes the private key (PKCS#8 v2, PEM "PRIVATE KEY") to a new file with mode
//! 0600, created exclusively (an existing file is refused unless `--force`, which replaces it),
//! synced to disk; prints the public key (base64), its key id, and the `[remote]` line to paste
//! into each gateway's config. Exit 0 on success, 1 when the file exists, 2 when it cannot be
//! written.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::escape;
use crate::remote::sign;

use super::Global;

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PEM, mode 0600). Keep it on the ops machine only.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(args: KeygenArgs, _global: &Global) -> anyhow::Result<u8> {
    let shown = args.out.display().to_string();
    let shown = escape(&shown);
    if !args.force && std::fs::symlink_metadata(&args.out).is_ok() {
        eprintln!(
            "error: {shown} already exists: not overwriting a key (use --force to replace it)"
        );
        return Ok(1);
    }
    let (pem, public) = match sign::generate() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    if let Err(e) = write_private(&args.out, &pem, args.force) {
        eprintln!("error: cannot write {shown}: {}", escape(&e.to_string()));
        return Ok(2);
    }
    let b64 = sign::public_key_base64(&public);
    println!("private key: {shown} (mode 0600: keep it secret, on the ops machine only)");
    println!("public key:  {b64}");
    println!("key id:      {}", sign::key_id(&public));
    println!("add to the [remote] section of each gateway's config:");
    println!("keys = [\"{b64}\"]");
    Ok(0)
}

/// Create the file exclusively with mode 0600 (after removing an existing one with `force`,
/// so an old file's wider mode is never kept), write, fsync.
fn write_private(path: &Path, pem: &str, force: bool) -> std::io::Result<()> {
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()
}
