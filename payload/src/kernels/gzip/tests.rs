//! Host tests: gzip members from the `gzip` command and built here, cut and damaged.

use super::*;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

// ---- gzip ----------------------------------------------------------------------------

/// `kernel.txt` compressed by `gzip -9` (FNAME set, mtime 2024-01-01).
const GZIP_VECTOR: [u8; 74] = [
    0x1f, 0x8b, 0x08, 0x08, 0x80, 0x00, 0x92, 0x65, 0x02, 0x03, 0x6b, 0x65, 0x72, 0x6e, 0x65, 0x6c,
    0x2e, 0x74, 0x78, 0x74, 0x00, 0x2b, 0x48, 0x2c, 0xca, 0x4e, 0xca, 0xcf, 0x2f, 0x51, 0x00, 0x11,
    0xc5, 0x0a, 0xb9, 0xa5, 0x39, 0x25, 0x99, 0x20, 0xa6, 0x91, 0x42, 0x76, 0x6a, 0x51, 0x5e, 0x6a,
    0x4e, 0xb1, 0x8e, 0x42, 0x62, 0x7a, 0x62, 0x66, 0x9e, 0x42, 0x62, 0x5e, 0x0a, 0x84, 0xa5, 0xc7,
    0x05, 0x00, 0x9f, 0x8f, 0x4a, 0x00, 0x34, 0x00, 0x00, 0x00,
];
const GZIP_VECTOR_TEXT: &[u8] = b"parkboot boots multiboot2 kernels, again and again.\n";

#[test]
fn multiboot2_crc32_known_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(GZIP_VECTOR_TEXT), 0x004a_8f9f);
}

#[test]
fn multiboot2_gzip_vector_from_the_gzip_command() {
    assert!(is_gzip(&GZIP_VECTOR));
    assert_eq!(inflated_size(&GZIP_VECTOR), Ok(GZIP_VECTOR_TEXT.len()));
    let mut out = vec![0u8; GZIP_VECTOR_TEXT.len()];
    assert_eq!(inflate(&GZIP_VECTOR, &mut out), Ok(GZIP_VECTOR_TEXT.len()));
    assert_eq!(out, GZIP_VECTOR_TEXT);
}

/// Wraps raw deflate data in a gzip member with every optional header field.
pub(crate) fn gzip_member(data: &[u8], level: u8) -> Vec<u8> {
    let deflated = miniz_oxide::deflate::compress_to_vec(data, level);
    let mut g = vec![
        GZIP_ID1,
        GZIP_ID2,
        GZIP_METHOD_DEFLATE,
        GZIP_FEXTRA | GZIP_FNAME | GZIP_FCOMMENT | GZIP_FHCRC,
    ];
    g.extend([0, 0, 0, 0, 0, 3]); // mtime, xfl, os
    g.extend(4u16.to_le_bytes());
    g.extend(b"AB\x00\x00");
    g.extend(b"xen.gz\0");
    g.extend(b"a test kernel\0");
    let hcrc = crc32(&g) as u16;
    g.extend(hcrc.to_le_bytes());
    g.extend(deflated);
    g.extend(crc32(data).to_le_bytes());
    g.extend((data.len() as u32).to_le_bytes());
    g
}

fn kernel_like_data() -> Vec<u8> {
    // Compressible but not trivial: a pseudo-random walk over a small alphabet.
    let mut x = 0x1234_5678u32;
    (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b"\x00\x90\xc3\x48\x89\xe5"[(x % 6) as usize]
        })
        .collect()
}

#[test]
fn multiboot2_gzip_round_trip() {
    let data = kernel_like_data();
    for level in [1, 6, 10] {
        let gz = gzip_member(&data, level);
        assert_eq!(inflated_size(&gz), Ok(data.len()));
        let mut out = vec![0u8; data.len()];
        assert_eq!(inflate(&gz, &mut out), Ok(data.len()));
        assert_eq!(out, data);
    }
    // Empty data.
    let gz = gzip_member(&[], 6);
    assert_eq!(inflated_size(&gz), Ok(0));
    assert_eq!(inflate(&gz, &mut []), Ok(0));
    // Larger than the counting pass's window many times over, and a trailing byte
    // after the member (padding) is ignored.
    let big: Vec<u8> = kernel_like_data().repeat(6);
    let mut gz = gzip_member(&big, 6);
    gz.push(0);
    assert_eq!(inflated_size(&gz), Ok(big.len()));
}

/// The counting pass's answer for a damaged member; inflating it into a buffer of
/// the intact size is refused too (perhaps for a different reason: a corrupt
/// stream may run past a buffer sized for the intact data).
fn both(gz: &[u8], out: &mut [u8]) -> Result<usize, GzipError> {
    let counted = inflated_size(gz);
    let inflated = inflate(gz, out);
    assert_eq!(
        counted.is_ok(),
        inflated.is_ok(),
        "{counted:?} / {inflated:?}"
    );
    counted
}

/// The reproduction: a truncated gzip kernel sized a buffer from the bytes
/// that happened to sit where its trailer should be.
#[test]
fn multiboot2_gzip_truncated_stream_sizes_nothing() {
    let data = kernel_like_data();
    let gz = gzip_member(&data, 6);
    let body = gzip_body_start(&gz).unwrap();
    let mut out = vec![0u8; data.len()];
    // Every cut inside the deflate stream: refused by name, and no size comes out.
    for len in (body..gz.len() - GzipTrailer::SIZE).step_by(1021) {
        let err = both(&gz[..len], &mut out).unwrap_err();
        assert_eq!(err, GzipError::StreamUnfinished { len }, "cut at {len}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
    // Cut in the trailer: the stream ended, the trailer is missing.
    for len in gz.len() - GzipTrailer::SIZE..gz.len() {
        assert_eq!(
            both(&gz[..len], &mut out),
            Err(GzipError::Truncated { what: "trailer" })
        );
    }
}

/// The second row: flipped bytes said "output buffer too small"; they are
/// corruption and say so.
#[test]
fn multiboot2_gzip_flipped_bytes_say_corrupt() {
    let data = kernel_like_data();
    let gz = gzip_member(&data, 6);
    let body = gzip_body_start(&gz).unwrap();
    let mut out = vec![0u8; data.len()];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut corrupt = 0;
    for _ in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let a = body + (seed as usize % (gz.len() - body));
        let b = body + ((seed >> 32) as usize % (gz.len() - body));
        let mut bad = gz.clone();
        bad[a] ^= 1 << (seed % 8);
        bad[b] ^= 1 << ((seed >> 8) % 8);
        if bad == gz {
            continue;
        }
        let err = both(&bad, &mut out).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("corrupt"), "flip at {a}, {b}: {text}");
        assert!(!matches!(err, GzipError::OutputTooSmall { .. }), "{text}");
        corrupt += 1;
    }
    assert!(corrupt > 190);
    // A buffer sized by the counting pass is never too small for a corrupt stream
    // that inflates to more than its trailer says: the counting pass refuses it.
    let mut longer = gzip_member(&data, 6);
    let isize_at = longer.len() - size_of::<u32>();
    longer[isize_at..].copy_from_slice(&(data.len() as u32 - 1).to_le_bytes());
    assert_eq!(
        inflated_size(&longer),
        Err(GzipError::SizeMismatch {
            stored: data.len() as u32 - 1,
            actual: data.len() as u64
        })
    );
}

#[test]
fn multiboot2_gzip_errors() {
    let data = kernel_like_data();
    let gz = gzip_member(&data, 6);
    let body = gzip_body_start(&gz).unwrap();
    let mut out = vec![0u8; data.len()];

    // Block type 3 is reserved: corrupt right at the first deflate byte.
    let mut bad = gz.clone();
    bad[body] = 0b111;
    let err = inflate(&bad, &mut out).unwrap_err();
    assert!(
        matches!(err, GzipError::Corrupt { at } if at >= body && at <= body + 1),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("gzip data corrupt at byte "));

    // Flipped bytes anywhere in the stream: always refused, never a panic.
    for at in (body..gz.len() - GzipTrailer::SIZE).step_by(97) {
        let mut bad = gz.clone();
        bad[at] ^= 0x55;
        assert!(inflate(&bad, &mut out).is_err(), "flip at {at}");
    }

    let mut bad = gz.clone();
    let crc_at = gz.len() - GzipTrailer::SIZE;
    bad[crc_at] ^= 1;
    assert_eq!(
        inflate(&bad, &mut out),
        Err(GzipError::CrcMismatch {
            stored: crc32(&data) ^ 1,
            computed: crc32(&data)
        })
    );

    let mut bad = gz.clone();
    let isize_at = gz.len() - size_of::<u32>();
    bad[isize_at] ^= 1;
    assert!(matches!(
        inflate(&bad, &mut out),
        Err(GzipError::SizeMismatch { .. })
    ));

    // Truncated: in the trailer, in the deflate stream, in the header.
    assert_eq!(
        inflate(&gz[..gz.len() - 3], &mut out),
        Err(GzipError::Truncated { what: "trailer" })
    );
    assert_eq!(
        inflate(&gz[..body + 100], &mut out),
        Err(GzipError::StreamUnfinished { len: body + 100 })
    );
    assert_eq!(
        inflate(&gz[..5], &mut out),
        Err(GzipError::Truncated { what: "header" })
    );
    assert_eq!(
        inflate(&gz[..14], &mut out),
        Err(GzipError::Truncated {
            what: "extra field"
        })
    );
    assert_eq!(
        inflate(&gz[..18], &mut out),
        Err(GzipError::Truncated { what: "file name" })
    );
    // Every cut of a small member, and a sample of the large one, is refused.
    let mut small_out = [0u8; 64];
    for len in 0..GZIP_VECTOR.len() {
        assert!(
            inflate(&GZIP_VECTOR[..len], &mut small_out).is_err(),
            "{len}"
        );
    }
    for len in (0..gz.len()).step_by(4099) {
        assert!(inflate(&gz[..len], &mut out).is_err(), "{len}");
    }

    let mut small = vec![0u8; data.len() - 1];
    let err = inflate(&gz, &mut small).unwrap_err();
    assert_eq!(
        err,
        GzipError::OutputTooSmall {
            available: data.len() - 1
        }
    );
    assert!(err.to_string().contains("199999"));

    let mut bad = gz.clone();
    bad[body - 1] ^= 1; // the header CRC
    assert!(matches!(
        inflate(&bad, &mut out),
        Err(GzipError::HeaderCrc { .. })
    ));

    assert_eq!(inflate(b"PK\x03\x04", &mut out), Err(GzipError::BadMagic));
    assert!(!is_gzip(b"\x1f"));
    assert_eq!(inflated_size(b"\x7fELF...."), Err(GzipError::BadMagic));
    assert_eq!(
        inflated_size(&GZIP_VECTOR[..6]),
        Err(GzipError::Truncated { what: "header" })
    );

    let mut bad = gz.clone();
    bad[offset_of!(GzipHeader, method)] = 0;
    assert_eq!(
        inflate(&bad, &mut out),
        Err(GzipError::Method { method: 0 })
    );
    let mut bad = gz.clone();
    bad[offset_of!(GzipHeader, flags)] |= 0x80;
    assert!(matches!(
        inflate(&bad, &mut out),
        Err(GzipError::ReservedFlags { .. })
    ));
}

#[test]
fn gzip_error_messages_name_the_place() {
    assert_eq!(
        GzipError::Corrupt { at: 1234 }.to_string(),
        "gzip data corrupt at byte 1234"
    );
}
