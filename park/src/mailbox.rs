//! The ACPI Multiprocessor Wakeup mailbox (MADT entry type 0x10).
//!
//! The OS writes `apic_id`, then `wakeup_vector`, then `command` (release); the CPU
//! whose APIC ID matches reads the vector, then writes `command = Noop` as its
//! acknowledgement, then jumps to the vector in long mode. The OS sends the next
//! command only after it reads `Noop` again.

use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64};

/// The mailbox is one 4 KiB page, 4 KiB aligned, in ACPI NVS memory.
pub const MAILBOX_SIZE: usize = 4096;
pub const MAILBOX_ALIGN: usize = 4096;

/// Values of [`WakeupMailbox::command`].
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxCommand {
    /// Nothing to do; also the CPU's acknowledgement of a command.
    Noop = 0,
    /// The CPU with `apic_id` jumps to `wakeup_vector`.
    Wakeup = 1,
    /// The CPU with `apic_id` answers by setting `command` back to Noop (Linux uses it
    /// to see that a CPU it handed back is parked again).
    Test = 2,
}

impl MailboxCommand {
    pub fn from_raw(raw: u16) -> Option<Self> {
        match raw {
            0 => Some(MailboxCommand::Noop),
            1 => Some(MailboxCommand::Wakeup),
            2 => Some(MailboxCommand::Test),
            _ => None,
        }
    }
}

/// Bytes from the mailbox's start that parked CPUs watch with MONITOR: its first cache
/// line (64 bytes on every x86 CPU that offers MONITOR).
pub const MONITORED_LINE_BYTES: usize = 64;

#[repr(C, align(4096))]
pub struct WakeupMailbox {
    /// A [`MailboxCommand`], written by the OS, cleared to Noop by the CPU.
    pub command: AtomicU16,
    pub reserved: u16,
    /// APIC ID of the CPU the command is for.
    pub apic_id: AtomicU32,
    /// Where the woken CPU jumps, identity-mapped, in long mode.
    pub wakeup_vector: AtomicU64,
    /// The first 8 bytes of the OS's space, in the cache line parked CPUs MONITOR:
    /// [`crate::ParkTable::wake_all`] writes each new doorbell generation here so that
    /// CPUs waiting in MWAIT see a write to their monitored line (the doorbell itself
    /// is in the park table, another line). Written only by whoever rings the doorbell
    /// (the OS, or parkboot's own self-check while it owns the machine); the park code
    /// never writes it and never reads it as a command. An OS that never rings the
    /// doorbell (unmodified Linux) can use these bytes like the rest of its space.
    pub wake_all_signal: AtomicU64,
    /// The rest of the OS's own space; parkboot never touches it.
    pub reserved_for_os: [u8; 2024],
    /// The firmware's space; parkboot leaves it zero.
    pub reserved_for_firmware: [u8; 2048],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<WakeupMailbox>() == MAILBOX_SIZE);
    assert!(offset_of!(WakeupMailbox, command) == 0);
    assert!(offset_of!(WakeupMailbox, apic_id) == 4);
    assert!(offset_of!(WakeupMailbox, wakeup_vector) == 8);
    assert!(offset_of!(WakeupMailbox, wake_all_signal) == 16);
    // In the mailbox's first cache line, the one parked CPUs MONITOR (the smallest
    // monitor line x86 CPUs report is 64 bytes).
    assert!(offset_of!(WakeupMailbox, wake_all_signal) + 8 <= MONITORED_LINE_BYTES);
    assert!(offset_of!(WakeupMailbox, reserved_for_os) == 24);
    assert!(offset_of!(WakeupMailbox, reserved_for_firmware) == 2048);
};

/// Byte offsets the park code (assembly) uses; checked against the struct above.
pub const MAILBOX_COMMAND_OFFSET: usize = core::mem::offset_of!(WakeupMailbox, command);
pub const MAILBOX_APIC_ID_OFFSET: usize = core::mem::offset_of!(WakeupMailbox, apic_id);
pub const MAILBOX_WAKEUP_VECTOR_OFFSET: usize = core::mem::offset_of!(WakeupMailbox, wakeup_vector);
pub const MAILBOX_WAKE_ALL_SIGNAL_OFFSET: usize =
    core::mem::offset_of!(WakeupMailbox, wake_all_signal);
