//! Hand-off to code that expects 32-bit protected mode with paging off (multiboot2
//! kernels, coreboot-style payload entries). `handoff.S` is the only place parkboot
//! leaves long mode.

/// GDT selectors of the hand-off GDT (also parkboot's own layout).
pub const SEL_CODE32: u16 = 0x08;
pub const SEL_CODE64: u16 = 0x10;
pub const SEL_DATA: u16 = 0x18;

#[cfg(target_os = "none")]
core::arch::global_asm!(
    include_str!("handoff.S"),
    SEL_CODE32 = const SEL_CODE32,
    SEL_DATA = const SEL_DATA,
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
    handoff_enter_protected_mode32(entry as u64, eax, ebx, esp as u64)
}
