//! The layout of the bound structs as two compilers see them: the C probe
//! (`build/probe.c`, compiled by cc against the same headers) and bindgen.
//! Both tables use the same names so they can be compared entry by entry.

use core::mem::{offset_of, size_of};
use std::ffi::CStr;
use std::os::raw::{c_char, c_ulonglong};

use crate::*;

#[repr(C)]
struct Fact {
    name: *const c_char,
    value: c_ulonglong,
}

extern "C" {
    static uring_sys_facts: [Fact; 0];
    static uring_sys_facts_len: usize;
}

/// Sizes, offsets and constant values as the C compiler computed them.
pub fn c_facts() -> Vec<(String, u64)> {
    // SAFETY: the C side defines a static array of `uring_sys_facts_len`
    // entries whose names are string literals.
    unsafe {
        let base = uring_sys_facts.as_ptr();
        (0..uring_sys_facts_len)
            .map(|i| {
                let f = &*base.add(i);
                (
                    CStr::from_ptr(f.name).to_string_lossy().into_owned(),
                    f.value,
                )
            })
            .collect()
    }
}

macro_rules! size {
    ($t:ident) => {
        (
            concat!("sizeof(", stringify!($t), ")"),
            size_of::<$t>() as u64,
        )
    };
}
// `$c` is the C member name; `$($p).+` is where bindgen put it (anonymous
// unions become `__bindgen_anon_N`).
macro_rules! off {
    ($t:ident, $c:ident) => {
        off!($t, $c, $c)
    };
    ($t:ident, $c:ident, $($p:tt).+) => {
        (concat!(stringify!($t), ".", stringify!($c)), offset_of!($t, $($p).+) as u64)
    };
}
macro_rules! value {
    ($c:ident) => {
        (stringify!($c), $c as u64)
    };
    ($c:ident = $e:expr) => {
        (stringify!($c), $e as u64)
    };
}

/// The same facts as bindgen laid them out.
pub fn rust_facts() -> Vec<(&'static str, u64)> {
    vec![
        size!(io_uring_sqe),
        off!(io_uring_sqe, opcode),
        off!(io_uring_sqe, flags),
        off!(io_uring_sqe, ioprio),
        off!(io_uring_sqe, fd),
        off!(io_uring_sqe, off, __bindgen_anon_1.off),
        off!(io_uring_sqe, addr2, __bindgen_anon_1.addr2),
        off!(io_uring_sqe, addr, __bindgen_anon_2.addr),
        off!(io_uring_sqe, len),
        off!(io_uring_sqe, rw_flags, __bindgen_anon_3.rw_flags),
        off!(io_uring_sqe, user_data),
        off!(io_uring_sqe, buf_index, __bindgen_anon_4.buf_index),
        off!(io_uring_sqe, personality),
        off!(io_uring_sqe, splice_fd_in, __bindgen_anon_5.splice_fd_in),
        // The union holding addr3 has a flexible array, so bindgen emulates it with
        // __BindgenUnionField; addr3 leads its struct, at the union's offset.
        off!(io_uring_sqe, addr3, __bindgen_anon_6),
        size!(io_uring_cqe),
        off!(io_uring_cqe, user_data),
        off!(io_uring_cqe, res),
        off!(io_uring_cqe, flags),
        size!(io_uring_params),
        off!(io_uring_params, sq_entries),
        off!(io_uring_params, cq_entries),
        off!(io_uring_params, flags),
        off!(io_uring_params, sq_thread_cpu),
        off!(io_uring_params, sq_thread_idle),
        off!(io_uring_params, features),
        off!(io_uring_params, wq_fd),
        off!(io_uring_params, resv),
        off!(io_uring_params, sq_off),
        off!(io_uring_params, cq_off),
        size!(io_sqring_offsets),
        off!(io_sqring_offsets, head),
        off!(io_sqring_offsets, tail),
        off!(io_sqring_offsets, ring_mask),
        off!(io_sqring_offsets, ring_entries),
        off!(io_sqring_offsets, flags),
        off!(io_sqring_offsets, dropped),
        off!(io_sqring_offsets, array),
        size!(io_cqring_offsets),
        off!(io_cqring_offsets, head),
        off!(io_cqring_offsets, tail),
        off!(io_cqring_offsets, ring_mask),
        off!(io_cqring_offsets, ring_entries),
        off!(io_cqring_offsets, overflow),
        off!(io_cqring_offsets, cqes),
        off!(io_cqring_offsets, flags),
        size!(io_uring_probe),
        off!(io_uring_probe, last_op),
        off!(io_uring_probe, ops_len),
        off!(io_uring_probe, ops),
        size!(io_uring_probe_op),
        off!(io_uring_probe_op, op),
        off!(io_uring_probe_op, flags),
        value!(IORING_SETUP_SQPOLL),
        value!(IORING_SETUP_CQSIZE),
        value!(IORING_ENTER_GETEVENTS),
        value!(IORING_FEAT_SINGLE_MMAP),
        value!(IORING_OFF_SQ_RING),
        value!(IORING_OFF_CQ_RING),
        value!(IORING_OFF_SQES),
        value!(IORING_REGISTER_PROBE),
        value!(IO_URING_OP_SUPPORTED),
        value!(IOSQE_FIXED_FILE_BIT),
        value!(IOSQE_IO_LINK_BIT),
        value!(IORING_OP_NOP = io_uring_op::IORING_OP_NOP),
        value!(IORING_OP_READ = io_uring_op::IORING_OP_READ),
        value!(IORING_OP_WRITE = io_uring_op::IORING_OP_WRITE),
        value!(IORING_OP_LAST = io_uring_op::IORING_OP_LAST),
    ]
}
