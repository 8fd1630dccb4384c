//! The park table ABI, shared by parkboot and the kernels it boots.
#![no_std]
