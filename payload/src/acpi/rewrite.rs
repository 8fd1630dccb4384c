//! parkboot's own copy of the ACPI root: a MADT with a Multiprocessor Wakeup entry, an
//! XSDT that lists it, and an RSDP that points at that XSDT.
//!
//! Kernels booted by parkboot find the parked APs through the standard wakeup mailbox,
//! which only works if the MADT they read advertises it. The platform's tables stay
//! untouched (they may be in memory parkboot must not write, and a later boot may need
//! them as they were); only the three tables on the path from the RSDP to the MADT are
//! rebuilt, in a buffer the caller reserved. Every other table is referenced in place.

use core::mem::offset_of;

use heapless::Vec;

use super::madt::{
    madt_entries, MultiprocessorWakeupEntry, MADT_FIXED_LENGTH, MADT_TYPE_MULTIPROCESSOR_WAKEUP,
    WAKEUP_ENTRY_LENGTH_V1, WAKEUP_MAILBOX_ALIGNMENT,
};
use super::{
    fix_checksum, put, AcpiError, Rsdp, SdtHeader, Signature, Tables, MAX_TABLES, RSDP_ALIGNMENT,
    RSDP_REVISION_2, RSDP_SIGNATURE, RSDP_V1_LENGTH, RSDP_V2_LENGTH, SDT_HEADER_LENGTH,
    XSDT_ENTRY_SIZE, XSDT_REVISION,
};
use crate::platform::PhysicalMemory;

/// ACPI requires no alignment for the MADT and XSDT; parkboot puts each on an 8-byte
/// boundary so the header's multi-byte fields are naturally aligned for the OS.
pub const TABLE_ALIGNMENT: u64 = 8;

/// Where [`rewrite_tables`] put the new tables (physical addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The new RSDP: what parkboot hands kernels (boot_params, multiboot2, PVH).
    pub rsdp: u64,
    pub xsdt: u64,
    pub madt: u64,
    /// Bytes of the output buffer used, from its start (alignment padding included).
    pub bytes_used: usize,
}

fn output_too_small(needed: usize, available: usize) -> AcpiError {
    AcpiError::OutputTooSmall { needed, available }
}

/// Length of the MADT [`madt_with_wakeup`] builds from `original`, after checking every
/// entry of `original`.
fn madt_with_wakeup_length(original: &[u8]) -> Result<usize, AcpiError> {
    let mut kept = 0usize;
    for entry in madt_entries(original)? {
        let entry = entry?;
        if entry.entry_type != MADT_TYPE_MULTIPROCESSOR_WAKEUP {
            kept = kept.saturating_add(entry.bytes.len());
        }
    }
    let length = MADT_FIXED_LENGTH
        .saturating_add(kept)
        .saturating_add(WAKEUP_ENTRY_LENGTH_V1);
    if u32::try_from(length).is_err() {
        return Err(AcpiError::TableTooLong {
            signature: Signature::MADT,
            length,
        });
    }
    Ok(length)
}

/// Copies the MADT `original` into `out` with parkboot's Multiprocessor Wakeup entry
/// (version 1: `mailbox`, `reset_vector`) appended; returns the new table's length.
///
/// The fixed part and every other entry are copied byte for byte, in order, so the OS
/// sees the same CPUs, I/O APICs, overrides and NMI lines as on the platform. An existing
/// wakeup entry is dropped: the mailbox it names belongs to firmware that is no longer
/// running, and an OS uses only the first wakeup entry it finds. The header length and
/// checksum are recomputed; everything else in the header stays as it was.
pub fn madt_with_wakeup(
    original: &[u8],
    out: &mut [u8],
    mailbox: u64,
    reset_vector: u64,
) -> Result<usize, AcpiError> {
    if !mailbox.is_multiple_of(WAKEUP_MAILBOX_ALIGNMENT) {
        return Err(AcpiError::MailboxMisaligned { address: mailbox });
    }
    let length = madt_with_wakeup_length(original)?;
    let available = out.len();
    let table = out
        .get_mut(..length)
        .ok_or(output_too_small(length, available))?;
    let entries = madt_entries(original)?;
    // `length` fits the output, so every write below fits too; the `ok_or`s only keep
    // the code free of panicking paths.
    let fixed = original
        .get(..MADT_FIXED_LENGTH)
        .ok_or(output_too_small(length, available))?;
    put(table, 0, fixed).ok_or(output_too_small(length, available))?;
    let mut offset = MADT_FIXED_LENGTH;
    for entry in entries {
        let entry = entry?;
        if entry.entry_type == MADT_TYPE_MULTIPROCESSOR_WAKEUP {
            continue;
        }
        put(table, offset, entry.bytes).ok_or(output_too_small(length, available))?;
        offset += entry.bytes.len();
    }
    let wakeup = MultiprocessorWakeupEntry::version_1(mailbox, reset_vector);
    wakeup
        .write(table.get_mut(offset..).unwrap_or(&mut []))
        .ok_or(output_too_small(length, available))?;
    put(
        table,
        offset_of!(SdtHeader, length),
        &(length as u32).to_le_bytes(),
    )
    .ok_or(output_too_small(length, available))?;
    fix_checksum(table, offset_of!(SdtHeader, checksum));
    Ok(length)
}

/// Builds an XSDT listing `entries` into `out`; returns its length.
///
/// The OEM fields, creator and OEM revision come from `template` (the platform's own
/// XSDT or RSDT header) so the new root still identifies the platform; the signature,
/// revision, length and checksum are the XSDT's own.
pub fn build_xsdt(
    template: &SdtHeader,
    entries: &[u64],
    out: &mut [u8],
) -> Result<usize, AcpiError> {
    let length = entries
        .len()
        .checked_mul(XSDT_ENTRY_SIZE)
        .and_then(|list| list.checked_add(SDT_HEADER_LENGTH))
        .unwrap_or(usize::MAX);
    let length_field = u32::try_from(length).map_err(|_| AcpiError::TableTooLong {
        signature: Signature::XSDT,
        length,
    })?;
    let available = out.len();
    let table = out
        .get_mut(..length)
        .ok_or(output_too_small(length, available))?;
    let header = SdtHeader {
        signature: Signature::XSDT.0,
        length: length_field,
        revision: XSDT_REVISION,
        checksum: 0,
        ..*template
    };
    header
        .write(table)
        .ok_or(output_too_small(length, available))?;
    for (index, &address) in entries.iter().enumerate() {
        let offset = SDT_HEADER_LENGTH + index * XSDT_ENTRY_SIZE;
        put(table, offset, &address.to_le_bytes()).ok_or(output_too_small(length, available))?;
    }
    fix_checksum(table, offset_of!(SdtHeader, checksum));
    Ok(length)
}

/// Builds a revision 2 RSDP into `out` (the caller places it on a 16-byte boundary);
/// returns its length. Both checksums are set: the first one over the ACPI 1.0 part,
/// the extended one over all of it.
pub fn build_rsdp(
    oem_id: [u8; 6],
    rsdt_address: u32,
    xsdt_address: u64,
    out: &mut [u8],
) -> Result<usize, AcpiError> {
    let available = out.len();
    let table = out
        .get_mut(..RSDP_V2_LENGTH)
        .ok_or(output_too_small(RSDP_V2_LENGTH, available))?;
    let rsdp = Rsdp {
        signature: RSDP_SIGNATURE,
        checksum: 0,
        oem_id,
        revision: RSDP_REVISION_2,
        rsdt_address,
        length: RSDP_V2_LENGTH as u32,
        xsdt_address,
        extended_checksum: 0,
        reserved: [0; 3],
    };
    rsdp.write(table)
        .ok_or(output_too_small(RSDP_V2_LENGTH, available))?;
    // The extended checksum covers the first checksum byte, so the first one goes first.
    if let Some(v1) = table.get_mut(..RSDP_V1_LENGTH) {
        fix_checksum(v1, offset_of!(Rsdp, checksum));
    }
    fix_checksum(table, offset_of!(Rsdp, extended_checksum));
    Ok(RSDP_V2_LENGTH)
}

/// The first offset at or after `from` whose physical address (`base + offset`) is a
/// multiple of `alignment`.
fn aligned_offset(base: u64, from: usize, alignment: u64) -> Result<usize, AcpiError> {
    let overflow = AcpiError::AddressOverflow { base, offset: from };
    let address = base.checked_add(from as u64).ok_or(overflow)?;
    let aligned = address
        .checked_next_multiple_of(alignment)
        .ok_or(overflow)?;
    usize::try_from(aligned - address)
        .ok()
        .and_then(|padding| from.checked_add(padding))
        .ok_or(overflow)
}

fn physical(base: u64, offset: usize) -> Result<u64, AcpiError> {
    base.checked_add(offset as u64)
        .ok_or(AcpiError::AddressOverflow { base, offset })
}

/// Builds parkboot's ACPI root for the platform tables under `rsdp_address`.
///
/// `out` is memory the caller has reserved (and will report to the OS as ACPI memory)
/// at physical address `out_phys`. Laid out in it: a revision 2 RSDP on a 16-byte
/// boundary, then a new XSDT, then the MADT from [`madt_with_wakeup`]. The XSDT lists
/// every table of the platform's root in the same order, with the MADT's address
/// replaced by the new copy; a platform with only an RSDT gets its entries widened to
/// 64 bits. Tables that are broken but not needed here (a bad checksum, an odd length,
/// even an unreadable header: [`Tables::warnings`]) are listed at their original
/// address, byte for byte as the platform left them, so the kernel sees and judges them
/// as it would without parkboot. The platform's tables are only read, never written. A
/// root without a valid MADT is an error: without one there is nowhere to advertise
/// the mailbox.
pub fn rewrite_tables(
    mem: &impl PhysicalMemory,
    rsdp_address: u64,
    out: &mut [u8],
    out_phys: u64,
    mailbox: u64,
    reset_vector: u64,
) -> Result<Rewritten, AcpiError> {
    if !mailbox.is_multiple_of(WAKEUP_MAILBOX_ALIGNMENT) {
        return Err(AcpiError::MailboxMisaligned { address: mailbox });
    }
    let tables = Tables::new(mem, rsdp_address)?;
    let (madt_address, original_madt) = tables.madt(mem)?;

    let rsdp_offset = aligned_offset(out_phys, 0, RSDP_ALIGNMENT)?;
    let xsdt_offset = aligned_offset(out_phys, rsdp_offset + RSDP_V2_LENGTH, TABLE_ALIGNMENT)?;
    let xsdt_length = SDT_HEADER_LENGTH + tables.entries().len() * XSDT_ENTRY_SIZE;
    let madt_offset = aligned_offset(out_phys, xsdt_offset + xsdt_length, TABLE_ALIGNMENT)?;
    let new_madt_length = madt_with_wakeup_length(original_madt)?;
    let bytes_used = madt_offset + new_madt_length;
    let available = out.len();
    let used = out
        .get_mut(..bytes_used)
        .ok_or(output_too_small(bytes_used, available))?;
    // Padding between the tables reads as zero, whatever the buffer held.
    used.fill(0);

    let rsdp = physical(out_phys, rsdp_offset)?;
    let xsdt = physical(out_phys, xsdt_offset)?;
    let madt = physical(out_phys, madt_offset)?;

    madt_with_wakeup(
        original_madt,
        used.get_mut(madt_offset..).unwrap_or(&mut []),
        mailbox,
        reset_vector,
    )?;

    // Every entry of the platform's root, the MADT swapped for the copy. If the root
    // lists the same MADT address twice, both point at the copy; a second, different
    // MADT (which ACPI does not allow) is kept as it is, since an OS reads the first.
    let mut entries: Vec<u64, MAX_TABLES> = Vec::new();
    for table in &tables {
        let address = if table.address == madt_address {
            madt
        } else {
            table.address
        };
        // `Tables` holds at most MAX_TABLES entries, so this push cannot fail.
        entries
            .push(address)
            .map_err(|_| AcpiError::TooManyTables {
                signature: tables.root_signature,
                address: tables.root_address,
                limit: MAX_TABLES,
            })?;
    }
    build_xsdt(
        &tables.root_header,
        &entries,
        used.get_mut(xsdt_offset..).unwrap_or(&mut []),
    )?;

    // The RSDT address is 0 rather than the platform's RSDT: that RSDT lists the
    // platform's MADT, without the wakeup entry. An OS that read it would see a machine
    // without the mailbox and a different table set than the XSDT describes; with 0,
    // every ACPI 2.0+ OS (Linux, Xen) reads the XSDT, the one consistent view.
    build_rsdp(
        tables.rsdp.oem_id,
        0,
        xsdt,
        used.get_mut(rsdp_offset..).unwrap_or(&mut []),
    )?;

    Ok(Rewritten {
        rsdp,
        xsdt,
        madt,
        bytes_used,
    })
}
