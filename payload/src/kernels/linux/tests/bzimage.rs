//! Parsing a bzImage header: what is accepted and what is refused, by name.

use super::*;

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
