//! Register addresses as a field engineer types them for `read`, `write` and `scan`: a 0-based
//! protocol address in decimal or hex (`22`, `0x16`, as the TOML and meter manuals write them),
//! or with `--modicon` a 1-based Modicon register number whose first digit names the table
//! (`40023` / `400023` holding, `30011` / `300011` input, `10001` discrete input, `00001`
//! coil). Pure: it only parses and explains, so every form is table-tested.

use crate::model::Table;

/// An address once resolved: the table and the 0-based protocol address that go on the wire,
/// and, for a Modicon number, a line saying how it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub table: Table,
    pub address: u16,
    pub note: Option<String>,
}

/// A 0-based protocol address: decimal (`22`) or hex (`0x16`, `0X16`), 0..=65535.
pub fn parse_protocol(text: &str) -> Result<u16, String> {
    let t = text.trim();
    let (digits, radix) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (t, 10),
    };
    let bad = || {
        format!(
            "--address {text:?} is not an address: 0-based, decimal (22) or hex (0x16), \
             0 to 65535 (pass --modicon for a register number such as 40023)"
        )
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u32::from_str_radix(digits, radix)
        .ok()
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(bad)
}

/// The table a Modicon number's leading digit names.
fn modicon_table(digit: char) -> Option<Table> {
    match digit {
        '0' => Some(Table::Coil),
        '1' => Some(Table::DiscreteInput),
        '3' => Some(Table::InputRegister),
        '4' => Some(Table::HoldingRegister),
        _ => None,
    }
}

/// The table's name in a sentence ("an input register").
pub fn long_name(table: Table) -> &'static str {
    match table {
        Table::Coil => "a coil",
        Table::DiscreteInput => "a discrete input",
        Table::InputRegister => "an input register",
        Table::HoldingRegister => "a holding register",
    }
}

/// The Modicon spelling of a table's first register ("40001"), for messages.
fn modicon_digit(table: Table) -> char {
    match table {
        Table::Coil => '0',
        Table::DiscreteInput => '1',
        Table::InputRegister => '3',
        Table::HoldingRegister => '4',
    }
}

/// A 1-based Modicon register number: 5 digits (`40001`..`49999`, 9999 per table) or 6 digits
/// (`400001`..`465536`), the first digit naming the table (0 coil, 1 discrete input, 3 input
/// register, 4 holding register).
pub fn parse_modicon(text: &str) -> Result<(Table, u16), String> {
    let t = text.trim();
    let bad = |why: &str| {
        format!(
            "--address {text:?} with --modicon: {why}; a Modicon number has 5 digits (40001-49999) \
             or 6 (400001-465536), the first naming the table: 0 coil, 1 discrete input, 3 input \
             register, 4 holding register"
        )
    };
    if !t.chars().all(|c| c.is_ascii_digit()) || t.is_empty() {
        return Err(bad("not a decimal register number"));
    }
    if t.len() != 5 && t.len() != 6 {
        return Err(bad(&format!("{} digits", t.len())));
    }
    let mut chars = t.chars();
    let first = chars.next().unwrap_or('?');
    let table =
        modicon_table(first).ok_or_else(|| bad(&format!("no table starts with {first}")))?;
    let rest: u32 = chars.as_str().parse().map_err(|_| bad("not a number"))?;
    let max = if t.len() == 5 { 9999 } else { 65536 };
    if rest == 0 || rest > max {
        return Err(bad(&format!(
            "register {rest} of the {table} table is out of range"
        )));
    }
    let address = u16::try_from(rest - 1).map_err(|_| bad("out of range"))?;
    Ok((table, address))
}

/// Resolve `--address TEXT` with the `--modicon` flag and an explicit `--table` (if given);
/// `default_table` applies to a protocol address without `--table`. A Modicon number names
/// its table, so a different explicit `--table` is an error rather than a silent choice.
pub fn resolve(
    text: &str,
    modicon: bool,
    table: Option<Table>,
    default_table: Table,
) -> Result<Resolved, String> {
    if !modicon {
        return Ok(Resolved {
            table: table.unwrap_or(default_table),
            address: parse_protocol(text)?,
            note: None,
        });
    }
    let (named, address) = parse_modicon(text)?;
    if let Some(t) = table.filter(|t| *t != named) {
        return Err(format!(
            "--address {} with --modicon names {}, but --table {t} was given \
             (leave --table out, or use {}{:04})",
            text.trim(),
            long_name(named),
            modicon_digit(t),
            address as u32 + 1
        ));
    }
    Ok(Resolved {
        table: named,
        address,
        note: Some(format!(
            "Modicon {} = {} at address {address} (0x{address:04X})",
            text.trim(),
            long_name(named)
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Table::*;

    #[test]
    fn protocol_addresses_in_decimal_and_hex() {
        // (text, address)
        let ok: &[(&str, u16)] = &[
            ("0", 0),
            ("22", 22),
            ("0x16", 22),
            ("0X16", 22),
            ("0x0016", 22),
            ("0xffff", 65535),
            ("65535", 65535),
            (" 7 ", 7),
            ("40001", 40001),
        ];
        for (text, want) in ok {
            assert_eq!(parse_protocol(text), Ok(*want), "{text}");
        }
        for bad in [
            "", "0x", "65536", "0x10000", "16h", "-1", "1.5", "0b101", "x16", "1_000",
        ] {
            let e = parse_protocol(bad).unwrap_err();
            assert!(e.contains("decimal (22) or hex (0x16)"), "{bad}: {e}");
        }
    }

    #[test]
    fn modicon_numbers_name_table_and_offset() {
        // (text, table, address)
        let ok: &[(&str, Table, u16)] = &[
            ("40001", HoldingRegister, 0),
            ("40023", HoldingRegister, 22),
            ("49999", HoldingRegister, 9998),
            ("400001", HoldingRegister, 0),
            ("400023", HoldingRegister, 22),
            ("465536", HoldingRegister, 65535),
            ("30011", InputRegister, 10),
            ("300011", InputRegister, 10),
            ("10001", DiscreteInput, 0),
            ("00001", Coil, 0),
            ("000017", Coil, 16),
        ];
        for (text, table, address) in ok {
            assert_eq!(parse_modicon(text), Ok((*table, *address)), "{text}");
        }
        // (text, fragment of the error)
        let bad: &[(&str, &str)] = &[
            ("40000", "out of range"),
            ("400000", "out of range"),
            ("465537", "out of range"),
            ("23", "2 digits"),
            ("4000001", "7 digits"),
            ("20001", "no table starts with 2"),
            ("0x16", "not a decimal register number"),
            ("", "not a decimal register number"),
        ];
        for (text, want) in bad {
            let e = parse_modicon(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn resolve_with_and_without_the_flag() {
        let r = resolve("0x16", false, None, HoldingRegister).unwrap();
        assert_eq!((r.table, r.address, r.note), (HoldingRegister, 22, None));
        let r = resolve("10", false, Some(InputRegister), HoldingRegister).unwrap();
        assert_eq!((r.table, r.address), (InputRegister, 10));
        let r = resolve("30011", true, None, HoldingRegister).unwrap();
        assert_eq!((r.table, r.address), (InputRegister, 10));
        assert_eq!(
            r.note.as_deref(),
            Some("Modicon 30011 = an input register at address 10 (0x000A)")
        );
        // An explicit --table that agrees is fine; one that disagrees is refused.
        let r = resolve("40023", true, Some(HoldingRegister), Coil).unwrap();
        assert_eq!((r.table, r.address), (HoldingRegister, 22));
        let e = resolve("30011", true, Some(HoldingRegister), Coil).unwrap_err();
        assert!(
            e.contains("names an input register, but --table holding"),
            "{e}"
        );
        assert!(e.contains("use 40011"), "{e}");
    }
}
