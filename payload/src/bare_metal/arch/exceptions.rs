//! The boot processor's IDT: every CPU exception prints what happened (vector, error
//! code, RIP, CR2, registers) and stops parkboot safely instead of triple-faulting.
//! NMIs are counted and return.

use super::console;
use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};
use parkboot::kernels::handoff::SEL_CODE64;
use parkboot::parking::layout::{InterruptGate, IDT_ENTRIES};
use parkboot::racy_cell::RacyCell;

/// NMIs the boot processor has received.
pub static NMI_COUNT: AtomicU64 = AtomicU64::new(0);

global_asm!(
    include_str!("exceptions.S"),
    exception_handler = sym exception_handler,
    nmi_count = sym NMI_COUNT,
    options(att_syntax)
);

extern "C" {
    static exception_stubs: u8;
}

const EXCEPTION_VECTORS: usize = 32;
const STUB_STRIDE: u64 = 16;
/// The boot processor's IDT (also loaded by the re-entry vector, `reentry.S`).
pub static IDT: RacyCell<[InterruptGate; IDT_ENTRIES]> =
    RacyCell::new([InterruptGate::MISSING; IDT_ENTRIES]);
/// Its LIDT limit.
pub const IDT_LIMIT: u16 = (IDT_ENTRIES * core::mem::size_of::<InterruptGate>() - 1) as u16;

/// Loads the IDT. Vectors above 31 stay not-present: with interrupts off none can
/// arrive, and if one did the resulting #GP/#NP is reported like any exception.
/// Runs at start and again at every re-entry (the same gates each time).
pub fn init() {
    let stubs = core::ptr::addr_of!(exception_stubs) as u64;
    // SAFETY: only the boot processor runs this, with interrupts off, and nothing else
    // refers to the IDT (the CPU and `reentry.S` only use its address); an exception
    // while the gates are rewritten finds them already holding the same values.
    let idt = unsafe { IDT.get_mut() };
    for (vector, gate) in idt.iter_mut().take(EXCEPTION_VECTORS).enumerate() {
        *gate = InterruptGate::new(stubs + vector as u64 * STUB_STRIDE, SEL_CODE64);
    }
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: IDT_LIMIT,
        base: x86_64::VirtAddr::new(IDT.as_mut_ptr() as u64),
    };
    // SAFETY: a complete IDT in a static, so it stays valid for as long as it is loaded.
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
}

pub fn nmi_count() -> u64 {
    NMI_COUNT.load(Ordering::Relaxed)
}

/// The stack as `exceptions.S` leaves it.
#[repr(C)]
pub struct ExceptionFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const NAMES: [&str; EXCEPTION_VECTORS] = [
    "divide error (#DE)",
    "debug (#DB)",
    "NMI",
    "breakpoint (#BP)",
    "overflow (#OF)",
    "bound range (#BR)",
    "invalid opcode (#UD)",
    "device not available (#NM)",
    "double fault (#DF)",
    "coprocessor segment overrun",
    "invalid TSS (#TS)",
    "segment not present (#NP)",
    "stack fault (#SS)",
    "general protection (#GP)",
    "page fault (#PF)",
    "reserved",
    "x87 floating point (#MF)",
    "alignment check (#AC)",
    "machine check (#MC)",
    "SIMD floating point (#XM)",
    "virtualization (#VE)",
    "control protection (#CP)",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection (#HV)",
    "VMM communication (#VC)",
    "security (#SX)",
    "reserved",
];

extern "C" fn exception_handler(frame: &ExceptionFrame) -> ! {
    let cr2: u64;
    let cr3: u64;
    // SAFETY: reading control registers.
    unsafe {
        core::arch::asm!("mov {}, cr2", out(reg) cr2);
        core::arch::asm!("mov {}, cr3", out(reg) cr3);
    }
    let name = NAMES.get(frame.vector as usize).copied().unwrap_or("?");
    console::write_raw(format_args!(
        "\nparkboot: CPU exception {} {} on the boot processor\n  \
         error code {:#x}  RIP {:#018x}  CS {:#x}  RFLAGS {:#x}\n  \
         RSP {:#018x}  CR2 {:#018x}  CR3 {:#018x}\n  \
         RAX {:#018x} RBX {:#018x} RCX {:#018x} RDX {:#018x}\n  \
         RSI {:#018x} RDI {:#018x} RBP {:#018x} R8  {:#018x}\n  \
         R9  {:#018x} R10 {:#018x} R11 {:#018x} R12 {:#018x}\n  \
         R13 {:#018x} R14 {:#018x} R15 {:#018x}\n",
        frame.vector,
        name,
        frame.error_code,
        frame.rip,
        frame.cs,
        frame.rflags,
        frame.rsp,
        cr2,
        cr3,
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp,
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11,
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15,
    ));
    super::finish::stop(format_args!("CPU exception {} {}", frame.vector, name))
}
