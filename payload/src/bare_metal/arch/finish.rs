//! How parkboot stops: after the last entry, or safely after an error (the `on_finish`
//! setting: halt, reset, or exit QEMU with a pass/fail status under the test harness).

use super::{console, cpu};
use core::sync::atomic::{AtomicU8, Ordering};
use x86_64::instructions::port::Port;

/// What parkboot does when it is done or has to stop (the `on_finish` setting).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Finish {
    Halt = 0,
    Reset = 1,
    QemuExit = 2,
}

static FINISH: AtomicU8 = AtomicU8::new(Finish::Halt as u8);

pub fn set_finish(finish: Finish) {
    FINISH.store(finish as u8, Ordering::Relaxed);
}

/// QEMU's isa-debug-exit device: writing V exits QEMU with status (V << 1) | 1.
const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;
const QEMU_EXIT_PASS: u32 = 0x10;
const QEMU_EXIT_FAIL: u32 = 0x11;
/// The PCI/ACPI reset control register: a full CPU and board reset.
const RESET_CONTROL_PORT: u16 = 0xcf9;
const RESET_FULL: u8 = 0x0e;

fn finish(passed: bool) -> ! {
    match FINISH.load(Ordering::Relaxed) {
        x if x == Finish::QemuExit as u8 => {
            let status = if passed {
                QEMU_EXIT_PASS
            } else {
                QEMU_EXIT_FAIL
            };
            // SAFETY: ending the run is the intent; without the device (not under the
            // harness) the write goes nowhere and parkboot halts below.
            unsafe { Port::<u32>::new(QEMU_DEBUG_EXIT_PORT).write(status) }
        }
        x if x == Finish::Reset as u8 => {
            console::write_raw(format_args!("parkboot: resetting\n"));
            // SAFETY: resetting the machine is the intent.
            unsafe { Port::<u8>::new(RESET_CONTROL_PORT).write(RESET_FULL) }
        }
        _ => console::write_raw(format_args!("parkboot: halted\n")),
    }
    cpu::halt_forever()
}

/// Stops safely after an error: says why, then halts (or exits QEMU with a
/// failure status under the test harness).
pub fn stop(reason: core::fmt::Arguments) -> ! {
    log::error!("parkboot: stopped: {}", reason);
    log::error!("parkboot: result: FAIL: {}", reason);
    finish(false)
}

/// The end of a successful run.
pub fn done() -> ! {
    log::info!("parkboot: result: pass");
    finish(true)
}
