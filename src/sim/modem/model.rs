//! What differs between the simulated module models (Quectel BC95, Quectel BC66, Quectel BG96,
//! SIMCom SIM7020, SIMCom SIM7080), as data: identification texts, boot text, echo default, the BC95's missing space
//! after "+XXX:", socket limits. Pure; the texts follow the AT dialect sheet
//! (docs of issue 11), not any one firmware.

use std::fmt;
use std::str::FromStr;

/// A simulated NB-IoT module model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Bc95,
    Bc66,
    Bg96,
    Sim7020,
    Sim7080,
}

impl FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Model, String> {
        match s.to_ascii_lowercase().as_str() {
            "bc95" | "bc28" => Ok(Model::Bc95),
            "bc66" | "bc660" | "bc660k" => Ok(Model::Bc66),
            "bg96" | "bg95" => Ok(Model::Bg96),
            "sim7020" | "sim7020e" => Ok(Model::Sim7020),
            "sim7080" | "sim7080g" => Ok(Model::Sim7080),
            other => Err(format!(
                "unknown modem model `{other}` (expected bc95, bc66, bg96, sim7020 or sim7080)"
            )),
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::Bc95 => "bc95",
            Model::Bc66 => "bc66",
            Model::Bg96 => "bg96",
            Model::Sim7020 => "sim7020",
            Model::Sim7080 => "sim7080",
        })
    }
}

/// Why the module restarted, for the BC95's boot text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootCause {
    /// Power applied (power-on or power cycle).
    PowerOn,
    /// The model's reset command (AT+NRB, AT+QRST=1, AT+CFUN=1,1, AT+CRESET) or a reboot fault.
    Command,
}

impl Model {
    /// Echo after power-on: off on the BC95, on elsewhere.
    pub fn echo_default(self) -> bool {
        !matches!(self, Model::Bc95)
    }

    /// `+NAME:` followed by the model's separator: none on the BC95, one space elsewhere.
    pub fn info(self, name: &str, body: &str) -> String {
        match self {
            Model::Bc95 => format!("{name}:{body}"),
            _ => format!("{name}: {body}"),
        }
    }

    /// The final result for CME error `n` in the model's spelling.
    pub fn cme(self, n: u16) -> String {
        self.info("+CME ERROR", &n.to_string())
    }

    /// ATI's information lines.
    pub fn ati(self) -> &'static [&'static str] {
        match self {
            Model::Bc95 => &["Quectel", "BC95-B8", "Revision:BC95HBR01A01"],
            Model::Bc66 => &["Quectel_Ltd", "Quectel_BC66", "Revision: BC66NBR01A10"],
            Model::Bg96 => &["Quectel", "BG96", "Revision: BG96MAR02A07M1G"],
            Model::Sim7020 => &["SIM7020E R1752"],
            Model::Sim7080 => &["SIM7080 R1951.03"],
        }
    }

    /// AT+CGMM's line.
    pub fn cgmm(self) -> &'static str {
        match self {
            Model::Bc95 => "BC95-B8",
            Model::Bc66 => "Quectel_BC66",
            Model::Bg96 => "BG96",
            Model::Sim7020 => "SIMCOM_SIM7020E",
            Model::Sim7080 => "SIMCOM_SIM7080G",
        }
    }

    /// AT+CGMR's line.
    pub fn cgmr(self) -> &'static str {
        match self {
            Model::Bc95 => "Revision:BC95HBR01A01",
            Model::Bc66 => "Revision: BC66NBR01A10",
            Model::Bg96 => "Revision: BG96MAR02A07M1G",
            Model::Sim7020 => "Revision:1752B05SIM7020E",
            Model::Sim7080 => "Revision:1951B08SIM7080",
        }
    }

    /// The lines a module prints when it (re)starts, in order. The BC95 ends its boot text
    /// with "OK"; AT+NRB's "REBOOTING" is printed by the command itself, not here.
    pub fn boot_text(self, cause: BootCause) -> Vec<&'static str> {
        match self {
            Model::Bc95 => vec![
                "Boot: Unsigned",
                "Security B.. Verified",
                "Protocol A.. Verified",
                "Apps A...... Verified",
                match cause {
                    BootCause::PowerOn => "REBOOT_CAUSE_SECURITY_RESET_PIN",
                    BootCause::Command => "REBOOT_CAUSE_APPLICATION_AT",
                },
                "Neul ",
                "OK",
            ],
            Model::Bg96 => vec![
                "RDY",
                "+CFUN: 1",
                "+CPIN: READY",
                "+QUSIM: 1",
                "+QIND: SMS DONE",
                "APP RDY",
            ],
            // BC66: no end-of-boot marker gasdtu relies on (the engine polls AT).
            Model::Bc66 => vec!["RDY", "+CPIN: READY"],
            Model::Sim7020 | Model::Sim7080 => vec!["RDY", "+CFUN: 1", "+CPIN: READY"],
        }
    }

    /// How many sockets the module can hold open (ids 0..this).
    pub fn max_sockets(self) -> usize {
        match self {
            Model::Bc95 => 7,
            Model::Bc66 => 5,
            Model::Bg96 => 12,
            Model::Sim7020 => 5,
            Model::Sim7080 => 13,
        }
    }

    /// The largest payload one send command accepts, in bytes.
    pub fn max_send(self) -> usize {
        match self {
            Model::Bc95 | Model::Bc66 | Model::Sim7020 => 512,
            Model::Bg96 | Model::Sim7080 => 1460,
        }
    }

    /// The largest payload one received-data URC or read reply carries, in bytes.
    pub fn max_chunk(self) -> usize {
        match self {
            Model::Bc95 | Model::Bc66 | Model::Sim7020 => 512,
            Model::Bg96 => 1500,
            Model::Sim7080 => 1460,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_separators() {
        assert_eq!("BG96".parse::<Model>(), Ok(Model::Bg96));
        assert_eq!("bc28".parse::<Model>(), Ok(Model::Bc95));
        assert!("sim800".parse::<Model>().is_err());
        assert_eq!("BC660K".parse::<Model>(), Ok(Model::Bc66));
        assert_eq!("sim7080g".parse::<Model>(), Ok(Model::Sim7080));
        for m in [Model::Bc66, Model::Sim7080] {
            assert_eq!(m.to_string().parse::<Model>(), Ok(m));
            let detected = crate::modem::profile::detect(m.ati()).id;
            assert_eq!(detected, m.to_string(), "ATI of {m} detects its profile");
        }
        assert_eq!(Model::Bc95.info("+CEREG", "0,1"), "+CEREG:0,1");
        assert_eq!(Model::Bg96.info("+CEREG", "0,1"), "+CEREG: 0,1");
        assert_eq!(Model::Bc95.cme(4), "+CME ERROR:4");
        assert_eq!(Model::Sim7020.cme(50), "+CME ERROR: 50");
        assert!(!Model::Bc95.echo_default() && Model::Bg96.echo_default());
        assert_eq!(
            Model::Bc95.boot_text(BootCause::Command)[4],
            "REBOOT_CAUSE_APPLICATION_AT"
        );
    }
}
