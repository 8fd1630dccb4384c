//! Host tests: the multiboot2 header parser and the load plan, on images built here.

use super::*;
use crate::kernels::gzip;

// ---- image builders -----------------------------------------------------------------

/// A header tag: header, payload, padded to 8.
fn header_tag(tag_type: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let size = (HeaderTagHeader::SIZE + payload.len()) as u32;
    let mut t = vec![0u8; HeaderTagHeader::SIZE];
    HeaderTagHeader {
        tag_type,
        flags,
        size,
    }
    .write_at(&mut t, 0)
    .unwrap();
    t.extend_from_slice(payload);
    t.resize(t.len().checked_next_multiple_of(TAG_ALIGN).unwrap(), 0);
    t
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn info_request(flags: u16, types: &[u32]) -> Vec<u8> {
    header_tag(HEADER_TAG_INFORMATION_REQUEST, flags, &words(types))
}

fn address_tag(header_addr: u32, load_addr: u32, load_end: u32, bss_end: u32) -> Vec<u8> {
    header_tag(
        HEADER_TAG_ADDRESS,
        0,
        &words(&[header_addr, load_addr, load_end, bss_end]),
    )
}

fn entry_tag(entry: u32) -> Vec<u8> {
    header_tag(HEADER_TAG_ENTRY_ADDRESS, 0, &words(&[entry]))
}

fn relocatable_tag(min: u32, max: u32, align: u32, preference: u32) -> Vec<u8> {
    header_tag(
        HEADER_TAG_RELOCATABLE,
        0,
        &words(&[min, max, align, preference]),
    )
}

/// A multiboot2 header for `architecture` with `tags` and an end tag, checksummed.
fn mb2_header_arch(architecture: u32, tags: &[Vec<u8>]) -> Vec<u8> {
    let mut body: Vec<u8> = tags.concat();
    body.extend(header_tag(HEADER_TAG_END, 0, &[]));
    let header_length = (HeaderFixed::SIZE + body.len()) as u32;
    let checksum = 0u32
        .wrapping_sub(HEADER_MAGIC)
        .wrapping_sub(architecture)
        .wrapping_sub(header_length);
    let mut h = vec![0u8; HeaderFixed::SIZE];
    HeaderFixed {
        magic: HEADER_MAGIC,
        architecture,
        header_length,
        checksum,
    }
    .write_at(&mut h, 0)
    .unwrap();
    h.extend(body);
    h
}

fn mb2_header(tags: &[Vec<u8>]) -> Vec<u8> {
    mb2_header_arch(ARCHITECTURE_I386, tags)
}

fn put(image: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if image.len() < at + bytes.len() {
        image.resize(at + bytes.len(), 0);
    }
    image[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A program header for the test ELF builders.
#[derive(Clone, Copy)]
struct Ph {
    p_type: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

fn load(offset: u64, paddr: u64, filesz: u64, memsz: u64) -> Ph {
    Ph {
        p_type: elf::abi::PT_LOAD,
        offset,
        vaddr: paddr,
        paddr,
        filesz,
        memsz,
    }
}

// ELF header field offsets (System V ABI), for building test files by hand.
const EI_CLASS_32: u8 = 1;
const EI_CLASS_64: u8 = 2;
const EI_DATA_LE: u8 = 1;
const EV_CURRENT: u8 = 1;
const ELF32_EHDR_SIZE: usize = 52;
const ELF64_EHDR_SIZE: usize = 64;
const ELF32_PHDR_SIZE: usize = 32;
const ELF64_PHDR_SIZE: usize = 56;
/// Where the test ELF files keep their multiboot2 header (inside segment 0).
const MB2_AT: usize = 0x1000;

/// An ELF file (32- or 64-bit, x86) with `phdrs`, entry `entry`, the multiboot2
/// `header` at [`MB2_AT`], and file contents up to the end of every segment.
fn elf(is64: bool, phdrs: &[Ph], entry: u64, header: &[u8]) -> Vec<u8> {
    let (ehsize, phsize) = if is64 {
        (ELF64_EHDR_SIZE, ELF64_PHDR_SIZE)
    } else {
        (ELF32_EHDR_SIZE, ELF32_PHDR_SIZE)
    };
    let mut f = vec![0u8; ehsize];
    f[..4].copy_from_slice(&elf::abi::ELFMAGIC);
    f[elf::abi::EI_CLASS] = if is64 { EI_CLASS_64 } else { EI_CLASS_32 };
    f[elf::abi::EI_DATA] = EI_DATA_LE;
    f[elf::abi::EI_VERSION] = EV_CURRENT;
    let machine = if is64 {
        elf::abi::EM_X86_64
    } else {
        elf::abi::EM_386
    };
    put(&mut f, 16, &elf::abi::ET_EXEC.to_le_bytes());
    put(&mut f, 18, &machine.to_le_bytes());
    put(&mut f, 20, &1u32.to_le_bytes());
    if is64 {
        put(&mut f, 24, &entry.to_le_bytes());
        put(&mut f, 32, &(ehsize as u64).to_le_bytes()); // e_phoff
        put(&mut f, 52, &(ehsize as u16).to_le_bytes());
        put(&mut f, 54, &(phsize as u16).to_le_bytes());
        put(&mut f, 56, &(phdrs.len() as u16).to_le_bytes());
    } else {
        put(&mut f, 24, &(entry as u32).to_le_bytes());
        put(&mut f, 28, &(ehsize as u32).to_le_bytes()); // e_phoff
        put(&mut f, 40, &(ehsize as u16).to_le_bytes());
        put(&mut f, 42, &(phsize as u16).to_le_bytes());
        put(&mut f, 44, &(phdrs.len() as u16).to_le_bytes());
    }
    for (i, p) in phdrs.iter().enumerate() {
        let at = ehsize + i * phsize;
        let mut ph = Vec::new();
        if is64 {
            ph.extend(p.p_type.to_le_bytes());
            ph.extend(0u32.to_le_bytes()); // p_flags
            for v in [p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, 0x1000] {
                ph.extend(v.to_le_bytes());
            }
        } else {
            ph.extend(p.p_type.to_le_bytes());
            for v in [p.offset, p.vaddr, p.paddr, p.filesz, p.memsz] {
                ph.extend((v as u32).to_le_bytes());
            }
            ph.extend(0u32.to_le_bytes()); // p_flags
            ph.extend(0x1000u32.to_le_bytes()); // p_align
        }
        put(&mut f, at, &ph);
    }
    let end = phdrs
        .iter()
        .filter(|p| p.offset < 0x1_0000_0000)
        .map(|p| (p.offset + p.filesz) as usize)
        .max()
        .unwrap_or(0);
    if f.len() < end {
        f.resize(end, 0);
    }
    // Recognisable contents, so a plan's file ranges can be checked by value.
    for (i, b) in f.iter_mut().enumerate().skip(ehsize + phdrs.len() * phsize) {
        *b = (i % 251) as u8;
    }
    put(&mut f, MB2_AT, header);
    f
}

/// The usual two-segment kernel: 0x100000 (file 0x1000..0x3000, bss to 0x103000) and
/// 0x200000 (file 0x3000..0x3800, bss to 0x201000), with a note in between.
fn two_segments() -> Vec<Ph> {
    vec![
        load(0x1000, 0x10_0000, 0x2000, 0x3000),
        Ph {
            p_type: elf::abi::PT_NOTE,
            offset: 0x1100,
            vaddr: 0,
            paddr: 0,
            filesz: 0x10,
            memsz: 0,
        },
        load(0x3000, 0x20_0000, 0x800, 0x1000),
    ]
}

fn expected_two_segments() -> heapless::Vec<Segment, MAX_SEGMENTS> {
    let mut v = heapless::Vec::new();
    v.push(Segment {
        dest: 0x10_0000,
        file_offset: 0x1000,
        file_size: 0x2000,
        mem_size: 0x3000,
    })
    .unwrap();
    v.push(Segment {
        dest: 0x20_0000,
        file_offset: 0x3000,
        file_size: 0x800,
        mem_size: 0x1000,
    })
    .unwrap();
    v
}

fn standard_header() -> Vec<u8> {
    mb2_header(&[
        info_request(0, &[TAG_CMDLINE, TAG_MMAP, TAG_ACPI_NEW]),
        header_tag(HEADER_TAG_MODULE_ALIGN, 0, &[]),
        header_tag(HEADER_TAG_CONSOLE_FLAGS, 0, &words(&[3])),
    ])
}

fn requested(types: &[u32]) -> RequestedTags {
    let mut r = RequestedTags::default();
    for &t in types {
        r.insert(t);
    }
    r
}

// ---- plans ---------------------------------------------------------------------------

#[test]
fn multiboot2_elf32_plan_is_exact() {
    let image = elf(false, &two_segments(), 0x10_0020, &standard_header());
    let plan = plan(&image).unwrap();
    assert_eq!(
        plan,
        LoadPlan {
            kind: ImageKind::Elf32,
            header_offset: MB2_AT,
            entry: 0x10_0020,
            segments: expected_two_segments(),
            relocatable: None,
            module_alignment: true,
            requested: requested(&[TAG_CMDLINE, TAG_MMAP, TAG_ACPI_NEW]),
            console_flags: Some(3),
        }
    );
    assert_eq!(plan.image_range(), 0x10_0000..0x20_1000);
    assert_eq!(plan.segments[0].file_range(), 0x1000..0x3000);
    assert_eq!(plan.segments[0].zero_range(), 0x10_2000..0x10_3000);
    assert_eq!(plan.requested.iter().collect::<Vec<_>>(), vec![1, 6, 15]);
    assert_eq!(find_header(&image), Some(MB2_AT));
}

#[test]
fn multiboot2_elf64_plan_translates_a_high_virtual_entry() {
    // Linked at -2 GiB, loaded at 1 MiB: e_entry is virtual.
    let high = 0xffff_ffff_8000_0000u64;
    let mut phdrs = two_segments();
    for p in phdrs.iter_mut().filter(|p| p.p_type == elf::abi::PT_LOAD) {
        p.vaddr = high + p.paddr;
    }
    let image = elf(true, &phdrs, high + 0x20_0040, &mb2_header(&[]));
    let plan = plan(&image).unwrap();
    assert_eq!(plan.kind, ImageKind::Elf64);
    assert_eq!(plan.entry, 0x20_0040);
    assert_eq!(plan.segments, expected_two_segments());
    assert!(plan.requested.is_empty());
    assert!(!plan.module_alignment);
}

#[test]
fn multiboot2_entry_tag_overrides_the_elf_entry() {
    let header = mb2_header(&[entry_tag(0x20_0010)]);
    let image = elf(false, &two_segments(), 0x10_0020, &header);
    assert_eq!(plan(&image).unwrap().entry, 0x20_0010);

    let header = mb2_header(&[entry_tag(0x30_0000)]);
    let image = elf(false, &two_segments(), 0x10_0020, &header);
    assert_eq!(
        plan(&image),
        Err(Mb2Error::EntryOutsideSegments { entry: 0x30_0000 })
    );
}

/// A raw (non-ELF) kernel: 0x40 bytes of code, then the header at 0x40.
fn aout_image(tags: &[Vec<u8>], len: usize) -> Vec<u8> {
    let mut image: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    put(&mut image, 0x40, &mb2_header(tags));
    image.resize(len.max(image.len()), 0);
    image
}

#[test]
fn multiboot2_address_tag_plan() {
    let image = aout_image(
        &[
            address_tag(0x10_0040, 0x10_0000, 0x10_1000, 0x10_2000),
            entry_tag(0x10_0080),
        ],
        0x1800,
    );
    let plan = plan(&image).unwrap();
    assert_eq!(plan.kind, ImageKind::AoutKludge);
    assert_eq!(plan.entry, 0x10_0080);
    assert_eq!(plan.header_offset, 0x40);
    assert_eq!(
        plan.segments.as_slice(),
        &[Segment {
            dest: 0x10_0000,
            file_offset: 0,
            file_size: 0x1000,
            mem_size: 0x2000
        }]
    );

    // load_end_addr 0: the whole rest of the file; bss_end_addr 0: no bss. The load
    // starts 0x20 bytes before the header.
    let image = aout_image(
        &[
            address_tag(0x10_0020, 0x10_0000, 0, 0),
            entry_tag(0x10_0000),
        ],
        0x1800,
    );
    let plan = super::plan(&image).unwrap();
    assert_eq!(
        plan.segments.as_slice(),
        &[Segment {
            dest: 0x10_0000,
            file_offset: 0x20,
            file_size: 0x17e0,
            mem_size: 0x17e0
        }]
    );

    // load_addr -1: from the first byte of the file.
    let image = aout_image(
        &[
            address_tag(0x10_0040, LOAD_ADDR_FILE_START, 0, 0),
            entry_tag(0x10_0000),
        ],
        0x800,
    );
    let plan = super::plan(&image).unwrap();
    assert_eq!(
        plan.segments.as_slice(),
        &[Segment {
            dest: 0x10_0000,
            file_offset: 0,
            file_size: 0x800,
            mem_size: 0x800
        }]
    );
}

#[test]
fn multiboot2_address_tag_errors() {
    let image = aout_image(&[address_tag(0x10_0040, 0x10_0000, 0, 0)], 0x800);
    assert_eq!(plan(&image), Err(Mb2Error::MissingEntryTag));

    let image = aout_image(
        &[
            address_tag(0x10_0040, 0x10_0080, 0, 0),
            entry_tag(0x10_0080),
        ],
        0x800,
    );
    assert_eq!(
        plan(&image),
        Err(Mb2Error::LoadAddrAboveHeader {
            load_addr: 0x10_0080,
            header_addr: 0x10_0040
        })
    );

    // The header is at 0x40 but claims 0x100 bytes before it.
    let image = aout_image(
        &[
            address_tag(0x10_0100, 0x10_0000, 0, 0),
            entry_tag(0x10_0000),
        ],
        0x800,
    );
    assert!(matches!(
        plan(&image),
        Err(Mb2Error::LoadStartsBeforeFile { .. })
    ));

    let image = aout_image(
        &[
            address_tag(0x10_0040, 0x10_0000, 0x10_1000, 0),
            entry_tag(0x10_0000),
        ],
        0x800,
    );
    let err = plan(&image).unwrap_err();
    assert_eq!(
        err,
        Mb2Error::LoadPastFile {
            file_offset: 0,
            file_end: 0x1000,
            file_size: 0x800
        }
    );
    assert_eq!(
        err.to_string(),
        "multiboot2 address tag: file bytes 0x0-0x1000 run past the end of the file (file size 0x800)"
    );

    let image = aout_image(
        &[
            address_tag(0x10_0040, 0x10_0000, 0x10_0400, 0x10_0200),
            entry_tag(0x10_0000),
        ],
        0x800,
    );
    assert!(matches!(
        plan(&image),
        Err(Mb2Error::BssEndBeforeLoadEnd { .. })
    ));

    let image = aout_image(
        &[
            address_tag(0xffff_f040, 0xffff_f000, 0, 0),
            entry_tag(0xffff_f000),
        ],
        0x1800,
    );
    assert!(matches!(plan(&image), Err(Mb2Error::LoadAbove4G { .. })));

    let image = aout_image(
        &[
            address_tag(0x10_0040, 0x10_0000, 0x10_0400, 0),
            entry_tag(0x10_0400),
        ],
        0x800,
    );
    assert_eq!(
        plan(&image),
        Err(Mb2Error::EntryOutsideSegments { entry: 0x10_0400 })
    );
}

#[test]
fn multiboot2_no_header() {
    let image = vec![0u8; 0x10000];
    assert_eq!(plan(&image), Err(Mb2Error::NoHeader));
    assert_eq!(find_header(&image), None);
    assert_eq!(
        Mb2Error::NoHeader.to_string(),
        "no multiboot2 header in the first 32 KiB"
    );
    assert_eq!(plan(&[]), Err(Mb2Error::NoHeader));
}

#[test]
fn multiboot2_header_beyond_32_kib() {
    let header = mb2_header(&[]);
    let mut image = vec![0u8; 0x9000];
    put(&mut image, HEADER_SEARCH_LIMIT, &header);
    assert_eq!(plan(&image), Err(Mb2Error::NoHeader));

    // The fixed part fits, the end tag does not.
    let mut image = vec![0u8; 0x9000];
    let at = HEADER_SEARCH_LIMIT - HeaderFixed::SIZE;
    put(&mut image, at, &header);
    assert_eq!(
        plan(&image),
        Err(Mb2Error::BadHeaderLength {
            offset: at,
            header_length: header.len() as u32,
            limit: HEADER_SEARCH_LIMIT
        })
    );
}

#[test]
fn multiboot2_misaligned_header_is_not_found() {
    let mut image = vec![0u8; 0x1000];
    put(&mut image, 4, &mb2_header(&[]));
    assert_eq!(plan(&image), Err(Mb2Error::NoHeader));
}

#[test]
fn multiboot2_bad_checksum() {
    let mut header = mb2_header(&[]);
    header[offset_of!(HeaderFixed, checksum)] ^= 1;
    let image = elf(false, &two_segments(), 0x10_0020, &header);
    let err = plan(&image).unwrap_err();
    assert_eq!(
        err,
        Mb2Error::BadChecksum {
            offset: MB2_AT,
            sum: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "multiboot2 header at offset 0x1000: checksum does not sum to zero (0x00000001)"
    );
    assert_eq!(find_header(&image), None);
}

#[test]
fn multiboot2_architecture_mips_refused() {
    let header = mb2_header_arch(ARCHITECTURE_MIPS32, &[]);
    let image = elf(false, &two_segments(), 0x10_0020, &header);
    let err = plan(&image).unwrap_err();
    assert_eq!(
        err,
        Mb2Error::UnsupportedArchitecture {
            offset: MB2_AT,
            architecture: ARCHITECTURE_MIPS32
        }
    );
    assert!(err.to_string().contains("architecture 4 (MIPS)"), "{err}");
    // Still recognised as a multiboot2 kernel, so the error reaches the user.
    assert_eq!(find_header(&image), Some(MB2_AT));
}

#[test]
fn multiboot2_information_request() {
    let header = mb2_header(&[info_request(0, &[TAG_CMDLINE, TAG_FRAMEBUFFER])]);
    let image = elf(false, &two_segments(), 0x10_0020, &header);
    let err = plan(&image).unwrap_err();
    assert_eq!(
        err,
        Mb2Error::UnavailableInfo {
            tag_type: TAG_FRAMEBUFFER
        }
    );
    assert_eq!(
        err.to_string(),
        "the kernel requires boot information tag 8 (framebuffer), which parkboot does not provide"
    );

    let header = mb2_header(&[info_request(
        HEADER_TAG_OPTIONAL,
        &[TAG_CMDLINE, TAG_FRAMEBUFFER, 99],
    )]);
    let image = elf(false, &two_segments(), 0x10_0020, &header);
    let plan = plan(&image).unwrap();
    assert!(plan.requested.contains(TAG_FRAMEBUFFER));
    assert!(plan.requested.contains(TAG_CMDLINE));
    assert!(!plan.requested.contains(TAG_MMAP));
    assert!(!plan.requested.contains(99));

    for t in PROVIDED_TAGS {
        let header = mb2_header(&[info_request(0, &[t])]);
        assert!(
            super::plan(&elf(false, &two_segments(), 0x10_0020, &header)).is_ok(),
            "{t}"
        );
    }
    for t in [
        TAG_BOOTDEV,
        TAG_VBE,
        TAG_ELF_SECTIONS,
        TAG_APM,
        TAG_EFI64,
        TAG_SMBIOS,
        TAG_NETWORK,
        TAG_EFI_MMAP,
    ] {
        let header = mb2_header(&[info_request(0, &[t])]);
        assert_eq!(
            super::plan(&elf(false, &two_segments(), 0x10_0020, &header)),
            Err(Mb2Error::UnavailableInfo { tag_type: t })
        );
    }
}

#[test]
fn multiboot2_required_header_tags() {
    let fb = |flags| header_tag(HEADER_TAG_FRAMEBUFFER, flags, &words(&[1024, 768, 32]));
    let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&[fb(0)]));
    let err = plan(&image).unwrap_err();
    assert_eq!(
        err,
        Mb2Error::RequiredTag {
            offset: MB2_AT + HeaderFixed::SIZE,
            tag_type: HEADER_TAG_FRAMEBUFFER
        }
    );
    assert!(
        err.to_string().contains("parkboot has no framebuffer"),
        "{err}"
    );
    let image = elf(
        false,
        &two_segments(),
        0x10_0020,
        &mb2_header(&[fb(HEADER_TAG_OPTIONAL)]),
    );
    assert!(plan(&image).is_ok());

    let efi_bs = |flags| header_tag(HEADER_TAG_EFI_BS, flags, &[]);
    let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&[efi_bs(0)]));
    assert!(matches!(
        plan(&image),
        Err(Mb2Error::RequiredTag {
            tag_type: HEADER_TAG_EFI_BS,
            ..
        })
    ));
    let image = elf(
        false,
        &two_segments(),
        0x10_0020,
        &mb2_header(&[efi_bs(HEADER_TAG_OPTIONAL)]),
    );
    assert!(plan(&image).is_ok());

    let unknown = |flags| header_tag(42, flags, &[1, 2, 3]);
    let image = elf(
        false,
        &two_segments(),
        0x10_0020,
        &mb2_header(&[unknown(0)]),
    );
    assert!(matches!(
        plan(&image),
        Err(Mb2Error::RequiredTag { tag_type: 42, .. })
    ));
    let image = elf(
        false,
        &two_segments(),
        0x10_0020,
        &mb2_header(&[unknown(HEADER_TAG_OPTIONAL)]),
    );
    assert!(plan(&image).is_ok());

    // EFI entry points are ignored: parkboot is not an EFI loader.
    let tags = [
        header_tag(HEADER_TAG_ENTRY_ADDRESS_EFI32, 0, &words(&[0xdead])),
        header_tag(HEADER_TAG_ENTRY_ADDRESS_EFI64, 0, &words(&[0xbeef])),
    ];
    let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&tags));
    assert_eq!(plan(&image).unwrap().entry, 0x10_0020);
}

#[test]
fn multiboot2_damaged_header_tags() {
    // An address tag cut to 16 bytes.
    let mut short = header_tag(HEADER_TAG_ADDRESS, 0, &words(&[0x10_0040, 0x10_0000]));
    short.truncate(16);
    let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&[short]));
    assert!(matches!(
        plan(&image),
        Err(Mb2Error::TagTooSmall {
            tag_type: HEADER_TAG_ADDRESS,
            size: 16,
            min: 24,
            ..
        })
    ));

    // A tag whose size runs past header_length.
    let mut big = header_tag(HEADER_TAG_CONSOLE_FLAGS, 0, &words(&[0]));
    big[offset_of!(HeaderTagHeader, size)] = 0x80;
    let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&[big]));
    assert!(matches!(
        plan(&image),
        Err(Mb2Error::TagPastHeader { size: 0x80, .. })
    ));

    // A header without an end tag.
    let mut header = mb2_header(&[]);
    header.truncate(HeaderFixed::SIZE);
    let length = HeaderFixed::SIZE as u32;
    let checksum = 0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(length);
    HeaderFixed {
        magic: HEADER_MAGIC,
        architecture: 0,
        header_length: length,
        checksum,
    }
    .write_at(&mut header, 0)
    .unwrap();
    let image = elf(false, &two_segments(), 0x10_0020, &header);
    assert_eq!(
        plan(&image),
        Err(Mb2Error::MissingEndTag { offset: MB2_AT })
    );

    // A tag of size 0 would loop forever if accepted.
    let image = elf(
        false,
        &two_segments(),
        0x10_0020,
        &mb2_header(&[vec![7, 0, 0, 0, 0, 0, 0, 0]]),
    );
    assert!(matches!(
        plan(&image),
        Err(Mb2Error::TagTooSmall { size: 0, .. })
    ));
}

#[test]
fn multiboot2_truncated_elf() {
    let image = elf(false, &two_segments(), 0x10_0020, &standard_header());

    // The file ends inside the program header table.
    let mut cut = image.clone();
    put(&mut cut, 28, &0x3ff0u32.to_le_bytes()); // e_phoff near the end
    let err = plan(&cut).unwrap_err();
    assert_eq!(
        err,
        Mb2Error::ElfProgramHeadersPastFile {
            start: 0x3ff0,
            end: 0x3ff0 + 3 * 32,
            file_size: 0x3800
        }
    );
    assert!(err
        .to_string()
        .starts_with("ELF program header table (0x3ff0-0x4050) runs past"));

    // The file ends inside segment 2.
    let cut = &image[..0x3400];
    let err = plan(cut).unwrap_err();
    assert_eq!(
        err,
        Mb2Error::SegmentPastFile {
            index: 2,
            dest: 0x20_0000,
            end: 0x20_1000,
            file_offset: 0x3000,
            file_end: 0x3800,
            file_size: 0x3400
        }
    );
    assert_eq!(
        err.to_string(),
        "ELF segment 2 (0x200000-0x201000) runs past the end of the file: file bytes \
         0x3000-0x3800 (file size 0x3400)"
    );

    // Cut anywhere: never a panic, always an error or (past every segment) a plan.
    for len in (0..image.len()).step_by(7) {
        let _ = plan(&image[..len]);
    }
}

#[test]
fn multiboot2_segment_checks() {
    let header = standard_header();
    let segs = |p: Vec<Ph>| elf(false, &p, 0x10_0020, &header);

    let image = segs(vec![load(0x1000, 0xffff_f000, 0x1000, 0x2000)]);
    let err = plan(&image).unwrap_err();
    assert_eq!(
        err,
        Mb2Error::SegmentAbove4G {
            index: 0,
            dest: 0xffff_f000,
            end: 0x1_0000_1000
        }
    );
    assert!(err.to_string().contains("reaches past 4 GiB"));

    let mut above = two_segments();
    above[2].paddr = 0x1_0000_0000;
    let image = elf(true, &above, 0x10_0020, &header);
    assert!(matches!(
        plan(&image),
        Err(Mb2Error::SegmentAbove4G { index: 2, .. })
    ));

    let mut overflow = two_segments();
    overflow[2].paddr = u64::MAX - 0x10;
    let image = elf(true, &overflow, 0x10_0020, &header);
    assert!(matches!(
        plan(&image),
        Err(Mb2Error::SegmentAbove4G {
            index: 2,
            end: u64::MAX,
            ..
        })
    ));

    let image = segs(vec![load(0x1000, 0x10_0000, 0x2000, 0x1000)]);
    assert!(matches!(
        plan(&image),
        Err(Mb2Error::SegmentFileLargerThanMemory { index: 0, .. })
    ));

    let image = segs(vec![
        load(0x1000, 0x10_0000, 0x2000, 0x3000),
        load(0x3000, 0x10_2000, 0x800, 0x800),
    ]);
    assert_eq!(
        plan(&image),
        Err(Mb2Error::SegmentsOverlap {
            first: 0,
            second: 1,
            first_range: (0x10_0000, 0x10_3000),
            second_range: (0x10_2000, 0x10_2800)
        })
    );

    let notes_only = vec![Ph {
        p_type: elf::abi::PT_NOTE,
        offset: 0x1000,
        vaddr: 0,
        paddr: 0,
        filesz: 0x2000,
        memsz: 0,
    }];
    assert_eq!(plan(&segs(notes_only)), Err(Mb2Error::NoLoadSegments));

    let many: Vec<Ph> = (0..MAX_SEGMENTS as u64 + 1)
        .map(|i| load(0x1000, 0x10_0000 + i * 0x1_0000, 0x100, 0x100))
        .collect();
    assert_eq!(
        plan(&segs(many)),
        Err(Mb2Error::TooManySegments { max: MAX_SEGMENTS })
    );

    let image = elf(false, &two_segments(), 0x50_0000, &header);
    let err = plan(&image).unwrap_err();
    assert_eq!(err, Mb2Error::EntryOutsideSegments { entry: 0x50_0000 });
    assert_eq!(
        err.to_string(),
        "the kernel's entry point 0x500000 is not inside a loaded segment"
    );

    // An ELF64 whose entry segment is at 4 GiB - 4 KiB ... 4 GiB is fine; a virtual
    // entry that translates above 4 GiB cannot happen once segments are below it.
    let image = elf(
        true,
        &[load(0x1000, 0xffff_e000, 0x2000, 0x2000)],
        0xffff_fff0,
        &header,
    );
    assert_eq!(plan(&image).unwrap().entry, 0xffff_fff0);
}

#[test]
fn multiboot2_elf_header_checks() {
    let header = standard_header();
    let mut image = elf(false, &two_segments(), 0x10_0020, &header);
    put(&mut image, 18, &elf::abi::EM_X86_64.to_le_bytes());
    assert_eq!(
        plan(&image),
        Err(Mb2Error::ElfMachine {
            class_bits: 32,
            machine: elf::abi::EM_X86_64
        })
    );

    let mut image = elf(false, &two_segments(), 0x10_0020, &header);
    put(&mut image, 16, &elf::abi::ET_REL.to_le_bytes());
    assert_eq!(
        plan(&image),
        Err(Mb2Error::ElfType {
            e_type: elf::abi::ET_REL
        })
    );

    let mut image = elf(false, &two_segments(), 0x10_0020, &header);
    put(&mut image, 42, &40u16.to_le_bytes());
    assert_eq!(
        plan(&image),
        Err(Mb2Error::ElfPhentsize {
            phentsize: 40,
            expected: 32
        })
    );

    let mut image = elf(false, &two_segments(), 0x10_0020, &header);
    image[elf::abi::EI_DATA] = 2; // big-endian
    assert!(matches!(plan(&image), Err(Mb2Error::BadElf { .. })));

    // Neither ELF nor an address tag.
    let mut image = elf(false, &two_segments(), 0x10_0020, &header);
    image[0] = 0;
    assert_eq!(plan(&image), Err(Mb2Error::NotElf));
}

#[test]
fn multiboot2_relocatable() {
    let header = mb2_header(&[relocatable_tag(0x10_0000, 0x1000_0000, 0x20_0000, 1)]);
    let image = elf(false, &two_segments(), 0x10_0020, &header);
    let plan = plan(&image).unwrap();
    let reloc = plan.relocatable.unwrap();
    assert_eq!(
        reloc,
        Relocatable {
            min_addr: 0x10_0000,
            max_addr: 0x1000_0000,
            align: 0x20_0000,
            preference: RelocPreference::Lowest
        }
    );
    // Loaded where it was linked: inside the window, but 1 MiB is not 2 MiB-aligned,
    // which only matters for a move.
    assert!(!reloc.allows(plan.image_range().start, plan.image_range().end));

    let moved = plan.shifted(0x10_0000).unwrap();
    assert_eq!(moved.entry, 0x20_0020);
    assert_eq!(moved.segments[0].dest, 0x20_0000);
    assert_eq!(moved.segments[1].dest, 0x30_0000);
    assert_eq!(moved.segments[0].file_offset, plan.segments[0].file_offset);
    assert_eq!(moved.image_range(), 0x20_0000..0x30_1000);

    assert_eq!(
        plan.shifted(0x30_0000).unwrap().image_range(),
        0x40_0000..0x50_1000
    );
    assert!(matches!(
        plan.shifted(0x8_0000),
        Err(Mb2Error::RelocationMisaligned {
            base: 0x18_0000,
            ..
        })
    ));
    assert!(matches!(
        plan.shifted(-0x10_0000),
        Err(Mb2Error::RelocationOutOfRange { base: 0, .. })
    ));
    assert!(matches!(
        plan.shifted(0x1000_0000),
        Err(Mb2Error::RelocationOutOfRange { .. })
    ));
    assert!(matches!(
        plan.shifted(i64::MIN),
        Err(Mb2Error::RelocationOutOfRange { .. })
    ));

    let image = elf(false, &two_segments(), 0x10_0020, &mb2_header(&[]));
    assert_eq!(
        super::plan(&image).unwrap().shifted(0x10_0000),
        Err(Mb2Error::NotRelocatable)
    );

    // Unknown preferences are hints parkboot ignores.
    let header = mb2_header(&[relocatable_tag(0, u32::MAX, 0, 7)]);
    let image = elf(false, &two_segments(), 0x10_0020, &header);
    assert_eq!(
        super::plan(&image).unwrap().relocatable.unwrap().preference,
        RelocPreference::NoPreference
    );
}

#[test]
fn multiboot2_flipped_header_bytes_never_panic() {
    let header = mb2_header(&[
        info_request(0, &[TAG_CMDLINE]),
        address_tag(0x10_1040, 0x10_0000, 0, 0x20_0000),
        entry_tag(0x10_0000),
        relocatable_tag(0, u32::MAX, 0x1000, 0),
    ]);
    let image = elf(true, &two_segments(), 0x10_0020, &header);
    for at in (0..MB2_AT + header.len()).step_by(3) {
        for bit in [0x01, 0x80, 0xff] {
            let mut m = image.clone();
            m[at] ^= bit;
            let _ = plan(&m);
        }
    }
}

#[test]
fn multiboot2_gzip_kernel_then_plan() {
    let image = elf(false, &two_segments(), 0x10_0020, &standard_header());
    let gz = gzip::tests::gzip_member(&image, 9);
    let mut out = vec![0u8; gzip::inflated_size(&gz).unwrap()];
    let len = gzip::inflate(&gz, &mut out).unwrap();
    assert_eq!(plan(&out[..len]).unwrap().segments, expected_two_segments());
}
