//! The `gasdtu` binary: parses the command line and hands each subcommand to its module under
//! `cli/`. Owns process concerns only (logging set-up, exit codes, the async runtime's shape
//! and the allocator's arenas); no logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gasdtu::cli;

#[derive(Parser)]
#[command(
    name = "gasdtu",
    version,
    about = "Gas-utility DTU daemon: Modbus acquisition, buffering and MQTT forwarding"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', global = true, default_value = gasdtu::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Log level or tracing filter (overrides the config's gateway.log_level).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run(cli::run::RunArgs),
    /// Validate the configuration and report every error (exit 0 valid, 1 invalid, 2 unreadable).
    Check(cli::check::CheckArgs),
    /// Run the whole pipeline on an embedded default: simulated meters, buffer, broker, live view.
    Demo(cli::demo::DemoArgs),
    /// Find which unit ids answer on a bus.
    Scan(cli::scan::ScanArgs),
    /// One-shot read of registers or bits, decoded and printed as a table.
    Read(cli::read::ReadArgs),
    /// Write a coil or register (asks for confirmation unless --yes).
    Write(cli::write::WriteArgs),
    /// Serve simulated Modbus devices over TCP or a serial line.
    Simulate(cli::simulate::SimulateArgs),
    /// Ask the running daemon for devices, buffer and link state.
    Status(cli::status::StatusArgs),
    /// Buffer statistics of the store (works while the daemon runs).
    Queue(cli::queue::QueueArgs),
    /// Export buffered readings as CSV or JSON lines (works while the daemon runs).
    Export(cli::export::ExportArgs),
    /// Turn a captured MQTT payload (JSON or compact CBOR) into JSON.
    Decode(cli::decode::DecodeArgs),
    /// Make an Ed25519 key pair for signing remote commands and config pushes.
    Keygen(cli::keygen::KeygenArgs),
    /// Send a signed remote command to gateways over MQTT and print their results.
    Cmd(cli::cmd::CmdArgs),
    /// Validate a config locally, push it to gateways over MQTT and print their outcome.
    Push(cli::push::PushArgs),
    /// Field tools for the NB-IoT module through the running daemon: info, signal, at.
    Modem(cli::modem::ModemArgs),
}

/// glibc malloc arenas: one. By default every thread that allocates may get its own arena
/// (up to 8 per core), each keeping its own free memory resident; the daemon's few threads (the
/// runtime and the blocking pool's SQLite commits) do not contend enough to need more.
/// Measured on W1 (bench-results/cpu_profile.txt): 0.7 MiB less peak RSS, no CPU cost.
/// Trim threshold 1 MiB (glibc's default is 128 KiB, raised dynamically): the heap is given
/// back to the kernel only above 1 MiB of free top, so a cycle's allocate/free pattern does not
/// shrink and regrow the heap (brk/madvise and page faults every cycle); bench-results/cpu_round3.txt.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_heap() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

/// The static (musl) builds: musl's malloc hands a size class's pages back to the kernel as
/// soon as its last block is freed, so the per-transaction buffers of SQLite (64 KiB statement
/// journals, ephemeral tables) and the per-cycle vectors were mapped, faulted and unmapped every
/// cycle (issue 13: ~180 page faults and ~36 mmap/munmap pairs a second on W1). dlmalloc keeps
/// freed memory for reuse up to a 2 MiB free top, like glibc's malloc with the trim threshold
/// above, and SQLite allocates from it too (`store::sqlite_heap`).
#[cfg(target_env = "musl")]
#[global_allocator]
static HEAP: musl_heap::Heap = musl_heap::Heap::new();

/// dlmalloc behind a spin lock. dlmalloc's own global allocator locks a pthread mutex, and
/// musl's `pthread_mutex_unlock` took ~45 instructions a call (~6 % of the daemon's
/// instructions on W1, bench-results/cpu_round10.txt); std's futex mutex that replaced it still
/// made two locked read-modify-writes per call (the unlock swaps to learn about waiters), ~4 %
/// of the daemon's CPU samples on W1 (bench-results/cpu_round14.txt). Here the lock is one
/// compare-and-swap and the unlock a plain release store. Only two threads allocate (the
/// runtime thread and one SQLite commit on the blocking pool) and a critical section is one
/// dlmalloc call (tens of nanoseconds), so a waiter spins briefly and then yields the CPU
/// (`sched_yield`: no allocation, no lock) until the holder is scheduled again.
#[cfg(target_env = "musl")]
mod musl_heap {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, Ordering};

    pub struct Heap {
        locked: AtomicBool,
        dl: UnsafeCell<dlmalloc::Dlmalloc>,
    }

    // SAFETY: `dl` is only ever reached by the one thread that holds `locked` (see `with`).
    unsafe impl Sync for Heap {}

    /// Releases the lock when dropped, also if dlmalloc's call unwinds (it does not: it
    /// aborts on a corrupted heap).
    struct Held<'a>(&'a AtomicBool);

    impl Drop for Held<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Release);
        }
    }

    /// Spins before the first yield.
    const SPINS: u32 = 100;

    impl Heap {
        pub const fn new() -> Heap {
            Heap {
                locked: AtomicBool::new(false),
                dl: UnsafeCell::new(dlmalloc::Dlmalloc::new()),
            }
        }

        #[inline]
        fn with<R>(&self, f: impl FnOnce(&mut dlmalloc::Dlmalloc) -> R) -> R {
            let mut spins = 0u32;
            while self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                // Test before trying again: the waiter reads, it does not bounce the line.
                while self.locked.load(Ordering::Relaxed) {
                    if spins < SPINS {
                        spins += 1;
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
            let _held = Held(&self.locked);
            // SAFETY: this thread holds the lock until `_held` is dropped.
            f(unsafe { &mut *self.dl.get() })
        }
    }

    // SAFETY: every call forwards the caller's layout to dlmalloc under the lock, which is
    // what dlmalloc's own GlobalAlloc does with its pthread mutex.
    unsafe impl GlobalAlloc for Heap {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.with(|d| unsafe { d.malloc(layout.size(), layout.align()) })
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            self.with(|d| unsafe { d.free(ptr, layout.size(), layout.align()) })
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            self.with(|d| unsafe { d.calloc(layout.size(), layout.align()) })
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            self.with(|d| unsafe { d.realloc(ptr, layout.size(), layout.align(), new_size) })
        }
    }
}

/// `memcpy` of the static x86_64 build: one `rep movsb` (`gasdtu::memcpy`), in place of musl's.
/// Everything in the process that copies memory (Rust's `copy_nonoverlapping`, SQLite, musl's
/// own `memmove` for upward-safe moves) links to this definition; musl's is then not linked.
///
/// # Safety
/// The C `memcpy` contract.
#[cfg(all(target_env = "musl", target_arch = "x86_64"))]
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract is `copy_up`'s.
    unsafe { gasdtu::memcpy::copy_up(dst, src, n) };
    dst
}

/// The second name of musl's x86_64 `memcpy` object: musl's `memmove` jumps to
/// `__memcpy_fwd` for the moves that may go upward. Defined here too, so that the linker has
/// no reason to pull musl's `memcpy` object in (it would define `memcpy` a second time).
///
/// # Safety
/// The C `memcpy` contract, with a destination below an overlapping source allowed.
#[cfg(all(target_env = "musl", target_arch = "x86_64"))]
#[no_mangle]
pub unsafe extern "C" fn __memcpy_fwd(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract is `copy_up`'s.
    unsafe { gasdtu::memcpy::copy_up(dst, src, n) };
    dst
}

#[cfg(target_env = "musl")]
fn tune_heap() {
    // Before any SQLite call: main's first statement. A failure would only mean SQLite keeps
    // musl's malloc (slower, same results), so it is reported and ignored.
    if let Err(e) = gasdtu::store::sqlite_heap::route_to_global_allocator() {
        eprintln!("gasdtu: {e}");
    }
}

#[cfg(not(any(all(target_os = "linux", target_env = "gnu"), target_env = "musl")))]
fn tune_heap() {}

/// The async runtime. The daemon (`run`) gets a current-thread runtime: its work per cycle is
/// small and I/O bound (20 Modbus transactions, one commit on the blocking pool, a few
/// publishes), so a second worker only adds cross-thread wake-ups (futex, context switches)
/// and a thread with its own stack and allocator state; SQLite still runs on the blocking pool,
/// never on the runtime thread. The other verbs (the demo's simulator and broker, the
/// commissioning tools) keep two workers. The daemon's runtime gathers the replies of a burst
/// of requests before it parks (`modbus::gather`).
fn runtime(daemon: bool) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = if daemon {
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.on_thread_park(gasdtu::modbus::gather::on_park);
        b
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    b.enable_all().build()
}

fn main() -> ExitCode {
    tune_heap();
    let cli = Cli::parse();
    let global = cli::Global {
        config: cli.config,
        log_level: cli.log_level,
    };
    let rt = match runtime(matches!(cli.command, Command::Run(_))) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gasdtu: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run(a) => cli::run::run(a, &global).await,
            Command::Check(a) => cli::check::run(a, &global).await,
            Command::Demo(a) => cli::demo::run(a, &global).await,
            Command::Scan(a) => cli::scan::run(a, &global).await,
            Command::Read(a) => cli::read::run(a, &global).await,
            Command::Write(a) => cli::write::run(a, &global).await,
            Command::Simulate(a) => cli::simulate::run(a, &global).await,
            Command::Status(a) => cli::status::run(a, &global).await,
            Command::Queue(a) => cli::queue::run(a, &global).await,
            Command::Export(a) => cli::export::run(a, &global).await,
            Command::Decode(a) => cli::decode::run(a, &global).await,
            Command::Keygen(a) => cli::keygen::run(a, &global).await,
            Command::Cmd(a) => cli::cmd::run(a, &global).await,
            Command::Push(a) => cli::push::run(a, &global).await,
            Command::Modem(a) => cli::modem::run(a, &global).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("gasdtu: {e:#}");
            ExitCode::from(1)
        }
    }
}
