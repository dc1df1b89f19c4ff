//! The simulator's own Modbus wire layer, server side and pure (no I/O): request PDUs decoded
//! from bytes, response PDUs encoded to bytes, RTU framing (CRC-16/MODBUS, little-endian on the
//! wire, requests delimited by their function code's known length) and MBAP framing (Modbus
//! TCP). Written here rather than taken from a server crate so the simulator can build broken
//! frames on purpose. `RtuDeframer` is the sans-IO resynchronising reader the serial and
//! RTU-over-TCP transports feed bytes into.

use thiserror::Error;

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

/// CRC-16/MODBUS of `bytes` (sent low byte first).
pub fn crc16(bytes: &[u8]) -> u16 {
    CRC.checksum(bytes)
}

/// One decoded request PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// FC 1.
    ReadCoils { address: u16, quantity: u16 },
    /// FC 2.
    ReadDiscreteInputs { address: u16, quantity: u16 },
    /// FC 3.
    ReadHoldingRegisters { address: u16, quantity: u16 },
    /// FC 4.
    ReadInputRegisters { address: u16, quantity: u16 },
    /// FC 5 (0xFF00 on, 0x0000 off on the wire).
    WriteSingleCoil { address: u16, value: bool },
    /// FC 6.
    WriteSingleRegister { address: u16, value: u16 },
    /// FC 15.
    WriteMultipleCoils { address: u16, values: Vec<bool> },
    /// FC 16.
    WriteMultipleRegisters { address: u16, values: Vec<u16> },
}

impl Request {
    /// The function code of the request.
    pub fn function(&self) -> u8 {
        match self {
            Request::ReadCoils { .. } => 1,
            Request::ReadDiscreteInputs { .. } => 2,
            Request::ReadHoldingRegisters { .. } => 3,
            Request::ReadInputRegisters { .. } => 4,
            Request::WriteSingleCoil { .. } => 5,
            Request::WriteSingleRegister { .. } => 6,
            Request::WriteMultipleCoils { .. } => 15,
            Request::WriteMultipleRegisters { .. } => 16,
        }
    }

    /// True for the write function codes (the only ones a broadcast may carry).
    pub fn is_write(&self) -> bool {
        matches!(self.function(), 5 | 6 | 15 | 16)
    }
}

/// Why a request PDU is not a valid request. Each variant maps to the exception the server
/// answers with (`exception_code`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PduError {
    /// Occurs when the PDU is empty.
    #[error("empty PDU")]
    Empty,
    /// Occurs for a function code this server does not implement (exception 1).
    #[error("function code {0} is not supported")]
    IllegalFunction(u8),
    /// Occurs when the PDU's length does not match its function code (exception 3).
    #[error("function {function}: PDU is {got} bytes, expected {expected}")]
    Length {
        function: u8,
        expected: usize,
        got: usize,
    },
    /// Occurs for a field value the spec forbids: quantity 0 or too large, byte count not
    /// matching the quantity, a coil value other than 0xFF00/0x0000 (exception 3).
    #[error("function {function}: {what}")]
    IllegalValue { function: u8, what: String },
}

impl PduError {
    /// The Modbus exception code a server answers this error with.
    pub fn exception_code(&self) -> u8 {
        match self {
            PduError::IllegalFunction(_) => 1,
            _ => 3,
        }
    }

    /// The function code the exception reply names (0 for an empty PDU).
    pub fn function(&self) -> u8 {
        match self {
            PduError::Empty => 0,
            PduError::IllegalFunction(f) => *f,
            PduError::Length { function, .. } | PduError::IllegalValue { function, .. } => {
                *function
            }
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Decode a request PDU (function code first, no unit id, no CRC/MBAP).
pub fn decode_request(pdu: &[u8]) -> Result<Request, PduError> {
    let Some(&function) = pdu.first() else {
        return Err(PduError::Empty);
    };
    let exact = |expected: usize| {
        if pdu.len() == expected {
            Ok(())
        } else {
            Err(PduError::Length {
                function,
                expected,
                got: pdu.len(),
            })
        }
    };
    let illegal = |what: String| PduError::IllegalValue { function, what };
    match function {
        1..=6 => {
            exact(5)?;
            let address = be16(pdu, 1);
            let v = be16(pdu, 3);
            let read_max = if function <= 2 { 2000 } else { 125 };
            match function {
                1..=4 if v == 0 || v > read_max => {
                    Err(illegal(format!("quantity {v} outside 1..={read_max}")))
                }
                1 => Ok(Request::ReadCoils {
                    address,
                    quantity: v,
                }),
                2 => Ok(Request::ReadDiscreteInputs {
                    address,
                    quantity: v,
                }),
                3 => Ok(Request::ReadHoldingRegisters {
                    address,
                    quantity: v,
                }),
                4 => Ok(Request::ReadInputRegisters {
                    address,
                    quantity: v,
                }),
                5 => match v {
                    0xFF00 => Ok(Request::WriteSingleCoil {
                        address,
                        value: true,
                    }),
                    0x0000 => Ok(Request::WriteSingleCoil {
                        address,
                        value: false,
                    }),
                    other => Err(illegal(format!("coil value 0x{other:04X}"))),
                },
                _ => Ok(Request::WriteSingleRegister { address, value: v }),
            }
        }
        15 | 16 => {
            if pdu.len() < 6 {
                return Err(PduError::Length {
                    function,
                    expected: 6,
                    got: pdu.len(),
                });
            }
            let address = be16(pdu, 1);
            let quantity = be16(pdu, 3);
            let count = pdu[5] as usize;
            exact(6 + count)?;
            let (max, need) = if function == 15 {
                (1968, (quantity as usize).div_ceil(8))
            } else {
                (123, quantity as usize * 2)
            };
            if quantity == 0 || quantity > max {
                return Err(illegal(format!("quantity {quantity} outside 1..={max}")));
            }
            if count != need {
                return Err(illegal(format!(
                    "byte count {count} does not match quantity {quantity}"
                )));
            }
            let data = &pdu[6..];
            if function == 15 {
                let values = (0..quantity as usize)
                    .map(|i| data[i / 8] >> (i % 8) & 1 == 1)
                    .collect();
                Ok(Request::WriteMultipleCoils { address, values })
            } else {
                let values = data.chunks(2).map(|c| be16(c, 0)).collect();
                Ok(Request::WriteMultipleRegisters { address, values })
            }
        }
        other => Err(PduError::IllegalFunction(other)),
    }
}

/// Encode a request PDU (the inverse of `decode_request`; used by tests and benchmarks).
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut out = vec![req.function()];
    let push16 = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&v.to_be_bytes());
    match req {
        Request::ReadCoils { address, quantity }
        | Request::ReadDiscreteInputs { address, quantity }
        | Request::ReadHoldingRegisters { address, quantity }
        | Request::ReadInputRegisters { address, quantity } => {
            push16(&mut out, *address);
            push16(&mut out, *quantity);
        }
        Request::WriteSingleCoil { address, value } => {
            push16(&mut out, *address);
            push16(&mut out, if *value { 0xFF00 } else { 0 });
        }
        Request::WriteSingleRegister { address, value } => {
            push16(&mut out, *address);
            push16(&mut out, *value);
        }
        Request::WriteMultipleCoils { address, values } => {
            push16(&mut out, *address);
            push16(&mut out, values.len() as u16);
            let bytes = pack_bits(values);
            out.push(bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        Request::WriteMultipleRegisters { address, values } => {
            push16(&mut out, *address);
            push16(&mut out, values.len() as u16);
            out.push((values.len() * 2) as u8);
            for v in values {
                push16(&mut out, *v);
            }
        }
    }
    out
}

fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut bytes = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            bytes[i / 8] |= 1 << (i % 8);
        }
    }
    bytes
}

/// One response PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Reply to FC 1 or 2.
    Bits { function: u8, bits: Vec<bool> },
    /// Reply to FC 3 or 4.
    Registers { function: u8, words: Vec<u16> },
    /// Echo of FC 5 or 6: address and the 16-bit value field as sent.
    WriteSingle {
        function: u8,
        address: u16,
        value: u16,
    },
    /// Reply to FC 15 or 16.
    WriteMultiple {
        function: u8,
        address: u16,
        quantity: u16,
    },
    /// Exception reply: function | 0x80, then the code.
    Exception { function: u8, code: u8 },
}

/// Encode a response PDU.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    match resp {
        Response::Bits { function, bits } => {
            let bytes = pack_bits(bits);
            let mut out = vec![*function, bytes.len() as u8];
            out.extend_from_slice(&bytes);
            out
        }
        Response::Registers { function, words } => {
            let mut out = vec![*function, (words.len() * 2) as u8];
            for w in words {
                out.extend_from_slice(&w.to_be_bytes());
            }
            out
        }
        Response::WriteSingle {
            function,
            address,
            value,
        } => {
            let mut out = vec![*function];
            out.extend_from_slice(&address.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
            out
        }
        Response::WriteMultiple {
            function,
            address,
            quantity,
        } => {
            let mut out = vec![*function];
            out.extend_from_slice(&address.to_be_bytes());
            out.extend_from_slice(&quantity.to_be_bytes());
            out
        }
        Response::Exception { function, code } => vec![function | 0x80, *code],
    }
}

/// Build an RTU frame: unit, PDU, CRC (low byte first).
pub fn rtu_frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pdu.len() + 3);
    out.push(unit);
    out.extend_from_slice(pdu);
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Total length of the RTU request starting at `buf[0]`, if the function code fixes it and
/// enough bytes are there to tell. `Err(fc)` for a function code of unknown length.
pub fn rtu_request_len(buf: &[u8]) -> Result<Option<usize>, u8> {
    let Some(&function) = buf.get(1) else {
        return Ok(None);
    };
    match function {
        1..=6 => Ok(Some(8)),
        15 | 16 => Ok(buf.get(6).map(|&count| 9 + count as usize)),
        other => Err(other),
    }
}

/// What the head of an RTU receive buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtuScan {
    /// Not enough bytes yet to tell.
    Incomplete,
    /// A CRC-valid frame of `len` bytes.
    Frame { unit: u8, pdu: Vec<u8>, len: usize },
    /// The head cannot start a valid frame: drop a byte and scan again.
    Invalid(FrameError),
}

/// Why bytes on the line are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Occurs when the CRC at the end of a complete-length RTU frame does not match.
    #[error("CRC mismatch: frame says 0x{got:04X}, computed 0x{expected:04X}")]
    Crc { expected: u16, got: u16 },
    /// Occurs when an RTU frame carries a function code whose length is not known.
    #[error("function code {0} of unknown length")]
    UnknownLength(u8),
    /// Occurs when an MBAP header's protocol id is not 0 (not Modbus).
    #[error("MBAP protocol id {0} is not 0")]
    Protocol(u16),
    /// Occurs when an MBAP length field is outside 2..=254.
    #[error("MBAP length {0} outside 2..=254")]
    Length(u16),
}

/// Scan the head of `buf` for one RTU request.
pub fn scan_rtu_request(buf: &[u8]) -> RtuScan {
    let len = match rtu_request_len(buf) {
        Ok(Some(len)) => len,
        Ok(None) => return RtuScan::Incomplete,
        Err(fc) => return RtuScan::Invalid(FrameError::UnknownLength(fc)),
    };
    if buf.len() < len {
        return RtuScan::Incomplete;
    }
    check_rtu(&buf[..len])
}

/// Check a whole candidate RTU frame (unit, PDU, CRC).
pub fn check_rtu(frame: &[u8]) -> RtuScan {
    let len = frame.len();
    if len < 4 {
        return RtuScan::Incomplete;
    }
    let expected = crc16(&frame[..len - 2]);
    let got = u16::from_le_bytes([frame[len - 2], frame[len - 1]]);
    if expected != got {
        return RtuScan::Invalid(FrameError::Crc { expected, got });
    }
    RtuScan::Frame {
        unit: frame[0],
        pdu: frame[1..len - 2].to_vec(),
        len,
    }
}

/// Sans-IO RTU request reader: bytes go in with `push`, frames come out of `next_frame`, and a
/// line silence (the caller's timer) is reported with `silence`. On garbage or a bad CRC it
/// resynchronises by dropping one byte at a time until a valid frame starts; at a silence, the
/// bytes held are either one whole CRC-valid frame (possibly of an unknown function code, which
/// the device then answers with exception 1) or dropped.
#[derive(Debug, Default)]
pub struct RtuDeframer {
    buf: Vec<u8>,
    /// Bytes dropped while resynchronising, since the last `take_dropped`.
    dropped: usize,
}

/// A frame out of `RtuDeframer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtuFrame {
    pub unit: u8,
    pub pdu: Vec<u8>,
    /// Length on the wire, unit and CRC included.
    pub len: usize,
}

impl RtuDeframer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Number of bytes dropped since the last call (for logging).
    pub fn take_dropped(&mut self) -> usize {
        std::mem::take(&mut self.dropped)
    }

    /// The next complete frame, dropping bytes that cannot start one. A buffer whose head is a
    /// function code of unknown length waits for the silence.
    pub fn next_frame(&mut self) -> Option<RtuFrame> {
        loop {
            match scan_rtu_request(&self.buf) {
                RtuScan::Incomplete => return None,
                RtuScan::Frame { unit, pdu, len } => {
                    self.buf.drain(..len);
                    return Some(RtuFrame { unit, pdu, len });
                }
                RtuScan::Invalid(FrameError::UnknownLength(_)) => {
                    // Maybe a frame we cannot delimit by length: let the silence decide,
                    // unless a known frame starts further on.
                    if let Some(at) = self.known_frame_start() {
                        self.dropped += at;
                        self.buf.drain(..at);
                        continue;
                    }
                    return None;
                }
                RtuScan::Invalid(_) => {
                    self.buf.remove(0);
                    self.dropped += 1;
                }
            }
        }
    }

    /// Offset of the first position after 0 where a CRC-valid known-length frame starts.
    fn known_frame_start(&self) -> Option<usize> {
        (1..self.buf.len())
            .find(|&i| matches!(scan_rtu_request(&self.buf[i..]), RtuScan::Frame { .. }))
    }

    /// The line has been silent for 3.5 characters: what is held is one whole frame or
    /// nothing.
    pub fn silence(&mut self) -> Option<RtuFrame> {
        if let Some(f) = self.next_frame() {
            return Some(f);
        }
        let held = std::mem::take(&mut self.buf);
        match check_rtu(&held) {
            RtuScan::Frame { unit, pdu, len } => Some(RtuFrame { unit, pdu, len }),
            _ => {
                self.dropped += held.len();
                None
            }
        }
    }
}

/// Length of the MBAP header (transaction id, protocol id, length, unit id).
pub const MBAP_HEADER: usize = 7;

/// What the head of an MBAP receive buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MbapScan {
    Incomplete,
    Frame {
        transaction: u16,
        unit: u8,
        pdu: Vec<u8>,
        len: usize,
    },
    /// The stream cannot be framed any more (close the connection).
    Invalid(FrameError),
}

/// Scan the head of `buf` for one MBAP frame.
pub fn scan_mbap(buf: &[u8]) -> MbapScan {
    if buf.len() < MBAP_HEADER {
        return MbapScan::Incomplete;
    }
    let transaction = be16(buf, 0);
    let protocol = be16(buf, 2);
    let length = be16(buf, 4);
    if protocol != 0 {
        return MbapScan::Invalid(FrameError::Protocol(protocol));
    }
    if !(2..=254).contains(&length) {
        return MbapScan::Invalid(FrameError::Length(length));
    }
    let len = 6 + length as usize;
    if buf.len() < len {
        return MbapScan::Incomplete;
    }
    MbapScan::Frame {
        transaction,
        unit: buf[6],
        pdu: buf[MBAP_HEADER..len].to_vec(),
        len,
    }
}

/// Build an MBAP frame. `length_skew` is added to the length field (0 for a correct frame; the
/// fault injector uses -1 to send a frame whose length field lies).
pub fn mbap_frame(transaction: u16, unit: u8, pdu: &[u8], length_skew: i32) -> Vec<u8> {
    let length = (pdu.len() as i32 + 1 + length_skew).clamp(0, u16::MAX as i32) as u16;
    let mut out = Vec::with_capacity(MBAP_HEADER + pdu.len());
    out.extend_from_slice(&transaction.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.push(unit);
    out.extend_from_slice(pdu);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn crc_matches_known_frames() {
        // Classic examples: 01 03 00 00 00 0A -> C5 CD; 11 03 00 6B 00 03 -> 76 87.
        assert_eq!(
            rtu_frame(1, &hex("03 0000 000A")),
            hex("01 03 0000 000A C5CD")
        );
        assert_eq!(
            rtu_frame(0x11, &hex("03 006B 0003")),
            hex("11 03 006B 0003 7687")
        );
    }

    #[test]
    fn decodes_requests() {
        let cases: Vec<(&str, Request)> = vec![
            (
                "01 0013 0025",
                Request::ReadCoils {
                    address: 0x13,
                    quantity: 0x25,
                },
            ),
            (
                "02 00C4 0016",
                Request::ReadDiscreteInputs {
                    address: 0xC4,
                    quantity: 0x16,
                },
            ),
            (
                "03 006B 0003",
                Request::ReadHoldingRegisters {
                    address: 0x6B,
                    quantity: 3,
                },
            ),
            (
                "04 0008 0001",
                Request::ReadInputRegisters {
                    address: 8,
                    quantity: 1,
                },
            ),
            (
                "05 00AC FF00",
                Request::WriteSingleCoil {
                    address: 0xAC,
                    value: true,
                },
            ),
            (
                "05 00AC 0000",
                Request::WriteSingleCoil {
                    address: 0xAC,
                    value: false,
                },
            ),
            (
                "06 0001 0003",
                Request::WriteSingleRegister {
                    address: 1,
                    value: 3,
                },
            ),
            (
                "0F 0013 000A 02 CD01",
                Request::WriteMultipleCoils {
                    address: 0x13,
                    values: vec![
                        true, false, true, true, false, false, true, true, true, false,
                    ],
                },
            ),
            (
                "10 0001 0002 04 000A 0102",
                Request::WriteMultipleRegisters {
                    address: 1,
                    values: vec![0x000A, 0x0102],
                },
            ),
        ];
        for (h, want) in cases {
            let pdu = hex(h);
            assert_eq!(decode_request(&pdu), Ok(want.clone()), "{h}");
            assert_eq!(encode_request(&want), pdu, "round trip {h}");
        }
    }

    #[test]
    fn rejects_bad_requests_with_the_right_exception() {
        let cases: Vec<(&str, u8, u8)> = vec![
            // (pdu, function in the reply, exception code)
            ("", 0, 3),
            ("07", 7, 1),
            ("2B 0E01 00", 0x2B, 1),
            ("03 0000", 3, 3),                  // too short
            ("03 0000 0001 00", 3, 3),          // too long
            ("03 0000 0000", 3, 3),             // quantity 0
            ("03 0000 007E", 3, 3),             // 126 registers
            ("01 0000 07D1", 1, 3),             // 2001 coils
            ("05 0000 1234", 5, 3),             // coil value
            ("10 0001 0002 03 000A 01", 16, 3), // byte count vs quantity
            ("10 0001 0002 04 000A", 16, 3),    // data shorter than byte count
            ("0F 0000 0000 00", 15, 3),         // quantity 0
            ("10 0001", 16, 3),                 // header cut
        ];
        for (h, function, code) in cases {
            let err = decode_request(&hex(h)).unwrap_err();
            assert_eq!(
                (err.function(), err.exception_code()),
                (function, code),
                "{h}: {err}"
            );
        }
    }

    #[test]
    fn encodes_responses() {
        let cases: Vec<(Response, &str)> = vec![
            (
                Response::Bits {
                    function: 1,
                    bits: vec![true, false, true, true, false, false, true, true, true],
                },
                "01 02 CD01",
            ),
            (
                Response::Registers {
                    function: 3,
                    words: vec![0x022B, 0x0000, 0x0064],
                },
                "03 06 022B 0000 0064",
            ),
            (
                Response::Registers {
                    function: 4,
                    words: vec![0x000A],
                },
                "04 02 000A",
            ),
            (
                Response::WriteSingle {
                    function: 5,
                    address: 0xAC,
                    value: 0xFF00,
                },
                "05 00AC FF00",
            ),
            (
                Response::WriteSingle {
                    function: 6,
                    address: 1,
                    value: 3,
                },
                "06 0001 0003",
            ),
            (
                Response::WriteMultiple {
                    function: 15,
                    address: 0x13,
                    quantity: 10,
                },
                "0F 0013 000A",
            ),
            (
                Response::WriteMultiple {
                    function: 16,
                    address: 1,
                    quantity: 2,
                },
                "10 0001 0002",
            ),
            (
                Response::Exception {
                    function: 3,
                    code: 2,
                },
                "83 02",
            ),
            (
                Response::Exception {
                    function: 1,
                    code: 1,
                },
                "81 01",
            ),
            (
                Response::Exception {
                    function: 16,
                    code: 4,
                },
                "90 04",
            ),
        ];
        for (resp, h) in cases {
            assert_eq!(encode_response(&resp), hex(h), "{resp:?}");
        }
    }

    #[test]
    fn rtu_frames_exceptions() {
        // 01 83 02 C0 F1 is the textbook exception reply "illegal data address" from unit 1.
        assert_eq!(rtu_frame(1, &hex("8302")), hex("01 83 02 C0F1"));
    }

    #[test]
    fn scans_rtu_requests() {
        let read = rtu_frame(1, &hex("03 0000 000A"));
        let write = rtu_frame(7, &hex("10 0001 0002 04 000A 0102"));
        let mut bad_crc = read.clone();
        bad_crc[7] ^= 0xFF;
        let cases: Vec<(Vec<u8>, RtuScan)> = vec![
            (vec![], RtuScan::Incomplete),
            (hex("01"), RtuScan::Incomplete),
            (read[..7].to_vec(), RtuScan::Incomplete),
            (write[..6].to_vec(), RtuScan::Incomplete), // byte count not seen yet
            (write[..12].to_vec(), RtuScan::Incomplete),
            (
                read.clone(),
                RtuScan::Frame {
                    unit: 1,
                    pdu: hex("03 0000 000A"),
                    len: 8,
                },
            ),
            (
                [read.clone(), hex("FFFF")].concat(),
                RtuScan::Frame {
                    unit: 1,
                    pdu: hex("03 0000 000A"),
                    len: 8,
                },
            ),
            (
                write.clone(),
                RtuScan::Frame {
                    unit: 7,
                    pdu: hex("10 0001 0002 04 000A 0102"),
                    len: 13,
                },
            ),
            (
                bad_crc,
                RtuScan::Invalid(FrameError::Crc {
                    expected: 0xCDC5,
                    got: 0x32C5,
                }),
            ),
            (
                hex("01 2B 0E 01 00"),
                RtuScan::Invalid(FrameError::UnknownLength(0x2B)),
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(scan_rtu_request(&buf), want, "{buf:02X?}");
        }
    }

    #[test]
    fn deframer_resyncs_after_garbage_and_bad_crc() {
        let a = rtu_frame(1, &hex("03 0000 0002"));
        let b = rtu_frame(2, &hex("04 0010 0001"));
        let mut broken = a.clone();
        broken[3] ^= 0x01;
        let mut d = RtuDeframer::new();
        // garbage, then a frame with a bad CRC, then two good frames in dribs and drabs
        let stream = [hex("00 FF 13 03"), broken, a.clone(), b.clone()].concat();
        let mut got = vec![];
        for chunk in stream.chunks(3) {
            d.push(chunk);
            while let Some(f) = d.next_frame() {
                got.push(f);
            }
        }
        assert_eq!(
            got.iter()
                .map(|f| (f.unit, f.pdu.clone()))
                .collect::<Vec<_>>(),
            vec![(1, hex("03 0000 0002")), (2, hex("04 0010 0001"))]
        );
        assert_eq!(d.take_dropped(), 4 + 8);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn deframer_silence_delimits_unknown_functions_and_drops_partial_frames() {
        let mut d = RtuDeframer::new();
        let odd = rtu_frame(1, &hex("2B 0E 01 00"));
        d.push(&odd);
        assert_eq!(d.next_frame(), None);
        assert_eq!(
            d.silence(),
            Some(RtuFrame {
                unit: 1,
                pdu: hex("2B 0E 01 00"),
                len: 7
            })
        );
        d.push(&rtu_frame(1, &hex("03 0000 0002"))[..5]);
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.silence(), None);
        assert_eq!(d.pending(), 0);
        assert_eq!(d.take_dropped(), 5);
    }

    #[test]
    fn scans_mbap() {
        let cases: Vec<(&str, MbapScan)> = vec![
            ("", MbapScan::Incomplete),
            ("0001 0000 0006 01 03 00", MbapScan::Incomplete),
            (
                "0001 0000 0006 11 03 006B 0003",
                MbapScan::Frame {
                    transaction: 1,
                    unit: 0x11,
                    pdu: hex("03 006B 0003"),
                    len: 12,
                },
            ),
            (
                "BEEF 0000 0006 01 04 0000 0001 0002 0000",
                MbapScan::Frame {
                    transaction: 0xBEEF,
                    unit: 1,
                    pdu: hex("04 0000 0001"),
                    len: 12,
                },
            ),
            (
                "0001 0001 0006 01 03 0000 0001",
                MbapScan::Invalid(FrameError::Protocol(1)),
            ),
            (
                "0001 0000 0001 01 03 0000 0001",
                MbapScan::Invalid(FrameError::Length(1)),
            ),
            (
                "0001 0000 0100 01 03 0000 0001",
                MbapScan::Invalid(FrameError::Length(256)),
            ),
        ];
        for (h, want) in cases {
            assert_eq!(scan_mbap(&hex(h)), want, "{h}");
        }
    }

    #[test]
    fn builds_mbap_frames_and_lying_ones() {
        assert_eq!(
            mbap_frame(5, 1, &hex("03 02 0102"), 0),
            hex("0005 0000 0005 01 03 02 0102")
        );
        assert_eq!(
            mbap_frame(5, 1, &hex("83 02"), 0),
            hex("0005 0000 0003 01 83 02")
        );
        assert_eq!(
            mbap_frame(5, 1, &hex("03 02 0102"), -1),
            hex("0005 0000 0004 01 03 02 0102")
        );
    }
}
