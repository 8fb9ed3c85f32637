//! bindgen and the C compiler must agree on every size, offset and constant,
//! both computed from the same header directory.

use std::collections::BTreeMap;

#[test]
fn bindgen_layout_matches_c_compiler_field_by_field() {
    let c: BTreeMap<String, u64> = uring_sys::layout::c_facts().into_iter().collect();
    let rust = uring_sys::layout::rust_facts();
    assert_eq!(
        c.len(),
        rust.len(),
        "the C probe and the Rust table list different facts"
    );
    let mut mismatches = Vec::new();
    for (name, value) in &rust {
        match c.get(*name) {
            Some(cv) if cv == value => {}
            Some(cv) => mismatches.push(format!("{name}: C {cv}, bindgen {value}")),
            None => mismatches.push(format!("{name}: missing from the C probe")),
        }
    }
    assert!(
        mismatches.is_empty(),
        "layout mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn well_known_abi_sizes() {
    // These sizes are ABI: they have not changed since io_uring was merged.
    let c: BTreeMap<String, u64> = uring_sys::layout::c_facts().into_iter().collect();
    assert_eq!(c["sizeof(io_uring_sqe)"], 64);
    assert_eq!(c["sizeof(io_uring_cqe)"], 16);
    assert_eq!(c["sizeof(io_uring_params)"], 120);
}

#[test]
fn op_names_come_from_the_header() {
    assert_eq!(uring_sys::op_name(0), Some("NOP"));
    assert_eq!(
        uring_sys::op_name(uring_sys::io_uring_op::IORING_OP_READ as u8),
        Some("READ")
    );
    assert_eq!(
        uring_sys::op_name(uring_sys::io_uring_op::IORING_OP_WRITE as u8),
        Some("WRITE")
    );
    // LAST is a count, not an opcode.
    assert_eq!(uring_sys::op_name(uring_sys::OP_LAST), None);
    assert!(uring_sys::op_name(uring_sys::OP_LAST - 1).is_some());
    // Every opcode below LAST has a name: the table has no holes.
    assert!((0..uring_sys::OP_LAST).all(|op| uring_sys::op_name(op).is_some()));
}

#[test]
fn uapi_source_names_the_directory_used() {
    let dir = std::path::Path::new(uring_sys::UAPI_SOURCE);
    assert!(
        dir.join("linux/io_uring.h").is_file(),
        "{}",
        uring_sys::UAPI_SOURCE
    );
    assert_eq!(
        std::env::var_os("URING_SYS_UAPI").is_some(),
        uring_sys::UAPI_FROM_ENV
    );
    assert!(uring_sys::uapi_summary().contains(uring_sys::UAPI_SOURCE));
}
