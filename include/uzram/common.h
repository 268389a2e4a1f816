/* SPDX-License-Identifier: MIT */
/*
 * common.h - definitions shared by every public uzram header: the export macro, the page
 * size and the library version.
 */
#ifndef UZRAM_COMMON_H
#define UZRAM_COMMON_H

#if defined(__GNUC__)
#define UZ_API __attribute__((visibility("default")))
#else
#define UZ_API
#endif

#define UZ_VERSION_MAJOR  0
#define UZ_VERSION_MINOR  1
#define UZ_VERSION_PATCH  0
#define UZ_VERSION_STRING "0.1.0"

/* Every slot, zspage page and device page is this many bytes. */
#define UZ_PAGE_SIZE  4096u
#define UZ_PAGE_SHIFT 12

#endif
