//! Walking the root table: XSDT or RSDT, and which broken tables are warnings and
//! which are errors.

use super::*;

#[test]
fn tables_prefer_the_xsdt() {
    let mut mem = platform(&madt(&sample_madt_entries()));
    // The RSDT lists another FACP; reading the XSDT must not see it.
    mem.chunks.retain(|(base, _)| *base != RSDT_AT);
    mem.place(RSDT_AT, &rsdt(&[0x1000, MADT_AT as u32]));
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    assert_eq!(tables.root_signature, Signature::XSDT);
    assert_eq!(tables.root_address, XSDT_AT);
    let signatures: Vec<Option<Signature>> = tables.iter().map(|t| t.signature).collect();
    assert_eq!(
        signatures,
        [
            Some(Signature::FADT),
            Some(Signature::MADT),
            Some(Signature(*b"HPET")),
            Some(Signature(*b"MCFG"))
        ]
    );
    assert!(tables.iter().all(TableRef::is_valid));
    assert_eq!(tables.warnings().count(), 0);
    assert_eq!(tables.madt(&mem).unwrap().0, MADT_AT);
    assert_eq!(tables.find(Signature::FADT), Some((FACP_AT, 276)));
    let madt_length = madt(&sample_madt_entries()).len() as u32;
    assert_eq!(tables.find(Signature::MADT), Some((MADT_AT, madt_length)));
    assert_eq!(tables.find(Signature(*b"SSDT")), None);
    assert_eq!(
        tables.table_bytes(&mem, Signature::MADT).map(<[u8]>::len),
        Some(madt_length as usize)
    );
    assert_eq!((&tables).into_iter().count(), 4);
}

#[test]
fn tables_use_the_rsdt_without_an_xsdt() {
    let mem = rsdt_only_platform(&madt(&sample_madt_entries()));
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    assert_eq!(tables.root_signature, Signature::RSDT);
    assert_eq!(tables.root_address, RSDT_AT);
    assert_eq!(tables.entries().len(), 3);
    assert_eq!(tables.find(Signature::MADT).map(|t| t.0), Some(MADT_AT));

    // Revision 2 with a zero XSDT address also falls back to the RSDT.
    let mut mem = platform(&madt(&sample_madt_entries()));
    mem.chunks.retain(|(base, _)| *base != BIOS_AREA);
    mem.place(RSDP_AT, &rsdp_v2(RSDT_AT as u32, 0));
    assert_eq!(
        Tables::new(&mem, RSDP_AT).unwrap().root_signature,
        Signature::RSDT
    );
}

#[test]
fn tables_skip_null_entries() {
    let mut mem = platform(&madt(&sample_madt_entries()));
    mem.chunks.retain(|(base, _)| *base != XSDT_AT);
    mem.place(XSDT_AT, &xsdt(&[FACP_AT, 0, MADT_AT]));
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    let addresses: Vec<u64> = tables.iter().map(|t| t.address).collect();
    assert_eq!(addresses, [FACP_AT, MADT_AT]);
}

/// Replaces the bytes placed at `at`.
fn replace(mem: &mut FakeMemory, at: u64, bytes: &[u8]) {
    mem.chunks.retain(|(base, _)| *base != at);
    mem.place(at, bytes);
}

fn bytes_at(mem: &mut FakeMemory, at: u64) -> &mut Vec<u8> {
    &mut mem.chunks.iter_mut().find(|(a, _)| *a == at).unwrap().1
}

/// Rewrites the tables of `mem` and checks that the new XSDT lists every platform
/// table at its original address (the MADT swapped for the copy) and that the platform's
/// memory, the broken table included, is byte for byte what it was.
fn rewrite_keeps_every_table(mem: &FakeMemory) -> Vec<u8> {
    let before = snapshot(mem);
    let mut out = vec![0u8; 4096];
    let result = rewrite_tables(mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR).unwrap();
    check_rewritten(mem, &out, &result, &[FACP_AT, MADT_AT, HPET_AT, MCFG_AT]);
    let new_xsdt = &out[(result.xsdt - OUT_PHYS) as usize..(result.madt - OUT_PHYS) as usize];
    assert_eq!(
        xsdt_list(new_xsdt),
        [FACP_AT, result.madt, HPET_AT, MCFG_AT]
    );
    assert_eq!(snapshot(mem), before);
    out
}

#[test]
fn bad_checksum_of_a_table_parkboot_does_not_need_is_a_warning() {
    let mut mem = platform(&madt(&sample_madt_entries()));
    let hpet = bytes_at(&mut mem, HPET_AT);
    let stored = hpet[CHECKSUM_OFFSET];
    hpet[CHECKSUM_OFFSET] = stored.wrapping_add(0x10);
    let hpet_length = hpet.len() as u32;
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    let problem = AcpiError::TableChecksum {
        signature: Signature(*b"HPET"),
        address: HPET_AT,
        stored: stored.wrapping_add(0x10),
        expected: stored,
    };
    let warnings: Vec<AcpiError> = tables.warnings().copied().collect();
    assert_eq!(warnings, [problem]);
    assert_eq!(
        problem.to_string(),
        format!(
            "HPET at 0x7ffe4000: checksum {:#04x} does not sum to zero (expected {stored:#04x})",
            stored.wrapping_add(0x10)
        )
    );
    // Listed, in place, with its header's signature and length.
    assert_eq!(
        tables.entries()[2],
        TableRef {
            signature: Some(Signature(*b"HPET")),
            address: HPET_AT,
            length: hpet_length,
            problem: Some(problem),
        }
    );
    assert_eq!(
        tables.find(Signature(*b"HPET")),
        Some((HPET_AT, hpet_length))
    );
    assert_eq!(tables.table_bytes(&mem, Signature(*b"HPET")), None);
    // The MADT is still there to use.
    assert_eq!(tables.madt(&mem).unwrap().0, MADT_AT);
    rewrite_keeps_every_table(&mem);
}

#[test]
fn a_table_shorter_than_its_header_is_a_warning() {
    let mut mem = platform(&madt(&sample_madt_entries()));
    let mut short = sdt(b"HPET", 1, &[]);
    short[4..8].copy_from_slice(&20u32.to_le_bytes());
    fix_checksum(&mut short, CHECKSUM_OFFSET);
    replace(&mut mem, HPET_AT, &short);
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    let warnings: Vec<AcpiError> = tables.warnings().copied().collect();
    assert_eq!(
        warnings,
        [AcpiError::TableTooShort {
            signature: Signature(*b"HPET"),
            address: HPET_AT,
            length: 20
        }]
    );
    assert_eq!(
        warnings[0].to_string(),
        "HPET at 0x7ffe4000: length 20 is shorter than the 36-byte header"
    );
    assert_eq!(tables.entries()[2].length, 20);
    assert_eq!(tables.entries()[2].address, HPET_AT);
    rewrite_keeps_every_table(&mem);
}

#[test]
fn a_table_running_into_unreadable_memory_is_a_warning() {
    let mut mem = platform(&madt(&sample_madt_entries()));
    let mut long = sdt(b"HPET", 1, &[0; 4]);
    long[4..8].copy_from_slice(&0x10_0000u32.to_le_bytes());
    replace(&mut mem, HPET_AT, &long);
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    let warnings: Vec<AcpiError> = tables.warnings().copied().collect();
    assert_eq!(
        warnings,
        [AcpiError::TableUnreadable {
            signature: Signature(*b"HPET"),
            address: HPET_AT,
            length: 0x10_0000
        }]
    );
    assert_eq!(
        warnings[0].to_string(),
        "HPET at 0x7ffe4000: length 1048576 runs into memory that cannot be read"
    );
    rewrite_keeps_every_table(&mem);
}

#[test]
fn a_table_whose_header_cannot_be_read_is_kept_with_a_warning() {
    let mut mem = platform(&madt(&sample_madt_entries()));
    mem.chunks.retain(|(base, _)| *base != HPET_AT);
    // Half a header: the read of 36 bytes fails.
    mem.place(HPET_AT, b"HPET\x40\x00\x00\x00");
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    let problem = AcpiError::TableHeaderUnreadable {
        address: HPET_AT,
        listed_in: Signature::XSDT,
    };
    let warnings: Vec<AcpiError> = tables.warnings().copied().collect();
    assert_eq!(warnings, [problem]);
    assert_eq!(
        problem.to_string(),
        "table at 0x7ffe4000 (listed in the XSDT): its 36-byte header cannot be read"
    );
    assert_eq!(
        tables.entries()[2],
        TableRef {
            signature: None,
            address: HPET_AT,
            length: 0,
            problem: Some(problem),
        }
    );
    rewrite_keeps_every_table(&mem);

    // Nothing at all at the address: the same, and the RSDT path names the RSDT.
    let mut mem = rsdt_only_platform(&madt(&sample_madt_entries()));
    mem.chunks.retain(|(base, _)| *base != HPET_AT);
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    let warnings: Vec<AcpiError> = tables.warnings().copied().collect();
    assert_eq!(
        warnings,
        [AcpiError::TableHeaderUnreadable {
            address: HPET_AT,
            listed_in: Signature::RSDT,
        }]
    );
    assert_eq!(tables.entries().len(), 3);
    let mut out = vec![0u8; 4096];
    let result = rewrite_tables(&mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR).unwrap();
    let new_xsdt = &out[(result.xsdt - OUT_PHYS) as usize..(result.madt - OUT_PHYS) as usize];
    assert_eq!(xsdt_list(new_xsdt), [FACP_AT, result.madt, HPET_AT]);
}

#[test]
fn several_broken_tables_each_get_a_warning_in_root_order() {
    let mut mem = platform(&madt(&sample_madt_entries()));
    bytes_at(&mut mem, FACP_AT)[CHECKSUM_OFFSET] ^= 0x01;
    bytes_at(&mut mem, MCFG_AT)[CHECKSUM_OFFSET] ^= 0x80;
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    let named: Vec<u64> = tables
        .warnings()
        .map(|w| match *w {
            AcpiError::TableChecksum { address, .. } => address,
            other => panic!("unexpected warning {other:?}"),
        })
        .collect();
    assert_eq!(named, [FACP_AT, MCFG_AT]);
    rewrite_keeps_every_table(&mem);
}

#[test]
fn a_bad_madt_checksum_is_an_error_not_a_warning() {
    let mut mem = platform(&madt(&sample_madt_entries()));
    let table = bytes_at(&mut mem, MADT_AT);
    let stored = table[CHECKSUM_OFFSET];
    table[CHECKSUM_OFFSET] = stored ^ 0x01;
    let problem = AcpiError::TableChecksum {
        signature: Signature::MADT,
        address: MADT_AT,
        stored: stored ^ 0x01,
        expected: stored,
    };
    // The list still reads: the boot flow needs the RSDP to boot on without parking.
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    assert_eq!(tables.warnings().count(), 0);
    assert_eq!(tables.madt(&mem), Err(problem));
    assert!(problem
        .to_string()
        .starts_with("APIC at 0x7ffe3000: checksum 0x"));
    let mut out = vec![0xEEu8; 4096];
    assert_eq!(
        rewrite_tables(&mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR),
        Err(problem)
    );
    assert!(out.iter().all(|&b| b == 0xEE));
}

#[test]
fn a_madt_of_odd_length_or_missing_is_an_error() {
    let mut short = madt(&sample_madt_entries());
    short.truncate(SDT_HEADER_LENGTH);
    short[4..8].copy_from_slice(&8u32.to_le_bytes());
    fix_checksum(&mut short, CHECKSUM_OFFSET);
    let mem = platform(&short);
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    assert_eq!(
        tables.madt(&mem),
        Err(AcpiError::TableTooShort {
            signature: Signature::MADT,
            address: MADT_AT,
            length: 8
        })
    );

    let mut mem = platform(&madt(&sample_madt_entries()));
    replace(&mut mem, XSDT_AT, &xsdt(&[FACP_AT, HPET_AT, MCFG_AT]));
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    assert_eq!(tables.madt(&mem), Err(AcpiError::NoMadt));

    // A MADT whose header cannot be read has no signature: the MADT is missing, and
    // the unreadable table is a warning like any other.
    let mut mem = platform(&madt(&sample_madt_entries()));
    mem.chunks.retain(|(base, _)| *base != MADT_AT);
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    assert_eq!(tables.madt(&mem), Err(AcpiError::NoMadt));
    assert_eq!(tables.warnings().count(), 1);
}

#[test]
fn a_broken_second_madt_is_a_warning_the_first_is_used() {
    let mut mem = platform(&madt(&sample_madt_entries()));
    const SECOND_MADT_AT: u64 = 0x7FFE_6000;
    let mut second = madt(&[local_apic(0, 0, ENABLED)]);
    second[CHECKSUM_OFFSET] ^= 0x01;
    mem.place(SECOND_MADT_AT, &second);
    replace(&mut mem, XSDT_AT, &xsdt(&[MADT_AT, SECOND_MADT_AT]));
    let tables = Tables::new(&mem, RSDP_AT).unwrap();
    assert_eq!(tables.madt(&mem).unwrap().0, MADT_AT);
    let warnings: Vec<AcpiError> = tables.warnings().copied().collect();
    assert!(
        matches!(
            warnings[..],
            [AcpiError::TableChecksum {
                address: SECOND_MADT_AT,
                ..
            }]
        ),
        "{warnings:?}"
    );
}

#[test]
fn bad_root_checksum_names_the_xsdt() {
    let mut mem = platform(&madt(&sample_madt_entries()));
    let root = &mut mem
        .chunks
        .iter_mut()
        .find(|(a, _)| *a == XSDT_AT)
        .unwrap()
        .1;
    let last = root.len() - 1;
    root[last] ^= 0x01;
    let err = Tables::new(&mem, RSDP_AT).unwrap_err();
    assert!(
        matches!(
            err,
            AcpiError::TableChecksum {
                signature: Signature::XSDT,
                address: XSDT_AT,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("XSDT at 0x7ffe1000: checksum 0x"));
    let mut out = vec![0xEEu8; 4096];
    assert_eq!(
        rewrite_tables(&mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR),
        Err(err)
    );
    assert!(out.iter().all(|&b| b == 0xEE));
}

#[test]
fn root_table_problems_are_errors() {
    // An XSDT whose entry area is not a whole number of addresses.
    let mut mem = platform(&madt(&sample_madt_entries()));
    let mut body: Vec<u8> = FACP_AT.to_le_bytes().to_vec();
    body.extend_from_slice(&[0; 4]);
    replace(&mut mem, XSDT_AT, &sdt(b"XSDT", 1, &body));
    assert!(matches!(
        Tables::new(&mem, RSDP_AT),
        Err(AcpiError::RootTableLength {
            signature: Signature::XSDT,
            length: 48,
            ..
        })
    ));

    // The XSDT pointer leads to another table.
    let mut mem = platform(&madt(&sample_madt_entries()));
    replace(&mut mem, XSDT_AT, &sdt(b"RSDT", 1, &[]));
    assert_eq!(
        Tables::new(&mem, RSDP_AT).unwrap_err(),
        AcpiError::TableSignature {
            address: XSDT_AT,
            expected: Signature::XSDT,
            found: Signature::RSDT
        }
    );

    // An XSDT shorter than its header, or running into unreadable memory.
    let mut mem = platform(&madt(&sample_madt_entries()));
    let mut short = xsdt(&[]);
    short[4..8].copy_from_slice(&20u32.to_le_bytes());
    fix_checksum(&mut short, CHECKSUM_OFFSET);
    replace(&mut mem, XSDT_AT, &short);
    assert_eq!(
        Tables::new(&mem, RSDP_AT).unwrap_err(),
        AcpiError::TableTooShort {
            signature: Signature::XSDT,
            address: XSDT_AT,
            length: 20
        }
    );
    let mut mem = platform(&madt(&sample_madt_entries()));
    let mut long = xsdt(&[FACP_AT]);
    long[4..8].copy_from_slice(&0x10_0000u32.to_le_bytes());
    replace(&mut mem, XSDT_AT, &long);
    assert!(matches!(
        Tables::new(&mem, RSDP_AT),
        Err(AcpiError::TableUnreadable {
            signature: Signature::XSDT,
            address: XSDT_AT,
            length: 0x10_0000
        })
    ));

    // No XSDT where the RSDP says.
    let mut mem = platform(&madt(&sample_madt_entries()));
    mem.chunks.retain(|(base, _)| *base != XSDT_AT);
    assert_eq!(
        Tables::new(&mem, RSDP_AT).unwrap_err(),
        AcpiError::TableHeaderUnreadable {
            address: XSDT_AT,
            listed_in: Signature::XSDT
        }
    );

    // An RSDT-only platform with a bad RSDT checksum.
    let mut mem = rsdt_only_platform(&madt(&sample_madt_entries()));
    bytes_at(&mut mem, RSDT_AT)[CHECKSUM_OFFSET] ^= 0x01;
    assert!(matches!(
        Tables::new(&mem, RSDP_AT),
        Err(AcpiError::TableChecksum {
            signature: Signature::RSDT,
            address: RSDT_AT,
            ..
        })
    ));
    let mut out = vec![0u8; 4096];
    assert!(matches!(
        rewrite_tables(&mem, RSDP_AT, &mut out, OUT_PHYS, MAILBOX, RESET_VECTOR),
        Err(AcpiError::TableChecksum {
            signature: Signature::RSDT,
            ..
        })
    ));
}

#[test]
fn too_many_tables_is_an_error() {
    let mut mem = FakeMemory::default();
    let addresses: Vec<u64> = (0..=MAX_TABLES as u64)
        .map(|i| 0x1000_0000 + i * 0x100)
        .collect();
    for &address in &addresses {
        mem.place(address, &sdt(b"SSDT", 2, &[]));
    }
    mem.place(XSDT_AT, &xsdt(&addresses));
    mem.place(RSDP_AT, &rsdp_v2(0, XSDT_AT));
    assert_eq!(
        Tables::new(&mem, RSDP_AT).unwrap_err(),
        AcpiError::TooManyTables {
            signature: Signature::XSDT,
            address: XSDT_AT,
            limit: MAX_TABLES
        }
    );
}

#[test]
fn signature_display_escapes_garbage() {
    assert_eq!(Signature(*b"AP\x00\xff").to_string(), "AP\\x00\\xff");
    assert_eq!(format!("{:?}", Signature::MADT), "Signature(\"APIC\")");
}
