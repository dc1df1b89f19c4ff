//! Benchmark: CPU cost of the AT stream demultiplexer (`gasdtu::modem::at::AtParser`) and of
//! the reply parsers, against the bytes a UART can deliver. A session-like transcript (echo on,
//! signal queries with URCs between lines and OK, BC95 NUESTATS, QIRD binary reads of 1,460
//! bytes, push-mode data URCs, CEREG URCs) is fed in chunks of 1, 16, 64 and 4,096 bytes; the
//! report gives throughput (MB/s), time per exchange, and the share of one core a 115,200 baud
//! link (11.5 kB/s) would cost. It checks that every chunking yields the same events and exits
//! non-zero otherwise. Results go to stdout and bench-results/at_parser.txt.
//!
//! Run with `cargo bench --bench at_parser`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use gasdtu::modem::at::{AtParser, Event, Request};
use gasdtu::modem::reply::{cereg_reply, csq};
use gasdtu::modem::signal::{nuestats, qeng_servingcell};

/// One step of a session: the command sent (text, expects a prompt?) or `None` for idle
/// bytes, then the bytes from the module.
type Step = (Option<(&'static str, bool)>, Vec<u8>);

/// One round of a session.
fn round() -> Vec<Step> {
    let payload: Vec<u8> = (0..1460u32).map(|i| (i * 7) as u8).collect();
    let mut qird = b"\r\n+QIRD: 1460\r\n".to_vec();
    qird.extend_from_slice(&payload);
    qird.extend_from_slice(b"\r\n\r\nOK\r\n");
    let mut push = b"\r\n+QIURC: \"recv\",0,200\r\n".to_vec();
    push.extend_from_slice(&payload[..200]);
    vec![
        (Some(("AT", false)), b"AT\r\r\nOK\r\n".to_vec()),
        (
            Some(("AT+CSQ", false)),
            b"AT+CSQ\r\r\n+CSQ: 22,99\r\n\r\n+CEREG: 1\r\n\r\nOK\r\n".to_vec(),
        ),
        (
            Some(("AT+CEREG?", false)),
            b"AT+CEREG?\r\r\n+CEREG: 2,1,\"1A2D\",\"01A2D001\",9\r\n\r\nOK\r\n".to_vec(),
        ),
        (
            Some(("AT+QENG=\"servingcell\"", false)),
            b"\r\n+QENG: \"servingcell\",\"NOCONN\",\"CAT-NB\",\"FDD\",460,00,1A2D001,98,3569,8,3,3,5504,-103,-11,-73,10,-\r\n\r\nOK\r\n".to_vec(),
        ),
        (
            Some(("AT+NUESTATS", false)),
            b"\r\nSignal power:-767\r\nTotal power:-674\r\nTX power:230\r\nTX time:1026\r\nRX time:9122\r\nCell ID:108155522\r\n\r\n+CEREG:2\r\nECL:0\r\nSNR:155\r\nEARFCN:2506\r\nPCI:1\r\nRSRQ:-108\r\nOPERATOR MODE:4\r\n\r\nOK\r\n".to_vec(),
        ),
        (Some(("AT+QIRD=0,1500", false)), qird),
        (Some(("AT+QISEND=0,1460", true)), b"\r\n> ".to_vec()),
        (Some(("", false)), b"\r\nSEND OK\r\n".to_vec()),
        (None, push),
        (None, b"\r\n+CEREG: 5,\"1A2D\",\"01A2D001\",9\r\n".to_vec()),
    ]
}

fn run(rounds: usize, chunk: usize, script: &[Step]) -> (Vec<Event>, usize) {
    let mut p = AtParser::new();
    let mut kept = Vec::new();
    let mut exchanges = 0;
    for r in 0..rounds {
        for (cmd, bytes) in script {
            if let Some((text, prompt)) = cmd {
                let req = match (*text, *prompt) {
                    ("", _) => Request::payload(),
                    (t, true) => Request::with_prompt(t),
                    (t, false) => Request::new(t),
                };
                p.begin(req);
            }
            for c in bytes.chunks(chunk) {
                for ev in p.feed(black_box(c)) {
                    if matches!(ev, Event::Exchange(_)) {
                        exchanges += 1;
                    }
                    if r == 0 {
                        kept.push(ev);
                    }
                }
            }
        }
    }
    (kept, exchanges)
}

fn main() -> ExitCode {
    let script = round();
    let per_round: usize = script.iter().map(|(_, b)| b.len()).sum();
    let rounds = 2_000;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "AT parser benchmark: {rounds} rounds of a {per_round}-byte session transcript \
         (8 exchanges, 4 URCs, 1,660 binary bytes per round)\n"
    );
    let _ = writeln!(
        out,
        "chunk bytes | MB/s   | us per exchange | core share at 115200 baud"
    );
    let (reference, _) = run(1, 4096, &script);
    let mut problems = Vec::new();
    for chunk in [1usize, 16, 64, 4096] {
        let (events, _) = run(1, chunk, &script);
        if events != reference {
            problems.push(format!(
                "chunk {chunk}: events differ from 4096-byte chunks"
            ));
        }
        let start = Instant::now();
        let (_, exchanges) = run(rounds, chunk, &script);
        let secs = start.elapsed().as_secs_f64();
        let bytes = (rounds * per_round) as f64;
        let mbs = bytes / secs / 1e6;
        let share = 11_520.0 / (bytes / secs) * 100.0;
        let _ = writeln!(
            out,
            "{chunk:>11} | {mbs:>6.1} | {:>15.2} | {share:.4} %",
            secs * 1e6 / exchanges as f64,
        );
    }
    let lines: Vec<String> = [
        "Signal power:-767",
        "Total power:-674",
        "TX power:230",
        "Cell ID:108155522",
        "ECL:0",
        "SNR:155",
        "EARFCN:2506",
        "PCI:1",
        "RSRQ:-108",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let n = 100_000;
    let start = Instant::now();
    for _ in 0..n {
        black_box(cereg_reply(black_box("+CEREG: 2,1,\"1A2D\",\"01A2D001\",9")).is_ok());
        black_box(csq(black_box("+CSQ: 22,99")).is_ok());
        black_box(nuestats(black_box(&lines)).is_ok());
        black_box(
            qeng_servingcell(black_box(
                "+QENG: \"servingcell\",\"NOCONN\",\"CAT-NB\",\"FDD\",460,00,1A2D001,98,3569,8,3,3,5504,-103,-11,-73,10,-",
            ))
            .is_ok(),
        );
    }
    let _ = writeln!(
        out,
        "\nreply parsers: CEREG + CSQ + NUESTATS (9 lines) + QENG in {:.2} us per set",
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    if problems.is_empty() {
        let _ = writeln!(out, "\nresult: OK, every chunking gave the same events");
    } else {
        let _ = writeln!(out, "\nresult: FAILED");
        for p in &problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    print!("{out}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results");
    let file = dir.join("at_parser.txt");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, &out)) {
        eprintln!("cannot write {}: {e}", file.display());
        return ExitCode::from(2);
    }
    eprintln!("written to {}", file.display());
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
