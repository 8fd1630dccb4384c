//! The load plan: which bytes of a multiboot2 kernel go where, from its ELF program
//! headers or its address tag.

use super::*;

/// How the kernel's bytes were laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Elf32,
    Elf64,
    /// Raw bytes placed by the header's address tag.
    AoutKludge,
}

/// One range to load: `file_size` bytes from `file_offset` of the image to physical
/// `dest`, then zeros up to `dest + mem_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub dest: u64,
    pub file_offset: usize,
    pub file_size: usize,
    /// Never less than `file_size`.
    pub mem_size: u64,
}

impl Segment {
    /// One past the last byte of memory the segment occupies.
    pub fn end(&self) -> u64 {
        self.dest.saturating_add(self.mem_size)
    }

    /// The image bytes to copy to `dest`.
    pub fn file_range(&self) -> Range<usize> {
        self.file_offset..self.file_offset.saturating_add(self.file_size)
    }

    /// The physical range to zero after the copied bytes.
    pub fn zero_range(&self) -> Range<u64> {
        self.dest.saturating_add(self.file_size as u64)..self.end()
    }
}

/// Everything the bare-metal side needs to load and enter a multiboot2 kernel. Every
/// range is checked against the image and lies below 4 GiB; overlap with reserved
/// memory is for the caller to check against its memory map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    pub kind: ImageKind,
    /// File offset of the multiboot2 header.
    pub header_offset: usize,
    /// Physical address to enter in 32-bit protected mode, inside a segment.
    pub entry: u32,
    /// Ordered as in the file; no two overlap.
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
    /// `Some` when the kernel may be moved with [`LoadPlan::shifted`].
    pub relocatable: Option<Relocatable>,
    /// The kernel wants modules page-aligned (header tag 6).
    pub module_alignment: bool,
    /// The boot information tags the kernel asked for.
    pub requested: RequestedTags,
    /// Header tag 4, if present (parkboot has only a serial console to offer).
    pub console_flags: Option<u32>,
}

impl LoadPlan {
    /// The lowest and one past the highest physical address of the segments.
    pub fn image_range(&self) -> Range<u64> {
        let start = self.segments.iter().map(|s| s.dest).min().unwrap_or(0);
        let end = self.segments.iter().map(Segment::end).max().unwrap_or(0);
        start..end
    }

    /// The same plan with the kernel moved by `delta` bytes, for a relocatable kernel
    /// whose own addresses clash with memory parkboot cannot give. The moved kernel must
    /// stay within its `[min_addr, max_addr]` window, start aligned to its `align`, and
    /// keep its entry point below 4 GiB.
    pub fn shifted(&self, delta: i64) -> Result<LoadPlan, Mb2Error> {
        let reloc = self.relocatable.ok_or(Mb2Error::NotRelocatable)?;
        let range = self.image_range();
        let out_of_range = Mb2Error::RelocationOutOfRange {
            base: range.start,
            end: range.end,
            min_addr: reloc.min_addr,
            max_addr: reloc.max_addr,
        };
        let base = range.start.checked_add_signed(delta).ok_or(out_of_range)?;
        let end = range.end.checked_add_signed(delta).ok_or(out_of_range)?;
        reloc.check(base, end)?;
        let mut moved = self.clone();
        for segment in moved.segments.iter_mut() {
            segment.dest = segment.dest.checked_add_signed(delta).ok_or(out_of_range)?;
        }
        let entry = u64::from(self.entry)
            .checked_add_signed(delta)
            .ok_or(out_of_range)?;
        moved.entry = u32::try_from(entry).map_err(|_| Mb2Error::EntryAbove4G { entry })?;
        Ok(moved)
    }
}

/// Checks the multiboot2 header of `image` (a whole, already inflated kernel) and says
/// where its bytes go and where it is entered.
///
/// With an address tag the image is raw bytes placed by that tag (an ELF file with one
/// too); otherwise it must be ELF32 (x86) or ELF64 (x86-64) and its `PT_LOAD` segments go
/// to their physical addresses (`p_paddr`). The ELF entry point `e_entry` is virtual and
/// translated to physical through the segment containing it, as GRUB does, so kernels
/// linked at a high virtual address boot too; an entry address tag overrides it.
pub fn plan(image: &[u8]) -> Result<LoadPlan, Mb2Error> {
    let (header_offset, header) = search_header(image)?;
    if header.architecture != ARCHITECTURE_I386 {
        return Err(Mb2Error::UnsupportedArchitecture {
            offset: header_offset,
            architecture: header.architecture,
        });
    }
    let tags = parse_header_tags(image, header_offset, &header)?;

    let (kind, segments, entry) = match tags.address {
        Some(address) => {
            let segment = aout_segment(image, header_offset, &address)?;
            let entry = tags.entry.ok_or(Mb2Error::MissingEntryTag)?;
            let mut segments = heapless::Vec::new();
            segments
                .push(segment)
                .map_err(|_| Mb2Error::TooManySegments { max: MAX_SEGMENTS })?;
            let entry = physical_entry(&segments, u64::from(entry))?;
            (ImageKind::AoutKludge, segments, entry)
        }
        None => {
            let layout = elf_layout(image)?;
            let entry = match tags.entry {
                Some(entry) => physical_entry(&layout.segments, u64::from(entry))?,
                None => layout.physical_entry()?,
            };
            (layout.kind, layout.segments, entry)
        }
    };

    Ok(LoadPlan {
        kind,
        header_offset,
        entry,
        segments,
        relocatable: tags.relocatable,
        module_alignment: tags.module_alignment,
        requested: tags.requested,
        console_flags: tags.console_flags,
    })
}

/// Checks a physical entry point: inside a segment and below 4 GiB.
fn physical_entry(segments: &[Segment], entry: u64) -> Result<u32, Mb2Error> {
    if !segments.iter().any(|s| (s.dest..s.end()).contains(&entry)) {
        return Err(Mb2Error::EntryOutsideSegments { entry });
    }
    u32::try_from(entry).map_err(|_| Mb2Error::EntryAbove4G { entry })
}

/// The single range the address tag describes.
fn aout_segment(image: &[u8], header_offset: usize, tag: &AddressTag) -> Result<Segment, Mb2Error> {
    let (file_offset, dest) = if tag.load_addr == LOAD_ADDR_FILE_START {
        let before_file = Mb2Error::LoadStartsBeforeFile {
            header_offset,
            header_addr: tag.header_addr,
            load_addr: tag.load_addr,
        };
        let dest = u64::from(tag.header_addr)
            .checked_sub(header_offset as u64)
            .ok_or(before_file)?;
        (0, dest)
    } else {
        if tag.load_addr > tag.header_addr {
            return Err(Mb2Error::LoadAddrAboveHeader {
                load_addr: tag.load_addr,
                header_addr: tag.header_addr,
            });
        }
        let before_header = (tag.header_addr - tag.load_addr) as usize;
        let file_offset =
            header_offset
                .checked_sub(before_header)
                .ok_or(Mb2Error::LoadStartsBeforeFile {
                    header_offset,
                    header_addr: tag.header_addr,
                    load_addr: tag.load_addr,
                })?;
        (file_offset, u64::from(tag.load_addr))
    };

    let file_size = if tag.load_end_addr == 0 {
        image.len().saturating_sub(file_offset)
    } else {
        let size =
            u64::from(tag.load_end_addr)
                .checked_sub(dest)
                .ok_or(Mb2Error::LoadEndBeforeStart {
                    load_start: dest,
                    load_end_addr: tag.load_end_addr,
                })?;
        let file_end = (file_offset as u64).saturating_add(size);
        if file_end > image.len() as u64 {
            return Err(Mb2Error::LoadPastFile {
                file_offset,
                file_end,
                file_size: image.len(),
            });
        }
        size as usize
    };

    let load_end = dest.saturating_add(file_size as u64);
    let mem_size = if tag.bss_end_addr == 0 {
        file_size as u64
    } else {
        u64::from(tag.bss_end_addr)
            .checked_sub(dest)
            .filter(|&m| m >= file_size as u64)
            .ok_or(Mb2Error::BssEndBeforeLoadEnd {
                load_end,
                bss_end_addr: tag.bss_end_addr,
            })?
    };
    let end = dest.saturating_add(mem_size);
    if end > FOUR_GIB {
        return Err(Mb2Error::LoadAbove4G { start: dest, end });
    }
    Ok(Segment {
        dest,
        file_offset,
        file_size,
        mem_size,
    })
}

/// An ELF file's loadable segments with their virtual addresses, for the entry point.
struct ElfLayout {
    kind: ImageKind,
    e_entry: u64,
    segments: heapless::Vec<Segment, MAX_SEGMENTS>,
    /// For each entry of `segments`: its program header number and `p_vaddr`.
    headers: heapless::Vec<(usize, u64), MAX_SEGMENTS>,
}

impl ElfLayout {
    /// `e_entry` translated from virtual to physical through its segment.
    fn physical_entry(&self) -> Result<u32, Mb2Error> {
        let outside = Mb2Error::EntryOutsideSegments {
            entry: self.e_entry,
        };
        let (segment, vaddr) = self
            .segments
            .iter()
            .zip(self.headers.iter().map(|&(_, vaddr)| vaddr))
            .find(|&(s, v)| self.e_entry >= v && self.e_entry - v < s.mem_size)
            .ok_or(outside)?;
        let entry = segment
            .dest
            .checked_add(self.e_entry - vaddr)
            .ok_or(outside)?;
        u32::try_from(entry).map_err(|_| Mb2Error::EntryAbove4G { entry })
    }
}

fn elf_layout(image: &[u8]) -> Result<ElfLayout, Mb2Error> {
    let ident = image.get(..elf::abi::EI_NIDENT).ok_or(Mb2Error::NotElf)?;
    if ident.get(..elf::abi::ELFMAGIC.len()) != Some(&elf::abi::ELFMAGIC[..]) {
        return Err(Mb2Error::NotElf);
    }
    let ident = elf::file::parse_ident::<LittleEndian>(ident).map_err(|e| Mb2Error::BadElf {
        problem: match e {
            elf::ParseError::UnsupportedElfClass(_) => "class is neither 32-bit nor 64-bit",
            elf::ParseError::UnsupportedElfEndianness(_) => "not little-endian",
            elf::ParseError::UnsupportedVersion(_) => "unsupported ELF version",
            _ => "bad identification bytes",
        },
    })?;
    let (class_bits, tail_size, machine, kind) = match ident.1 {
        Class::ELF32 => (
            32,
            elf::file::ELF32_EHDR_TAILSIZE,
            elf::abi::EM_386,
            ImageKind::Elf32,
        ),
        Class::ELF64 => (
            64,
            elf::file::ELF64_EHDR_TAILSIZE,
            elf::abi::EM_X86_64,
            ImageKind::Elf64,
        ),
    };
    let class = ident.1;
    let tail_end = elf::abi::EI_NIDENT + tail_size;
    let tail = image
        .get(elf::abi::EI_NIDENT..tail_end)
        .ok_or(Mb2Error::BadElf {
            problem: "the file ends inside the file header",
        })?;
    let ehdr = FileHeader::parse_tail(ident, tail).map_err(|_| Mb2Error::BadElf {
        problem: "unreadable file header",
    })?;
    if ehdr.e_machine != machine {
        return Err(Mb2Error::ElfMachine {
            class_bits,
            machine: ehdr.e_machine,
        });
    }
    if ehdr.e_type != elf::abi::ET_EXEC && ehdr.e_type != elf::abi::ET_DYN {
        return Err(Mb2Error::ElfType {
            e_type: ehdr.e_type,
        });
    }
    if ehdr.e_phnum == elf::abi::PN_XNUM {
        return Err(Mb2Error::TooManySegments { max: MAX_SEGMENTS });
    }
    let entsize = ProgramHeader::size_for(class);
    if usize::from(ehdr.e_phentsize) != entsize {
        return Err(Mb2Error::ElfPhentsize {
            phentsize: ehdr.e_phentsize,
            expected: entsize,
        });
    }
    let table_len = (entsize as u64) * u64::from(ehdr.e_phnum);
    let table_end = ehdr.e_phoff.saturating_add(table_len);
    let past_file = Mb2Error::ElfProgramHeadersPastFile {
        start: ehdr.e_phoff,
        end: table_end,
        file_size: image.len(),
    };
    if table_end > image.len() as u64 {
        return Err(past_file);
    }
    let table = image
        .get(ehdr.e_phoff as usize..table_end as usize)
        .ok_or(past_file)?;
    let phdrs = SegmentTable::new(LittleEndian, class, table);

    let mut segments = heapless::Vec::new();
    let mut headers = heapless::Vec::new();
    for index in 0..usize::from(ehdr.e_phnum) {
        let ph = phdrs.get(index).map_err(|_| past_file)?;
        if ph.p_type != elf::abi::PT_LOAD || ph.p_memsz == 0 {
            continue;
        }
        let segment = elf_segment(image, index, &ph)?;
        segments
            .push(segment)
            .map_err(|_| Mb2Error::TooManySegments { max: MAX_SEGMENTS })?;
        headers
            .push((index, ph.p_vaddr))
            .map_err(|_| Mb2Error::TooManySegments { max: MAX_SEGMENTS })?;
    }
    if segments.is_empty() {
        return Err(Mb2Error::NoLoadSegments);
    }
    check_overlaps(&segments, &headers)?;
    Ok(ElfLayout {
        kind,
        e_entry: ehdr.e_entry,
        segments,
        headers,
    })
}

fn elf_segment(image: &[u8], index: usize, ph: &ProgramHeader) -> Result<Segment, Mb2Error> {
    let dest = ph.p_paddr;
    let end = dest.checked_add(ph.p_memsz);
    if ph.p_filesz > ph.p_memsz {
        return Err(Mb2Error::SegmentFileLargerThanMemory {
            index,
            file_size: ph.p_filesz,
            mem_size: ph.p_memsz,
        });
    }
    let file_end = ph.p_offset.checked_add(ph.p_filesz);
    match file_end {
        Some(file_end) if file_end <= image.len() as u64 => {}
        _ => {
            return Err(Mb2Error::SegmentPastFile {
                index,
                dest,
                end: end.unwrap_or(u64::MAX),
                file_offset: ph.p_offset,
                file_end: file_end.unwrap_or(u64::MAX),
                file_size: image.len(),
            })
        }
    }
    match end {
        Some(end) if end <= FOUR_GIB => {}
        _ => {
            return Err(Mb2Error::SegmentAbove4G {
                index,
                dest,
                end: end.unwrap_or(u64::MAX),
            })
        }
    }
    // Both fit in usize: they were just checked against the image's length.
    Ok(Segment {
        dest,
        file_offset: ph.p_offset as usize,
        file_size: ph.p_filesz as usize,
        mem_size: ph.p_memsz,
    })
}

/// Refuses segments sharing memory (a later copy would overwrite an earlier one).
fn check_overlaps(segments: &[Segment], headers: &[(usize, u64)]) -> Result<(), Mb2Error> {
    let number = |i: usize| headers.get(i).map_or(i, |&(n, _)| n);
    for (i, a) in segments.iter().enumerate() {
        for (j, b) in segments.iter().enumerate().skip(i + 1) {
            if a.dest < b.end() && b.dest < a.end() {
                return Err(Mb2Error::SegmentsOverlap {
                    first: number(i),
                    second: number(j),
                    first_range: (a.dest, a.end()),
                    second_range: (b.dest, b.end()),
                });
            }
        }
    }
    Ok(())
}
