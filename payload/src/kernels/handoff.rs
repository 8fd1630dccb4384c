//! Hand-off to code that expects 32-bit protected mode with paging off: multiboot2
//! kernels, the only such entry parkboot boots (Linux is entered in 64-bit mode by
//! the kexec loop's `linux.rs`). `handoff.S` is the only place parkboot leaves long mode.

use crate::parking::layout::PARK_GDT;
/// parkboot's GDT selectors: the same in its own GDT, the park GDT, the multiboot2
/// hand-off and the Linux 64-bit entry.
pub use park::code::{SEL_CODE32, SEL_CODE64, SEL_DATA};

/// parkboot's one flat GDT (null, 32-bit code, 64-bit code, data), loaded by the entry
/// code, the re-entry vector and `handoff.S`. Its selectors match Linux's 64-bit boot
/// protocol (__BOOT_CS 0x10, __BOOT_DS 0x18).
pub static FLAT_GDT: [u64; 4] = PARK_GDT;

/// A GDT pointer in LGDT's memory format. A 32-bit LGDT reads the low half of `base`.
#[repr(C, packed)]
pub struct GdtPointer {
    pub limit: u16,
    pub base: &'static [u64; 4],
}

pub static FLAT_GDT_POINTER: GdtPointer = GdtPointer {
    limit: (core::mem::size_of::<[u64; 4]>() - 1) as u16,
    base: &FLAT_GDT,
};

#[cfg(target_os = "none")]
core::arch::global_asm!(
    concat!(include_str!("../../../park/src/asm/long_mode.inc"), include_str!("handoff.S")),
    SEL_CODE32 = const SEL_CODE32,
    SEL_DATA = const SEL_DATA,
    gdt_pointer = sym FLAT_GDT_POINTER,
    options(att_syntax)
);

#[cfg(target_os = "none")]
extern "C" {
    fn handoff_enter_protected_mode32(entry: u64, eax: u32, ebx: u32, esp: u64) -> !;
}

/// Jumps to `entry` in 32-bit protected mode, paging off, interrupts off, flat
/// segments, with `eax`, `ebx` and `esp` as given.
///
/// # Safety
/// `entry` must be validated code for that mode, and `esp` a usable stack; all below
/// 4 GiB. Nothing of the caller survives.
#[cfg(target_os = "none")]
pub unsafe fn enter_protected_mode32(entry: u32, eax: u32, ebx: u32, esp: u32) -> ! {
    // SAFETY: the caller guarantees `entry` and `esp` as `handoff.S` needs them.
    unsafe { handoff_enter_protected_mode32(entry as u64, eax, ebx, esp as u64) }
}
