//! Hardware glue for the bare-metal binary: CPU helpers, the local APIC, the serial
//! console, exception handling, physical memory through the identity map, and how the
//! machine stops. Everything with logic worth testing lives in the library
//! (`parkboot::*`); this stays thin, and uses nothing of the boot flow above it.

pub mod apic;
pub mod console;
pub mod cpu;
pub mod exceptions;
pub mod finish;
pub mod identity;
pub mod serial;

// parkboot's own image: the symbols below are defined by its assembly and linker
// script; these only read their addresses.

extern "C" {
    /// Defined by `entry.S`.
    #[link_name = "boot_stack_top"]
    static BOOT_STACK_TOP: u8;
    /// Defined by the kexec loop's `reentry.S`.
    static parkboot_reentry: u8;
    /// Defined by the linker script.
    static __image_start: u8;
    static __image_end: u8;
}

/// Top of the boot stack, which is free whenever a kernel runs.
pub fn boot_stack_top() -> u64 {
    core::ptr::addr_of!(BOOT_STACK_TOP) as u64
}

/// Address of the re-entry vector (`park::ParkTable::reentry_vector`).
pub fn reentry_vector() -> u64 {
    core::ptr::addr_of!(parkboot_reentry) as u64
}

/// Physical range of parkboot's own image (code, data, bss, boot stack, boot page
/// tables): it is reserved so nothing is ever loaded over it.
pub fn image_range() -> (u64, u64) {
    (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__image_end) as u64,
    )
}
