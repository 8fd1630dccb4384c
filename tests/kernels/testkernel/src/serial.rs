//! COM1 output and the QEMU exit port: all the test kernel needs to report.
//!
//! parkboot has already programmed the UART (it logs on COM1 itself), and QEMU's 16550
//! accepts bytes without waiting for the transmitter, so writing the data register is
//! enough.

use core::arch::asm;
use core::fmt;

/// I/O port of COM1's data register.
pub const COM1: u16 = 0x3f8;
/// The isa-debug-exit device parkboot's QEMU runs add (iosize 4).
pub const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;
/// QEMU exits with `(code << 1) | 1`: 33 for a pass, 35 for a failure.
pub const QEMU_EXIT_PASS: u32 = 0x10;
pub const QEMU_EXIT_FAIL: u32 = 0x11;

/// Writes text to COM1.
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            // SAFETY: COM1's data register; writing it has no effect on memory.
            unsafe { asm!("out dx, al", in("dx") COM1, in("al") byte, options(nomem, nostack)) };
        }
        Ok(())
    }
}

/// Ends QEMU through isa-debug-exit with `code`; halts if there is no such device
/// (real hardware).
pub fn exit_qemu(code: u32) -> ! {
    // SAFETY: an I/O port write; QEMU exits, hardware without the device ignores it.
    unsafe {
        asm!("out dx, eax", in("dx") QEMU_DEBUG_EXIT_PORT, in("eax") code, options(nomem, nostack))
    };
    loop {
        // SAFETY: stop this CPU; nothing is left to do.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// One line on COM1 with the test kernel's prefix.
macro_rules! say {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::serial::Serial, "testkernel: {}", format_args!($($arg)*));
    }};
}
pub(crate) use say;
