//! Firmware structures read from and written to byte buffers through `zerocopy`.
//!
//! Boot tables (coreboot, PVH, multiboot2, the Linux setup header, ACPI) are untrusted
//! bytes at any alignment. Every structure parkboot reads is a `#[repr(C)]` type that
//! derives `zerocopy`'s `FromBytes` and `IntoBytes`, so the compiler checks it has no
//! padding and accepts any bit pattern; reads copy the bytes out
//! (`FromBytes::read_from_prefix`, which takes any alignment) and never reinterpret
//! them in place, and no `unsafe` is needed. The Rust layout, checked by the `const`
//! assertions next to each structure, is the one place offsets come from.
//!
//! Fields are native integers: firmware structures are little-endian, and so is every
//! target parkboot is built for (checked below).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

// Native integer fields read little-endian bytes as they are only on a little-endian
// target; parkboot runs on x86_64 and its host tests run there too.
const _: () = assert!(cfg!(target_endian = "little"));

/// A value that sits at a byte offset in a firmware structure: an integer, a byte
/// array, or a structure declared with [`wire_struct!`].
pub trait WireField: FromBytes + IntoBytes + Immutable + KnownLayout + Sized + Copy {
    /// Size of the value in firmware memory.
    const SIZE: usize = core::mem::size_of::<Self>();

    /// The value at the start of `bytes`, or `None` when `bytes` is shorter.
    fn read_from(bytes: &[u8]) -> Option<Self> {
        Self::read_from_prefix(bytes).ok().map(|(value, _)| value)
    }

    /// The value at `at`, or `None` when `bytes` ends before it.
    fn read_at(bytes: &[u8], at: usize) -> Option<Self> {
        <Self as WireField>::read_from(bytes.get(at..)?)
    }

    /// Writes the value at the start of `out`; `None` when `out` is shorter.
    fn write_to(self, out: &mut [u8]) -> Option<()> {
        self.write_to_prefix(out).ok()
    }

    /// Writes the value at `at`; `None` when `out` ends before it.
    fn write_at(self, out: &mut [u8], at: usize) -> Option<()> {
        WireField::write_to(self, out.get_mut(at..)?)
    }
}

impl<T: FromBytes + IntoBytes + Immutable + KnownLayout + Copy> WireField for T {}

/// Declares a `#[repr(C)]` firmware structure that [`WireField`] reads and writes;
/// `packed` first makes it `#[repr(C, packed)]`, for layouts with fields at offsets
/// their alignment does not allow (ACPI tables, the bzImage setup header).
macro_rules! wire_struct {
    (
        packed
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $crate::wire::wire_struct! {
            @repr(C, packed)
            $(#[$meta])*
            pub struct $name { $( $(#[$field_meta])* pub $field: $ty, )* }
        }
    };
    (
        @repr($($repr:tt)*)
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[repr($($repr)*)]
        #[derive(
            Clone,
            Copy,
            Debug,
            Default,
            PartialEq,
            Eq,
            ::zerocopy::FromBytes,
            ::zerocopy::IntoBytes,
            ::zerocopy::Immutable,
            ::zerocopy::KnownLayout,
        )]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }
    };
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $crate::wire::wire_struct! {
            @repr(C)
            $(#[$meta])*
            pub struct $name { $( $(#[$field_meta])* pub $field: $ty, )* }
        }
    };
}
pub(crate) use wire_struct;

#[cfg(test)]
mod tests {
    use super::WireField;

    wire_struct! {
        pub struct Sample {
            pub small: u16,
            pub tag: [u8; 2],
            pub word: u32,
            pub big: u64,
        }
    }

    const _: () = assert!(core::mem::offset_of!(Sample, big) == 8);

    #[test]
    fn round_trip_at_any_offset_and_short_buffers_refused() {
        let sample = Sample {
            small: 0x1234,
            tag: *b"OK",
            word: 0x0a0b_0c0d,
            big: 0x0102_0304_0506_0708,
        };
        let mut buf = [0u8; 3 + Sample::SIZE];
        sample.write_at(&mut buf, 3).unwrap();
        assert_eq!(&buf[3..5], &[0x34, 0x12]);
        assert_eq!(&buf[5..7], b"OK");
        assert_eq!(&buf[7..11], &[0x0d, 0x0c, 0x0b, 0x0a]);
        assert_eq!(&buf[11..19], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(Sample::read_at(&buf, 3), Some(sample));
        assert_eq!(Sample::read_at(&buf, 4), None);
        assert_eq!(Sample::read_from(&buf[..Sample::SIZE - 1]), None);
        assert_eq!(sample.write_at(&mut buf, usize::MAX), None);
        let mut exact = [0u8; Sample::SIZE];
        sample.write_to(&mut exact).unwrap();
        assert_eq!(Sample::read_from(&exact), Some(sample));
        assert_eq!(u32::read_at(&buf, 7), Some(0x0a0b_0c0d));
        assert_eq!(u64::read_at(&buf, 12), None);
    }
}
