//! The io-uring crate builds the SQEs; uring-sys is the uapi the guest kernel
//! was built from. They must agree on every opcode the selftest uses.

use io_uring::opcode;
use uring_sys::io_uring_op as op;

#[test]
fn io_uring_crate_opcodes_match_the_uapi_under_test() {
    for (name, crate_code, uapi) in [
        ("READ", opcode::Read::CODE, op::IORING_OP_READ),
        ("WRITE", opcode::Write::CODE, op::IORING_OP_WRITE),
        ("FSYNC", opcode::Fsync::CODE, op::IORING_OP_FSYNC),
        ("NOP", opcode::Nop::CODE, op::IORING_OP_NOP),
    ] {
        assert_eq!(u32::from(crate_code), uapi, "{name}");
        assert_eq!(uring_sys::op_name(crate_code), Some(name));
    }
}
