/*
 * auth — users, SASL, verification, throttling, sending limits (auth.h).
 *
 * Shared state and its locks:
 *   table_mu   guards the pointer to the current users table (refcounted);
 *   t->cache_mu  guards that table's verify cache (direct-mapped, keyed by
 *              HMAC(table key, user NUL password): no password is stored);
 *   argon      a semaphore bounding concurrent Argon2id runs (~64 MiB each);
 *   throttle_mu, rate_mu  the per-address and per-user tables.
 */
#include "auth.h"

#include "config.h"
#include "crypto.h"
#include "log.h"
#include "util.h"

#include <limits.h>

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_CACHE_SLOTS 4096
#define AUTH_USERS_FILE_MAX_BYTES (16 * 1024 * 1024)
#define AUTH_THROTTLE_SETS 1024
#define AUTH_THROTTLE_WAYS 4
#define AUTH_THROTTLE_USERS 4
#define AUTH_THROTTLE_WINDOW_MS (15 * 60 * 1000)
#define AUTH_BLOCK_FAILURES 20
#define AUTH_DELAY_MAX_MS 5000
#define AUTH_RATE_BUCKETS 1024

struct user {
    char *name;
    char *hash;
};

struct users {
    atomic_int refs;
    size_t count, cap; /* cap: power of two, at least twice count */
    struct user *slots;
    uint8_t cache_key[CRYPTO_KEY_BYTES];
    pthread_mutex_t cache_mu;
    uint8_t (*cache)[CRYPTO_SHA256_BYTES]; /* calloc'ed lazily */
};

static bool known_user(const struct sockaddr *client, const char *user, size_t len);

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static struct users *table;
static char dummy_hash[CRYPTO_PWHASH_MAX_BYTES];
static sem_t argon;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

static void users_put(struct users *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    for (size_t i = 0; i < t->cap; i++) {
        free(t->slots[i].name);
        if (t->slots[i].hash) {
            crypto_wipe(t->slots[i].hash, strlen(t->slots[i].hash));
            free(t->slots[i].hash);
        }
    }
    free(t->slots);
    free(t->cache);
    pthread_mutex_destroy(&t->cache_mu);
    free(t);
}

static struct users *users_get(void)
{
    pthread_mutex_lock(&table_mu);
    struct users *t = table;
    if (t)
        atomic_fetch_add(&t->refs, 1);
    pthread_mutex_unlock(&table_mu);
    return t;
}

static struct user *users_find(struct users *t, const char *name, size_t len)
{
    if (!t || t->cap == 0)
        return NULL;
    /* at most cap probes: even a full table cannot make this loop forever */
    size_t i = hash_bytes(name, len) & (t->cap - 1);
    for (size_t probes = 0; probes < t->cap; probes++, i = (i + 1) & (t->cap - 1)) {
        struct user *u = &t->slots[i];
        if (!u->name)
            return NULL;
        if (strlen(u->name) == len && memcmp(u->name, name, len) == 0)
            return u;
    }
    return NULL;
}

static const char *errno_text(int e)
{
    switch (e) {
    case ENOENT: return "no such file";
    case EACCES: return "permission denied";
    case EISDIR: return "is a directory";
    case EFBIG: return "file too large";
    case ENOMEM: return "out of memory";
    default: return "read error";
    }
}

/* add_entry — one "username:hash" entry; where names it for errors. */
static int add_entry(struct users *t, char *entry, const char *where, char *err, size_t err_len)
{
    char *colon = strrchr(entry, ':');
    size_t nlen = colon ? (size_t)(colon - entry) : 0;
    if (!colon || nlen == 0 || nlen > AUTH_USER_MAX_BYTES || !crypto_password_hash_valid(colon + 1)) {
        char clean[64];
        log_sanitize(clean, sizeof clean, entry, colon ? nlen : strnlen(entry, 40));
        snprintf(err, err_len, "%s: invalid entry for '%s': expected username:hash, the hash made by `mrs passwd`",
                 where, clean);
        return -1;
    }
    for (size_t i = 0; i < nlen; i++) {
        unsigned char c = (unsigned char)entry[i];
        if (c <= 0x20 || c == 0x7f) {
            snprintf(err, err_len, "%s: a username holds a space or control character", where);
            return -1;
        }
    }
    if (users_find(t, entry, nlen)) {
        char clean[AUTH_USER_MAX_BYTES + 1];
        log_sanitize(clean, sizeof clean, entry, nlen);
        snprintf(err, err_len, "%s: user '%s' is listed twice", where, clean);
        return -1;
    }
    if (2 * (t->count + 1) > t->cap) { /* auth_load sized the table; never fill it */
        snprintf(err, err_len, "%s: too many entries", where);
        return -1;
    }
    size_t i = hash_bytes(entry, nlen) & (t->cap - 1);
    while (t->slots[i].name)
        i = (i + 1) & (t->cap - 1);
    t->slots[i].name = strndup(entry, nlen);
    t->slots[i].hash = strdup(colon + 1);
    if (!t->slots[i].name || !t->slots[i].hash) {
        snprintf(err, err_len, "%s: out of memory", where);
        return -1;
    }
    t->count++;
    return 0;
}

/* add_text — every entry of a text: lines (file) or space/newline-separated
 * (MRS_USERS); blank lines and # comments skipped. */
#define AUTH_SEPS_FILE "\n"
#define AUTH_SEPS_INLINE " \t\r\n"

static int add_text(struct users *t, char *text, const char *var, const char *path, char *err,
                    size_t err_len)
{
    int line = 0;
    char *save = NULL;
    const char *seps = path ? AUTH_SEPS_FILE : AUTH_SEPS_INLINE;
    for (char *tok = strtok_r(text, seps, &save); tok; tok = strtok_r(NULL, seps, &save)) {
        line++;
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t n = strlen(tok);
        while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t' || tok[n - 1] == '\r'))
            tok[--n] = '\0';
        if (n == 0 || tok[0] == '#')
            continue;
        char where[CONFIG_PATH_MAX_BYTES + 64];
        if (path)
            snprintf(where, sizeof where, "%s: %s line %d", var, path, line);
        else
            snprintf(where, sizeof where, "%s", var);
        if (add_entry(t, tok, where, err, err_len) < 0)
            return -1;
    }
    return 0;
}

/* count_entries_upper_bound — entries of the inline and the file text,
 * counted with the very separators add_text() splits on. */
static size_t count_entries_upper_bound(const char *inline_text, const char *file_text)
{
    size_t n = 2;
    for (const char *s = inline_text; s && *s; s++)
        n += strchr(AUTH_SEPS_INLINE, *s) != NULL;
    for (const char *s = file_text; s && *s; s++)
        n += strchr(AUTH_SEPS_FILE, *s) != NULL;
    return n;
}

static void init_once(void)
{
    sem_init(&argon, 0, (unsigned)(config->auth_concurrency > 0 ? config->auth_concurrency : 1));
    /* A user missing from the table is checked against this hash, so it
     * takes as long to refuse as a wrong password (no user enumeration). */
    uint8_t junk[16];
    crypto_random(junk, sizeof junk);
    if (crypto_password_hash((const char *)junk, sizeof junk, dummy_hash) < 0)
        dummy_hash[0] = '\0';
}

/* inherit_cache — a reload keeps what the old table verified: the entries
 * bind each user's stored hash, so those of changed or removed users can
 * never match.  (Caller holds table_mu; old may be NULL.) */
static void inherit_cache(struct users *t, struct users *old)
{
    if (!old)
        return;
    memcpy(t->cache_key, old->cache_key, sizeof t->cache_key);
    pthread_mutex_lock(&old->cache_mu);
    if (old->cache && (t->cache = malloc(AUTH_CACHE_SLOTS * sizeof *t->cache)))
        memcpy(t->cache, old->cache, AUTH_CACHE_SLOTS * sizeof *t->cache);
    pthread_mutex_unlock(&old->cache_mu);
}

int auth_load(char *err, size_t err_len, bool *malformed)
{
    pthread_once(&once, init_once);
    *malformed = false;
    char *file_text = NULL, *inline_text = NULL;
    struct users *t = calloc(1, sizeof *t);
    if (!t)
        goto oom;
    atomic_init(&t->refs, 1);
    pthread_mutex_init(&t->cache_mu, NULL);
    crypto_random(t->cache_key, sizeof t->cache_key);
    if (config->users_file[0]) {
        file_text = config_read_file(config->users_file, AUTH_USERS_FILE_MAX_BYTES, NULL);
        if (!file_text) {
            snprintf(err, err_len, "MRS_USERS_FILE: cannot read %s: %s", config->users_file,
                     errno_text(errno));
            goto fail;
        }
    }
    if (config->users_inline && !(inline_text = strdup(config->users_inline)))
        goto oom;
    size_t n = count_entries_upper_bound(inline_text, file_text);
    for (t->cap = 16; t->cap < 2 * n; t->cap *= 2)
        ;
    if (!(t->slots = calloc(t->cap, sizeof *t->slots)))
        goto oom;
    if ((inline_text && add_text(t, inline_text, "MRS_USERS", NULL, err, err_len) < 0) ||
        (file_text && add_text(t, file_text, "MRS_USERS_FILE", config->users_file, err, err_len) < 0)) {
        *malformed = true;
        goto fail;
    }
    pthread_mutex_lock(&table_mu);
    struct users *old = table;
    inherit_cache(t, old);
    table = t;
    pthread_mutex_unlock(&table_mu);
    users_put(old);
    free(file_text);
    free(inline_text);
    return 0;
oom:
    snprintf(err, err_len, "loading users: out of memory");
fail:
    free(file_text);
    free(inline_text);
    users_put(t);
    return -1;
}

size_t auth_user_count(void)
{
    struct users *t = users_get();
    size_t n = t ? t->count : 0;
    users_put(t);
    return n;
}

/* cache_tag — HMAC(cache key, user, stored hash, password): binding the
 * stored hash lets a reload keep the cache (an entry of a user whose hash
 * changed can never match again) and no password is kept. */
static void cache_tag(struct users *t, const char *user, size_t ulen, const char *hash, const char *pw,
                      size_t plen, uint8_t tag[CRYPTO_SHA256_BYTES])
{
    /* length-prefixed and NUL-separated so "ab"+"c" and "a"+"bc" differ */
    size_t hlen = strlen(hash), n = 3 + ulen + hlen + plen;
    char *buf = malloc(n);
    if (!buf) {
        memset(tag, 0, CRYPTO_SHA256_BYTES);
        return;
    }
    buf[0] = (char)ulen;
    memcpy(buf + 1, user, ulen);
    buf[1 + ulen] = '\0';
    memcpy(buf + 2 + ulen, hash, hlen);
    buf[2 + ulen + hlen] = '\0';
    memcpy(buf + 3 + ulen + hlen, pw, plen);
    crypto_keyed_hash(t->cache_key, buf, n, tag);
    crypto_wipe(buf, n);
    free(buf);
}

static bool cache_hit(struct users *t, const uint8_t tag[CRYPTO_SHA256_BYTES])
{
    bool hit = false;
    size_t slot = (size_t)(tag[0] | tag[1] << 8 | tag[2] << 16) % AUTH_CACHE_SLOTS;
    pthread_mutex_lock(&t->cache_mu);
    if (t->cache)
        hit = crypto_equal(t->cache[slot], tag, CRYPTO_SHA256_BYTES);
    pthread_mutex_unlock(&t->cache_mu);
    return hit;
}

static void cache_add(struct users *t, const uint8_t tag[CRYPTO_SHA256_BYTES])
{
    size_t slot = (size_t)(tag[0] | tag[1] << 8 | tag[2] << 16) % AUTH_CACHE_SLOTS;
    pthread_mutex_lock(&t->cache_mu);
    if (!t->cache)
        t->cache = calloc(AUTH_CACHE_SLOTS, sizeof *t->cache);
    if (t->cache)
        memcpy(t->cache[slot], tag, CRYPTO_SHA256_BYTES);
    pthread_mutex_unlock(&t->cache_mu);
}

enum auth_result auth_verify(const char *user, size_t user_len, const char *pw, size_t pw_len,
                             const struct sockaddr *client)
{
    struct users *t = users_get();
    if (!t)
        return AUTH_FAIL;
    struct user *u = users_find(t, user, user_len);
    const char *hash = u ? u->hash : dummy_hash;
    uint8_t tag[CRYPTO_SHA256_BYTES];
    cache_tag(t, user, user_len, hash, pw, pw_len, tag);
    /* A blocked client gets no password check at all, except for a user
     * who already authenticated from it with a password the relay still
     * has verified (the customer behind an attacker's NAT): otherwise the
     * cache would answer a blocked guesser instantly. */
    bool blocked = client && auth_blocked(client);
    if (u && cache_hit(t, tag) && (!blocked || known_user(client, user, user_len))) {
        crypto_wipe(tag, sizeof tag);
        users_put(t);
        return AUTH_OK;
    }
    if (blocked) {
        crypto_wipe(tag, sizeof tag);
        users_put(t);
        return AUTH_BLOCKED;
    }
    while (sem_wait(&argon) != 0 && errno == EINTR)
        ;
    if (client && auth_blocked(client)) {
        sem_post(&argon);
        crypto_wipe(tag, sizeof tag);
        users_put(t);
        return AUTH_BLOCKED;
    }
    /* many sessions of one client after a restart ask at once: those that
     * waited here find the password verified by the first one */
    if (u && cache_hit(t, tag)) {
        sem_post(&argon);
        crypto_wipe(tag, sizeof tag);
        users_put(t);
        return AUTH_OK;
    }
    log_debug("auth", NULL, "verifying a password with Argon2id");
    int rc = hash[0] ? crypto_password_verify(hash, pw, pw_len) : -1;
    if (rc == 0 && u)
        cache_add(t, tag); /* before the next waiter's turn */
    sem_post(&argon);
    crypto_wipe(tag, sizeof tag);
    users_put(t);
    return rc == 0 && u ? AUTH_OK : AUTH_FAIL;
}

/* ---- SASL ---------------------------------------------------------------- */

int auth_decode_line(const char *b64, size_t len, char *out, size_t cap, size_t *out_len)
{
    if (cap == 0 || crypto_base64_decode(b64, len, (uint8_t *)out, cap - 1, out_len) < 0)
        return -1;
    if (memchr(out, '\0', *out_len))
        return -1;
    out[*out_len] = '\0';
    return 0;
}

int auth_decode_plain(const char *b64, size_t len, char *user, size_t *user_len, char *pw,
                      size_t *pw_len)
{
    size_t cap = AUTH_USER_MAX_BYTES * 2 + AUTH_PASSWORD_MAX_BYTES + 3, n;
    uint8_t *buf = malloc(cap);
    int rc = -1;
    if (!buf || crypto_base64_decode(b64, len, buf, cap, &n) < 0)
        goto done;
    const uint8_t *z1 = memchr(buf, 0, n);
    const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, n - (size_t)(z1 + 1 - buf)) : NULL;
    if (!z2)
        goto done;
    size_t azlen = (size_t)(z1 - buf), ulen = (size_t)(z2 - z1 - 1), plen = n - (size_t)(z2 + 1 - buf);
    if (ulen == 0 || ulen > AUTH_USER_MAX_BYTES || plen > AUTH_PASSWORD_MAX_BYTES ||
        memchr(z2 + 1, 0, plen))
        goto done;
    /* RFC 4616 §2: an authorization identity other than the user is refused */
    if (azlen != 0 && (azlen != ulen || memcmp(buf, z1 + 1, ulen) != 0)) {
        rc = AUTH_PLAIN_OTHER_AUTHZID;
        goto done;
    }
    memcpy(user, z1 + 1, ulen);
    user[ulen] = '\0';
    memcpy(pw, z2 + 1, plen);
    pw[plen] = '\0';
    *user_len = ulen;
    *pw_len = plen;
    rc = 0;
done:
    if (buf) {
        crypto_wipe(buf, cap);
        free(buf);
    }
    return rc;
}

/* ---- throttling per client address ---------------------------------------- */

/* One client's recent failures.  The table is set-associative: a new client
 * replaces the entry of its set that was quiet longest, so an attacker
 * cannot reset its own counter by making a colliding address fail once
 * (and the set index is keyed with a per-process secret, so colliding
 * addresses cannot be chosen). */
struct throttle {
    uint8_t key[UTIL_CLIENT_KEY_BYTES];
    uint32_t failures;
    int64_t last_ms;
    uint64_t users[AUTH_THROTTLE_USERS]; /* seeded hashes of users who authenticated from here */
};

static pthread_mutex_t throttle_mu = PTHREAD_MUTEX_INITIALIZER;
static struct throttle throttles[AUTH_THROTTLE_SETS][AUTH_THROTTLE_WAYS];
static uint64_t throttle_seed;

static void throttle_seed_once(void)
{
    crypto_random(&throttle_seed, sizeof throttle_seed);
}

/* throttle_slot — the entry for this client (caller holds throttle_mu),
 * reset when its window passed; NULL when absent and !create. */
static struct throttle *throttle_slot(const struct sockaddr *sa, bool create)
{
    static pthread_once_t seeded = PTHREAD_ONCE_INIT;
    pthread_once(&seeded, throttle_seed_once);
    uint8_t key[UTIL_CLIENT_KEY_BYTES];
    util_client_key(sa, key);
    uint64_t h = hash_bytes(key, sizeof key) ^ throttle_seed;
    struct throttle *set = throttles[hash_bytes(&h, sizeof h) % AUTH_THROTTLE_SETS], *t = NULL;
    int64_t now = util_now_ms();
    for (int i = 0; i < AUTH_THROTTLE_WAYS && !t; i++)
        if (set[i].last_ms && memcmp(set[i].key, key, sizeof key) == 0)
            t = &set[i];
    if (!t) {
        if (!create)
            return NULL;
        t = &set[0];
        for (int i = 1; i < AUTH_THROTTLE_WAYS; i++)
            if (set[i].last_ms < t->last_ms)
                t = &set[i];
        memcpy(t->key, key, sizeof key);
        t->failures = 0;
        t->last_ms = now;
        memset(t->users, 0, sizeof t->users);
    }
    if (now - t->last_ms > AUTH_THROTTLE_WINDOW_MS)
        t->failures = 0;
    return t;
}

static uint64_t user_hash(const char *user, size_t len)
{
    uint64_t h = hash_bytes(user, len) ^ throttle_seed;
    return hash_bytes(&h, sizeof h) | 1; /* never 0: 0 is a free slot */
}

/* known_user — whether user authenticated from this client before. */
static bool known_user(const struct sockaddr *client, const char *user, size_t len)
{
    bool known = false;
    pthread_mutex_lock(&throttle_mu);
    struct throttle *t = throttle_slot(client, false);
    uint64_t h = t ? user_hash(user, len) : 0;
    for (int i = 0; t && i < AUTH_THROTTLE_USERS; i++)
        known |= t->users[i] == h;
    pthread_mutex_unlock(&throttle_mu);
    return known;
}

void auth_success(const struct sockaddr *client, const char *user, size_t len)
{
    pthread_mutex_lock(&throttle_mu);
    struct throttle *t = throttle_slot(client, true);
    uint64_t h = user_hash(user, len);
    int free_slot = -1;
    bool have = false;
    for (int i = 0; i < AUTH_THROTTLE_USERS; i++) {
        have |= t->users[i] == h;
        if (t->users[i] == 0 && free_slot < 0)
            free_slot = i;
    }
    if (!have) {
        /* newest first; the oldest drops out when all are taken */
        int n = free_slot < 0 ? AUTH_THROTTLE_USERS - 1 : free_slot;
        memmove(t->users + 1, t->users, (size_t)n * sizeof *t->users);
        t->users[0] = h;
    }
    pthread_mutex_unlock(&throttle_mu);
}

int64_t auth_failure(const struct sockaddr *client)
{
    pthread_mutex_lock(&throttle_mu);
    struct throttle *t = throttle_slot(client, true);
    if (t->failures < UINT32_MAX)
        t->failures++;
    t->last_ms = util_now_ms();
    uint32_t n = t->failures;
    pthread_mutex_unlock(&throttle_mu);
    int64_t delay = 500LL << (n > 5 ? 5 : n - 1);
    return delay > AUTH_DELAY_MAX_MS ? AUTH_DELAY_MAX_MS : delay;
}

bool auth_blocked(const struct sockaddr *client)
{
    pthread_mutex_lock(&throttle_mu);
    struct throttle *t = throttle_slot(client, false);
    bool blocked = t && t->failures >= AUTH_BLOCK_FAILURES;
    pthread_mutex_unlock(&throttle_mu);
    return blocked;
}

/* ---- per-user sending limit (token bucket) -------------------------------- */

struct rate {
    struct rate *next;
    double tokens;
    int64_t last_ms;
    char user[];
};

static pthread_mutex_t rate_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rate *rates[AUTH_RATE_BUCKETS];

/* rate_find — the bucket of user, refilled to now (caller holds rate_mu). */
static struct rate *rate_find(const char *user)
{
    size_t len = strlen(user);
    struct rate **head = &rates[hash_bytes(user, len) % AUTH_RATE_BUCKETS];
    struct rate *r;
    for (r = *head; r; r = r->next)
        if (strcmp(r->user, user) == 0)
            break;
    int64_t now = util_now_ms();
    double cap = (double)config->rate_limit_count;
    if (!r) {
        if (!(r = malloc(sizeof *r + len + 1)))
            return NULL;
        memcpy(r->user, user, len + 1);
        r->tokens = cap;
        r->last_ms = now;
        r->next = *head;
        *head = r;
    }
    r->tokens += (double)(now - r->last_ms) * cap / (double)config->rate_limit_window_ms;
    if (r->tokens > cap)
        r->tokens = cap;
    r->last_ms = now;
    return r;
}

bool auth_rate_allow(const char *user)
{
    if (config->rate_limit_count == 0)
        return true;
    pthread_mutex_lock(&rate_mu);
    struct rate *r = rate_find(user);
    bool ok = !r || r->tokens >= 1.0;
    pthread_mutex_unlock(&rate_mu);
    return ok;
}

void auth_rate_count(const char *user)
{
    if (config->rate_limit_count == 0)
        return;
    pthread_mutex_lock(&rate_mu);
    struct rate *r = rate_find(user);
    if (r)
        r->tokens -= 1.0;
    pthread_mutex_unlock(&rate_mu);
}
