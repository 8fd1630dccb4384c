//! Hardware glue for the bare-metal binary: entry code, CPU helpers, the serial
//! console, exception handling. Everything with logic worth testing lives in the
//! library (`parkboot::*`); this stays thin.

pub mod apic;
pub mod console;
pub mod cpu;
pub mod exceptions;
pub mod serial;

use core::arch::global_asm;
use parkboot::platform::BootSource;

/// GDT selectors, shared by the entry code, the AP park code and kernel hand-offs.
pub const SEL_CODE32: u16 = 0x08;
pub const SEL_CODE64: u16 = 0x10;
pub const SEL_DATA: u16 = 0x18;

global_asm!(
    include_str!("entry.S"),
    rust_entry = sym crate::rust_entry,
    BOOT_SOURCE_COREBOOT = const BootSource::Coreboot as u32,
    BOOT_SOURCE_PVH = const BootSource::Pvh as u32,
    SEL_CODE32 = const SEL_CODE32,
    SEL_CODE64 = const SEL_CODE64,
    SEL_DATA = const SEL_DATA,
    options(att_syntax)
);

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Physical range of parkboot's own image (code, data, bss, boot stack, boot page
/// tables): it is reserved so nothing is ever loaded over it.
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}
