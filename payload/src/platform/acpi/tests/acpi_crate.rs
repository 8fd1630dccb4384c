//! The rewritten tables read back by the `acpi` crate (5.x, without its allocator
//! features), a parser written independently of parkboot's: what an OS that uses it
//! sees from the RSDP parkboot hands over.
//!
//! What acpi 5 reads of the MADT: the fixed header (local APIC address, PC-AT flag) and
//! every entry by type, the Multiprocessor Wakeup entry's version and mailbox address
//! among them. It does not read the ResetVector of a version 1 entry (its structure is
//! the 16-byte version 0 one; the iterator steps over the rest by the entry's length).

use core::pin::Pin;
use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

use super::*;

/// Maps "physical" addresses into a [`FakeMemory`]: every region acpi asks for must lie
/// within one of its chunks.
#[derive(Clone, Copy)]
struct FakeMemoryHandler<'m>(&'m FakeMemory);

impl AcpiHandler for FakeMemoryHandler<'_> {
    unsafe fn map_physical_region<T>(
        &self,
        address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let bytes = self.0.bytes(address as u64, size).unwrap_or_else(|| {
            panic!("acpi read {size} bytes at {address:#x}, outside the fake memory")
        });
        let start = NonNull::new(bytes.as_ptr().cast::<T>().cast_mut()).unwrap();
        // SAFETY: `start` points at `size` readable bytes of the fake memory, which
        // outlives the handler; acpi only reads through it.
        unsafe { PhysicalMapping::new(address, start, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// What acpi finds in a MADT: (APIC ID, flags) of each local APIC and x2APIC entry, and
/// (length, version, mailbox) of each Multiprocessor Wakeup entry.
#[derive(Debug, Default, PartialEq, Eq)]
struct SeenMadt {
    local_apics: Vec<(u32, u32)>,
    wakeups: Vec<(u8, u16, u64)>,
    other_entries: usize,
}

fn seen(madt: Pin<&Madt>) -> SeenMadt {
    let mut seen = SeenMadt::default();
    for entry in madt.entries() {
        match entry {
            MadtEntry::LocalApic(e) => seen.local_apics.push((u32::from(e.apic_id), e.flags)),
            MadtEntry::LocalX2Apic(e) => seen.local_apics.push((e.x2apic_id, e.flags)),
            MadtEntry::MultiprocessorWakeup(e) => {
                seen.wakeups
                    .push((e.header.length, e.mailbox_version, e.mailbox_address))
            }
            _ => seen.other_entries += 1,
        }
    }
    seen
}

/// Rewrites `mem`'s tables and opens the result with acpi, from the new RSDP.
fn rewrite_and_open(mem: &FakeMemory) -> (FakeMemory, Rewritten) {
    let mut out = vec![0u8; 4096];
    let result = rewrite_tables(mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR).unwrap();
    (mem_with_output(mem, &out), result)
}

#[test]
fn acpi_crate_reads_the_rewritten_root_and_the_wakeup_entry() {
    let mem = platform(&madt(&sample_madt_entries()));
    let (combined, result) = rewrite_and_open(&mem);
    let handler = FakeMemoryHandler(&combined);
    // SAFETY: the handler maps only bytes of `combined`, and panics for anything else.
    let tables = unsafe { AcpiTables::from_rsdp(handler, result.rsdp as usize) }
        .expect("acpi accepts the new RSDP and XSDT (signatures, checksums, revision)");
    assert_eq!(tables.revision(), RSDP_REVISION_2);
    // The XSDT lists the platform's tables in their order, the new MADT in its place.
    let signatures: Vec<[u8; 4]> = tables
        .headers()
        .map(|header| {
            let mut signature = [0u8; 4];
            signature.copy_from_slice(header.signature.as_str().as_bytes());
            signature
        })
        .collect();
    assert_eq!(signatures, [*b"FACP", *b"APIC", *b"HPET", *b"MCFG"]);

    let madt = tables
        .find_table::<Madt>()
        .expect("acpi finds the MADT and accepts its checksum");
    assert_eq!(madt.physical_start() as u64, result.madt);
    assert_eq!({ madt.get().local_apic_address }, LOCAL_APIC_ADDRESS);
    assert!(madt.get().supports_8259());
    assert_eq!(madt.get().get_mpwk_mailbox_addr().unwrap(), MAILBOX);
    assert_eq!(
        seen(madt.get()),
        SeenMadt {
            // The processors as the platform listed them, flags untouched.
            local_apics: vec![
                (0, ENABLED),
                (1, ENABLED),
                (0x100, ENABLED),
                (0x101, ONLINE_CAPABLE)
            ],
            // One wakeup entry: version 1 (24 bytes, with the ResetVector acpi does not
            // read) and parkboot's mailbox.
            wakeups: vec![(
                WAKEUP_ENTRY_LENGTH_V1 as u8,
                MAILBOX_VERSION_RESET_VECTOR,
                MAILBOX
            )],
            // I/O APIC, two interrupt source overrides, local APIC NMI, x2APIC NMI.
            other_entries: 5,
        }
    );
}

#[test]
fn acpi_crate_sees_only_parkboots_wakeup_entry_after_a_platform_one() {
    const PLATFORM_MAILBOX: u64 = 0x7E00_0000;
    let mut entries = sample_madt_entries();
    entries.insert(2, wakeup_v0(PLATFORM_MAILBOX));
    let mem = platform(&madt(&entries));
    // The platform's own MADT, as acpi reads it, has the platform's mailbox.
    let platform_handler = FakeMemoryHandler(&mem);
    // SAFETY: as above, over the platform memory alone.
    let platform_tables =
        unsafe { AcpiTables::from_rsdp(platform_handler, RSDP_AT as usize) }.unwrap();
    let platform_madt = platform_tables.find_table::<Madt>().unwrap();
    assert_eq!(
        seen(platform_madt.get()).wakeups,
        [(16, 0, PLATFORM_MAILBOX)]
    );

    let (combined, result) = rewrite_and_open(&mem);
    // SAFETY: as above.
    let tables =
        unsafe { AcpiTables::from_rsdp(FakeMemoryHandler(&combined), result.rsdp as usize) }
            .unwrap();
    let madt = tables.find_table::<Madt>().unwrap();
    let after = seen(madt.get());
    assert_eq!(
        after.wakeups,
        [(
            WAKEUP_ENTRY_LENGTH_V1 as u8,
            MAILBOX_VERSION_RESET_VECTOR,
            MAILBOX
        )]
    );
    assert_eq!(after.local_apics.len(), 4);
    assert_eq!(madt.get().get_mpwk_mailbox_addr().unwrap(), MAILBOX);
}

#[test]
fn acpi_crate_reads_the_rewrite_of_an_rsdt_only_platform() {
    let mem = rsdt_only_platform(&madt(&sample_madt_entries()));
    let (combined, result) = rewrite_and_open(&mem);
    // SAFETY: as above.
    let tables =
        unsafe { AcpiTables::from_rsdp(FakeMemoryHandler(&combined), result.rsdp as usize) }
            .expect("acpi accepts the revision 2 RSDP and XSDT parkboot adds");
    assert_eq!(tables.revision(), RSDP_REVISION_2);
    let madt = tables.find_table::<Madt>().unwrap();
    assert_eq!(madt.physical_start() as u64, result.madt);
    assert_eq!(madt.get().get_mpwk_mailbox_addr().unwrap(), MAILBOX);
}
