//! Tests of `gateway::systemd`: the watchdog against a real datagram socket (pings only while
//! progress comes; no STATUS text when nobody listens), the STATUS and stall lines, counts and
//! durations as shown, journal stream matching, and the reload check.

use super::*;

/// Messages received on a test-owned datagram socket within `window`.
async fn collect(sock: &tokio::net::UnixDatagram, window: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + window;
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, sock.recv(&mut buf)).await {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[tokio::test]
async fn watchdog_builds_no_status_text_when_nobody_listens() {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let _sock = tokio::net::UnixDatagram::bind(&path).unwrap();
    let progress = Progress::new(Duration::from_secs(3600));
    progress.tick_poll("a");
    let shutdown = CancellationToken::new();
    // Two watchdogs ticking every 10 ms side by side: one with a service manager listening
    // (the control), one without.
    let counted = |notifier: Notifier| {
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let dog = Watchdog::new(notifier, progress.clone())
            .with_timeout(Some(Duration::from_millis(20)))
            .with_status({
                let calls = calls.clone();
                move || {
                    calls.fetch_add(1, Relaxed);
                    "polling 1 device".to_string()
                }
            });
        (calls, tokio::spawn(dog.run(shutdown.clone())))
    };
    let (heard, t1) = counted(Notifier::to_socket(&path));
    let (unheard, t2) = counted(Notifier::disabled());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while heard.load(Relaxed) < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the control never built its status"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    t1.await.unwrap();
    t2.await.unwrap();
    assert_eq!(
        unheard.load(Relaxed),
        0,
        "status text built with nobody listening"
    );
}

#[tokio::test]
async fn watchdog_pings_while_ticks_come_and_stops_when_they_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = tokio::net::UnixDatagram::bind(&path).unwrap();
    let progress = Progress::new(Duration::from_millis(300));
    let shutdown = CancellationToken::new();
    let ticker = {
        let (p, stop) = (progress.clone(), shutdown.child_token());
        tokio::spawn(async move {
            // Ticks every 50 ms until told to stop: a poller that makes progress.
            while !stop.is_cancelled() {
                p.tick_poll("a");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let stop_ticks = shutdown.child_token();
    let dog = Watchdog::new(Notifier::to_socket(&path), progress.clone())
        .with_timeout(Some(Duration::from_millis(100)))
        .with_status(|| "polling 1 device".to_string());
    let task = tokio::spawn(dog.run(shutdown.clone()));

    let msgs = collect(&sock, Duration::from_millis(600)).await;
    let pings = msgs.iter().filter(|m| *m == "WATCHDOG=1\n").count();
    assert!(
        pings >= 6,
        "about one ping per 50 ms while ticking: {msgs:?}"
    );
    assert_eq!(
        msgs.iter()
            .filter(|m| m.starts_with("STATUS="))
            .collect::<Vec<_>>(),
        ["STATUS=polling 1 device\n"],
        "status sent once, when it changed"
    );

    // The poller stalls: no tick for longer than the 300 ms bound.
    ticker.abort();
    let _ = ticker.await;
    let msgs = collect(&sock, Duration::from_millis(900)).await;
    let last_ping = msgs.iter().rposition(|m| m == "WATCHDOG=1\n");
    let stalled = msgs
        .iter()
        .position(|m| m.starts_with("STATUS=STALLED: poller silent for"))
        .unwrap_or_else(|| panic!("a STALLED status: {msgs:?}"));
    assert!(
        last_ping.is_none_or(|i| i < stalled),
        "no ping after the stall: {msgs:?}"
    );
    assert!(
        msgs[stalled..].iter().all(|m| m != "WATCHDOG=1\n"),
        "{msgs:?}"
    );

    // Progress resumes: pings and the usual status come back.
    progress.tick_poll("a");
    let msgs = collect(&sock, Duration::from_millis(120)).await;
    assert!(msgs.iter().any(|m| m == "WATCHDOG=1\n"), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m == "STATUS=polling 1 device\n"),
        "{msgs:?}"
    );
    drop(stop_ticks);
    shutdown.cancel();
    task.await.unwrap();
}

#[test]
fn status_lines() {
    let m = |s: u64| Duration::from_secs(s);
    let cases: &[(StatusFacts, &str)] = &[
        (StatusFacts::default(), "no devices enabled"),
        (
            StatusFacts {
                devices: 1,
                ..Default::default()
            },
            "polling 1 device",
        ),
        (
            StatusFacts {
                devices: 12,
                offline: 3,
                backlog: Some(1234),
                store_failing: false,
                link: Some(LinkFacts::Down(m(4 * 60 + 10))),
                modem: None,
            },
            "polling 12 devices, 3 offline, backlog 1.2k readings, link down 4m",
        ),
        (
            StatusFacts {
                devices: 4,
                offline: 4,
                backlog: Some(0),
                store_failing: false,
                link: Some(LinkFacts::Up),
                modem: None,
            },
            "polling 4 devices, all offline, backlog empty, link up",
        ),
        (
            StatusFacts {
                devices: 1,
                offline: 1,
                backlog: Some(1),
                store_failing: false,
                link: Some(LinkFacts::Down(m(7200 + 13 * 60))),
                modem: None,
            },
            "polling 1 device, 1 offline, backlog 1 reading, link down 2h13m",
        ),
        (
            StatusFacts {
                devices: 3,
                offline: 0,
                backlog: Some(999),
                store_failing: false,
                link: None,
                modem: None,
            },
            "polling 3 devices, backlog 999 readings",
        ),
        (
            StatusFacts {
                devices: 200,
                offline: 0,
                backlog: Some(2_345_678),
                store_failing: false,
                link: Some(LinkFacts::Down(m(3 * 86400 + 5 * 3600))),
                modem: None,
            },
            "polling 200 devices, backlog 2.3M readings, link down 3d5h",
        ),
        (
            StatusFacts {
                devices: 2,
                link: Some(LinkFacts::Up),
                modem: Some("modem registered, RSRP -85 dBm".into()),
                ..Default::default()
            },
            "polling 2 devices, link up, modem registered, RSRP -85 dBm",
        ),
    ];
    for (facts, want) in cases {
        assert_eq!(status_line(facts), *want, "{facts:?}");
    }
}

#[test]
fn compact_counts() {
    for (n, want) in [
        (0, "0"),
        (999, "999"),
        (1000, "1.0k"),
        (1234, "1.2k"),
        (9_960, "10k"),
        (12_345, "12k"),
        (120_000, "120k"),
        (999_499, "999k"),
        (999_500, "1.0M"),
        (1_250_000, "1.3M"),
        (45_000_000, "45M"),
        (3_000_000_000, "3.0G"),
    ] {
        assert_eq!(compact_count(n), want, "{n}");
    }
}

#[test]
fn human_durations() {
    for (s, want) in [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (3600 + 60, "1h1m"),
        (86_400, "1d"),
        (86_400 * 2 + 3600 * 23, "2d23h"),
    ] {
        assert_eq!(human_duration(Duration::from_secs(s)), want, "{s}");
    }
}

#[test]
fn stalled_lines() {
    let p = Part::Bus("rs485a".into());
    assert_eq!(
        stalled_line(&p, Duration::from_secs(700), "polling 3 devices"),
        "STALLED: bus rs485a silent for 11m; polling 3 devices"
    );
    assert_eq!(
        stalled_line(&Part::Uplink, Duration::from_secs(30), ""),
        "STALLED: uplink silent for 30s"
    );
    assert_eq!(
        stalled_line(&Part::Bus(ANY_BUS.into()), Duration::from_secs(5), ""),
        "STALLED: poller silent for 5s"
    );
}

#[test]
fn journal_stream_matching() {
    for (env, dev, ino, want) in [
        ("8:12345", 8, 12345, true),
        ("8:12345", 8, 12346, false),
        ("9:12345", 8, 12345, false),
        ("", 8, 12345, false),
        ("8", 8, 12345, false),
        ("x:y", 8, 12345, false),
        ("8:12345:1", 8, 12345, false),
    ] {
        assert_eq!(journal_stream_is(env, dev, ino), want, "{env}");
    }
}

use crate::gateway::progress::tests::TWO_BUSES;
use crate::gateway::progress::ANY_BUS;

#[test]
fn reload_refuses_bad_files_and_spots_unchanged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gasdtu.toml");
    std::fs::write(&path, TWO_BUSES).unwrap();
    let running = config::load_file(&path).unwrap().config;
    assert!(matches!(try_reload(&path, &running), Reload::Unchanged));
    std::fs::write(&path, TWO_BUSES.replace("poll = \"10s\"", "poll = \"20s\"")).unwrap();
    match try_reload(&path, &running) {
        Reload::Apply(l) => assert_ne!(l.config, running),
        r => panic!("{r:?}"),
    }
    std::fs::write(&path, TWO_BUSES.replace("unit = 2", "unit = 0")).unwrap();
    assert!(matches!(
        try_reload(&path, &running),
        Reload::Refused(LoadError::Invalid { .. })
    ));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        try_reload(&path, &running),
        Reload::Refused(LoadError::Read { .. })
    ));
}
