//! The bare-metal image: reset vector, 16-bit -> 32-bit -> long mode entry
//! stub, the global allocator, the panic handler and the mem* functions a
//! freestanding Rust program needs. Everything else is the `probe` lib.
//!
//! Built only with the `image` feature:
//! `cargo build -p probe --release --features image --bin probe`, then
//! `objcopy -O binary target/release/probe probe.bin` (link.ld makes the
//! ELF's loadable span exactly the ROM image).

#![no_std]
#![no_main]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::arch::{asm, global_asm};
use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

// Page tables: PML4 at 0x1000, PDPT at 0x2000, four page directories at
// 0x3000-0x6fff mapping the first 4 GiB 1:1 with 2 MiB pages.
global_asm!(
    r#"
    .section .stub16, "ax"
    .code16
start16:
    cli
    cld
    /* CS base is 0xFFFF0000 after reset: address the GDT pointer in it. */
    lgdtl %cs:(gdt_ptr - 0xFFFF0000)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $start32

    .balign 16
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF   /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF   /* 0x10: data */
    .quad 0x00AF9A000000FFFF   /* 0x18: 64-bit code */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

    .section .stub32, "ax"
    .code32
start32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    /* Zero the six table pages. */
    movl $0x1000, %edi
    xorl %eax, %eax
    movl $(6 * 4096 / 4), %ecx
    rep stosl
    movl $0x2003, 0x1000
    movl $0x3003, 0x2000
    movl $0x4003, 0x2008
    movl $0x5003, 0x2010
    movl $0x6003, 0x2018
    movl $0x3000, %edi
    movl $0x83, %eax            /* present, writable, 2 MiB page */
    movl $2048, %ecx
1:
    movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b
    /* CR4: PAE, OSFXSR, OSXMMEXCPT. */
    movl %cr4, %eax
    orl $0x620, %eax
    movl %eax, %cr4
    movl $0x1000, %eax
    movl %eax, %cr3
    /* EFER.LME */
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    /* CR0: PG, MP; clear EM. */
    movl %cr0, %eax
    andl $0xFFFFFFFB, %eax
    orl $0x80000002, %eax
    movl %eax, %cr0
    ljmpl $0x18, $start64

    .section .stub64, "ax"
    .code64
start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    rdtsc
    shlq $32, %rdx
    orq %rax, %rdx
    movq %rdx, %r12             /* the TSC at entry, for Rust */
    fninit
    movabsq $__stack_top, %rsp
    /* Copy the image (code and data) from ROM to RAM, zero .bss. */
    movabsq $__image_lma, %rsi
    movabsq $__image_start, %rdi
    movabsq $__image_end, %rcx
    subq %rdi, %rcx
    rep movsb
    movabsq $__bss_start, %rdi
    movabsq $__bss_end, %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb
    movq %r12, %rdi
    movabsq $probe_entry, %rax
    callq *%rax
2:
    cli
    hlt
    jmp 2b

    .section .reset, "ax"
    .code16
reset_vector:
    .globl reset_vector
    jmp start16
    .org 16, 0xcc

    .code64
    .text
"#,
    options(att_syntax)
);

// CPU exception entry stubs, one per vector 0-31 (`probe::traps`): each
// pushes a dummy error code where the CPU pushes none (the vectors outside
// ERROR_CODE_VECTORS), then its vector; the common path pushes every
// general register (the order of `TrapFrame`) and calls `probe_trap` with
// the frame's address on a 16-byte aligned stack. `trap_stubs` is the table
// of their addresses, for the IDT.
global_asm!(
    r#"
    .section .text.traps, "ax"
    .code64
    .macro trap_stub n
    .balign 16
trap_stub_\n:
    .if ((({error_codes} >> \n) & 1) == 0)
    pushq $0
    .endif
    pushq $\n
    jmp trap_common
    .endm

    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    trap_stub \n
    .endr

trap_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rbx
    pushq %rbp
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    andq $-16, %rsp
    cld
    call {handler}
3:
    cli
    hlt
    jmp 3b

    .section .rodata.traps, "a"
    .balign 8
trap_stubs:
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad trap_stub_\n
    .endr
trap_stubs_end:
    .globl trap_stubs
    .globl trap_stubs_end
    .text
"#,
    error_codes = const probe::traps::ERROR_CODE_VECTORS,
    handler = sym probe_trap,
    options(att_syntax)
);

unsafe extern "C" {
    static __heap_start: u8;
    static trap_stubs: [u64; probe::traps::EXCEPTIONS];
    static trap_stubs_end: u8;
}

/// The exception stubs' common path calls this with their frame.
extern "C" fn probe_trap(frame: &probe::traps::TrapFrame) -> ! {
    probe::traps::fatal(frame)
}

/// A bump allocator over [__heap_start, the end of RAM): the probe frees
/// little and runs once.
struct Bump {
    next: AtomicUsize,
    end: AtomicUsize,
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let align = layout.align().max(16);
        let cur = self.next.load(Ordering::Relaxed);
        let start = (cur + align - 1) & !(align - 1);
        let end = start + layout.size();
        if end > self.end.load(Ordering::Relaxed) {
            return core::ptr::null_mut();
        }
        self.next.store(end, Ordering::Relaxed);
        start as *mut u8
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The most recent allocation can be given back.
        let end = ptr as usize + layout.size();
        let _ = self
            .next
            .compare_exchange(end, ptr as usize, Ordering::Relaxed, Ordering::Relaxed);
    }
}

#[global_allocator]
static HEAP: Bump = Bump {
    next: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
};

/// Below the PCI hole: RAM the 4 GiB identity map covers.
const HEAP_LIMIT: u64 = 0x8000_0000;

#[unsafe(no_mangle)]
extern "C" fn probe_entry(entry_tsc: u64) -> ! {
    let start = &raw const __heap_start as usize;
    let ram = match probe::machine::ram_size() {
        0 => 128 << 20,
        n => n.min(HEAP_LIMIT),
    };
    HEAP.next.store(start, Ordering::Relaxed);
    HEAP.end.store(ram as usize, Ordering::Relaxed);
    // SAFETY: the assembly above defines both symbols, the table first.
    let stubs = unsafe { &trap_stubs };
    let table_len = &raw const trap_stubs_end as usize - stubs.as_ptr() as usize;
    assert_eq!(
        table_len,
        core::mem::size_of_val(stubs),
        "one exception stub per vector"
    );
    probe::traps::install(stubs);
    probe::machine::main(entry_tsc)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut out = probe::serial::console();
    let _ = writeln!(out, "\nBail out! {}", info.message());
    if let Some(l) = info.location() {
        let _ = writeln!(out, "# panicked at {}:{}", l.file(), l.line());
    }
    probe::hw::exit(contract::exit::KSFT_FAIL)
}

// The mem* functions core calls, as string instructions: LLVM turns a plain
// copy loop back into a call to memcpy, which would recurse.

#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller passes valid, non-overlapping ranges.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: a forward copy is safe when dst is below src or apart.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
                 options(nostack, preserves_flags));
        }
    } else {
        // SAFETY: overlapping with dst above src: copy backwards.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                 options(nostack));
        }
    }
    dst
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller passes a valid range.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: valid ranges; volatile keeps LLVM from calling memcmp.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

// The precompiled `alloc` was built to unwind; with panic=abort nothing
// ever does, but its objects name these.
#[unsafe(no_mangle)]
extern "C" fn _Unwind_Resume() -> ! {
    probe::hw::exit(contract::exit::KSFT_FAIL)
}

#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: as memcmp.
    unsafe { memcmp(a, b, n) }
}
