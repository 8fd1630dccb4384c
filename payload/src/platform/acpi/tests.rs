//! Host tests over synthetic tables placed in a [`FakeMemory`].

extern crate std;

use std::format;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::platform::fake::FakeMemory;

// ---------------------------------------------------------------------------------------
// Table assembly helpers. Each returns bytes with a correct checksum.

const OEM_ID: [u8; 6] = *b"PARKBT";
const OEM_TABLE_ID: [u8; 8] = *b"PARKTEST";
const CHECKSUM_OFFSET: usize = offset_of!(SdtHeader, checksum);
const LOCAL_APIC_ADDRESS: u32 = 0xFEE0_0000;
const MADT_FLAG_PCAT_COMPAT: u32 = 1;

const BIOS_AREA: u64 = RSDP_SCAN_START;
const BIOS_AREA_SIZE: usize = (RSDP_SCAN_END - RSDP_SCAN_START) as usize;
const RSDP_AT: u64 = 0xF_0000;
const RSDT_AT: u64 = 0x7FFE_0000;
const XSDT_AT: u64 = 0x7FFE_1000;
const FACP_AT: u64 = 0x7FFE_2000;
const MADT_AT: u64 = 0x7FFE_3000;
const HPET_AT: u64 = 0x7FFE_4000;
const MCFG_AT: u64 = 0x7FFE_5000;
const OUT_PHYS: u64 = 0x7F00_0000;
const MAILBOX: u64 = 0x7F10_0000;
const RESET_VECTOR: u64 = 0x7F10_1080;

fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut table = vec![0u8; SDT_HEADER_LENGTH];
    let header = SdtHeader {
        signature: *signature,
        length: (SDT_HEADER_LENGTH + body.len()) as u32,
        revision,
        checksum: 0,
        oem_id: OEM_ID,
        oem_table_id: OEM_TABLE_ID,
        oem_revision: 1,
        creator_id: *b"TEST",
        creator_revision: 0x2024_0101,
    };
    header.write(&mut table).unwrap();
    table.extend_from_slice(body);
    fix_checksum(&mut table, CHECKSUM_OFFSET);
    table
}

fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut out = vec![0u8; RSDP_V2_LENGTH];
    build_rsdp(OEM_ID, rsdt, xsdt, &mut out).unwrap();
    out
}

fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut out = vec![0u8; RSDP_V1_LENGTH];
    out[..8].copy_from_slice(&RSDP_SIGNATURE);
    out[offset_of!(Rsdp, oem_id)..][..6].copy_from_slice(&OEM_ID);
    out[offset_of!(Rsdp, rsdt_address)..][..4].copy_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut out, offset_of!(Rsdp, checksum));
    out
}

fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|a| a.to_le_bytes()).collect();
    sdt(b"XSDT", 1, &body)
}

fn rsdt(entries: &[u32]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|a| a.to_le_bytes()).collect();
    sdt(b"RSDT", 1, &body)
}

fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&LOCAL_APIC_ADDRESS.to_le_bytes());
    body.extend_from_slice(&MADT_FLAG_PCAT_COMPAT.to_le_bytes());
    for entry in entries {
        body.extend_from_slice(entry);
    }
    sdt(b"APIC", 5, &body)
}

fn local_apic(uid: u8, apic_id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![MADT_TYPE_LOCAL_APIC, 8, uid, apic_id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn x2apic(apic_id: u32, flags: u32, uid: u32) -> Vec<u8> {
    let mut e = vec![MADT_TYPE_LOCAL_X2APIC, 16, 0, 0];
    e.extend_from_slice(&apic_id.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&uid.to_le_bytes());
    e
}

/// I/O APIC (type 1): id, reserved, address, GSI base.
fn io_apic(id: u8, address: u32, gsi_base: u32) -> Vec<u8> {
    let mut e = vec![1, 12, id, 0];
    e.extend_from_slice(&address.to_le_bytes());
    e.extend_from_slice(&gsi_base.to_le_bytes());
    e
}

/// Interrupt Source Override (type 2): bus, source, GSI, flags.
fn source_override(source: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut e = vec![2, 10, 0, source];
    e.extend_from_slice(&gsi.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

/// Local APIC NMI (type 4): processor uid (0xFF = all), flags, LINT#.
fn local_apic_nmi(uid: u8, flags: u16, lint: u8) -> Vec<u8> {
    let mut e = vec![4, 6, uid];
    e.extend_from_slice(&flags.to_le_bytes());
    e.push(lint);
    e
}

/// Local x2APIC NMI (type 0xA): flags, uid, LINT#, reserved.
fn x2apic_nmi(uid: u32, flags: u16, lint: u8) -> Vec<u8> {
    let mut e = vec![0xA, 12];
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&uid.to_le_bytes());
    e.extend_from_slice(&[lint, 0, 0, 0]);
    e
}

fn wakeup_v0(mailbox: u64) -> Vec<u8> {
    let mut e = vec![MADT_TYPE_MULTIPROCESSOR_WAKEUP, 16, 0, 0, 0, 0, 0, 0];
    e.extend_from_slice(&mailbox.to_le_bytes());
    e
}

fn wakeup_v1(mailbox: u64, reset_vector: u64) -> Vec<u8> {
    let mut e = vec![0u8; WAKEUP_ENTRY_LENGTH_V1];
    MultiprocessorWakeupEntry::version_1(mailbox, reset_vector)
        .write(&mut e)
        .unwrap();
    e
}

const ENABLED: u32 = LOCAL_APIC_FLAG_ENABLED;
const ONLINE_CAPABLE: u32 = LOCAL_APIC_FLAG_ONLINE_CAPABLE;

/// A MADT like QEMU's plus x2APIC CPUs: every entry kind a rewrite must keep.
fn sample_madt_entries() -> Vec<Vec<u8>> {
    vec![
        local_apic(0, 0, ENABLED),
        local_apic(1, 1, ENABLED),
        io_apic(0, 0xFEC0_0000, 0),
        source_override(0, 2, 0),
        source_override(9, 9, 0xD),
        local_apic_nmi(0xFF, 0, 1),
        x2apic(0x100, ENABLED, 2),
        x2apic(0x101, ONLINE_CAPABLE, 3),
        x2apic_nmi(0xFFFF_FFFF, 0, 1),
    ]
}

fn bios_area_with(rsdp: &[u8], at: u64) -> Vec<u8> {
    let mut area = vec![0u8; BIOS_AREA_SIZE];
    let offset = (at - BIOS_AREA) as usize;
    area[offset..offset + rsdp.len()].copy_from_slice(rsdp);
    area
}

/// A platform with RSDP (in the BIOS area), XSDT and RSDT, FACP, the given MADT, HPET
/// and MCFG.
fn platform(madt_bytes: &[u8]) -> FakeMemory {
    let mut mem = FakeMemory::default();
    mem.place(
        BIOS_AREA,
        &bios_area_with(&rsdp_v2(RSDT_AT as u32, XSDT_AT), RSDP_AT),
    );
    mem.place(XSDT_AT, &xsdt(&[FACP_AT, MADT_AT, HPET_AT, MCFG_AT]));
    mem.place(
        RSDT_AT,
        &rsdt(&[
            FACP_AT as u32,
            MADT_AT as u32,
            HPET_AT as u32,
            MCFG_AT as u32,
        ]),
    );
    mem.place(FACP_AT, &sdt(b"FACP", 6, &[0x5A; 240]));
    mem.place(MADT_AT, madt_bytes);
    mem.place(HPET_AT, &sdt(b"HPET", 1, &[0x11; 20]));
    mem.place(MCFG_AT, &sdt(b"MCFG", 1, &[0x22; 28]));
    mem
}

/// A platform of ACPI 1.0 kind: revision 0 RSDP and an RSDT only.
fn rsdt_only_platform(madt_bytes: &[u8]) -> FakeMemory {
    let mut mem = FakeMemory::default();
    mem.place(
        BIOS_AREA,
        &bios_area_with(&rsdp_v1(RSDT_AT as u32), RSDP_AT),
    );
    mem.place(
        RSDT_AT,
        &rsdt(&[FACP_AT as u32, MADT_AT as u32, HPET_AT as u32]),
    );
    mem.place(FACP_AT, &sdt(b"FACP", 1, &[0x5A; 80]));
    mem.place(MADT_AT, madt_bytes);
    mem.place(HPET_AT, &sdt(b"HPET", 1, &[0x11; 20]));
    mem
}

fn snapshot(mem: &FakeMemory) -> Vec<(u64, Vec<u8>)> {
    mem.chunks.clone()
}

fn mem_with_output(mem: &FakeMemory, out: &[u8]) -> FakeMemory {
    let mut combined = FakeMemory {
        chunks: mem.chunks.clone(),
    };
    combined.place(OUT_PHYS, out);
    combined
}

fn le_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn le_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

fn xsdt_list(table: &[u8]) -> Vec<u64> {
    table[SDT_HEADER_LENGTH..]
        .chunks_exact(XSDT_ENTRY_SIZE)
        .map(|raw| u64::from_le_bytes(raw.try_into().unwrap()))
        .collect()
}

fn entries_of(table: &[u8]) -> Vec<Vec<u8>> {
    madt_entries(table)
        .unwrap()
        .map(|entry| entry.unwrap().bytes.to_vec())
        .collect()
}

// ---------------------------------------------------------------------------------------
// RSDP.

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

// ---------------------------------------------------------------------------------------
// Table walk.

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

// ---------------------------------------------------------------------------------------
// MADT parsing.

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

// ---------------------------------------------------------------------------------------
// Rewriting.

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

/// Checks everything a kernel would check on the result of [`rewrite_tables`], reading
/// it back through the same parsers from a memory holding the platform and the output.
fn check_rewritten(mem: &FakeMemory, out: &[u8], result: &Rewritten, original_roots: &[u64]) {
    let at = |address: u64| (address - OUT_PHYS) as usize;
    assert_eq!(result.rsdp % RSDP_ALIGNMENT, 0);
    assert!(result.bytes_used <= out.len());

    let rsdp = &out[at(result.rsdp)..][..RSDP_V2_LENGTH];
    assert_eq!(checksum(&rsdp[..RSDP_V1_LENGTH]), 0);
    assert_eq!(checksum(rsdp), 0);
    assert_eq!(rsdp[offset_of!(Rsdp, revision)], RSDP_REVISION_2);
    assert_eq!(
        le_u32(rsdp, offset_of!(Rsdp, length)),
        RSDP_V2_LENGTH as u32
    );
    assert_eq!(le_u32(rsdp, offset_of!(Rsdp, rsdt_address)), 0);
    assert_eq!(le_u64(rsdp, offset_of!(Rsdp, xsdt_address)), result.xsdt);

    let xsdt_length = le_u32(&out[at(result.xsdt)..], offset_of!(SdtHeader, length)) as usize;
    let new_xsdt = &out[at(result.xsdt)..][..xsdt_length];
    assert_eq!(&new_xsdt[..4], b"XSDT");
    assert_eq!(checksum(new_xsdt), 0);
    let expected: Vec<u64> = original_roots
        .iter()
        .map(|&a| if a == MADT_AT { result.madt } else { a })
        .collect();
    assert_eq!(xsdt_list(new_xsdt), expected);

    let madt_length = le_u32(&out[at(result.madt)..], offset_of!(SdtHeader, length)) as usize;
    assert_eq!(at(result.madt) + madt_length, result.bytes_used);
    let new_madt = &out[at(result.madt)..][..madt_length];
    assert_eq!(checksum(new_madt), 0);

    // The whole tree re-reads from the new RSDP, and the MADT has the wakeup entry.
    let combined = mem_with_output(mem, out);
    let tables = Tables::new(&combined, result.rsdp).unwrap();
    assert_eq!(tables.root_signature, Signature::XSDT);
    assert_eq!(tables.find(Signature::MADT).unwrap().0, result.madt);
    let parsed = parse_madt(tables.table_bytes(&combined, Signature::MADT).unwrap()).unwrap();
    assert_eq!(
        parsed.wakeup,
        Some(WakeupEntry {
            mailbox_version: MAILBOX_VERSION_RESET_VECTOR,
            mailbox_address: MAILBOX,
            reset_vector: Some(RESET_VECTOR)
        })
    );
    // Tables other than the MADT are the platform's, in place.
    for table in tables
        .iter()
        .filter(|t| t.signature != Some(Signature::MADT))
    {
        assert!(original_roots.contains(&table.address));
    }
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

// ---------------------------------------------------------------------------------------
// Withholding CPUs and emitting the tables afresh.

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
