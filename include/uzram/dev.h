/* SPDX-License-Identifier: MIT */
/*
 * dev.h - the zram core: a compressed page device.
 *
 * A device of `disksize` bytes is made of 4096-byte slots. Each written slot holds a page
 * compressed into the device's pool, or, for a page whose 8-byte words are all equal, just that
 * word (no pool memory), or, for a page that does not compress below the pool's huge size, the
 * raw page. Never-written and discarded slots read back as zeros.
 *
 * Attributes carry the kernel zram sysfs names and text formats (disksize, comp_algorithm,
 * mem_limit, mem_used_max, mm_stat, io_stat, compact, reset, ...), plus pool_stat.
 */
#ifndef UZRAM_DEV_H
#define UZRAM_DEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uzram/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct uz_dev_config {
    uint64_t disksize;     /* bytes, multiple of 4096 */
    const char *algorithm; /* NULL or "lz4" (default), "lz4hc", "zstd", "lzo-rle", "lzo",
                            * "deflate" */
    int level;             /* 0: the algorithm's default */
    uint64_t mem_limit;    /* bytes of pool memory; 0: unlimited */
    unsigned workers;      /* async compression threads (zramd); 0: async writes run inline */
};

/* The device. Thread-safety: every call is safe from any thread; I/O locks per slot (a lock
 * that sleeps when contended), so I/O on different slots shares no lock. Concurrent writes to
 * one slot are serialised (the last to commit wins). reset, disksize and codec changes wait for
 * I/O in progress and for queued async writes. */
struct uz_dev;

/* uz_dev_create() :
 *  @return : 0, -EINVAL (disksize 0 or not a multiple of 4096, bad level), -ENOENT (unknown
 *            algorithm), -ENOMEM, or -errno of pthread_create. */
UZ_API int uz_dev_create(const struct uz_dev_config *cfg, struct uz_dev **out);

/* uz_dev_destroy() : waits for queued async writes, then frees everything. NULL is a no-op. */
UZ_API void uz_dev_destroy(struct uz_dev *dev);

/* uz_dev_write_page() :
 *  Stores one 4096-byte page into slot `index`, replacing what was there. `page` is read only
 *  during the call.
 *  @return : 0, -ENOSPC when mem_limit would be exceeded (the old contents stay), -EINVAL for an
 *            index beyond the disk size, -ENOMEM. */
UZ_API int uz_dev_write_page(struct uz_dev *dev, uint64_t index, const void *page);

/* uz_dev_read_page() :
 *  Reads slot `index` into `page` (4096 bytes); never-written slots read as zeros.
 *  @return : 0, -EINVAL for an index beyond the disk size, -EIO if the stored data is corrupt. */
UZ_API int uz_dev_read_page(struct uz_dev *dev, uint64_t index, void *page);

/* uz_dev_pwrite() / uz_dev_pread() :
 *  Byte-granular I/O; partial pages are read-modify-written atomically per slot.
 *  @return : len, or -EINVAL when [offset, offset+len) passes the disk size, or the first
 *            page's error (pages before it are written). len 0 returns 0. */
UZ_API ssize_t uz_dev_pwrite(struct uz_dev *dev, const void *buf, size_t len, uint64_t offset);
UZ_API ssize_t uz_dev_pread(struct uz_dev *dev, void *buf, size_t len, uint64_t offset);

/* uz_dev_discard() :
 *  Frees the slots wholly inside [offset, offset+len); they read back as zeros. Partial pages at
 *  either end are left alone, as zram does.
 *  @return : 0, or -EINVAL when the range passes the disk size. */
UZ_API int uz_dev_discard(struct uz_dev *dev, uint64_t offset, uint64_t len);

/* What a slot holds, for sparse copies and NBD block status. */
enum uz_dev_page_state {
    UZ_DEV_PAGE_UNWRITTEN = 0, /* never written or discarded: a hole, reads as zeros */
    UZ_DEV_PAGE_ZERO = 1,      /* written with zeros: reads as zeros, holds no pool memory */
    UZ_DEV_PAGE_DATA = 2,      /* anything else (same-filled non-zero pages included) */
};

/* uz_dev_page_state() :
 *  @return : the enum uz_dev_page_state of slot `index` (a snapshot), or -EINVAL for an index
 *            beyond the disk size. */
UZ_API int uz_dev_page_state(struct uz_dev *dev, uint64_t index);

/* uz_dev_done_fn : called once per async write, from a worker thread (or inline, in the
 * submitting thread, when the device has no workers), with 0 or the -errno uz_dev_write_page()
 * would have returned.
 *
 * What a callback may do: any I/O on any device, including uz_dev_write_page_async() on this
 * device (it never waits for queue room from a callback: past a full queue the request goes to
 * an overflow list, still behind every write queued before it, so order is kept; -ENOMEM if that
 * list cannot grow). uz_dev_flush() and the attributes that need the device to themselves
 * (reset, disksize, comp_algorithm, algorithm_params) return -EDEADLK from a callback of this
 * device, since they would wait for the callback itself. A callback must not call
 * uz_dev_destroy() on its own device. */
typedef void (*uz_dev_done_fn)(void *arg, int result);

/* uz_dev_write_page_async() :
 *  Queues a write of `page` to slot `index`; `page` is read later, by a worker thread, and must
 *  stay unchanged until `done` runs (the device then reports stable writes). Writes to the same
 *  index complete in submission order, always (callbacks' submissions included). Blocks while
 *  the queue is full (except from a callback, see uz_dev_done_fn) and while a reset, disksize or
 *  codec change is in progress.
 *  If the caller modifies the page anyway, the stored page may be garbage, but nothing overruns
 *  and the pool stays consistent.
 *  @return : 0 when queued (done will be called), -EINVAL for a bad index or an uninitialised
 *            device, -ENOMEM (done not called in either case). */
UZ_API int uz_dev_write_page_async(struct uz_dev *dev, uint64_t index, const void *page,
                                   uz_dev_done_fn done, void *arg);

/* uz_dev_flush() : waits until every async write queued before the call has completed.
 *  @return : 0, or -EDEADLK from a `done` callback of this device (it would wait for itself). */
UZ_API int uz_dev_flush(struct uz_dev *dev);

/* uz_dev_stable_writes() :
 *  true when async writes read the page after the submitting call returned (workers > 0): every
 *  user must then keep the page unchanged until completion (the kernel's stable pages,
 *  SWP_STABLE_WRITES). */
UZ_API bool uz_dev_stable_writes(const struct uz_dev *dev);

/* uz_dev_disksize() : the current disk size in bytes (0 after a reset). */
UZ_API uint64_t uz_dev_disksize(const struct uz_dev *dev);

/* uz_dev_object_pages() : the object_pages attribute (1, 2, 4, 8 or 16): a write of a whole
 *  aligned run of that many pages (uz_dev_pwrite, or neighbours queued in order to one worker)
 *  is compressed as one object, and uz_dev_pread of whole pages decodes each object once. */
UZ_API unsigned uz_dev_object_pages(const struct uz_dev *dev);

/* Every number behind mm_stat, io_stat and debug_stat, as the attribute texts show them (the
 * texts are formatted from this struct). Sizes in bytes. A snapshot: fields are read one by one
 * while I/O goes on. */
struct uz_dev_stats {
    uint64_t disksize; /* 0: uninitialised */
    /* mm_stat, in the kernel's order */
    uint64_t orig_data_size;   /* bytes of pages stored (same-filled included) */
    uint64_t compr_data_size;  /* bytes of compressed data (huge pages count 4096) */
    uint64_t mem_used_total;   /* bytes of pool memory */
    uint64_t mem_limit;        /* 0: unlimited */
    uint64_t mem_used_max;     /* high-water mark of mem_used_total */
    uint64_t same_pages;       /* pages stored as a fill word (no pool memory) */
    uint64_t pages_compacted;  /* pool pages freed by compaction */
    uint64_t huge_pages;       /* pages stored raw */
    uint64_t huge_pages_since; /* raw pages written since initialisation */
    /* io_stat */
    uint64_t failed_reads;
    uint64_t failed_writes;
    uint64_t invalid_io;  /* always 0, as in the kernel since 6.x */
    uint64_t notify_free; /* pages of discarded ranges */
    /* debug_stat */
    uint64_t miss_free; /* always 0: uzram has no swap-slot-free notification to miss */
    /* bd_stat, in 4 KiB units: pages written back now, read from and written to the store */
    uint64_t bd_count, bd_reads, bd_writes;
};

/* uz_dev_stats() :
 *  Fills *st (all zeros but mem_limit on an uninitialised device).
 *  @return : 0, or -EINVAL for NULL arguments. */
UZ_API int uz_dev_stats(struct uz_dev *dev, struct uz_dev_stats *st);

/* uz_dev_compact() :
 *  Compacts the pool (the `compact` attribute).
 *  @return : the number of pool pages freed (>= 0), or -EINVAL when uninitialised. */
UZ_API int uz_dev_compact(struct uz_dev *dev);

/* uz_dev_zero() :
 *  Makes [offset, offset+len) read as zeros. Partial pages at either end are read-modify-written
 *  atomically per slot; whole pages become zero pages (UZ_DEV_PAGE_ZERO), or holes
 *  (UZ_DEV_PAGE_UNWRITTEN) with UZ_DEV_ZERO_TRIM. Whole pages hold no pool memory either way.
 *  @return : 0, -EINVAL when the range passes the disk size, or a partial page's write error
 *            (-ENOSPC, -ENOMEM, -EIO; the pages before it are zeroed). */
#define UZ_DEV_ZERO_TRIM 1u
UZ_API int uz_dev_zero(struct uz_dev *dev, uint64_t offset, uint64_t len, unsigned flags);

/* One run of pages with the same enum uz_dev_page_state. */
struct uz_dev_extent {
    uint64_t offset, length; /* bytes */
    int state;               /* enum uz_dev_page_state */
};

/* uz_dev_extents() :
 *  Describes [offset, offset+len) as runs of equal page state, in order and coalesced; the first
 *  run starts at `offset` and the runs are clipped to the range (a partial page takes its page's
 *  state). Stops after `max` runs: the caller asks again from the end of the last one.
 *  @return : the number of runs written (0 for len 0), or -EINVAL when the range passes the disk
 *            size or max is 0. */
UZ_API int uz_dev_extents(struct uz_dev *dev, uint64_t offset, uint64_t len,
                          struct uz_dev_extent *ext, size_t max);

/* uz_dev_block_state() :
 *  The `block_state` listing in pieces, for devices whose whole listing is large: formats the
 *  lines of the stored slots from slot *index on, as many whole lines as fit in buf (NUL-
 *  terminated), and sets *index to the slot to continue from. One line per stored slot, as the
 *  kernel's debugfs file: "%12zd %12u.%06d %c%c%c%c%c%c\n" - index, access time (seconds of
 *  CLOCK_BOOTTIME; uzram keeps whole seconds), flags s (same-filled), w (written back), h (huge),
 *  i (idle), r (recompressed), n (incompressible), '.' when clear.
 *  @return : bytes written (0: no stored slot from *index on), -ERANGE when not even one line
 *            fits, -EINVAL for NULL arguments. */
UZ_API ssize_t uz_dev_block_state(struct uz_dev *dev, uint64_t *index, char *buf, size_t len);

/* uz_dev_attr_read() :
 *  Formats attribute `name` into buf as the kernel's sysfs file would read, NUL-terminated.
 *  Readable: disksize, initstate, comp_algorithm ("lzo-rle lzo [lz4] lz4hc zstd deflate \n", the
 *  kernel's order), algorithm_params ("algo=NAME level=N[ deflate.winbits=W][ dict=PATH]\n",
 *  the level resolved), mem_limit, mem_used_max, mm_stat, io_stat, debug_stat,
 *  max_comp_streams, pool_stat, block_state (the kernel's debugfs file; see uz_dev_block_state()
 *  for reading it in pieces). The kernel makes algorithm_params, mem_limit and mem_used_max
 *  write-only; reading them back is uzram's extension, as is pool_stat.
 *  @return : the text length, -ENOENT for an unknown name, -EACCES for a write-only attribute
 *            (compact, reset, idle), -ERANGE when buf is too small. */
UZ_API int uz_dev_attr_read(struct uz_dev *dev, const char *name, char *buf, size_t len);

/* uz_dev_attr_write() :
 *  Writes attribute `name` as `echo value > /sys/block/zram0/name` would on Linux 6.18, with its
 *  parsing and error codes. As sysfs: a value longer than 4096 bytes is -E2BIG, an empty one
 *  does nothing (0).
 *  - disksize: memparse (0x and 0 prefixes, K M G T P E suffixes, trailing text ignored, no
 *    leading blanks), rounded up to a page; -EINVAL for 0 or nothing parsed, then -EBUSY while
 *    initialised.
 *  - comp_algorithm: one of the listed names, one trailing newline allowed ("lzo-rle" is served
 *    by lzo1x-1; 842 is not available); -E2BIG for 128 bytes or more, -EINVAL for an unknown
 *    name, -EBUSY while pages are stored (the kernel: while initialised). The parameters set by
 *    algorithm_params carry over, as in the kernel; -EINVAL if the new algorithm cannot take
 *    them (e.g. zstd's level 22 for lz4hc; the kernel fails at the next disksize instead).
 *  - algorithm_params: "key=value ..." split as the kernel's next_arg() (blanks separate, double
 *    quotes group); keys priority=N (kstrtoint; only 0, the primary, exists: 1..3 and others
 *    are -EINVAL), algo=NAME (the configured algorithm's name, which wins over priority; it
 *    does not switch algorithms: -EINVAL for any other), level=N, dict=PATH, deflate.winbits=N
 *    (zlib windowBits: -15..-9 raw deflate, 9..15 the zlib format; 0 is -EINVAL); other keys are
 *    ignored; a key without a value is -EINVAL; kstrtoint's -EINVAL/-ERANGE. Each write sets
 *    every parameter of the compressor (those it does not name go back to their default) and
 *    applies at once: -EBUSY while pages are stored, -EINVAL for values the algorithm cannot take
 *    (a level out of range). What an algorithm has no use for is kept but ignored, as in the
 *    kernel (lzo and lzo-rle: level and dict; deflate: dict; all but deflate: winbits). The
 *    dictionary (lz4, lz4hc, zstd) is read before any device lock is taken, from a regular file
 *    only, of at most UZ_COMP_DICT_MAX (1 MiB; the kernel: INT_MAX) bytes; any failure to read
 *    it is -EINVAL, as in the kernel. A failed write changes nothing; a concurrent codec change
 *    makes it -EBUSY.
 *  - mem_limit: memparse, -EINVAL when nothing is parsed; 0 removes the limit.
 *  - mem_used_max: kstrtoul, and only 0 ("0", "0\n", "+0"; not " 0"): resets the high-water mark
 *    to the current use; anything else -EINVAL.
 *  - compact: any value; -EINVAL while uninitialised.
 *  - idle: "all" (one trailing newline allowed) marks every stored slot idle; a number of
 *    seconds (kstrtoull, base 0) marks the slots not read or written for at least that long and
 *    clears the mark of the others (Linux 6.13+); same-filled slots are never idle; any read or
 *    write clears a slot's mark. -EINVAL for anything else or while uninitialised.
 *  - reset: kstrtou16 (-EINVAL, -ERANGE), and 0 is -EINVAL; any other value frees every slot and
 *    restores zram's defaults: uninitialised (disksize 0 until written again), mem_limit 0,
 *    algorithm lz4 with no parameters and no dictionary. Refusing it while a frontend has the
 *    device open (the kernel's -EBUSY) is the frontend's job.
 *  @return : 0, -ENOENT for an unknown name, -EACCES for a read-only attribute, or the errors
 *            above.
 *  Thread-safety: safe; stores that change the codec build it with no lock held and swap it in
 *  under the device's exclusive lock, so I/O is never stalled by a slow dictionary file. */
UZ_API int uz_dev_attr_write(struct uz_dev *dev, const char *name, const char *value);

#ifdef __cplusplus
}
#endif
#endif
