use super::*;
use crate::memory::{Lifetime, GIB};
use crate::memory::{MemoryKind, MemoryRegion};
use std::path::PathBuf;

// Offsets below are written as numbers on purpose: they are the boot protocol's
// tables, checked independently of the structures above.

fn w8(image: &mut [u8], at: usize, v: u8) {
    image[at] = v;
}
fn w16(image: &mut [u8], at: usize, v: u16) {
    image[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn w32(image: &mut [u8], at: usize, v: u32) {
    image[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn w64(image: &mut [u8], at: usize, v: u64) {
    image[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn r8(page: &[u8], at: usize) -> u8 {
    page[at]
}
fn r16(page: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(page[at..at + 2].try_into().unwrap())
}
fn r32(page: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(page[at..at + 4].try_into().unwrap())
}
fn r64(page: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(page[at..at + 8].try_into().unwrap())
}

/// A synthetic bzImage: a boot sector and setup code holding a setup header, then
/// a protected-mode part filled with a pattern.
#[derive(Clone)]
struct TestImage {
    setup_sects: u8,
    version: u16,
    xloadflags: u16,
    loadflags: u8,
    relocatable: u8,
    pref_address: u64,
    kernel_alignment: u32,
    init_size: u32,
    cmdline_size: u32,
    initrd_addr_max: u32,
    /// The jump's offset byte: the header ends at 0x202 plus this.
    jump_offset: u8,
    protected_mode_len: usize,
    version_string: Option<&'static [u8]>,
    version_pointer: u16,
    /// `syssize`; `None` declares exactly the protected-mode part built.
    syssize: Option<u32>,
    payload_offset: u32,
    payload_length: u32,
}

impl Default for TestImage {
    fn default() -> Self {
        TestImage {
            setup_sects: 4,
            version: 0x020F,
            xloadflags: XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
            loadflags: 0x81,
            relocatable: 1,
            pref_address: 0x100_0000,
            kernel_alignment: 0x20_0000,
            init_size: 0x240_0000,
            cmdline_size: 2047,
            initrd_addr_max: 0x7fff_ffff,
            jump_offset: 0x6a,
            protected_mode_len: 0x3000,
            version_string: Some(b"6.12.0-test (parkboot@test) #1 SMP"),
            version_pointer: 0x300,
            syssize: None,
            payload_offset: 0x2cc,
            payload_length: 0x2000,
        }
    }
}

impl TestImage {
    fn setup_bytes(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects as usize
        };
        (sects + 1) * 512
    }

    fn build(&self) -> Vec<u8> {
        let setup_bytes = self.setup_bytes();
        let mut image = vec![0u8; setup_bytes + self.protected_mode_len];
        // Garbage where boot_params keeps its own fields, which a loader must not
        // copy: the sentinel, and code after the header.
        w8(&mut image, 0x1ef, 0xff);
        for b in &mut image[0x26c..0x290] {
            *b = 0xcc;
        }
        w8(&mut image, 0x1f1, self.setup_sects);
        let syssize = self
            .syssize
            .unwrap_or((self.protected_mode_len / 16) as u32);
        w32(&mut image, 0x1f4, syssize);
        w32(&mut image, 0x248, self.payload_offset);
        w32(&mut image, 0x24c, self.payload_length);
        w16(&mut image, 0x1fa, 0xffff);
        w16(&mut image, 0x1fe, 0xaa55);
        w8(&mut image, 0x200, 0xeb);
        w8(&mut image, 0x201, self.jump_offset);
        image[0x202..0x206].copy_from_slice(b"HdrS");
        w16(&mut image, 0x206, self.version);
        w16(&mut image, 0x20e, self.version_pointer);
        w8(&mut image, 0x211, self.loadflags);
        w32(&mut image, 0x214, 0x10_0000);
        w32(&mut image, 0x22c, self.initrd_addr_max);
        w32(&mut image, 0x230, self.kernel_alignment);
        w8(&mut image, 0x234, self.relocatable);
        w8(&mut image, 0x235, 21);
        w16(&mut image, 0x236, self.xloadflags);
        w32(&mut image, 0x238, self.cmdline_size);
        w64(&mut image, 0x258, self.pref_address);
        w32(&mut image, 0x260, self.init_size);
        w32(&mut image, 0x264, 0x190);
        if self.jump_offset >= 0x6a {
            w32(&mut image, 0x268, 0x12_3400);
        }
        if let Some(s) = self.version_string {
            let at = self.version_pointer as usize + 0x200;
            image[at..at + s.len()].copy_from_slice(s);
            image[at + s.len()] = 0;
        }
        for (i, b) in image[setup_bytes..].iter_mut().enumerate() {
            *b = (i % 251) as u8 | 1;
        }
        image
    }
}

fn image() -> Vec<u8> {
    TestImage::default().build()
}

fn region(start: u64, size: u64, kind: MemoryKind) -> MemoryRegion {
    MemoryRegion { start, size, kind }
}

fn ram(start: u64, size: u64) -> MemoryRegion {
    region(start, size, MemoryKind::Usable)
}

/// A PC-like map: low RAM, the BIOS area, RAM from 1 MiB to 2 GiB, ACPI tables,
/// firmware-reserved memory, and 4 GiB of RAM above 4 GiB.
fn pc_map() -> MemoryMap {
    MemoryMap::new(&[
        ram(0, 0x9fc00),
        region(0xf0000, 0x10000, MemoryKind::Reserved),
        ram(MIB, 2 * GIB - MIB),
        region(2 * GIB, MIB, MemoryKind::AcpiReclaim),
        region(2 * GIB + MIB, MIB, MemoryKind::Reserved),
        ram(FOUR_GIB, FOUR_GIB),
    ])
    .unwrap()
}

fn reserve(map: &mut MemoryMap, start: u64, size: u64, name: &'static str) {
    map.reserve(start, size, name, ReportAs::Reserved, Lifetime::Boot)
        .unwrap();
}

#[test]
fn parses_a_synthetic_bzimage() {
    let bytes = image();
    let k = parse(&bytes).unwrap();
    assert_eq!(k.version, 0x020F);
    assert_eq!(k.setup_bytes, 5 * 512);
    assert_eq!(k.setup_header_end, 0x26c);
    assert_eq!(k.protected_mode, 0xa00..0xa00 + 0x3000);
    assert_eq!(k.protected_mode_len(), 0x3000);
    assert!(k.relocatable);
    assert_eq!(k.pref_address, 0x100_0000);
    assert_eq!(k.kernel_alignment, 0x20_0000);
    assert_eq!(k.init_size, 0x240_0000);
    assert_eq!(k.cmdline_size, 2047);
    assert_eq!(k.initrd_addr_max, 0x7fff_ffff);
    assert!(k.can_load_initrd_above_4g);
    assert_eq!(
        k.kernel_version.get(),
        Some("6.12.0-test (parkboot@test) #1 SMP")
    );
    assert_eq!(
        k.kernel_version.as_str(),
        "6.12.0-test (parkboot@test) #1 SMP"
    );
    // The copied header has every field at its place.
    let setup = k.setup;
    assert_eq!({ setup.boot_flag }, BOOT_FLAG);
    assert_eq!({ setup.header }, HEADER_MAGIC);
    assert_eq!({ setup.syssize }, 0x300);
    assert_eq!({ setup.vid_mode }, 0xffff);
    assert_eq!({ setup.code32_start }, 0x10_0000);
    assert_eq!({ setup.min_alignment }, 21);
    assert_eq!({ setup.handover_offset }, 0x190);
    assert_eq!({ setup.kernel_info_offset }, 0x12_3400);
    assert_eq!(k.memory_size(), 0x240_0000);
    assert_eq!(k.entry_point(0x100_0000), Some(0x100_0200));
    assert_eq!(k.entry_point(u64::MAX), None);
    assert!(looks_like_bzimage(&bytes));
}

#[test]
fn setup_sects_zero_means_four() {
    let zero = TestImage {
        setup_sects: 0,
        ..TestImage::default()
    };
    let bytes = zero.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(k.setup_bytes, (4 + 1) * 512);
    let fifteen = TestImage {
        setup_sects: 15,
        ..TestImage::default()
    };
    let bytes = fifteen.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(k.setup_bytes, 16 * 512);
    assert_eq!(k.protected_mode.start, 0x2000);
}

#[test]
fn memory_size_covers_the_larger_of_image_and_init_size() {
    // init_size covers the declared kernel, but the file carries more after it (a
    // signature): the copy of the whole file must fit too.
    let t = TestImage {
        init_size: 0x1000,
        protected_mode_len: 0x2345,
        syssize: Some(0x80),
        payload_length: 0x400,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(k.memory_size(), 0x3000);
}

#[test]
fn rejects_what_is_not_a_bzimage() {
    assert_eq!(
        parse(&[]),
        Err(LinuxError::TooShort {
            len: 0,
            needed: 0x268
        })
    );
    assert!(!looks_like_bzimage(&[]));
    let err = parse(&[0u8; 100]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a bzImage: the image is 0x64 bytes, but its setup header ends at 0x268"
    );

    let mut bytes = image();
    w16(&mut bytes, 0x1fe, 0x1234);
    let err = parse(&bytes).unwrap_err();
    assert_eq!(err, LinuxError::NoBootFlag { found: 0x1234 });
    assert_eq!(
        err.to_string(),
        "not a bzImage: boot flag at 0x1fe is 0x1234, not 0xaa55"
    );
    assert!(!looks_like_bzimage(&bytes));

    let mut bytes = image();
    bytes[0x202..0x206].copy_from_slice(b"HdrX");
    let err = parse(&bytes).unwrap_err();
    assert_eq!(err, LinuxError::NoHeaderMagic);
    assert_eq!(
        err.to_string(),
        "not a bzImage: no 'HdrS' signature at 0x202"
    );
    assert!(!looks_like_bzimage(&bytes));

    // An ELF file is not mistaken for one.
    let mut elf = vec![0u8; 0x1000];
    elf[..4].copy_from_slice(b"\x7fELF");
    assert!(!looks_like_bzimage(&elf));
    assert!(parse(&elf).is_err());
}

#[test]
fn protocol_version_must_be_2_12() {
    for (version, ok) in [
        (0x0200, false),
        (0x020A, false),
        (0x020B, false),
        (0x020C, true),
        (0x020F, true),
    ] {
        let t = TestImage {
            version,
            ..TestImage::default()
        };
        assert_eq!(parse(&t.build()).is_ok(), ok, "version {version:#x}");
    }
    let t = TestImage {
        version: 0x020A,
        ..TestImage::default()
    };
    let err = parse(&t.build()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "boot protocol 2.10 is too old for the 64-bit entry (needs 2.12)"
    );
}

#[test]
fn needs_the_64_bit_entry() {
    let t = TestImage {
        xloadflags: XLF_CAN_BE_LOADED_ABOVE_4G | XLF_EFI_HANDOVER_64,
        ..TestImage::default()
    };
    let err = parse(&t.build()).unwrap_err();
    assert_eq!(err, LinuxError::No64BitEntry);
    assert_eq!(
        err.to_string(),
        "kernel does not support the 64-bit entry (XLF_KERNEL_64 not set)"
    );
    // Without the above-4G flag the kernel still loads, with the initrd kept low.
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        ..TestImage::default()
    };
    assert!(!parse(&t.build()).unwrap().can_load_initrd_above_4g);
}

#[test]
fn protected_mode_kernel_must_be_in_the_file() {
    let bytes = image();
    // Cut right where the protected-mode kernel would start.
    let err = parse(&bytes[..0xa00]).unwrap_err();
    assert_eq!(
        err,
        LinuxError::NoProtectedModeKernel {
            setup_bytes: 0xa00,
            len: 0xa00
        }
    );
    // Setup code claiming 255 sectors in a small file.
    let mut bytes = image();
    w8(&mut bytes, 0x1f1, 255);
    assert_eq!(
        parse(&bytes),
        Err(LinuxError::NoProtectedModeKernel {
            setup_bytes: 256 * 512,
            len: bytes.len()
        })
    );
}

#[test]
fn a_truncated_image_is_refused_by_name() {
    let bytes = image();
    // One byte short of what syssize declares, and cut in half.
    for cut in [bytes.len() - 1, 0xa00 + 0x1800, 0xa01] {
        let err = parse(&bytes[..cut]).unwrap_err();
        assert_eq!(
            err,
            LinuxError::Truncated {
                declared: 0x3000,
                present: cut - 0xa00
            }
        );
        assert!(err.to_string().starts_with("truncated bzImage"), "{err}");
    }
    // Bytes after the declared kernel (a signature) are fine.
    let mut signed = image();
    signed.extend_from_slice(&[0x5a; 0x5c0]);
    let k = parse(&signed).unwrap();
    assert_eq!(k.protected_mode, 0xa00..signed.len());
    // syssize larger than the file, as a corrupted header would say.
    let t = TestImage {
        syssize: Some(0x0bc_0000),
        ..TestImage::default()
    };
    assert_eq!(
            parse(&t.build()).unwrap_err().to_string(),
            "truncated bzImage: syssize declares a 0xbc00000-byte protected-mode kernel, but only 0x3000 bytes follow the setup code"
        );
    let t = TestImage {
        syssize: Some(0),
        ..TestImage::default()
    };
    assert_eq!(parse(&t.build()), Err(LinuxError::ZeroSyssize));
}

/// A header shaped like Debian's 6.12 kernel (40 sectors of setup, a signature
/// after the declared kernel) cut to 1 MB: refused by name, never entered.
#[test]
fn a_real_shaped_kernel_cut_to_one_megabyte_is_refused() {
    let t = TestImage {
        setup_sects: 39,
        protected_mode_len: 0xb8_1000,
        syssize: Some(0xb8_0a00 / 16),
        payload_offset: 0x2cc,
        payload_length: 0xb4_a230,
        init_size: 0x37e_e000,
        ..TestImage::default()
    };
    let bytes = t.build();
    assert!(parse(&bytes).is_ok());
    let err = parse(&bytes[..1_000_000]).unwrap_err();
    assert_eq!(
        err,
        LinuxError::Truncated {
            declared: 0xb8_0a00,
            present: 1_000_000 - 40 * 512
        }
    );
}

#[test]
fn payload_and_init_size_must_fit_the_declared_kernel() {
    // The payload ends exactly at the declared end: fine; one byte more is not.
    let t = TestImage {
        payload_offset: 0x1000,
        payload_length: 0x2000,
        ..TestImage::default()
    };
    assert!(parse(&t.build()).is_ok());
    for (offset, length) in [(0x1000, 0x2001), (0x3001, 0), (u32::MAX, u32::MAX)] {
        let t = TestImage {
            payload_offset: offset,
            payload_length: length,
            ..TestImage::default()
        };
        let err = parse(&t.build()).unwrap_err();
        assert_eq!(
            err,
            LinuxError::PayloadOutsideKernel {
                offset,
                length,
                kernel: 0x3000
            }
        );
        assert!(err.to_string().contains("payload_offset"), "{err}");
    }
    let t = TestImage {
        init_size: 0x2fff,
        ..TestImage::default()
    };
    assert_eq!(
        parse(&t.build()),
        Err(LinuxError::InitSizeTooSmall {
            init_size: 0x2fff,
            kernel: 0x3000
        })
    );
    let t = TestImage {
        init_size: 0x3000,
        ..TestImage::default()
    };
    assert!(parse(&t.build()).is_ok());
}

#[test]
fn init_size_and_alignment_are_checked() {
    let t = TestImage {
        init_size: 0,
        ..TestImage::default()
    };
    assert_eq!(parse(&t.build()), Err(LinuxError::ZeroInitSize));
    for alignment in [0, 3, 0x30_0000] {
        let t = TestImage {
            kernel_alignment: alignment,
            ..TestImage::default()
        };
        let err = parse(&t.build()).unwrap_err();
        assert_eq!(err, LinuxError::BadKernelAlignment { alignment });
    }
    let t = TestImage {
        kernel_alignment: 0x30_0000,
        ..TestImage::default()
    };
    assert_eq!(
        parse(&t.build()).unwrap_err().to_string(),
        "kernel_alignment 0x300000 is not a power of two"
    );
}

#[test]
fn header_length_comes_from_the_jump() {
    // A protocol 2.12 header ends after handover_offset: what follows is code and
    // must not be read as kernel_info_offset.
    let t = TestImage {
        version: 0x020C,
        jump_offset: 0x66,
        ..TestImage::default()
    };
    let mut bytes = t.build();
    w32(&mut bytes, 0x268, 0xdead_beef);
    let k = parse(&bytes).unwrap();
    assert_eq!(k.setup_header_end, 0x268);
    assert_eq!({ k.setup.kernel_info_offset }, 0);
    assert_eq!({ k.setup.handover_offset }, 0x190);
    // Too short to hold the fields protocol 2.12 defines, or longer than the room
    // boot_params has for it.
    for jump_offset in [0x00, 0x60, 0x65, 0x8f, 0xff] {
        let t = TestImage {
            jump_offset,
            ..TestImage::default()
        };
        assert_eq!(
            parse(&t.build()),
            Err(LinuxError::BadHeaderLength {
                end: 0x202 + jump_offset as usize
            }),
            "jump offset {jump_offset:#x}"
        );
    }
    // The largest allowed header: up to the e820-related fields at 0x290.
    let t = TestImage {
        jump_offset: 0x8e,
        ..TestImage::default()
    };
    assert_eq!(parse(&t.build()).unwrap().setup_header_end, 0x290);
    // An image that ends inside its header.
    assert_eq!(
        parse(&image()[..0x26a]),
        Err(LinuxError::TooShort {
            len: 0x26a,
            needed: 0x26c
        })
    );
}

#[test]
fn release_and_mailbox_handback_from_the_version_string() {
    let version = |text| KernelVersion(Some(text));
    let release = |major, minor| Release { major, minor };
    for (text, expected) in [
        (
            "6.12.117+deb12-amd64 (debian-kernel@lists.debian.org) #1 SMP",
            MailboxHandback::Yes(release(6, 12)),
        ),
        ("6.11.0", MailboxHandback::Yes(release(6, 11))),
        ("7.0-rc1 (x@y)", MailboxHandback::Yes(release(7, 0))),
        (
            "6.1.0-28-amd64 (debian-kernel@lists.debian.org)",
            MailboxHandback::No(release(6, 1)),
        ),
        ("6.10.14", MailboxHandback::No(release(6, 10))),
        ("5.19.0", MailboxHandback::No(release(5, 19))),
        ("", MailboxHandback::Unknown),
        ("linux", MailboxHandback::Unknown),
        ("6", MailboxHandback::Unknown),
        ("6.x", MailboxHandback::Unknown),
        ("99999999999.1", MailboxHandback::Unknown),
    ] {
        assert_eq!(version(text).mailbox_handback(), expected, "{text}");
    }
    assert_eq!(
        KernelVersion(None).mailbox_handback(),
        MailboxHandback::Unknown
    );
    assert_eq!(release(6, 11).to_string(), "6.11");
    // The synthetic image's string.
    assert_eq!(
        parse(&image()).unwrap().kernel_version.release(),
        Some(release(6, 12))
    );
}

#[test]
fn version_string_is_optional() {
    let none = TestImage {
        version_pointer: 0,
        version_string: None,
        ..TestImage::default()
    };
    assert_eq!(parse(&none.build()).unwrap().kernel_version.get(), None);
    assert_eq!(
        parse(&none.build()).unwrap().kernel_version.to_string(),
        KernelVersion::UNKNOWN
    );
    // Pointing past the setup code.
    let outside = TestImage {
        version_pointer: 0x900,
        version_string: None,
        ..TestImage::default()
    };
    assert_eq!(parse(&outside.build()).unwrap().kernel_version.get(), None);
    // Not terminated inside the setup code.
    let mut bytes = image();
    for b in &mut bytes[0x500..0xa00] {
        *b = b'x';
    }
    assert_eq!(parse(&bytes).unwrap().kernel_version.get(), None);
    // Not UTF-8.
    let invalid = TestImage {
        version_string: Some(b"6.12\xff"),
        ..TestImage::default()
    };
    assert_eq!(parse(&invalid.build()).unwrap().kernel_version.get(), None);
}

#[test]
fn kernel_goes_to_pref_address_when_free() {
    let bytes = image();
    let k = parse(&bytes).unwrap();
    let map = pc_map();
    assert_eq!(place_kernel(&k, &map), Ok(0x100_0000));
    // Not relocatable, same result.
    let t = TestImage {
        relocatable: 0,
        ..TestImage::default()
    };
    let bytes = t.build();
    assert_eq!(place_kernel(&parse(&bytes).unwrap(), &map), Ok(0x100_0000));
}

#[test]
fn relocatable_kernel_moves_when_pref_address_is_taken() {
    let bytes = image();
    let k = parse(&bytes).unwrap();
    let mut map = pc_map();
    reserve(&mut map, 0x180_0000, 0x10_0001, "park region");
    // Lowest 2 MiB-aligned address above the reservation (which ends at
    // 0x1900001).
    let at = place_kernel(&k, &map).unwrap();
    assert_eq!(at, 0x1a0_0000);
    assert!(at.is_multiple_of(k.kernel_alignment));
    assert!(map.is_free(at, k.memory_size()));
    map.reserve(
        at,
        k.memory_size(),
        "kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();

    // A 16 MiB alignment.
    let t = TestImage {
        kernel_alignment: 0x100_0000,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k16 = parse(&bytes).unwrap();
    // The kernel above ends at 0x3e00000.
    assert_eq!(place_kernel(&k16, &map), Ok(0x400_0000));

    // An unaligned pref_address is not used for a relocatable kernel.
    let t = TestImage {
        pref_address: 0x4000_1000,
        ..TestImage::default()
    };
    let bytes = t.build();
    assert_eq!(
        place_kernel(&parse(&bytes).unwrap(), &pc_map()),
        Ok(0x100_0000)
    );
}

#[test]
fn relocated_kernel_falls_back_below_16_mib() {
    // RAM up to 32 MiB, the upper half taken: only 1-16 MiB is left.
    let mut map = MemoryMap::new(&[ram(0, 0x9fc00), ram(MIB, 31 * MIB)]).unwrap();
    reserve(&mut map, 16 * MIB, 16 * MIB, "payload");
    let t = TestImage {
        init_size: 0x40_0000,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(place_kernel(&k, &map), Ok(2 * MIB));
    // A kernel bigger than what is left.
    let err = place_kernel(&parse(&image()).unwrap(), &map).unwrap_err();
    assert_eq!(
        err,
        LinuxError::NoSpaceForKernel {
            size: 0x240_0000,
            alignment: 0x20_0000
        }
    );
    assert_eq!(
            err.to_string(),
            "no free 0x2400000 bytes aligned to 0x200000 for the kernel between 0x100000 and 0x100000000"
        );
}

#[test]
fn relocated_kernel_stays_below_4_gib() {
    let mut map = pc_map();
    reserve(&mut map, MIB, 2 * GIB - MIB, "everything low");
    let bytes = image();
    let k = parse(&bytes).unwrap();
    assert!(matches!(
        place_kernel(&k, &map),
        Err(LinuxError::NoSpaceForKernel { .. })
    ));
}

#[test]
fn non_relocatable_kernel_names_the_conflict() {
    let t = TestImage {
        relocatable: 0,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();

    let mut map = pc_map();
    reserve(&mut map, 0x200_0000, 0x10_0000, "park region");
    reserve(&mut map, 0x300_0000, 0x10_0000, "ACPI copy");
    let err = place_kernel(&k, &map).unwrap_err();
    assert_eq!(
            err.to_string(),
            "kernel needs 0x2400000 bytes at 0x1000000 (pref_address), which overlap park region 0x2000000-0x2100000 and it is not relocatable"
        );

    // Firmware memory in the way.
    let map = MemoryMap::new(&[
        ram(MIB, 31 * MIB),
        region(32 * MIB, MIB, MemoryKind::AcpiNvs),
        ram(33 * MIB, GIB),
    ])
    .unwrap();
    assert_eq!(
            place_kernel(&k, &map).unwrap_err().to_string(),
            "kernel needs 0x2400000 bytes at 0x1000000 (pref_address), which overlap ACPI NVS memory 0x2000000-0x2100000 and it is not relocatable"
        );

    // A hole in the map.
    let map = MemoryMap::new(&[ram(MIB, 31 * MIB), ram(40 * MIB, GIB)]).unwrap();
    assert_eq!(
            place_kernel(&k, &map).unwrap_err().to_string(),
            "kernel needs 0x2400000 bytes at 0x1000000 (pref_address), which overlap a hole in the memory map 0x2000000-0x2800000 and it is not relocatable"
        );

    // No pref_address: the traditional bzImage address.
    let t = TestImage {
        relocatable: 0,
        pref_address: 0,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(place_kernel(&k, &pc_map()), Ok(0x10_0000));
    let mut map = pc_map();
    reserve(&mut map, 0x10_0000, 0x4_0000, "payload image");
    assert_eq!(
            place_kernel(&k, &map).unwrap_err().to_string(),
            "kernel needs 0x2400000 bytes at 0x100000 (the default bzImage load address), which overlap payload image 0x100000-0x140000 and it is not relocatable"
        );

    // A range running off the end of the address space.
    let t = TestImage {
        relocatable: 0,
        pref_address: u64::MAX - 0xfff,
        ..TestImage::default()
    };
    let bytes = t.build();
    assert!(matches!(
        place_kernel(&parse(&bytes).unwrap(), &pc_map()),
        Err(LinuxError::NotRelocatable {
            conflict: Conflict {
                what: "the end of the address space",
                ..
            },
            ..
        })
    ));
}

#[test]
fn initrd_goes_high_below_initrd_addr_max() {
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    let mut map = pc_map();
    map.reserve(
        0x100_0000,
        k.memory_size(),
        "kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    // The top of the RAM below 2 GiB, not above 4 GiB.
    let size = 30 * MIB + 123;
    let at = place_initrd(&k, size, &map).unwrap();
    // Rounded up to whole pages.
    assert_eq!(at, 2 * GIB - 30 * MIB - PAGE_SIZE);
    assert!(at.is_multiple_of(PAGE_SIZE));
    assert!(map.is_free(at, size));

    // A lower initrd_addr_max: the initrd's last byte may be exactly at it.
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        initrd_addr_max: 0x37ff_ffff,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(place_initrd(&k, 0x2_0000, &map), Ok(0x37fe_0000));
    // Sizes that are not whole pages end below the limit too.
    assert_eq!(place_initrd(&k, 0x2_0001, &map), Ok(0x37fd_f000));
}

#[test]
fn initrd_goes_above_4_gib_only_with_the_flag() {
    let map = pc_map();
    let bytes = image();
    let k = parse(&bytes).unwrap();
    assert!(k.can_load_initrd_above_4g);
    assert_eq!(place_initrd(&k, 64 * MIB, &map), Ok(8 * GIB - 64 * MIB));
    // Bigger than anything below 4 GiB.
    assert_eq!(place_initrd(&k, 3 * GIB, &map), Ok(5 * GIB));

    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    assert_eq!(place_initrd(&k, 64 * MIB, &map), Ok(2 * GIB - 64 * MIB));
    let err = place_initrd(&k, 3 * GIB, &map).unwrap_err();
    assert_eq!(
        err,
        LinuxError::InitrdTooBig {
            size: 3 * GIB,
            limit: 0x8000_0000,
            largest: 2 * GIB - MIB
        }
    );
    assert_eq!(
        err.to_string(),
        "initrd of 3072 MiB does not fit below 0x80000000 (largest free range 2047 MiB)"
    );
}

#[test]
fn initrd_errors() {
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    // 64 MiB of RAM; the kernel takes 16-52 MiB, leaving 15 MiB below it and 12 MiB
    // above, less a reservation that cuts the lower part to 14.5 MiB.
    let mut map = MemoryMap::new(&[ram(0, 0x9fc00), ram(MIB, 63 * MIB)]).unwrap();
    map.reserve(
        0x100_0000,
        k.memory_size(),
        "kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    reserve(&mut map, MIB, MIB / 2, "payload");
    let err = place_initrd(&k, 20 * MIB + 1, &map).unwrap_err();
    assert_eq!(
        err.to_string(),
        "initrd of 20.1 MiB does not fit below 0x80000000 (largest free range 14.5 MiB)"
    );
    assert_eq!(place_initrd(&k, 0, &map), Err(LinuxError::EmptyInitrd));
    // With the flag the message has no limit.
    let bytes = image();
    let k = parse(&bytes).unwrap();
    assert_eq!(
        place_initrd(&k, 20 * MIB, &map).unwrap_err().to_string(),
        "initrd of 20 MiB does not fit in free memory (largest free range 14.5 MiB)"
    );
    // The low 640 KiB never takes an initrd.
    let map = MemoryMap::new(&[ram(0, 0x9fc00)]).unwrap();
    assert!(place_initrd(&k, PAGE_SIZE, &map).is_err());
}

#[test]
fn mib_rounding() {
    let show = |bytes, round_up| Mib { bytes, round_up }.to_string();
    assert_eq!(show(0, true), "0 MiB");
    assert_eq!(show(20 * MIB, true), "20 MiB");
    assert_eq!(show(20 * MIB + 1, true), "20.1 MiB");
    assert_eq!(show(20 * MIB + 1, false), "20 MiB");
    assert_eq!(show(20 * MIB - 1, true), "20 MiB");
    assert_eq!(show(20 * MIB - 1, false), "19.9 MiB");
    assert_eq!(show(MIB / 2, false), "0.5 MiB");
    assert_eq!(show(u64::MAX, true), "17592186044416 MiB");
}

fn args(e820: &[(u64, u64, u32)]) -> BootArgs<'_> {
    BootArgs {
        cmdline_addr: 0x1_2345_6000,
        cmdline_len: 2047,
        initrd: Some((0x2_0000_1000, 0x1_0000_0123)),
        rsdp: 0xf_5250,
        e820,
    }
}

#[test]
fn boot_params_fields_at_their_offsets() {
    let bytes = image();
    let k = parse(&bytes).unwrap();
    let e820 = [
        (0, 0x9fc00, 1),
        (0xf0000, 0x10000, 2),
        (0x10_0000, 0x7ff0_0000, 1),
    ];
    let mut page = [0xaau8; BOOT_PARAMS_SIZE];
    build_boot_params(&k, &bytes, &mut page, &args(&e820)).unwrap();

    assert_eq!(r64(&page, 0x070), 0xf_5250);
    assert_eq!(r32(&page, 0x0c0), 0x2);
    assert_eq!(r32(&page, 0x0c4), 0x1);
    assert_eq!(r32(&page, 0x0c8), 0x1);
    assert_eq!(r8(&page, 0x1e8), 3);
    assert_eq!(r8(&page, 0x1ef), 0, "sentinel");
    // The header, copied.
    assert_eq!(r8(&page, 0x1f1), 4);
    assert_eq!(r16(&page, 0x1fe), 0xaa55);
    assert_eq!(&page[0x202..0x206], b"HdrS");
    assert_eq!(r16(&page, 0x206), 0x020F);
    assert_eq!(r16(&page, 0x1fa), 0xffff, "vid_mode");
    assert_eq!(r32(&page, 0x230), 0x20_0000);
    assert_eq!(r64(&page, 0x258), 0x100_0000);
    assert_eq!(r32(&page, 0x260), 0x240_0000);
    assert_eq!(r32(&page, 0x268), 0x12_3400);
    // What parkboot fills in.
    assert_eq!(r8(&page, 0x210), 0xff, "type_of_loader");
    assert_eq!(
        r8(&page, 0x211),
        0x01,
        "loadflags: LOADED_HIGH, no CAN_USE_HEAP"
    );
    assert_eq!(r32(&page, 0x214), 0x10_0000, "code32_start untouched");
    assert_eq!(r32(&page, 0x218), 0x1000);
    assert_eq!(r32(&page, 0x21c), 0x123);
    assert_eq!(r32(&page, 0x228), 0x2345_6000);
    assert_eq!(r64(&page, 0x250), 0, "setup_data");
    // The e820 table, 20 bytes an entry.
    for (i, &(addr, size, kind)) in e820.iter().enumerate() {
        let at = 0x2d0 + 20 * i;
        assert_eq!(r64(&page, at), addr);
        assert_eq!(r64(&page, at + 8), size);
        assert_eq!(r32(&page, at + 16), kind);
    }
    // Nothing else: zero outside the header and the fields written.
    let written = [
        0x070..0x078,
        0x0c0..0x0cc,
        0x1e8..0x1e9,
        0x1f1..0x26c,
        0x2d0..0x2d0 + 60,
    ];
    for (at, &b) in page.iter().enumerate() {
        if !written.iter().any(|r| r.contains(&at)) {
            assert_eq!(b, 0, "byte {at:#x}");
        }
    }
}

#[test]
fn boot_params_low_addresses_and_no_initrd() {
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        loadflags: 0x20,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    let mut page = [0u8; BOOT_PARAMS_SIZE];
    let a = BootArgs {
        cmdline_addr: 0x9_e000,
        cmdline_len: 0,
        initrd: None,
        rsdp: 0,
        e820: &[],
    };
    build_boot_params(&k, &bytes, &mut page, &a).unwrap();
    assert_eq!(r32(&page, 0x228), 0x9_e000);
    assert_eq!(r32(&page, 0x0c8), 0);
    assert_eq!(r32(&page, 0x218), 0);
    assert_eq!(r32(&page, 0x21c), 0);
    assert_eq!(r32(&page, 0x0c0), 0);
    assert_eq!(r64(&page, 0x070), 0);
    assert_eq!(r8(&page, 0x1e8), 0);
    // QUIET_FLAG from the image is kept, LOADED_HIGH added.
    assert_eq!(r8(&page, 0x211), 0x21);
    // The initrd right up to initrd_addr_max.
    let a = BootArgs {
        initrd: Some((0x7000_0000, 0x1000_0000)),
        ..a
    };
    build_boot_params(&k, &bytes, &mut page, &a).unwrap();
    assert_eq!(r32(&page, 0x218), 0x7000_0000);
    assert_eq!(r32(&page, 0x21c), 0x1000_0000);
    // A 2.12 header: only its bytes are copied.
    let t = TestImage {
        version: 0x020C,
        jump_offset: 0x66,
        ..TestImage::default()
    };
    let bytes = t.build();
    let k = parse(&bytes).unwrap();
    build_boot_params(&k, &bytes, &mut page, &a).unwrap();
    assert_eq!(r32(&page, 0x264), 0x190);
    assert_eq!(r32(&page, 0x268), 0);
}

#[test]
fn boot_params_errors_leave_the_page_alone() {
    let bytes = image();
    let k = parse(&bytes).unwrap();
    let mut page = [0xaau8; BOOT_PARAMS_SIZE];
    let untouched = page;

    let a = BootArgs {
        cmdline_len: 3000,
        ..args(&[])
    };
    let err = build_boot_params(&k, &bytes, &mut page, &a).unwrap_err();
    assert_eq!(
        err.to_string(),
        "command line is 3000 bytes; this kernel accepts at most 2047"
    );
    assert_eq!(page, untouched);

    let many = [(0u64, 0x1000u64, 1u32); E820_MAX_ENTRIES + 1];
    let err = build_boot_params(&k, &bytes, &mut page, &args(&many)).unwrap_err();
    assert_eq!(err, LinuxError::TooManyE820Entries { count: 129 });
    assert_eq!(
        err.to_string(),
        "memory map has 129 ranges; boot_params holds at most 128"
    );
    assert_eq!(page, untouched);
    // Exactly 128 fit, the last ending at the end of the table.
    let full = [(0x1234u64, 0x1000u64, 2u32); E820_MAX_ENTRIES];
    build_boot_params(&k, &bytes, &mut page, &args(&full)).unwrap();
    assert_eq!(r8(&page, 0x1e8), 128);
    assert_eq!(r32(&page, 0x2d0 + 127 * 20 + 16), 2);
    assert_eq!(0x2d0 + 128 * 20, 0xcd0);

    // Above 4 GiB without XLF_CAN_BE_LOADED_ABOVE_4G.
    let t = TestImage {
        xloadflags: XLF_KERNEL_64,
        ..TestImage::default()
    };
    let low_bytes = t.build();
    let low = parse(&low_bytes).unwrap();
    let mut page = [0xaau8; BOOT_PARAMS_SIZE];
    let err = build_boot_params(&low, &low_bytes, &mut page, &args(&[])).unwrap_err();
    assert_eq!(
        err,
        LinuxError::CmdlineOutOfReach {
            addr: 0x1_2345_6000,
            len: 2047
        }
    );
    // The NUL must be below 4 GiB too.
    let a = BootArgs {
        cmdline_addr: FOUR_GIB - 10,
        cmdline_len: 10,
        initrd: None,
        ..args(&[])
    };
    assert!(matches!(
        build_boot_params(&low, &low_bytes, &mut page, &a),
        Err(LinuxError::CmdlineOutOfReach { .. })
    ));
    let a = BootArgs {
        cmdline_addr: 0x9_e000,
        initrd: Some((0x7000_0000, 0x1000_0001)),
        ..args(&[])
    };
    let err = build_boot_params(&low, &low_bytes, &mut page, &a).unwrap_err();
    assert_eq!(
            err.to_string(),
            "initrd at 0x70000000 (0x10000001 bytes) reaches beyond 0x80000000, the end of what this kernel accepts"
        );
    let a = BootArgs {
        initrd: Some((u64::MAX, 2)),
        ..a
    };
    assert!(build_boot_params(&k, &bytes, &mut page, &a).is_err());
    assert_eq!(page, untouched);

    // An image shorter than the header the kernel was parsed with.
    assert!(matches!(
        build_boot_params(&k, &bytes[..0x200], &mut page, &args(&[])),
        Err(LinuxError::TooShort { .. })
    ));
    assert_eq!(page, untouched);
}

#[test]
fn e820_from_the_kernel_view() {
    let mut map = MemoryMap::new(&[
        ram(0, 0x9fc00),
        region(0xf0000, 0x10000, MemoryKind::Reserved),
        ram(MIB, 255 * MIB),
        region(256 * MIB, 0x1000, MemoryKind::AcpiNvs),
        region(256 * MIB + 0x1000, 0x1000, MemoryKind::AcpiReclaim),
    ])
    .unwrap();
    reserve(&mut map, 2 * MIB, MIB, "park region");
    map.reserve(
        16 * MIB,
        36 * MIB,
        "kernel",
        ReportAs::Usable,
        Lifetime::Boot,
    )
    .unwrap();
    let mut out = [(0, 0, 0); E820_MAX_ENTRIES];
    let n = e820_from_kernel_view(map.kernel_view(), &mut out).unwrap();
    assert_eq!(
        &out[..n],
        &[
            (0, 0x9fc00, 1),
            (0xf0000, 0x10000, 2),
            (MIB, MIB, 1),
            (2 * MIB, MIB, 2),
            // The kernel's load area is the kernel's: usable, merged.
            (3 * MIB, 253 * MIB, 1),
            (256 * MIB, 0x1000, 4),
            (256 * MIB + 0x1000, 0x1000, 3),
        ]
    );
    let mut small = [(0, 0, 0); 3];
    assert_eq!(
        e820_from_kernel_view(map.kernel_view(), &mut small),
        Err(LinuxError::TooManyE820Entries { count: 7 })
    );
    assert_eq!(
        e820_from_kernel_view(core::iter::empty(), &mut small),
        Ok(0)
    );
}

/// The newest `vmlinuz-*` directly in `dir`.
fn vmlinuz_in(dir: &std::path::Path) -> Option<PathBuf> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    kernels.pop()
}

/// `parent/*/boot` for every directory in `parent`, sorted.
fn boot_dirs_under(parent: &std::path::Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(parent)
        .map(|entries| entries.flatten().map(|e| e.path().join("boot")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// A Debian kernel on disk, if there is one: `$PARKBOOT_LINUX_KERNEL`, then where
/// scripts/lib/linux.sh unpacks it (target/linux/kernel/PACKAGE/boot), then
/// target/linux/boot and /tmp/*/boot.
fn real_kernel() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PARKBOOT_LINUX_KERNEL") {
        return Some(PathBuf::from(path));
    }
    let linux = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/linux");
    let mut dirs = boot_dirs_under(&linux.join("kernel"));
    dirs.push(linux.join("boot"));
    dirs.extend(boot_dirs_under(std::path::Path::new("/tmp")));
    dirs.iter().find_map(|dir| vmlinuz_in(dir))
}

#[test]
fn parses_a_real_debian_kernel_if_present() {
    let Some(path) = real_kernel() else {
        println!("skipped: no vmlinuz-* under target/linux or /tmp/*/boot");
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let k = parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!(
        "{}: protocol {}, version {}, init_size {:#x}, pref {:#x}, align {:#x}",
        path.display(),
        Protocol(k.version),
        k.kernel_version,
        k.init_size,
        k.pref_address,
        k.kernel_alignment
    );
    assert!(k.version >= MIN_PROTOCOL);
    assert!(k.relocatable);
    assert!(k.can_load_initrd_above_4g);
    assert!(k.kernel_alignment >= PAGE_SIZE);
    assert!(k.init_size > k.protected_mode_len());
    let release = k.kernel_version.get().expect("a version string");
    assert!(
        release.starts_with(|c: char| c.is_ascii_digit()),
        "{release}"
    );
    // Its file name carries the same release.
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        release.starts_with(name.trim_start_matches("vmlinuz-")),
        "{release}"
    );

    let map = pc_map();
    let at = place_kernel(&k, &map).unwrap();
    assert_eq!(at, k.pref_address);
    let mut page = [0u8; BOOT_PARAMS_SIZE];
    let e820 = [(0, 0x9fc00, 1), (MIB, 2 * GIB - MIB, 1)];
    build_boot_params(&k, &bytes, &mut page, &args(&e820)).unwrap();
    assert_eq!(&page[0x202..0x206], b"HdrS");
    assert_eq!(r8(&page, 0x210), 0xff);
    assert_eq!(r32(&page, 0x260) as u64, k.init_size);

    // The same kernel cut to 1 MB (the reproduction) is refused by name.
    let err = parse(&bytes[..1_000_000]).unwrap_err();
    assert!(
        matches!(err, LinuxError::Truncated { declared, .. } if declared > 1_000_000),
        "{err}"
    );
}
