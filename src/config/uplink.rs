//! The `[uplink]` section: the broker (host, port, TLS material checked as PEM, server-name
//! override), the MQTT credentials and strings that end up in packets (bounded, no control
//! characters), timing (keepalive, connect timeout, reconnect backoff, the PUBACK stall
//! timeout), payload size, rate limit, encoding and data format (1 or 2), the session mode (`always` or
//! `on_demand` with its linger) and the protocol (`sparkplug` module: `protocol`,
//! `[uplink.sparkplug]`). Every error carries its key path and line:column; the only
//! I/O is reading the PEM files it names (bounded).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diag::Diags;
use super::doc::{Field, Section};
use super::{Encoding, PayloadFormat, SessionMode, UplinkConfig};

/// A PEM file named by `key`, resolved against the config directory; it must be readable
/// and hold the expected kind of PEM item.
fn pem_file(
    d: &mut Diags<'_>,
    sec: &mut Section<'_, '_>,
    key: &str,
    base_dir: &Path,
    want_key: bool,
) -> Field<PathBuf> {
    let path = sec.key_path(key);
    match sec.string(d, key) {
        Field::Value(s, sp) => {
            if s.trim().is_empty() {
                d.error(&path, Some(sp), "must not be empty");
                return Field::Invalid;
            }
            let p = base_dir.join(&s);
            let bytes = match super::file::read_bounded(&p, super::file::MAX_PEM_BYTES) {
                Ok(b) => b,
                Err(e) => {
                    d.error(&path, Some(sp), format!("cannot read {}: {e}", p.display()));
                    return Field::Invalid;
                }
            };
            let checked = if want_key {
                super::pem::private_key(&bytes).map(drop)
            } else {
                super::pem::certificates(&bytes).map(drop)
            };
            if let Err(why) = checked {
                d.error(&path, Some(sp), format!("{}: {why}", p.display()));
                return Field::Invalid;
            }
            Field::Value(p, sp)
        }
        Field::Absent => Field::Absent,
        Field::Invalid => Field::Invalid,
    }
}

/// Longest broker host and TLS server name (a DNS name is at most 253 characters).
pub const MAX_HOST: usize = 253;
/// Longest MQTT user name and password, in bytes.
pub const MAX_CREDENTIAL: usize = 256;
/// Longest MQTT client id (MQTT 3.1.1 brokers must accept 23; most accept 64).
pub const MAX_CLIENT_ID: usize = 64;
/// Longest topic root: topics are `<root>/<leaf>`, and every PUBLISH carries one.
pub const MAX_TOPIC_ROOT: usize = 128;

/// A string that ends up in an MQTT packet (or the TLS handshake): at most `max` bytes and no
/// control characters (MQTT 3.1.1 forbids U+0000 and discourages the others; they would
/// also reach logs and terminals raw).
fn packet_text(
    d: &mut Diags<'_>,
    sec: &mut Section<'_, '_>,
    key: &str,
    max: usize,
) -> Field<String> {
    match sec.string(d, key) {
        Field::Value(s, sp) if s.len() > max => {
            d.error(
                &sec.key_path(key),
                Some(sp),
                format!("{} bytes long: at most {max} bytes", s.len()),
            );
            Field::Invalid
        }
        Field::Value(s, sp) if s.contains(char::is_control) => {
            d.error(
                &sec.key_path(key),
                Some(sp),
                // Not echoed: it may be a password.
                "contains a control character (U+0000..U+001F, U+007F..U+009F)",
            );
            Field::Invalid
        }
        f => f,
    }
}

/// `[uplink]`: the MQTT connection, and the Sparkplug settings when `protocol = "sparkplug"`.
pub(crate) fn parse_uplink(
    d: &mut Diags<'_>,
    mut sec: Section<'_, '_>,
    gw_id: &str,
    base_dir: &Path,
) -> Option<(UplinkConfig, Option<super::SparkplugConfig>)> {
    let mut ok = true;
    let host = match packet_text(d, &mut sec, "host", MAX_HOST) {
        Field::Value(s, sp) if s.trim().is_empty() || s.contains(char::is_whitespace) => {
            d.error(
                &sec.key_path("host"),
                Some(sp),
                "must be a host name or IP address (not empty, no spaces)",
            );
            None
        }
        f => match sec.required(d, "host", "the broker's host name or IP address", f) {
            Field::Value(s, _) => Some(s),
            _ => None,
        },
    };
    let tls_field = sec.boolean(d, "tls");
    let tls_span = tls_field.span();
    let tls = tls_field.or(true);
    if tls == Some(false) {
        d.warn(
            &sec.key_path("tls"),
            tls_span,
            "tls = false: readings and MQTT credentials cross the network in clear text; use only on a private APN or a test bench",
        );
    }
    let port = sec
        .int(d, "port", 1, 65535)
        .or(if tls == Some(false) { 1883 } else { 8883 });
    let ca = pem_file(d, &mut sec, "ca_file", base_dir, false);
    let cert = pem_file(d, &mut sec, "client_cert", base_dir, false);
    let key = pem_file(d, &mut sec, "client_key", base_dir, true);
    let (ca_span, cert_span, key_span) = (ca.span(), cert.span(), key.span());
    let (ca, cert, key) = (ca.opt(), cert.opt(), key.opt());
    match tls {
        Some(true) => {
            if matches!(ca, Ok(None)) {
                sec.missing(
                    d,
                    "ca_file",
                    "PEM CA bundle that signs the broker's certificate; required with TLS",
                );
                ok = false;
            }
            match (&cert, &key) {
                (Ok(Some(_)), Ok(None)) => {
                    d.error(
                        &sec.key_path("client_key"),
                        cert_span.clone(),
                        "client_cert is set but client_key is not: mutual TLS needs both",
                    );
                    ok = false;
                }
                (Ok(None), Ok(Some(_))) => {
                    d.error(
                        &sec.key_path("client_cert"),
                        key_span.clone(),
                        "client_key is set but client_cert is not: mutual TLS needs both",
                    );
                    ok = false;
                }
                _ => {}
            }
        }
        Some(false) => {
            for (k, present, sp) in [
                ("ca_file", matches!(ca, Ok(Some(_))), &ca_span),
                ("client_cert", matches!(cert, Ok(Some(_))), &cert_span),
                ("client_key", matches!(key, Ok(Some(_))), &key_span),
            ] {
                if present {
                    d.error(
                        &sec.key_path(k),
                        sp.clone(),
                        "only used with TLS, but tls = false",
                    );
                    ok = false;
                }
            }
        }
        None => {}
    }
    let server_name = match packet_text(d, &mut sec, "server_name", MAX_HOST) {
        Field::Value(s, sp) => {
            if rustls::pki_types::ServerName::try_from(s.as_str()).is_ok() {
                Ok(Some(s))
            } else {
                d.error(
                    &sec.key_path("server_name"),
                    Some(sp),
                    format!("{s:?} is not a valid DNS name or IP address"),
                );
                Err(())
            }
        }
        f => f.opt(),
    };
    let username = match packet_text(d, &mut sec, "username", MAX_CREDENTIAL) {
        Field::Value(s, sp) if s.is_empty() => {
            d.error(
                &sec.key_path("username"),
                Some(sp),
                "must not be empty (leave the key out for no user name)",
            );
            Err(())
        }
        f => f.opt(),
    };
    let user_span = sec.value_span("username");
    let password = packet_text(d, &mut sec, "password", MAX_CREDENTIAL);
    let pw_span = password.span();
    let password = password.opt();
    let plain_field = sec.boolean(d, "allow_plaintext_credentials");
    let plain_span = plain_field.span();
    let allow_plain = plain_field.or(false);
    let has_creds = matches!(username, Ok(Some(_))) || matches!(password, Ok(Some(_)));
    match (tls, allow_plain) {
        (Some(false), Some(false)) if has_creds => {
            d.error(
                &sec.key_path(if matches!(username, Ok(Some(_))) {
                    "username"
                } else {
                    "password"
                }),
                user_span.clone().or(pw_span.clone()),
                "tls = false would send the user name and password in clear text: use TLS, or \
                 set allow_plaintext_credentials = true if the link is private (a private APN, \
                 a test bench)",
            );
            ok = false;
        }
        (Some(false), Some(true)) if has_creds => d.warn(
            &sec.key_path("allow_plaintext_credentials"),
            plain_span,
            "the MQTT user name and password cross the network in clear text (tls = false)",
        ),
        (_, Some(true)) if tls == Some(true) || !has_creds => d.warn(
            &sec.key_path("allow_plaintext_credentials"),
            plain_span,
            if tls == Some(true) {
                "has no effect with TLS"
            } else {
                "has no effect without username or password"
            },
        ),
        _ => {}
    }
    if matches!((&username, &password), (Ok(None), Ok(Some(_)))) {
        d.error(
            &sec.key_path("password"),
            pw_span,
            "password without username (MQTT 3.1.1 sends a password only with a user name)",
        );
        ok = false;
    }
    let client_id = match packet_text(d, &mut sec, "client_id", MAX_CLIENT_ID) {
        Field::Value(s, sp) if s.is_empty() || s.starts_with(' ') || s.len() > 64 => {
            d.error(
                &sec.key_path("client_id"),
                Some(sp),
                format!("invalid client id {s:?}: 1 to 64 characters, not starting with a space"),
            );
            None
        }
        f => f.or(format!("gasdtu-{gw_id}")),
    };
    let topic_root = match packet_text(d, &mut sec, "topic_root", MAX_TOPIC_ROOT) {
        Field::Value(s, sp)
            if s.is_empty()
                || s.contains(['+', '#', '\0'])
                || s.ends_with('/')
                || s.starts_with('/') =>
        {
            d.error(
                &sec.key_path("topic_root"),
                Some(sp),
                format!("invalid topic root {s:?}: no wildcards (+ #), no leading or trailing /"),
            );
            None
        }
        f => f.or(format!("gasdtu/{gw_id}")),
    };
    let keepalive = match sec.duration(d, "keepalive", Duration::ZERO, Duration::from_secs(65535)) {
        Field::Value(t, sp) if !t.is_zero() && t < Duration::from_secs(1) => {
            d.error(
                &sec.key_path("keepalive"),
                Some(sp),
                "keepalive is whole seconds: 0s (off) or at least 1s",
            );
            None
        }
        f => f.or(Duration::from_secs(240)),
    };
    let connect_timeout = sec
        .duration(
            d,
            "connect_timeout",
            Duration::from_secs(1),
            Duration::from_secs(600),
        )
        .or(Duration::from_secs(60));
    let rmin = sec.duration(
        d,
        "reconnect_min",
        Duration::from_millis(100),
        Duration::from_secs(600),
    );
    let rmin_span = rmin.span();
    let reconnect_min = rmin.or(Duration::from_secs(1));
    let reconnect_max = sec
        .duration(
            d,
            "reconnect_max",
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )
        // A broker that comes back is reached within seconds; raise it on metered links.
        .or(Duration::from_secs(5));
    if let (Some(a), Some(b)) = (reconnect_min, reconnect_max) {
        if a > b {
            d.error(
                &sec.key_path("reconnect_min"),
                rmin_span,
                format!(
                    "reconnect_min ({}) is above reconnect_max ({})",
                    humantime::format_duration(a),
                    humantime::format_duration(b)
                ),
            );
            ok = false;
        }
    }
    let max_payload = sec.int(d, "max_payload", 256, 256 * 1024).or(1024);
    let rate_limit = sec.int(d, "rate_limit", 100, 100_000_000).opt();
    let encoding = match sec.string(d, "encoding") {
        Field::Value(s, sp) => match s.as_str() {
            "json" => Some(Encoding::Json),
            "cbor" => Some(Encoding::Cbor),
            _ => {
                d.error(
                    &sec.key_path("encoding"),
                    Some(sp),
                    format!("unknown encoding {s:?}: use \"json\" or \"cbor\""),
                );
                None
            }
        },
        Field::Absent => Some(Encoding::Json),
        Field::Invalid => None,
    };
    let format = match sec.int(d, "format", 1, 2) {
        Field::Value(1, _) | Field::Absent => Some(PayloadFormat::V1),
        Field::Value(_, _) => Some(PayloadFormat::V2),
        Field::Invalid => None,
    };
    let inflight = sec.int(d, "inflight", 1, 100).or(8);
    let session = match sec.string(d, "session") {
        Field::Value(s, sp) => match s.as_str() {
            "always" => Some(SessionMode::Always),
            "on_demand" => Some(SessionMode::OnDemand),
            _ => {
                d.error(
                    &sec.key_path("session"),
                    Some(sp),
                    format!("unknown session mode {s:?}: use \"always\" or \"on_demand\""),
                );
                None
            }
        },
        Field::Absent => Some(SessionMode::Always),
        Field::Invalid => None,
    };
    let linger = sec.duration(
        d,
        "linger",
        Duration::from_secs(1),
        Duration::from_secs(3600),
    );
    let linger_span = linger.span();
    let linger = linger.or(Duration::from_secs(20));
    let check_in = sec.duration(
        d,
        "check_in",
        Duration::from_secs(60),
        Duration::from_secs(7 * 86_400),
    );
    let check_in_span = check_in.span();
    let check_in = check_in.or(Duration::from_secs(3600));
    if session == Some(SessionMode::Always) {
        for (k, sp) in [("linger", linger_span), ("check_in", check_in_span)] {
            if sp.is_some() {
                d.warn(
                    &sec.key_path(k),
                    sp,
                    "only used with session = \"on_demand\"",
                );
            }
        }
    }
    let ack_timeout = sec
        .duration(
            d,
            "ack_timeout",
            Duration::from_secs(5),
            Duration::from_secs(600),
        )
        .or(Duration::from_secs(30));
    let sparkplug = super::sparkplug::parse_protocol(d, &mut sec, gw_id);
    sec.finish(d, |_| None);
    if !ok {
        return None;
    }
    let sparkplug = sparkplug.ok()?;
    let up = UplinkConfig {
        host: host?,
        port: port? as u16,
        tls: tls?,
        ca_file: ca.ok()?,
        client_cert: cert.ok()?,
        client_key: key.ok()?,
        server_name: server_name.ok()?,
        username: username.ok()?,
        password: password.ok()?,
        client_id: client_id?,
        topic_root: topic_root?,
        keepalive: keepalive?,
        connect_timeout: connect_timeout?,
        reconnect_min: reconnect_min?,
        reconnect_max: reconnect_max?,
        max_payload: max_payload? as usize,
        rate_limit: rate_limit.ok()?.map(|r| r as u64),
        encoding: encoding?,
        format: format?,
        inflight: inflight? as u16,
        session: session?,
        linger: linger?,
        check_in: check_in?,
        ack_timeout: ack_timeout?,
    };
    Some((up, sparkplug))
}
