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
    cpu_entry_id, madt_entries, MultiprocessorWakeupEntry, LOCAL_APIC_FLAG_ENABLED,
    LOCAL_APIC_FLAG_ONLINE_CAPABLE, MADT_FIXED_LENGTH, MADT_TYPE_MULTIPROCESSOR_WAKEUP,
    WAKEUP_ENTRY_LENGTH_V1, WAKEUP_MAILBOX_ALIGNMENT,
};
use super::{
    fix_checksum, put, AcpiError, Rsdp, SdtHeader, Signature, Tables, MAX_TABLES, RSDP_ALIGNMENT,
    RSDP_REVISION_2, RSDP_SIGNATURE, RSDP_V1_LENGTH, RSDP_V2_LENGTH, SDT_HEADER_LENGTH,
    XSDT_ENTRY_SIZE, XSDT_REVISION,
};
use crate::memory::{
    AllocationRequest, Lifetime, MemoryError, MemoryMap, ReportAs, FOUR_GIB, ONE_MIB, PAGE_SIZE,
};
use crate::platform::PhysicalMemory;
use crate::wire::WireField;

/// How the kernels' ACPI tables are shown in the memory map. Not ACPI Reclaim: parkboot
/// writes them again before every boot, so no kernel may take the memory over (and the
/// mailbox page next to them is NVS too).
pub const KERNEL_TABLES_REPORT_AS: ReportAs = ReportAs::AcpiNvs;

/// Reserves `size` bytes for the kernels' ACPI tables, for as long as parkboot runs,
/// reported as [`KERNEL_TABLES_REPORT_AS`]. Below 4 GiB, where every kernel parkboot
/// boots (32-bit multiboot2 ones too) can reach them, and above the real-mode area.
pub fn reserve_kernel_tables(memory: &mut MemoryMap, size: u64) -> Result<u64, MemoryError> {
    memory.allocate(AllocationRequest {
        size,
        align: PAGE_SIZE,
        min: ONE_MIB,
        max: FOUR_GIB,
        name: "kernels' ACPI tables",
        report_as: KERNEL_TABLES_REPORT_AS,
        lifetime: Lifetime::Permanent,
    })
}

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
/// sees the same CPUs, I/O APICs, overrides and NMI lines as on the platform, with one
/// exception: every Local APIC and Local x2APIC entry whose APIC ID is in `withheld`
/// gets its Enabled and Online Capable flags cleared (the other flag bits, and every
/// other byte, stay), so the OS neither starts that CPU nor waits for it. parkboot
/// withholds the CPUs it cannot wake through the mailbox: an OS that saw them enabled
/// would wait for them forever. An existing wakeup entry is dropped: the mailbox it
/// names belongs to firmware that is no longer running, and an OS uses only the first
/// wakeup entry it finds. The header length and checksum are recomputed; everything
/// else in the header stays as it was.
pub fn madt_with_wakeup(
    original: &[u8],
    out: &mut [u8],
    mailbox: u64,
    reset_vector: u64,
    withheld: &[u32],
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
        if let Some((apic_id, flags_offset)) = cpu_entry_id(&entry)? {
            if withheld.contains(&apic_id) {
                let at = offset + flags_offset;
                let flags = u32::read_at(table, at).ok_or(output_too_small(length, available))?;
                let cleared = flags & !(LOCAL_APIC_FLAG_ENABLED | LOCAL_APIC_FLAG_ONLINE_CAPABLE);
                cleared
                    .write_at(table, at)
                    .ok_or(output_too_small(length, available))?;
            }
        }
        offset += entry.bytes.len();
    }
    let wakeup = MultiprocessorWakeupEntry::version_1(mailbox, reset_vector);
    wakeup
        .write(table.get_mut(offset..).unwrap_or(&mut []))
        .ok_or(output_too_small(length, available))?;
    (length as u32)
        .write_at(table, offset_of!(SdtHeader, length))
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
        address
            .write_at(table, offset)
            .ok_or(output_too_small(length, available))?;
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

/// What parkboot keeps of the platform's ACPI root to build the kernels' tables from,
/// boot after boot: the RSDP's OEM ID, the root table's header and list, and the MADT's
/// bytes.
///
/// A kernel may write into the tables it is given (Linux zeroes the mailbox address in
/// the MADT when it cannot hand CPUs back), and the platform's own tables may lie in
/// memory a kernel was allowed to reclaim. So the MADT is kept as a private copy
/// ([`PristineTables::capture`], in memory no kernel is told it may use) and every boot
/// gets freshly emitted tables ([`PristineTables::emit`]).
#[derive(Clone, Debug)]
pub struct PristineTables<'a> {
    oem_id: [u8; 6],
    root_header: SdtHeader,
    /// Every table of the platform's root, in the root's order.
    entries: Vec<u64, MAX_TABLES>,
    /// Where the platform's MADT is, as the root lists it.
    madt_address: u64,
    madt: &'a [u8],
}

impl<'a> PristineTables<'a> {
    /// The tables under `rsdp_address`, the MADT read in place through `mem`. A root
    /// without a valid MADT is an error (see [`rewrite_tables`]).
    pub fn read(mem: &'a impl PhysicalMemory, rsdp_address: u64) -> Result<Self, AcpiError> {
        let tables = Tables::new(mem, rsdp_address)?;
        let (madt_address, madt) = tables.madt(mem)?;
        let mut entries: Vec<u64, MAX_TABLES> = Vec::new();
        for table in &tables {
            // `Tables` holds at most MAX_TABLES entries, so this push cannot fail.
            entries
                .push(table.address)
                .map_err(|_| AcpiError::TooManyTables {
                    signature: tables.root_signature,
                    address: tables.root_address,
                    limit: MAX_TABLES,
                })?;
        }
        Ok(PristineTables {
            oem_id: tables.rsdp.oem_id,
            root_header: tables.root_header,
            entries,
            madt_address,
            madt,
        })
    }

    /// Length of the platform's MADT under `rsdp_address`: the size of the `store`
    /// [`PristineTables::capture`] needs.
    pub fn madt_length(mem: &impl PhysicalMemory, rsdp_address: u64) -> Result<usize, AcpiError> {
        Ok(PristineTables::read(mem, rsdp_address)?.madt.len())
    }

    /// Like [`PristineTables::read`], with the MADT copied into `store` (at least
    /// [`PristineTables::madt_length`] bytes), so later boots never read the platform's
    /// MADT again.
    pub fn capture(
        mem: &impl PhysicalMemory,
        rsdp_address: u64,
        store: &'a mut [u8],
    ) -> Result<Self, AcpiError> {
        let read = PristineTables::read(mem, rsdp_address)?;
        let length = read.madt.len();
        let available = store.len();
        let copy = store
            .get_mut(..length)
            .ok_or(output_too_small(length, available))?;
        copy.copy_from_slice(read.madt);
        let copy: &'a [u8] = copy;
        Ok(PristineTables {
            oem_id: read.oem_id,
            root_header: read.root_header,
            entries: read.entries,
            madt_address: read.madt_address,
            madt: copy,
        })
    }

    /// The platform's MADT as it was when read.
    pub fn madt(&self) -> &[u8] {
        self.madt
    }

    /// Bytes [`PristineTables::emit`] uses of a buffer at `out_phys` (the same for
    /// every call, whatever `withheld` says).
    pub fn bytes_needed(&self, out_phys: u64) -> Result<usize, AcpiError> {
        Ok(self.layout(out_phys)?.bytes_used)
    }

    fn layout(&self, out_phys: u64) -> Result<Layout, AcpiError> {
        let rsdp = aligned_offset(out_phys, 0, RSDP_ALIGNMENT)?;
        let xsdt = aligned_offset(out_phys, rsdp + RSDP_V2_LENGTH, TABLE_ALIGNMENT)?;
        let xsdt_length = SDT_HEADER_LENGTH + self.entries.len() * XSDT_ENTRY_SIZE;
        let madt = aligned_offset(out_phys, xsdt + xsdt_length, TABLE_ALIGNMENT)?;
        let bytes_used = madt
            .checked_add(madt_with_wakeup_length(self.madt)?)
            .ok_or(AcpiError::AddressOverflow {
                base: out_phys,
                offset: madt,
            })?;
        Ok(Layout {
            rsdp,
            xsdt,
            madt,
            bytes_used,
        })
    }

    /// Builds the kernels' ACPI root into `out` (at physical address `out_phys`): a
    /// revision 2 RSDP on a 16-byte boundary, then a new XSDT, then the MADT from
    /// [`madt_with_wakeup`] with the CPUs in `withheld` disabled. The XSDT lists every
    /// table of the platform's root in the same order, with the MADT's address
    /// replaced by the new copy. Called again with the same buffer it writes every
    /// table afresh at the same addresses, whatever a kernel left there.
    pub fn emit(
        &self,
        out: &mut [u8],
        out_phys: u64,
        mailbox: u64,
        reset_vector: u64,
        withheld: &[u32],
    ) -> Result<Rewritten, AcpiError> {
        if !mailbox.is_multiple_of(WAKEUP_MAILBOX_ALIGNMENT) {
            return Err(AcpiError::MailboxMisaligned { address: mailbox });
        }
        let layout = self.layout(out_phys)?;
        let bytes_used = layout.bytes_used;
        let available = out.len();
        let used = out
            .get_mut(..bytes_used)
            .ok_or(output_too_small(bytes_used, available))?;
        // Padding between the tables reads as zero, whatever the buffer held.
        used.fill(0);

        let rsdp = physical(out_phys, layout.rsdp)?;
        let xsdt = physical(out_phys, layout.xsdt)?;
        let madt = physical(out_phys, layout.madt)?;

        madt_with_wakeup(
            self.madt,
            used.get_mut(layout.madt..).unwrap_or(&mut []),
            mailbox,
            reset_vector,
            withheld,
        )?;

        // Every entry of the platform's root, the MADT swapped for the copy. If the root
        // lists the same MADT address twice, both point at the copy; a second, different
        // MADT (which ACPI does not allow) is kept as it is, since an OS reads the first.
        let mut entries = self.entries.clone();
        for address in entries.iter_mut() {
            if *address == self.madt_address {
                *address = madt;
            }
        }
        build_xsdt(
            &self.root_header,
            &entries,
            used.get_mut(layout.xsdt..).unwrap_or(&mut []),
        )?;

        // The RSDT address is 0 rather than the platform's RSDT: that RSDT lists the
        // platform's MADT, without the wakeup entry. An OS that read it would see a
        // machine without the mailbox and a different table set than the XSDT
        // describes; with 0, every ACPI 2.0+ OS (Linux, Xen) reads the XSDT, the one
        // consistent view.
        build_rsdp(
            self.oem_id,
            0,
            xsdt,
            used.get_mut(layout.rsdp..).unwrap_or(&mut []),
        )?;

        Ok(Rewritten {
            rsdp,
            xsdt,
            madt,
            bytes_used,
        })
    }
}

/// Offsets of the tables [`PristineTables::emit`] writes, from the buffer's start.
struct Layout {
    rsdp: usize,
    xsdt: usize,
    madt: usize,
    bytes_used: usize,
}

/// Builds parkboot's ACPI root for the platform tables under `rsdp_address`, every CPU
/// advertised as the platform lists it: [`PristineTables::read`] then
/// [`PristineTables::emit`] with nothing withheld.
///
/// `out` is memory the caller has reserved (and will report to the OS as ACPI memory)
/// at physical address `out_phys`. Tables that are broken but not needed here (a bad
/// checksum, an odd length, even an unreadable header: [`Tables::warnings`]) are listed
/// at their original address, byte for byte as the platform left them, so the kernel
/// sees and judges them as it would without parkboot. The platform's tables are only
/// read, never written. A root without a valid MADT is an error: without one there is
/// nowhere to advertise the mailbox.
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
    PristineTables::read(mem, rsdp_address)?.emit(out, out_phys, mailbox, reset_vector, &[])
}
