//! Radio signal figures (pure core): the one `Signal` struct every module fills from whichever
//! command it has, and the vendor parsers: BC95's multi-line `AT+NUESTATS`, BG95/BG96's
//! `+QCSQ` and `+QENG: "servingcell"`, SIM7020's `+CENG`. (The 3GPP `+CSQ`/`+CESQ` parsers are
//! in `reply`.) Units follow docs/dev/modem-dialects.md; values a module marks as unknown are
//! `None`. No I/O; never panics on any input (fuzzed).

use super::reply::{body, find_line, Fields, ReplyError};

/// Signal and serving-cell figures; every field optional (modules report different subsets).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signal {
    pub rsrp_dbm: Option<f32>,
    pub rsrq_db: Option<f32>,
    pub sinr_db: Option<f32>,
    pub rssi_dbm: Option<f32>,
    /// Coverage enhancement level 0/1/2.
    pub ecl: Option<u8>,
    pub cell_id: Option<u32>,
    pub tac: Option<u16>,
    pub earfcn: Option<u32>,
    pub pci: Option<u16>,
    pub band: Option<u16>,
    pub tx_power_dbm: Option<f32>,
}

impl Signal {
    /// Fills the fields `self` lacks from `other` (e.g. CSQ's RSSI into a CESQ reading).
    pub fn merge(mut self, other: Signal) -> Signal {
        self.rsrp_dbm = self.rsrp_dbm.or(other.rsrp_dbm);
        self.rsrq_db = self.rsrq_db.or(other.rsrq_db);
        self.sinr_db = self.sinr_db.or(other.sinr_db);
        self.rssi_dbm = self.rssi_dbm.or(other.rssi_dbm);
        self.ecl = self.ecl.or(other.ecl);
        self.cell_id = self.cell_id.or(other.cell_id);
        self.tac = self.tac.or(other.tac);
        self.earfcn = self.earfcn.or(other.earfcn);
        self.pci = self.pci.or(other.pci);
        self.band = self.band.or(other.band);
        self.tx_power_dbm = self.tx_power_dbm.or(other.tx_power_dbm);
        self
    }
}

fn tenths(reply: &'static str, field: &'static str, v: &str) -> Result<f32, ReplyError> {
    v.trim()
        .parse::<i32>()
        .ok()
        .filter(|t| (-100_000..=100_000).contains(t))
        .map(|t| t as f32 / 10.0)
        .ok_or_else(|| ReplyError::bad(reply, field, v))
}

/// BC95 `AT+NUESTATS` information lines ("Signal power:-767", ...): power, SNR and RSRQ in
/// tenths of dB(m), TX power -32768 = not transmitting, Cell ID decimal. Unknown lines are
/// skipped; at least one known line is required.
pub fn nuestats(lines: &[String]) -> Result<Signal, ReplyError> {
    const R: &str = "NUESTATS";
    let mut s = Signal::default();
    let mut known = false;
    for line in lines {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let v = value.trim();
        let bad = |field| ReplyError::bad(R, field, v);
        match key.trim() {
            "Signal power" => s.rsrp_dbm = Some(tenths(R, "Signal power", v)?),
            "Total power" => s.rssi_dbm = Some(tenths(R, "Total power", v)?),
            "TX power" => {
                s.tx_power_dbm = match v {
                    "-32768" => None,
                    _ => Some(tenths(R, "TX power", v)?),
                }
            }
            "Cell ID" => s.cell_id = Some(v.parse().map_err(|_| bad("Cell ID"))?),
            "ECL" => s.ecl = Some(v.parse().map_err(|_| bad("ECL"))?),
            "SNR" => s.sinr_db = Some(tenths(R, "SNR", v)?),
            "EARFCN" => s.earfcn = Some(v.parse().map_err(|_| bad("EARFCN"))?),
            "PCI" => s.pci = Some(v.parse().map_err(|_| bad("PCI"))?),
            "RSRQ" => s.rsrq_db = Some(tenths(R, "RSRQ", v)?),
            _ => continue,
        }
        known = true;
    }
    if !known {
        return Err(ReplyError::NoLine { reply: R });
    }
    Ok(s)
}

/// `+QCSQ: "NBIoT",<rssi>,<rsrp>,<sinr>,<rsrq>` (sinr: value/5-20 dB); `+QCSQ: "NOSERVICE"`
/// gives an empty `Signal`.
pub fn qcsq(line: &str) -> Result<Signal, ReplyError> {
    const R: &str = "QCSQ";
    let f = Fields::split(R, body(R, "+QCSQ:", line)?)?;
    let sysmode = f.str(0, "sysmode")?;
    if sysmode == "NOSERVICE" {
        return Ok(Signal::default());
    }
    let sinr: Option<i32> = f.opt_num(3, "sinr")?;
    Ok(Signal {
        rssi_dbm: f.opt_num::<i16>(1, "rssi")?.map(f32::from),
        rsrp_dbm: f.opt_num::<i16>(2, "rsrp")?.map(f32::from),
        sinr_db: sinr
            .filter(|v| (0..=250).contains(v))
            .map(|v| v as f32 / 5.0 - 20.0),
        rsrq_db: f.opt_num::<i16>(4, "rsrq")?.map(f32::from),
        ..Signal::default()
    })
}

/// `+QENG: "servingcell","<state>","CAT-NB","FDD",<mcc>,<mnc>,<cellid hex>,<pcid>,<earfcn>,
/// <band>,<ul_bw>,<dl_bw>,<tac hex>,<rsrp>,<rsrq>,<rssi>,<sinr>,<srxlev>` (sinr as QCSQ's,
/// value/5-20 dB). A shorter line (state SEARCH / LIMSRV without a cell) gives an empty
/// `Signal`.
pub fn qeng_servingcell(line: &str) -> Result<Signal, ReplyError> {
    const R: &str = "QENG";
    let f = Fields::split(R, body(R, "+QENG:", line)?)?;
    if f.str(0, "type")? != "servingcell" {
        return Err(ReplyError::bad(R, "type", f.str(0, "type")?));
    }
    if f.len() < 17 {
        return Ok(Signal::default());
    }
    let sinr: Option<i32> = f.opt_num(16, "sinr")?;
    Ok(Signal {
        cell_id: f.opt_hex(6, "cellid")?,
        pci: f.opt_num(7, "pcid")?,
        earfcn: f.opt_num(8, "earfcn")?,
        band: f.opt_num(9, "freq_band_ind")?,
        tac: f
            .opt_hex(12, "tac")?
            .map(|t| u16::try_from(t).map_err(|_| ReplyError::bad(R, "tac", &t.to_string())))
            .transpose()?,
        rsrp_dbm: f.opt_num::<i16>(13, "rsrp")?.map(f32::from),
        rsrq_db: f.opt_num::<i16>(14, "rsrq")?.map(f32::from),
        rssi_dbm: f.opt_num::<i16>(15, "rssi")?.map(f32::from),
        sinr_db: sinr
            .filter(|v| (0..=250).contains(v))
            .map(|v| v as f32 / 5.0 - 20.0),
        ..Signal::default()
    })
}

/// The `+QENG: "servingcell"` line among an exchange's lines.
pub fn qeng_lines(lines: &[String]) -> Result<Signal, ReplyError> {
    qeng_servingcell(find_line("QENG", "+QENG:", lines)?)
}

/// SIM7020 `+CENG: <earfcn>,<earfcn_offset>,<pci>,"<cellid hex>",<rsrp>,<rsrq>,<rssi>,<snr>,
/// <band>,"<tac hex>",<ecl>,<tx_pwr>` (dBm / dB as given).
pub fn ceng(line: &str) -> Result<Signal, ReplyError> {
    const R: &str = "CENG";
    let f = Fields::split(R, body(R, "+CENG:", line)?)?;
    let db = |i, field| -> Result<Option<f32>, ReplyError> {
        Ok(f.opt_num::<i16>(i, field)?.map(f32::from))
    };
    Ok(Signal {
        earfcn: Some(f.num(0, "earfcn")?),
        pci: f.opt_num(2, "pci")?,
        cell_id: f.opt_hex(3, "cellid")?,
        rsrp_dbm: db(4, "rsrp")?,
        rsrq_db: db(5, "rsrq")?,
        rssi_dbm: db(6, "rssi")?,
        sinr_db: db(7, "snr")?,
        band: f.opt_num(8, "band")?,
        tac: f
            .opt_hex(9, "tac")?
            .map(|t| u16::try_from(t).map_err(|_| ReplyError::bad(R, "tac", &t.to_string())))
            .transpose()?,
        ecl: f.opt_num(10, "ecl")?,
        tx_power_dbm: db(11, "tx_pwr")?,
    })
}
