//! What the .deb carries, checked without building it: every asset in
//! `[package.metadata.deb]` exists, nothing goes to /etc and nothing is a conffile (postinst
//! creates the config), the lintian-facing metadata (a routable maintainer host, a changelog
//! whose first entry is this version, the generated copyright file) holds; packaging/copyright
//! accounts for every crate of Cargo.lock and gives every licence its paragraph; every
//! subcommand and option has help text and the man page names every subcommand. The unit and
//! the maintainer scripts: tests/package.rs.

mod common;

use std::process::Command;

use common::*;

#[test]
fn deb_metadata_lists_assets_that_exist() {
    let root = repo_root();
    let cargo: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let deb = &cargo["package"]["metadata"]["deb"];
    assert_eq!(
        deb["depends"].as_str(),
        Some("$auto"),
        "libc only, found by cargo-deb"
    );
    assert_eq!(deb["maintainer-scripts"].as_str(), Some("packaging/"));
    let mut dests = Vec::new();
    for a in deb["assets"].as_array().unwrap() {
        let a = a.as_array().unwrap();
        let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
        dests.push(dest.to_string());
        if src == "target/release/gasdtu" {
            continue; // built by packaging/build-deb
        }
        let matches = if let Some((dir, pat)) = src.rsplit_once("/*") {
            std::fs::read_dir(root.join(dir))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(pat)
                })
                .count()
        } else {
            usize::from(root.join(src).is_file())
        };
        assert!(matches > 0, "asset {src} matches no file");
    }
    for want in [
        "usr/bin/",
        "usr/lib/systemd/system/",
        "usr/share/gasdtu/",
        "usr/share/gasdtu/profiles/",
        "usr/share/man/man1/",
    ] {
        assert!(dests.iter().any(|d| d == want), "no asset goes to {want}");
    }
    // Nothing under /etc and no conffile: postinst creates the config once, so an upgrade
    // never stops at dpkg's conffile prompt.
    assert!(
        dests.iter().all(|d| !d.starts_with("etc")),
        "an asset goes to /etc: {dests:?}"
    );
    assert!(
        deb.get("conf-files").is_none(),
        "conf-files: {:?}",
        deb.get("conf-files")
    );
    // Lintian: a routable maintainer host, a changelog, a generated DEP-5 copyright.
    let maintainer = deb["maintainer"].as_str().unwrap();
    let host = maintainer
        .rsplit_once('@')
        .and_then(|(_, h)| h.strip_suffix('>'))
        .unwrap_or_else(|| panic!("maintainer {maintainer:?}: `Name <user@host>`"));
    assert!(
        host.contains('.') && !host.starts_with("localhost") && !host.ends_with(".invalid"),
        "bogus-mail-host: {maintainer}"
    );
    let changelog = deb["changelog"].as_str().unwrap();
    let text = std::fs::read_to_string(root.join(changelog)).unwrap();
    let first = text.lines().next().unwrap();
    let version = cargo["package"]["version"].as_str().unwrap();
    assert!(
        first.starts_with(&format!("gasdtu ({version}-1) ")),
        "{changelog} must start with this version's entry: {first:?}"
    );
    let lf = deb["license-file"].as_array().unwrap();
    assert_eq!(lf[0].as_str(), Some(COPYRIGHT_OUT), "license-file");
}

/// Subcommand names from `gasdtu --help`.
fn subcommands() -> Vec<String> {
    let out = Command::new(gasdtu()).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn help_is_complete_and_the_man_page_names_every_command() {
    let cmds = subcommands();
    assert!(cmds.len() >= 8, "{cmds:?}");
    let man = std::fs::read_to_string(repo_root().join("packaging/gasdtu.1")).unwrap();
    for c in &cmds {
        assert!(man.contains(&format!(".B {c}\n")), "man page lacks `{c}`");
        let out = Command::new(gasdtu()).arg(c).arg("-h").output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        // Short help: one line per option, `  -x, --flag <V>  description`.
        let undocumented: Vec<_> = text
            .lines()
            .skip_while(|l| !l.starts_with("Options:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter(|l| {
                let l = l.trim_start();
                // Flag and value name, then at least two spaces, then words.
                match l.split_once("  ") {
                    Some((_, rest)) => {
                        let d = rest.trim();
                        d.is_empty() || d.starts_with('[')
                    }
                    None => true,
                }
            })
            .collect();
        assert!(
            undocumented.is_empty(),
            "`gasdtu {c} -h`: options without help: {undocumented:?}"
        );
    }
}

/// Where packaging/copyright writes the copyright file that cargo-deb packages.
const COPYRIGHT_OUT: &str = "target/debian-copyright";

/// The generated copyright file accounts for every crate of Cargo.lock (a Files paragraph for
/// each one in the binary, the rest named as not in it), and every licence a Files paragraph
/// names has its License paragraph (lintian: missing-license-paragraph-in-dep5-copyright).
#[test]
fn the_copyright_file_lists_every_crate_of_cargo_lock_and_its_licences() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copyright");
    let ran = Command::new(repo_root().join("packaging/copyright"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "packaging/copyright: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let paras: Vec<&str> = text.split("\n\n").collect();
    assert!(paras[0].starts_with(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    ));
    let own = paras
        .iter()
        .find(|p| p.starts_with("Files: *\n"))
        .expect("a Files: * paragraph");
    assert!(
        own.contains("Copyright: 2026 gasdtu authors\nLicense: Apache-2.0"),
        "{own}"
    );
    // Folded text as one line: a name and its version may be split across lines.
    let flat = |p: &str| p.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let header = flat(paras[0]);
    let lock: toml::Table = std::fs::read_to_string(repo_root().join("Cargo.lock"))
        .unwrap()
        .parse()
        .unwrap();
    let mut bundled = 0;
    for p in lock["package"].as_array().unwrap() {
        let (name, version) = (p["name"].as_str().unwrap(), p["version"].as_str().unwrap());
        if name == "gasdtu" {
            continue;
        }
        let files = format!("Files: cargo-registry/{name}-{version}/*\n");
        let listed = paras.iter().any(|p| p.starts_with(&files));
        let named = [",", "."]
            .iter()
            .any(|end| header.contains(&format!(" {name} {version}{end}")));
        assert!(
            listed ^ named,
            "{name} {version}: listed {listed}, named as not bundled {named}"
        );
        bundled += usize::from(listed);
    }
    assert!(bundled > 100, "only {bundled} crates in the binary?");
    // Every licence named in a Files paragraph has a stand-alone License paragraph.
    let standalone: Vec<&str> = paras
        .iter()
        .filter(|p| p.starts_with("License: "))
        .map(|p| p.lines().next().unwrap().trim_start_matches("License: "))
        .collect();
    for p in paras.iter().filter(|p| p.starts_with("Files: ")) {
        let lic = p
            .lines()
            .find_map(|l| l.strip_prefix("License: "))
            .unwrap_or_else(|| panic!("no License in {p}"));
        for atom in lic
            .replace(", and ", " and ")
            .split(" or ")
            .flat_map(|a| a.split(" and "))
        {
            assert!(
                standalone.contains(&atom),
                "no License paragraph for {atom:?} ({p})"
            );
        }
    }
    for p in paras.iter().filter(|p| p.starts_with("License: ")) {
        assert!(p.lines().count() > 1, "License paragraph without text: {p}");
    }
}
