//! The simulated radio conditions (RSRP, SINR, ECL and the serving cell) and how each model
//! reports them: BC95 AT+NUESTATS, BG96 AT+QCSQ / AT+QENG="servingcell", SIM7020 AT+CENG?,
//! and the generic AT+CSQ / AT+CESQ. Pure text formatting per the AT dialect sheet.

/// Radio conditions and the serving cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// Reference signal received power, dBm (-140..=-44).
    pub rsrp: i32,
    /// Signal to interference plus noise ratio, dB (-20..=30).
    pub sinr: i32,
    /// Coverage enhancement level, 0..=2.
    pub ecl: u8,
    /// Reference signal received quality, dB.
    pub rsrq: i32,
    pub cell_id: u32,
    pub tac: u16,
    pub pci: u16,
    pub earfcn: u32,
    pub band: u8,
}

impl Default for Signal {
    fn default() -> Self {
        Signal {
            rsrp: -85,
            sinr: 10,
            ecl: 0,
            rsrq: -11,
            cell_id: 0x1A2D001,
            tac: 0x5504,
            pci: 98,
            earfcn: 3569,
            band: 8,
        }
    }
}

/// The bounds `signal <rsrp> <sinr> <ecl>` accepts.
pub const RSRP_RANGE: std::ops::RangeInclusive<i32> = -140..=-44;
pub const SINR_RANGE: std::ops::RangeInclusive<i32> = -20..=30;

impl Signal {
    /// Received signal strength, dBm: RSRP over one 180 kHz NB-IoT carrier (12 subcarriers,
    /// about +11 dB) plus a little noise.
    pub fn rssi(&self) -> i32 {
        self.rsrp + 12
    }

    /// AT+CSQ's `<rssi>,<ber>` (99,99 when not registered).
    pub fn csq(&self, registered: bool) -> String {
        if !registered {
            return "99,99".into();
        }
        let v = ((self.rssi() + 113) / 2).clamp(0, 31);
        format!("{v},99")
    }

    /// AT+CESQ's body: `99,99,255,255,<rsrq>,<rsrp>`.
    pub fn cesq(&self, registered: bool) -> String {
        if !registered {
            return "99,99,255,255,255,255".into();
        }
        let rsrq = ((self.rsrq + 20) * 2).clamp(0, 34);
        let rsrp = (self.rsrp + 141).clamp(0, 97);
        format!("99,99,255,255,{rsrq},{rsrp}")
    }

    /// BC95 AT+NUESTATS lines (tenths of dB(m)).
    pub fn nuestats(&self, registered: bool) -> Vec<String> {
        let (power, total, tx) = if registered {
            (self.rsrp * 10, self.rssi() * 10, 230)
        } else {
            (-32768, -32768, -32768)
        };
        vec![
            format!("Signal power:{power}"),
            format!("Total power:{total}"),
            format!("TX power:{tx}"),
            "TX time:1026".into(),
            "RX time:9122".into(),
            format!("Cell ID:{}", self.cell_id),
            format!("ECL:{}", self.ecl),
            format!("SNR:{}", self.sinr * 10),
            format!("EARFCN:{}", self.earfcn),
            format!("PCI:{}", self.pci),
            format!("RSRQ:{}", self.rsrq * 10),
            "OPERATOR MODE:4".into(),
        ]
    }

    /// BG96 AT+QCSQ's line (SINR as value/5-20 dB, 0..250).
    pub fn qcsq(&self, registered: bool) -> String {
        if !registered {
            return "+QCSQ: \"NOSERVICE\"".into();
        }
        let sinr = ((self.sinr + 20) * 5).clamp(0, 250);
        format!(
            "+QCSQ: \"NBIoT\",{},{},{sinr},{}",
            self.rssi(),
            self.rsrp,
            self.rsrq
        )
    }

    /// BG96 AT+QENG="servingcell" line.
    pub fn qeng(&self, registered: bool) -> String {
        if !registered {
            return "+QENG: \"servingcell\",\"SEARCH\"".into();
        }
        format!(
            "+QENG: \"servingcell\",\"NOCONN\",\"CAT-NB\",\"FDD\",460,00,{:X},{},{},{},3,3,{:X},{},{},{},{},-",
            self.cell_id,
            self.pci,
            self.earfcn,
            self.band,
            self.tac,
            self.rsrp,
            self.rsrq,
            self.rssi(),
            self.sinr
        )
    }

    /// SIM7020 AT+CENG? line.
    pub fn ceng(&self) -> String {
        format!(
            "+CENG: {},0,{},\"{:08X}\",{},{},{},{},{},\"{:04X}\",{},23",
            self.earfcn,
            self.pci,
            self.cell_id,
            self.rsrp,
            self.rsrq,
            self.rssi(),
            self.sinr,
            self.band,
            self.tac,
            self.ecl
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_per_model() {
        let s = Signal::default();
        assert_eq!(s.csq(true), "20,99");
        assert_eq!(s.csq(false), "99,99");
        assert_eq!(s.cesq(true), "99,99,255,255,18,56");
        let n = s.nuestats(true);
        assert_eq!(n[0], "Signal power:-850");
        assert_eq!(n[6], "ECL:0");
        assert_eq!(n[7], "SNR:100");
        assert_eq!(n.len(), 12);
        assert_eq!(s.qcsq(true), "+QCSQ: \"NBIoT\",-73,-85,150,-11");
        assert_eq!(
            s.qeng(true),
            "+QENG: \"servingcell\",\"NOCONN\",\"CAT-NB\",\"FDD\",460,00,1A2D001,98,3569,8,3,3,5504,-85,-11,-73,10,-"
        );
        assert_eq!(
            s.ceng(),
            "+CENG: 3569,0,98,\"01A2D001\",-85,-11,-73,10,8,\"5504\",0,23"
        );
    }
}
