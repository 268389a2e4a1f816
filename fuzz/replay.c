// SPDX-License-Identifier: MIT
/*
 * replay.c - runs a libFuzzer target over a seed directory without libFuzzer, so that every
 * target's corpus is also an ordinary test (under gcc, sanitizers optional).
 *
 * Usage: replay_<target> DIR. Calls LLVMFuzzerInitialize() if the target defines it, then
 * LLVMFuzzerTestOneInput() once per regular file directly under DIR, in name order. A target
 * reports a failure by crashing or aborting; the driver exits 0 after the last input, or 1 when
 * DIR or a file in it cannot be read.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Reads a whole regular file; *buf is malloc'd (never NULL on success). */
static int read_all(int dirfd, const char *name, uint8_t **buf, size_t *len)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size : 0, n = 0;
    uint8_t *p = malloc(cap ? cap : 1);
    if (!p) {
        close(fd);
        return -ENOMEM;
    }
    while (n < cap) {
        ssize_t r = read(fd, p + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *buf = p;
    *len = n;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SEED_DIR\n", argv[0]);
        return 1;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    const char *dir = argv[1];
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct dirent **ents = NULL;
    int count = dirfd < 0 ? -1 : scandir(dir, &ents, NULL, alphasort);
    if (count < 0) {
        fprintf(stderr, "%s: %s\n", dir, strerror(errno));
        return 1;
    }
    unsigned long replayed = 0;
    int status = 0;
    for (int i = 0; i < count; i++) {
        const char *name = ents[i]->d_name;
        struct stat st;
        if (name[0] == '.' || fstatat(dirfd, name, &st, 0) < 0 || !S_ISREG(st.st_mode)) {
            free(ents[i]);
            continue;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        int rc = read_all(dirfd, name, &buf, &len);
        if (rc) {
            fprintf(stderr, "%s/%s: %s\n", dir, name, strerror(-rc));
            status = 1;
        } else {
            LLVMFuzzerTestOneInput(buf, len);
            free(buf);
            replayed++;
        }
        free(ents[i]);
    }
    free(ents);
    close(dirfd);
    printf("replayed %lu inputs\n", replayed);
    return status;
}
