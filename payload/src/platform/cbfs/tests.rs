//! Tests over images made by Debian's `cbfstool` (payload/testdata/cbfs/make-images).

use super::*;
use crate::platform::fake::FakeMemory;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

const PLAIN: &[u8] = include_bytes!("../../../testdata/cbfs/plain.bin");
const SHA256: &[u8] = include_bytes!("../../../testdata/cbfs/sha256.bin");
const PAYLOAD: &[u8] = include_bytes!("../../../testdata/cbfs/payload.bin");
const BIG_LZMA: &[u8] = include_bytes!("../../../testdata/cbfs/big-lzma.bin");
const TEXT: &[u8] = include_bytes!("../../../testdata/cbfs/text.txt");
const BINARY: &[u8] = include_bytes!("../../../testdata/cbfs/binary.bin");

/// Every raw file in the plain and sha256 images: name, compression, original bytes.
const FILES: [(&str, Compression, &[u8]); 5] = [
    ("parkboot/config", Compression::None, TEXT),
    ("text.lzma", Compression::Lzma, TEXT),
    ("text.lz4", Compression::Lz4, TEXT),
    ("binary.lzma", Compression::Lzma, BINARY),
    ("binary.lz4", Compression::Lz4, BINARY),
];

fn read(file: &CbfsFile) -> Result<Vec<u8>, CbfsError> {
    let mut out = vec![0; file.size()? as usize];
    let n = file.read_into(&mut out)?;
    out.truncate(n);
    Ok(out)
}

fn find<'m>(cbfs: &Cbfs<'m>, name: &str) -> CbfsFile<'m> {
    cbfs.find(name).unwrap().unwrap()
}

/// A copy of `image` with `edit` applied to it.
fn edited(image: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut copy = image.to_vec();
    edit(&mut copy);
    copy
}

fn put_be32(image: &mut [u8], at: usize, value: u32) {
    image[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

#[test]
fn every_file_reads_back_to_its_original_bytes() {
    for (image, hashed) in [(PLAIN, false), (SHA256, true)] {
        let cbfs = Cbfs::from_bytes(image, 0x1000);
        let names: Vec<&str> = cbfs.files().map(|f| f.unwrap().name).collect();
        assert_eq!(names, FILES.map(|f| f.0));
        for (name, compression, original) in FILES {
            let file = find(&cbfs, name);
            assert_eq!(file.compression, compression, "{name}");
            assert_eq!(file.file_type, TYPE_RAW);
            assert_eq!(file.type_name(), "raw");
            assert_eq!(file.size().unwrap(), original.len() as u64, "{name}");
            assert_eq!(file.hash.is_some(), hashed, "{name}");
            if compression != Compression::None {
                assert!(file.data.len() < original.len(), "{name} is compressed");
            }
            assert_eq!(read(&file).unwrap(), original, "{name}");
        }
    }
}

#[test]
fn files_sit_where_cbfstool_print_puts_them() {
    // `cbfstool plain.bin print`: parkboot/config 0x0, text.lzma 0xc00, text.lz4 0xd00,
    // binary.lzma 0xe80, binary.lz4 0x1280.
    let cbfs = Cbfs::from_bytes(PLAIN, 0xffff_e000);
    let offsets: Vec<u64> = cbfs.files().map(|f| f.unwrap().offset).collect();
    assert_eq!(offsets, [0x0, 0xc00, 0xd00, 0xe80, 0x1280]);
    let lz4 = find(&cbfs, "text.lz4");
    assert_eq!(lz4.data.len(), 281);
    assert_eq!(lz4.data_offset, 0xd00 + 0x34);
    assert_eq!(cbfs.base(), 0xffff_e000);
    assert_eq!(cbfs.size(), PLAIN.len());
}

#[test]
fn sha256_attributes_hold_the_digest_of_the_stored_data() {
    let cbfs = Cbfs::from_bytes(SHA256, 0);
    for (name, _, _) in FILES {
        let file = find(&cbfs, name);
        let hash = file.hash.unwrap();
        assert_eq!(hash.algorithm, HASH_SHA256);
        use sha2::Digest;
        assert_eq!(hash.digest, sha2::Sha256::digest(file.data).as_slice());
        file.verify().unwrap();
    }
}

#[test]
fn missing_file_is_none() {
    assert_eq!(Cbfs::from_bytes(PLAIN, 0).find("parkboot/kernel"), Ok(None));
}

#[test]
fn payload_file_is_identified_and_skipped_for_raw_lookups() {
    let cbfs = Cbfs::from_bytes(PAYLOAD, 0);
    let files: Vec<CbfsFile> = cbfs.files().map(|f| f.unwrap()).collect();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].name, "fallback/payload");
    assert_eq!(files[0].file_type, TYPE_SELF);
    assert_eq!(files[0].type_name(), "simple elf");
    assert_eq!(files[1].name, "parkboot/kernel");
    assert_eq!(read(&find(&cbfs, "parkboot/kernel")).unwrap(), BINARY);
}

#[test]
fn large_lzma_file_decodes_in_place() {
    // 4 MiB of zeros in 656 bytes: the output buffer is the LZMA window, no heap.
    let cbfs = Cbfs::from_bytes(BIG_LZMA, 0);
    let file = find(&cbfs, "zeros");
    assert_eq!(file.size().unwrap(), 4 << 20);
    let mut out = vec![0xaa; 4 << 20];
    assert_eq!(file.read_into(&mut out), Ok(4 << 20));
    assert!(out.iter().all(|&b| b == 0));
}

#[test]
fn lzma_properties_beyond_the_tables_are_refused() {
    // text.lzma's properties byte (lc=1) changed to lc=3, lp=2.
    let cbfs = Cbfs::from_bytes(PLAIN, 0);
    let at = find(&cbfs, "text.lzma").data_offset as usize;
    let image = edited(PLAIN, |i| {
        assert_eq!(i[at], 1);
        i[at] = 3 + 2 * 9;
    });
    assert_eq!(
        find(&Cbfs::from_bytes(&image, 0), "text.lzma")
            .read_into(&mut vec![0; TEXT.len()])
            .unwrap_err()
            .to_string(),
        "CBFS file \"text.lzma\" at 0xc00: bad LZMA stream after 0 decompressed bytes: \
         lc + lp above 4 is not supported (cbfstool writes lc=1, lp=0)"
    );
}

#[test]
fn output_buffer_too_small() {
    let cbfs = Cbfs::from_bytes(PLAIN, 0);
    for (name, _, original) in FILES {
        let mut out = vec![0; original.len() - 1];
        let error = find(&cbfs, name).read_into(&mut out).unwrap_err();
        assert_eq!(
            error,
            CbfsError::OutputTooSmall {
                file: FileRef::new(find(&cbfs, name).offset as usize, name),
                needed: original.len() as u64,
                available: original.len() as u64 - 1,
            }
        );
    }
    let text = find(&cbfs, "text.lzma");
    let mut out = [0u8; 16];
    assert_eq!(
        text.read_into(&mut out).unwrap_err().to_string(),
        "CBFS file \"text.lzma\" at 0xc00: needs 2990 bytes, the buffer has 16"
    );
}

#[test]
fn flipped_file_magic() {
    let image = edited(PLAIN, |i| i[0xd00] ^= 0x01);
    let cbfs = Cbfs::from_bytes(&image, 0);
    let results: Vec<_> = cbfs.files().collect();
    assert_eq!(results.len(), 3, "two files, then the error, then nothing");
    assert_eq!(
        results[2],
        Err(CbfsError::BadFileMagic {
            offset: 0xd00,
            found: *b"MARCHIVE"
        })
    );
    assert_eq!(
        cbfs.find("binary.lz4").unwrap_err().to_string(),
        "CBFS: no file header at 0xd00: magic \"MARCHIVE\", expected \"LARCHIVE\""
    );
    // Files before the fault are still found.
    assert!(cbfs.find("text.lzma").unwrap().is_some());
}

#[test]
fn length_past_the_end() {
    let image = edited(PLAIN, |i| put_be32(i, 0x1280 + 8, 0x10_0000));
    let error = Cbfs::from_bytes(&image, 0).find("binary.lz4").unwrap_err();
    assert_eq!(
        error,
        CbfsError::DataPastEnd {
            file: FileRef::new(0x1280, "binary.lz4"),
            data_offset: 0x1280 + 0x34,
            len: 0x10_0000,
            region_size: PLAIN.len() as u64,
        }
    );
    // u32::MAX must not wrap around either.
    let image = edited(PLAIN, |i| put_be32(i, 0x1280 + 8, u32::MAX));
    assert!(matches!(
        Cbfs::from_bytes(&image, 0).find("binary.lz4"),
        Err(CbfsError::DataPastEnd { .. })
    ));
}

#[test]
fn header_fields_outside_the_header() {
    let image = edited(PLAIN, |i| put_be32(i, 0xc00 + 20, 8));
    assert_eq!(
        Cbfs::from_bytes(&image, 0).find("text.lzma"),
        Err(CbfsError::BadFileHeader {
            offset: 0xc00,
            what: "data offset is inside the header",
            value: 8
        })
    );
    let image = edited(PLAIN, |i| put_be32(i, 0xc00 + 16, 0x40));
    assert!(matches!(
        Cbfs::from_bytes(&image, 0).find("text.lzma"),
        Err(CbfsError::BadFileHeader { offset: 0xc00, .. })
    ));
    // A header cut off by the end of the region.
    let cut = &PLAIN[..0xc10];
    assert_eq!(
        Cbfs::from_bytes(cut, 0).find("text.lzma"),
        Err(CbfsError::HeaderPastEnd {
            offset: 0xc00,
            region_size: 0xc10
        })
    );
}

#[test]
fn name_without_terminator() {
    // text.lzma's name field is 0xc18..0xc24 ("text.lzma\0\0\0").
    let image = edited(PLAIN, |i| i[0xc18..0xc24].fill(b'x'));
    assert_eq!(
        Cbfs::from_bytes(&image, 0).find("text.lzma"),
        Err(CbfsError::BadName {
            offset: 0xc00,
            what: "is not NUL-terminated"
        })
    );
}

#[test]
fn bad_attributes() {
    // text.lzma's compression attribute is at 0xc24: tag, len 16, compression 1, size.
    let short = edited(PLAIN, |i| put_be32(i, 0xc24 + 4, 4));
    match Cbfs::from_bytes(&short, 0).find("text.lzma") {
        Err(CbfsError::BadAttribute {
            offset, len, what, ..
        }) => {
            assert_eq!((offset, len), (0xc24, 4));
            assert_eq!(what, "shorter than its own header");
        }
        other => panic!("{other:?}"),
    }
    let long = edited(PLAIN, |i| put_be32(i, 0xc24 + 4, 0x100));
    assert!(matches!(
        Cbfs::from_bytes(&long, 0).find("text.lzma"),
        Err(CbfsError::BadAttribute {
            what: "runs into the file's data",
            ..
        })
    ));
    let unknown = edited(PLAIN, |i| put_be32(i, 0xc24 + 8, 7));
    let error = Cbfs::from_bytes(&unknown, 0).find("text.lzma").unwrap_err();
    assert_eq!(
        error.to_string(),
        "CBFS file \"text.lzma\" at 0xc00: unsupported compression 7"
    );
}

#[test]
fn unsupported_hash_algorithm() {
    // sha256.bin: parkboot/config's hash attribute is at 0x28; its algorithm byte at +11.
    let image = edited(SHA256, |i| {
        assert_eq!(be32(i, 0x28), Some(ATTR_HASH));
        i[0x28 + 11] = 9;
    });
    let cbfs = Cbfs::from_bytes(&image, 0);
    let file = find(&cbfs, "parkboot/config");
    assert_eq!(file.hash.unwrap().algorithm, 9);
    let error = file.read_into(&mut vec![0; TEXT.len()]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "CBFS file \"parkboot/config\" at 0x0: unsupported hash algorithm 9"
    );
}

#[test]
fn flipped_hash_byte() {
    let cbfs = Cbfs::from_bytes(SHA256, 0);
    for (name, _, original) in FILES {
        let file = find(&cbfs, name);
        let digest_at = (file.hash.unwrap().digest.as_ptr() as usize) - (SHA256.as_ptr() as usize);
        let image = edited(SHA256, |i| i[digest_at + 5] ^= 0x80);
        let cbfs = Cbfs::from_bytes(&image, 0);
        let mut out = vec![0; original.len()];
        assert_eq!(
            find(&cbfs, name).read_into(&mut out),
            Err(CbfsError::HashMismatch {
                file: FileRef::new(file.offset as usize, name),
                algorithm: HASH_SHA256
            })
        );
    }
}

#[test]
fn flipped_data_byte_anywhere_fails_the_hash() {
    let cbfs = Cbfs::from_bytes(SHA256, 0);
    for (name, _, original) in FILES {
        let file = find(&cbfs, name);
        let start = file.data_offset as usize;
        for at in start..start + file.data.len() {
            let image = edited(SHA256, |i| i[at] ^= 0x10);
            let cbfs = Cbfs::from_bytes(&image, 0);
            let mut out = vec![0; original.len()];
            assert!(
                matches!(
                    find(&cbfs, name).read_into(&mut out),
                    Err(CbfsError::HashMismatch { .. })
                ),
                "{name}: byte 0x{at:x}"
            );
        }
    }
}

#[test]
fn flipped_compressed_byte_is_a_named_error_or_other_bytes_never_a_panic() {
    // Without a hash a flipped byte may still decode (to other bytes); what matters is
    // that no flip panics or reads outside the stream, and that stream faults are named.
    let cbfs = Cbfs::from_bytes(PLAIN, 0);
    for (name, compression, original) in FILES {
        if compression == Compression::None {
            continue;
        }
        let file = find(&cbfs, name);
        let start = file.data_offset as usize;
        let mut named_errors = 0;
        for at in start..start + file.data.len() {
            let image = edited(PLAIN, |i| i[at] ^= 0x10);
            let cbfs = Cbfs::from_bytes(&image, 0);
            let mut out = vec![0; original.len()];
            match find(&cbfs, name).read_into(&mut out) {
                Ok(n) => {
                    assert_eq!(n, original.len());
                }
                Err(CbfsError::Lzma { .. }) if compression == Compression::Lzma => {
                    named_errors += 1
                }
                Err(CbfsError::Lz4 { .. }) if compression == Compression::Lz4 => named_errors += 1,
                // The stream ended early: fewer bytes than the attribute says.
                Err(CbfsError::SizeMismatch {
                    expected, found, ..
                }) => {
                    assert_eq!(expected, original.len() as u64);
                    assert!(found < expected);
                    named_errors += 1
                }
                Err(other) => panic!("{name}: byte 0x{at:x}: {other:?}"),
            }
        }
        assert!(named_errors > 0, "{name}: no flip was caught");
    }
}

#[test]
fn flipped_stream_headers() {
    let cbfs = Cbfs::from_bytes(PLAIN, 0);
    // LZ4 frame magic.
    let lz4 = find(&cbfs, "text.lz4");
    let image = edited(PLAIN, |i| i[lz4.data_offset as usize] ^= 0xff);
    let error = find(&Cbfs::from_bytes(&image, 0), "text.lz4")
        .read_into(&mut vec![0; TEXT.len()])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "CBFS file \"text.lz4\" at 0xd00: bad LZ4 frame at byte 0: not an LZ4 frame (magic is not 0x184d2204)"
    );
    // LZMA header's decompressed size disagrees with the attribute.
    let lzma = find(&cbfs, "text.lzma");
    let image = edited(PLAIN, |i| i[lzma.data_offset as usize + 5] ^= 0x01);
    assert!(matches!(
        find(&Cbfs::from_bytes(&image, 0), "text.lzma").read_into(&mut vec![0; TEXT.len()]),
        Err(CbfsError::Lzma { decoded: 0, .. })
    ));
}

#[test]
fn truncated_streams() {
    for (name, header) in [
        ("text.lzma", 0xc00),
        ("binary.lzma", 0xe80),
        ("text.lz4", 0xd00),
        ("binary.lz4", 0x1280),
    ] {
        let cbfs = Cbfs::from_bytes(PLAIN, 0);
        let len = find(&cbfs, name).data.len() as u32;
        for cut_len in [0, 4, 12, len / 2, len - 1] {
            let image = edited(PLAIN, |i| put_be32(i, header + 8, cut_len));
            let file = find(&Cbfs::from_bytes(&image, 0), name);
            assert_eq!(file.data.len(), cut_len as usize);
            let result = file.read_into(&mut vec![0; 3000]);
            assert!(
                matches!(
                    result,
                    Err(CbfsError::Lzma { .. }) | Err(CbfsError::Lz4 { .. })
                ),
                "{name} cut to {cut_len}: {result:?}"
            );
        }
    }
}

#[test]
fn lz4_block_past_the_block_maximum() {
    // A frame whose only block says it is 128 KiB with a 64 KiB block maximum.
    let frame = [
        0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(
        lz4::decode(&frame, &mut [0; 16]),
        Err(DecodeError::Lz4 {
            what: "block larger than the frame's block maximum size",
            at: 7
        })
    );
}

#[test]
fn lz4_linked_blocks_and_uncompressed_blocks() {
    // A hand-made frame with linked blocks (FLG 0x40, BD 0x40, header checksum skipped).
    // Block one: literals "abc", a 4-byte match at offset 3, the literal "d".
    let first = [0x30, b'a', b'b', b'c', 0x03, 0x00, 0x10, b'd'];
    // Block three: a 4-byte match 11 bytes back (into block one), the literal "e".
    let third = [0x00, 0x0b, 0x00, 0x10, b'e'];
    let mut frame = vec![0x04, 0x22, 0x4d, 0x18, 0x40, 0x40, 0x00];
    frame.extend((first.len() as u32).to_le_bytes());
    frame.extend(first);
    // Block two: stored uncompressed.
    frame.extend((3u32 | BLOCK_UNCOMPRESSED_FOR_TESTS).to_le_bytes());
    frame.extend(b"xyz");
    frame.extend((third.len() as u32).to_le_bytes());
    frame.extend(third);
    frame.extend(0u32.to_le_bytes());
    let mut out = vec![0; 16];
    assert_eq!(lz4::decode(&frame, &mut out), Ok(16));
    assert_eq!(&out, b"abcabcadxyzabcae");
    // The same blocks in a frame that says they are independent: the third block's
    // match has nothing to refer to.
    frame[4] = 0x60;
    assert!(matches!(
        lz4::decode(&frame, &mut out),
        Err(DecodeError::Lz4 {
            what: "a match before the start of the data",
            ..
        })
    ));
}

const BLOCK_UNCOMPRESSED_FOR_TESTS: u32 = 1 << 31;

/// The boot medium of `image`, mapped so that its last byte is at 0xFFFF_FFFF.
fn flash_at_top(image: &[u8]) -> FakeMemory {
    let mut mem = FakeMemory::default();
    mem.place(FOUR_GIB - image.len() as u64, image);
    mem
}

#[test]
fn locate_from_the_master_header() {
    let mem = flash_at_top(SHA256);
    let cbfs = Cbfs::locate(&mem, None).unwrap();
    assert_eq!(cbfs.base(), FOUR_GIB - SHA256.len() as u64);
    // cbfstool's x86 image: CBFS from 0 to the end (no bootblock); the walk ends at the
    // master header after the last file.
    assert_eq!(cbfs.size(), SHA256.len());
    assert_eq!(cbfs.files().count(), FILES.len());
    assert_eq!(read(&find(&cbfs, "binary.lzma")).unwrap(), BINARY);
}

#[test]
fn locate_from_the_boot_media_record() {
    // A 64 KiB flash with the CBFS image at 0x4000 in it; the region is what an FMAP
    // would give: the files up to the end of the last (empty) one, not the master header.
    let media_size = 0x1_0000u64;
    let mut flash = vec![0xff; media_size as usize];
    flash[0x4000..0x4000 + PLAIN.len()].copy_from_slice(PLAIN);
    let mem = flash_at_top(&flash);
    let location = CbfsLocation {
        fmap_offset: 0,
        cbfs_offset: 0x4000,
        cbfs_size: 0x1fc0,
        boot_media_size: media_size,
    };
    let cbfs = Cbfs::locate(&mem, Some(location)).unwrap();
    assert_eq!(cbfs.base(), FOUR_GIB - media_size + 0x4000);
    assert_eq!(cbfs.size(), 0x1fc0);
    assert_eq!(read(&find(&cbfs, "text.lz4")).unwrap(), TEXT);
    assert_eq!(cbfs.files().count(), FILES.len());

    let outside = CbfsLocation {
        cbfs_offset: 0xf000,
        ..location
    };
    assert_eq!(
        Cbfs::locate(&mem, Some(outside)).unwrap_err(),
        CbfsError::RegionOutsideMedia {
            cbfs_offset: 0xf000,
            cbfs_size: 0x1fc0,
            boot_media_size: media_size
        }
    );
    let huge = CbfsLocation {
        boot_media_size: FOUR_GIB + 1,
        ..location
    };
    assert!(matches!(
        Cbfs::locate(&mem, Some(huge)),
        Err(CbfsError::BadBootMediaSize { .. })
    ));
    let unmapped = CbfsLocation {
        boot_media_size: 0x2_0000,
        ..location
    };
    assert_eq!(
        Cbfs::locate(&mem, Some(unmapped)).unwrap_err().to_string(),
        "CBFS: 0x1fc0 bytes at physical 0xfffe4000 cannot be read"
    );
}

#[test]
fn locate_errors_without_a_master_header() {
    assert!(matches!(
        Cbfs::locate(&FakeMemory::default(), None),
        Err(CbfsError::Unreadable {
            address: MASTER_HEADER_POINTER,
            len: 4
        })
    ));
    // The pointer leads to bytes that are not "ORBC".
    let image = edited(PLAIN, |i| {
        let end = i.len();
        i[end - 4..].copy_from_slice(&(0xffff_e000u32).to_le_bytes());
    });
    assert_eq!(
        Cbfs::locate(&flash_at_top(&image), None).unwrap_err(),
        CbfsError::BadMasterHeaderMagic {
            address: 0xffff_e000,
            found: u32::from_be_bytes(*b"LARC")
        }
    );
    let image = edited(PLAIN, |i| {
        let end = i.len();
        i[end - 4..].copy_from_slice(&(0xffff_fff0u32).to_le_bytes());
    });
    assert!(matches!(
        Cbfs::locate(&flash_at_top(&image), None),
        Err(CbfsError::BadMasterHeaderPointer {
            pointer: 0xffff_fff0
        })
    ));
}

#[test]
fn erased_flash_ends_the_walk() {
    // The plain image cut after binary.lz4, followed by erased flash.
    let mut image = PLAIN[..0x1880].to_vec();
    image.extend([0xff; 0x200]);
    let cbfs = Cbfs::from_bytes(&image, 0);
    assert_eq!(cbfs.files().count(), FILES.len());
    assert_eq!(cbfs.find("nothing"), Ok(None));
}

#[test]
fn compression_note_names_only_compressed_files() {
    use std::format;
    assert_eq!(format!("{}", CompressionNote(Compression::None)), "");
    assert_eq!(format!("{}", CompressionNote(Compression::Lzma)), ", LZMA");
    assert_eq!(format!("{}", CompressionNote(Compression::Lz4)), ", LZ4");
}
