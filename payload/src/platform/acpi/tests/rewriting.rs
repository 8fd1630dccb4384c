//! Rewriting: the MADT with a wakeup entry, a new XSDT and RSDP, checksums.

use super::*;

#[test]
fn madt_with_wakeup_keeps_every_entry_and_appends_the_new_one() {
    let original = madt(&sample_madt_entries());
    let mut out = vec![0xEEu8; 1024];
    let length = madt_with_wakeup(&original, &mut out, MAILBOX, RESET_VECTOR, &[]).unwrap();
    assert_eq!(length, original.len() + WAKEUP_ENTRY_LENGTH_V1);
    let table = &out[..length];
    assert_eq!(checksum(table), 0);
    assert_eq!(le_u32(table, offset_of!(SdtHeader, length)), length as u32);
    // The header apart from length and checksum, and the APIC address and flags, as
    // they were.
    assert_eq!(table[..4], original[..4]);
    assert_eq!(
        table[offset_of!(SdtHeader, revision)],
        original[offset_of!(SdtHeader, revision)]
    );
    assert_eq!(
        table[offset_of!(SdtHeader, oem_id)..MADT_FIXED_LENGTH],
        original[offset_of!(SdtHeader, oem_id)..MADT_FIXED_LENGTH]
    );
    // Every original entry byte for byte, in order, then the new entry.
    assert_eq!(
        table[MADT_FIXED_LENGTH..original.len()],
        original[MADT_FIXED_LENGTH..]
    );
    let mut expected_entry = vec![0x10, 24, 1, 0, 0, 0, 0, 0];
    expected_entry.extend_from_slice(&MAILBOX.to_le_bytes());
    expected_entry.extend_from_slice(&RESET_VECTOR.to_le_bytes());
    assert_eq!(table[original.len()..], expected_entry[..]);
    // Nothing written past the table.
    assert!(out[length..].iter().all(|&b| b == 0xEE));

    let parsed = parse_madt(table).unwrap();
    assert_eq!(
        parsed.wakeup,
        Some(WakeupEntry {
            mailbox_version: 1,
            mailbox_address: MAILBOX,
            reset_vector: Some(RESET_VECTOR)
        })
    );
    assert_eq!(parsed.cpus, parse_madt(&original).unwrap().cpus);
}

#[test]
fn madt_with_wakeup_replaces_an_existing_wakeup_entry() {
    let mut with_old = sample_madt_entries();
    with_old.insert(3, wakeup_v0(0x8000_0000));
    with_old.push(wakeup_v1(0x8000_1000, 0x8000_2000));
    let original = madt(&with_old);
    let mut out = vec![0u8; 1024];
    let length = madt_with_wakeup(&original, &mut out, MAILBOX, RESET_VECTOR, &[]).unwrap();
    let table = &out[..length];
    assert_eq!(checksum(table), 0);
    let mut expected = sample_madt_entries();
    expected.push(wakeup_v1(MAILBOX, RESET_VECTOR));
    assert_eq!(entries_of(table), expected);
    assert_eq!(
        length,
        madt(&sample_madt_entries()).len() + WAKEUP_ENTRY_LENGTH_V1
    );
    assert_eq!(
        parse_madt(table).unwrap().wakeup.unwrap().mailbox_address,
        MAILBOX
    );
}

#[test]
fn madt_with_wakeup_refuses_bad_input_and_small_output() {
    let original = madt(&sample_madt_entries());
    let needed = original.len() + WAKEUP_ENTRY_LENGTH_V1;
    assert_eq!(
        madt_with_wakeup(
            &original,
            &mut vec![0; needed - 1],
            MAILBOX,
            RESET_VECTOR,
            &[]
        ),
        Err(AcpiError::OutputTooSmall {
            needed,
            available: needed - 1
        })
    );
    assert_eq!(
        madt_with_wakeup(
            &original,
            &mut vec![0; needed],
            MAILBOX + 8,
            RESET_VECTOR,
            &[]
        ),
        Err(AcpiError::MailboxMisaligned {
            address: MAILBOX + 8
        })
    );
    let broken = madt(&[local_apic(0, 0, ENABLED), vec![0, 0]]);
    assert_eq!(
        madt_with_wakeup(&broken, &mut vec![0; 1024], MAILBOX, RESET_VECTOR, &[]),
        Err(AcpiError::MadtEntry {
            offset: MADT_FIXED_LENGTH + 8,
            problem: EntryProblem::TooShort { length: 0 }
        })
    );
}

#[test]
fn build_xsdt_lists_entries_with_the_template_identity() {
    let template = SdtHeader::read(&rsdt(&[1, 2])).unwrap();
    let mut out = vec![0u8; 64];
    let length = build_xsdt(&template, &[0x1_0000_0000, 0x2000], &mut out).unwrap();
    assert_eq!(length, SDT_HEADER_LENGTH + 16);
    let header = SdtHeader::read(&out).unwrap();
    assert_eq!(header.signature(), Signature::XSDT);
    assert_eq!({ header.length }, length as u32);
    assert_eq!(header.revision, XSDT_REVISION);
    assert_eq!(header.oem_id, OEM_ID);
    assert_eq!(header.oem_table_id, OEM_TABLE_ID);
    assert_eq!({ header.creator_revision }, 0x2024_0101);
    assert_eq!(checksum(&out[..length]), 0);
    assert_eq!(xsdt_list(&out[..length]), [0x1_0000_0000, 0x2000]);
    assert_eq!(build_xsdt(&template, &[1, 2, 3], &mut out), Ok(60));
    assert!(matches!(
        build_xsdt(&template, &[1; 4], &mut out),
        Err(AcpiError::OutputTooSmall {
            needed: 68,
            available: 64
        })
    ));
}

#[test]
fn rewrite_tables_builds_a_consistent_root() {
    let original_madt = madt(&sample_madt_entries());
    let mem = platform(&original_madt);
    let before = snapshot(&mem);
    let mut out = vec![0xEEu8; 4096];
    let result = rewrite_tables(&mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR).unwrap();
    assert_eq!(result.rsdp, OUT_PHYS);
    check_rewritten(&mem, &out, &result, &[FACP_AT, MADT_AT, HPET_AT, MCFG_AT]);

    let new_madt = &out[(result.madt - OUT_PHYS) as usize..result.bytes_used];
    assert_eq!(new_madt.len(), original_madt.len() + WAKEUP_ENTRY_LENGTH_V1);
    assert_eq!(
        new_madt[MADT_FIXED_LENGTH..original_madt.len()],
        original_madt[MADT_FIXED_LENGTH..]
    );
    let mut expected_entries = sample_madt_entries();
    expected_entries.push(wakeup_v1(MAILBOX, RESET_VECTOR));
    assert_eq!(entries_of(new_madt), expected_entries);
    // The new XSDT keeps the platform's identity.
    let xsdt_header = SdtHeader::read(&out[(result.xsdt - OUT_PHYS) as usize..]).unwrap();
    assert_eq!(xsdt_header.oem_table_id, OEM_TABLE_ID);
    // Padding is zero, the rest of the buffer untouched.
    assert!(out[result.bytes_used..].iter().all(|&b| b == 0xEE));
    assert_eq!(snapshot(&mem), before);
}

#[test]
fn rewrite_tables_aligns_the_rsdp_in_an_unaligned_buffer() {
    let mem = platform(&madt(&sample_madt_entries()));
    let mut out = vec![0xEEu8; 4096];
    // The buffer starts 3 bytes after OUT_PHYS; pad it so offsets match OUT_PHYS.
    let result = rewrite_tables(
        &mem,
        RSDP_AT,
        &mut out[3..],
        OUT_PHYS + 3,
        MAILBOX,
        RESET_VECTOR,
    )
    .unwrap();
    assert_eq!(result.rsdp, OUT_PHYS + 16);
    assert_eq!(result.xsdt % TABLE_ALIGNMENT, 0);
    assert_eq!(result.madt % TABLE_ALIGNMENT, 0);
    assert!(out[3..16].iter().all(|&b| b == 0));
    let result_from_base = Rewritten {
        bytes_used: result.bytes_used + 3,
        ..result
    };
    check_rewritten(
        &mem,
        &out,
        &result_from_base,
        &[FACP_AT, MADT_AT, HPET_AT, MCFG_AT],
    );
}

#[test]
fn rewrite_tables_replaces_an_existing_wakeup_entry() {
    let mut entries = sample_madt_entries();
    entries.insert(2, wakeup_v0(0x8000_0000));
    let original_madt = madt(&entries);
    let mem = platform(&original_madt);
    let before = snapshot(&mem);
    let mut out = vec![0u8; 4096];
    let result = rewrite_tables(&mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR).unwrap();
    check_rewritten(&mem, &out, &result, &[FACP_AT, MADT_AT, HPET_AT, MCFG_AT]);
    let new_madt = &out[(result.madt - OUT_PHYS) as usize..result.bytes_used];
    let kinds: Vec<u8> = entries_of(new_madt).iter().map(|e| e[0]).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|&&t| t == MADT_TYPE_MULTIPROCESSOR_WAKEUP)
            .count(),
        1
    );
    assert_eq!(kinds.last(), Some(&MADT_TYPE_MULTIPROCESSOR_WAKEUP));
    assert_eq!(new_madt.len(), original_madt.len() - 16 + 24);
    assert_eq!(snapshot(&mem), before);
}

#[test]
fn rewrite_tables_on_an_rsdt_only_platform() {
    let mem = rsdt_only_platform(&madt(&sample_madt_entries()));
    let before = snapshot(&mem);
    let mut out = vec![0u8; 4096];
    let result = rewrite_tables(&mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR).unwrap();
    check_rewritten(&mem, &out, &result, &[FACP_AT, MADT_AT, HPET_AT]);
    let xsdt_header = SdtHeader::read(&out[(result.xsdt - OUT_PHYS) as usize..]).unwrap();
    assert_eq!(xsdt_header.signature(), Signature::XSDT);
    assert_eq!(xsdt_header.revision, XSDT_REVISION);
    assert_eq!(snapshot(&mem), before);
}

#[test]
fn rewrite_tables_errors() {
    // No MADT.
    let mut mem = platform(&madt(&sample_madt_entries()));
    mem.chunks.retain(|(base, _)| *base != XSDT_AT);
    mem.place(XSDT_AT, &xsdt(&[FACP_AT, HPET_AT]));
    let mut out = vec![0u8; 4096];
    let err = rewrite_tables(&mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR);
    assert_eq!(err, Err(AcpiError::NoMadt));
    assert_eq!(
        AcpiError::NoMadt.to_string(),
        "no MADT (signature \"APIC\") in the ACPI tables"
    );

    // Output too small: nothing is written.
    let mem = platform(&madt(&sample_madt_entries()));
    let mut small = vec![0xEEu8; 100];
    assert!(matches!(
        rewrite_tables(&mem, RSDP_AT, &mut small, OUT_PHYS, MAILBOX, RESET_VECTOR),
        Err(AcpiError::OutputTooSmall { available: 100, .. })
    ));
    assert!(small.iter().all(|&b| b == 0xEE));

    // A broken MADT is not copied.
    let mem = platform(&madt(&[local_apic(0, 0, ENABLED), vec![0, 0]]));
    assert!(matches!(
        rewrite_tables(&mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR),
        Err(AcpiError::MadtEntry { .. })
    ));

    // Misaligned mailbox, bad RSDP, address overflow.
    let mem = platform(&madt(&sample_madt_entries()));
    assert_eq!(
        rewrite_tables(&mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX + 1, RESET_VECTOR),
        Err(AcpiError::MailboxMisaligned {
            address: MAILBOX + 1
        })
    );
    assert!(matches!(
        rewrite_tables(
            &mem,
            RSDP_AT + 16,
            &mut out,
            OUT_PHYS,
            MAILBOX,
            RESET_VECTOR
        ),
        Err(AcpiError::RsdpSignature { .. })
    ));
    assert!(matches!(
        rewrite_tables(&mem, RSDP_AT, &mut out, u64::MAX - 8, MAILBOX, RESET_VECTOR),
        Err(AcpiError::AddressOverflow { .. })
    ));
}

#[test]
fn checksum_helpers() {
    assert_eq!(checksum(&[]), 0);
    assert_eq!(checksum(&[0xFF, 0x01]), 0);
    assert_eq!(checksum(&[0x80, 0x80, 0x05]), 5);
    let mut bytes = [1, 2, 0, 4];
    fix_checksum(&mut bytes, 2);
    assert_eq!(bytes[2], 0u8.wrapping_sub(7));
    assert_eq!(checksum(&bytes), 0);
    // An offset outside the table changes nothing.
    let mut bytes = [1, 2];
    fix_checksum(&mut bytes, 5);
    assert_eq!(bytes, [1, 2]);
}
