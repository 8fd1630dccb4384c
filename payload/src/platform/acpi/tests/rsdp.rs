//! The RSDP: finding it in the BIOS area, its two checksums, building one.

use super::*;

#[test]
fn rsdp_scan_finds_the_valid_rsdp_and_skips_a_decoy() {
    let mut area = bios_area_with(&rsdp_v2(RSDT_AT as u32, XSDT_AT), RSDP_AT);
    // A signature with a wrong checksum earlier in the area, as stray data would be.
    let mut decoy = rsdp_v2(0, XSDT_AT);
    decoy[offset_of!(Rsdp, checksum)] ^= 0xFF;
    area[0x10..0x10 + decoy.len()].copy_from_slice(&decoy);
    // A valid RSDP off the 16-byte grid is not where the scan looks.
    let valid = rsdp_v2(0, XSDT_AT);
    area[0x108..0x108 + valid.len()].copy_from_slice(&valid);
    let mut mem = FakeMemory::default();
    mem.place(BIOS_AREA, &area);

    assert_eq!(
        find_rsdp(&mem, RSDP_SCAN_START, RSDP_SCAN_END),
        Some(RSDP_AT)
    );
    // An unaligned start is rounded up, not used as is.
    assert_eq!(
        find_rsdp(&mem, RSDP_SCAN_START + 1, RSDP_SCAN_END),
        Some(RSDP_AT)
    );
    assert_eq!(find_rsdp(&mem, RSDP_SCAN_START, RSDP_AT), None);
    assert_eq!(
        find_rsdp(&FakeMemory::default(), RSDP_SCAN_START, RSDP_SCAN_END),
        None
    );
    assert_eq!(find_rsdp(&mem, u64::MAX - 8, u64::MAX), None);
}

#[test]
fn rsdp_revision_2_parses() {
    let mut mem = FakeMemory::default();
    mem.place(RSDP_AT, &rsdp_v2(0x1234_5678, XSDT_AT));
    let rsdp = parse_rsdp(&mem, RSDP_AT).unwrap();
    assert_eq!({ rsdp.revision }, RSDP_REVISION_2);
    assert_eq!({ rsdp.rsdt_address }, 0x1234_5678);
    assert_eq!({ rsdp.xsdt_address }, XSDT_AT);
    assert_eq!({ rsdp.length }, RSDP_V2_LENGTH as u32);
    assert_eq!(rsdp.oem_id, OEM_ID);
    assert!(rsdp.has_xsdt());
}

#[test]
fn rsdp_revision_0_needs_only_20_readable_bytes() {
    let mut mem = FakeMemory::default();
    mem.place(RSDP_AT, &rsdp_v1(RSDT_AT as u32));
    let rsdp = parse_rsdp(&mem, RSDP_AT).unwrap();
    assert_eq!({ rsdp.revision }, 0);
    assert_eq!({ rsdp.rsdt_address }, RSDT_AT as u32);
    assert!(!rsdp.has_xsdt());
}

#[test]
fn rsdp_bad_v1_checksum_is_refused() {
    let mut bytes = rsdp_v2(0, XSDT_AT);
    let stored = bytes[offset_of!(Rsdp, checksum)];
    bytes[offset_of!(Rsdp, checksum)] = stored.wrapping_add(3);
    let mut mem = FakeMemory::default();
    mem.place(RSDP_AT, &bytes);
    let err = parse_rsdp(&mem, RSDP_AT).unwrap_err();
    assert_eq!(
        err,
        AcpiError::RsdpChecksum {
            address: RSDP_AT,
            stored: stored.wrapping_add(3),
            expected: stored,
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "RSDP at 0xf0000: checksum {:#04x} over the first 20 bytes does not sum to zero \
             (expected {stored:#04x})",
            stored.wrapping_add(3)
        )
    );
}

#[test]
fn rsdp_bad_extended_checksum_is_refused() {
    let mut bytes = rsdp_v2(0, XSDT_AT);
    // Beyond the first 20 bytes: only the extended checksum notices.
    bytes[offset_of!(Rsdp, reserved)] = 1;
    let mut mem = FakeMemory::default();
    mem.place(RSDP_AT, &bytes);
    let err = parse_rsdp(&mem, RSDP_AT).unwrap_err();
    assert!(
        matches!(
            err,
            AcpiError::RsdpExtendedChecksum {
                address: RSDP_AT,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("extended checksum"));
}

#[test]
fn rsdp_bad_signature_short_length_and_unreadable() {
    let mut mem = FakeMemory::default();
    let mut bytes = rsdp_v2(0, XSDT_AT);
    bytes[0] = b'X';
    mem.place(RSDP_AT, &bytes);
    assert_eq!(
        parse_rsdp(&mem, RSDP_AT),
        Err(AcpiError::RsdpSignature { address: RSDP_AT })
    );

    // Revision 2 with a length of 20: the extended fields would not be covered.
    let mut short = rsdp_v2(0, XSDT_AT);
    short[offset_of!(Rsdp, length)..][..4].copy_from_slice(&20u32.to_le_bytes());
    fix_checksum(&mut short, offset_of!(Rsdp, extended_checksum));
    let mut mem = FakeMemory::default();
    mem.place(RSDP_AT, &short);
    assert_eq!(
        parse_rsdp(&mem, RSDP_AT),
        Err(AcpiError::RsdpLength {
            address: RSDP_AT,
            length: 20
        })
    );

    // Revision 2 but only 20 bytes readable.
    let mut mem = FakeMemory::default();
    mem.place(RSDP_AT, &rsdp_v2(0, XSDT_AT)[..RSDP_V1_LENGTH]);
    assert!(matches!(
        parse_rsdp(&mem, RSDP_AT),
        Err(AcpiError::RsdpUnreadable {
            address: RSDP_AT,
            ..
        })
    ));
    assert!(matches!(
        parse_rsdp(&FakeMemory::default(), RSDP_AT),
        Err(AcpiError::RsdpUnreadable { .. })
    ));
}

#[test]
fn build_rsdp_sets_both_checksums() {
    let mut out = [0xEEu8; 40];
    assert_eq!(build_rsdp(OEM_ID, 0, 0x1_2345_6780, &mut out), Ok(36));
    assert_eq!(checksum(&out[..RSDP_V1_LENGTH]), 0);
    assert_eq!(checksum(&out[..RSDP_V2_LENGTH]), 0);
    assert_eq!(&out[..8], b"RSD PTR ");
    assert_eq!(out[offset_of!(Rsdp, revision)], RSDP_REVISION_2);
    assert_eq!(le_u32(&out, offset_of!(Rsdp, rsdt_address)), 0);
    assert_eq!(le_u32(&out, offset_of!(Rsdp, length)), 36);
    assert_eq!(le_u64(&out, offset_of!(Rsdp, xsdt_address)), 0x1_2345_6780);
    assert_eq!(&out[offset_of!(Rsdp, reserved)..][..3], &[0, 0, 0]);
    // Bytes past the RSDP are not touched.
    assert_eq!(&out[36..], &[0xEE; 4]);
    assert_eq!(
        build_rsdp(OEM_ID, 0, 0, &mut [0u8; 35]),
        Err(AcpiError::OutputTooSmall {
            needed: 36,
            available: 35
        })
    );
}
