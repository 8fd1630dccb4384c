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

global_asm!(
    include_str!("reentry.S"),
    rust_reentry = sym crate::entries::reentry,
    SEL_CODE64 = const SEL_CODE64,
    SEL_DATA = const SEL_DATA,
    gdt_pointer = sym FLAT_GDT_POINTER,
    idt = sym exceptions::IDT,
    IDT_LIMIT = const exceptions::IDT_LIMIT,
    options(att_syntax)
);

extern "C" {
    static parkboot_reentry: u8;
    static mut parkboot_reentry_cr3: u64;
    static mut parkboot_reentry_cr3_la57: u64;
    #[link_name = "boot_stack_top"]
    static BOOT_STACK_TOP: u8;
}

/// Address of the re-entry vector (`park::ParkTable::reentry_vector`).
pub fn reentry_vector() -> u64 {
    core::ptr::addr_of!(parkboot_reentry) as u64
}

/// Sets parkboot's CR3 for the re-entry vector (and its PML5 wrapper for LA57
/// kernels). They live in the vector's own page, the only page a kernel promises
/// mapped, because the vector reads them before it switches CR3.
pub fn set_reentry_cr3(pml4: u64, pml5: u64) {
    // SAFETY: two u64 in parkboot's image; only the boot processor writes them, before
    // it boots a kernel (the only code that can jump to the re-entry vector).
    unsafe {
        core::ptr::write_volatile(core::ptr::addr_of_mut!(parkboot_reentry_cr3), pml4);
        core::ptr::write_volatile(core::ptr::addr_of_mut!(parkboot_reentry_cr3_la57), pml5);
    }
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
