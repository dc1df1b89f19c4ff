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

/// dlmalloc behind std's mutex. dlmalloc's own global allocator locks a pthread mutex, and
/// musl's `pthread_mutex_unlock` took ~45 instructions a call: with ~40 allocations a reading
/// the lock alone was ~6 % of the daemon's instructions on W1 (callgrind) and ~5 % of its CPU
/// samples (perf), bench-results/cpu_round10.txt. std's mutex is a futex word: one atomic
/// operation each way, no system call unless two threads meet (the runtime thread and one
/// SQLite commit on the blocking pool, rarely at the same instant). It never allocates, so it
/// can guard the allocator.
#[cfg(target_env = "musl")]
mod musl_heap {
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::{Mutex, MutexGuard};

    pub struct Heap(Mutex<Dl>);

    struct Dl(dlmalloc::Dlmalloc);

    // SAFETY: the allocator state holds raw pointers into memory it mapped itself; it is only
    // ever reached through the mutex, by one thread at a time.
    unsafe impl Send for Dl {}

    impl Heap {
        pub const fn new() -> Heap {
            Heap(Mutex::new(Dl(dlmalloc::Dlmalloc::new())))
        }

        fn lock(&self) -> MutexGuard<'_, Dl> {
            // A panic while allocating leaves dlmalloc's state as consistent as it was before
            // the call (it does not unwind through a half-done split): keep allocating.
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    // SAFETY: every call forwards the caller's layout to dlmalloc under the lock, which is
    // what dlmalloc's own GlobalAlloc does with its pthread mutex.
    unsafe impl GlobalAlloc for Heap {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { self.lock().0.malloc(layout.size(), layout.align()) }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { self.lock().0.free(ptr, layout.size(), layout.align()) }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            unsafe { self.lock().0.calloc(layout.size(), layout.align()) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            unsafe {
                self.lock()
                    .0
                    .realloc(ptr, layout.size(), layout.align(), new_size)
            }
        }
    }
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
/// commissioning tools) keep two workers.
fn runtime(daemon: bool) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = if daemon {
        tokio::runtime::Builder::new_current_thread()
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
