//! The code parked CPUs run, as two position-independent blobs that parkboot copies
//! into memory it reserves: the real-mode start trampoline (below 1 MiB, used once per
//! AP) and the park code (ResetVector, park loop, NMI/#MC/fault handlers).

use crate::mailbox::{
    MailboxCommand, MAILBOX_APIC_ID_OFFSET, MAILBOX_COMMAND_OFFSET, MAILBOX_WAKEUP_VECTOR_OFFSET,
};
use crate::table::{doorbell, flags, offsets, CpuState, PARK_WAKE_VECTOR};
use core::arch::global_asm;
use core::mem::offset_of;

/// GDT selectors the park code and trampoline load; the park GDT parkboot builds puts
/// its descriptors at these indexes. They match Linux's 64-bit boot protocol
/// (__BOOT_CS 0x10, __BOOT_DS 0x18).
pub const SEL_CODE32: u16 = 0x08;
pub const SEL_CODE64: u16 = 0x10;
pub const SEL_DATA: u16 = 0x18;

/// The lowest non-canonical address with 4-level paging: a vector limit never goes
/// above it.
pub const CANONICAL_LIMIT: u64 = 1 << 47;

/// The park code's data block, filled in by parkboot in the copy.
#[repr(C, align(64))]
pub struct ParkCodeData {
    /// parkboot's 4-level identity map (PML4), below 4 GiB.
    pub firmware_cr3: u64,
    /// The same map under a PML5, for CPUs handed back with CR4.LA57 set.
    pub firmware_cr3_la57: u64,
    /// The park table.
    pub table: u64,
    /// The ACPI wakeup mailbox.
    pub mailbox: u64,
    /// `park::table::flags` bits (WAIT_MWAIT, WAIT_HLT).
    pub flags: u32,
    /// Slots in the park table: FIND_SLOT searches this many, whatever the table's
    /// `cpu_count` says (a kernel can write the table, not this page).
    pub cpu_count: u32,
    gdt_padding: [u8; 6],
    /// GDT pointer in LGDT's memory format (limit, then base).
    pub gdt_limit: u16,
    pub gdt_base: u64,
    idt_padding: [u8; 6],
    /// IDT pointer in LIDT's memory format.
    pub idt_limit: u16,
    pub idt_base: u64,
    /// A wakeup vector must be below this (the end of parkboot's identity map, at most
    /// 2^47): parked CPUs refuse 0 and anything at or above it.
    pub vector_limit: u64,
    /// For WAIT_HLT: the local-APIC timer's initial count (divide by 1) for one period
    /// of the park timer, which ends each HLT of the wait.
    pub timer_initial_count: u32,
    /// For WAIT_HLT: the count for the backstop period of a CPU that sleeps while
    /// another is the watcher ([`SLEEPER_BACKSTOP_PERIODS`] park-timer periods).
    pub sleeper_timer_count: u32,
    /// For WAIT_HLT: the longest period of the watcher, which doubles its period from
    /// `timer_initial_count` up to this ([`WATCHER_IDLE_PERIODS`] periods) while the
    /// mailbox stays empty, and goes back to one period when a command comes.
    pub watcher_idle_timer_count: u32,
    watcher_padding: u32,
}

/// A CPU that sleeps in the HLT wait while another CPU is the watcher still looks at
/// the mailbox on its own once in this many park-timer periods, so a watcher that
/// stops (faulted, or stuck with interrupts off) slows wakeups down but never loses
/// them.
pub const SLEEPER_BACKSTOP_PERIODS: u32 = 256;

/// The watcher's period grows to at most this many park-timer periods while nothing
/// happens (each tick of an idle watcher costs an emulator tens of microseconds of
/// the CPU that boots the kernel), and is one period again from the first mailbox
/// command on: the first wakeup after a quiet spell waits up to this many periods,
/// those right after it one period at most.
pub const WATCHER_IDLE_PERIODS: u32 = 8;

const _: () = {
    assert!(offset_of!(ParkCodeData, gdt_base) == offset_of!(ParkCodeData, gdt_limit) + 2);
    assert!(offset_of!(ParkCodeData, idt_base) == offset_of!(ParkCodeData, idt_limit) + 2);
};

impl ParkCodeData {
    /// `wait` = (`park::table::flags` bits, the park timer's initial count or 0).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        firmware_cr3: u64,
        firmware_cr3_la57: u64,
        table: u64,
        mailbox: u64,
        (flags, timer_initial_count): (u32, u32),
        cpu_count: u32,
        vector_limit: u64,
        gdt: (u64, u16),
        idt: (u64, u16),
    ) -> Self {
        ParkCodeData {
            firmware_cr3,
            firmware_cr3_la57,
            table,
            mailbox,
            flags,
            cpu_count,
            gdt_padding: [0; 6],
            gdt_limit: gdt.1,
            gdt_base: gdt.0,
            idt_padding: [0; 6],
            idt_limit: idt.1,
            idt_base: idt.0,
            vector_limit: vector_limit.min(CANONICAL_LIMIT),
            timer_initial_count,
            sleeper_timer_count: timer_initial_count.saturating_mul(SLEEPER_BACKSTOP_PERIODS),
            watcher_idle_timer_count: timer_initial_count.saturating_mul(WATCHER_IDLE_PERIODS),
            watcher_padding: 0,
        }
    }
}

global_asm!(
    concat!(include_str!("asm/long_mode.inc"), include_str!("ap_trampoline.S")),
    SEL_CODE32 = const SEL_CODE32,
    SEL_CODE64 = const SEL_CODE64,
    SEL_DATA = const SEL_DATA,
    options(att_syntax)
);

global_asm!(
    concat!(include_str!("asm/long_mode.inc"), include_str!("park.S")),
    SEL_CODE64 = const SEL_CODE64,
    SEL_DATA = const SEL_DATA,
    DATA_FIRMWARE_CR3 = const offset_of!(ParkCodeData, firmware_cr3),
    DATA_FIRMWARE_CR3_LA57 = const offset_of!(ParkCodeData, firmware_cr3_la57),
    DATA_TABLE = const offset_of!(ParkCodeData, table),
    DATA_MAILBOX = const offset_of!(ParkCodeData, mailbox),
    DATA_FLAGS = const offset_of!(ParkCodeData, flags),
    DATA_CPU_COUNT = const offset_of!(ParkCodeData, cpu_count),
    DATA_VECTOR_LIMIT = const offset_of!(ParkCodeData, vector_limit),
    DATA_GDT_LIMIT = const offset_of!(ParkCodeData, gdt_limit),
    DATA_IDT_LIMIT = const offset_of!(ParkCodeData, idt_limit),
    DATA_SIZE = const core::mem::size_of::<ParkCodeData>(),
    FLAG_WAIT_MWAIT = const flags::WAIT_MWAIT,
    FLAG_WAIT_HLT = const flags::WAIT_HLT,
    DATA_TIMER_INITIAL_COUNT = const offset_of!(ParkCodeData, timer_initial_count),
    DATA_SLEEPER_TIMER_COUNT = const offset_of!(ParkCodeData, sleeper_timer_count),
    DATA_WATCHER_IDLE_TIMER_COUNT = const offset_of!(ParkCodeData, watcher_idle_timer_count),
    TIMER_VECTOR = const PARK_TIMER_VECTOR,
    WAKE_VECTOR = const PARK_WAKE_VECTOR,
    DOORBELL_IDLE = const doorbell::IDLE,
    DOORBELL_ARMED = const doorbell::ARMED,
    DOORBELL_RUNG = const doorbell::RUNG,
    DOORBELL_DELIVERED = const doorbell::DELIVERED,
    TABLE_WATCHER = const offsets::TABLE_WATCHER,
    SLOT_DOORBELL = const offsets::SLOT_DOORBELL,
    TABLE_PARKED_COUNT = const offsets::TABLE_PARKED_COUNT,
    TABLE_RESET_VECTOR = const offsets::TABLE_RESET_VECTOR,
    TABLE_WAKE_ALL_VECTOR = const offsets::TABLE_WAKE_ALL_VECTOR,
    TABLE_WAKE_ALL_GENERATION = const offsets::TABLE_WAKE_ALL_GENERATION,
    TABLE_SLOTS = const offsets::TABLE_SLOTS,
    SLOT_SIZE = const offsets::SLOT_SIZE,
    SLOT_APIC_ID = const offsets::SLOT_APIC_ID,
    SLOT_STATE = const offsets::SLOT_STATE,
    SLOT_START_COUNT = const offsets::SLOT_START_COUNT,
    SLOT_NMI_COUNT = const offsets::SLOT_NMI_COUNT,
    SLOT_WAKE_COUNT = const offsets::SLOT_WAKE_COUNT,
    SLOT_RETURN_COUNT = const offsets::SLOT_RETURN_COUNT,
    SLOT_LAST_WAKE_TSC = const offsets::SLOT_LAST_WAKE_TSC,
    SLOT_LAST_PARK_TSC = const offsets::SLOT_LAST_PARK_TSC,
    SLOT_WAKE_ALL_SEEN = const offsets::SLOT_WAKE_ALL_SEEN,
    SLOT_MACHINE_CHECK_COUNT = const offsets::SLOT_MACHINE_CHECK_COUNT,
    SLOT_FAULT_VECTOR = const offsets::SLOT_FAULT_VECTOR,
    SLOT_FAULT_RIP = const offsets::SLOT_FAULT_RIP,
    SLOT_STACK_TOP = const offsets::SLOT_STACK_TOP,
    SLOT_FIRST_PARK_TSC = const offsets::SLOT_FIRST_PARK_TSC,
    SLOT_KERNEL_SCRATCH = const offsets::SLOT_KERNEL_SCRATCH,
    SLOT_REFUSED_VECTOR = const offsets::SLOT_REFUSED_VECTOR,
    SLOT_REFUSED_COUNT = const offsets::SLOT_REFUSED_COUNT,
    MAILBOX_COMMAND = const MAILBOX_COMMAND_OFFSET,
    MAILBOX_APIC_ID = const MAILBOX_APIC_ID_OFFSET,
    MAILBOX_WAKEUP_VECTOR = const MAILBOX_WAKEUP_VECTOR_OFFSET,
    COMMAND_NOOP = const MailboxCommand::Noop as u16,
    COMMAND_WAKEUP = const MailboxCommand::Wakeup as u16,
    COMMAND_TEST = const MailboxCommand::Test as u16,
    STATE_PARKED = const CpuState::Parked as u32,
    STATE_RUNNING = const CpuState::Running as u32,
    STATE_FAULTED = const CpuState::Faulted as u32,
    options(att_syntax)
);

extern "C" {
    static park_trampoline_start: u8;
    static park_trampoline_end: u8;
    static park_trampoline_gdt_pointer: u8;
    static park_trampoline_cr3: u8;
    static park_trampoline_entry64: u8;
    static park_trampoline_far32: u8;
    static park_trampoline_far64: u8;
    static park_trampoline_protected_mode: u8;
    static park_trampoline_long_mode: u8;
    static park_code_start: u8;
    static park_code_end: u8;
    static park_reset_vector: u8;
    static park_ap_start: u8;
    static park_self_check_vector: u8;
    static park_nmi_handler: u8;
    static park_machine_check_handler: u8;
    static park_interrupt_handler: u8;
    static park_wake_interrupt_handler: u8;
    static park_fault_stubs: u8;
    static park_unexpected_vector_stub: u8;
    static park_code_data: u8;
}

/// Exception vectors with their own fault stub (16 bytes apart from `fault_stubs`).
pub const FAULT_STUB_VECTORS: usize = 32;
pub const FAULT_STUB_STRIDE: usize = 16;
pub const NMI_VECTOR: usize = 2;
pub const MACHINE_CHECK_VECTOR: usize = 18;
/// The park timer's vector (HLT wait), handled by `park_interrupt_handler`.
pub const PARK_TIMER_VECTOR: usize = crate::table::PARK_TIMER_VECTOR as usize;
/// The watcher's wake interrupt (HLT wait), handled by `park_wake_interrupt_handler`.
pub const WAKE_VECTOR: usize = PARK_WAKE_VECTOR as usize;

fn addr(symbol: &u8) -> usize {
    symbol as *const u8 as usize
}

/// A blob to copy, and where its named points are, as offsets from its start.
pub struct Blob {
    pub bytes: &'static [u8],
}

/// The start trampoline and the offsets of its data fields.
pub struct Trampoline {
    pub blob: Blob,
    pub gdt_pointer: usize,
    pub cr3: usize,
    pub entry64: usize,
    /// Far pointer (u32 offset, u16 selector) to `protected_mode`, and to `long_mode`.
    pub far32: usize,
    pub far64: usize,
    pub protected_mode: usize,
    pub long_mode: usize,
}

/// The park code and the offsets of its entry points.
pub struct ParkCode {
    pub blob: Blob,
    pub reset_vector: usize,
    pub ap_start: usize,
    pub self_check_vector: usize,
    pub nmi_handler: usize,
    pub machine_check_handler: usize,
    /// External interrupts (vectors 32-255) in the HLT wait, the park timer's too.
    pub interrupt_handler: usize,
    /// The wake interrupt ([`WAKE_VECTOR`]) in the HLT wait.
    pub wake_interrupt_handler: usize,
    pub fault_stubs: usize,
    pub unexpected_vector_stub: usize,
    pub data: usize,
}

pub fn trampoline() -> Trampoline {
    // SAFETY: symbols defined by the blobs above; only addresses are taken, and the
    // bytes between start and end are the assembled code.
    unsafe {
        let start = addr(&park_trampoline_start);
        let end = addr(&park_trampoline_end);
        Trampoline {
            blob: Blob {
                bytes: core::slice::from_raw_parts(start as *const u8, end - start),
            },
            gdt_pointer: addr(&park_trampoline_gdt_pointer) - start,
            cr3: addr(&park_trampoline_cr3) - start,
            entry64: addr(&park_trampoline_entry64) - start,
            far32: addr(&park_trampoline_far32) - start,
            far64: addr(&park_trampoline_far64) - start,
            protected_mode: addr(&park_trampoline_protected_mode) - start,
            long_mode: addr(&park_trampoline_long_mode) - start,
        }
    }
}

pub fn park_code() -> ParkCode {
    // SAFETY: as for `trampoline`.
    unsafe {
        let start = addr(&park_code_start);
        let end = addr(&park_code_end);
        ParkCode {
            blob: Blob {
                bytes: core::slice::from_raw_parts(start as *const u8, end - start),
            },
            reset_vector: addr(&park_reset_vector) - start,
            ap_start: addr(&park_ap_start) - start,
            self_check_vector: addr(&park_self_check_vector) - start,
            nmi_handler: addr(&park_nmi_handler) - start,
            machine_check_handler: addr(&park_machine_check_handler) - start,
            interrupt_handler: addr(&park_interrupt_handler) - start,
            wake_interrupt_handler: addr(&park_wake_interrupt_handler) - start,
            fault_stubs: addr(&park_fault_stubs) - start,
            unexpected_vector_stub: addr(&park_unexpected_vector_stub) - start,
            data: addr(&park_code_data) - start,
        }
    }
}
