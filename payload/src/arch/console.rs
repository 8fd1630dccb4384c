//! The serial console and the `log` backend: every line carries the time since
//! parkboot started, from the TSC, so a boot log is also a profile.

use super::cpu;
use super::serial::Uart;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use parkboot::platform::SerialConsole;

struct Console {
    uart: core::cell::UnsafeCell<Uart>,
    locked: AtomicBool,
}

// SAFETY: access to the UART goes through the `locked` spin lock.
unsafe impl Sync for Console {}

static CONSOLE: Console = Console {
    uart: core::cell::UnsafeCell::new(Uart::new(SerialConsole::COM1)),
    locked: AtomicBool::new(false),
};

/// TSC at parkboot's entry: timestamps count from here.
static START_TSC: AtomicU64 = AtomicU64::new(0);

struct Guard;

impl Guard {
    fn lock() -> Guard {
        while CONSOLE
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        Guard
    }

    fn uart(&mut self) -> &mut Uart {
        // SAFETY: the lock is held for the guard's lifetime.
        unsafe { &mut *CONSOLE.uart.get() }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        CONSOLE.locked.store(false, Ordering::Release);
    }
}

impl Write for Guard {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let uart = self.uart();
        for byte in s.bytes() {
            if byte == b'\n' {
                uart.write_byte(b'\r');
            }
            uart.write_byte(byte);
        }
        Ok(())
    }
}

/// Starts the console on `config` (COM1 until the platform says otherwise).
pub fn init(config: SerialConsole) {
    START_TSC
        .compare_exchange(0, cpu::rdtsc(), Ordering::Relaxed, Ordering::Relaxed)
        .ok();
    let mut guard = Guard::lock();
    *guard.uart() = Uart::new(config);
    guard.uart().init();
    drop(guard);
    log::set_logger(&LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);
}

pub fn current() -> SerialConsole {
    Guard::lock().uart().config()
}

/// Reads one byte of console input if there is one (the NMI test's go-ahead).
pub fn try_read_byte() -> Option<u8> {
    Guard::lock().uart().try_read_byte()
}

/// Writes without a timestamp, for the panic and exception paths.
pub fn write_raw(args: fmt::Arguments) {
    let mut guard = Guard::lock();
    let _ = guard.write_fmt(args);
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
        let mut guard = Guard::lock();
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
