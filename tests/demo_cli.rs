//! `gasdtu demo` on a fresh machine: the embedded default runs the simulators and the daemon's
//! own runtime (store, alarms, poll-fast/report-slow, forwarder) with the embedded broker, stops
//! by itself after `--duration`, and its summary line counts what was polled, committed and
//! delivered and the alarms, with the dead meter reported offline (and its comm-loss alarm
//! raised) and the live ones good.

mod common;

use std::process::Command;

#[test]
fn demo_runs_the_pipeline_and_stops_by_itself() {
    let out = Command::new(common::gasdtu())
        .args(["demo", "--duration", "8s", "--plain"])
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
    // Everything polled was committed to the store, and everything due upstream was delivered
    // through the embedded broker: nothing is left in the outbox. (The report-slow device's raw
    // polls stay history; its window reports go upstream, so delivered counts differ.)
    let committed = num("committed");
    let delivered = num("delivered to the broker");
    assert_eq!(committed, polled, "{summary}");
    assert!(delivered > 0, "{summary}");
    assert_eq!(num("still buffered"), 0, "{summary}");
    // The same runtime as `gasdtu run`: alarms are judged, committed and delivered first. The
    // dead meter's comm-loss alarm is raised within its offline_after cycles.
    let raised = num("raised");
    let cleared = num("cleared (broker)");
    let transitions = num("transitions committed");
    assert!(raised >= 1, "{summary}");
    assert_eq!(
        raised + cleared,
        transitions,
        "every committed transition delivered: {summary}"
    );
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
