//! The console and the `log` backend: every line carries the time since parkboot
//! started, from the TSC, so a boot log is also a profile.
//!
//! Each line goes to the serial port and, once the coreboot table names one, to
//! coreboot's CBMEM console (`cbmem -c`), with the same text. Lines logged before the
//! table is read are kept in a small buffer and replayed into the CBMEM console when it
//! is attached, so parkboot's log there starts with its first line, right after
//! coreboot's.

use super::cpu;
use super::serial::Uart;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use parkboot::platform::cbmem_console::{
    check_header, check_placement, CbmemConsole, CbmemConsoleError, CbmemConsoleHeader, EarlyLog,
};
use parkboot::platform::{PhysicalMemory, Platform, SerialAccess, SerialConsole};
use parkboot::wire::WireField;
use spin::{Mutex, MutexGuard};

/// Bytes of log kept for the CBMEM console until the coreboot table is read (the
/// first lines take well under 1 KiB).
const EARLY_LOG_BYTES: usize = 4096;
/// How long the panic and exception paths wait for the console lock before taking it:
/// only the boot processor logs, so a held lock there means the fault interrupted a
/// line being written, and waiting for it would never end.
const PANIC_LOCK_SPINS: u32 = 1_000_000;

struct Sinks {
    uart: Uart,
    cbmem: Option<CbmemConsole<'static>>,
    early: EarlyLog<EARLY_LOG_BYTES>,
    /// Whether lines still go to `early` (until the CBMEM console is attached or known
    /// not to exist).
    buffering: bool,
}

static CONSOLE: Mutex<Sinks> = Mutex::new(Sinks {
    uart: Uart::new(SerialConsole::COM1),
    cbmem: None,
    early: EarlyLog::new(),
    buffering: true,
});

/// Set while bytes are being written to the CBMEM console: a fault that arrives then
/// came from that memory, so the panic path stops writing there.
static CBMEM_WRITING: AtomicBool = AtomicBool::new(false);

/// TSC at parkboot's entry: timestamps count from here.
static START_TSC: AtomicU64 = AtomicU64::new(0);

/// Said before the report when the panic or exception path took the console over from
/// the code it interrupted: that code's line ends unfinished above it.
const TAKEN_OVER: &str = "\nparkboot: console lock taken over from the interrupted code\n";

fn lock() -> MutexGuard<'static, Sinks> {
    CONSOLE.lock()
}

/// The lock for the panic and exception paths: taken even if a line was being written
/// when the fault came, so they never deadlock on it.
fn lock_for_panic() -> MutexGuard<'static, Sinks> {
    for _ in 0..PANIC_LOCK_SPINS {
        if let Some(guard) = CONSOLE.try_lock() {
            return guard;
        }
        core::hint::spin_loop();
    }
    // SAFETY: only the boot processor logs, so the holder is the code this panic or
    // exception interrupted. It never resumes (both paths end in `finish::stop`, which
    // does not return), so its guard is never used or dropped again.
    unsafe { CONSOLE.force_unlock() };
    let mut guard = CONSOLE.lock();
    if CBMEM_WRITING.swap(false, Ordering::Relaxed) {
        // The fault came from writing the CBMEM console: leave it alone from now.
        guard.cbmem = None;
    }
    let _ = guard.write_str(TAKEN_OVER);
    guard
}

impl Write for Sinks {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.uart.write_byte(b'\r');
            }
            self.uart.write_byte(byte);
        }
        if let Some(cbmem) = self.cbmem.as_mut() {
            CBMEM_WRITING.store(true, Ordering::Relaxed);
            cbmem.write(s.as_bytes());
            CBMEM_WRITING.store(false, Ordering::Relaxed);
        } else if self.buffering {
            self.early.push(s.as_bytes());
        }
        Ok(())
    }
}

/// Starts the console on `config` (COM1 until the platform says otherwise).
pub fn init(config: SerialConsole) {
    START_TSC
        .compare_exchange(0, cpu::rdtsc(), Ordering::Relaxed, Ordering::Relaxed)
        .ok();
    let mut guard = lock();
    let uart = &mut guard.uart;
    *uart = Uart::new(config);
    let answers = uart.init();
    drop(guard);
    let first = log::set_logger(&LOGGER).is_ok();
    log::set_max_level(log::LevelFilter::Info);
    if answers {
        SILENT_UART.store(false, Ordering::Relaxed);
    } else if first {
        // Said once the platform is known, so that parkboot's log starts with its
        // own first line.
        SILENT_UART.store(true, Ordering::Relaxed);
    } else {
        report_silent_uart(config);
    }
}

/// Set when no UART answered at parkboot's start; reported by `attach_cbmem_console`.
static SILENT_UART: AtomicBool = AtomicBool::new(false);

fn report_silent_uart(config: SerialConsole) {
    match config.access {
        SerialAccess::Io { base } => log::info!(
            "console: no UART answers at I/O {base:#x} (line status reads 0xff): serial output off"
        ),
        SerialAccess::Mmio { base, .. } => log::info!(
            "console: no UART answers at MMIO {base:#x} (line status reads 0xff): serial output off"
        ),
    }
}

pub fn current() -> SerialConsole {
    lock().uart.config()
}

/// Whether a UART answered where the console was started.
pub fn serial_present() -> bool {
    lock().uart.is_present()
}

/// Reads one byte of console input if there is one (the NMI test's go-ahead).
pub fn try_read_byte() -> Option<u8> {
    lock().uart.try_read_byte()
}

/// Writes without a timestamp, for the panic and exception paths.
pub fn write_raw(args: fmt::Arguments) {
    let mut guard = lock_for_panic();
    let _ = guard.write_fmt(args);
}

/// From now on every line also goes to the CBMEM console the coreboot table named,
/// starting with the lines logged so far. Without one (or with one that fails its
/// checks, which is logged) the early lines are dropped and only the serial port is
/// written. Also says here if no UART answered at parkboot's start.
pub fn attach_cbmem_console(platform: &Platform, memory: &impl PhysicalMemory) {
    attach(platform, memory);
    if SILENT_UART.swap(false, Ordering::Relaxed) {
        report_silent_uart(current());
    }
}

fn attach(platform: &Platform, memory: &impl PhysicalMemory) {
    let Some(addr) = platform.cbmem_console else {
        let mut guard = lock();
        guard.buffering = false;
        guard.early = EarlyLog::new();
        return;
    };
    match open_cbmem_console(platform, memory, addr) {
        Ok(console) => {
            let (size, cursor, wrapped) =
                (console.size(), console.position(), console.overflowed());
            let mut guard = lock();
            let sinks = &mut *guard;
            let console = sinks.cbmem.insert(console);
            sinks.early.replay_into(console);
            sinks.buffering = false;
            drop(guard);
            log::info!(
                "CBMEM console at {:#x}, {} bytes, cursor {:#x}{} before parkboot's lines",
                addr,
                size,
                cursor,
                if wrapped { " (wrapped)" } else { "" }
            );
        }
        Err(e) => {
            let mut guard = lock();
            guard.buffering = false;
            guard.early = EarlyLog::new();
            drop(guard);
            log::warn!("{e}: parkboot's log goes to the serial port only");
        }
    }
}

fn open_cbmem_console(
    platform: &Platform,
    memory: &impl PhysicalMemory,
    addr: u64,
) -> Result<CbmemConsole<'static>, CbmemConsoleError> {
    let unreadable = CbmemConsoleError::NotFirmwareMemory {
        addr,
        end: addr.saturating_add(CbmemConsoleHeader::SIZE as u64),
    };
    let header = memory
        .bytes(addr, CbmemConsoleHeader::SIZE)
        .and_then(CbmemConsoleHeader::read_from)
        .ok_or(unreadable)?;
    let total = check_header(addr, header)?;
    check_placement(&platform.memory, addr, total)?;
    let region = memory.bytes(addr, total).ok_or(unreadable)?;
    // SAFETY: `total` identity-mapped bytes of firmware-owned memory (checked above)
    // that parkboot never allocates; only this console writes them, under the lock.
    let region = unsafe { core::slice::from_raw_parts_mut(region.as_ptr() as *mut u8, total) };
    CbmemConsole::open(region, addr)
}

/// Microseconds since parkboot started.
pub fn uptime_us() -> u64 {
    cpu::ticks_to_ns(cpu::rdtsc().saturating_sub(START_TSC.load(Ordering::Relaxed))) / 1000
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        let us = uptime_us();
        let mut guard = lock();
        let _ = write!(guard, "[{:5}.{:06}] ", us / 1_000_000, us % 1_000_000);
        let _ = match record.level() {
            log::Level::Error => guard.write_str("ERROR: "),
            log::Level::Warn => guard.write_str("WARNING: "),
            _ => Ok(()),
        };
        let _ = writeln!(guard, "{}", record.args());
    }

    fn flush(&self) {}
}
