//! The boot information a multiboot2 kernel gets in `ebx`, and the basic meminfo it
//! reports.

use super::*;

/// Top of conventional memory: the multiboot2 basic meminfo `mem_lower` never goes past
/// 640 KiB, where the legacy VGA window and the BIOS area begin.
pub const CONVENTIONAL_MEMORY_END: u64 = 640 * 1024;
/// Firmware data a PC keeps in the first page (the real-mode interrupt table, the BIOS
/// data area, coreboot's forwarding table at 0x500) does not end conventional memory.
const FIRST_PAGE_END: u64 = 0x1000;

/// What the basic meminfo tag (4) reports, in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BasicMeminfo {
    /// Where usable conventional memory ends: the end of the usable range the kernel is
    /// shown that begins in the first page, at most 640 KiB. Ranges parkboot reserved
    /// (the AP start trampoline at the top of low memory) end it, as in the memory map
    /// tag: Xen puts its real-mode trampoline right below `mem_lower`, reading nothing
    /// else, so this must never claim memory the map calls reserved. Non-usable memory
    /// inside the first page does not count: coreboot marks `[0, 0x1000)` as its tables
    /// (the forwarding table at 0x500), where a BIOS keeps its interrupt table and data
    /// area yet reports the page as RAM; with the strict "starting at address 0" reading
    /// `mem_lower` is 0 under coreboot and Xen falls back to the BIOS data area, which
    /// coreboot fills with 1024 KiB, and puts its trampoline over 0xF0000.
    pub lower_kib: u32,
    /// Usable RAM from 1 MiB up to the first hole or non-usable platform range, as the
    /// platform reports it (parkboot's own memory there is in the memory map tag; this
    /// is only the legacy size).
    pub upper_kib: u32,
}

/// The basic meminfo for a kernel booted with `memory` as it stands (see
/// [`BasicMeminfo`]).
pub fn basic_meminfo(memory: &MemoryMap) -> BasicMeminfo {
    let mut lower = 0;
    for (start, size, report) in memory.kernel_view() {
        // Only the range that begins by the end of the first page is conventional
        // memory; a later one means the low area is broken up and its size unknown.
        if start > FIRST_PAGE_END {
            break;
        }
        if report == ReportAs::Usable {
            lower = start.saturating_add(size).min(CONVENTIONAL_MEMORY_END);
            break;
        }
    }
    let mut upper_end = ONE_MIB;
    for region in memory
        .platform_regions()
        .iter()
        .filter(|r| r.kind.is_usable())
    {
        if region.start <= upper_end && region.end() > upper_end {
            upper_end = region.end();
        }
    }
    BasicMeminfo {
        lower_kib: (lower / 1024) as u32,
        upper_kib: ((upper_end - ONE_MIB).min(u64::from(u32::MAX) * 1024) / 1024) as u32,
    }
}

/// Lays out multiboot2 boot information in a caller's buffer: the 8-byte header, tags
/// at 8-byte boundaries, and the end tag written by [`InfoBuilder::finish`]. The kernel
/// needs the buffer at an 8-aligned physical address; the buffer itself may have any
/// alignment while it is built (fields are written byte-wise).
///
/// Tag methods chain and do not fail on their own: the first problem (buffer full,
/// wrong RSDP size) is kept, later tags are skipped, and [`InfoBuilder::finish`]
/// returns it. That keeps the call site a straight list of tags.
pub struct InfoBuilder<'a> {
    buf: &'a mut [u8],
    /// Where the next tag goes.
    pos: usize,
    error: Option<Mb2Error>,
}

impl<'a> InfoBuilder<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        InfoBuilder {
            buf,
            pos: BootInfoHeader::SIZE,
            error: None,
        }
    }

    /// The first problem so far.
    pub fn error(&self) -> Option<Mb2Error> {
        self.error
    }

    /// Bytes used so far (without the end tag).
    pub fn len(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == BootInfoHeader::SIZE
    }

    fn fail(&mut self, error: Mb2Error) {
        self.error.get_or_insert(error);
    }

    /// Claims room for a `size`-byte tag (padded to 8, zeroed), writes its header and
    /// returns where it starts; `None` (with the error kept) when it does not fit.
    fn begin(&mut self, tag_type: u32, size: usize) -> Option<usize> {
        if self.error.is_some() {
            return None;
        }
        let Ok(size32) = u32::try_from(size) else {
            self.fail(Mb2Error::InfoTooLarge { tag_type });
            return None;
        };
        let end = size
            .checked_next_multiple_of(TAG_ALIGN)
            .and_then(|s| self.pos.checked_add(s));
        let start = self.pos;
        let Some(room) = end.and_then(|end| self.buf.get_mut(start..end)) else {
            self.fail(Mb2Error::InfoBufferTooSmall {
                tag_type,
                needed: end.unwrap_or(usize::MAX),
                available: self.buf.len(),
            });
            return None;
        };
        room.fill(0);
        let header = InfoTagHeader {
            tag_type,
            size: size32,
        };
        header.write_at(self.buf, start)?;
        self.pos = end?;
        Some(start)
    }

    /// A tag of the 8-byte header followed by `payload`.
    fn bytes_tag(&mut self, tag_type: u32, payload: &[u8]) -> &mut Self {
        let Some(size) = InfoTagHeader::SIZE.checked_add(payload.len()) else {
            self.fail(Mb2Error::InfoTooLarge { tag_type });
            return self;
        };
        if let Some(start) = self.begin(tag_type, size) {
            let at = start + InfoTagHeader::SIZE;
            if let Some(dst) = self.buf.get_mut(at..at + payload.len()) {
                dst.copy_from_slice(payload);
            }
        }
        self
    }

    /// A tag of the 8-byte header followed by `text` and a NUL (the padding zeroed by
    /// `begin` supplies the NUL).
    fn string_tag(&mut self, tag_type: u32, fixed: usize, text: &str) -> Option<usize> {
        let size = fixed.checked_add(text.len())?.checked_add(1)?;
        let start = self.begin(tag_type, size)?;
        let at = start + fixed;
        self.buf
            .get_mut(at..at + text.len())?
            .copy_from_slice(text.as_bytes());
        Some(start)
    }

    /// Tag 1: the kernel's command line.
    pub fn cmdline(&mut self, cmdline: &str) -> &mut Self {
        self.string_tag(TAG_CMDLINE, InfoTagHeader::SIZE, cmdline);
        self
    }

    /// Tag 2: the loader's name.
    pub fn loader_name(&mut self, name: &str) -> &mut Self {
        self.string_tag(TAG_BOOT_LOADER_NAME, InfoTagHeader::SIZE, name);
        self
    }

    /// Tag 3: one module at physical `start..end` with its command line.
    pub fn module(&mut self, start: u32, end: u32, cmdline: &str) -> &mut Self {
        if let Some(at) = self.string_tag(TAG_MODULE, ModuleTag::SIZE, cmdline) {
            let size = InfoTagHeader::read_at(self.buf, at).map_or(0, |h| h.size);
            let tag = ModuleTag {
                tag_type: TAG_MODULE,
                size,
                mod_start: start,
                mod_end: end,
            };
            tag.write_at(self.buf, at);
        }
        self
    }

    /// Tag 4: KiB of RAM below 640 KiB and from 1 MiB up to the first hole.
    pub fn basic_meminfo(&mut self, mem_lower_kib: u32, mem_upper_kib: u32) -> &mut Self {
        if let Some(at) = self.begin(TAG_BASIC_MEMINFO, BasicMeminfoTag::SIZE) {
            let tag = BasicMeminfoTag {
                tag_type: TAG_BASIC_MEMINFO,
                size: BasicMeminfoTag::SIZE as u32,
                mem_lower: mem_lower_kib,
                mem_upper: mem_upper_kib,
            };
            tag.write_at(self.buf, at);
        }
        self
    }

    /// Tag 6: the memory map, as `(base, length, type)` with the `MEMORY_*` types.
    pub fn memory_map(&mut self, entries: impl IntoIterator<Item = (u64, u64, u32)>) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        // The entries go into the buffer first; the tag header is written in front of
        // them once their number is known.
        let start = self.pos;
        let mut entries = entries.into_iter();
        let mut count = 0usize;
        let mut full = false;
        for (base_addr, length, entry_type) in entries.by_ref() {
            let entry = MemoryMapEntry {
                base_addr,
                length,
                entry_type,
                reserved: 0,
            };
            let at = count
                .saturating_mul(MemoryMapEntry::SIZE)
                .saturating_add(start)
                .saturating_add(MemoryMapTag::SIZE);
            count += 1;
            if entry.write_at(self.buf, at).is_none() {
                full = true;
                break;
            }
        }
        // On a full buffer the rest are only counted, to say how much room is needed.
        let count = count.saturating_add(entries.count());
        let size = count
            .saturating_mul(MemoryMapEntry::SIZE)
            .saturating_add(MemoryMapTag::SIZE);
        let end = size
            .checked_next_multiple_of(TAG_ALIGN)
            .and_then(|s| start.checked_add(s));
        let padding = end.and_then(|end| self.buf.get_mut(start.saturating_add(size)..end));
        let (false, Some(padding), Some(end)) = (full, padding, end) else {
            self.fail(Mb2Error::InfoBufferTooSmall {
                tag_type: TAG_MMAP,
                needed: end.unwrap_or(usize::MAX),
                available: self.buf.len(),
            });
            return self;
        };
        padding.fill(0);
        let Ok(size) = u32::try_from(size) else {
            self.fail(Mb2Error::InfoTooLarge { tag_type: TAG_MMAP });
            return self;
        };
        let tag = MemoryMapTag {
            tag_type: TAG_MMAP,
            size,
            entry_size: MemoryMapEntry::SIZE as u32,
            entry_version: MMAP_ENTRY_VERSION,
        };
        if tag.write_at(self.buf, start).is_some() {
            self.pos = end;
        }
        self
    }

    /// Tag 14: a copy of the ACPI 1.0 RSDP.
    pub fn acpi_old_rsdp(&mut self, rsdp: &[u8; RSDP_V1_SIZE]) -> &mut Self {
        self.bytes_tag(TAG_ACPI_OLD, rsdp)
    }

    /// Tag 15: a copy of the ACPI 2.0+ RSDP (36 bytes).
    pub fn acpi_new_rsdp(&mut self, rsdp: &[u8]) -> &mut Self {
        if rsdp.len() != RSDP_V2_SIZE {
            self.fail(Mb2Error::InfoRsdpLength {
                tag_type: TAG_ACPI_NEW,
                len: rsdp.len(),
                expected: RSDP_V2_SIZE,
            });
            return self;
        }
        self.bytes_tag(TAG_ACPI_NEW, rsdp)
    }

    /// Any tag: the 8-byte `tag_type`/`size` header is written here, `payload` is the
    /// rest of the tag (for a `#[repr(C)]` tag struct that starts with its own type and
    /// size, the bytes after those 8).
    pub fn raw_tag(&mut self, tag_type: u32, payload: &[u8]) -> &mut Self {
        self.bytes_tag(tag_type, payload)
    }

    /// parkboot's own tag ([`MULTIBOOT2_TAG_TYPE_PARKBOOT`]), written field by field
    /// (no byte view of the struct needed); its `tag_type` and `size` are set here
    /// whatever `tag` holds.
    pub fn parkboot_tag(&mut self, tag: &Multiboot2ParkbootTag) -> &mut Self {
        type T = Multiboot2ParkbootTag;
        let mut bytes = [0u8; size_of::<T>()];
        let _ = MULTIBOOT2_TAG_TYPE_PARKBOOT
            .write_at(&mut bytes, offset_of!(T, tag_type))
            .and_then(|_| (size_of::<T>() as u32).write_at(&mut bytes, offset_of!(T, size)))
            .and_then(|_| {
                tag.park_table
                    .write_at(&mut bytes, offset_of!(T, park_table))
            })
            .and_then(|_| {
                tag.park_table_version
                    .write_at(&mut bytes, offset_of!(T, park_table_version))
            })
            .and_then(|_| tag.iteration.write_at(&mut bytes, offset_of!(T, iteration)))
            .and_then(|_| {
                tag.iterations
                    .write_at(&mut bytes, offset_of!(T, iterations))
            })
            .and_then(|_| tag.reserved.write_at(&mut bytes, offset_of!(T, reserved)));
        let payload = bytes.get(InfoTagHeader::SIZE..).unwrap_or_default();
        self.bytes_tag(MULTIBOOT2_TAG_TYPE_PARKBOOT, payload)
    }

    /// Writes the end tag and the header; returns the boot information's total size.
    pub fn finish(mut self) -> Result<usize, Mb2Error> {
        let end_at = self.begin(TAG_END, InfoTagHeader::SIZE);
        if let Some(error) = self.error {
            return Err(error);
        }
        let total = self.pos;
        let too_large = Mb2Error::InfoTooLarge { tag_type: TAG_END };
        let header = BootInfoHeader {
            total_size: u32::try_from(total).map_err(|_| too_large)?,
            reserved: 0,
        };
        end_at.ok_or(too_large)?;
        header
            .write_at(self.buf, 0)
            .ok_or(Mb2Error::InfoBufferTooSmall {
                tag_type: TAG_END,
                needed: total,
                available: self.buf.len(),
            })?;
        Ok(total)
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    // ---- boot information ----------------------------------------------------------------

    #[repr(C, align(8))]
    struct Aligned([u8; 1024]);

    fn rsdp_v2() -> [u8; RSDP_V2_SIZE] {
        let mut r = [0u8; RSDP_V2_SIZE];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[9..15].copy_from_slice(b"PARKBT");
        r[15] = 2; // revision
        r[20..24].copy_from_slice(&(RSDP_V2_SIZE as u32).to_le_bytes());
        r[24..32].copy_from_slice(&0x1fbb_6028u64.to_le_bytes());
        let sum20: u8 = r[..20].iter().fold(0u8, |a, &b| a.wrapping_add(b));
        r[8] = 0u8.wrapping_sub(sum20);
        let sum36: u8 = r.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        r[32] = 0u8.wrapping_sub(sum36);
        r
    }

    #[test]
    fn multiboot2_boot_information_parsed_by_the_multiboot2_crate() {
        let mut buf = Aligned([0xAA; 1024]);
        let park_tag = Multiboot2ParkbootTag {
            tag_type: 0,
            size: 0,
            park_table: 0x1fbc_6000,
            park_table_version: 1,
            iteration: 2,
            iterations: 5,
            reserved: 0,
        };
        let map = [
            (0u64, 0x9fc00u64, MEMORY_AVAILABLE),
            (0xf0000, 0x10000, MEMORY_RESERVED),
            (0x10_0000, 0x1ff0_0000, MEMORY_AVAILABLE),
            (0x1ffd_e000, 0x1000, MEMORY_NVS),
        ];
        let mut info = InfoBuilder::new(&mut buf.0);
        info.cmdline("console=com1 dom0_mem=512M")
            .loader_name("parkboot 0.1.0")
            .module(0x200_0000, 0x210_0000, "initrd")
            .module(0x300_0000, 0x300_1000, "")
            .basic_meminfo(639, 523_200)
            .memory_map(map.iter().copied())
            .acpi_old_rsdp(rsdp_v2()[..RSDP_V1_SIZE].try_into().unwrap())
            .acpi_new_rsdp(&rsdp_v2())
            .raw_tag(0x1234_5678, b"hello")
            .parkboot_tag(&park_tag);
        assert_eq!(info.error(), None);
        let total = info.finish().unwrap();
        assert_eq!(total % TAG_ALIGN, 0);
        assert_eq!(
            u32::from_le_bytes(buf.0[..4].try_into().unwrap()) as usize,
            total
        );
        assert_eq!(&buf.0[4..8], &[0; 4]);
        assert_eq!(&buf.0[total - 8..total], &[0, 0, 0, 0, 8, 0, 0, 0]);

        // SAFETY: `buf` is 8-aligned, holds `total` bytes of boot information and is
        // not changed while `mbi` lives.
        let mbi = unsafe { multiboot2::BootInformation::load(buf.0.as_ptr().cast()) }.unwrap();
        assert_eq!(mbi.total_size(), total);
        assert_eq!(
            mbi.command_line_tag().unwrap().cmdline(),
            Ok("console=com1 dom0_mem=512M")
        );
        assert_eq!(
            mbi.boot_loader_name_tag().unwrap().name(),
            Ok("parkboot 0.1.0")
        );
        let modules: Vec<_> = mbi
            .module_tags()
            .map(|m| {
                (
                    m.start_address(),
                    m.end_address(),
                    m.cmdline().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            modules,
            vec![
                (0x200_0000, 0x210_0000, "initrd".to_string()),
                (0x300_0000, 0x300_1000, String::new())
            ]
        );
        let meminfo = mbi.basic_memory_info_tag().unwrap();
        assert_eq!(
            (meminfo.memory_lower(), meminfo.memory_upper()),
            (639, 523_200)
        );
        let mmap = mbi.memory_map_tag().unwrap();
        assert_eq!(mmap.entry_size(), 24);
        assert_eq!(mmap.entry_version(), 0);
        let areas: Vec<_> = mmap
            .memory_areas()
            .iter()
            .map(|a| (a.start_address(), a.size(), a.typ().val()))
            .collect();
        assert_eq!(areas, map.to_vec());
        let v1 = mbi.rsdp_v1_tag().unwrap();
        assert_eq!(v1.signature(), Ok("RSD PTR "));
        assert!(v1.checksum_is_valid());
        let v2 = mbi.rsdp_v2_tag().unwrap();
        assert_eq!(v2.signature(), Ok("RSD PTR "));
        assert_eq!(v2.oem_id(), Ok("PARKBT"));
        assert_eq!(v2.revision(), 2);
        assert_eq!(v2.xsdt_address(), 0x1fbb_6028);
        assert!(v2.checksum_is_valid());

        let raw = mbi
            .tags()
            .find(|t| t.header().typ.get() == 0x1234_5678)
            .unwrap();
        assert_eq!(raw.header().size, 13);
        assert_eq!(&raw.payload()[..5], b"hello");

        let park = mbi
            .tags()
            .find(|t| t.header().typ.get() == MULTIBOOT2_TAG_TYPE_PARKBOOT)
            .unwrap();
        assert_eq!(
            park.header().size as usize,
            size_of::<Multiboot2ParkbootTag>()
        );
        let p = park.payload();
        let field = |name: usize| name - InfoTagHeader::SIZE;
        let at = field(offset_of!(Multiboot2ParkbootTag, park_table));
        assert_eq!(
            u64::from_le_bytes(p[at..at + 8].try_into().unwrap()),
            0x1fbc_6000
        );
        let at = field(offset_of!(Multiboot2ParkbootTag, iteration));
        assert_eq!(u32::from_le_bytes(p[at..at + 4].try_into().unwrap()), 2);
        let at = field(offset_of!(Multiboot2ParkbootTag, iterations));
        assert_eq!(u32::from_le_bytes(p[at..at + 4].try_into().unwrap()), 5);
    }

    #[test]
    fn multiboot2_raw_tag_matches_parkboot_tag() {
        // The byte-view path the bare-metal side may use gives the same bytes.
        let tag = Multiboot2ParkbootTag {
            tag_type: MULTIBOOT2_TAG_TYPE_PARKBOOT,
            size: size_of::<Multiboot2ParkbootTag>() as u32,
            park_table: 0x1234_5000,
            park_table_version: 1,
            iteration: 1,
            iterations: 3,
            reserved: 0,
        };
        let mut a = [0u8; 128];
        let mut b = [0u8; 128];
        let mut info = InfoBuilder::new(&mut a);
        info.parkboot_tag(&tag);
        let la = info.finish().unwrap();
        // SAFETY: a #[repr(C)] struct of integers without padding, viewed as bytes.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                (&tag as *const Multiboot2ParkbootTag).cast::<u8>(),
                size_of::<Multiboot2ParkbootTag>(),
            )
        };
        let mut info = InfoBuilder::new(&mut b);
        info.raw_tag(MULTIBOOT2_TAG_TYPE_PARKBOOT, &bytes[InfoTagHeader::SIZE..]);
        let lb = info.finish().unwrap();
        assert_eq!(a[..la], b[..lb]);
        assert_eq!(
            a[BootInfoHeader::SIZE..BootInfoHeader::SIZE + size_of::<Multiboot2ParkbootTag>()],
            *bytes
        );
    }

    #[test]
    fn multiboot2_boot_information_errors() {
        // Too small for a tag: the error says which and how much.
        let mut buf = [0u8; 32];
        let mut info = InfoBuilder::new(&mut buf);
        info.cmdline("a command line longer than the buffer")
            .loader_name("x");
        let err = info.finish().unwrap_err();
        assert_eq!(
            err,
            Mb2Error::InfoBufferTooSmall {
                tag_type: TAG_CMDLINE,
                needed: 56,
                available: 32
            }
        );
        assert!(err.to_string().contains("tag 1 (command line)"));

        // Too small for the end tag.
        let mut buf = [0u8; 24];
        let mut info = InfoBuilder::new(&mut buf);
        info.basic_meminfo(1, 2);
        assert_eq!(
            info.finish(),
            Err(Mb2Error::InfoBufferTooSmall {
                tag_type: TAG_END,
                needed: 32,
                available: 24
            })
        );

        // A memory map that does not fit counts every entry for `needed`.
        let mut buf = [0u8; 64];
        let mut info = InfoBuilder::new(&mut buf);
        info.memory_map((0..10u64).map(|i| (i << 20, 1 << 20, MEMORY_AVAILABLE)));
        assert_eq!(
            info.finish(),
            Err(Mb2Error::InfoBufferTooSmall {
                tag_type: TAG_MMAP,
                needed: 8 + 16 + 240,
                available: 64
            })
        );

        let mut buf = [0u8; 128];
        let mut info = InfoBuilder::new(&mut buf);
        info.acpi_new_rsdp(&[0; 20]);
        assert_eq!(
            info.finish(),
            Err(Mb2Error::InfoRsdpLength {
                tag_type: TAG_ACPI_NEW,
                len: 20,
                expected: RSDP_V2_SIZE
            })
        );

        // Nothing but the end tag.
        let mut buf = [0u8; 16];
        let info = InfoBuilder::new(&mut buf);
        assert!(info.is_empty());
        assert_eq!(info.finish(), Ok(16));
        assert_eq!(buf, [16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0]);
    }

    #[test]
    fn multiboot2_tags_are_8_aligned_and_padding_is_zero() {
        let mut buf = [0xAAu8; 256];
        let mut info = InfoBuilder::new(&mut buf);
        info.cmdline("abc")
            .loader_name("")
            .module(1, 2, "xy")
            .raw_tag(77, &[1; 3]);
        let total = info.finish().unwrap();
        // Walk the tags: every one starts 8-aligned, padding is zero, end tag last.
        let mut at = BootInfoHeader::SIZE;
        let mut types = Vec::new();
        loop {
            let h = InfoTagHeader::read_at(&buf, at).unwrap();
            types.push(h.tag_type);
            let end = at + h.size as usize;
            let padded = end.checked_next_multiple_of(TAG_ALIGN).unwrap();
            assert!(buf[end..padded].iter().all(|&b| b == 0));
            if h.tag_type == TAG_END {
                assert_eq!(padded, total);
                break;
            }
            at = padded;
        }
        assert_eq!(
            types,
            vec![TAG_CMDLINE, TAG_BOOT_LOADER_NAME, TAG_MODULE, 77, TAG_END]
        );
        assert_eq!(&buf[8..20], &[1, 0, 0, 0, 12, 0, 0, 0, b'a', b'b', b'c', 0]);
    }

    #[test]
    fn multiboot2_error_messages_name_the_place() {
        let cases = [
            (Mb2Error::BadChecksum { offset: 0x1000, sum: 0x1234_5678 }, "multiboot2 header at offset 0x1000: checksum does not sum to zero (0x12345678)"),
            (
                Mb2Error::SegmentPastFile { index: 2, dest: 0x10_0000, end: 0x18_0000, file_offset: 0x1000, file_end: 0x81000, file_size: 0x50000 },
                "ELF segment 2 (0x100000-0x180000) runs past the end of the file: file bytes 0x1000-0x81000 (file size 0x50000)",
            ),
            (Mb2Error::MissingEntryTag, "the multiboot2 header has an address tag but no entry address tag"),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
    }
}

#[cfg(test)]
mod basic_meminfo_tests {
    use super::*;
    use crate::memory::Lifetime;
    use crate::memory::{MemoryKind, MemoryRegion};

    use crate::memory::MIB;

    fn map(regions: &[(u64, u64, MemoryKind)]) -> MemoryMap {
        let regions: Vec<MemoryRegion> = regions
            .iter()
            .map(|&(start, size, kind)| MemoryRegion { start, size, kind })
            .collect();
        MemoryMap::new(&regions).unwrap()
    }

    /// The map coreboot 4.15 gives on QEMU q35: page 0 is its tables (interrupt
    /// table, BIOS data area, forwarding table at 0x500), then RAM to 0xA0000.
    fn coreboot_q35() -> MemoryMap {
        map(&[
            (0, 0x1000, MemoryKind::CorebootTables),
            (0x1000, 0x9f000, MemoryKind::Usable),
            (0xa0000, 0x60000, MemoryKind::Reserved),
            (MIB, 2047 * MIB, MemoryKind::Usable),
        ])
    }

    #[test]
    fn coreboot_page_zero_does_not_end_low_memory() {
        // Before: 0, so Xen fell back to the BIOS data area (1024 KiB under coreboot)
        // and put its trampoline over coreboot's RSDP at 0xF0000.
        let info = basic_meminfo(&coreboot_q35());
        assert_eq!(info.lower_kib, 640);
        assert_eq!(info.upper_kib, 2047 * 1024);
    }

    #[test]
    fn parkboot_ap_trampoline_ends_low_memory() {
        let mut memory = coreboot_q35();
        memory
            .reserve(
                0x9f000,
                0x1000,
                "AP start trampoline",
                ReportAs::Reserved,
                Lifetime::Permanent,
            )
            .unwrap();
        assert_eq!(basic_meminfo(&memory).lower_kib, 0x9f000 / 1024);
    }

    #[test]
    fn bios_map_with_ebda() {
        let memory = map(&[
            (0, 0x9fc00, MemoryKind::Usable),
            (0x9fc00, 0x400, MemoryKind::Reserved),
            (0xf0000, 0x10000, MemoryKind::Reserved),
            (MIB, 511 * MIB, MemoryKind::Usable),
        ]);
        assert_eq!(
            basic_meminfo(&memory),
            BasicMeminfo {
                lower_kib: 639,
                upper_kib: 511 * 1024
            }
        );
    }

    #[test]
    fn low_memory_that_starts_late_is_not_conventional_memory() {
        let memory = map(&[
            (0, 0x10000, MemoryKind::Reserved),
            (0x10000, 0x90000, MemoryKind::Usable),
            (MIB, MIB, MemoryKind::Usable),
        ]);
        assert_eq!(basic_meminfo(&memory).lower_kib, 0);
    }

    #[test]
    fn never_past_640_kib_and_boot_loads_stay_usable() {
        let mut memory = map(&[(0, 4 * MIB, MemoryKind::Usable)]);
        // A kernel's own load area is usable for it and ends nothing.
        memory
            .reserve(
                0x2000,
                0x1000,
                "multiboot2 module",
                ReportAs::Usable,
                Lifetime::Boot,
            )
            .unwrap();
        assert_eq!(
            basic_meminfo(&memory),
            BasicMeminfo {
                lower_kib: 640,
                upper_kib: 3 * 1024
            }
        );
    }

    #[test]
    fn no_low_ram_at_all() {
        let memory = map(&[(MIB, MIB, MemoryKind::Usable)]);
        assert_eq!(
            basic_meminfo(&memory),
            BasicMeminfo {
                lower_kib: 0,
                upper_kib: 1024
            }
        );
    }
}
