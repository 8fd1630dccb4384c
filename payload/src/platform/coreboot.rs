//! coreboot tables: finding them, checking them, and reading what parkboot needs.
//!
//! coreboot passes its payload the address of the table header at `[esp+4]`. parkboot
//! prefers that pointer, but falls back to the low-memory forwarding table and the legacy
//! scan so that a stub loader which forgets the pointer still works. Everything is read
//! through [`PhysicalMemory`] with bounds-checked accessors: a damaged table must turn
//! into an error that says where it is damaged, never into a fault or a panic, because
//! parkboot's console depends on this table and a silent crash would leave no trace.
//!
//! `builder::TableBuilder` (test-only: host tests, and test crates and the bare-metal test
//! loader through the `test-support` feature) writes the same layout, so they can give parkboot a table
//! without running coreboot.

use core::fmt;
use core::mem::{offset_of, size_of};
use core::ops::Range;

use crate::memory::{MemoryKind, MemoryRegion, MAX_MEMORY_REGIONS};
use crate::platform::{CbfsLocation, PhysicalMemory, Platform, SerialAccess, SerialConsole};

/// `lb_header.signature`.
pub const LB_HEADER_SIGNATURE: [u8; 4] = *b"LBIO";

/// Memory map: a list of [`LbMemoryRange`].
pub const LB_TAG_MEMORY: u32 = 0x0001;
/// The console UART: [`LbSerial`].
pub const LB_TAG_SERIAL: u32 = 0x000f;
/// The real table is elsewhere: [`LbForward`].
pub const LB_TAG_FORWARD: u32 = 0x0011;
/// coreboot's in-memory log, `cbmem -c`: [`LbCbmemRef`] to a `struct cbmem_console`.
pub const LB_TAG_CBMEM_CONSOLE: u32 = 0x0017;
/// Where CBFS sits in the boot media: [`LbBootMediaParams`].
pub const LB_TAG_BOOT_MEDIA_PARAMS: u32 = 0x0030;
/// The ACPI RSDP coreboot installed: [`LbAcpiRsdp`].
pub const LB_TAG_ACPI_RSDP: u32 = 0x0043;

/// Memory anyone can use.
pub const LB_MEM_RAM: u32 = 1;
/// Memory nobody may use.
pub const LB_MEM_RESERVED: u32 = 2;
/// ACPI tables.
pub const LB_MEM_ACPI: u32 = 3;
/// ACPI non-volatile storage.
pub const LB_MEM_NVS: u32 = 4;
/// Unusable address space.
pub const LB_MEM_UNUSABLE: u32 = 5;
/// coreboot tables and CBMEM.
pub const LB_MEM_TABLE: u32 = 16;

/// `lb_serial.type` for a UART behind x86 I/O ports.
pub const LB_SERIAL_TYPE_IO_MAPPED: u32 = 1;
/// `lb_serial.type` for a memory-mapped UART.
pub const LB_SERIAL_TYPE_MEMORY_MAPPED: u32 = 2;

/// Where coreboot on x86 leaves a small table holding only an [`LbForward`] record, so
/// that code scanning low memory finds the real table in CBMEM.
pub const FORWARDING_TABLE_ADDR: u64 = 0x500;
/// The first legacy scan window: the first 4 KiB of RAM.
pub const LOW_MEMORY_SCAN: Range<u64> = 0x0..0x1000;
/// The second legacy scan window: the BIOS F segment.
pub const F_SEGMENT_SCAN: Range<u64> = 0xf_0000..0x10_0000;
/// coreboot aligns every table header to 16 bytes (`lb_table_init`), so the scan only
/// looks there.
pub const TABLE_ALIGNMENT: u64 = 16;

/// coreboot forwards once (0x500 to CBMEM); a few more hops are tolerated, but a longer
/// chain is a loop or garbage.
pub const MAX_FORWARD_HOPS: usize = 4;
/// Largest `table_bytes` parkboot accepts. coreboot reserves far less for its table; the
/// limit keeps a corrupt header that happens to checksum from making parkboot read
/// megabytes of memory.
pub const MAX_TABLE_BYTES: u32 = 128 * 1024;

/// Every record's size is a multiple of 4 (the alignment of `lb_uint64_t`), so that the
/// next record starts aligned.
const RECORD_SIZE_MULTIPLE: u32 = 4;

/// Register spacing coreboot reports for an I/O-port UART: 8250 registers are one port
/// apart.
#[cfg(any(test, feature = "test-support"))]
const IO_UART_REGISTER_WIDTH: u32 = 1;
/// Register spacing assumed for a memory-mapped UART in records from before `regwidth`
/// existed: byte-spaced, like a PC 16550.
const LEGACY_MMIO_REGISTER_WIDTH: u32 = 1;

use crate::wire::{wire_struct, WireField};

wire_struct! {
    /// coreboot's `lb_uint64_t`: a 64-bit value only 4-byte aligned, because coreboot is
    /// usually a 32-bit program. Split in halves so the Rust layout matches.
    pub struct LbUint64 {
        pub lo: u32,
        pub hi: u32,
    }
}

impl LbUint64 {
    pub const fn new(value: u64) -> Self {
        LbUint64 {
            lo: value as u32,
            hi: (value >> 32) as u32,
        }
    }

    pub const fn get(self) -> u64 {
        ((self.hi as u64) << 32) | self.lo as u64
    }
}

const _: () = assert!(size_of::<LbUint64>() == 8);
const _: () = assert!(core::mem::align_of::<LbUint64>() == 4);
const _: () = assert!(offset_of!(LbUint64, lo) == 0);
const _: () = assert!(offset_of!(LbUint64, hi) == 4);

wire_struct! {
    /// `struct lb_header`.
    pub struct LbHeader {
        pub signature: [u8; 4],
        /// Bytes from the header start to the first record.
        pub header_bytes: u32,
        /// IP checksum of the header with this field zero.
        pub header_checksum: u32,
        /// Bytes of records after the header.
        pub table_bytes: u32,
        /// IP checksum of the records.
        pub table_checksum: u32,
        /// Number of records.
        pub table_entries: u32,
    }
}

const _: () = assert!(size_of::<LbHeader>() == 24);
const _: () = assert!(offset_of!(LbHeader, signature) == 0);
const _: () = assert!(offset_of!(LbHeader, header_bytes) == 4);
const _: () = assert!(offset_of!(LbHeader, header_checksum) == 8);
const _: () = assert!(offset_of!(LbHeader, table_bytes) == 12);
const _: () = assert!(offset_of!(LbHeader, table_checksum) == 16);
const _: () = assert!(offset_of!(LbHeader, table_entries) == 20);

wire_struct! {
    /// `struct lb_record`: the head every record starts with, so unknown records can be
    /// skipped.
    pub struct LbRecord {
        pub tag: u32,
        /// Size of the whole record, this head included.
        pub size: u32,
    }
}

const _: () = assert!(size_of::<LbRecord>() == 8);
const _: () = assert!(offset_of!(LbRecord, tag) == 0);
const _: () = assert!(offset_of!(LbRecord, size) == 4);

wire_struct! {
    /// `struct lb_memory_range`: one entry of the LB_TAG_MEMORY record, which is an
    /// [`LbRecord`] followed by `(size - 8) / 20` of these.
    pub struct LbMemoryRange {
        pub start: LbUint64,
        pub size: LbUint64,
        /// One of the `LB_MEM_*` values.
        pub r#type: u32,
    }
}

const _: () = assert!(size_of::<LbMemoryRange>() == 20);
const _: () = assert!(offset_of!(LbMemoryRange, start) == 0);
const _: () = assert!(offset_of!(LbMemoryRange, size) == 8);
const _: () = assert!(offset_of!(LbMemoryRange, r#type) == 16);

wire_struct! {
    /// `struct lb_serial`. Older coreboot wrote shorter records (without `regwidth`,
    /// `input_hertz` or `uart_pci_addr`); parkboot needs only the fields through `baud`.
    pub struct LbSerial {
        pub tag: u32,
        pub size: u32,
        /// [`LB_SERIAL_TYPE_IO_MAPPED`] or [`LB_SERIAL_TYPE_MEMORY_MAPPED`].
        pub r#type: u32,
        pub baseaddr: u32,
        pub baud: u32,
        pub regwidth: u32,
        pub input_hertz: u32,
        pub uart_pci_addr: u32,
    }
}

const _: () = assert!(size_of::<LbSerial>() == 32);
const _: () = assert!(offset_of!(LbSerial, r#type) == 8);
const _: () = assert!(offset_of!(LbSerial, baseaddr) == 12);
const _: () = assert!(offset_of!(LbSerial, baud) == 16);
const _: () = assert!(offset_of!(LbSerial, regwidth) == 20);
const _: () = assert!(offset_of!(LbSerial, input_hertz) == 24);
const _: () = assert!(offset_of!(LbSerial, uart_pci_addr) == 28);

/// The shortest serial record parkboot can use: type, base address and baud.
const LB_SERIAL_MIN_SIZE: usize = offset_of!(LbSerial, regwidth);

wire_struct! {
    /// `struct lb_forward`.
    pub struct LbForward {
        pub tag: u32,
        pub size: u32,
        /// Physical address of the real table's header.
        pub forward: LbUint64,
    }
}

const _: () = assert!(size_of::<LbForward>() == 16);
const _: () = assert!(offset_of!(LbForward, forward) == 8);

wire_struct! {
    /// `struct lb_cbmem_ref`: the address of a CBMEM entry (here the CBMEM console).
    pub struct LbCbmemRef {
        pub tag: u32,
        pub size: u32,
        pub cbmem_addr: LbUint64,
    }
}

const _: () = assert!(size_of::<LbCbmemRef>() == 16);
const _: () = assert!(offset_of!(LbCbmemRef, cbmem_addr) == 8);

wire_struct! {
    /// `struct lb_acpi_rsdp`.
    pub struct LbAcpiRsdp {
        pub tag: u32,
        pub size: u32,
        pub rsdp_pointer: LbUint64,
    }
}

const _: () = assert!(size_of::<LbAcpiRsdp>() == 16);
const _: () = assert!(offset_of!(LbAcpiRsdp, rsdp_pointer) == 8);

wire_struct! {
    /// `struct lb_boot_media_params`; offsets are relative to the start of the boot
    /// media (the flash).
    pub struct LbBootMediaParams {
        pub tag: u32,
        pub size: u32,
        pub fmap_offset: LbUint64,
        pub cbfs_offset: LbUint64,
        pub cbfs_size: LbUint64,
        pub boot_media_size: LbUint64,
    }
}

const _: () = assert!(size_of::<LbBootMediaParams>() == 40);
const _: () = assert!(offset_of!(LbBootMediaParams, fmap_offset) == 8);
const _: () = assert!(offset_of!(LbBootMediaParams, cbfs_offset) == 16);
const _: () = assert!(offset_of!(LbBootMediaParams, cbfs_size) == 24);
const _: () = assert!(offset_of!(LbBootMediaParams, boot_media_size) == 32);

/// coreboot's `compute_ip_checksum`: the 16-bit one's-complement checksum of RFC 1071
/// over little-endian byte pairs (a trailing odd byte is the low half of a last pair).
pub fn ip_checksum(bytes: &[u8]) -> u16 {
    let (pairs, remainder) = bytes.as_chunks::<2>();
    let mut sum: u64 = pairs
        .iter()
        .map(|&pair| u64::from(u16::from_le_bytes(pair)))
        .sum();
    if let [last] = remainder {
        sum += u64::from(*last);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What is wrong with one particular table. Offsets are from the table header, record
/// indices count from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableProblem {
    /// `len` bytes at the table address cannot be read.
    Unreadable {
        len: u64,
    },
    BadSignature {
        found: [u8; 4],
    },
    HeaderChecksum {
        stored: u32,
        computed: u16,
    },
    /// `header_bytes` smaller than `lb_header` or larger than [`MAX_TABLE_BYTES`].
    BadHeaderBytes {
        header_bytes: u32,
    },
    TooLarge {
        table_bytes: u32,
    },
    TableChecksum {
        stored: u32,
        computed: u16,
    },
    /// Fewer than 8 bytes left for the next record's head.
    RecordHeadPastEnd {
        index: u32,
        offset: u32,
        table_end: u32,
    },
    RecordSizeTooSmall {
        index: u32,
        offset: u32,
        size: u32,
    },
    RecordSizeMisaligned {
        index: u32,
        offset: u32,
        size: u32,
    },
    RecordPastEnd {
        index: u32,
        offset: u32,
        size: u32,
        table_end: u32,
    },
    /// A record parkboot reads is shorter than the fields it reads.
    RecordTooShort {
        index: u32,
        offset: u32,
        tag: u32,
        size: u32,
        minimum: u32,
    },
    /// An LB_TAG_MEMORY record whose size is not 8 + 20 * n.
    MemoryRecordSize {
        index: u32,
        offset: u32,
        size: u32,
    },
    /// The memory records together hold more than [`MAX_MEMORY_REGIONS`] ranges.
    TooManyMemoryRanges {
        index: u32,
        offset: u32,
        total: u32,
    },
    /// `table_entries` disagrees with the records actually in `table_bytes`.
    EntryCount {
        stated: u32,
        found: u32,
    },
    /// More than [`MAX_FORWARD_HOPS`] forward records in a row.
    TooManyForwards,
}

impl fmt::Display for TableProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TableProblem::Unreadable { len } => write!(f, "cannot read 0x{len:x} bytes"),
            TableProblem::BadSignature { found } => write!(
                f,
                "signature is {:02x} {:02x} {:02x} {:02x}, expected \"LBIO\"",
                found[0], found[1], found[2], found[3]
            ),
            TableProblem::HeaderChecksum { stored, computed } => write!(
                f,
                "header checksum is 0x{stored:x}, but the header checksums to 0x{computed:04x}"
            ),
            TableProblem::BadHeaderBytes { header_bytes } => write!(
                f,
                "header_bytes is 0x{header_bytes:x}, expected 0x{:x} to 0x{MAX_TABLE_BYTES:x}",
                LbHeader::SIZE
            ),
            TableProblem::TooLarge { table_bytes } => write!(
                f,
                "table_bytes is 0x{table_bytes:x}, more than the 0x{MAX_TABLE_BYTES:x} parkboot accepts"
            ),
            TableProblem::TableChecksum { stored, computed } => write!(
                f,
                "table checksum is 0x{stored:x}, but the records checksum to 0x{computed:04x}"
            ),
            TableProblem::RecordHeadPastEnd {
                index,
                offset,
                table_end,
            } => write!(
                f,
                "record {index} at offset 0x{offset:x} has no room for its 8-byte head before the table end 0x{table_end:x}"
            ),
            TableProblem::RecordSizeTooSmall {
                index,
                offset,
                size,
            } => write!(
                f,
                "record {index} at offset 0x{offset:x} claims size 0x{size:x}, smaller than its 0x{:x}-byte head",
                LbRecord::SIZE
            ),
            TableProblem::RecordSizeMisaligned {
                index,
                offset,
                size,
            } => write!(
                f,
                "record {index} at offset 0x{offset:x} claims size 0x{size:x}, not a multiple of {RECORD_SIZE_MULTIPLE}"
            ),
            TableProblem::RecordPastEnd {
                index,
                offset,
                size,
                table_end,
            } => write!(
                f,
                "record {index} at offset 0x{offset:x} claims size 0x{size:x}, past the table end 0x{table_end:x}"
            ),
            TableProblem::RecordTooShort {
                index,
                offset,
                tag,
                size,
                minimum,
            } => write!(
                f,
                "record {index} at offset 0x{offset:x} (tag 0x{tag:x}) has size 0x{size:x}, expected at least 0x{minimum:x}"
            ),
            TableProblem::MemoryRecordSize {
                index,
                offset,
                size,
            } => write!(
                f,
                "memory record {index} at offset 0x{offset:x} has size 0x{size:x}, expected 8 + 20 * n"
            ),
            TableProblem::TooManyMemoryRanges {
                index,
                offset,
                total,
            } => write!(
                f,
                "memory record {index} at offset 0x{offset:x} brings the memory map to {total} ranges, more than the {MAX_MEMORY_REGIONS} parkboot keeps"
            ),
            TableProblem::EntryCount { stated, found } => write!(
                f,
                "header says {stated} records, but table_bytes holds {found}"
            ),
            TableProblem::TooManyForwards => write!(
                f,
                "still forwards after {MAX_FORWARD_HOPS} forward records (a loop?)"
            ),
        }
    }
}

/// A [`TableProblem`] with the physical address of the table it was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFault {
    pub table: u64,
    pub problem: TableProblem,
}

impl fmt::Display for TableFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "coreboot table at 0x{:x}: {}", self.table, self.problem)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorebootError {
    /// A table parkboot was told about, or followed to, is damaged.
    Table(TableFault),
    /// No place gave a valid table; each field says why that place was rejected.
    NotFound {
        /// The pointer coreboot passed, when there was one.
        hint: Option<u64>,
        hint_fault: Option<TableFault>,
        forwarding_table_fault: TableFault,
        /// The first candidate in the legacy scan that had the signature but was not
        /// valid; `None` when the signature was nowhere.
        scan_fault: Option<TableFault>,
    },
    /// `builder::TableBuilder` (tests): the caller's buffer is too small.
    BufferTooSmall { needed: usize, available: usize },
    /// `builder::TableBuilder` (tests): `lb_serial.baseaddr` is 32 bits wide.
    SerialBaseTooHigh { base: u64 },
    /// `builder::TableBuilder` (tests): the records exceed what a header can describe.
    TableTooLarge { table_bytes: usize },
}

impl From<TableFault> for CorebootError {
    fn from(fault: TableFault) -> Self {
        CorebootError::Table(fault)
    }
}

impl fmt::Display for CorebootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorebootError::Table(fault) => fault.fmt(f),
            CorebootError::NotFound {
                hint,
                hint_fault,
                forwarding_table_fault,
                scan_fault,
            } => {
                write!(f, "no valid coreboot table: ")?;
                match (hint, hint_fault) {
                    (Some(hint), Some(fault)) => {
                        write!(f, "pointer 0x{hint:x} from coreboot rejected ({fault}); ")?
                    }
                    (Some(hint), None) => write!(f, "pointer 0x{hint:x} from coreboot rejected; ")?,
                    (None, _) => write!(f, "no pointer from coreboot; ")?,
                }
                write!(
                    f,
                    "forwarding table at 0x{FORWARDING_TABLE_ADDR:x} rejected ({forwarding_table_fault}); "
                )?;
                write!(
                    f,
                    "scan of 0x{:x}-0x{:x} and 0x{:x}-0x{:x} ",
                    LOW_MEMORY_SCAN.start,
                    LOW_MEMORY_SCAN.end - 1,
                    F_SEGMENT_SCAN.start,
                    F_SEGMENT_SCAN.end - 1
                )?;
                match scan_fault {
                    Some(fault) => write!(f, "found only a damaged table ({fault})"),
                    None => write!(f, "found no \"LBIO\" signature"),
                }
            }
            CorebootError::BufferTooSmall { needed, available } => write!(
                f,
                "coreboot table needs 0x{needed:x} bytes, the buffer has 0x{available:x}"
            ),
            CorebootError::SerialBaseTooHigh { base } => write!(
                f,
                "serial base 0x{base:x} does not fit lb_serial's 32-bit baseaddr"
            ),
            CorebootError::TableTooLarge { table_bytes } => write!(
                f,
                "coreboot table records take 0x{table_bytes:x} bytes, more than a header can describe"
            ),
        }
    }
}

/// One record of a checked table.
struct RawRecord<'t> {
    index: u32,
    /// From the table header.
    offset: u32,
    tag: u32,
    /// The whole record, head included.
    bytes: &'t [u8],
}

/// A table whose header, checksums and record chain have been checked.
struct Table<'m> {
    addr: u64,
    /// Header and records.
    bytes: &'m [u8],
    header_bytes: u32,
}

impl<'m> Table<'m> {
    fn load(mem: &'m impl PhysicalMemory, addr: u64) -> Result<Self, TableFault> {
        let fault = |problem| TableFault {
            table: addr,
            problem,
        };
        let head = mem
            .bytes(addr, LbHeader::SIZE)
            .ok_or(fault(TableProblem::Unreadable {
                len: LbHeader::SIZE as u64,
            }))?;
        let header = LbHeader::read_from(head).ok_or(fault(TableProblem::Unreadable {
            len: LbHeader::SIZE as u64,
        }))?;
        if header.signature != LB_HEADER_SIGNATURE {
            return Err(fault(TableProblem::BadSignature {
                found: header.signature,
            }));
        }
        // The header checksum covers the header with its own checksum field zero.
        let mut zeroed = [0u8; LbHeader::SIZE];
        LbHeader {
            header_checksum: 0,
            ..header
        }
        .write_to(&mut zeroed);
        let computed = ip_checksum(&zeroed);
        if header.header_checksum != u32::from(computed) {
            return Err(fault(TableProblem::HeaderChecksum {
                stored: header.header_checksum,
                computed,
            }));
        }
        // Both sizes are bounded so that every offset within the table fits in a u32.
        if (header.header_bytes as usize) < LbHeader::SIZE || header.header_bytes > MAX_TABLE_BYTES
        {
            return Err(fault(TableProblem::BadHeaderBytes {
                header_bytes: header.header_bytes,
            }));
        }
        if header.table_bytes > MAX_TABLE_BYTES {
            return Err(fault(TableProblem::TooLarge {
                table_bytes: header.table_bytes,
            }));
        }
        let total = u64::from(header.header_bytes) + u64::from(header.table_bytes);
        let unreadable = fault(TableProblem::Unreadable { len: total });
        let bytes = usize::try_from(total)
            .ok()
            .and_then(|len| mem.bytes(addr, len))
            .ok_or(unreadable)?;
        let records = bytes
            .get(header.header_bytes as usize..)
            .ok_or(unreadable)?;
        let computed = ip_checksum(records);
        if header.table_checksum != u32::from(computed) {
            return Err(fault(TableProblem::TableChecksum {
                stored: header.table_checksum,
                computed,
            }));
        }
        let table = Table {
            addr,
            bytes,
            header_bytes: header.header_bytes,
        };
        let mut found = 0u32;
        for record in table.records() {
            record?;
            found += 1;
        }
        if found != header.table_entries {
            return Err(fault(TableProblem::EntryCount {
                stated: header.table_entries,
                found,
            }));
        }
        Ok(table)
    }

    fn fault(&self, problem: TableProblem) -> TableFault {
        TableFault {
            table: self.addr,
            problem,
        }
    }

    fn records(&self) -> Records<'_> {
        Records {
            table: self,
            offset: self.header_bytes,
            index: 0,
            failed: false,
        }
    }

    /// The target of the first forward record, if the table has one.
    fn forward(&self) -> Result<Option<u64>, TableFault> {
        for record in self.records() {
            let record = record?;
            if record.tag == LB_TAG_FORWARD {
                let forward: LbForward = self.record_as(&record)?;
                return Ok(Some(forward.forward.get()));
            }
        }
        Ok(None)
    }

    /// A fixed-size record, or [`TableProblem::RecordTooShort`].
    fn record_as<T>(&self, record: &RawRecord) -> Result<T, TableFault>
    where
        T: ReadRecord,
    {
        T::read_record(record.bytes).ok_or(self.fault(TableProblem::RecordTooShort {
            index: record.index,
            offset: record.offset,
            tag: record.tag,
            size: record.bytes.len() as u32,
            minimum: T::MIN_SIZE as u32,
        }))
    }

    /// Checks every record parkboot reads and, when `platform` is given, fills it.
    ///
    /// Running it once without a platform before once with one leaves the platform
    /// untouched when the table is bad, without a second memory map on the stack.
    fn read_into(&self, mut platform: Option<&mut Platform>) -> Result<(), TableFault> {
        if let Some(platform) = platform.as_deref_mut() {
            platform.memory.clear();
        }
        let mut ranges = 0usize;
        for record in self.records() {
            let record = record?;
            match record.tag {
                LB_TAG_MEMORY => {
                    let entries = record.bytes.get(LbRecord::SIZE..).unwrap_or(&[]);
                    if !entries.len().is_multiple_of(LbMemoryRange::SIZE) {
                        return Err(self.fault(TableProblem::MemoryRecordSize {
                            index: record.index,
                            offset: record.offset,
                            size: record.bytes.len() as u32,
                        }));
                    }
                    ranges += entries.len() / LbMemoryRange::SIZE;
                    let too_many = self.fault(TableProblem::TooManyMemoryRanges {
                        index: record.index,
                        offset: record.offset,
                        total: ranges as u32,
                    });
                    if ranges > MAX_MEMORY_REGIONS {
                        return Err(too_many);
                    }
                    if let Some(platform) = platform.as_deref_mut() {
                        for entry in entries.chunks_exact(LbMemoryRange::SIZE) {
                            let Some(range) = LbMemoryRange::read_from(entry) else {
                                continue;
                            };
                            platform
                                .memory
                                .push(MemoryRegion {
                                    start: range.start.get(),
                                    size: range.size.get(),
                                    kind: memory_kind(range.r#type),
                                })
                                .map_err(|_| too_many)?;
                        }
                    }
                }
                LB_TAG_SERIAL => {
                    let serial: SerialRecord = self.record_as(&record)?;
                    if let Some(platform) = platform.as_deref_mut() {
                        match serial.console() {
                            Some(console) => platform.serial = Some(console),
                            None => log::warn!(
                                "coreboot table at {:#x}: ignoring serial record {} (type {}, base {:#x}) parkboot cannot drive",
                                self.addr,
                                record.index,
                                serial.kind,
                                serial.baseaddr
                            ),
                        }
                    }
                }
                LB_TAG_ACPI_RSDP => {
                    let rsdp: LbAcpiRsdp = self.record_as(&record)?;
                    if let Some(platform) = platform.as_deref_mut() {
                        // Physical address 0 never holds an RSDP; it means "none".
                        platform.rsdp = Some(rsdp.rsdp_pointer.get()).filter(|&a| a != 0);
                    }
                }
                LB_TAG_CBMEM_CONSOLE => {
                    let console: LbCbmemRef = self.record_as(&record)?;
                    if let Some(platform) = platform.as_deref_mut() {
                        // Address 0 never holds a console; it means "none".
                        platform.cbmem_console = Some(console.cbmem_addr.get()).filter(|&a| a != 0);
                    }
                }
                LB_TAG_BOOT_MEDIA_PARAMS => {
                    let params: LbBootMediaParams = self.record_as(&record)?;
                    if let Some(platform) = platform.as_deref_mut() {
                        platform.cbfs = Some(CbfsLocation {
                            fmap_offset: params.fmap_offset.get(),
                            cbfs_offset: params.cbfs_offset.get(),
                            cbfs_size: params.cbfs_size.get(),
                            boot_media_size: params.boot_media_size.get(),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

struct Records<'t> {
    table: &'t Table<'t>,
    offset: u32,
    index: u32,
    failed: bool,
}

impl<'t> Iterator for Records<'t> {
    type Item = Result<RawRecord<'t>, TableFault>;

    fn next(&mut self) -> Option<Self::Item> {
        let table_end = self.table.bytes.len() as u32;
        if self.failed || self.offset >= table_end {
            return None;
        }
        let (index, offset) = (self.index, self.offset);
        let fail = |this: &mut Self, problem| {
            this.failed = true;
            Some(Err(this.table.fault(problem)))
        };
        let Some(head) = self
            .table
            .bytes
            .get(offset as usize..)
            .and_then(LbRecord::read_from)
        else {
            return fail(
                self,
                TableProblem::RecordHeadPastEnd {
                    index,
                    offset,
                    table_end,
                },
            );
        };
        let size = head.size;
        if (size as usize) < LbRecord::SIZE {
            return fail(
                self,
                TableProblem::RecordSizeTooSmall {
                    index,
                    offset,
                    size,
                },
            );
        }
        if !size.is_multiple_of(RECORD_SIZE_MULTIPLE) {
            return fail(
                self,
                TableProblem::RecordSizeMisaligned {
                    index,
                    offset,
                    size,
                },
            );
        }
        let bytes = offset
            .checked_add(size)
            .filter(|&end| end <= table_end)
            .and_then(|end| self.table.bytes.get(offset as usize..end as usize));
        let Some(bytes) = bytes else {
            return fail(
                self,
                TableProblem::RecordPastEnd {
                    index,
                    offset,
                    size,
                    table_end,
                },
            );
        };
        self.offset = offset + size;
        self.index += 1;
        Some(Ok(RawRecord {
            index,
            offset,
            tag: head.tag,
            bytes,
        }))
    }
}

/// A record with a fixed layout and a smallest size parkboot accepts.
trait ReadRecord: Sized {
    const MIN_SIZE: usize;
    fn read_record(bytes: &[u8]) -> Option<Self>;
}

macro_rules! full_size_record {
    ($($name:ident),*) => {$(
        impl ReadRecord for $name {
            const MIN_SIZE: usize = $name::SIZE;
            fn read_record(bytes: &[u8]) -> Option<Self> {
                $name::read_from(bytes)
            }
        }
    )*};
}
full_size_record!(LbForward, LbAcpiRsdp, LbBootMediaParams, LbCbmemRef);

/// The fields of an [`LbSerial`] record that older coreboot may have left out are
/// `None` here.
struct SerialRecord {
    kind: u32,
    baseaddr: u32,
    baud: u32,
    regwidth: Option<u32>,
    input_hertz: Option<u32>,
}

impl ReadRecord for SerialRecord {
    const MIN_SIZE: usize = LB_SERIAL_MIN_SIZE;
    fn read_record(bytes: &[u8]) -> Option<Self> {
        Some(SerialRecord {
            kind: u32::read_at(bytes, offset_of!(LbSerial, r#type))?,
            baseaddr: u32::read_at(bytes, offset_of!(LbSerial, baseaddr))?,
            baud: u32::read_at(bytes, offset_of!(LbSerial, baud))?,
            regwidth: u32::read_at(bytes, offset_of!(LbSerial, regwidth)),
            input_hertz: u32::read_at(bytes, offset_of!(LbSerial, input_hertz)),
        })
    }
}

impl SerialRecord {
    /// `None` for a UART parkboot cannot address (unknown type, I/O base above 0xffff).
    fn console(&self) -> Option<SerialConsole> {
        let access = match self.kind {
            LB_SERIAL_TYPE_IO_MAPPED => SerialAccess::Io {
                base: u16::try_from(self.baseaddr).ok()?,
            },
            LB_SERIAL_TYPE_MEMORY_MAPPED => SerialAccess::Mmio {
                base: u64::from(self.baseaddr),
                // Records from before regwidth existed describe byte-spaced registers.
                reg_width: self
                    .regwidth
                    .filter(|&w| w != 0)
                    .unwrap_or(LEGACY_MMIO_REGISTER_WIDTH),
            },
            _ => return None,
        };
        Some(SerialConsole {
            access,
            baud: self.baud,
            // Records from before input_hertz existed were all PC 16550s; a zero clock
            // would only make the divisor computation divide by zero.
            input_hz: self
                .input_hertz
                .filter(|&hz| hz != 0)
                .unwrap_or(SerialConsole::COM1.input_hz),
        })
    }
}

/// coreboot's `LB_MEM_*` to parkboot's kinds.
pub fn memory_kind(lb_type: u32) -> MemoryKind {
    match lb_type {
        LB_MEM_RAM => MemoryKind::Usable,
        LB_MEM_RESERVED => MemoryKind::Reserved,
        LB_MEM_ACPI => MemoryKind::AcpiReclaim,
        LB_MEM_NVS => MemoryKind::AcpiNvs,
        LB_MEM_UNUSABLE => MemoryKind::Unusable,
        LB_MEM_TABLE => MemoryKind::CorebootTables,
        other => MemoryKind::Other(other),
    }
}

/// parkboot's kinds back to coreboot's `LB_MEM_*`, for [`builder::TableBuilder`].
#[cfg(any(test, feature = "test-support"))]
pub fn lb_memory_type(kind: MemoryKind) -> u32 {
    match kind {
        MemoryKind::Usable => LB_MEM_RAM,
        MemoryKind::Reserved => LB_MEM_RESERVED,
        MemoryKind::AcpiReclaim => LB_MEM_ACPI,
        MemoryKind::AcpiNvs => LB_MEM_NVS,
        MemoryKind::Unusable => LB_MEM_UNUSABLE,
        MemoryKind::CorebootTables => LB_MEM_TABLE,
        MemoryKind::Other(other) => other,
    }
}

/// Follows forward records from `addr` to a table that does not forward.
fn resolve(mem: &impl PhysicalMemory, addr: u64) -> Result<u64, TableFault> {
    let mut addr = addr;
    for _ in 0..=MAX_FORWARD_HOPS {
        match Table::load(mem, addr)?.forward()? {
            Some(target) => addr = target,
            None => return Ok(addr),
        }
    }
    Err(TableFault {
        table: addr,
        problem: TableProblem::TooManyForwards,
    })
}

/// The physical address of the coreboot table header, after following any forward
/// record.
///
/// `hint` is the pointer coreboot passed at `[esp+4]`; it is tried first because it is
/// exact. Without it, or when it is damaged, the forwarding table at
/// [`FORWARDING_TABLE_ADDR`] and then the legacy windows [`LOW_MEMORY_SCAN`] and
/// [`F_SEGMENT_SCAN`] are searched. The returned table has a valid header, valid
/// checksums and a consistent record chain; [`parse`] checks the records' contents.
pub fn find_table(mem: &impl PhysicalMemory, hint: Option<u64>) -> Result<u64, CorebootError> {
    let mut hint_fault = None;
    if let Some(addr) = hint {
        match resolve(mem, addr) {
            Ok(table) => return Ok(table),
            Err(fault) => hint_fault = Some(fault),
        }
    }
    let forwarding_table_fault = match resolve(mem, FORWARDING_TABLE_ADDR) {
        Ok(table) => return Ok(table),
        Err(fault) => fault,
    };
    let mut scan_fault = None;
    for window in [LOW_MEMORY_SCAN, F_SEGMENT_SCAN] {
        for addr in window.step_by(TABLE_ALIGNMENT as usize) {
            if mem.bytes(addr, LB_HEADER_SIGNATURE.len()) != Some(&LB_HEADER_SIGNATURE[..]) {
                continue;
            }
            match resolve(mem, addr) {
                Ok(table) => return Ok(table),
                Err(fault) => {
                    scan_fault.get_or_insert(fault);
                }
            }
        }
    }
    Err(CorebootError::NotFound {
        hint,
        hint_fault,
        forwarding_table_fault,
        scan_fault,
    })
}

/// Reads the coreboot table at `addr` (following forward records) into `platform`.
///
/// The memory map is replaced; `serial`, `rsdp`, `cbfs` and `cbmem_console` are set when the table has
/// the record and otherwise keep whatever the caller put there. Unknown records are
/// skipped. On error `platform` is unchanged. `source` and `source_table` are the
/// caller's to set.
pub fn parse(
    mem: &impl PhysicalMemory,
    addr: u64,
    platform: &mut Platform,
) -> Result<(), CorebootError> {
    let table = Table::load(mem, resolve(mem, addr)?)?;
    table.read_into(None)?;
    table.read_into(Some(platform))?;
    Ok(())
}

/// Test-only (host tests, and test loaders through the `test-support` feature): not part
/// of the shipped library.
#[cfg(any(test, feature = "test-support"))]
pub mod builder;

#[cfg(test)]
mod tests;
