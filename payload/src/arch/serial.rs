//! A 16550 UART at I/O ports or memory-mapped with the register stride coreboot
//! reports (LB_TAG_SERIAL regwidth). Hand-written because parkboot needs both access
//! kinds and any stride; output only.

use super::cpu::{inb, outb};
use parkboot::platform::{SerialAccess, SerialConsole};

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
/// Gives up on a transmitter that never drains (no UART there) instead of hanging.
const TRANSMIT_SPINS: u32 = 100_000;

pub struct Uart {
    config: SerialConsole,
}

impl Uart {
    pub const fn new(config: SerialConsole) -> Self {
        Uart { config }
    }

    pub fn config(&self) -> SerialConsole {
        self.config
    }

    fn write_reg(&self, reg: u64, value: u8) {
        match self.config.access {
            SerialAccess::Io { base } => outb(base + reg as u16, value),
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
            SerialAccess::Io { base } => inb(base + reg as u16),
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

    pub fn init(&self) {
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
    }

    pub fn write_byte(&self, byte: u8) {
        for _ in 0..TRANSMIT_SPINS {
            if self.read_reg(REG_LINE_STATUS) & LSR_TRANSMIT_EMPTY != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.write_reg(REG_DATA, byte);
    }

    pub fn try_read_byte(&self) -> Option<u8> {
        if self.read_reg(REG_LINE_STATUS) & LSR_DATA_READY != 0 {
            Some(self.read_reg(REG_DATA))
        } else {
            None
        }
    }
}
