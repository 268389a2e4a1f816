/* SPDX-License-Identifier: MIT */
/*
 * ctl_proto.h - the line protocol between the nbdkit plugin's ctl socket (plugin/plugin_ctl.c)
 * and uzramctl (tools/uzramctl.c). A Unix stream socket, created with mode 0600.
 *
 * Requests are single lines of at most UZ_CTL_LINE_MAX bytes, newline included:
 *   get NAME            the attribute's text, exactly as uz_dev_attr_read() formats it
 *   set NAME VALUE      uz_dev_attr_write(NAME, VALUE); VALUE is the rest of the line
 *   list                one line per attribute: "NAME MODE" with MODE "r", "w" or "rw"
 *   version             "uzram-ctl PROTO LIBVERSION\n"
 * Each reply is either
 *   "ok LEN\n" followed by exactly LEN bytes of payload (empty for set), or
 *   "err ERRNO MESSAGE\n" with ERRNO a positive errno value and MESSAGE its strerror text.
 * A connection carries any number of request/reply pairs; the server closes it at EOF, after a
 * line that is too long, or after UZ_CTL_IDLE_MS without a complete request.
 */
#ifndef UZ_CTL_PROTO_H
#define UZ_CTL_PROTO_H

#define UZ_CTL_PROTO    1
#define UZ_CTL_LINE_MAX 4096
#define UZ_CTL_IDLE_MS  10000
/* Largest reply payload the server produces (pool_stat is the longest attribute). */
#define UZ_CTL_REPLY_MAX (256 * 1024)

#endif
