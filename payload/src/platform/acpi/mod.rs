//! ACPI tables: find and validate the platform's tables, read the MADT, and build
//! parkboot's own copy of the tables with a Multiprocessor Wakeup entry.
//!
//! parkboot parks every application processor once and tells each kernel how to wake
//! them through the standard ACPI Multiprocessor Wakeup mailbox (MADT entry type 0x10,
//! version 1 with a ResetVector). The platform's MADT does not list that mailbox, so
//! parkboot hands kernels a new RSDP, a new XSDT and a new MADT ([`rewrite_tables`]);
//! every other table stays where the platform put it, untouched.
//!
//! Only the RSDP, the root table (XSDT or RSDT) and the MADT must be valid. Any other
//! table that is broken (bad checksum, odd length, unreadable) is listed with a warning
//! ([`Tables::warnings`]) and kept as it is, as Linux keeps such tables and warns.
//!
//! Everything here reads physical memory only through [`PhysicalMemory`] and writes only
//! into caller-provided byte slices, so it runs unchanged in host unit tests. Every
//! field is read with a bounds check: a broken table is an [`AcpiError`] that says which
//! table, where, and what was wrong, never a panic.
//!
//! The byte layouts are the `#[repr(C, packed)]` structs below with compile-time size
//! and offset assertions; the parsers read and write each field at its `offset_of!`,
//! little-endian, so the struct is the single description of each layout.

use core::fmt;
use core::mem::{offset_of, size_of};

use heapless::Vec;

use crate::platform::PhysicalMemory;
use crate::wire::{wire_struct, WireField};

mod advertise;
mod madt;
mod rewrite;
#[cfg(test)]
mod tests;

pub use advertise::{cpus_to_withhold, Withheld, WithheldReason};
pub use madt::{
    madt_entries, parse_madt, Cpu, LocalApicEntry, LocalX2ApicEntry, Madt, MadtEntries, MadtEntry,
    MadtHeader, MultiprocessorWakeupEntry, WakeupEntry, ENTRY_HEADER_LENGTH,
    LOCAL_APIC_BROADCAST_ID, LOCAL_APIC_FLAG_ENABLED, LOCAL_APIC_FLAG_ONLINE_CAPABLE,
    LOCAL_X2APIC_BROADCAST_ID, MADT_FIXED_LENGTH, MADT_TYPE_LOCAL_APIC, MADT_TYPE_LOCAL_X2APIC,
    MADT_TYPE_MULTIPROCESSOR_WAKEUP, MAILBOX_VERSION_RESET_VECTOR, MAILBOX_VERSION_WAKEUP_ONLY,
    MAX_CPUS, WAKEUP_ENTRY_LENGTH_V0, WAKEUP_ENTRY_LENGTH_V1, WAKEUP_MAILBOX_ALIGNMENT,
};
pub use rewrite::{
    build_rsdp, build_xsdt, madt_with_wakeup, reserve_kernel_tables, rewrite_tables,
    PristineTables, Rewritten, KERNEL_TABLES_REPORT_AS, TABLE_ALIGNMENT,
};

/// A four-character ACPI table signature ("APIC", "XSDT", ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 4]);

impl Signature {
    /// Multiple APIC Description Table: lists the CPUs and carries the wakeup mailbox.
    pub const MADT: Signature = Signature(*b"APIC");
    /// Extended System Description Table: the 64-bit list of every other table.
    pub const XSDT: Signature = Signature(*b"XSDT");
    /// Root System Description Table: the 32-bit list (ACPI 1.0).
    pub const RSDT: Signature = Signature(*b"RSDT");
    /// Fixed ACPI Description Table.
    pub const FADT: Signature = Signature(*b"FACP");
}

impl fmt::Display for Signature {
    /// Printable ASCII as is, anything else as `\xNN`, so a garbage signature in an
    /// error message stays readable on a serial console.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in &self.0 {
            if byte.is_ascii_graphic() || byte == b' ' {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(\"{self}\")")
    }
}

// ---------------------------------------------------------------------------------------
// Byte copies with bounds checks (structures and integers go through `WireField`).

/// Copies `value` into `out` at `offset`; `None` when it does not fit.
fn put(out: &mut [u8], offset: usize, value: &[u8]) -> Option<()> {
    out.get_mut(offset..offset.checked_add(value.len())?)?
        .copy_from_slice(value);
    Some(())
}

// ---------------------------------------------------------------------------------------
// Checksums.

/// The wrapping sum of `bytes`. An ACPI structure is valid when the sum over its whole
/// checksummed range is zero.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte))
}

/// The checksum byte that would make `bytes` sum to zero, given that `bytes` currently
/// holds `stored` in its checksum field. Used for "expected" in error messages.
fn expected_checksum(bytes: &[u8], stored: u8) -> u8 {
    stored.wrapping_sub(checksum(bytes))
}

/// Sets the checksum byte at `offset` so that `table` sums to zero.
///
/// The callers pass the checksum offset of a structure they have just written into a
/// buffer of at least that structure's size; an offset outside `table` changes nothing.
fn fix_checksum(table: &mut [u8], offset: usize) {
    let Some(byte) = table.get_mut(offset) else {
        return;
    };
    *byte = 0;
    let sum = checksum(table);
    if let Some(byte) = table.get_mut(offset) {
        *byte = sum.wrapping_neg();
    }
}

// ---------------------------------------------------------------------------------------
// RSDP.

/// "RSD PTR ", the first eight bytes of every RSDP.
pub const RSDP_SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// The RSDP sits on a 16-byte boundary (ACPI 5.2.5.1); the scan only looks there.
pub const RSDP_ALIGNMENT: u64 = 16;
/// Bytes covered by the original (ACPI 1.0) checksum: up to and including `rsdt_address`.
pub const RSDP_V1_LENGTH: usize = offset_of!(Rsdp, length);
/// Size of the ACPI 2.0+ RSDP, covered by the extended checksum.
pub const RSDP_V2_LENGTH: usize = size_of::<Rsdp>();
/// RSDP revision from ACPI 2.0 on: has `length`, `xsdt_address` and the extended checksum.
pub const RSDP_REVISION_2: u8 = 2;
/// Where BIOS-style firmware leaves the RSDP: the read-only BIOS area below 1 MiB.
pub const RSDP_SCAN_START: u64 = 0xE_0000;
/// End (exclusive) of the BIOS area scanned for the RSDP.
pub const RSDP_SCAN_END: u64 = 0x10_0000;

wire_struct! {
    packed
    /// Root System Description Pointer (ACPI 5.2.5.3): where the RSDT and XSDT are.
    pub struct Rsdp {
        pub signature: [u8; 8],
        /// Makes the first [`RSDP_V1_LENGTH`] bytes sum to zero.
        pub checksum: u8,
        pub oem_id: [u8; 6],
        /// 0 for ACPI 1.0 (20-byte structure), 2 from ACPI 2.0 on.
        pub revision: u8,
        /// 32-bit physical address of the RSDT.
        pub rsdt_address: u32,
        /// Size of the whole structure (revision >= 2 only).
        pub length: u32,
        /// 64-bit physical address of the XSDT (revision >= 2 only).
        pub xsdt_address: u64,
        /// Makes all `length` bytes sum to zero (revision >= 2 only).
        pub extended_checksum: u8,
        pub reserved: [u8; 3],
    }
}

const _: () = assert!(size_of::<Rsdp>() == 36);
const _: () = assert!(offset_of!(Rsdp, checksum) == 8);
const _: () = assert!(offset_of!(Rsdp, oem_id) == 9);
const _: () = assert!(offset_of!(Rsdp, revision) == 15);
const _: () = assert!(offset_of!(Rsdp, rsdt_address) == 16);
const _: () = assert!(offset_of!(Rsdp, length) == 20);
const _: () = assert!(offset_of!(Rsdp, xsdt_address) == 24);
const _: () = assert!(offset_of!(Rsdp, extended_checksum) == 32);
const _: () = assert!(offset_of!(Rsdp, reserved) == 33);

impl Rsdp {
    /// Reads the fields present in `bytes`; the revision 2 fields read as zero when
    /// `bytes` holds only the 20-byte ACPI 1.0 structure.
    fn read(bytes: &[u8]) -> Option<Rsdp> {
        if let Some(rsdp) = <Rsdp as WireField>::read_from(bytes) {
            return Some(rsdp);
        }
        let mut padded = [0u8; RSDP_V2_LENGTH];
        padded
            .get_mut(..RSDP_V1_LENGTH)?
            .copy_from_slice(bytes.get(..RSDP_V1_LENGTH)?);
        <Rsdp as WireField>::read_from(&padded)
    }

    /// Writes all [`RSDP_V2_LENGTH`] bytes, checksums as they are in `self`.
    fn write(&self, out: &mut [u8]) -> Option<()> {
        WireField::write_to(*self, out)
    }

    /// Whether the XSDT is the table to use: ACPI 2.0+ and a nonzero address.
    pub fn has_xsdt(&self) -> bool {
        self.revision >= RSDP_REVISION_2 && { self.xsdt_address } != 0
    }
}

/// The address of the first valid RSDP in `start..end`, scanning 16-byte boundaries.
///
/// A candidate with the right signature but a bad checksum is skipped, not returned:
/// the eight signature bytes can occur by chance in the BIOS area. Used on
/// [`RSDP_SCAN_START`]..[`RSDP_SCAN_END`] when the boot source gave no RSDP.
pub fn find_rsdp(mem: &impl PhysicalMemory, start: u64, end: u64) -> Option<u64> {
    let mut address = start.checked_next_multiple_of(RSDP_ALIGNMENT)?;
    while address.checked_add(RSDP_V1_LENGTH as u64)? <= end {
        if mem.bytes(address, RSDP_SIGNATURE.len()) == Some(&RSDP_SIGNATURE[..])
            && parse_rsdp(mem, address).is_ok()
        {
            return Some(address);
        }
        address = address.checked_add(RSDP_ALIGNMENT)?;
    }
    None
}

/// Reads and validates the RSDP at `address`: signature, the 20-byte checksum, and for
/// revision >= 2 the length and the extended checksum.
pub fn parse_rsdp(mem: &impl PhysicalMemory, address: u64) -> Result<Rsdp, AcpiError> {
    let v1 = mem
        .bytes(address, RSDP_V1_LENGTH)
        .ok_or(AcpiError::RsdpUnreadable {
            address,
            length: RSDP_V1_LENGTH as u32,
        })?;
    let rsdp = Rsdp::read(v1).ok_or(AcpiError::RsdpUnreadable {
        address,
        length: RSDP_V1_LENGTH as u32,
    })?;
    if rsdp.signature != RSDP_SIGNATURE {
        return Err(AcpiError::RsdpSignature { address });
    }
    if checksum(v1) != 0 {
        return Err(AcpiError::RsdpChecksum {
            address,
            stored: rsdp.checksum,
            expected: expected_checksum(v1, rsdp.checksum),
        });
    }
    if rsdp.revision < RSDP_REVISION_2 {
        return Ok(rsdp);
    }
    let length_field = u32::read_at(
        mem.bytes(address, RSDP_V2_LENGTH)
            .ok_or(AcpiError::RsdpUnreadable {
                address,
                length: RSDP_V2_LENGTH as u32,
            })?,
        offset_of!(Rsdp, length),
    )
    .unwrap_or(0);
    if (length_field as usize) < RSDP_V2_LENGTH {
        return Err(AcpiError::RsdpLength {
            address,
            length: length_field,
        });
    }
    let full = mem
        .bytes(address, length_field as usize)
        .ok_or(AcpiError::RsdpUnreadable {
            address,
            length: length_field,
        })?;
    let rsdp = Rsdp::read(full).ok_or(AcpiError::RsdpUnreadable {
        address,
        length: length_field,
    })?;
    if checksum(full) != 0 {
        return Err(AcpiError::RsdpExtendedChecksum {
            address,
            stored: rsdp.extended_checksum,
            expected: expected_checksum(full, rsdp.extended_checksum),
        });
    }
    Ok(rsdp)
}

// ---------------------------------------------------------------------------------------
// System description tables.

/// Size of the header every system description table starts with.
pub const SDT_HEADER_LENGTH: usize = size_of::<SdtHeader>();
/// Bytes per table address in the XSDT.
pub const XSDT_ENTRY_SIZE: usize = size_of::<u64>();
/// Bytes per table address in the RSDT.
pub const RSDT_ENTRY_SIZE: usize = size_of::<u32>();
/// The XSDT revision defined by ACPI 2.0 and still current.
pub const XSDT_REVISION: u8 = 1;
/// How many tables parkboot keeps from the XSDT/RSDT. QEMU lists about six; boards with
/// many SSDTs stay well below this.
pub const MAX_TABLES: usize = 128;

wire_struct! {
    packed
    /// System Description Table header (ACPI 5.2.6), 36 bytes at the start of every table.
    pub struct SdtHeader {
        pub signature: [u8; 4],
        /// Bytes in the whole table, header included.
        pub length: u32,
        pub revision: u8,
        /// Makes all `length` bytes sum to zero.
        pub checksum: u8,
        pub oem_id: [u8; 6],
        pub oem_table_id: [u8; 8],
        pub oem_revision: u32,
        pub creator_id: [u8; 4],
        pub creator_revision: u32,
    }
}

const _: () = assert!(size_of::<SdtHeader>() == 36);
const _: () = assert!(offset_of!(SdtHeader, length) == 4);
const _: () = assert!(offset_of!(SdtHeader, revision) == 8);
const _: () = assert!(offset_of!(SdtHeader, checksum) == 9);
const _: () = assert!(offset_of!(SdtHeader, oem_id) == 10);
const _: () = assert!(offset_of!(SdtHeader, oem_table_id) == 16);
const _: () = assert!(offset_of!(SdtHeader, oem_revision) == 24);
const _: () = assert!(offset_of!(SdtHeader, creator_id) == 28);
const _: () = assert!(offset_of!(SdtHeader, creator_revision) == 32);

impl SdtHeader {
    /// Reads the header at the start of `bytes`.
    pub fn read(bytes: &[u8]) -> Option<SdtHeader> {
        <SdtHeader as WireField>::read_from(bytes)
    }

    /// Writes the 36 header bytes at the start of `out`, checksum as it is in `self`.
    pub fn write(&self, out: &mut [u8]) -> Option<()> {
        WireField::write_to(*self, out)
    }

    pub fn signature(&self) -> Signature {
        Signature(self.signature)
    }
}

/// Reads the table at `address` and validates its header length and checksum.
///
/// `listed_in` names the table that pointed here, for the error when not even the
/// header can be read. Returns the header and the whole table's bytes.
fn read_table(
    mem: &impl PhysicalMemory,
    address: u64,
    listed_in: Signature,
) -> Result<(SdtHeader, &[u8]), AcpiError> {
    let header = mem
        .bytes(address, SDT_HEADER_LENGTH)
        .and_then(SdtHeader::read)
        .ok_or(AcpiError::TableHeaderUnreadable { address, listed_in })?;
    let signature = header.signature();
    let length = header.length;
    if (length as usize) < SDT_HEADER_LENGTH {
        return Err(AcpiError::TableTooShort {
            signature,
            address,
            length,
        });
    }
    let bytes = mem
        .bytes(address, length as usize)
        .ok_or(AcpiError::TableUnreadable {
            signature,
            address,
            length,
        })?;
    if checksum(bytes) != 0 {
        return Err(AcpiError::TableChecksum {
            signature,
            address,
            stored: header.checksum,
            expected: expected_checksum(bytes, header.checksum),
        });
    }
    Ok((header, bytes))
}

/// One table listed in the XSDT or RSDT.
///
/// A table with a problem (a checksum that does not sum to zero, a length shorter than
/// its header or running into memory that cannot be read, a header that cannot be read
/// at all) is still listed: parkboot keeps it, referenced in place, in the tables it
/// hands kernels, as Linux keeps and warns about such tables. Only the tables parkboot
/// reads itself must be valid (the MADT: [`Tables::madt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRef {
    /// The header's signature; `None` when not even the header can be read.
    pub signature: Option<Signature>,
    /// Physical address of the table header (the root table's entry).
    pub address: u64,
    /// Bytes in the whole table (the header's `length`); 0 when the header is unreadable.
    pub length: u32,
    /// What is wrong with the table, if anything: one of
    /// [`AcpiError::TableHeaderUnreadable`], [`AcpiError::TableTooShort`],
    /// [`AcpiError::TableUnreadable`] or [`AcpiError::TableChecksum`].
    pub problem: Option<AcpiError>,
}

impl TableRef {
    /// Reads the header of the table at `address` (listed in `listed_in`) and checks its
    /// length and checksum; a problem is recorded, not returned.
    fn read(mem: &impl PhysicalMemory, address: u64, listed_in: Signature) -> TableRef {
        match read_table(mem, address, listed_in) {
            Ok((header, _)) => TableRef {
                signature: Some(header.signature()),
                address,
                length: header.length,
                problem: None,
            },
            Err(problem) => {
                let header = mem
                    .bytes(address, SDT_HEADER_LENGTH)
                    .and_then(SdtHeader::read);
                TableRef {
                    signature: header.map(|h| h.signature()),
                    address,
                    length: header.map_or(0, |h| h.length),
                    problem: Some(problem),
                }
            }
        }
    }

    /// Whether the table was read whole and sums to zero.
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// The platform's tables: the RSDP, its root table (XSDT or RSDT) and every table the
/// root lists.
///
/// The RSDP and the root table must be valid, or there is no table list at all. Every
/// listed table is kept in the list whatever its state; [`Tables::warnings`] names the
/// broken ones, and [`Tables::madt`] gives the MADT only when it is valid.
#[derive(Clone, Debug)]
pub struct Tables {
    pub rsdp_address: u64,
    pub rsdp: Rsdp,
    /// [`Signature::XSDT`] or [`Signature::RSDT`]: which root table was read.
    pub root_signature: Signature,
    pub root_address: u64,
    /// The root table's header, used as the template for parkboot's own XSDT.
    pub root_header: SdtHeader,
    entries: Vec<TableRef, MAX_TABLES>,
}

impl Tables {
    /// Reads the RSDP at `rsdp_address` and the table tree under it.
    ///
    /// The XSDT is read when the RSDP is revision 2 or later and gives a nonzero XSDT
    /// address, else the RSDT (as an ACPI 2.0+ OS does). A broken RSDP or root table is
    /// an error. Zero entries in the root table are skipped: they name no table. Any
    /// other entry is listed even when its table is broken, with the problem recorded
    /// (see [`TableRef`]): a broken table parkboot does not need must not stop a boot
    /// that the kernels would survive.
    pub fn new(mem: &impl PhysicalMemory, rsdp_address: u64) -> Result<Tables, AcpiError> {
        let rsdp = parse_rsdp(mem, rsdp_address)?;
        let (expected, root_address, entry_size) = if rsdp.has_xsdt() {
            (Signature::XSDT, rsdp.xsdt_address, XSDT_ENTRY_SIZE)
        } else if rsdp.rsdt_address != 0 {
            (
                Signature::RSDT,
                u64::from(rsdp.rsdt_address),
                RSDT_ENTRY_SIZE,
            )
        } else {
            return Err(AcpiError::NoRootTable {
                address: rsdp_address,
            });
        };
        let (root_header, root) = read_table(mem, root_address, expected)?;
        if root_header.signature() != expected {
            return Err(AcpiError::TableSignature {
                address: root_address,
                expected,
                found: root_header.signature(),
            });
        }
        let list = root.get(SDT_HEADER_LENGTH..).unwrap_or(&[]);
        if list.len() % entry_size != 0 {
            return Err(AcpiError::RootTableLength {
                signature: expected,
                address: root_address,
                length: root_header.length,
                entry_size,
            });
        }
        let mut entries = Vec::new();
        for raw in list.chunks_exact(entry_size) {
            let address = if entry_size == XSDT_ENTRY_SIZE {
                u64::read_at(raw, 0)
            } else {
                u32::read_at(raw, 0).map(u64::from)
            }
            .unwrap_or(0);
            if address == 0 {
                continue;
            }
            entries
                .push(TableRef::read(mem, address, expected))
                .map_err(|_| AcpiError::TooManyTables {
                    signature: expected,
                    address: root_address,
                    limit: MAX_TABLES,
                })?;
        }
        Ok(Tables {
            rsdp_address,
            rsdp,
            root_signature: expected,
            root_address,
            root_header,
            entries,
        })
    }

    /// Index of the first table with `signature` (the one an OS uses).
    fn position(&self, signature: Signature) -> Option<usize> {
        self.entries
            .iter()
            .position(|entry| entry.signature == Some(signature))
    }

    /// Address and length of the first table with `signature` (the one an OS uses),
    /// valid or not.
    pub fn find(&self, signature: Signature) -> Option<(u64, u32)> {
        let entry = self.entries.get(self.position(signature)?)?;
        Some((entry.address, entry.length))
    }

    /// The MADT's address and bytes: the first table with signature "APIC", which must
    /// be whole and sum to zero. Without a valid MADT parkboot cannot know the CPUs.
    pub fn madt<'m>(&self, mem: &'m impl PhysicalMemory) -> Result<(u64, &'m [u8]), AcpiError> {
        let entry = self
            .position(Signature::MADT)
            .and_then(|index| self.entries.get(index))
            .ok_or(AcpiError::NoMadt)?;
        if let Some(problem) = entry.problem {
            return Err(problem);
        }
        let bytes =
            mem.bytes(entry.address, entry.length as usize)
                .ok_or(AcpiError::TableUnreadable {
                    signature: Signature::MADT,
                    address: entry.address,
                    length: entry.length,
                })?;
        Ok((entry.address, bytes))
    }

    /// The problems of the listed tables parkboot does not need, in the root's order:
    /// every broken table except the MADT that [`Tables::madt`] reports on. Each names
    /// its table (signature when readable, address, what is wrong); the tables stay in
    /// the list.
    pub fn warnings(&self) -> impl Iterator<Item = &AcpiError> + '_ {
        let madt = self.position(Signature::MADT);
        self.entries
            .iter()
            .enumerate()
            .filter(move |&(index, _)| Some(index) != madt)
            .filter_map(|(_, entry)| entry.problem.as_ref())
    }

    /// Every table the root lists, in the root's order.
    pub fn entries(&self) -> &[TableRef] {
        &self.entries
    }

    pub fn iter(&self) -> core::slice::Iter<'_, TableRef> {
        self.entries.iter()
    }

    /// The bytes of the first table with `signature`, read through `mem`, when that
    /// table is valid.
    pub fn table_bytes<'m>(
        &self,
        mem: &'m impl PhysicalMemory,
        signature: Signature,
    ) -> Option<&'m [u8]> {
        let entry = self.entries.get(self.position(signature)?)?;
        if !entry.is_valid() {
            return None;
        }
        mem.bytes(entry.address, entry.length as usize)
    }
}

impl<'a> IntoIterator for &'a Tables {
    type Item = &'a TableRef;
    type IntoIter = core::slice::Iter<'a, TableRef>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

// ---------------------------------------------------------------------------------------
// Errors.

/// What was wrong with one MADT entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryProblem {
    /// Length 0 or 1: the walk could never advance past it.
    TooShort { length: u8 },
    /// The entry's length runs past the end of the MADT.
    PastEnd { length: u8, remaining: usize },
    /// Shorter than the structure its type defines.
    Truncated {
        entry_type: u8,
        length: u8,
        minimum: usize,
    },
    /// Fewer than the two bytes of an entry header (type, length) are left.
    HeaderPastEnd { remaining: usize },
    /// A Multiprocessor Wakeup entry whose MailBoxVersion needs more bytes than it has.
    WakeupVersion { mailbox_version: u16, length: u8 },
}

/// Why parkboot could not read or rebuild the ACPI tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// `length` bytes of the RSDP at `address` cannot be read.
    RsdpUnreadable { address: u64, length: u32 },
    /// No "RSD PTR " at `address`.
    RsdpSignature { address: u64 },
    /// The first 20 bytes of the RSDP do not sum to zero.
    RsdpChecksum {
        address: u64,
        stored: u8,
        expected: u8,
    },
    /// A revision 2 RSDP whose length is shorter than the revision 2 structure.
    RsdpLength { address: u64, length: u32 },
    /// The whole revision 2 RSDP does not sum to zero.
    RsdpExtendedChecksum {
        address: u64,
        stored: u8,
        expected: u8,
    },
    /// The RSDP gives neither an XSDT nor an RSDT address.
    NoRootTable { address: u64 },
    /// The 36-byte header of a table listed in `listed_in` cannot be read.
    TableHeaderUnreadable { address: u64, listed_in: Signature },
    /// A table's length is shorter than its own header.
    TableTooShort {
        signature: Signature,
        address: u64,
        length: u32,
    },
    /// A table's `length` bytes cannot all be read.
    TableUnreadable {
        signature: Signature,
        address: u64,
        length: u32,
    },
    /// A table does not sum to zero.
    TableChecksum {
        signature: Signature,
        address: u64,
        stored: u8,
        expected: u8,
    },
    /// The RSDP's root table pointer leads to a table of another kind.
    TableSignature {
        address: u64,
        expected: Signature,
        found: Signature,
    },
    /// The root table's entry area is not a whole number of addresses.
    RootTableLength {
        signature: Signature,
        address: u64,
        length: u32,
        entry_size: usize,
    },
    /// The root table lists more than [`MAX_TABLES`] tables.
    TooManyTables {
        signature: Signature,
        address: u64,
        limit: usize,
    },
    /// The root table lists no MADT.
    NoMadt,
    /// The bytes given as a MADT do not start with "APIC".
    MadtSignature { found: Signature },
    /// The MADT (header length or buffer) is shorter than its fixed part.
    MadtTooShort { length: usize, minimum: usize },
    /// The MADT header claims more bytes than the buffer holds.
    MadtTruncated {
        header_length: u32,
        available: usize,
    },
    /// One entry of the MADT is malformed; `offset` is from the start of the MADT.
    MadtEntry {
        offset: usize,
        problem: EntryProblem,
    },
    /// The MADT lists more than [`MAX_CPUS`] distinct CPUs; `offset` is the first entry
    /// that did not fit.
    TooManyCpus { offset: usize, limit: usize },
    /// The new wakeup mailbox is not on a 4 KiB boundary, as ACPI requires.
    MailboxMisaligned { address: u64 },
    /// An output buffer is too small for what has to be written into it.
    OutputTooSmall { needed: usize, available: usize },
    /// A built table would be longer than its 32-bit length field can say.
    TableTooLong { signature: Signature, length: usize },
    /// The output buffer's physical address plus an offset in it overflows.
    AddressOverflow { base: u64, offset: usize },
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EntryProblem::TooShort { length } => write!(
                f,
                "length {length} (an entry is at least {} bytes)",
                madt::ENTRY_HEADER_LENGTH
            ),
            EntryProblem::HeaderPastEnd { remaining } => write!(
                f,
                "only {remaining} byte(s) left, an entry header is {} bytes",
                madt::ENTRY_HEADER_LENGTH
            ),
            EntryProblem::PastEnd { length, remaining } => write!(
                f,
                "length {length} runs past the end of the table ({remaining} bytes left)"
            ),
            EntryProblem::Truncated {
                entry_type,
                length,
                minimum,
            } => write!(
                f,
                "type {entry_type:#x} ({}) has length {length}, shorter than its {minimum} bytes",
                madt::entry_type_name(entry_type)
            ),
            EntryProblem::WakeupVersion {
                mailbox_version,
                length,
            } => write!(
                f,
                "Multiprocessor Wakeup MailBoxVersion {mailbox_version} has length {length} \
                 (version {MAILBOX_VERSION_RESET_VECTOR} and later need \
                 {WAKEUP_ENTRY_LENGTH_V1} bytes)"
            ),
        }
    }
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiError::RsdpUnreadable { address, length } => {
                write!(f, "RSDP at {address:#x}: its {length} bytes cannot be read")
            }
            AcpiError::RsdpSignature { address } => {
                write!(f, "RSDP at {address:#x}: signature is not \"RSD PTR \"")
            }
            AcpiError::RsdpChecksum {
                address,
                stored,
                expected,
            } => write!(
                f,
                "RSDP at {address:#x}: checksum {stored:#04x} over the first {RSDP_V1_LENGTH} \
                 bytes does not sum to zero (expected {expected:#04x})"
            ),
            AcpiError::RsdpLength { address, length } => write!(
                f,
                "RSDP at {address:#x}: revision {RSDP_REVISION_2} structure with length \
                 {length}, shorter than {RSDP_V2_LENGTH} bytes"
            ),
            AcpiError::RsdpExtendedChecksum {
                address,
                stored,
                expected,
            } => write!(
                f,
                "RSDP at {address:#x}: extended checksum {stored:#04x} does not sum to zero \
                 (expected {expected:#04x})"
            ),
            AcpiError::NoRootTable { address } => write!(
                f,
                "RSDP at {address:#x}: gives neither an XSDT nor an RSDT address"
            ),
            AcpiError::TableHeaderUnreadable { address, listed_in } => write!(
                f,
                "table at {address:#x} (listed in the {listed_in}): its \
                 {SDT_HEADER_LENGTH}-byte header cannot be read"
            ),
            AcpiError::TableTooShort {
                signature,
                address,
                length,
            } => write!(
                f,
                "{signature} at {address:#x}: length {length} is shorter than the \
                 {SDT_HEADER_LENGTH}-byte header"
            ),
            AcpiError::TableUnreadable {
                signature,
                address,
                length,
            } => write!(
                f,
                "{signature} at {address:#x}: length {length} runs into memory that cannot be read"
            ),
            AcpiError::TableChecksum {
                signature,
                address,
                stored,
                expected,
            } => write!(
                f,
                "{signature} at {address:#x}: checksum {stored:#04x} does not sum to zero \
                 (expected {expected:#04x})"
            ),
            AcpiError::TableSignature {
                address,
                expected,
                found,
            } => write!(
                f,
                "table at {address:#x}: signature \"{found}\" where the RSDP promised {expected}"
            ),
            AcpiError::RootTableLength {
                signature,
                address,
                length,
                entry_size,
            } => write!(
                f,
                "{signature} at {address:#x}: length {length} leaves a partial entry after the \
                 header (entries are {entry_size} bytes)"
            ),
            AcpiError::TooManyTables {
                signature,
                address,
                limit,
            } => write!(
                f,
                "{signature} at {address:#x}: lists more than {limit} tables"
            ),
            AcpiError::NoMadt => write!(
                f,
                "no MADT (signature \"{}\") in the ACPI tables",
                Signature::MADT
            ),
            AcpiError::MadtSignature { found } => {
                write!(
                    f,
                    "MADT: signature \"{found}\" instead of \"{}\"",
                    Signature::MADT
                )
            }
            AcpiError::MadtTooShort { length, minimum } => write!(
                f,
                "MADT: length {length} is shorter than its {minimum}-byte fixed part"
            ),
            AcpiError::MadtTruncated {
                header_length,
                available,
            } => write!(
                f,
                "MADT: header length {header_length} is larger than the {available} bytes available"
            ),
            AcpiError::MadtEntry { offset, problem } => {
                write!(f, "MADT entry at offset {offset:#x}: {problem}")
            }
            AcpiError::TooManyCpus { offset, limit } => write!(
                f,
                "MADT entry at offset {offset:#x}: more than {limit} CPUs (parkboot's limit)"
            ),
            AcpiError::MailboxMisaligned { address } => write!(
                f,
                "wakeup mailbox at {address:#x} is not {WAKEUP_MAILBOX_ALIGNMENT}-byte aligned"
            ),
            AcpiError::OutputTooSmall { needed, available } => write!(
                f,
                "output buffer of {available} bytes is too small: {needed} bytes needed"
            ),
            AcpiError::TableTooLong { signature, length } => write!(
                f,
                "new {signature} would be {length} bytes, more than a table length can say"
            ),
            AcpiError::AddressOverflow { base, offset } => write!(
                f,
                "output at {base:#x} + {offset:#x} overflows the physical address space"
            ),
        }
    }
}
