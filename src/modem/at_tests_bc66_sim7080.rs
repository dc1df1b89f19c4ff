//! AT demultiplexer transcripts of the BC66 (inline hex sends ending at `SEND OK`, hex reads,
//! `CLOSE OK`) and SIM7080 (bare `>` prompt, binary inside `+CARECV: <n>,` including CR/LF and
//! "OK", the length bound, CA* URCs) dialects; `at_tests` runs them like its own (whole, byte by
//! byte, split at every byte).

use super::*;

pub(super) fn cases() -> Vec<Case> {
    vec![
        (
            "SIM7080 CASEND: bare \">\" prompt, raw payload, OK",
            vec![
                (
                    Some(Request::with_prompt("AT+CASEND=0,5")),
                    b"AT+CASEND=0,5\r\r\n>",
                ),
                (Some(Request::payload()), b"\r\nOK\r\n"),
            ],
            vec![
                x("AT+CASEND=0,5", &[], Final::Prompt),
                Event::Empty,
                x("", &[], Final::Ok),
            ],
        ),
        (
            "SIM7080 CARECV: binary inside the line, containing CRLF OK CRLF",
            vec![(
                req("AT+CARECV=0,1460"),
                b"AT+CARECV=0,1460\r\r\n+CARECV: 9,\r\nOK\r\n>,\n\r\n\r\nOK\r\n",
            )],
            vec![xd(
                "AT+CARECV=0,1460",
                &["+CARECV: 9"],
                b"\r\nOK\r\n>,\n",
                Final::Ok,
            )],
        ),
        (
            "SIM7080 CARECV: nothing buffered",
            vec![(req("AT+CARECV=0,1460"), b"\r\n+CARECV: 0\r\n\r\nOK\r\n")],
            vec![
                Event::Empty,
                x("AT+CARECV=0,1460", &["+CARECV: 0"], Final::Ok),
            ],
        ),
        (
            "SIM7080 CARECV length over the bound is read as a line",
            vec![(
                req("AT+CARECV=0,1460"),
                b"\r\n+CARECV: 2000,ab\r\n\r\nOK\r\n",
            )],
            vec![
                Event::Empty,
                Event::Error(StreamError::DataTooLong {
                    line: "+CARECV: 2000".into(),
                    len: 2000,
                }),
                x("AT+CARECV=0,1460", &["+CARECV: 2000,ab"], Final::Ok),
            ],
        ),
        (
            "\"+CARECV: n,\" outside an AT+CARECV is a plain line",
            vec![(req("AT+CGMR"), b"\r\n+CARECV: 2,\r\n\r\nOK\r\n")],
            vec![Event::Empty, x("AT+CGMR", &["+CARECV: 2,"], Final::Ok)],
        ),
        (
            "SIM7080 open, data and state URCs",
            vec![
                (
                    req("AT+CNACT=0,1"),
                    b"AT+CNACT=0,1\r\r\nOK\r\n\r\n+APP PDP: 0,ACTIVE\r\n",
                ),
                (
                    req("AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",8883"),
                    b"\r\n+CAOPEN: 0,0\r\n\r\nOK\r\n\r\n+CADATAIND: 0\r\n\r\n+CASTATE: 0,0\r\n",
                ),
            ],
            vec![
                x("AT+CNACT=0,1", &[], Final::Ok),
                urc("+APP PDP: 0,ACTIVE"),
                Event::Empty,
                x(
                    "AT+CAOPEN=0,0,\"TCP\",\"127.0.0.1\",8883",
                    &["+CAOPEN: 0,0"],
                    Final::Ok,
                ),
                urc("+CADATAIND: 0"),
                urc("+CASTATE: 0,0"),
            ],
        ),
        (
            "BC66 inline hex send ends at SEND OK, not at its OK",
            vec![
                (
                    req("AT+QISEND=0,2,4142"),
                    b"AT+QISEND=0,2,4142\r\r\nOK\r\n\r\nSEND OK\r\n",
                ),
                (req("AT+QISEND=0,1,41"), b"\r\nOK\r\n\r\nSEND FAIL\r\n"),
            ],
            vec![
                x("AT+QISEND=0,2,4142", &[], Final::SendOk),
                Event::Empty,
                x("AT+QISEND=0,1,41", &[], Final::SendFail),
            ],
        ),
        (
            "BC66 hex push URC carries its data inside the line: no raw bytes read after it",
            vec![(
                req("AT+CGMR"),
                b"\r\n+QIURC: \"recv\",0,2,4142\r\n\r\nOK\r\n",
            )],
            vec![
                Event::Empty,
                urc("+QIURC: \"recv\",0,2,4142"),
                x("AT+CGMR", &[], Final::Ok),
            ],
        ),
        (
            "BC66 hex read, empty read, CLOSE OK",
            vec![
                (req("AT+QIRD=0,512"), b"\r\n+QIRD: 2,4142\r\n\r\nOK\r\n"),
                (req("AT+QIRD=0,512"), b"\r\n+QIRD: 0\r\n\r\nOK\r\n"),
                (req("AT+QICLOSE=0"), b"\r\nCLOSE OK\r\n"),
            ],
            vec![
                Event::Empty,
                x("AT+QIRD=0,512", &["+QIRD: 2,4142"], Final::Ok),
                Event::Empty,
                x("AT+QIRD=0,512", &["+QIRD: 0"], Final::Ok),
                Event::Empty,
                x("AT+QICLOSE=0", &[], Final::Ok),
            ],
        ),
    ]
}
