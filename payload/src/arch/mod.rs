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

use parkboot::handoff::FLAT_GDT_POINTER;
pub use parkboot::handoff::{SEL_CODE32, SEL_CODE64, SEL_DATA};

global_asm!(
    include_str!("entry.S"),
    rust_entry = sym crate::rust_entry,
    BOOT_SOURCE_COREBOOT = const BootSource::Coreboot as u32,
    BOOT_SOURCE_PVH = const BootSource::Pvh as u32,
    SEL_CODE32 = const SEL_CODE32,
    SEL_CODE64 = const SEL_CODE64,
    SEL_DATA = const SEL_DATA,
    gdt_pointer = sym FLAT_GDT_POINTER,
    options(att_syntax)
);

/// parkboot's CR3 for the re-entry vector (and its PML5 wrapper for LA57 kernels).
pub static REENTRY_CR3: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
pub static REENTRY_CR3_LA57: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

global_asm!(
    include_str!("reentry.S"),
    rust_reentry = sym crate::entries::reentry,
    firmware_cr3 = sym REENTRY_CR3,
    firmware_cr3_la57 = sym REENTRY_CR3_LA57,
    SEL_CODE64 = const SEL_CODE64,
    SEL_DATA = const SEL_DATA,
    gdt_pointer = sym FLAT_GDT_POINTER,
    options(att_syntax)
);

extern "C" {
    static parkboot_reentry: u8;
    #[link_name = "boot_stack_top"]
    static BOOT_STACK_TOP: u8;
}

/// Address of the re-entry vector (`park::ParkTable::reentry_vector`).
pub fn reentry_vector() -> u64 {
    core::ptr::addr_of!(parkboot_reentry) as u64
}

/// Top of the boot stack, which is free whenever a kernel runs.
pub fn boot_stack_top() -> u64 {
    core::ptr::addr_of!(BOOT_STACK_TOP) as u64
}

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
