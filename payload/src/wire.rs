//! Firmware structures moved field by field at their `offset_of!` positions.
//!
//! Boot tables (coreboot, PVH, multiboot2) are untrusted bytes at any alignment.
//! Reading and writing each field at its offset, rather than casting pointers, keeps
//! those bytes from ever being reinterpreted in place, and leaves the Rust layout
//! (checked by the `const` assertions next to each structure) the one place offsets
//! come from.

/// A little-endian value that sits at a byte offset in a firmware structure.
pub trait WireField: Sized + Copy {
    /// The value at `at`, or `None` when `bytes` ends before it.
    fn read_at(bytes: &[u8], at: usize) -> Option<Self>;
    /// Writes the value at `at`; `None` when `out` ends before it.
    fn write_at(self, out: &mut [u8], at: usize) -> Option<()>;
}

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl WireField for $t {
            fn read_at(bytes: &[u8], at: usize) -> Option<Self> {
                let end = at.checked_add(core::mem::size_of::<$t>())?;
                Some(<$t>::from_le_bytes(bytes.get(at..end)?.try_into().ok()?))
            }
            fn write_at(self, out: &mut [u8], at: usize) -> Option<()> {
                let end = at.checked_add(core::mem::size_of::<$t>())?;
                out.get_mut(at..end)?.copy_from_slice(&self.to_le_bytes());
                Some(())
            }
        }
    )*};
}
wire_int!(u8, u16, u32, u64);

impl<const N: usize> WireField for [u8; N] {
    fn read_at(bytes: &[u8], at: usize) -> Option<Self> {
        bytes.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn write_at(self, out: &mut [u8], at: usize) -> Option<()> {
        out.get_mut(at..at.checked_add(N)?)?.copy_from_slice(&self);
        Some(())
    }
}

/// Declares a `#[repr(C)]` firmware structure with `read_from`/`read_at` and
/// `write_to`/`write_at` that move each field at its `offset_of!` position.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $name {
            /// Size of the structure in firmware memory.
            pub const SIZE: usize = ::core::mem::size_of::<$name>();

            /// The structure at the start of `bytes`, or `None` when `bytes` is shorter.
            pub fn read_from(bytes: &[u8]) -> Option<Self> {
                Self::read_at(bytes, 0)
            }

            /// The structure at `at` in `bytes`, or `None` when `bytes` ends before it.
            pub fn read_at(bytes: &[u8], at: usize) -> Option<Self> {
                Some($name {
                    $( $field: <$ty as $crate::wire::WireField>::read_at(
                        bytes,
                        at.checked_add(::core::mem::offset_of!($name, $field))?,
                    )?, )*
                })
            }

            /// Writes the structure at the start of `out`; `None` when `out` is shorter.
            pub fn write_to(&self, out: &mut [u8]) -> Option<()> {
                self.write_at(out, 0)
            }

            /// Writes the structure at `at` in `out`; `None` when `out` ends before it.
            pub fn write_at(&self, out: &mut [u8], at: usize) -> Option<()> {
                $( <$ty as $crate::wire::WireField>::write_at(
                    self.$field,
                    out,
                    at.checked_add(::core::mem::offset_of!($name, $field))?,
                )?; )*
                Some(())
            }
        }
    };
}
pub(crate) use wire_struct;

#[cfg(test)]
mod tests {
    wire_struct! {
        pub struct Sample {
            pub small: u16,
            pub tag: [u8; 2],
            pub big: u64,
        }
    }

    #[test]
    fn round_trip_at_any_offset_and_short_buffers_refused() {
        let sample = Sample {
            small: 0x1234,
            tag: *b"OK",
            big: 0x0102_0304_0506_0708,
        };
        let mut buf = [0u8; 3 + Sample::SIZE];
        sample.write_at(&mut buf, 3).unwrap();
        assert_eq!(&buf[3..5], &[0x34, 0x12]);
        assert_eq!(&buf[5..7], b"OK");
        assert_eq!(Sample::read_at(&buf, 3), Some(sample));
        assert_eq!(Sample::read_at(&buf, 4), None);
        assert_eq!(Sample::read_from(&buf[..Sample::SIZE - 1]), None);
        assert_eq!(sample.write_at(&mut buf, usize::MAX), None);
        let mut exact = [0u8; Sample::SIZE];
        sample.write_to(&mut exact).unwrap();
        assert_eq!(Sample::read_from(&exact), Some(sample));
    }
}
