/*
 * mta_sts_cache — discovery, HTTPS fetch and the two caches (see
 * mta_sts_cache.h).
 *
 * The memory cache is a small array of heap entries under one mutex, held
 * only to copy an entry in or out; the fetch itself runs under the
 * domain's stripe lock.  The disk cache is one file per domain, written
 * to a temporary name, fsynced and renamed (then the directory fsynced),
 * so a crash leaves the old file or the new one.
 */
#include "mta_sts_cache.h"

#include "config.h"
#include "conn.h"
#include "dns.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STRIPES 32
#define DOMAIN_MAX 253
#define RESPONSE_CAP (MTA_STS_HEAD_MAX_BYTES + MTA_STS_BODY_MAX_BYTES + 1)
#define FETCH_ADDRS_MAX 4
#define DISK_MAGIC "MRS-MTA-STS 1\n"

struct entry {
    char domain[DOMAIN_MAX + 1];
    bool have;                            /* a policy was fetched once (it may be expired) */
    struct mta_sts_policy policy;
    char id[MTA_STS_ID_MAX_BYTES + 1];
    int64_t expires_ms;                   /* wall clock */
    char failed_id[MTA_STS_ID_MAX_BYTES + 1]; /* the last fetch of this id failed … */
    int64_t retry_ms;                     /* … and is not repeated before this (wall clock) */
    int64_t used_ms;
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct entry *cache[MTA_STS_CACHE_ENTRIES];
static pthread_mutex_t stripe[STRIPES];
static pthread_once_t stripe_once = PTHREAD_ONCE_INIT;

static void stripe_init(void)
{
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&stripe[i], NULL);
}

static unsigned stripe_of(const char *d)
{
    uint32_t h = 2166136261u; /* FNV-1a: spreading, not secrecy */
    for (; *d; d++)
        h = (h ^ (unsigned char)*d) * 16777619u;
    return h % STRIPES;
}

/* ---- memory cache ------------------------------------------------------------------ */

static bool mem_get(const char *d, struct entry *out)
{
    bool found = false;
    pthread_mutex_lock(&cache_mu);
    for (size_t i = 0; i < MTA_STS_CACHE_ENTRIES && cache[i]; i++)
        if (strcmp(cache[i]->domain, d) == 0) {
            cache[i]->used_ms = util_now_ms();
            *out = *cache[i];
            found = true;
            break;
        }
    pthread_mutex_unlock(&cache_mu);
    return found;
}

/* mem_put — store e, replacing the domain's entry, or the least recently
 * used one when full. */
static void mem_put(const struct entry *e)
{
    size_t slot = 0;
    pthread_mutex_lock(&cache_mu);
    for (size_t i = 0; i < MTA_STS_CACHE_ENTRIES; i++) {
        if (!cache[i] || strcmp(cache[i]->domain, e->domain) == 0) {
            slot = i;
            break;
        }
        if (cache[i]->used_ms < cache[slot]->used_ms)
            slot = i;
    }
    if (!cache[slot])
        cache[slot] = malloc(sizeof *cache[slot]);
    if (cache[slot]) {
        *cache[slot] = *e;
        cache[slot]->used_ms = util_now_ms();
    }
    pthread_mutex_unlock(&cache_mu);
}

/* ---- disk cache --------------------------------------------------------------------- */

static int disk_path(char *out, size_t cap, const char *d, bool tmp)
{
    int n = snprintf(out, cap, "%s/mta-sts/%s%s%s", config->spool_dir, tmp ? "." : "", d, tmp ? ".tmp" : "");
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* disk_save — the policy body as fetched, behind a small header. */
static void disk_save(const struct entry *e, const char *body, size_t len)
{
    char dir[CONFIG_PATH_MAX_BYTES + 16], tmp[CONFIG_PATH_MAX_BYTES + DOMAIN_MAX + 32],
        path[CONFIG_PATH_MAX_BYTES + DOMAIN_MAX + 32], head[256];
    snprintf(dir, sizeof dir, "%s/mta-sts", config->spool_dir);
    if (disk_path(tmp, sizeof tmp, e->domain, true) < 0 || disk_path(path, sizeof path, e->domain, false) < 0)
        return;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        goto fail;
    int hl = snprintf(head, sizeof head, DISK_MAGIC "domain %s\nid %s\nexpires %lld\n\n", e->domain, e->id,
                      (long long)e->expires_ms);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto fail;
    int rc = write_all(fd, head, (size_t)hl) == 0 && write_all(fd, body, len) == 0 && fsync(fd) == 0 ? 0 : -1;
    if (close(fd) != 0 || rc < 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        goto fail;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return;
fail:
    log_warn("mta-sts", NULL, "cannot save the policy of %s in %s (errno %d): kept in memory only", e->domain, dir,
             errno);
}

/* header_value — the value of "key " on a line of buf[0..n), or NULL. */
static const char *header_value(const char *buf, size_t n, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(buf + i, '\n', n - i);
        size_t l = nl ? (size_t)(nl - buf - i) : n - i;
        if (l == 0)
            break;
        if (l > kl && memcmp(buf + i, key, kl) == 0 && buf[i + kl] == ' ') {
            *len = l - kl - 1;
            return buf + i + kl + 1;
        }
        i += l + 1;
    }
    return NULL;
}

/* parse_saved — a saved file's text: its header must name domain d. */
static bool parse_saved(const char *buf, size_t n, const char *d, struct entry *e, char *err, size_t err_len)
{
    size_t ml = strlen(DISK_MAGIC), hend = 0, l = 0;
    if (n < ml || memcmp(buf, DISK_MAGIC, ml) != 0) {
        snprintf(err, err_len, "not an MRS-MTA-STS 1 file");
        return false;
    }
    for (size_t i = ml; i + 1 < n && !hend; i++)
        if (buf[i] == '\n' && buf[i + 1] == '\n')
            hend = i + 2;
    const char *dom = hend ? header_value(buf + ml, hend - ml, "domain", &l) : NULL;
    if (!dom || l != strlen(d) || memcmp(dom, d, l) != 0) {
        snprintf(err, err_len, "header missing or for another domain");
        return false;
    }
    size_t el = 0;
    const char *id = header_value(buf + ml, hend - ml, "id", &l);
    const char *ex = header_value(buf + ml, hend - ml, "expires", &el);
    if (!id || l == 0 || l > MTA_STS_ID_MAX_BYTES || !ex || el == 0) {
        snprintf(err, err_len, "id or expires missing");
        return false;
    }
    memcpy(e->id, id, l);
    e->id[l] = '\0';
    e->expires_ms = 0;
    for (size_t i = 0; i < el && i < 19; i++) {
        if (ex[i] < '0' || ex[i] > '9') {
            snprintf(err, err_len, "expires is not a number");
            return false;
        }
        e->expires_ms = e->expires_ms * 10 + (ex[i] - '0');
    }
    if (mta_sts_parse_policy(buf + hend, n - hend, &e->policy, err, err_len) < 0)
        return false;
    util_copy(e->domain, sizeof e->domain, d, strlen(d));
    e->have = true;
    return true;
}

/* disk_load — the domain's saved policy (after a restart).  false when
 * there is none, or it does not parse (it is then ignored, and logged). */
static bool disk_load(const char *d, struct entry *e)
{
    char path[CONFIG_PATH_MAX_BYTES + DOMAIN_MAX + 32], err[160];
    if (disk_path(path, sizeof path, d, false) < 0)
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char *buf = malloc(RESPONSE_CAP);
    size_t n = 0;
    while (buf && n < RESPONSE_CAP) {
        ssize_t r = read(fd, buf + n, RESPONSE_CAP - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    bool ok = buf && parse_saved(buf, n, d, e, err, sizeof err);
    if (buf && !ok)
        log_warn("mta-sts", NULL, "ignoring the saved policy %s: %s", path, err);
    free(buf);
    return ok;
}

/* ---- the HTTPS fetch ---------------------------------------------------------------- */

/* get_once — GET the policy from one address of host: the body into buf
 * (*body, *len inside it), or -1 with err. */
static int get_once(const struct dns_addr *a, const char *host, int64_t end, char *buf, const char **body,
                    size_t *len, char *err, size_t err_len)
{
    struct dns_addr to = *a;
    struct conn c;
    char req[512];
    int64_t cend = util_now_ms() + config->delivery_connect_timeout_ms;
    dns_addr_set_port(&to, config->mta_sts_port);
    int fd = conn_connect(&to.u.sa, (unsigned)to.len, cend < end ? cend : end);
    if (fd < 0) {
        snprintf(err, err_len, "connect to %s:%u failed (errno %d)", host, (unsigned)config->mta_sts_port, errno);
        return -1;
    }
    if (conn_init(&c, fd, 16 * 1024) < 0) {
        close(fd);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    int rc = -1;
    enum conn_status st = conn_tls_client(&c, end, host, TLS_VERIFY_OUTBOUND);
    if (st != CONN_OK) {
        snprintf(err, err_len, "TLS with %s: %s", host, c.tls_error);
        goto out;
    }
    snprintf(req, sizeof req, "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: %s\r\nUser-Agent: mrs/%s\r\n"
             "Accept: text/plain\r\nConnection: close\r\n\r\n", host, MRS_VERSION);
    st = conn_write(&c, end, req, strlen(req));
    if (st == CONN_OK)
        st = conn_flush(&c, end);
    size_t n = 0;
    for (bool eof = false; st == CONN_OK;) {
        const char *data;
        size_t got = 0;
        st = conn_peek(&c, end, &data, &got);
        if (st == CONN_EOF) {
            eof = true;
            st = CONN_OK;
        } else if (st == CONN_OK) {
            size_t take = got < RESPONSE_CAP - n ? got : RESPONSE_CAP - n;
            memcpy(buf + n, data, take);
            n += take;
            conn_consume(&c, take);
        } else {
            break;
        }
        enum mta_sts_http h = mta_sts_parse_http(buf, n, eof || n == RESPONSE_CAP, body, len, err, err_len);
        if (h == MTA_STS_HTTP_DONE)
            rc = 0;
        if (h != MTA_STS_HTTP_MORE)
            goto out;
    }
    snprintf(err, err_len, "https://%s/.well-known/mta-sts.txt: %s", host, conn_status_name(st));
out:
    conn_close(&c);
    return rc;
}

/* fetch — the policy of domain d from https://mta-sts.<d>/, every address
 * of the host in turn (none inside MRS_DELIVERY_DENY_NETS), within end.
 * 0 with *p and the body saved on disk, or -1 with err. */
static int fetch(struct entry *e, int64_t end, char *err, size_t err_len)
{
    char host[DOMAIN_MAX + 16];
    struct dns_addr addrs[FETCH_ADDRS_MAX];
    size_t na = 0;
    snprintf(host, sizeof host, "mta-sts.%s", e->domain);
    snprintf(err, err_len, "%s has no address", host);
    for (int t = 0; t < 2; t++) {
        struct dns_result *r = NULL;
        enum dns_status st = dns_lookup(host, t ? DNS_TYPE_AAAA : DNS_TYPE_A, 0, &r);
        for (size_t i = 0; st == DNS_OK && i < r->count && na < FETCH_ADDRS_MAX; i++)
            if (!config_addr_in_nets(&r->addr[i].u.sa, config->deny_nets, config->deny_net_count))
                addrs[na++] = r->addr[i];
        if (st != DNS_OK && !dns_status_permanent(st))
            snprintf(err, err_len, "%s: %s lookup %s", host, t ? "AAAA" : "A", dns_status_name(st));
        dns_result_free(r);
    }
    char *buf = malloc(RESPONSE_CAP);
    int rc = -1;
    for (size_t i = 0; buf && i < na && rc < 0 && util_now_ms() < end; i++) {
        const char *body;
        size_t len;
        char why[160];
        if (get_once(&addrs[i], host, end, buf, &body, &len, err, err_len) < 0)
            continue;
        if (mta_sts_parse_policy(body, len, &e->policy, why, sizeof why) < 0) {
            snprintf(err, err_len, "https://%s/.well-known/mta-sts.txt: invalid policy: %s", host, why);
            break; /* another address would serve the same file */
        }
        e->have = true;
        e->expires_ms = util_wall_ms() + e->policy.max_age_s * 1000;
        disk_save(e, body, len);
        rc = 0;
    }
    free(buf);
    return rc;
}

/* ---- discovery ------------------------------------------------------------------------ */

/* txt_id — the id of the one STSv1 record at _mta-sts.<d>: 1 with id; 0
 * for no record (none, several, malformed: RFC 8461 §3.1); -1 for a
 * temporary DNS failure, described in why. */
static int txt_id(const char *d, char id[MTA_STS_ID_MAX_BYTES + 1], char *why, size_t why_len)
{
    char name[DOMAIN_MAX + 16];
    struct dns_result *r = NULL;
    int found = 0;
    snprintf(name, sizeof name, "_mta-sts.%s", d);
    enum dns_status st = dns_lookup(name, DNS_TYPE_TXT, 0, &r);
    if (st == DNS_OK) {
        for (size_t i = 0; i < r->count; i++) {
            char one[MTA_STS_ID_MAX_BYTES + 1];
            int k = mta_sts_parse_txt(r->txt[i].data, r->txt[i].len, one);
            if (k != 0) {
                found = found || k < 0 ? -1 : 1; /* several, or a malformed one: none */
                memcpy(id, one, sizeof one);
            }
        }
        if (found <= 0)
            snprintf(why, why_len, found < 0 ? "%s: several or malformed STSv1 records" : "%s: no STSv1 record", name);
        dns_result_free(r);
        return found > 0 ? 1 : 0;
    }
    snprintf(why, why_len, "%s TXT lookup: %s", name, dns_status_name(st));
    dns_result_free(r);
    return dns_status_permanent(st) ? 0 : -1;
}

static void use(struct mta_sts_result *out, const struct entry *e, const char *source)
{
    out->have = true;
    out->policy = e->policy;
    memcpy(out->id, e->id, sizeof out->id);
    out->source = source;
}

void mta_sts_cache_lookup(const char *domain, int64_t deadline_ms, struct mta_sts_result *out)
{
    char d[DOMAIN_MAX + 1], id[MTA_STS_ID_MAX_BYTES + 1] = "";
    struct entry *e = calloc(1, sizeof *e);
    memset(out, 0, sizeof *out);
    out->source = "none";
    size_t n = strlen(domain);
    if (n > 0 && domain[n - 1] == '.')
        n--;
    if (!e || n == 0 || n > DOMAIN_MAX) {
        snprintf(out->note, sizeof out->note, e ? "not a domain name" : "out of memory");
        free(e);
        return;
    }
    for (size_t i = 0; i < n; i++)
        d[i] = util_lower(domain[i]);
    d[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!((d[i] >= 'a' && d[i] <= 'z') || (d[i] >= '0' && d[i] <= '9') || d[i] == '-' || d[i] == '.' || d[i] == '_') ||
            (d[i] == '.' && (i == 0 || d[i - 1] == '.'))) {
            snprintf(out->note, sizeof out->note, "not an LDH domain name: no MTA-STS lookup");
            free(e);
            return;
        }
    pthread_once(&stripe_once, stripe_init);
    pthread_mutex_t *mu = &stripe[stripe_of(d)];
    pthread_mutex_lock(mu);
    if (!mem_get(d, e) && !disk_load(d, e))
        util_copy(e->domain, sizeof e->domain, d, n);
    int64_t now = util_wall_ms();
    bool valid = e->have && e->expires_ms > now;
    int txt = txt_id(d, id, out->note, sizeof out->note);
    if (txt > 0 && valid && strcmp(id, e->id) == 0) {
        use(out, e, "cached");
        snprintf(out->note, sizeof out->note, "policy id %s, mode %s", id, mta_sts_mode_name(e->policy.mode));
    } else if (txt > 0 && strcmp(id, e->failed_id) == 0 && now < e->retry_ms) {
        snprintf(out->note, sizeof out->note, "the fetch of policy id %s failed less than %d s ago", id,
                 MTA_STS_RETRY_AFTER_MS / 1000);
        if (valid)
            use(out, e, "cached (refresh failed)");
    } else if (txt > 0) {
        struct entry next = *e;
        int64_t end = util_now_ms() + (config->delivery_command_timeout_ms < MTA_STS_FETCH_MAX_MS
                                           ? config->delivery_command_timeout_ms : MTA_STS_FETCH_MAX_MS);
        if (deadline_ms > 0 && deadline_ms < end)
            end = deadline_ms;
        memcpy(next.id, id, sizeof next.id);
        if (fetch(&next, end, out->note, sizeof out->note) == 0) {
            next.failed_id[0] = '\0';
            *e = next;
            use(out, e, "fetched");
            snprintf(out->note, sizeof out->note, "policy id %s fetched, mode %s, max_age %lld", id,
                     mta_sts_mode_name(e->policy.mode), (long long)e->policy.max_age_s);
        } else {
            memcpy(e->failed_id, id, sizeof e->failed_id);
            e->retry_ms = now + MTA_STS_RETRY_AFTER_MS;
            log_warn("mta-sts", NULL, "%s: policy fetch failed: %s%s", d, out->note,
                     valid ? "; the cached policy stays in force until it expires" : "; delivering as without MTA-STS");
            if (valid)
                use(out, e, "cached (refresh failed)");
        }
    } else if (valid) {
        use(out, e, "cached"); /* RFC 8461 §3.3: a removed record does not end a cached policy */
    }
    mem_put(e);
    pthread_mutex_unlock(mu);
    free(e);
}
