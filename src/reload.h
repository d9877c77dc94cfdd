/*
 * reload — keep the TLS certificate/key and the users file current without
 * a restart (SPEC §8.6): on SIGHUP, and when they change on disk (checked
 * every MRS_RELOAD_INTERVAL by the main thread), including the symlink swap
 * of a Kubernetes Secret volume.  A new file that does not load is refused
 * and the old one stays in force, as with SIGHUP.  Counts
 * mrs_config_reloads_total{what,result} and keeps
 * mrs_tls_certificate_expiry_timestamp_seconds.
 *
 * Main thread only.  Calls auth, tls, crypto, config, log, stats.
 */
#ifndef MRS_RELOAD_H
#define MRS_RELOAD_H

/* reload_init — remember what was loaded at start (after tls_server_load
 * and auth_load succeeded). */
void reload_init(void);

/* reload_all — SIGHUP: reload users and certificate now. */
void reload_all(void);

/* reload_check — reload whatever changed on disk since the last look. */
void reload_check(void);

#endif
