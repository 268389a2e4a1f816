/* SPDX-License-Identifier: MIT */
/*
 * image.h - loading memory images for the tools and tests: a file of raw 4096-byte pages, or a
 * zstd frame of them (recognised by its magic number, whatever the file is called).
 */
#ifndef UZ_SUPPORT_IMAGE_H
#define UZ_SUPPORT_IMAGE_H

#include <stddef.h>

/* uz_image_load() :
 *  @return : a page-aligned buffer of *npages whole pages (free() it), or NULL with errno set
 *            (ENOENT and such from open/read, EINVAL for a bad zstd frame, ENOMEM). A trailing
 *            partial page is dropped. */
unsigned char *uz_image_load(const char *path, size_t *npages);

#endif
