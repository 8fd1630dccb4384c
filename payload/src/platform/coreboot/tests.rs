extern crate std;
use super::builder::TableBuilder;
use super::*;
use crate::platform::fake::FakeMemory;
use crate::platform::BootSource;
use std::format;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

const TABLE_ADDR: u64 = 0x7ff5_e000;

fn platform() -> Platform {
    Platform::new(BootSource::Coreboot, TABLE_ADDR)
}

fn sample_memory() -> Vec<MemoryRegion> {
    vec![
        MemoryRegion {
            start: 0,
            size: 0xa0000,
            kind: MemoryKind::Usable,
        },
        MemoryRegion {
            start: 0xf0000,
            size: 0x10000,
            kind: MemoryKind::Reserved,
        },
        MemoryRegion {
            start: 0x10_0000,
            size: 0x7fe5_e000,
            kind: MemoryKind::Usable,
        },
        MemoryRegion {
            start: 0x7ff5_e000,
            size: 0xa2000,
            kind: MemoryKind::CorebootTables,
        },
        MemoryRegion {
            start: 0xb000_0000,
            size: 0x1000_0000,
            kind: MemoryKind::Reserved,
        },
        MemoryRegion {
            start: 0x7ff0_0000,
            size: 0x1000,
            kind: MemoryKind::AcpiReclaim,
        },
        MemoryRegion {
            start: 0x7ff0_1000,
            size: 0x1000,
            kind: MemoryKind::AcpiNvs,
        },
        MemoryRegion {
            start: 0x7ff0_2000,
            size: 0x1000,
            kind: MemoryKind::Unusable,
        },
        MemoryRegion {
            start: 0x1_0000_0000,
            size: 0x8000_0000,
            kind: MemoryKind::Other(6),
        },
    ]
}

const CBFS: CbfsLocation = CbfsLocation {
    fmap_offset: 0x20_0000,
    cbfs_offset: 0x20_0200,
    cbfs_size: 0x5f_fe00,
    boot_media_size: 0x100_0000,
};

fn built_table() -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let used = TableBuilder::new(&mut buf)
        .memory(&sample_memory())
        .serial(&SerialConsole::COM1)
        .acpi_rsdp(0xf_5a40)
        .boot_media(&CBFS)
        .finish()
        .unwrap();
    buf.truncate(used);
    buf
}

fn at(addr: u64, bytes: &[u8]) -> FakeMemory {
    let mut mem = FakeMemory::default();
    mem.place(addr, bytes);
    mem
}

/// Recomputes both checksums after a test has damaged something else.
fn reseal(table: &mut [u8]) {
    let header_bytes = u32::read_at(table, offset_of!(LbHeader, header_bytes)).unwrap() as usize;
    let sum = ip_checksum(&table[header_bytes..]);
    u32::from(sum).write_at(table, offset_of!(LbHeader, table_checksum));
    reseal_header(table);
}

fn reseal_header(table: &mut [u8]) {
    0u32.write_at(table, offset_of!(LbHeader, header_checksum));
    let sum = ip_checksum(&table[..LbHeader::SIZE]);
    u32::from(sum).write_at(table, offset_of!(LbHeader, header_checksum));
}

fn table_fault(result: Result<(), CorebootError>) -> TableProblem {
    match result {
        Err(CorebootError::Table(fault)) => fault.problem,
        other => panic!("expected a table fault, got {other:?}"),
    }
}

fn parse_at(table: &[u8]) -> Result<Platform, CorebootError> {
    let mut p = platform();
    parse(&at(TABLE_ADDR, table), TABLE_ADDR, &mut p).map(|()| p)
}

fn push_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A table written byte by byte from coreboot_tables.h, independent of the structs.
fn hand_built(serial_size: u32) -> Vec<u8> {
    let mut records = Vec::new();
    // LB_TAG_MEMORY with two ranges.
    push_u32(&mut records, 0x01);
    push_u32(&mut records, 8 + 2 * 20);
    for (start, size, kind) in [(0u64, 0x9f000u64, 1u32), (0x1_2345_6000, 0x1000, 16)] {
        push_u32(&mut records, start as u32);
        push_u32(&mut records, (start >> 32) as u32);
        push_u32(&mut records, size as u32);
        push_u32(&mut records, (size >> 32) as u32);
        push_u32(&mut records, kind);
    }
    // An unknown record (LB_TAG_MAINBOARD with two empty strings, padded to 8 bytes
    // of payload) that must be skipped.
    push_u32(&mut records, 0x03);
    push_u32(&mut records, 16);
    records.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    // LB_TAG_SERIAL: MMIO UART, possibly cut short like older coreboot wrote it.
    let serial = [2u32, 0xfedc_6000, 921_600, 4, 48_000_000, 0];
    push_u32(&mut records, 0x0f);
    push_u32(&mut records, serial_size);
    for value in &serial[..(serial_size as usize - 8) / 4] {
        push_u32(&mut records, *value);
    }
    // LB_TAG_ACPI_RSDP.
    push_u32(&mut records, 0x43);
    push_u32(&mut records, 16);
    push_u32(&mut records, 0x7ff0_0000);
    push_u32(&mut records, 0);

    let mut table = Vec::new();
    table.extend_from_slice(b"LBIO");
    push_u32(&mut table, 24);
    push_u32(&mut table, 0); // header_checksum
    push_u32(&mut table, records.len() as u32);
    push_u32(&mut table, 0); // table_checksum
    push_u32(&mut table, 4);
    table.extend_from_slice(&records);
    reseal(&mut table);
    table
}

#[test]
fn ip_checksum_matches_coreboot() {
    // RFC 1071's example words, as little-endian pairs.
    assert_eq!(ip_checksum(&[]), 0xffff);
    assert_eq!(ip_checksum(&[0x01, 0x00, 0xf2, 0x03]), !0x03f3);
    // Carry wraps around: 0xffff + 0x0002 = 0x0002 (end-around), complemented.
    assert_eq!(ip_checksum(&[0xff, 0xff, 0x02, 0x00]), !0x0002);
    // A trailing odd byte is the low half of a pair.
    assert_eq!(ip_checksum(&[0x00, 0x00, 0x34]), !0x0034);
    // A region including its own stored checksum sums to zero.
    let table = built_table();
    assert_eq!(ip_checksum(&table[..LbHeader::SIZE]), 0);
}

#[test]
fn parses_hand_built_table() {
    let p = parse_at(&hand_built(32)).unwrap();
    assert_eq!(
        p.memory.as_slice(),
        &[
            MemoryRegion {
                start: 0,
                size: 0x9f000,
                kind: MemoryKind::Usable
            },
            MemoryRegion {
                start: 0x1_2345_6000,
                size: 0x1000,
                kind: MemoryKind::CorebootTables
            },
        ]
    );
    assert_eq!(
        p.serial,
        Some(SerialConsole {
            access: SerialAccess::Mmio {
                base: 0xfedc_6000,
                reg_width: 4
            },
            baud: 921_600,
            input_hz: 48_000_000,
        })
    );
    assert_eq!(p.rsdp, Some(0x7ff0_0000));
    assert_eq!(p.cbfs, None);
}

#[test]
fn builder_matches_hand_layout() {
    let mut buf = vec![0u8; 256];
    let used = TableBuilder::new(&mut buf)
        .memory(&[MemoryRegion {
            start: 0x1_0000_2000,
            size: 0x3000,
            kind: MemoryKind::AcpiNvs,
        }])
        .forward(0x1234_5678_9abc)
        .finish()
        .unwrap();
    let mut expected = Vec::new();
    expected.extend_from_slice(b"LBIO");
    for v in [24u32, 0, 28 + 16, 0, 2] {
        push_u32(&mut expected, v);
    }
    for v in [
        1u32,
        28,
        0x2000,
        1,
        0x3000,
        0,
        4,
        0x11,
        16,
        0x5678_9abc,
        0x1234,
    ] {
        push_u32(&mut expected, v);
    }
    reseal(&mut expected);
    assert_eq!(&buf[..used], &expected[..]);
}

#[test]
fn round_trip_through_builder() {
    let table = built_table();
    let p = parse_at(&table).unwrap();
    assert_eq!(p.memory.as_slice(), sample_memory().as_slice());
    assert_eq!(p.serial, Some(SerialConsole::COM1));
    assert_eq!(p.rsdp, Some(0xf_5a40));
    assert_eq!(p.cbfs, Some(CBFS));

    let mmio = SerialConsole {
        access: SerialAccess::Mmio {
            base: 0xfe03_4000,
            reg_width: 4,
        },
        baud: 3_000_000,
        input_hz: 48_000_000,
    };
    let mut buf = [0u8; 128];
    let used = TableBuilder::new(&mut buf).serial(&mmio).finish().unwrap();
    let p = parse_at(&buf[..used]).unwrap();
    assert_eq!(p.serial, Some(mmio));
    assert!(p.memory.is_empty());
}

#[test]
fn empty_table_is_valid() {
    let mut buf = [0u8; LbHeader::SIZE];
    assert_eq!(TableBuilder::new(&mut buf).finish(), Ok(LbHeader::SIZE));
    let mut p = platform();
    p.serial = Some(SerialConsole::COM1);
    parse(&at(TABLE_ADDR, &buf), TABLE_ADDR, &mut p).unwrap();
    // Fields the table says nothing about keep the caller's value.
    assert_eq!(p.serial, Some(SerialConsole::COM1));
}

#[test]
fn short_serial_records_from_older_coreboot() {
    // Through baud only: no regwidth, no input_hertz.
    let p = parse_at(&hand_built(20)).unwrap();
    assert_eq!(
        p.serial,
        Some(SerialConsole {
            access: SerialAccess::Mmio {
                base: 0xfedc_6000,
                reg_width: 1
            },
            baud: 921_600,
            input_hz: SerialConsole::COM1.input_hz,
        })
    );
    // With regwidth, without input_hertz.
    let p = parse_at(&hand_built(24)).unwrap();
    assert_eq!(
        p.serial.unwrap().access,
        SerialAccess::Mmio {
            base: 0xfedc_6000,
            reg_width: 4
        }
    );
    assert_eq!(p.serial.unwrap().input_hz, SerialConsole::COM1.input_hz);
    // Shorter than baud is an error.
    assert_eq!(
        table_fault(parse_at(&hand_built(16)).map(|_| ())),
        TableProblem::RecordTooShort {
            index: 2,
            offset: 24 + 48 + 16,
            tag: LB_TAG_SERIAL,
            size: 16,
            minimum: 20
        }
    );
}

#[test]
fn bad_signature() {
    let mut table = built_table();
    table[0] = b'X';
    let err = parse_at(&table).unwrap_err();
    assert_eq!(
        err,
        CorebootError::Table(TableFault {
            table: TABLE_ADDR,
            problem: TableProblem::BadSignature { found: *b"XBIO" }
        })
    );
    assert_eq!(
        err.to_string(),
        "coreboot table at 0x7ff5e000: signature is 58 42 49 4f, expected \"LBIO\""
    );
}

#[test]
fn bad_header_checksum() {
    let mut table = built_table();
    table[offset_of!(LbHeader, table_entries)] ^= 0x40;
    assert!(matches!(
        table_fault(parse_at(&table).map(|_| ())),
        TableProblem::HeaderChecksum { .. }
    ));
    let mut table = built_table();
    table[offset_of!(LbHeader, header_checksum)] ^= 1;
    let err = parse_at(&table).unwrap_err();
    assert!(err.to_string().contains("header checksum is 0x"), "{err}");
}

#[test]
fn bad_header_bytes() {
    for header_bytes in [16, MAX_TABLE_BYTES + 4] {
        let mut table = built_table();
        header_bytes.write_at(&mut table, offset_of!(LbHeader, header_bytes));
        reseal_header(&mut table);
        assert_eq!(
            table_fault(parse_at(&table).map(|_| ())),
            TableProblem::BadHeaderBytes { header_bytes }
        );
    }
}

#[test]
fn bad_table_checksum() {
    let mut table = built_table();
    let last = table.len() - 1;
    table[last] ^= 0x80;
    let err = parse_at(&table).unwrap_err();
    assert!(matches!(
        err,
        CorebootError::Table(TableFault {
            problem: TableProblem::TableChecksum { .. },
            ..
        })
    ));
    assert!(err.to_string().contains("records checksum to"), "{err}");
}

/// Sets the size of the record at `offset` and reseals the table.
fn with_record_size(mut table: Vec<u8>, offset: usize, size: u32) -> Vec<u8> {
    size.write_at(&mut table, offset + offset_of!(LbRecord, size));
    reseal(&mut table);
    table
}

/// Offsets of the records in [`built_table`].
const MEMORY_OFFSET: usize = 24;
const SERIAL_OFFSET: usize = MEMORY_OFFSET + 8 + 9 * 20;

#[test]
fn truncated_record() {
    let table = built_table();
    let end = table.len() as u32;
    let err = parse_at(&with_record_size(table, SERIAL_OFFSET, 0x200)).unwrap_err();
    assert_eq!(
            err.to_string(),
            format!(
                "coreboot table at 0x7ff5e000: record 1 at offset 0x{SERIAL_OFFSET:x} claims size 0x200, past the table end 0x{end:x}"
            )
        );

    // A table cut short: the header promises more bytes than memory holds.
    let table = built_table();
    assert_eq!(
        table_fault(parse_at(&table[..table.len() - 4]).map(|_| ())),
        TableProblem::Unreadable {
            len: table.len() as u64
        }
    );

    // Room for part of a record head only.
    let mut table = built_table();
    table.extend_from_slice(&[0; 4]);
    let table_bytes = (table.len() - LbHeader::SIZE) as u32;
    table_bytes.write_at(&mut table, offset_of!(LbHeader, table_bytes));
    reseal(&mut table);
    assert!(matches!(
        table_fault(parse_at(&table).map(|_| ())),
        TableProblem::RecordHeadPastEnd { index: 4, .. }
    ));
}

#[test]
fn bad_record_sizes() {
    assert_eq!(
        table_fault(parse_at(&with_record_size(built_table(), SERIAL_OFFSET, 4)).map(|_| ())),
        TableProblem::RecordSizeTooSmall {
            index: 1,
            offset: SERIAL_OFFSET as u32,
            size: 4
        }
    );
    assert_eq!(
        table_fault(parse_at(&with_record_size(built_table(), SERIAL_OFFSET, 30)).map(|_| ())),
        TableProblem::RecordSizeMisaligned {
            index: 1,
            offset: SERIAL_OFFSET as u32,
            size: 30
        }
    );
    // A memory record with two ranges and 4 stray bytes.
    let mut buf = [0u8; 128];
    let used = TableBuilder::new(&mut buf)
        .memory(&sample_memory()[..2])
        .finish()
        .unwrap();
    let mut table = buf[..used].to_vec();
    table.extend_from_slice(&[0; 4]);
    (8u32 + 2 * 20 + 4).write_at(&mut table, MEMORY_OFFSET + 4);
    let table_bytes = (table.len() - LbHeader::SIZE) as u32;
    table_bytes.write_at(&mut table, offset_of!(LbHeader, table_bytes));
    reseal(&mut table);
    let err = parse_at(&table).unwrap_err();
    assert_eq!(
        table_fault(Err(err)),
        TableProblem::MemoryRecordSize {
            index: 0,
            offset: MEMORY_OFFSET as u32,
            size: 52
        }
    );
    assert!(err.to_string().contains("expected 8 + 20 * n"), "{err}");
}

#[test]
fn cbmem_console_record_is_read_and_built_as_coreboot_lays_it_out() {
    // Hand-written from coreboot_tables.h: tag 0x17, size 16, lb_uint64 address.
    let mut records = Vec::new();
    for v in [0x17u32, 16, 0x7ffd_e000, 0x1] {
        push_u32(&mut records, v);
    }
    let mut table = Vec::new();
    table.extend_from_slice(b"LBIO");
    for v in [24u32, 0, records.len() as u32, 0, 1] {
        push_u32(&mut table, v);
    }
    table.extend_from_slice(&records);
    reseal(&mut table);
    let p = parse_at(&table).unwrap();
    assert_eq!(p.cbmem_console, Some(0x1_7ffd_e000));

    let mut buf = [0u8; 64];
    let used = TableBuilder::new(&mut buf)
        .cbmem_console(0x1_7ffd_e000)
        .finish()
        .unwrap();
    assert_eq!(&buf[..used], &table[..]);

    // Address 0 means no console; a table without the record leaves it unset.
    let used = TableBuilder::new(&mut buf)
        .cbmem_console(0)
        .finish()
        .unwrap();
    assert_eq!(parse_at(&buf[..used]).unwrap().cbmem_console, None);
    assert_eq!(parse_at(&built_table()).unwrap().cbmem_console, None);
}

#[test]
fn short_cbmem_console_record_is_named() {
    let mut table = Vec::new();
    table.extend_from_slice(b"LBIO");
    for v in [24u32, 0, 12, 0, 1, 0x17, 12, 0x7ffd_e000] {
        push_u32(&mut table, v);
    }
    reseal(&mut table);
    assert_eq!(
        table_fault(parse_at(&table).map(|_| ())),
        TableProblem::RecordTooShort {
            index: 0,
            offset: 24,
            tag: LB_TAG_CBMEM_CONSOLE,
            size: 12,
            minimum: 16
        }
    );
}

#[test]
fn record_too_short_for_its_tag() {
    let mut buf = [0u8; 64];
    let used = TableBuilder::new(&mut buf)
        .acpi_rsdp(0xe0000)
        .finish()
        .unwrap();
    // Cut the RSDP record down to its head, and the table with it.
    let mut table = buf[..used - 8].to_vec();
    8u32.write_at(&mut table, LbHeader::SIZE + offset_of!(LbRecord, size));
    8u32.write_at(&mut table, offset_of!(LbHeader, table_bytes));
    reseal(&mut table);
    let err = parse_at(&table).unwrap_err();
    assert_eq!(
        table_fault(Err(err)),
        TableProblem::RecordTooShort {
            index: 0,
            offset: 24,
            tag: LB_TAG_ACPI_RSDP,
            size: 8,
            minimum: 16
        }
    );
    assert!(err.to_string().contains("expected at least 0x10"), "{err}");
}

#[test]
fn entry_count_must_match() {
    let mut table = built_table();
    7u32.write_at(&mut table, offset_of!(LbHeader, table_entries));
    reseal(&mut table);
    let err = parse_at(&table).unwrap_err();
    assert_eq!(
        table_fault(Err(err)),
        TableProblem::EntryCount {
            stated: 7,
            found: 4
        }
    );
}

#[test]
fn too_many_memory_ranges() {
    let regions = vec![
        MemoryRegion {
            start: 0,
            size: 0x1000,
            kind: MemoryKind::Usable
        };
        MAX_MEMORY_REGIONS + 1
    ];
    let mut buf = vec![0u8; 4096];
    let used = TableBuilder::new(&mut buf)
        .memory(&regions[..MAX_MEMORY_REGIONS])
        .finish()
        .unwrap();
    assert_eq!(
        parse_at(&buf[..used]).unwrap().memory.len(),
        MAX_MEMORY_REGIONS
    );

    let used = TableBuilder::new(&mut buf)
        .memory(&regions)
        .finish()
        .unwrap();
    let mut p = platform();
    p.rsdp = Some(1);
    let err = parse(&at(TABLE_ADDR, &buf[..used]), TABLE_ADDR, &mut p).unwrap_err();
    assert_eq!(
        table_fault(Err(err)),
        TableProblem::TooManyMemoryRanges {
            index: 0,
            offset: 24,
            total: MAX_MEMORY_REGIONS as u32 + 1
        }
    );
    // A rejected table leaves the platform alone.
    assert_eq!(p.rsdp, Some(1));
    assert!(p.memory.is_empty());
}

#[test]
fn forward_record_is_followed() {
    let real = built_table();
    let mut forward = [0u8; 64];
    let used = TableBuilder::new(&mut forward)
        .forward(TABLE_ADDR)
        .finish()
        .unwrap();
    let mut mem = FakeMemory::default();
    mem.place(FORWARDING_TABLE_ADDR, &forward[..used]);
    mem.place(TABLE_ADDR, &real);

    assert_eq!(find_table(&mem, None), Ok(TABLE_ADDR));
    // A hint pointing at a forwarding table resolves too.
    assert_eq!(
        find_table(&mem, Some(FORWARDING_TABLE_ADDR)),
        Ok(TABLE_ADDR)
    );
    // parse follows a forward record itself.
    let mut p = platform();
    parse(&mem, FORWARDING_TABLE_ADDR, &mut p).unwrap();
    assert_eq!(p.cbfs, Some(CBFS));
}

#[test]
fn forward_loop_is_an_error() {
    let mut forward = [0u8; 64];
    let used = TableBuilder::new(&mut forward)
        .forward(TABLE_ADDR)
        .finish()
        .unwrap();
    let err = parse_at(&forward[..used]).unwrap_err();
    assert_eq!(table_fault(Err(err)), TableProblem::TooManyForwards);
}

#[test]
fn scan_finds_table_in_f_segment() {
    let mut segment = vec![0u8; 0x1_0000];
    let table = built_table();
    segment[..table.len()].copy_from_slice(&table);
    let mut mem = FakeMemory::default();
    mem.place(0, &[0u8; 0x1000]);
    mem.place(0xf_0000, &segment);
    assert_eq!(find_table(&mem, None), Ok(0xf_0000));

    // Also at a 16-byte step that is not the window start.
    let mut segment = vec![0u8; 0x1_0000];
    segment[0x7a0..0x7a0 + table.len()].copy_from_slice(&table);
    let mem = at(0xf_0000, &segment);
    assert_eq!(find_table(&mem, None), Ok(0xf_07a0));
}

#[test]
fn hint_preferred_over_scan() {
    let mut mem = FakeMemory::default();
    mem.place(0xf_0000, &built_table());
    mem.place(TABLE_ADDR, &built_table());
    assert_eq!(find_table(&mem, Some(TABLE_ADDR)), Ok(TABLE_ADDR));
    // A damaged hint falls back to the scan.
    assert_eq!(find_table(&mem, Some(TABLE_ADDR + 0x10)), Ok(0xf_0000));
}

#[test]
fn not_found_says_what_was_tried() {
    let mut damaged = built_table();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    let mut mem = FakeMemory::default();
    mem.place(0, &[0u8; 0x1000]);
    mem.place(0xf_0000, &damaged);
    let err = find_table(&mem, Some(0x1234_0000)).unwrap_err();
    let CorebootError::NotFound {
        hint,
        hint_fault,
        forwarding_table_fault,
        scan_fault,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(hint, Some(0x1234_0000));
    assert_eq!(
        hint_fault.unwrap().problem,
        TableProblem::Unreadable { len: 24 }
    );
    assert_eq!(
        forwarding_table_fault.problem,
        TableProblem::BadSignature { found: [0; 4] }
    );
    assert_eq!(scan_fault.unwrap().table, 0xf_0000);
    let text = err.to_string();
    for part in ["0x12340000", "0x500", "0xf0000-0xfffff", "table checksum"] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }

    let err = find_table(&FakeMemory::default(), None).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no pointer from coreboot"), "{text}");
    assert!(text.contains("found no \"LBIO\" signature"), "{text}");
}

#[test]
fn builder_reports_errors() {
    let mut buf = [0u8; 40];
    let err = TableBuilder::new(&mut buf)
        .boot_media(&CBFS)
        .finish()
        .unwrap_err();
    assert_eq!(
        err,
        CorebootError::BufferTooSmall {
            needed: 64,
            available: 40
        }
    );
    let mut tiny = [0u8; 8];
    assert!(TableBuilder::new(&mut tiny).finish().is_err());

    let mut buf = [0u8; 128];
    let far = SerialConsole {
        access: SerialAccess::Mmio {
            base: 0x1_0000_0000,
            reg_width: 4,
        },
        ..SerialConsole::COM1
    };
    assert_eq!(
        TableBuilder::new(&mut buf).serial(&far).finish(),
        Err(CorebootError::SerialBaseTooHigh {
            base: 0x1_0000_0000
        })
    );
}

#[test]
fn unusable_serial_record_is_ignored() {
    let mut buf = [0u8; 128];
    let used = TableBuilder::new(&mut buf)
        .serial(&SerialConsole::COM1)
        .finish()
        .unwrap();
    // An unknown serial type (say, a future one).
    7u32.write_at(&mut buf, LbHeader::SIZE + offset_of!(LbSerial, r#type));
    reseal(&mut buf[..used]);
    let p = parse_at(&buf[..used]).unwrap();
    assert_eq!(p.serial, None);
}

#[test]
fn display_of_example_fault() {
    let fault = TableFault {
        table: 0x7ff5_e000,
        problem: TableProblem::RecordPastEnd {
            index: 3,
            offset: 0x48,
            size: 0x200,
            table_end: 0x1a0,
        },
    };
    assert_eq!(
            CorebootError::from(fault).to_string(),
            "coreboot table at 0x7ff5e000: record 3 at offset 0x48 claims size 0x200, past the table end 0x1a0"
        );
}
