//! [`RacyCell`]: a static that only the boot processor uses, with an `unsafe` accessor.
//!
//! parkboot runs its Rust code on the boot processor alone, with interrupts off, and the
//! kexec loop keeps its state in statics because its stack does not survive the kernels
//! it boots. A `static mut` lets any function take a `&mut` to it without saying why no
//! other one is in use; a `RacyCell` hands one out only from an `unsafe` accessor whose
//! callers say so in a `// SAFETY:` comment (as rust-osdev's bootloader does).

use core::cell::UnsafeCell;

/// A value in a static, reachable as `&mut` only through [`RacyCell::get_mut`].
///
/// `#[repr(transparent)]`: the cell's address is the value's, so assembly may name the
/// static (`sym`) where it expects the value (the IDT, for example).
#[repr(transparent)]
pub struct RacyCell<T>(UnsafeCell<T>);

// SAFETY: the value is reached only through `get_mut` and `as_mut_ptr`, whose callers
// promise that no two uses overlap (one CPU, no interrupt handler touching it).
unsafe impl<T: Send> Sync for RacyCell<T> {}

impl<T> RacyCell<T> {
    pub const fn new(value: T) -> Self {
        RacyCell(UnsafeCell::new(value))
    }

    /// The value, mutably.
    ///
    /// # Safety
    ///
    /// For as long as the returned reference is used, no other reference to the value
    /// may be used: no earlier one from this function (it must be dead by then), no
    /// other CPU, no interrupt or exception handler.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut(&self) -> &mut T {
        // SAFETY: the caller guarantees exclusive use for the reference's lifetime.
        unsafe { &mut *self.0.get() }
    }

    /// The value's address, for code that only needs where it is (assembly, a
    /// descriptor-table register).
    pub const fn as_mut_ptr(&self) -> *mut T {
        self.0.get()
    }
}

#[cfg(test)]
mod tests {
    use super::RacyCell;

    static COUNTER: RacyCell<[u64; 4]> = RacyCell::new([1, 2, 3, 4]);

    #[test]
    fn a_write_through_one_reference_is_seen_through_the_next() {
        // SAFETY: this test is the only user of COUNTER, and each reference is dead
        // before the next is taken.
        let first = unsafe { COUNTER.get_mut() };
        assert_eq!(*first, [1, 2, 3, 4]);
        first[2] = 30;
        // SAFETY: as above.
        let second = unsafe { COUNTER.get_mut() };
        assert_eq!(*second, [1, 2, 30, 4]);
    }

    #[test]
    fn the_cell_is_where_its_value_is() {
        let cell = RacyCell::new(0x1234_5678_u32);
        assert_eq!(cell.as_mut_ptr() as usize, &cell as *const _ as usize);
        assert_eq!(core::mem::size_of_val(&cell), core::mem::size_of::<u32>());
        // SAFETY: `cell` is local and nothing else refers to it.
        unsafe { *cell.as_mut_ptr() = 7 };
        // SAFETY: as above.
        assert_eq!(unsafe { *cell.get_mut() }, 7);
    }
}
