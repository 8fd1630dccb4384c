//! The re-entry vector (`reentry.S`): where a kernel gives the boot processor back to
//! the kexec loop, which continues in [`super::reentry`].

use crate::arch::exceptions;
use core::arch::global_asm;
use parkboot::kernels::handoff::{FLAT_GDT_POINTER, SEL_CODE64, SEL_DATA};

global_asm!(
    concat!(include_str!("../../../../park/src/asm/long_mode.inc"), include_str!("reentry.S")),
    rust_reentry = sym super::reentry,
    SEL_CODE64 = const SEL_CODE64,
    SEL_DATA = const SEL_DATA,
    gdt_pointer = sym FLAT_GDT_POINTER,
    idt = sym exceptions::IDT,
    IDT_LIMIT = const exceptions::IDT_LIMIT,
    options(att_syntax)
);

extern "C" {
    static mut parkboot_reentry_cr3: u64;
    static mut parkboot_reentry_cr3_la57: u64;
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
