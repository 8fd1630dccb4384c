//! MADT parsing: CPUs, wakeup entries, and malformed entries refused with their offset.

use super::*;

#[test]
fn madt_lists_local_apic_and_x2apic_cpus() {
    let table = madt(&[
        local_apic(0, 0, ENABLED),
        local_apic(1, 1, 0),
        local_apic(2, 2, ONLINE_CAPABLE),
        local_apic(3, LOCAL_APIC_BROADCAST_ID, 0),
        io_apic(0, 0xFEC0_0000, 0),
        x2apic(0x100, ENABLED, 0x10),
        x2apic(0x1234_5678, ONLINE_CAPABLE, 0x11),
        x2apic(0x200, 0, 0x12),
        // APIC ID 1 again, now as an x2APIC entry: one CPU.
        x2apic(1, ENABLED, 1),
        x2apic(LOCAL_X2APIC_BROADCAST_ID, ENABLED, 0x13),
        local_apic_nmi(0xFF, 0, 1),
    ]);
    let parsed = parse_madt(&table).unwrap();
    assert_eq!(parsed.local_apic_address, LOCAL_APIC_ADDRESS);
    assert_eq!(parsed.flags, MADT_FLAG_PCAT_COMPAT);
    assert_eq!(parsed.wakeup, None);
    let cpu = |apic_id, processor_uid, enabled, online_capable, from_x2apic_entry| Cpu {
        apic_id,
        processor_uid,
        enabled,
        online_capable,
        from_x2apic_entry,
    };
    assert_eq!(
        parsed.cpus.as_slice(),
        [
            cpu(0, 0, true, false, false),
            cpu(1, 1, false, false, false),
            cpu(2, 2, false, true, false),
            cpu(0x100, 0x10, true, false, true),
            cpu(0x1234_5678, 0x11, false, true, true),
            cpu(0x200, 0x12, false, false, true),
        ]
    );
    let usable: Vec<u32> = parsed.usable_cpus().map(|c| c.apic_id).collect();
    assert_eq!(usable, [0, 2, 0x100, 0x1234_5678]);
}

#[test]
fn madt_wakeup_entries_of_both_versions() {
    let v0 = parse_madt(&madt(&[local_apic(0, 0, ENABLED), wakeup_v0(0x8000_0000)])).unwrap();
    assert_eq!(
        v0.wakeup,
        Some(WakeupEntry {
            mailbox_version: MAILBOX_VERSION_WAKEUP_ONLY,
            mailbox_address: 0x8000_0000,
            reset_vector: None
        })
    );
    let v1 = parse_madt(&madt(&[
        wakeup_v1(MAILBOX, RESET_VECTOR),
        wakeup_v0(0x9000_0000),
    ]))
    .unwrap();
    assert_eq!(
        v1.wakeup,
        Some(WakeupEntry {
            mailbox_version: MAILBOX_VERSION_RESET_VECTOR,
            mailbox_address: MAILBOX,
            reset_vector: Some(RESET_VECTOR)
        })
    );

    // Version 1 in a 16-byte entry has no room for its ResetVector.
    let mut short_v1 = wakeup_v0(MAILBOX);
    short_v1[2] = 1;
    let err = parse_madt(&madt(&[short_v1])).unwrap_err();
    assert_eq!(
        err,
        AcpiError::MadtEntry {
            offset: MADT_FIXED_LENGTH,
            problem: EntryProblem::WakeupVersion {
                mailbox_version: 1,
                length: 16
            }
        }
    );
    assert_eq!(
        err.to_string(),
        "MADT entry at offset 0x2c: Multiprocessor Wakeup MailBoxVersion 1 has length 16 \
         (version 1 and later need 24 bytes)"
    );
}

#[test]
fn madt_zero_length_entry_is_refused_with_its_offset() {
    let mut entries: Vec<Vec<u8>> = (0..6).map(|i| local_apic(i, i, ENABLED)).collect();
    entries.push(vec![MADT_TYPE_LOCAL_APIC, 0, 0, 0, 0, 0, 0, 0]);
    let err = parse_madt(&madt(&entries)).unwrap_err();
    assert_eq!(
        err,
        AcpiError::MadtEntry {
            offset: 0x5c,
            problem: EntryProblem::TooShort { length: 0 }
        }
    );
    assert_eq!(
        err.to_string(),
        "MADT entry at offset 0x5c: length 0 (an entry is at least 2 bytes)"
    );

    let err = parse_madt(&madt(&[vec![1, 1]])).unwrap_err();
    assert_eq!(
        err,
        AcpiError::MadtEntry {
            offset: MADT_FIXED_LENGTH,
            problem: EntryProblem::TooShort { length: 1 }
        }
    );
}

#[test]
fn madt_entry_past_the_end_is_refused() {
    let mut last = x2apic(0x100, ENABLED, 1);
    last.truncate(10);
    let err = parse_madt(&madt(&[local_apic(0, 0, ENABLED), last])).unwrap_err();
    assert_eq!(
        err,
        AcpiError::MadtEntry {
            offset: MADT_FIXED_LENGTH + 8,
            problem: EntryProblem::PastEnd {
                length: 16,
                remaining: 10
            }
        }
    );
    assert_eq!(
        err.to_string(),
        "MADT entry at offset 0x34: length 16 runs past the end of the table (10 bytes left)"
    );

    // A lone type byte at the end.
    let err = parse_madt(&madt(&[local_apic(0, 0, ENABLED), vec![9]])).unwrap_err();
    assert_eq!(
        err,
        AcpiError::MadtEntry {
            offset: MADT_FIXED_LENGTH + 8,
            problem: EntryProblem::HeaderPastEnd { remaining: 1 }
        }
    );
}

#[test]
fn madt_entry_shorter_than_its_structure_is_refused() {
    let mut short = local_apic(0, 0, ENABLED);
    short.truncate(6);
    short[1] = 6;
    let err = parse_madt(&madt(&[short])).unwrap_err();
    assert_eq!(
        err,
        AcpiError::MadtEntry {
            offset: MADT_FIXED_LENGTH,
            problem: EntryProblem::Truncated {
                entry_type: MADT_TYPE_LOCAL_APIC,
                length: 6,
                minimum: 8
            }
        }
    );
    assert_eq!(
        err.to_string(),
        "MADT entry at offset 0x2c: type 0x0 (Local APIC) has length 6, shorter than its 8 bytes"
    );
    // Longer than the structure is fine (fields appended by later ACPI versions).
    let mut long = x2apic(0x300, ENABLED, 7);
    long.extend_from_slice(&[0; 4]);
    long[1] = 20;
    assert_eq!(parse_madt(&madt(&[long])).unwrap().cpus[0].apic_id, 0x300);
}

#[test]
fn madt_header_problems_are_refused() {
    let table = madt(&sample_madt_entries());
    // Header length larger than the buffer.
    let cut = &table[..table.len() - 4];
    let err = parse_madt(cut).unwrap_err();
    assert_eq!(
        err,
        AcpiError::MadtTruncated {
            header_length: table.len() as u32,
            available: table.len() - 4
        }
    );
    assert!(err.to_string().contains("larger than the"));
    // Buffer shorter than the fixed part.
    assert_eq!(
        parse_madt(&table[..40]),
        Err(AcpiError::MadtTooShort {
            length: 40,
            minimum: MADT_FIXED_LENGTH
        })
    );
    // Header length shorter than the fixed part.
    let mut small = table.clone();
    small[4..8].copy_from_slice(&40u32.to_le_bytes());
    assert_eq!(
        parse_madt(&small),
        Err(AcpiError::MadtTooShort {
            length: 40,
            minimum: MADT_FIXED_LENGTH
        })
    );
    // Not a MADT.
    assert_eq!(
        parse_madt(&sdt(b"FACP", 1, &[0; 20])),
        Err(AcpiError::MadtSignature {
            found: Signature::FADT
        })
    );
    // Bytes after the header length are ignored.
    let mut padded = table.clone();
    padded.extend_from_slice(&[0; 7]);
    assert_eq!(parse_madt(&padded), parse_madt(&table));
}

#[test]
fn madt_with_too_many_cpus_is_an_error() {
    let entries: Vec<Vec<u8>> = (0..=MAX_CPUS as u32)
        .map(|id| x2apic(id, ENABLED, id))
        .collect();
    let err = parse_madt(&madt(&entries)).unwrap_err();
    assert_eq!(
        err,
        AcpiError::TooManyCpus {
            offset: MADT_FIXED_LENGTH + MAX_CPUS * 16,
            limit: MAX_CPUS
        }
    );
    // Exactly MAX_CPUS fits.
    assert_eq!(
        parse_madt(&madt(&entries[..MAX_CPUS])).unwrap().cpus.len(),
        MAX_CPUS
    );
}
