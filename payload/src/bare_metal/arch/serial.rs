//! A 16550 UART at I/O ports or memory-mapped with the register stride coreboot
//! reports (LB_TAG_SERIAL regwidth). Hand-written because parkboot needs both access
//! kinds and any stride; output only.
//!
//! A port where no UART answers reads 0xff everywhere (nothing drives the bus). Its
//! line status would then say "transmitter empty" and "data ready" at once, which no
//! 16550 does (Linux's 8250 driver uses the same test): such a UART is marked absent
//! and never written or read, so parkboot runs the same without a serial port.

use parkboot::platform::{SerialAccess, SerialConsole};
use x86_64::instructions::port::Port;

const REG_DATA: u64 = 0;
const REG_INTERRUPT_ENABLE: u64 = 1;
const REG_FIFO_CONTROL: u64 = 2;
const REG_LINE_CONTROL: u64 = 3;
const REG_MODEM_CONTROL: u64 = 4;
const REG_LINE_STATUS: u64 = 5;
const REG_DIVISOR_LOW: u64 = 0;
const REG_DIVISOR_HIGH: u64 = 1;
const LCR_8N1: u8 = 0x03;
const LCR_DIVISOR_LATCH: u8 = 0x80;
const FCR_ENABLE_AND_CLEAR: u8 = 0x07;
const MCR_DTR_RTS: u8 = 0x03;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_TRANSMIT_EMPTY: u8 = 1 << 5;
/// Gives up on a transmitter that never drains instead of hanging.
const TRANSMIT_SPINS: u32 = 100_000;
/// What every register reads when no device answers at the address.
const FLOATING_BUS: u8 = 0xff;

pub struct Uart {
    config: SerialConsole,
    /// Whether a UART answered at `init`.
    present: bool,
}

impl Uart {
    pub const fn new(config: SerialConsole) -> Self {
        Uart {
            config,
            present: false,
        }
    }

    pub fn config(&self) -> SerialConsole {
        self.config
    }

    /// Whether a UART answered at `init`.
    pub fn is_present(&self) -> bool {
        self.present
    }

    fn write_reg(&self, reg: u64, value: u8) {
        match self.config.access {
            // SAFETY: a register of the UART the platform named as the console, which
            // only this console drives.
            SerialAccess::Io { base } => unsafe { Port::new(base + reg as u16).write(value) },
            SerialAccess::Mmio { base, reg_width } => {
                let addr = base + reg * reg_width.max(1) as u64;
                // SAFETY: the UART's registers, identity-mapped.
                unsafe {
                    if reg_width == 4 {
                        core::ptr::write_volatile(addr as *mut u32, value as u32)
                    } else {
                        core::ptr::write_volatile(addr as *mut u8, value)
                    }
                }
            }
        }
    }

    fn read_reg(&self, reg: u64) -> u8 {
        match self.config.access {
            // SAFETY: as above; reading the data register only takes a received byte.
            SerialAccess::Io { base } => unsafe { Port::new(base + reg as u16).read() },
            SerialAccess::Mmio { base, reg_width } => {
                let addr = base + reg * reg_width.max(1) as u64;
                // SAFETY: the UART's registers, identity-mapped.
                unsafe {
                    if reg_width == 4 {
                        core::ptr::read_volatile(addr as *const u32) as u8
                    } else {
                        core::ptr::read_volatile(addr as *const u8)
                    }
                }
            }
        }
    }

    /// Programs the UART; returns whether one answered (otherwise it stays unused).
    pub fn init(&mut self) -> bool {
        self.present = self.read_reg(REG_LINE_STATUS) != FLOATING_BUS;
        if !self.present {
            return false;
        }
        const CLOCKS_PER_BIT: u32 = 16;
        let divisor = (self.config.input_hz / CLOCKS_PER_BIT)
            .checked_div(self.config.baud)
            .unwrap_or(1)
            .clamp(1, 0xffff);
        self.write_reg(REG_INTERRUPT_ENABLE, 0);
        self.write_reg(REG_LINE_CONTROL, LCR_DIVISOR_LATCH);
        self.write_reg(REG_DIVISOR_LOW, divisor as u8);
        self.write_reg(REG_DIVISOR_HIGH, (divisor >> 8) as u8);
        self.write_reg(REG_LINE_CONTROL, LCR_8N1);
        self.write_reg(REG_FIFO_CONTROL, FCR_ENABLE_AND_CLEAR);
        self.write_reg(REG_MODEM_CONTROL, MCR_DTR_RTS);
        true
    }

    pub fn write_byte(&self, byte: u8) {
        if !self.present {
            return;
        }
        for _ in 0..TRANSMIT_SPINS {
            if self.read_reg(REG_LINE_STATUS) & LSR_TRANSMIT_EMPTY != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.write_reg(REG_DATA, byte);
    }

    pub fn try_read_byte(&self) -> Option<u8> {
        if !self.present {
            return None;
        }
        if self.read_reg(REG_LINE_STATUS) & LSR_DATA_READY != 0 {
            Some(self.read_reg(REG_DATA))
        } else {
            None
        }
    }
}
