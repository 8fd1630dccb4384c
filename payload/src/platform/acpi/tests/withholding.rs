//! Withholding CPUs and emitting the tables afresh.

use super::*;

/// The flags word of every CPU entry in `table`, by APIC ID, in table order.
fn cpu_flags(table: &[u8]) -> Vec<(u8, u32, u32)> {
    madt_entries(table)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter_map(|entry| match entry.entry_type {
            MADT_TYPE_LOCAL_APIC => Some((
                entry.entry_type,
                u32::from(entry.bytes[3]),
                le_u32(entry.bytes, 4),
            )),
            MADT_TYPE_LOCAL_X2APIC => Some((
                entry.entry_type,
                le_u32(entry.bytes, 4),
                le_u32(entry.bytes, 8),
            )),
            _ => None,
        })
        .collect()
}

/// Bit 2 and up of the Local APIC flags are reserved today; a withheld CPU keeps them.
const FUTURE_FLAG: u32 = 1 << 5;

fn madt_with_cpus_to_withhold() -> Vec<Vec<u8>> {
    vec![
        local_apic(0, 0, ENABLED),
        local_apic(1, 1, ENABLED | FUTURE_FLAG),
        local_apic(2, 2, ENABLED),
        io_apic(0, 0xFEC0_0000, 0),
        local_apic(3, 3, ONLINE_CAPABLE),
        local_apic_nmi(0xFF, 0, 1),
        // APIC ID 2 again as an x2APIC entry, as some firmware lists it.
        x2apic(2, ENABLED, 2),
        x2apic(0x100, ENABLED, 4),
        x2apic(0x101, ENABLED | ONLINE_CAPABLE, 5),
        x2apic_nmi(0xFFFF_FFFF, 0, 1),
    ]
}

#[test]
fn withheld_cpus_lose_enabled_and_online_capable_and_nothing_else_changes() {
    let original = madt(&madt_with_cpus_to_withhold());
    let mut out = vec![0xEEu8; 1024];
    let withheld = [1, 2, 3, 0x101, 42];
    let length = madt_with_wakeup(&original, &mut out, MAILBOX, RESET_VECTOR, &withheld).unwrap();
    let table = &out[..length];
    assert_eq!(length, original.len() + WAKEUP_ENTRY_LENGTH_V1);
    assert_eq!(checksum(table), 0);
    assert_eq!(
        cpu_flags(table),
        [
            (MADT_TYPE_LOCAL_APIC, 0, ENABLED),
            (MADT_TYPE_LOCAL_APIC, 1, FUTURE_FLAG),
            (MADT_TYPE_LOCAL_APIC, 2, 0),
            (MADT_TYPE_LOCAL_APIC, 3, 0),
            (MADT_TYPE_LOCAL_X2APIC, 2, 0),
            (MADT_TYPE_LOCAL_X2APIC, 0x100, ENABLED),
            (MADT_TYPE_LOCAL_X2APIC, 0x101, 0),
        ]
    );
    // Byte for byte the same but for the flags of the withheld entries (and the
    // checksum and length the header must change anyway).
    let flags_offsets: Vec<usize> = madt_entries(&original)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter_map(|entry| {
            let (id, flags) = match entry.entry_type {
                MADT_TYPE_LOCAL_APIC => (u32::from(entry.bytes[3]), 4),
                MADT_TYPE_LOCAL_X2APIC => (le_u32(entry.bytes, 4), 8),
                _ => return None,
            };
            withheld
                .contains(&id)
                .then_some(entry.offset + flags..entry.offset + flags + 4)
        })
        .flatten()
        .collect();
    let header_fields = [
        offset_of!(SdtHeader, length)..offset_of!(SdtHeader, length) + 4,
        CHECKSUM_OFFSET..CHECKSUM_OFFSET + 1,
    ];
    let mut differences = 0;
    for (offset, (&old, &new)) in original.iter().zip(table).enumerate() {
        if flags_offsets.contains(&offset) || header_fields.iter().any(|r| r.contains(&offset)) {
            differences += usize::from(old != new);
            continue;
        }
        assert_eq!(old, new, "byte {offset:#x} changed");
    }
    assert!(differences > 0);
    // A parser sees exactly the withheld CPUs as unusable.
    let parsed = parse_madt(table).unwrap();
    let unusable: Vec<u32> = parsed
        .cpus
        .iter()
        .filter(|cpu| !cpu.is_usable())
        .map(|cpu| cpu.apic_id)
        .collect();
    assert_eq!(unusable, [1, 2, 3, 0x101]);
    // Nothing withheld: every CPU entry as it was.
    let length = madt_with_wakeup(&original, &mut out, MAILBOX, RESET_VECTOR, &[]).unwrap();
    assert_eq!(cpu_flags(&out[..length]), cpu_flags(&original));
}

#[test]
fn withholding_a_cpu_whose_entry_is_too_short_is_an_error() {
    let mut short = local_apic(5, 5, ENABLED);
    short.truncate(6);
    short[1] = 6;
    let original = madt(&[local_apic(0, 0, ENABLED), short]);
    assert_eq!(
        madt_with_wakeup(&original, &mut vec![0; 1024], MAILBOX, RESET_VECTOR, &[5]),
        Err(AcpiError::MadtEntry {
            offset: MADT_FIXED_LENGTH + 8,
            problem: EntryProblem::Truncated {
                entry_type: MADT_TYPE_LOCAL_APIC,
                length: 6,
                minimum: 8
            }
        })
    );
}

#[test]
fn pristine_tables_emit_the_same_root_afresh_whatever_was_written_over_it() {
    let original_madt = madt(&madt_with_cpus_to_withhold());
    let mut mem = platform(&original_madt);
    let mut store = vec![0u8; PristineTables::madt_length(&mem, RSDP_AT).unwrap()];
    let pristine = PristineTables::capture(&mem, RSDP_AT, &mut store).unwrap();
    assert_eq!(pristine.madt(), &original_madt[..]);
    let mut out = vec![0xEEu8; 4096];
    let first = pristine
        .emit(&mut out, OUT_PHYS, MAILBOX, RESET_VECTOR, &[])
        .unwrap();
    assert_eq!(first.bytes_used, pristine.bytes_needed(OUT_PHYS).unwrap());
    check_rewritten(&mem, &out, &first, &[FACP_AT, MADT_AT, HPET_AT, MCFG_AT]);
    let expected = out.clone();

    // The same as the one-shot rewrite.
    let mut one_shot = vec![0xEEu8; 4096];
    let result = rewrite_tables(
        &mem,
        RSDP_AT,
        &mut one_shot,
        OUT_PHYS,
        MAILBOX,
        RESET_VECTOR,
    )
    .unwrap();
    assert_eq!(result, first);
    assert_eq!(one_shot, expected);

    // A kernel zeroes the mailbox address in the MADT (as Linux does when it cannot
    // hand CPUs back) and scribbles over the RSDP; the platform's MADT is overwritten
    // too. The next emit is byte for byte the first one.
    let wakeup_mailbox = (first.madt - OUT_PHYS) as usize + original_madt.len() + 8;
    out[wakeup_mailbox..wakeup_mailbox + 8].fill(0);
    out[(first.rsdp - OUT_PHYS) as usize] = 0;
    mem.place(MADT_AT, &vec![0xAB; original_madt.len()]);
    let again = pristine
        .emit(&mut out, OUT_PHYS, MAILBOX, RESET_VECTOR, &[])
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(out, expected);

    // Withholding changes only the MADT's CPU flags and checksum, at the same addresses.
    let withheld = pristine
        .emit(&mut out, OUT_PHYS, MAILBOX, RESET_VECTOR, &[2])
        .unwrap();
    assert_eq!(withheld, first);
    let madt_at = (first.madt - OUT_PHYS) as usize;
    assert_eq!(out[..madt_at], expected[..madt_at]);
    let new_madt = &out[madt_at..first.bytes_used];
    assert_eq!(checksum(new_madt), 0);
    let parsed = parse_madt(new_madt).unwrap();
    let unusable: Vec<u32> = parsed
        .cpus
        .iter()
        .filter(|c| !c.is_usable())
        .map(|c| c.apic_id)
        .collect();
    assert_eq!(unusable, [2]);
}

#[test]
fn pristine_capture_needs_room_for_the_madt() {
    let original_madt = madt(&sample_madt_entries());
    let mem = platform(&original_madt);
    let mut small = vec![0u8; original_madt.len() - 1];
    assert!(matches!(
        PristineTables::capture(&mem, RSDP_AT, &mut small),
        Err(AcpiError::OutputTooSmall {
            needed,
            available
        }) if needed == original_madt.len() && available == original_madt.len() - 1
    ));
}

#[test]
fn the_kernels_tables_are_acpi_nvs_and_survive_every_boot() {
    use crate::memory::{Lifetime, MemoryMap, ReportAs, FOUR_GIB, ONE_MIB};
    use crate::memory::{MemoryKind, MemoryRegion};
    let mut memory = MemoryMap::new(&[MemoryRegion {
        start: 0,
        size: 2 * FOUR_GIB,
        kind: MemoryKind::Usable,
    }])
    .unwrap();
    const SIZE: u64 = 64 * 1024;
    let tables = reserve_kernel_tables(&mut memory, SIZE).unwrap();
    assert!((ONE_MIB..FOUR_GIB - SIZE + 1).contains(&tables));
    // A kernel's load areas come and go; the tables stay reserved.
    memory
        .reserve(ONE_MIB, ONE_MIB, "kernel", ReportAs::Usable, Lifetime::Boot)
        .unwrap();
    memory.release_boot();
    assert!(!memory.is_free(tables, SIZE));
    let shown: Vec<(u64, u64, ReportAs)> = memory
        .kernel_view()
        .filter(|&(start, _, _)| start == tables)
        .collect();
    assert_eq!(shown, [(tables, SIZE, ReportAs::AcpiNvs)]);
    // e820 type 4 and multiboot2 type 4: ACPI NVS, never reclaimable.
    assert_eq!(KERNEL_TABLES_REPORT_AS.e820_type(), 4);
    assert_eq!(KERNEL_TABLES_REPORT_AS.multiboot2_type(), 4);
}
