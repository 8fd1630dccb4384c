use super::*;
use crate::memory::{Lifetime, MemoryKind, MemoryRegion, ReportAs, MIB};
use std::string::ToString;

fn ram(start: u64, size: u64) -> MemoryRegion {
    MemoryRegion {
        start,
        size,
        kind: MemoryKind::Usable,
    }
}

/// RAM from 1 MiB to 64 MiB, a BIOS area below, with two adjacent reservations at
/// 2 MiB ("a": one page, "b": two pages) and one apart at 8 MiB ("c").
fn map() -> MemoryMap {
    let mut map = MemoryMap::new(&[
        ram(MIB, 63 * MIB),
        MemoryRegion {
            start: 0xf0000,
            size: 0x10000,
            kind: MemoryKind::Reserved,
        },
    ])
    .unwrap();
    for (start, size, name) in [
        (2 * MIB, 0x1000, "a"),
        (2 * MIB + 0x1000, 0x2000, "b"),
        (8 * MIB, 0x1000, "c"),
    ] {
        map.reserve(start, size, name, ReportAs::Usable, Lifetime::Boot)
            .unwrap();
    }
    map
}

#[test]
fn a_range_inside_one_reservation_is_a_region_named_after_it() {
    let map = map();
    let whole = map.region(2 * MIB + 0x1000, 0x2000).unwrap();
    assert_eq!(
        (whole.start(), whole.len(), whole.end(), whole.name()),
        (2 * MIB + 0x1000, 0x2000, 2 * MIB + 0x3000, "b")
    );
    let inner = map.region(8 * MIB + 0x10, 0x20).unwrap();
    assert_eq!(
        (inner.start(), inner.len(), inner.name()),
        (8 * MIB + 0x10, 0x20, "c")
    );
}

#[test]
fn a_range_past_its_reservation_or_outside_any_is_refused_by_name() {
    let map = map();
    assert_eq!(
        map.region(8 * MIB + 0xfff, 2),
        Err(MemoryError::PastReservation {
            start: 8 * MIB + 0xfff,
            end: 8 * MIB + 0x1001,
            reservation: "c",
            reservation_start: 8 * MIB,
            reservation_end: 8 * MIB + 0x1000,
        })
    );
    // Free RAM just below a reservation, running into it.
    assert_eq!(
        map.region(8 * MIB - 1, 2),
        Err(MemoryError::NotReserved {
            start: 8 * MIB - 1,
            end: 8 * MIB + 1
        })
    );
    // Free RAM, the BIOS area, beyond RAM.
    for start in [4 * MIB, 0xf0000, 100 * MIB] {
        assert_eq!(
            map.region(start, 1),
            Err(MemoryError::NotReserved {
                start,
                end: start + 1
            })
        );
    }
    assert_eq!(
        map.region(u64::MAX, 2),
        Err(MemoryError::AddressOverflow {
            name: "region",
            start: u64::MAX,
            size: 2
        })
    );
    assert_eq!(
        map.region(8 * MIB + 0xfff, 2).unwrap_err().to_string(),
        "0x800fff-0x801001 runs past the end of c 0x800000-0x801000"
    );
    assert_eq!(
        map.region(4 * MIB, 1).unwrap_err().to_string(),
        "0x400000-0x400001 is not memory parkboot reserved"
    );
}

#[test]
fn a_range_over_two_adjacent_reservations_is_refused() {
    let map = map();
    assert_eq!(
        map.region(2 * MIB + 0xff0, 0x20),
        Err(MemoryError::PastReservation {
            start: 2 * MIB + 0xff0,
            end: 2 * MIB + 0x1010,
            reservation: "a",
            reservation_start: 2 * MIB,
            reservation_end: 2 * MIB + 0x1000,
        })
    );
    assert!(map.region(2 * MIB, 0x3000).is_err());
}

#[test]
fn zero_length_regions_lie_in_or_at_the_end_of_a_reservation_and_yield_no_bytes() {
    let map = map();
    for start in [8 * MIB, 8 * MIB + 0x800, 8 * MIB + 0x1000] {
        let empty = map.region(start, 0).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.name(), "c");
        // SAFETY: a zero-length region never touches its address.
        assert_eq!(unsafe { empty.bytes_mut() }, &mut [] as &mut [u8]);
    }
    // Between adjacent reservations, the end of the first holds it.
    assert_eq!(map.region(2 * MIB + 0x1000, 0).unwrap().name(), "a");
    assert_eq!(
        map.region(4 * MIB, 0),
        Err(MemoryError::NotReserved {
            start: 4 * MIB,
            end: 4 * MIB
        })
    );
    // Address 0 is never dereferenced, not even as an empty slice's pointer.
    // SAFETY: zero length.
    assert!(unsafe { Region::unchecked(0, 0, "null").bytes_mut() }.is_empty());
}

#[test]
fn parts_of_a_region_stay_inside_it() {
    let map = map();
    let b = map.region(2 * MIB + 0x1000, 0x2000).unwrap();
    let part = b.sub(0x100, 0x200).unwrap();
    assert_eq!(
        (part.start(), part.len(), part.name()),
        (2 * MIB + 0x1100, 0x200, "b")
    );
    assert_eq!(b.sub(0x2000, 0).unwrap().start(), 2 * MIB + 0x3000);
    assert_eq!(
        b.sub(0, 0x2000).unwrap(),
        map.region(2 * MIB + 0x1000, 0x2000).unwrap()
    );
    let outside = MemoryError::OutsideRegion {
        name: "b",
        start: 2 * MIB + 0x1000,
        size: 0x2000,
        offset: 0x1fff,
        len: 2,
    };
    assert_eq!(b.sub(0x1fff, 2), Err(outside));
    assert_eq!(
        outside.to_string(),
        "0x2 bytes at offset 0x1fff lie outside b at 0x201000 (0x2000 bytes)"
    );
    assert!(b.sub(u64::MAX, 2).is_err());
    assert!(b.sub(1, u64::MAX).is_err());
    let (head, tail) = b.sub(0x100, 0x200).unwrap().split_at(0x80).unwrap();
    assert_eq!((head.start(), head.len()), (2 * MIB + 0x1100, 0x80));
    assert_eq!((tail.start(), tail.len()), (2 * MIB + 0x1180, 0x180));
    let (all, none) = b.sub(0, 0x10).unwrap().split_at(0x10).unwrap();
    assert_eq!(
        (all.len(), none.len(), none.start()),
        (0x10, 0, 2 * MIB + 0x1010)
    );
    assert!(b.sub(0, 0x10).unwrap().split_at(0x11).is_err());
    let at = b.sub_at(2 * MIB + 0x1800, 0x10).unwrap();
    assert_eq!((at.start(), at.len()), (2 * MIB + 0x1800, 0x10));
    assert!(b.sub_at(2 * MIB + 0xfff, 1).is_err());
    assert!(b.sub_at(2 * MIB + 0x2fff, 2).is_err());
}

#[test]
fn ram_regions_are_usable_ram_reserved_or_not() {
    let map = map();
    assert_eq!(map.ram_region(4 * MIB, 0x100).unwrap().name(), "RAM");
    assert_eq!(map.ram_region(8 * MIB, 0x2000).unwrap().len(), 0x2000);
    for (start, len) in [(0xf0000, 0x10), (64 * MIB - 1, 2), (0, 0x10), (4 * MIB, 0)] {
        assert_eq!(
            map.ram_region(start, len),
            Err(MemoryError::NotRam {
                start,
                end: start + len
            })
        );
    }
    assert_eq!(
        map.ram_region(0xf0000, 0x10).unwrap_err().to_string(),
        "0xf0000-0xf0010 is not usable RAM"
    );
}

#[test]
fn the_accessor_yields_exactly_the_reserved_bytes() {
    // Host memory stands for RAM here: the map is built over a buffer's real address,
    // so the one accessor runs on exactly the bytes it would on bare metal.
    let mut buffer = vec![0xAAu8; 0x3000];
    let base = buffer.as_mut_ptr() as u64;
    let mut map = MemoryMap::new(&[ram(base, 0x3000)]).unwrap();
    map.reserve(
        base + 0x1000,
        0x1000,
        "page",
        ReportAs::Reserved,
        Lifetime::Permanent,
    )
    .unwrap();
    let region = map
        .region(base + 0x1000, 0x1000)
        .unwrap()
        .sub(0x10, 0x20)
        .unwrap();
    // SAFETY: the buffer is live, not otherwise borrowed while the slice is used, and
    // the reservation stays.
    let bytes = unsafe { region.bytes_mut() };
    assert_eq!(bytes.len(), 0x20);
    bytes.fill(0x55);
    assert!(buffer[..0x1010].iter().all(|&b| b == 0xAA));
    assert!(buffer[0x1010..0x1030].iter().all(|&b| b == 0x55));
    assert!(buffer[0x1030..].iter().all(|&b| b == 0xAA));
}

#[test]
fn fake_memory_hands_out_the_part_of_its_buffer_a_region_stands_for() {
    let mut memory = FakeMemory::new(MIB, 0x4000);
    memory
        .bytes(Region::unchecked(MIB + 0x1000, 4, "x"))
        .copy_from_slice(b"park");
    assert_eq!(memory.at(MIB + 0x1000, 4), b"park");
    assert!(memory.bytes[..0x1000].iter().all(|&b| b == 0));
    assert!(memory
        .bytes(Region::unchecked(MIB + 0x4000, 0, "end"))
        .is_empty());
}

#[test]
#[should_panic(expected = "past the fake memory")]
fn fake_memory_refuses_a_region_beyond_it() {
    let mut memory = FakeMemory::new(MIB, 0x1000);
    memory.bytes(Region::unchecked(MIB + 0xfff, 2, "x"));
}
