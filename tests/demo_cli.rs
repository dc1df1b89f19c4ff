//! `gasdtu demo` on a fresh machine: the embedded default runs the simulators, the real
//! acquisition engine, store and forwarder with the embedded broker, stops by itself after
//! `--duration`, and its summary line counts what was polled, committed and delivered, with the
//! dead meter reported offline and the live ones good.

mod common;

use std::process::Command;

#[test]
fn demo_runs_the_pipeline_and_stops_by_itself() {
    let out = Command::new(common::gasdtu())
        .args(["demo", "--duration", "5s", "--plain"])
        .output()
        .expect("run gasdtu demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("demo summary:"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    let num = |key: &str| -> u64 {
        let i = summary
            .find(key)
            .unwrap_or_else(|| panic!("no `{key}` in {summary}"));
        let digits: String = summary[..i]
            .trim_end()
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_start_matches('(')
            .to_string();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("bad number before `{key}` in {summary}"))
    };
    let polled = num("readings polled");
    let good = num("good");
    let bad = num("bad)");
    assert!(polled > 0 && good > 0, "{summary}");
    assert_eq!(polled, good + bad, "{summary}");
    assert!(
        summary.ends_with("offline: evc_dead"),
        "the dead meter is reported offline: {summary}"
    );
    // Everything polled was committed to the store and delivered through the embedded broker.
    let committed = num("committed");
    let delivered = num("delivered to the broker");
    assert_eq!(committed, polled, "{summary}");
    assert_eq!(delivered, committed, "{summary}");
    // Every live device reported good data at least once.
    for dev in [
        "evc_inlet",
        "pt_inlet",
        "mvt_run1",
        "turbine_run2",
        "pt_outlet",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(dev) && l.contains(" online ") && !l.contains("BAD")),
            "{dev} never reported good data:\n{stdout}"
        );
    }
}
