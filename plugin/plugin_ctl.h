/* SPDX-License-Identifier: MIT */
/*
 * plugin_ctl.h - the plugin's ctl socket: a thread serving a device's zram attributes to
 * uzramctl over the line protocol of support/ctl/ctl_proto.h.
 *
 * Split in two steps to fit nbdkit's life cycle: bind in .get_ready (errors still reach the
 * user), start the thread in .after_fork (threads do not survive nbdkit's fork).
 */
#ifndef UZ_PLUGIN_CTL_H
#define UZ_PLUGIN_CTL_H

struct uz_dev;
struct uz_plugin_ctl;

/* uz_plugin_ctl_write_fn : performs a `set NAME VALUE` request, in place of
 * uz_dev_attr_write(dev, name, value) (e.g. to refuse a reset while clients are connected).
 * Called from the ctl thread; returns 0 or -errno like uz_dev_attr_write(). */
typedef int (*uz_plugin_ctl_write_fn)(void *arg, struct uz_dev *dev, const char *name,
                                      const char *value);

/* uz_plugin_ctl_bind() :
 *  Creates and listens on the Unix socket `path` (mode 0600). A stale socket nobody listens on
 *  is replaced; a live one, or a path that is not a socket, is left alone.
 *  @return : 0, -EADDRINUSE, -EEXIST (not a socket), -ENAMETOOLONG, or -errno. */
int uz_plugin_ctl_bind(const char *path, struct uz_plugin_ctl **out);

/* uz_plugin_ctl_start() :
 *  Starts serving `dev`, which must outlive uz_plugin_ctl_stop(). `write` (NULL:
 *  uz_dev_attr_write) performs set requests, with `arg`.
 *  @return : 0, or -errno of pthread_create/pipe. */
int uz_plugin_ctl_start(struct uz_plugin_ctl *ctl, struct uz_dev *dev, uz_plugin_ctl_write_fn write,
                        void *arg);

/* uz_plugin_ctl_stop() : stops the thread (if started) at once, whatever its clients do, closes
 *  every connection, closes and unlinks the socket, frees everything. NULL is a no-op. */
void uz_plugin_ctl_stop(struct uz_plugin_ctl *ctl);

#endif
