//! The byte copy behind `memcpy` in the static x86_64 build (`main.rs` exports it under that
//! name when the target is musl): one `rep movsb`. musl's own x86_64 `memcpy` is `rep movsq`
//! plus byte loops for the head and tail; on CPUs with fast short `rep movsb` (FSRM, Intel
//! Ice Lake and later, AMD Zen 3 and later) a single `rep movsb` is several times faster for
//! the short copies SQLite and the codecs make (cells, records, 20-200 byte values), and on
//! older CPUs it costs what musl's does. Issue 13: musl's `memcpy` was ~5 % of the daemon's
//! CPU on W1 (perf, bench-results/cpu_round14.txt). glibc builds and the ARM builds keep their
//! C library's `memcpy`. Pure function: no state, no I/O.

/// Copy `n` bytes from `src` to `dst`, lowest address first.
///
/// # Safety
/// `memcpy`'s contract: `src` readable and `dst` writable for `n` bytes. Overlap is allowed
/// only with `dst` below `src` (the copy goes upward byte by byte, as musl's `memmove` relies
/// on when it forwards to `memcpy`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn copy_up(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller's contract; the System V ABI guarantees the direction flag is clear
    // at every call, so `rep movsb` copies upward. It changes no flags.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::copy_up;

    /// Every length from 0 to 300 and a few large ones, at every alignment of source and
    /// destination modulo 8: exactly the bytes asked for are copied, nothing around them moves.
    #[test]
    fn copies_exactly_n_bytes_at_any_alignment() {
        let src: Vec<u8> = (0..9000u32).map(|i| (i * 7 + 3) as u8).collect();
        let lens = (0..=300).chain([511, 512, 513, 4095, 4096, 4097, 8000]);
        for n in lens {
            for so in 0..8 {
                for d_off in 0..8 {
                    let mut dst = vec![0xA5u8; n + 16];
                    // SAFETY: src has so + n bytes, dst has d_off + n (+ 16 - d_off) bytes.
                    unsafe { copy_up(dst.as_mut_ptr().add(d_off), src.as_ptr().add(so), n) };
                    assert!(
                        dst[..d_off].iter().all(|&b| b == 0xA5),
                        "n {n} so {so} do {d_off}"
                    );
                    assert_eq!(
                        &dst[d_off..d_off + n],
                        &src[so..so + n],
                        "n {n} so {so} do {d_off}"
                    );
                    assert!(
                        dst[d_off + n..].iter().all(|&b| b == 0xA5),
                        "n {n} so {so} do {d_off}"
                    );
                }
            }
        }
    }

    /// An overlap with the destination below the source (what musl's `memmove` hands to
    /// `memcpy`) ends as a move would.
    #[test]
    fn downward_overlap_moves_like_memmove() {
        for (n, gap) in [
            (100usize, 1usize),
            (100, 7),
            (4096, 8),
            (4096, 64),
            (33, 32),
        ] {
            let mut buf: Vec<u8> = (0..(n + gap) as u32).map(|i| (i % 251) as u8).collect();
            let want: Vec<u8> = buf[gap..gap + n].to_vec();
            let p = buf.as_mut_ptr();
            // SAFETY: both ranges lie inside buf; dst (p) is below src (p + gap).
            unsafe { copy_up(p, p.add(gap), n) };
            assert_eq!(&buf[..n], &want[..], "n {n} gap {gap}");
        }
    }
}
