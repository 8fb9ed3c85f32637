/*
 * Layout facts about the io_uring uapi as the C compiler sees them, compiled
 * against the same include directory bindgen used. The Rust tests compare
 * each entry with bindgen's layout.
 */
#include <stddef.h>
#include <linux/io_uring.h>

struct uring_sys_fact {
	const char *name;
	unsigned long long value;
};

#define SIZE(t) { "sizeof(" #t ")", sizeof(struct t) }
#define OFF(t, f) { #t "." #f, offsetof(struct t, f) }
#define VALUE(c) { #c, (unsigned long long)(c) }

const struct uring_sys_fact uring_sys_facts[] = {
	SIZE(io_uring_sqe),
	OFF(io_uring_sqe, opcode), OFF(io_uring_sqe, flags), OFF(io_uring_sqe, ioprio),
	OFF(io_uring_sqe, fd), OFF(io_uring_sqe, off), OFF(io_uring_sqe, addr2),
	OFF(io_uring_sqe, addr), OFF(io_uring_sqe, len), OFF(io_uring_sqe, rw_flags),
	OFF(io_uring_sqe, user_data), OFF(io_uring_sqe, buf_index),
	OFF(io_uring_sqe, personality), OFF(io_uring_sqe, splice_fd_in),
	OFF(io_uring_sqe, addr3),
	SIZE(io_uring_cqe),
	OFF(io_uring_cqe, user_data), OFF(io_uring_cqe, res), OFF(io_uring_cqe, flags),
	SIZE(io_uring_params),
	OFF(io_uring_params, sq_entries), OFF(io_uring_params, cq_entries),
	OFF(io_uring_params, flags), OFF(io_uring_params, sq_thread_cpu),
	OFF(io_uring_params, sq_thread_idle), OFF(io_uring_params, features),
	OFF(io_uring_params, wq_fd), OFF(io_uring_params, resv),
	OFF(io_uring_params, sq_off), OFF(io_uring_params, cq_off),
	SIZE(io_sqring_offsets),
	OFF(io_sqring_offsets, head), OFF(io_sqring_offsets, tail),
	OFF(io_sqring_offsets, ring_mask), OFF(io_sqring_offsets, ring_entries),
	OFF(io_sqring_offsets, flags), OFF(io_sqring_offsets, dropped),
	OFF(io_sqring_offsets, array),
	SIZE(io_cqring_offsets),
	OFF(io_cqring_offsets, head), OFF(io_cqring_offsets, tail),
	OFF(io_cqring_offsets, ring_mask), OFF(io_cqring_offsets, ring_entries),
	OFF(io_cqring_offsets, overflow), OFF(io_cqring_offsets, cqes),
	OFF(io_cqring_offsets, flags),
	SIZE(io_uring_probe),
	OFF(io_uring_probe, last_op), OFF(io_uring_probe, ops_len), OFF(io_uring_probe, ops),
	SIZE(io_uring_probe_op),
	OFF(io_uring_probe_op, op), OFF(io_uring_probe_op, flags),
	VALUE(IORING_SETUP_SQPOLL), VALUE(IORING_SETUP_CQSIZE),
	VALUE(IORING_ENTER_GETEVENTS), VALUE(IORING_FEAT_SINGLE_MMAP),
	VALUE(IORING_OFF_SQ_RING), VALUE(IORING_OFF_CQ_RING), VALUE(IORING_OFF_SQES),
	VALUE(IORING_REGISTER_PROBE), VALUE(IO_URING_OP_SUPPORTED),
	VALUE(IOSQE_FIXED_FILE_BIT), VALUE(IOSQE_IO_LINK_BIT),
	VALUE(IORING_OP_NOP), VALUE(IORING_OP_READ), VALUE(IORING_OP_WRITE),
	VALUE(IORING_OP_LAST),
};

const size_t uring_sys_facts_len = sizeof(uring_sys_facts) / sizeof(uring_sys_facts[0]);
