//! The simulator's AT command-line parser: one received line (without its terminator) into a
//! command name and its form (execute, read `?`, test `=?`, set `=args`), and the argument
//! helpers the handlers use (numbers in a range, quoted strings, bit strings, hex). Pure.

/// The form of an extended command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `AT+X`
    Exec,
    /// `AT+X?`
    Read,
    /// `AT+X=?`
    Test,
    /// `AT+X=a,b,...`
    Set(Vec<Arg>),
}

/// One argument of a set command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub text: String,
    pub quoted: bool,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// Upper-case name without "AT": "" for a bare `AT`, "E0", "I", "+CEREG", "+QIOPEN".
    pub name: String,
    pub op: Op,
}

/// Why a line is not a command the simulator understands the shape of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// Does not start with "AT".
    NotAt,
    /// An unterminated quote or junk in the arguments.
    Args,
}

/// Parse one line: `AT`, `ATE0`, `ATI`, `AT+NAME`, `AT+NAME?`, `AT+NAME=?`, `AT+NAME=args`.
pub fn parse(line: &str) -> Result<Cmd, Malformed> {
    let line = line.trim();
    let head = line.get(..2).ok_or(Malformed::NotAt)?;
    if !head.eq_ignore_ascii_case("AT") {
        return Err(Malformed::NotAt);
    }
    let rest = &line[2..];
    if !rest.starts_with('+') {
        // Basic commands: no arguments beyond the digits in the name.
        return Ok(Cmd {
            name: rest.to_ascii_uppercase(),
            op: Op::Exec,
        });
    }
    let end = rest.find(['=', '?']).unwrap_or(rest.len());
    let name = rest[..end].to_ascii_uppercase();
    let tail = &rest[end..];
    let op = if tail.is_empty() {
        Op::Exec
    } else if tail == "?" {
        Op::Read
    } else if tail == "=?" {
        Op::Test
    } else if let Some(args) = tail.strip_prefix('=') {
        Op::Set(split_args(args)?)
    } else {
        return Err(Malformed::Args);
    };
    Ok(Cmd { name, op })
}

/// Split `a,"b,c",,d` into arguments; an empty field is an empty unquoted argument.
pub fn split_args(s: &str) -> Result<Vec<Arg>, Malformed> {
    let mut args = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut text = String::new();
        let mut quoted = false;
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some(c) => text.push(c),
                    None => return Err(Malformed::Args),
                }
            }
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            match chars.next() {
                None => {
                    args.push(Arg { text, quoted });
                    return Ok(args);
                }
                Some(',') => {}
                Some(_) => return Err(Malformed::Args),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        args.push(Arg {
                            text: text.trim().to_string(),
                            quoted,
                        });
                        return Ok(args);
                    }
                    Some(',') => break,
                    Some('"') => return Err(Malformed::Args),
                    Some(c) => text.push(c),
                }
            }
        }
        args.push(Arg {
            text: text.trim().to_string(),
            quoted,
        });
    }
}

/// A bad argument: the handlers answer it with the model's CME error 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadArg;

/// The `i`-th argument as a number in `lo..=hi`.
pub fn num(args: &[Arg], i: usize, lo: i64, hi: i64) -> Result<i64, BadArg> {
    let a = args.get(i).ok_or(BadArg)?;
    let v: i64 = a.text.parse().map_err(|_| BadArg)?;
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(BadArg)
    }
}

/// The `i`-th argument as text (quoted or not), present and non-empty.
pub fn text(args: &[Arg], i: usize) -> Result<&str, BadArg> {
    match args.get(i) {
        Some(a) if !a.text.is_empty() => Ok(&a.text),
        _ => Err(BadArg),
    }
}

/// The `i`-th argument as a string of exactly `len` binary digits.
pub fn bits(args: &[Arg], i: usize, len: usize) -> Result<String, BadArg> {
    let t = text(args, i)?;
    if t.len() == len && t.bytes().all(|b| b == b'0' || b == b'1') {
        Ok(t.to_string())
    } else {
        Err(BadArg)
    }
}

/// Upper-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Bytes of an even-length hex string (either case).
pub fn hex_decode(s: &str) -> Result<Vec<u8>, BadArg> {
    if s.len() % 2 != 0 {
        return Err(BadArg);
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(BadArg),
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str, quoted: bool) -> Arg {
        Arg {
            text: text.into(),
            quoted,
        }
    }

    #[test]
    fn parses_command_forms() {
        let cases: Vec<(&str, &str, Op)> = vec![
            ("AT", "", Op::Exec),
            ("at", "", Op::Exec),
            ("ATE0", "E0", Op::Exec),
            ("ati", "I", Op::Exec),
            ("AT+CEREG?", "+CEREG", Op::Read),
            ("AT+CEREG=?", "+CEREG", Op::Test),
            ("AT+NUESTATS", "+NUESTATS", Op::Exec),
            ("AT+cereg=2", "+CEREG", Op::Set(vec![a("2", false)])),
            (
                "AT+QIOPEN=1,0,\"TCP\",\"127.0.0.1\",8883,0,1",
                "+QIOPEN",
                Op::Set(vec![
                    a("1", false),
                    a("0", false),
                    a("TCP", true),
                    a("127.0.0.1", true),
                    a("8883", false),
                    a("0", false),
                    a("1", false),
                ]),
            ),
            (
                "AT+CPSMS=1,,,\"00100001\",\"00000011\"",
                "+CPSMS",
                Op::Set(vec![
                    a("1", false),
                    a("", false),
                    a("", false),
                    a("00100001", true),
                    a("00000011", true),
                ]),
            ),
            ("AT+X=\"a,b\"", "+X", Op::Set(vec![a("a,b", true)])),
        ];
        for (line, name, op) in cases {
            assert_eq!(
                parse(line),
                Ok(Cmd {
                    name: name.into(),
                    op
                }),
                "{line}"
            );
        }
        for bad in [
            "",
            "A",
            "XYZ",
            "AT+X=\"open",
            "AT+X=\"a\"b",
            "AT+X?=",
            "AT+X=a\"b",
        ] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn argument_helpers() {
        let args = split_args("5,\"0101\",abc,").unwrap();
        assert_eq!(num(&args, 0, 0, 5), Ok(5));
        assert_eq!(num(&args, 0, 0, 4), Err(BadArg));
        assert_eq!(num(&args, 2, 0, 4), Err(BadArg));
        assert_eq!(num(&args, 9, 0, 4), Err(BadArg));
        assert_eq!(bits(&args, 1, 4), Ok("0101".into()));
        assert_eq!(bits(&args, 1, 8), Err(BadArg));
        assert_eq!(text(&args, 3), Err(BadArg));
        assert_eq!(hex_encode(&[0, 0xAB, 0x7f]), "00AB7F");
        assert_eq!(hex_decode("00ab7F"), Ok(vec![0, 0xAB, 0x7f]));
        assert!(hex_decode("0").is_err() && hex_decode("zz").is_err());
    }
}
