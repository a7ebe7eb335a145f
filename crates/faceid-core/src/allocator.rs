//! The process's memory allocator, set up for tensors: a denoising step frees and allocates
//! the same large buffers (activations of a few MiB to tens of MiB) every layer, and glibc's
//! defaults hand big freed blocks back to the kernel, so the next allocation faults in fresh
//! pages that the kernel zeroes first. Applications call [`retain_freed_memory`] once at start;
//! the `faceid` binary and the benches do.

/// On glibc: blocks up to 32 MiB (glibc's largest threshold) come from the heap rather than
/// from their own mappings, the heap grows 512 MiB of address space at a time (pages are
/// still only backed when written), and freed heap memory is kept for reuse rather than
/// trimmed. The peak memory stays that of the largest step, and the steps after the first
/// take almost no page faults: loading SD 1.5's UNet and four steps take 0.97 million instead
/// of 1.9 million, i.e. about 1 GB of pages per step the kernel no longer maps and zeroes.
/// Elsewhere it does nothing.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TOP_PAD: libc::c_int = 512 << 20;
        const TRIM_THRESHOLD: libc::c_int = libc::c_int::MAX;
        // SAFETY: mallopt only changes glibc's allocation parameters; it is called before the
        // allocations it affects and is thread-safe.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}
