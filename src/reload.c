/*
 * reload — the TLS certificate/key and MRS_USERS_FILE reloaded when they
 * change on disk, and on SIGHUP (see reload.h).
 *
 * Each watched set of files ("tls": certificate and key; "users": the users
 * file; "dkim": MRS_DKIM_KEYS_FILE and the key files) has a fingerprint: the SHA-256 of the contents of its files, in
 * order.  A cheap stat() identity (device, inode, size, mtime, ctime, with
 * symlinks followed) decides whether the contents are read at all; the
 * fingerprint decides whether to reload.  Following symlinks is what makes
 * the Kubernetes Secret volume work: kubelet writes a new timestamped
 * directory and swaps the `..data` symlink, so tls.crt → ..data/tls.crt
 * resolves to a new inode.  A set is reloaded only when its fingerprint
 * differs from the last one tried, so a bad file is reported once, not
 * every interval, and a half-written swap (certificate new, key old) is
 * retried when the key arrives.
 *
 * The DKIM set's files may change with a reload (MRS_DKIM_KEYS_FILE names
 * them): its list is taken again before each look, so a key file that is
 * listed before it exists is loaded when it arrives.
 *
 * Runs on the main thread only (the signal loop); calls auth, tls,
 * dkim_sign, crypto, config, log, stats.
 */
#include "reload.h"

#include "auth.h"
#include "config.h"
#include "crypto.h"
#include "dkim_sign.h"
#include "log.h"
#include "stats.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RELOAD_FILES_MAX (CONFIG_DKIM_KEYS_MAX + 1) /* 4 certificate/key pairs; the DKIM keys and their list */
#define RELOAD_READ_CHUNK_BYTES 4096

struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    int err; /* the stat errno, 0 when it worked */
};

struct watched {
    enum stats_reload what;
    char *paths[RELOAD_FILES_MAX];      /* heap copies, NULL after the last */
    struct file_id ids[RELOAD_FILES_MAX];
    uint8_t tried[CRYPTO_SHA256_BYTES]; /* fingerprint of the last load attempt */
    bool active;
};

static struct watched sets[STATS_RELOAD_COUNT];

static struct file_id identify(const char *path)
{
    struct file_id id;
    struct stat st;
    memset(&id, 0, sizeof id);
    if (stat(path, &st) != 0) {
        id.err = errno ? errno : EIO;
        return id;
    }
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    id.size = st.st_size;
    id.mtime = st.st_mtim;
    id.ctime = st.st_ctim;
    return id;
}

static bool same_id(const struct file_id *a, const struct file_id *b)
{
    return a->err == b->err && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* fingerprint — SHA-256 over each file's length-prefixed contents; an
 * unreadable file contributes its errno, so "missing" is a state too. */
static void fingerprint(const struct watched *w, uint8_t out[CRYPTO_SHA256_BYTES])
{
    struct crypto_sha256_state h;
    crypto_sha256_begin(&h);
    for (int i = 0; i < RELOAD_FILES_MAX && w->paths[i]; i++) {
        int fd = open(w->paths[i], O_RDONLY | O_CLOEXEC);
        int64_t err = fd < 0 ? errno : 0;
        crypto_sha256_add(&h, &err, sizeof err);
        char buf[RELOAD_READ_CHUNK_BYTES];
        ssize_t n;
        while (fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0)
            crypto_sha256_add(&h, buf, (size_t)n);
        if (fd >= 0)
            close(fd);
        crypto_sha256_add(&h, "\n", 1); /* file boundary */
    }
    crypto_sha256_end(&h, out);
}

/* load — (re)load one set now; counts and logs the outcome. */
static void load(struct watched *w, const char *why)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    bool malformed;
    int rc;
    if (w->what == STATS_RELOAD_USERS)
        rc = auth_load(err, sizeof err, &malformed);
    else if (w->what == STATS_RELOAD_DKIM)
        rc = dkim_sign_load(err, sizeof err);
    else
        rc = tls_server_load(config->tls_cert, config->tls_key, config->hostname, err, sizeof err);
    STATS_INC(config_reloads_total[w->what][rc == 0 ? STATS_RELOAD_OK : STATS_RELOAD_ERROR]);
    if (rc < 0) {
        if (w->what == STATS_RELOAD_USERS)
            log_error("reload", NULL, "users not reloaded (%s), the old table stays: %s", why, err);
        else if (w->what == STATS_RELOAD_DKIM)
            log_error("reload", NULL, "DKIM keys not reloaded (%s), the old ones stay: %s", why, err);
        else
            log_error("reload", NULL, "certificate not reloaded (%s), the old one stays: %s", why, err);
        return;
    }
    if (w->what == STATS_RELOAD_USERS)
        log_info("reload", NULL, "users reloaded (%s): %zu", why, auth_user_count());
    else if (w->what == STATS_RELOAD_DKIM)
        log_info("reload", NULL, "DKIM keys reloaded (%s): %zu", why, dkim_sign_key_count());
    else
        log_info("reload", NULL, "certificate reloaded from %s (%s)", config->tls_cert, why);
    if (w->what == STATS_RELOAD_TLS)
        STATS_SET(tls_certificate_expiry_s, tls_server_expiry());
}

static void remember(struct watched *w)
{
    for (int i = 0; i < RELOAD_FILES_MAX && w->paths[i]; i++)
        w->ids[i] = identify(w->paths[i]);
    fingerprint(w, w->tried);
}

/* add_paths — the items of a comma-separated list to w's files. */
static void add_paths(struct watched *w, const char *list)
{
    int n = 0;
    while (n < RELOAD_FILES_MAX && w->paths[n])
        n++;
    for (const char *p = list; *p && n < RELOAD_FILES_MAX;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len && (w->paths[n] = strndup(p, len)))
            n++;
        p = comma ? comma + 1 : p + len;
    }
    w->active = n > 0;
}

/* dkim_paths — take the DKIM set's file list again (see the top). */
static void dkim_paths(struct watched *w)
{
    for (int i = 0; i < RELOAD_FILES_MAX; i++) {
        free(w->paths[i]);
        w->paths[i] = NULL;
    }
    w->active = dkim_sign_paths(w->paths, RELOAD_FILES_MAX) > 0;
}

void reload_init(void)
{
    memset(sets, 0, sizeof sets);
    struct watched *t = &sets[STATS_RELOAD_TLS], *u = &sets[STATS_RELOAD_USERS];
    struct watched *k = &sets[STATS_RELOAD_DKIM];
    t->what = STATS_RELOAD_TLS;
    u->what = STATS_RELOAD_USERS;
    k->what = STATS_RELOAD_DKIM;
    dkim_paths(k);
    if (k->active)
        remember(k);
    if (config->tls_cert[0]) {
        add_paths(t, config->tls_cert);
        add_paths(t, config->tls_key);
        remember(t);
    }
    if (config->users_file[0] && (u->paths[0] = strdup(config->users_file))) {
        u->active = true; /* one path, commas and all */
        remember(u);
    }
    STATS_SET(tls_certificate_expiry_s, tls_server_expiry());
}

void reload_all(void)
{
    /* SIGHUP: the users table also holds MRS_USERS, so it is rebuilt even
     * without a users file; the ephemeral certificate is never replaced */
    struct watched *u = &sets[STATS_RELOAD_USERS], *t = &sets[STATS_RELOAD_TLS];
    load(u, "SIGHUP");
    if (u->active)
        remember(u);
    if (t->active) {
        load(t, "SIGHUP");
        remember(t);
    }
    struct watched *k = &sets[STATS_RELOAD_DKIM];
    if (k->active || config->dkim_key_count > 0) {
        dkim_paths(k);
        remember(k);
        load(k, "SIGHUP");
    }
}

void reload_check(void)
{
    for (int s = 0; s < STATS_RELOAD_COUNT; s++) {
        struct watched *w = &sets[s];
        if (!w->active)
            continue;
        bool moved = false;
        for (int i = 0; i < RELOAD_FILES_MAX && w->paths[i]; i++) {
            struct file_id now = identify(w->paths[i]);
            moved |= !same_id(&now, &w->ids[i]);
            w->ids[i] = now;
        }
        if (!moved)
            continue;
        if (w->what == STATS_RELOAD_DKIM) {
            dkim_paths(w); /* the list file may name other keys now */
            for (int i = 0; i < RELOAD_FILES_MAX && w->paths[i]; i++)
                w->ids[i] = identify(w->paths[i]);
        }
        uint8_t fp[CRYPTO_SHA256_BYTES];
        fingerprint(w, fp);
        if (memcmp(fp, w->tried, sizeof fp) == 0)
            continue; /* touched, or swapped to identical contents */
        memcpy(w->tried, fp, sizeof fp);
        load(w, "changed on disk");
    }
}
