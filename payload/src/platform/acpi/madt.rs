//! The MADT (Multiple APIC Description Table, ACPI 5.2.12): which CPUs exist, their
//! APIC IDs, and whether a Multiprocessor Wakeup mailbox is already advertised.
//!
//! parkboot needs the CPU list to know which APs to start and park, and walks the
//! entries again when it copies the MADT with its own wakeup entry (`rewrite`). Both
//! use [`MadtEntries`], the one place that checks entry lengths.

use core::mem::{offset_of, size_of};

use heapless::Vec;

use super::{AcpiError, EntryProblem, SdtHeader, Signature};
use crate::wire::{wire_struct, WireField};

/// How many CPUs parkboot keeps track of (entries in [`Madt::cpus`]). More than the park
/// table has slots for (`park::table::MAX_PARKED_CPUS`): those are listed, not parked.
pub const MAX_CPUS: usize = 1024;

/// Interrupt Controller Structure type 0: Processor Local APIC (8-bit APIC IDs).
pub const MADT_TYPE_LOCAL_APIC: u8 = 0;
/// Interrupt Controller Structure type 9: Processor Local x2APIC (32-bit APIC IDs).
pub const MADT_TYPE_LOCAL_X2APIC: u8 = 9;
/// Interrupt Controller Structure type 0x10: Multiprocessor Wakeup (ACPI 6.4, 5.2.12.19).
pub const MADT_TYPE_MULTIPROCESSOR_WAKEUP: u8 = 0x10;

/// Local APIC flags bit 0: the processor is ready to use.
pub const LOCAL_APIC_FLAG_ENABLED: u32 = 1 << 0;
/// Local APIC flags bit 1 (ACPI 6.3): a disabled processor the OS may bring online.
pub const LOCAL_APIC_FLAG_ONLINE_CAPABLE: u32 = 1 << 1;

/// An 8-bit APIC ID of all ones is the xAPIC broadcast destination, not a CPU.
pub const LOCAL_APIC_BROADCAST_ID: u8 = u8::MAX;
/// A 32-bit x2APIC ID of all ones is the x2APIC broadcast destination, not a CPU.
pub const LOCAL_X2APIC_BROADCAST_ID: u32 = u32::MAX;

/// MailBoxVersion 0 (ACPI 6.4): the mailbox wakes each AP once, no ResetVector.
pub const MAILBOX_VERSION_WAKEUP_ONLY: u16 = 0;
/// MailBoxVersion 1 (ACPI 6.6): adds the ResetVector through which the OS hands APs
/// back to the firmware (CPU offline, kexec). This is the version parkboot advertises.
pub const MAILBOX_VERSION_RESET_VECTOR: u16 = 1;
/// Length of a version 0 Multiprocessor Wakeup entry (no ResetVector).
pub const WAKEUP_ENTRY_LENGTH_V0: usize = offset_of!(MultiprocessorWakeupEntry, reset_vector);
/// Length of a version 1 Multiprocessor Wakeup entry.
pub const WAKEUP_ENTRY_LENGTH_V1: usize = size_of::<MultiprocessorWakeupEntry>();
/// The mailbox is a 4 KiB page of its own (ACPI 5.2.12.19).
pub const WAKEUP_MAILBOX_ALIGNMENT: u64 = 4096;

/// Every entry starts with a type byte and a length byte.
pub const ENTRY_HEADER_LENGTH: usize = 2;
/// Bytes before the first entry: the table header, local APIC address and flags.
pub const MADT_FIXED_LENGTH: usize = size_of::<MadtHeader>();

wire_struct! {
    packed
    /// The fixed part of the MADT.
    pub struct MadtHeader {
        pub header: SdtHeader,
        /// 32-bit physical address of every CPU's local APIC registers.
        pub local_apic_address: u32,
        /// Bit 0 PCAT_COMPAT: the machine also has dual 8259 PICs.
        pub flags: u32,
    }
}

const _: () = assert!(size_of::<MadtHeader>() == 44);
const _: () = assert!(offset_of!(MadtHeader, local_apic_address) == 36);
const _: () = assert!(offset_of!(MadtHeader, flags) == 40);

wire_struct! {
    packed
    /// Processor Local APIC structure (type 0).
    pub struct LocalApicEntry {
        pub entry_type: u8,
        pub length: u8,
        /// ACPI Processor UID, matching a processor object in the namespace.
        pub processor_uid: u8,
        pub apic_id: u8,
        /// [`LOCAL_APIC_FLAG_ENABLED`], [`LOCAL_APIC_FLAG_ONLINE_CAPABLE`].
        pub flags: u32,
    }
}

const _: () = assert!(size_of::<LocalApicEntry>() == 8);
const _: () = assert!(offset_of!(LocalApicEntry, processor_uid) == 2);
const _: () = assert!(offset_of!(LocalApicEntry, apic_id) == 3);
const _: () = assert!(offset_of!(LocalApicEntry, flags) == 4);

wire_struct! {
    packed
    /// Processor Local x2APIC structure (type 9), used for APIC IDs that do not fit 8 bits.
    pub struct LocalX2ApicEntry {
        pub entry_type: u8,
        pub length: u8,
        pub reserved: u16,
        pub x2apic_id: u32,
        /// Same bits as [`LocalApicEntry::flags`].
        pub flags: u32,
        pub processor_uid: u32,
    }
}

const _: () = assert!(size_of::<LocalX2ApicEntry>() == 16);
const _: () = assert!(offset_of!(LocalX2ApicEntry, reserved) == 2);
const _: () = assert!(offset_of!(LocalX2ApicEntry, x2apic_id) == 4);
const _: () = assert!(offset_of!(LocalX2ApicEntry, flags) == 8);
const _: () = assert!(offset_of!(LocalX2ApicEntry, processor_uid) == 12);

wire_struct! {
    packed
    /// Multiprocessor Wakeup structure (type 0x10), version 1 layout. A version 0 entry is
    /// the same without `reset_vector` ([`WAKEUP_ENTRY_LENGTH_V0`] bytes).
    pub struct MultiprocessorWakeupEntry {
        pub entry_type: u8,
        pub length: u8,
        pub mailbox_version: u16,
        pub reserved: u32,
        /// Physical address of the 4 KiB wakeup mailbox.
        pub mailbox_address: u64,
        /// Physical address the OS jumps to when it hands a CPU back (version 1).
        pub reset_vector: u64,
    }
}

const _: () = assert!(size_of::<MultiprocessorWakeupEntry>() == 24);
const _: () = assert!(offset_of!(MultiprocessorWakeupEntry, mailbox_version) == 2);
const _: () = assert!(offset_of!(MultiprocessorWakeupEntry, reserved) == 4);
const _: () = assert!(offset_of!(MultiprocessorWakeupEntry, mailbox_address) == 8);
const _: () = assert!(offset_of!(MultiprocessorWakeupEntry, reset_vector) == 16);

impl MadtHeader {
    fn read(bytes: &[u8]) -> Option<MadtHeader> {
        <MadtHeader as WireField>::read_from(bytes)
    }
}

impl LocalApicEntry {
    fn read(bytes: &[u8]) -> Option<LocalApicEntry> {
        <LocalApicEntry as WireField>::read_from(bytes)
    }
}

impl LocalX2ApicEntry {
    fn read(bytes: &[u8]) -> Option<LocalX2ApicEntry> {
        <LocalX2ApicEntry as WireField>::read_from(bytes)
    }
}

impl MultiprocessorWakeupEntry {
    /// The version 1 entry parkboot advertises.
    pub fn version_1(mailbox_address: u64, reset_vector: u64) -> MultiprocessorWakeupEntry {
        MultiprocessorWakeupEntry {
            entry_type: MADT_TYPE_MULTIPROCESSOR_WAKEUP,
            length: WAKEUP_ENTRY_LENGTH_V1 as u8,
            mailbox_version: MAILBOX_VERSION_RESET_VECTOR,
            reserved: 0,
            mailbox_address,
            reset_vector,
        }
    }

    /// Writes all [`WAKEUP_ENTRY_LENGTH_V1`] bytes at the start of `out`.
    pub fn write(&self, out: &mut [u8]) -> Option<()> {
        WireField::write_to(*self, out)
    }
}

/// A name for an entry type in error messages.
pub(super) fn entry_type_name(entry_type: u8) -> &'static str {
    match entry_type {
        MADT_TYPE_LOCAL_APIC => "Local APIC",
        MADT_TYPE_LOCAL_X2APIC => "Local x2APIC",
        MADT_TYPE_MULTIPROCESSOR_WAKEUP => "Multiprocessor Wakeup",
        _ => "interrupt controller structure",
    }
}

/// One entry of the MADT, its length already checked against the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MadtEntry<'a> {
    /// Byte offset of the entry from the start of the MADT.
    pub offset: usize,
    pub entry_type: u8,
    /// The whole entry, type and length bytes included.
    pub bytes: &'a [u8],
}

/// Walks the entries of a MADT in order.
///
/// Yields `Err` once, for the first entry whose length is 0 or 1 (the walk could not
/// advance) or runs past the table, and then stops.
#[derive(Clone, Debug)]
pub struct MadtEntries<'a> {
    header: MadtHeader,
    /// The MADT cut to its header length.
    table: &'a [u8],
    offset: usize,
    finished: bool,
}

impl MadtEntries<'_> {
    pub fn header(&self) -> MadtHeader {
        self.header
    }

    /// The MADT's length from its header (checked to fit the bytes given).
    pub fn table_length(&self) -> usize {
        self.table.len()
    }

    fn fail(&mut self, offset: usize, problem: EntryProblem) -> Option<<Self as Iterator>::Item> {
        self.finished = true;
        Some(Err(AcpiError::MadtEntry { offset, problem }))
    }
}

impl<'a> Iterator for MadtEntries<'a> {
    type Item = Result<MadtEntry<'a>, AcpiError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let offset = self.offset;
        let rest = self.table.get(offset..).unwrap_or(&[]);
        let remaining = rest.len();
        let (Some(&entry_type), Some(&length)) = (rest.first(), rest.get(1)) else {
            if remaining == 0 {
                self.finished = true;
                return None;
            }
            return self.fail(offset, EntryProblem::HeaderPastEnd { remaining });
        };
        if usize::from(length) < ENTRY_HEADER_LENGTH {
            return self.fail(offset, EntryProblem::TooShort { length });
        }
        let Some(bytes) = rest.get(..usize::from(length)) else {
            return self.fail(offset, EntryProblem::PastEnd { length, remaining });
        };
        self.offset = offset.saturating_add(usize::from(length));
        Some(Ok(MadtEntry {
            offset,
            entry_type,
            bytes,
        }))
    }
}

/// Checks the MADT's signature and length and returns a walker over its entries.
///
/// Bytes after the header's length are ignored (the caller may pass a larger buffer);
/// a header length beyond the buffer is an error. The checksum is not checked here:
/// [`super::Tables::new`] checks it where the table's address is known.
pub fn madt_entries(madt: &[u8]) -> Result<MadtEntries<'_>, AcpiError> {
    let too_short = AcpiError::MadtTooShort {
        length: madt.len(),
        minimum: MADT_FIXED_LENGTH,
    };
    let header = MadtHeader::read(madt).ok_or(too_short)?;
    let signature = header.header.signature();
    if signature != Signature::MADT {
        return Err(AcpiError::MadtSignature { found: signature });
    }
    let header_length = header.header.length;
    if (header_length as usize) < MADT_FIXED_LENGTH {
        return Err(AcpiError::MadtTooShort {
            length: header_length as usize,
            minimum: MADT_FIXED_LENGTH,
        });
    }
    let table = madt
        .get(..header_length as usize)
        .ok_or(AcpiError::MadtTruncated {
            header_length,
            available: madt.len(),
        })?;
    Ok(MadtEntries {
        header,
        table,
        offset: MADT_FIXED_LENGTH,
        finished: false,
    })
}

/// One processor listed in the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// The local APIC ID: 8 bits from a Local APIC entry, 32 from a Local x2APIC entry.
    pub apic_id: u32,
    /// ACPI Processor UID.
    pub processor_uid: u32,
    pub enabled: bool,
    pub online_capable: bool,
    /// Listed by a Local x2APIC entry (type 9) rather than a Local APIC entry (type 0).
    pub from_x2apic_entry: bool,
}

impl Cpu {
    fn from_flags(apic_id: u32, processor_uid: u32, flags: u32, from_x2apic_entry: bool) -> Cpu {
        Cpu {
            apic_id,
            processor_uid,
            enabled: flags & LOCAL_APIC_FLAG_ENABLED != 0,
            online_capable: flags & LOCAL_APIC_FLAG_ONLINE_CAPABLE != 0,
            from_x2apic_entry,
        }
    }

    /// Whether the CPU can be started: enabled now, or one the OS may bring online.
    pub fn is_usable(&self) -> bool {
        self.enabled || self.online_capable
    }
}

/// An existing Multiprocessor Wakeup entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakeupEntry {
    pub mailbox_version: u16,
    pub mailbox_address: u64,
    /// Present for MailBoxVersion 1 and later.
    pub reset_vector: Option<u64>,
}

/// What parkboot reads from the MADT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Madt {
    pub local_apic_address: u32,
    pub flags: u32,
    /// Every distinct CPU, in table order, usable or not.
    pub cpus: Vec<Cpu, MAX_CPUS>,
    /// The first Multiprocessor Wakeup entry (the one an OS uses), if any.
    pub wakeup: Option<WakeupEntry>,
}

impl Madt {
    /// The CPUs that are enabled or online-capable.
    pub fn usable_cpus(&self) -> impl Iterator<Item = &Cpu> {
        self.cpus.iter().filter(|cpu| cpu.is_usable())
    }

    /// Records `cpu` unless its APIC ID is already listed: firmware may list a CPU both
    /// in a Local APIC and a Local x2APIC entry, and one APIC ID is one CPU. The first
    /// entry wins.
    fn add_cpu(&mut self, cpu: Cpu, offset: usize) -> Result<(), AcpiError> {
        if self.cpus.iter().any(|known| known.apic_id == cpu.apic_id) {
            return Ok(());
        }
        self.cpus.push(cpu).map_err(|_| AcpiError::TooManyCpus {
            offset,
            limit: MAX_CPUS,
        })
    }
}

fn truncated(entry: &MadtEntry<'_>, minimum: usize) -> AcpiError {
    AcpiError::MadtEntry {
        offset: entry.offset,
        problem: EntryProblem::Truncated {
            entry_type: entry.entry_type,
            length: entry.bytes.len() as u8,
            minimum,
        },
    }
}

/// The APIC ID a Local APIC or Local x2APIC entry names, and the offset of its flags
/// within the entry; `None` for every other entry type. A CPU entry too short for its
/// structure is an error, as in [`parse_madt`].
pub(super) fn cpu_entry_id(entry: &MadtEntry<'_>) -> Result<Option<(u32, usize)>, AcpiError> {
    match entry.entry_type {
        MADT_TYPE_LOCAL_APIC => {
            let local = LocalApicEntry::read(entry.bytes)
                .ok_or_else(|| truncated(entry, size_of::<LocalApicEntry>()))?;
            Ok(Some((
                u32::from(local.apic_id),
                offset_of!(LocalApicEntry, flags),
            )))
        }
        MADT_TYPE_LOCAL_X2APIC => {
            let x2 = LocalX2ApicEntry::read(entry.bytes)
                .ok_or_else(|| truncated(entry, size_of::<LocalX2ApicEntry>()))?;
            Ok(Some((x2.x2apic_id, offset_of!(LocalX2ApicEntry, flags))))
        }
        _ => Ok(None),
    }
}

/// Reads a Multiprocessor Wakeup entry of either version.
fn parse_wakeup(entry: &MadtEntry<'_>) -> Result<WakeupEntry, AcpiError> {
    let bytes = entry.bytes;
    let (Some(mailbox_version), Some(mailbox_address)) = (
        u16::read_at(
            bytes,
            offset_of!(MultiprocessorWakeupEntry, mailbox_version),
        ),
        u64::read_at(
            bytes,
            offset_of!(MultiprocessorWakeupEntry, mailbox_address),
        ),
    ) else {
        return Err(truncated(entry, WAKEUP_ENTRY_LENGTH_V0));
    };
    let reset_vector = if mailbox_version >= MAILBOX_VERSION_RESET_VECTOR {
        let vector = u64::read_at(bytes, offset_of!(MultiprocessorWakeupEntry, reset_vector));
        Some(vector.ok_or(AcpiError::MadtEntry {
            offset: entry.offset,
            problem: EntryProblem::WakeupVersion {
                mailbox_version,
                length: bytes.len() as u8,
            },
        })?)
    } else {
        None
    };
    Ok(WakeupEntry {
        mailbox_version,
        mailbox_address,
        reset_vector,
    })
}

/// Parses a MADT: the local APIC address, flags, every CPU from Local APIC and Local
/// x2APIC entries, and an existing Multiprocessor Wakeup entry.
///
/// Entries of other types are skipped. An entry may be longer than its structure
/// (later ACPI versions append fields) but not shorter. Entries naming the broadcast
/// APIC ID are skipped: no CPU has that ID. More than [`MAX_CPUS`] distinct CPUs is an
/// error, so parkboot never silently leaves CPUs out.
pub fn parse_madt(bytes: &[u8]) -> Result<Madt, AcpiError> {
    let entries = madt_entries(bytes)?;
    let header = entries.header();
    let mut madt = Madt {
        local_apic_address: header.local_apic_address,
        flags: header.flags,
        cpus: Vec::new(),
        wakeup: None,
    };
    for entry in entries {
        let entry = entry?;
        match entry.entry_type {
            MADT_TYPE_LOCAL_APIC => {
                let local = LocalApicEntry::read(entry.bytes)
                    .ok_or_else(|| truncated(&entry, size_of::<LocalApicEntry>()))?;
                if local.apic_id == LOCAL_APIC_BROADCAST_ID {
                    continue;
                }
                let cpu = Cpu::from_flags(
                    u32::from(local.apic_id),
                    u32::from(local.processor_uid),
                    local.flags,
                    false,
                );
                madt.add_cpu(cpu, entry.offset)?;
            }
            MADT_TYPE_LOCAL_X2APIC => {
                let x2 = LocalX2ApicEntry::read(entry.bytes)
                    .ok_or_else(|| truncated(&entry, size_of::<LocalX2ApicEntry>()))?;
                if x2.x2apic_id == LOCAL_X2APIC_BROADCAST_ID {
                    continue;
                }
                let cpu = Cpu::from_flags(x2.x2apic_id, x2.processor_uid, x2.flags, true);
                madt.add_cpu(cpu, entry.offset)?;
            }
            MADT_TYPE_MULTIPROCESSOR_WAKEUP => {
                let wakeup = parse_wakeup(&entry)?;
                if madt.wakeup.is_none() {
                    madt.wakeup = Some(wakeup);
                }
            }
            _ => {}
        }
    }
    Ok(madt)
}
