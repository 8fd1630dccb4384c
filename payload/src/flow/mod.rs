//! The boot flow's bookkeeping: which entry boots next, and what each iteration of the
//! kexec loop took.

pub mod boot_loop;
