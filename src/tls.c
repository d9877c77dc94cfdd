/*
 * tls — mbedTLS behind the small interface of tls.h.
 *
 * Shared state: one entropy source + CTR-DRBG (mbedTLS locks it), one
 * session-ticket key context (kept across reloads so tickets stay valid),
 * the current server configuration (refcounted, swapped under conf_mu) and
 * two client configurations built once at start.  Per thread: a cache of
 * small blocks for mbedTLS's allocations inside a handshake step.
 */
#include "tls.h"

#include "bufpool.h"
#include "dane.h"
#include "log.h"
#include "p256.h"
#include "sha256_ni.h"
#include "psa_sodium.h"

#include <errno.h>
#include <malloc.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define TLS_TICKET_LIFETIME_S 86400
#define TLS_CERT_DER_MAX_BYTES 2048
#define TLS_WHAT_MAX_BYTES 1100
#define TLS_PATH_MAX_BYTES 1024 /* one path of a list (MRS_TLS_CERT is at most this long) */
#define TLS_SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

/* A server configuration: up to TLS_PAIRS_MAX certificate/key pairs
 * (SPEC §8.2), ECDSA ones offered first. */
struct server_conf {
    atomic_int refs;
    mbedtls_ssl_config conf;
    int pairs;
    mbedtls_x509_crt chain[TLS_PAIRS_MAX];
    mbedtls_pk_context key[TLS_PAIRS_MAX];
};

/* Bytes read from the socket ahead of what mbedTLS asked for: a record's
 * 5-byte header and its body (or several small records) come with one
 * recv.  Small, because every session keeps it: commands, replies and the
 * client's handshake messages fit; a larger record's body is read straight
 * into mbedTLS's buffer. */
#define TLS_READ_AHEAD_BYTES 512
/* A handshake flight (ServerHello to Finished, or the client's Finished)
 * is collected and sent with one send: buffers of this size are shared
 * from a small pool and held only inside tls_handshake(). */
#define TLS_FLIGHT_BYTES 8192
#define TLS_FLIGHT_POOL 16

struct tls_conn {
    mbedtls_ssl_context ssl;
    struct server_conf *sc; /* NULL for client contexts */
    int fd;
    const struct dane_set *dane; /* DANE client: the TLSA records the certificate must match */
    bool dane_ok;                /* and it did */
    bool dane_failed;            /* no TLSA record matched: tls_handshake says so */
    bool close_notify;           /* the peer ended the stream with close_notify */
    bool flight;                 /* inside tls_handshake: sends go to out */
    bool hs_done;                /* the handshake completed; out may still hold its end */
    bool sent;                   /* a flight just left: the peer's answer cannot be there yet */
    unsigned char *out;          /* a pool buffer while a flight is collected or unsent */
    size_t out_len;
    uint16_t ra_pos, ra_len;     /* unread bytes are ra[ra_pos..ra_len) */
    unsigned char ra[TLS_READ_AHEAD_BYTES];
};

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static mbedtls_ssl_ticket_context tickets;
static pthread_mutex_t conf_mu = PTHREAD_MUTEX_INITIALIZER;
static struct server_conf *current;
static mbedtls_ssl_config client_opportunistic, client_strict, client_outbound;
static mbedtls_x509_crt ca_chain, outbound_chain;
static bool client_ready, outbound_ready;

static const uint16_t tls_groups[] = {
    MBEDTLS_SSL_IANA_TLS_GROUP_X25519, MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_NONE};

/* ---- a per-thread cache for mbedTLS's small blocks ----------------------------
 *
 * mbedTLS's bignum code allocates and frees tens of thousands of small
 * blocks in every handshake, and musl's malloc serializes all of them on
 * one process-wide lock, so concurrent handshakes queue there.  A block of
 * 16 to 1023 bytes freed inside mbedtls_ssl_handshake() goes to the
 * thread's short free list for the largest power of two it holds
 * (malloc_usable_size) and serves the thread's next request up to that
 * size.  While the handshake waits for the peer the lists keep
 * TLS_CACHE_KEEP blocks each (at most 8 KB: the next flight's first
 * blocks come from them, not from malloc — emptied after every call, a
 * third of a handshake's ~350 blocks went to malloc); when the handshake is
 * over they are emptied, so an established session holds no cached block.
 * Blocks are plain malloc blocks of the size first asked for (no header,
 * no rounding). */
#define TLS_CACHE_CLASSES 6        /* 16, 32, 64, 128, 256, 512 bytes */
#define TLS_CACHE_MIN 16
#define TLS_CACHE_DEPTH 64         /* blocks kept per class and thread */
#define TLS_CACHE_KEEP 8           /* and while waiting for the peer */

struct cache_block {
    struct cache_block *next;
};

static _Thread_local struct {
    struct cache_block *head[TLS_CACHE_CLASSES];
    unsigned count[TLS_CACHE_CLASSES];
    bool active;               /* inside mbedtls_ssl_handshake() */
    bool setup;                /* inside mbedtls_ssl_setup() */
} tcache;

/* cache_trim — give this thread's cached blocks beyond `keep` per class
 * back to malloc. */
static void cache_trim(unsigned keep)
{
    for (int c = 0; c < TLS_CACHE_CLASSES; c++) {
        while (tcache.head[c] && tcache.count[c] > keep) {
            struct cache_block *b = tcache.head[c];
            tcache.head[c] = b->next;
            free(b);
            tcache.count[c]--;
        }
    }
}

/* A connection's two record buffers (16 KiB in, 8 KiB out, plus headers),
 * allocated in mbedtls_ssl_setup(), have a pool each (bufpool.h; the size
 * is learnt there), so a connection costs no mmap/munmap pair for them.
 * A kept block is zeroed; a new one comes from calloc, whose untouched
 * pages cost no memory until they are used. */
#define TLS_RECORD_BUF_MIN 8192
#define TLS_RECORD_BUF_MAX (32 * 1024)
#define TLS_RECORD_BUF_POOL 16
static struct bufpool record_pool[2] = {BUFPOOL_INIT(0, TLS_RECORD_BUF_POOL), BUFPOOL_INIT(0, TLS_RECORD_BUF_POOL)};
static pthread_mutex_t record_pool_mu = PTHREAD_MUTEX_INITIALIZER;

/* record_pool_for — the pool of blocks of len bytes; inside
 * mbedtls_ssl_setup() a pool without a size yet takes len.  NULL when
 * there is none. */
static struct bufpool *record_pool_for(size_t len)
{
    if (len <= TLS_RECORD_BUF_MIN || len > TLS_RECORD_BUF_MAX)
        return NULL;
    struct bufpool *p = NULL;
    pthread_mutex_lock(&record_pool_mu);
    for (size_t i = 0; i < sizeof record_pool / sizeof record_pool[0] && !p; i++) {
        if (record_pool[i].size == 0 && tcache.setup)
            record_pool[i].size = len;
        if (record_pool[i].size == len)
            p = &record_pool[i];
    }
    pthread_mutex_unlock(&record_pool_mu);
    return p;
}

static void *cache_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    size_t len = n * size;
    struct bufpool *pool = record_pool_for(len);
    void *kept = pool ? bufpool_take(pool) : NULL;
    if (kept) {
        memset(kept, 0, len);
        return kept;
    }
    for (int c = 0; tcache.active && c < TLS_CACHE_CLASSES; c++) {
        size_t class_len = (size_t)TLS_CACHE_MIN << c;
        if (len > class_len)
            continue;
        struct cache_block *b = tcache.head[c];
        if (!b)
            break;
        tcache.head[c] = b->next;
        tcache.count[c]--;
        memset(b, 0, len);
        return b;
    }
    /* calloc, not malloc + memset: the untouched pages of a fresh big block
     * (the 16 KiB input buffer) cost no memory until they are used */
    return calloc(1, len ? len : 1);
}

static void cache_free(void *p)
{
    if (!p)
        return;
    size_t usable = malloc_usable_size(p);
    struct bufpool *pool = record_pool_for(usable);
    if (pool) {
        bufpool_put(pool, p);
        return;
    }
    if (!tcache.active)
        usable = 0;
    int c = TLS_CACHE_CLASSES - 1;
    while (c >= 0 && usable < (size_t)TLS_CACHE_MIN << c)
        c--;
    if (c < 0 || usable >= (size_t)TLS_CACHE_MIN << TLS_CACHE_CLASSES ||
        tcache.count[c] >= TLS_CACHE_DEPTH) {
        free(p);
        return;
    }
    struct cache_block *b = p;
    b->next = tcache.head[c];
    tcache.head[c] = b;
    tcache.count[c]++;
}

static void describe(int ret, char *err, size_t err_len, const char *what)
{
    char buf[128];
    mbedtls_strerror(ret, buf, sizeof buf);
    snprintf(err, err_len, "%s: %s (-0x%04x)", what, buf, (unsigned)-ret);
}

int tls_init(char *err, size_t err_len)
{
    static const char pers[] = "mrs";
    /* before any mbedTLS allocation: blocks must come from cache_calloc */
    if (mbedtls_platform_set_calloc_free(cache_calloc, cache_free) != 0) {
        snprintf(err, err_len, "TLS memory set-up failed");
        return -1;
    }
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    int ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                                    (const unsigned char *)pers, sizeof pers - 1);
    if (ret != 0) {
        describe(ret, err, err_len, "seeding the TLS random generator");
        return -1;
    }
    if (psa_crypto_init() != PSA_SUCCESS) {
        snprintf(err, err_len, "PSA crypto initialisation failed");
        return -1;
    }
    /* SHA-256 blocks (RFC 6979 nonces, signed content, DKIM bodies) on the
     * SHA instructions, where the CPU has them */
    sha256_ni_install();
    /* ECDSA P-256 signatures (CertificateVerify) on src/p256.c */
    p256_mbedtls_hook_install();
    /* AES-256-GCM records (and tickets) on libsodium, where the CPU allows */
    psa_sodium_gcm_install();
    mbedtls_ssl_ticket_init(&tickets);
    ret = mbedtls_ssl_ticket_setup(&tickets, mbedtls_ctr_drbg_random, &drbg,
                                   MBEDTLS_CIPHER_AES_256_GCM, TLS_TICKET_LIFETIME_S);
    if (ret != 0) {
        describe(ret, err, err_len, "session ticket setup");
        return -1;
    }
    return 0;
}

/* common_conf — what every configuration shares: TLS 1.2–1.3 only, our
 * groups, the shared random generator.  The cipher suites are fixed at
 * build time (vendor/mbedtls_config.h: ECDHE + AEAD only). */
static int common_conf(mbedtls_ssl_config *c, int endpoint)
{
    int ret = mbedtls_ssl_config_defaults(c, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0)
        return ret;
    mbedtls_ssl_conf_rng(c, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_min_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_max_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_3);
    mbedtls_ssl_conf_groups(c, tls_groups);
    return 0;
}

static void server_conf_put(struct server_conf *sc)
{
    if (sc && atomic_fetch_sub(&sc->refs, 1) == 1) {
        mbedtls_ssl_config_free(&sc->conf);
        for (int i = 0; i < TLS_PAIRS_MAX; i++) {
            mbedtls_x509_crt_free(&sc->chain[i]);
            mbedtls_pk_free(&sc->key[i]);
        }
        free(sc);
    }
}

/* make_ephemeral — an ECDSA P-256 key and a self-signed certificate for
 * hostname, valid from a day ago for a year. */
static int make_ephemeral(struct server_conf *sc, const char *hostname, char *err, size_t err_len)
{
    mbedtls_x509write_cert w;
    unsigned char *der = NULL;
    char name[300], from[16], to[16];
    unsigned char serial[16];
    int ret;
    mbedtls_x509write_crt_init(&w);
    if ((ret = mbedtls_pk_setup(&sc->key[0], mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY))) != 0 ||
        (ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(sc->key[0]),
                                   mbedtls_ctr_drbg_random, &drbg)) != 0)
        goto fail;
    time_t now = time(NULL), a = now - 86400, b = now + 365 * 86400;
    struct tm ta, tb;
    gmtime_r(&a, &ta);
    gmtime_r(&b, &tb);
    strftime(from, sizeof from, "%Y%m%d%H%M%S", &ta);
    strftime(to, sizeof to, "%Y%m%d%H%M%S", &tb);
    snprintf(name, sizeof name, "CN=%s", hostname);
    mbedtls_ctr_drbg_random(&drbg, serial, sizeof serial);
    serial[0] = (serial[0] & 0x7f) | 0x40; /* positive, and no leading zero byte (DER) */
    mbedtls_x509_san_list san = {.next = NULL};
    san.node.type = MBEDTLS_X509_SAN_DNS_NAME;
    san.node.san.unstructured_name.p = (unsigned char *)(uintptr_t)hostname;
    san.node.san.unstructured_name.len = strlen(hostname);
    mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, &sc->key[0]);
    mbedtls_x509write_crt_set_issuer_key(&w, &sc->key[0]);
    if ((ret = mbedtls_x509write_crt_set_subject_name(&w, name)) != 0 ||
        (ret = mbedtls_x509write_crt_set_issuer_name(&w, name)) != 0 ||
        (ret = mbedtls_x509write_crt_set_serial_raw(&w, serial, sizeof serial)) != 0 ||
        (ret = mbedtls_x509write_crt_set_validity(&w, from, to)) != 0 ||
        (ret = mbedtls_x509write_crt_set_basic_constraints(&w, 0, -1)) != 0 ||
        (ret = mbedtls_x509write_crt_set_subject_alternative_name(&w, &san)) != 0)
        goto fail;
    der = malloc(TLS_CERT_DER_MAX_BYTES);
    if (!der) {
        ret = MBEDTLS_ERR_X509_ALLOC_FAILED;
        goto fail;
    }
    ret = mbedtls_x509write_crt_der(&w, der, TLS_CERT_DER_MAX_BYTES, mbedtls_ctr_drbg_random, &drbg);
    if (ret < 0)
        goto fail;
    /* the DER is written at the end of the buffer */
    ret = mbedtls_x509_crt_parse_der(&sc->chain[0], der + TLS_CERT_DER_MAX_BYTES - ret, (size_t)ret);
    if (ret != 0)
        goto fail;
    free(der);
    mbedtls_x509write_crt_free(&w);
    return 0;
fail:
    describe(ret, err, err_len, "making the ephemeral certificate");
    free(der);
    mbedtls_x509write_crt_free(&w);
    return -1;
}

static int load_files(mbedtls_x509_crt *chain, mbedtls_pk_context *key, const char *cert_path,
                      const char *key_path, char *err, size_t err_len)
{
    int ret = mbedtls_x509_crt_parse_file(chain, cert_path);
    if (ret != 0) {
        char what[TLS_WHAT_MAX_BYTES];
        snprintf(what, sizeof what, "MRS_TLS_CERT %s", cert_path);
        describe(ret, err, err_len, what);
        return -1;
    }
    ret = mbedtls_pk_parse_keyfile(key, key_path, NULL, mbedtls_ctr_drbg_random, &drbg);
    if (ret != 0) {
        char what[TLS_WHAT_MAX_BYTES];
        snprintf(what, sizeof what, "MRS_TLS_KEY %s", key_path);
        describe(ret, err, err_len, what);
        return -1;
    }
    if (mbedtls_pk_check_pair(&chain->pk, key, mbedtls_ctr_drbg_random, &drbg) != 0) {
        snprintf(err, err_len, "MRS_TLS_KEY %s does not match the certificate in MRS_TLS_CERT %s",
                 key_path, cert_path);
        return -1;
    }
    return 0;
}

/* chain_bytes — the size of the TLS 1.3 Certificate handshake message for
 * this chain (RFC 8446 §4.4.2: header, context, list, per entry a length,
 * the DER and an empty extension list); TLS 1.2's is smaller.  It must fit
 * in one outgoing record buffer (MBEDTLS_SSL_OUT_CONTENT_LEN). */
static size_t chain_bytes(const mbedtls_x509_crt *chain)
{
    size_t n = 4 + 1 + 3;
    for (const mbedtls_x509_crt *c = chain; c && c->raw.len; c = c->next)
        n += 3 + c->raw.len + 2;
    return n;
}

/* next_item — the next comma-separated item of *list into out; false at
 * the end or when an item is empty or too long. */
static bool next_item(const char **list, char *out, size_t cap)
{
    const char *p = *list, *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (!*p || n == 0 || n >= cap)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    *list = comma ? comma + 1 : p + n;
    return true;
}

/* load_pairs — every "cert,cert" / "key,key" pair into sc. */
static int load_pairs(struct server_conf *sc, const char *certs, const char *keys, char *err,
                      size_t err_len)
{
    char cert[TLS_PATH_MAX_BYTES], key[TLS_PATH_MAX_BYTES];
    while (*certs || *keys) {
        if (sc->pairs == TLS_PAIRS_MAX) {
            snprintf(err, err_len, "MRS_TLS_CERT: at most %d certificates", TLS_PAIRS_MAX);
            return -1;
        }
        if (!next_item(&certs, cert, sizeof cert) || !next_item(&keys, key, sizeof key)) {
            snprintf(err, err_len, "MRS_TLS_CERT and MRS_TLS_KEY must list as many files, comma-separated");
            return -1;
        }
        if (load_files(&sc->chain[sc->pairs], &sc->key[sc->pairs], cert, key, err, err_len) < 0)
            return -1;
        if (chain_bytes(&sc->chain[sc->pairs]) > MBEDTLS_SSL_OUT_CONTENT_LEN) {
            snprintf(err, err_len, "MRS_TLS_CERT %s: the certificate chain needs %zu bytes in the "
                     "handshake, more than the %d this build sends in one message; leave out the root "
                     "and unneeded intermediates", cert, chain_bytes(&sc->chain[sc->pairs]),
                     MBEDTLS_SSL_OUT_CONTENT_LEN);
            return -1;
        }
        sc->pairs++;
    }
    return 0;
}

/* own_certs — hand the pairs to mbedTLS, ECDSA first: in TLS 1.3 it takes
 * the first pair that fits the client's preferred signature algorithm, in
 * TLS 1.2 the first that fits the cipher suite (ECDSA suites first), so a
 * client that accepts ECDSA gets the ECDSA certificate. */
static int own_certs(struct server_conf *sc)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < sc->pairs; i++) {
            bool ec = mbedtls_pk_can_do(&sc->key[i], MBEDTLS_PK_ECDSA);
            if (ec != (pass == 0))
                continue;
            int ret = mbedtls_ssl_conf_own_cert(&sc->conf, &sc->chain[i], &sc->key[i]);
            if (ret != 0)
                return ret;
        }
    }
    return 0;
}

int tls_server_load(const char *cert_path, const char *key_path, const char *hostname,
                    char *err, size_t err_len)
{
    struct server_conf *sc = calloc(1, sizeof *sc);
    if (!sc) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    atomic_init(&sc->refs, 1);
    mbedtls_ssl_config_init(&sc->conf);
    for (int i = 0; i < TLS_PAIRS_MAX; i++) {
        mbedtls_x509_crt_init(&sc->chain[i]);
        mbedtls_pk_init(&sc->key[i]);
    }
    int ret;
    if (!cert_path || !cert_path[0]) {
        if (make_ephemeral(sc, hostname, err, err_len) != 0)
            goto fail;
        sc->pairs = 1;
    } else if (load_pairs(sc, cert_path, key_path ? key_path : "", err, err_len) < 0) {
        goto fail;
    }
    if ((ret = common_conf(&sc->conf, MBEDTLS_SSL_IS_SERVER)) != 0 || (ret = own_certs(sc)) != 0) {
        describe(ret, err, err_len, "TLS server configuration");
        goto fail;
    }
    mbedtls_ssl_conf_session_tickets_cb(&sc->conf, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse,
                                        &tickets);
    mbedtls_ssl_conf_new_session_tickets(&sc->conf, 1);
    pthread_mutex_lock(&conf_mu);
    struct server_conf *old = current;
    current = sc;
    pthread_mutex_unlock(&conf_mu);
    server_conf_put(old);
    return 0;
fail:
    server_conf_put(sc);
    return -1;
}

/* days_from_civil — days since 1970-01-01 of a proleptic Gregorian date
 * (the usual era arithmetic; no libc time zone involved). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int64_t tls_server_expiry(void)
{
    pthread_mutex_lock(&conf_mu);
    int64_t t = 0;
    for (int i = 0; current && i < current->pairs; i++) {
        const mbedtls_x509_time *v = &current->chain[i].valid_to; /* the leaf's */
        int64_t end = days_from_civil(v->year, v->mon, v->day) * 86400 + v->hour * 3600 + v->min * 60 + v->sec;
        if (t == 0 || end < t)
            t = end; /* the first to expire is the one to watch */
    }
    pthread_mutex_unlock(&conf_mu);
    return t;
}

int tls_client_init(const char *ca_file, char *err, size_t err_len)
{
    int rc = 0;
    mbedtls_x509_crt_init(&ca_chain);
    mbedtls_ssl_config_init(&client_opportunistic);
    mbedtls_ssl_config_init(&client_strict);
    const char *path = ca_file && ca_file[0] ? ca_file : TLS_SYSTEM_CA_BUNDLE;
    int ret = mbedtls_x509_crt_parse_file(&ca_chain, path);
    if (ret < 0) {
        char what[TLS_WHAT_MAX_BYTES];
        snprintf(what, sizeof what, "CA bundle %s", path);
        describe(ret, err, err_len, what);
        rc = -1;
    }
    if (common_conf(&client_opportunistic, MBEDTLS_SSL_IS_CLIENT) != 0 ||
        common_conf(&client_strict, MBEDTLS_SSL_IS_CLIENT) != 0) {
        snprintf(err, err_len, "TLS client configuration failed");
        return -1;
    }
    /* RFC 7435 opportunistic: verify and report, never refuse. */
    mbedtls_ssl_conf_authmode(&client_opportunistic, MBEDTLS_SSL_VERIFY_OPTIONAL);
    mbedtls_ssl_conf_ca_chain(&client_opportunistic, &ca_chain, NULL);
    mbedtls_ssl_conf_authmode(&client_strict, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&client_strict, &ca_chain, NULL);
    /* keep TLS 1.3 tickets for tls_session_get (tls_recv reads on past them) */
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
        &client_opportunistic, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
        &client_strict, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
    client_ready = true;
    return rc;
}

int tls_client_outbound_init(const char *ca_file, char *err, size_t err_len)
{
    int rc = 0;
    mbedtls_x509_crt_init(&outbound_chain);
    mbedtls_ssl_config_init(&client_outbound);
    const char *path = ca_file && ca_file[0] ? ca_file : TLS_SYSTEM_CA_BUNDLE;
    int ret = mbedtls_x509_crt_parse_file(&outbound_chain, path);
    if (ret < 0) {
        char what[TLS_WHAT_MAX_BYTES];
        snprintf(what, sizeof what, "CA bundle %s", path);
        describe(ret, err, err_len, what);
        rc = -1;
    }
    if (common_conf(&client_outbound, MBEDTLS_SSL_IS_CLIENT) != 0) {
        snprintf(err, err_len, "TLS client configuration failed");
        return -1;
    }
    mbedtls_ssl_conf_authmode(&client_outbound, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&client_outbound, &outbound_chain, NULL);
    /* opportunistic sessions report "verified" against the same bundle */
    mbedtls_ssl_conf_ca_chain(&client_opportunistic, &outbound_chain, NULL);
    outbound_ready = true;
    return rc;
}

static struct bufpool flight_pool = BUFPOOL_INIT(TLS_FLIGHT_BYTES, TLS_FLIGHT_POOL);

/* ---- BIO callbacks on a non-blocking socket -------------------------------------- */

static int send_error(void)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    return errno == ECONNRESET || errno == EPIPE ? MBEDTLS_ERR_NET_CONN_RESET
                                                  : MBEDTLS_ERR_NET_SEND_FAILED;
}

/* out_flush — send the collected bytes: 0 once none is left (the buffer
 * then goes back to the pool unless a flight is being collected),
 * MBEDTLS_ERR_SSL_WANT_WRITE, or an error. */
static int out_flush(struct tls_conn *t)
{
    size_t off = 0;
    int ret = 0;
    while (off < t->out_len) {
        ssize_t n = send(t->fd, t->out + off, t->out_len - off, MSG_NOSIGNAL);
        if (n < 0) {
            ret = send_error();
            break;
        }
        off += (size_t)n;
        t->sent = true;
    }
    size_t left = t->out_len - off;
    if (off > 0 && left > 0 && left <= TLS_FLIGHT_BYTES)
        memmove(t->out, t->out + off, left);
    t->out_len = left;
    if (t->out_len == 0 && !t->flight) {
        bufpool_put(&flight_pool, t->out);
        t->out = NULL;
    }
    return ret;
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct tls_conn *t = ctx;
    if (t->flight && !t->out)
        t->out = bufpool_get(&flight_pool); /* NULL: no coalescing, sent as it comes */
    if (t->out && len > TLS_FLIGHT_BYTES - t->out_len) {
        int ret = out_flush(t);
        if (ret != 0)
            return ret;
    }
    if (t->out && t->flight && len <= TLS_FLIGHT_BYTES - t->out_len) {
        memcpy(t->out + t->out_len, buf, len);
        t->out_len += len;
        return (int)len;
    }
    if (t->out_len > 0) { /* a flight's end not sent yet: it goes first */
        int ret = out_flush(t);
        if (ret != 0)
            return ret;
    }
    ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
    return n < 0 ? send_error() : (int)n;
}

/* read_ahead — whether bytes are read ahead: mbedTLS may stop with
 * WANT_READ after a record that gave it nothing to return (poll would not
 * see what is already here), so the caller calls it again first. */
static bool read_ahead(const struct tls_conn *t)
{
    return t->ra_pos < t->ra_len;
}

/* bio_recv — from the read-ahead bytes, else one recv of up to
 * TLS_READ_AHEAD_BYTES (straight into buf when it asks for as much).
 * Before it waits for the peer, the collected flight leaves; right after
 * we sent, the peer's answer cannot be there yet, so inside the handshake
 * it reports WANT_READ without a recv that would fail: the caller polls,
 * then reads. */
static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct tls_conn *t = ctx;
    if (t->ra_pos < t->ra_len) {
        size_t n = (size_t)(t->ra_len - t->ra_pos);
        if (n > len)
            n = len;
        memcpy(buf, t->ra + t->ra_pos, n);
        t->ra_pos += (uint16_t)n;
        return (int)n;
    }
    if (t->out_len > 0) {
        int ret = out_flush(t);
        if (ret != 0)
            return ret;
    }
    if (t->sent) {
        t->sent = false;
        /* only inside the handshake: after it, a caller may read without
         * waiting (drop_pipelined_sasl, an adopted outbound session) and
         * must see what the socket already holds */
        if (t->flight)
            return MBEDTLS_ERR_SSL_WANT_READ;
    }
    bool direct = len >= sizeof t->ra;
    ssize_t n = recv(t->fd, direct ? buf : t->ra, direct ? len : sizeof t->ra, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return MBEDTLS_ERR_SSL_WANT_READ;
        return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
    }
    if (direct || n == 0)
        return (int)n;
    t->ra_pos = 0;
    t->ra_len = (uint16_t)n;
    return bio_recv(ctx, buf, len);
}

static struct tls_conn *conn_new(int fd, const mbedtls_ssl_config *c, struct server_conf *sc)
{
    struct tls_conn *t = calloc(1, sizeof *t);
    if (!t) {
        server_conf_put(sc);
        return NULL;
    }
    t->fd = fd;
    t->sc = sc;
    mbedtls_ssl_init(&t->ssl);
    tcache.setup = true;
    int ret = mbedtls_ssl_setup(&t->ssl, c);
    tcache.setup = false;
    if (ret != 0) {
        tls_conn_free(t);
        return NULL;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    return t;
}

struct tls_conn *tls_server_new(int fd)
{
    pthread_mutex_lock(&conf_mu);
    struct server_conf *sc = current;
    if (sc)
        atomic_fetch_add(&sc->refs, 1);
    pthread_mutex_unlock(&conf_mu);
    if (!sc)
        return NULL;
    return conn_new(fd, &sc->conf, sc);
}

struct tls_conn *tls_client_new(int fd, const char *sni, enum tls_verify verify)
{
    if (!client_ready || (verify == TLS_VERIFY_OUTBOUND && !outbound_ready))
        return NULL;
    const mbedtls_ssl_config *c = verify == TLS_VERIFY_SMARTHOST  ? &client_strict
                                  : verify == TLS_VERIFY_OUTBOUND ? &client_outbound
                                                                  : &client_opportunistic;
    struct tls_conn *t = conn_new(fd, c, NULL);
    if (t && sni && mbedtls_ssl_set_hostname(&t->ssl, sni) != 0) {
        tls_conn_free(t);
        return NULL;
    }
    return t;
}

/* ---- DANE (RFC 7672 §3) -------------------------------------------------------
 *
 * A DANE client context uses the opportunistic configuration (the CA
 * bundle plays no part) with its own verify callback: mbedTLS calls it for
 * each certificate of the chain it built, the leaf last (depth 0), whose
 * `next` list is the chain as the server presented it.  The verdict is
 * taken there: a match clears every flag, anything else ends the handshake
 * (a fatal callback error is not excused by VERIFY_OPTIONAL), so no byte
 * of the session is sent to a server that does not match. */

/* dane_ta_verifies — the leaf (with the presented chain after it) verifies
 * up to ta as the only trust anchor, for host (RFC 7672 §3.1.2: DANE-TA
 * checks the name). */
static bool dane_ta_verifies(mbedtls_x509_crt *leaf, const mbedtls_x509_crt *ta, const char *host)
{
    mbedtls_x509_crt anchor;
    uint32_t flags = 0;
    mbedtls_x509_crt_init(&anchor);
    int ret = mbedtls_x509_crt_parse_der(&anchor, ta->raw.p, ta->raw.len);
    if (ret == 0)
        ret = mbedtls_x509_crt_verify_with_profile(leaf, &anchor, NULL, &mbedtls_x509_crt_profile_default, host,
                                                   &flags, NULL, NULL);
    mbedtls_x509_crt_free(&anchor);
    return ret == 0 && flags == 0;
}

/* dane_chain_matches — DANE-EE on the leaf (certificate or key, no name or
 * date checks: RFC 7672 §3.1.1), else DANE-TA on an issuer the server sent. */
static bool dane_chain_matches(const struct dane_set *s, mbedtls_x509_crt *leaf)
{
    if (dane_match(s, DANE_USAGE_EE, leaf->raw.p, leaf->raw.len, leaf->pk_raw.p, leaf->pk_raw.len))
        return true;
    if (!dane_has_usage(s, DANE_USAGE_TA))
        return false;
    for (const mbedtls_x509_crt *c = leaf->next; c && c->raw.p; c = c->next)
        if (dane_match(s, DANE_USAGE_TA, c->raw.p, c->raw.len, c->pk_raw.p, c->pk_raw.len) &&
            dane_ta_verifies(leaf, c, s->host))
            return true;
    return false;
}

static int dane_verify(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    struct tls_conn *t = ctx;
    if (depth > 0) {
        *flags = 0; /* PKIX does not matter: judged at the leaf, on the TLSA records */
        return 0;
    }
    if (dane_chain_matches(t->dane, crt)) {
        *flags = 0;
        t->dane_ok = true;
        return 0;
    }
    t->dane_failed = true;
    return MBEDTLS_ERR_X509_FATAL_ERROR;
}

struct tls_conn *tls_client_new_dane(int fd, const char *sni, const struct dane_set *dane)
{
    if (!client_ready || !dane)
        return NULL;
    struct tls_conn *t = conn_new(fd, &client_opportunistic, NULL);
    if (!t)
        return NULL;
    if (sni && mbedtls_ssl_set_hostname(&t->ssl, sni) != 0) {
        tls_conn_free(t);
        return NULL;
    }
    t->dane = dane;
    mbedtls_ssl_set_verify(&t->ssl, dane_verify, t);
    return t;
}

void tls_conn_free(struct tls_conn *t)
{
    if (!t)
        return;
    mbedtls_ssl_free(&t->ssl);
    server_conf_put(t->sc);
    bufpool_put(&flight_pool, t->out);
    free(t);
    cache_trim(0); /* a handshake given up half-way kept some (the thread may end next) */
}

/* verify_failure — why the peer's certificate was refused: the usual
 * reasons by name (MTA-STS diagnostics quote them), else mbedTLS's text. */
static void verify_failure(uint32_t flags, char *err, size_t err_len)
{
    static const struct {
        uint32_t flag;
        const char *text;
    } known[] = {
        {MBEDTLS_X509_BADCERT_NOT_TRUSTED, "certificate not trusted"},
        {MBEDTLS_X509_BADCERT_CN_MISMATCH, "certificate name mismatch"},
        {MBEDTLS_X509_BADCERT_EXPIRED, "certificate expired"},
    };
    size_t used = 0;
    err[0] = '\0';
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (flags & known[i].flag) {
            int n = snprintf(err + used, err_len - used, "%s%s", used ? ", " : "", known[i].text);
            used = n > 0 && (size_t)n < err_len - used ? used + (size_t)n : err_len - 1;
            flags &= ~known[i].flag;
        }
    if (flags == 0 && used > 0)
        return;
    char info[256];
    int n = mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
    while (n > 0 && (info[n - 1] == '\n'))
        info[--n] = '\0';
    snprintf(err + used, err_len - used, "%scertificate verification failed: %s", used ? ", " : "",
             n > 0 ? info : "unknown");
}

int tls_handshake(struct tls_conn *t, char *err, size_t err_len)
{
    int ret = t->out_len > 0 ? out_flush(t) : 0; /* the end of the last flight first */
    if (ret == 0 && !t->hs_done) {
        tcache.active = true;
        t->flight = true;
        ret = mbedtls_ssl_handshake(&t->ssl);
        for (int i = 0; i < TLS_READ_AHEAD_BYTES && ret == MBEDTLS_ERR_SSL_WANT_READ && read_ahead(t); i++)
            ret = mbedtls_ssl_handshake(&t->ssl);
        t->flight = false;
        tcache.active = false;
        /* an established (or failed) session holds no cached block */
        cache_trim(ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE ? TLS_CACHE_KEEP : 0);
        /* what the call collected leaves now (an alert too); a WANT_READ
         * flushed it already.  Whatever the socket does not take yet is
         * sent by the next call, which the caller makes when it may write. */
        int fr = out_flush(t);
        if (ret == 0)
            t->hs_done = true;
        if (fr != 0 && (ret == 0 || ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE))
            ret = fr;
    }
    if (ret == 0 && t->dane && !t->dane_ok) {
        /* no certificate was judged (a resumed session): not good enough */
        snprintf(err, err_len, "the certificate of %s was not checked against its TLSA records", t->dane->host);
        return TLS_ERROR;
    }
    if (ret == 0)
        return 0;
    if (t->dane && t->dane_failed) {
        snprintf(err, err_len, "no TLSA record matches the certificate of %s", t->dane->host);
        return TLS_ERROR;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_READ)
        return TLS_WANT_READ;
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        return TLS_WANT_WRITE;
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        verify_failure(mbedtls_ssl_get_verify_result(&t->ssl), err, err_len);
        return TLS_ERROR;
    }
    describe(ret, err, err_len, "handshake");
    return TLS_ERROR;
}

ssize_t tls_recv(struct tls_conn *t, void *buf, size_t len)
{
    for (int i = 0;; i++) {
        int ret = mbedtls_ssl_read(&t->ssl, buf, len);
        if (ret == MBEDTLS_ERR_SSL_WANT_READ && read_ahead(t) && i < TLS_READ_AHEAD_BYTES)
            continue; /* a record that gave nothing (a ticket, a CCS): more are read ahead */
        if (ret > 0)
            return ret;
        switch (ret) {
        case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
            t->close_notify = true;
            return 0;
        case 0: /* the transport closed without close_notify */
            return 0;
        case MBEDTLS_ERR_SSL_WANT_READ:
            return TLS_WANT_READ;
        case MBEDTLS_ERR_SSL_WANT_WRITE:
            return TLS_WANT_WRITE;
        case MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET:
            continue; /* TLS 1.3 post-handshake message: read on */
        default:
            return TLS_ERROR;
        }
    }
}

ssize_t tls_send(struct tls_conn *t, const void *buf, size_t len)
{
    int ret = mbedtls_ssl_write(&t->ssl, buf, len);
    if (ret >= 0)
        return ret;
    if (ret == MBEDTLS_ERR_SSL_WANT_READ)
        return TLS_WANT_READ;
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        return TLS_WANT_WRITE;
    return TLS_ERROR;
}

void tls_close_notify(struct tls_conn *t)
{
    (void)mbedtls_ssl_close_notify(&t->ssl);
}

struct tls_session {
    mbedtls_ssl_session s;
};

struct tls_session *tls_session_get(const struct tls_conn *t)
{
    struct tls_session *ts = calloc(1, sizeof *ts);
    if (!ts)
        return NULL;
    mbedtls_ssl_session_init(&ts->s);
    if (t->sc || mbedtls_ssl_get_session(&t->ssl, &ts->s) != 0) {
        tls_session_free(ts);
        return NULL;
    }
    return ts;
}

int tls_session_set(struct tls_conn *t, const struct tls_session *ts)
{
    return ts && !t->sc && mbedtls_ssl_set_session(&t->ssl, &ts->s) == 0 ? 0 : -1;
}

void tls_session_free(struct tls_session *ts)
{
    if (!ts)
        return;
    mbedtls_ssl_session_free(&ts->s);
    free(ts);
}

const char *tls_version(const struct tls_conn *t)
{
    return mbedtls_ssl_get_version(&t->ssl);
}

const char *tls_cipher(const struct tls_conn *t)
{
    return mbedtls_ssl_get_ciphersuite(&t->ssl);
}

bool tls_closed_cleanly(const struct tls_conn *t)
{
    return t->close_notify;
}

bool tls_peer_verified(const struct tls_conn *t)
{
    if (t->dane)
        return t->dane_ok;
    return mbedtls_ssl_get_verify_result(&t->ssl) == 0;
}

/* ---- RSA keys for DKIM ------------------------------------------------------ */

struct tls_rsa_key {
    mbedtls_pk_context pk;
};

int tls_rsa_key_parse(const char *pem, size_t len, struct tls_rsa_key **out, size_t *bits,
                      char *err, size_t err_len)
{
    struct tls_rsa_key *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    mbedtls_pk_init(&k->pk);
    /* PEM input is given with its NUL (mbedTLS's convention) */
    int ret = mbedtls_pk_parse_key(&k->pk, (const unsigned char *)pem, len + 1, NULL, 0,
                                   mbedtls_ctr_drbg_random, &drbg);
    if (ret != 0) {
        describe(ret, err, err_len, "not a PEM RSA or Ed25519 private key");
        tls_rsa_key_free(k);
        return -1;
    }
    if (mbedtls_pk_get_type(&k->pk) != MBEDTLS_PK_RSA) {
        snprintf(err, err_len, "a %s key: DKIM signs with RSA or Ed25519 keys only", mbedtls_pk_get_name(&k->pk));
        tls_rsa_key_free(k);
        return -1;
    }
    *bits = mbedtls_pk_get_bitlen(&k->pk);
    *out = k;
    return 0;
}

int tls_rsa_key_public_der(const struct tls_rsa_key *k, uint8_t *out, size_t cap, size_t *len)
{
    /* mbedTLS writes at the end of the buffer and returns the length */
    int n = mbedtls_pk_write_pubkey_der((mbedtls_pk_context *)(uintptr_t)&k->pk, out, cap);
    if (n <= 0)
        return -1;
    memmove(out, out + cap - (size_t)n, (size_t)n);
    *len = (size_t)n;
    return 0;
}

int tls_rsa_sign_sha256(const struct tls_rsa_key *k, const uint8_t hash[32], uint8_t *sig, size_t cap,
                        size_t *sig_len)
{
    /* the pk context is not modified apart from the RSA blinding values,
     * which mbedTLS guards with the context's own mutex */
    int ret = mbedtls_pk_sign((mbedtls_pk_context *)(uintptr_t)&k->pk, MBEDTLS_MD_SHA256, hash, 32, sig,
                              cap, sig_len, mbedtls_ctr_drbg_random, &drbg);
    return ret == 0 ? 0 : -1;
}

void tls_rsa_key_free(struct tls_rsa_key *k)
{
    if (!k)
        return;
    mbedtls_pk_free(&k->pk);
    free(k);
}

int tls_rsa_key_generate(unsigned bits, char *pem, size_t cap, char *err, size_t err_len)
{
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    int ret = bits < 2048 || bits > 4096 ? MBEDTLS_ERR_PK_BAD_INPUT_DATA
                                         : mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA));
    if (ret == 0)
        ret = mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), mbedtls_ctr_drbg_random, &drbg, bits, 65537);
    if (ret == 0)
        ret = mbedtls_pk_write_key_pem(&pk, (unsigned char *)pem, cap);
    mbedtls_pk_free(&pk);
    if (ret != 0) {
        describe(ret, err, err_len, "generating an RSA key");
        return -1;
    }
    return 0;
}

void tls_shutdown(void)
{
    pthread_mutex_lock(&conf_mu);
    struct server_conf *old = current;
    current = NULL;
    pthread_mutex_unlock(&conf_mu);
    server_conf_put(old);
    if (client_ready) {
        mbedtls_ssl_config_free(&client_opportunistic);
        mbedtls_ssl_config_free(&client_strict);
        mbedtls_x509_crt_free(&ca_chain);
        client_ready = false;
    }
    if (outbound_ready) {
        mbedtls_ssl_config_free(&client_outbound);
        mbedtls_x509_crt_free(&outbound_chain);
        outbound_ready = false;
    }
    mbedtls_ssl_ticket_free(&tickets);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
}
