//! Tests of the link's pure parts: the classification of a failed attempt's bytes, the
//! header clauses, the tap's bound and the serial open's settle policy.

use super::*;

/// A serial open that fails `fails` times, then opens: tried at most once per wait plus
/// once, each wait taken in full before the next try; a failure at the end names the
/// last error, the tries and the time they took.
#[tokio::test]
async fn a_failed_serial_open_is_tried_again_after_each_settle_wait() {
    let settle = [Duration::from_millis(3), Duration::from_millis(7)];
    // (failures before it opens, result, tries made, least time taken in ms)
    let cases: &[(u32, Result<u32, &str>, u32, u64)] = &[
        (0, Ok(1), 1, 0),
        (1, Ok(2), 2, 3),
        (2, Ok(3), 3, 10),
        (3, Err("busy 3 (3 tries over 10 ms)"), 3, 10),
        (9, Err("busy 3 (3 tries over 10 ms)"), 3, 10),
    ];
    for &(fails, ref want, tries, least_ms) in cases {
        let mut n = 0u32;
        let t0 = Instant::now();
        let got = settled(&settle, || {
            n += 1;
            if n <= fails {
                Err(io::Error::new(io::ErrorKind::NotFound, format!("busy {n}")))
            } else {
                Ok(n)
            }
        })
        .await
        .map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(String::from), "{fails} failures");
        assert_eq!(n, tries, "{fails} failures");
        assert!(
            t0.elapsed() >= Duration::from_millis(least_ms),
            "{fails} failures"
        );
    }
    // No waits: one try, the error as it is.
    let e = settled::<()>(&[], || Err(io::Error::other("gone"))).await;
    assert_eq!(e.map_err(|e| e.to_string()), Err("gone".to_string()));
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn classify_stray_bytes() {
    // (unit, bytes received, expected class)
    let cases: &[(u8, &str, &str)] = &[
        (1, "", "timeout"),
        // Valid-length read reply with its CRC's bytes flipped.
        (1, "01 03 02 00 2A 39 B9", "crc"),
        // Exception reply with a wrong CRC.
        (1, "01 83 02 00 00", "crc"),
        // Half a reply.
        (1, "01 03 04 00 2A", "protocol"),
        // Another unit's frame or line noise.
        (2, "01 03 02 00 2A 38 5B", "protocol"),
        (1, "FF 00 13", "protocol"),
    ];
    for (unit, rx, want) in cases {
        let got = match classify_stray(Framing::Rtu, *unit, &hex(rx)) {
            Attempt::Timeout => "timeout",
            Attempt::Crc(_) => "crc",
            Attempt::Protocol(_) => "protocol",
            Attempt::Io(_) => "io",
        };
        assert_eq!(got, *want, "unit {unit} bytes [{rx}]");
    }
}

/// A flood through the tap: every byte reaches the reader, the tap keeps `TAP_MAX`.
#[tokio::test]
async fn the_tap_keeps_a_bounded_prefix_of_a_flood() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut peer, ours) = tokio::io::duplex(4096);
    let log = Arc::new(TapLog::default());
    let mut tap = Tap {
        inner: ours,
        log: log.clone(),
    };
    let flood: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let writer = tokio::spawn(async move {
        peer.write_all(&flood).await.unwrap();
    });
    let mut got = 0usize;
    let mut buf = [0u8; 1000];
    while got < 100_000 {
        got += tap.read(&mut buf).await.unwrap();
    }
    writer.await.unwrap();
    let kept = log.take();
    assert_eq!(kept.len(), TAP_MAX);
    assert_eq!(kept[..4], [0, 1, 2, 3]);
}

#[test]
fn a_refused_header_is_one_clause_without_the_reply() {
    use tokio_modbus::{ExceptionResponse, FunctionCode, ProtocolError};
    let message = "expected/request = Header { transaction_id: 8, unit_id: 3 }, \
                   actual/response = Header { transaction_id: 7, unit_id: 3 }";
    let p = ProtocolError::HeaderMismatch {
        message: message.into(),
        result: Ok(Response::ReadHoldingRegisters(vec![0x1234; 60])),
    };
    let want = "reply for unit 3 function 3 has transaction id 7, expected 8";
    assert_eq!(protocol_detail(&p), want);
    let p = ProtocolError::HeaderMismatch {
        message: message.into(),
        result: Err(ExceptionResponse {
            function: FunctionCode::ReadInputRegisters,
            exception: ExceptionCode::IllegalDataAddress,
        }),
    };
    let want = "reply for unit 3 function 4 (an exception) has transaction id 7, expected 8";
    assert_eq!(protocol_detail(&p), want);
}

#[test]
fn a_good_frame_is_not_called_a_crc_error() {
    // 01 03 02 00 2A + correct CRC: if such a frame is stray, it is not a CRC error.
    let mut f = hex("01 03 02 00 2A");
    let crc = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS).checksum(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        classify_stray(Framing::Rtu, 1, &f),
        Attempt::Protocol(_)
    ));
    // Over Modbus TCP any stray byte is garbage (there is no CRC to blame).
    assert!(matches!(
        classify_stray(Framing::Mbap, 1, &hex("00 01 00 00 00 09 01 03")),
        Attempt::Protocol(_)
    ));
    assert!(matches!(
        classify_stray(Framing::Mbap, 1, &[]),
        Attempt::Timeout
    ));
}
