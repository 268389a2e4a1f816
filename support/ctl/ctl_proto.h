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
 * A connection carries any number of request/reply pairs, answered in order, one at a time: the
 * server reads the next request only once the previous reply is sent.
 *
 * Bounds (the server serves every client at once, none can hold it up):
 *   - each request line must arrive whole within UZ_CTL_DEADLINE_MS of the connection or of the
 *     previous reply, and each reply must be taken by the client within UZ_CTL_DEADLINE_MS of
 *     being ready: absolute deadlines, which trickling bytes do not extend; past one the server
 *     closes the connection;
 *   - a line longer than UZ_CTL_LINE_MAX is answered "err E2BIG" and the connection closed;
 *   - at most UZ_CTL_CLIENTS_MAX connections at once: more are answered "err EUSERS" and closed.
 */
#ifndef UZ_CTL_PROTO_H
#define UZ_CTL_PROTO_H

#define UZ_CTL_PROTO       1
#define UZ_CTL_LINE_MAX    4096
#define UZ_CTL_DEADLINE_MS 3000
#define UZ_CTL_CLIENTS_MAX 16
/* Largest reply payload the server produces (pool_stat is the longest attribute). */
#define UZ_CTL_REPLY_MAX (256 * 1024)

#endif
