//! Power-cycling the modem (the reset ladder's top rung), through the Linux GPIO character
//! device (uAPI v2: request the line as output driven inactive = power off, hold `off_for`,
//! drive it active = power on, release) or through the configured command (a program that
//! does it; exit status 0 = done). Raw `ioctl`s through `libc` (no GPIO crate in the tree);
//! the kernel applies `active_low`, so "active" always means "module powered". Errors name the
//! chip and line, or the command. This is an I/O edge: it never decides *when* to cycle.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::config::{PowerConfig, PowerSwitch};

/// Longest a power-cycle command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a power cycle failed.
#[derive(Debug, Error)]
pub enum PowerError {
    #[error("GPIO {chip} line {line}: {what}: {source}")]
    Gpio {
        chip: PathBuf,
        line: u32,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("power command {program}: cannot start: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("power command {program}: {status}")]
    Failed { program: String, status: String },
    #[error("power command {program}: still running after {COMMAND_TIMEOUT:?} (killed)")]
    Timeout { program: String },
    #[error("power command: empty")]
    Empty,
}

/// Carry out one power cycle as `cfg` says.
pub async fn power_cycle(cfg: &PowerConfig) -> Result<(), PowerError> {
    match &cfg.switch {
        PowerSwitch::Gpio {
            chip,
            line,
            active_low,
        } => gpio_cycle(chip, *line, *active_low, cfg.off_for).await,
        PowerSwitch::Command(words) => run_command(words).await,
    }
}

async fn run_command(words: &[String]) -> Result<(), PowerError> {
    let (program, args) = words.split_first().ok_or(PowerError::Empty)?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| PowerError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stderr = child.stderr.take();
    let status = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(PowerError::Spawn {
                program: program.clone(),
                source,
            })
        }
        Err(_) => {
            let _ = child.kill().await;
            return Err(PowerError::Timeout {
                program: program.clone(),
            });
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    if let Some(mut e) = stderr {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), e.read(&mut buf)).await
        {
            text = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        }
    }
    Err(PowerError::Failed {
        program: program.clone(),
        status: if text.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {text}")
        },
    })
}

// --- GPIO character device, uAPI v2 (include/uapi/linux/gpio.h) ---

const GPIO_MAX_NAME_SIZE: usize = 32;
const GPIO_V2_LINES_MAX: usize = 64;
const GPIO_V2_LINE_NUM_ATTRS_MAX: usize = 10;
const GPIO_V2_LINE_FLAG_ACTIVE_LOW: u64 = 1 << 1;
const GPIO_V2_LINE_FLAG_OUTPUT: u64 = 1 << 3;
const GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
struct LineAttribute {
    id: u32,
    padding: u32,
    /// flags / values / debounce_period_us (a union of 8 bytes).
    value: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct LineConfigAttribute {
    attr: LineAttribute,
    mask: u64,
}

#[repr(C)]
struct LineConfig {
    flags: u64,
    num_attrs: u32,
    padding: [u32; 5],
    attrs: [LineConfigAttribute; GPIO_V2_LINE_NUM_ATTRS_MAX],
}

#[repr(C)]
struct LineRequest {
    offsets: [u32; GPIO_V2_LINES_MAX],
    consumer: [u8; GPIO_MAX_NAME_SIZE],
    config: LineConfig,
    num_lines: u32,
    event_buffer_size: u32,
    padding: [u32; 5],
    fd: i32,
}

#[repr(C)]
struct LineValues {
    bits: u64,
    mask: u64,
}

const _: () = assert!(std::mem::size_of::<LineRequest>() == 592);
const _: () = assert!(std::mem::size_of::<LineValues>() == 16);

/// `_IOWR(0xB4, nr, size)`.
const fn iowr(nr: u64, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | (0xB4 << 8) | nr
}
const GPIO_V2_GET_LINE_IOCTL: u64 = iowr(0x07, std::mem::size_of::<LineRequest>());
const GPIO_V2_LINE_SET_VALUES_IOCTL: u64 = iowr(0x0F, std::mem::size_of::<LineValues>());

async fn gpio_cycle(
    chip: &Path,
    line: u32,
    active_low: bool,
    off_for: Duration,
) -> Result<(), PowerError> {
    let err = |what: &'static str| {
        let chip = chip.to_path_buf();
        move |source| PowerError::Gpio {
            chip,
            line,
            what,
            source,
        }
    };
    let (c, l) = (chip.to_path_buf(), line);
    // Power off: request the line as output driven inactive.
    let handle = tokio::task::spawn_blocking(move || request_output(&c, l, active_low))
        .await
        .map_err(|e| err("request task")(std::io::Error::other(e.to_string())))?
        .map_err(err("request the line as output"))?;
    tokio::time::sleep(off_for).await;
    // Power on, then release the line (it keeps its value on most drivers; the kernel says
    // it "may revert to its default state", so boards should default to powered).
    tokio::task::spawn_blocking(move || set_value(&handle, true))
        .await
        .map_err(|e| err("set task")(std::io::Error::other(e.to_string())))?
        .map_err(err("drive the line active"))?;
    Ok(())
}

fn request_output(chip: &Path, line: u32, active_low: bool) -> std::io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(chip)?;
    let empty_attr = LineConfigAttribute {
        attr: LineAttribute {
            id: 0,
            padding: 0,
            value: 0,
        },
        mask: 0,
    };
    let mut attrs = [empty_attr; GPIO_V2_LINE_NUM_ATTRS_MAX];
    // Initial value: inactive (logical 0) on line index 0 = power off.
    attrs[0] = LineConfigAttribute {
        attr: LineAttribute {
            id: GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES,
            padding: 0,
            value: 0,
        },
        mask: 1,
    };
    let mut consumer = [0u8; GPIO_MAX_NAME_SIZE];
    consumer[..b"gasdtu-modem".len()].copy_from_slice(b"gasdtu-modem");
    let mut offsets = [0u32; GPIO_V2_LINES_MAX];
    offsets[0] = line;
    let mut req = LineRequest {
        offsets,
        consumer,
        config: LineConfig {
            flags: GPIO_V2_LINE_FLAG_OUTPUT
                | if active_low {
                    GPIO_V2_LINE_FLAG_ACTIVE_LOW
                } else {
                    0
                },
            num_attrs: 1,
            padding: [0; 5],
            attrs,
        },
        num_lines: 1,
        event_buffer_size: 0,
        padding: [0; 5],
        fd: -1,
    };
    // SAFETY: `req` is a properly laid out `struct gpio_v2_line_request` (size checked at
    // compile time) that lives across the call; the kernel writes only `fd` into it.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            GPIO_V2_GET_LINE_IOCTL as _,
            &mut req as *mut LineRequest,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if req.fd < 0 {
        return Err(std::io::Error::other(
            "the kernel returned no line descriptor",
        ));
    }
    // SAFETY: the kernel just handed us this new descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(req.fd) })
}

fn set_value(fd: &OwnedFd, active: bool) -> std::io::Result<()> {
    let mut v = LineValues {
        bits: u64::from(active),
        mask: 1,
    };
    // SAFETY: `v` is a `struct gpio_v2_line_values` (size checked) living across the call.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            GPIO_V2_LINE_SET_VALUES_IOCTL as _,
            &mut v as *mut LineValues,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        // From <linux/gpio.h> on x86_64/aarch64: _IOWR(0xB4, 0x07, 592), _IOWR(0xB4, 0x0F, 16).
        assert_eq!(GPIO_V2_GET_LINE_IOCTL, 0xC250_B407);
        assert_eq!(GPIO_V2_LINE_SET_VALUES_IOCTL, 0xC010_B40F);
    }

    #[tokio::test]
    async fn errors_name_the_chip_line_or_command() {
        let cfg = PowerConfig {
            switch: PowerSwitch::Gpio {
                chip: "/nonexistent/gpiochip9".into(),
                line: 4,
                active_low: false,
            },
            off_for: Duration::from_millis(100),
            max_power_cycles_per_day: 1,
        };
        let e = power_cycle(&cfg)
            .await
            .expect_err("no such chip")
            .to_string();
        assert!(e.contains("/nonexistent/gpiochip9 line 4"), "{e}");
        let cmd = |w: &[&str]| PowerConfig {
            switch: PowerSwitch::Command(w.iter().map(|s| s.to_string()).collect()),
            ..cfg.clone()
        };
        let e = power_cycle(&cmd(&["/nonexistent/power"]))
            .await
            .expect_err("no program")
            .to_string();
        assert!(e.contains("/nonexistent/power"), "{e}");
        let e = power_cycle(&cmd(&["/bin/sh", "-c", "echo relay stuck >&2; exit 3"]))
            .await
            .expect_err("exit 3")
            .to_string();
        assert!(e.contains("/bin/sh") && e.contains("relay stuck"), "{e}");
        power_cycle(&cmd(&["/bin/true"])).await.expect("true works");
    }
}
