/*
 * dkim_sign — the key set, the delegation check and the signing of one
 * message (see dkim_sign.h).
 *
 * The set is one heap block with a reference count: dkim_sign_begin()
 * takes a reference, dkim_sign_free() drops it, dkim_sign_load() swaps in
 * a new set under set_mu and drops the old one's reference.  Private keys
 * are wiped when the last reference goes.
 */
#include "dkim_sign.h"

#include "config.h"
#include "crypto.h"
#include "dns.h"
#include "stats.h"
#include "tls.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DKIM_RSA_MIN_BITS 2048
#define DKIM_RSA_MAX_BITS 8192                    /* DKIM_SIGNATURE_MAX_BYTES */
#define DKIM_NAME_MAX_BYTES (DKIM_SELECTOR_MAX_BYTES + 12 + DKIM_DOMAIN_MAX_BYTES)
#define DKIM_LOG_TEXT_BYTES 900

struct dkim_key {
    char selector[DKIM_SELECTOR_MAX_BYTES + 1];
    char path[CONFIG_PATH_MAX_BYTES];
    enum dkim_alg alg;
    size_t bits;
    struct tls_rsa_key *rsa;          /* rsa-sha256 */
    struct crypto_ed25519 ed;         /* ed25519-sha256 */
    size_t sig_bytes;                 /* the signature's size */
    size_t pub_len;
    uint8_t pub[DKIM_PUBLIC_MAX_BYTES]; /* what p= must carry */
};

struct dkim_set {
    atomic_int refs;
    int count;
    struct dkim_key key[CONFIG_DKIM_KEYS_MAX];
};

static pthread_mutex_t set_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dkim_set *current;

/* ---- the key set ---------------------------------------------------------------- */

static void set_put(struct dkim_set *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (int i = 0; i < s->count; i++) {
        tls_rsa_key_free(s->key[i].rsa);
        crypto_ed25519_wipe(&s->key[i].ed);
    }
    crypto_wipe(s, sizeof *s);
    free(s);
}

static struct dkim_set *set_get(void)
{
    pthread_mutex_lock(&set_mu);
    struct dkim_set *s = current;
    if (s)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&set_mu);
    return s;
}

/* key_ed25519 — an Ed25519 seed made into a key. */
static int key_ed25519(struct dkim_key *k, const uint8_t *seed, const uint8_t *pub, bool has_pub,
                       char *why, size_t why_len)
{
    if (crypto_ed25519_from_seed(seed, &k->ed) < 0) {
        snprintf(why, why_len, "the Ed25519 key cannot be used");
        return -1;
    }
    if (has_pub && !crypto_equal(pub, k->ed.public_key, CRYPTO_ED25519_PUBLIC_BYTES)) {
        snprintf(why, why_len, "the public key in the file does not belong to its private key");
        return -1;
    }
    k->alg = DKIM_ED25519_SHA256;
    k->bits = 256;
    k->sig_bytes = CRYPTO_ED25519_SIGNATURE_BYTES;
    memcpy(k->pub, k->ed.public_key, CRYPTO_ED25519_PUBLIC_BYTES); /* RFC 8463 §4.2: the raw key */
    k->pub_len = CRYPTO_ED25519_PUBLIC_BYTES;
    return 0;
}

/* key_rsa — a PEM RSA key made into a key (2048 to 8192 bits). */
static int key_rsa(struct dkim_key *k, const char *pem, size_t len, char *why, size_t why_len)
{
    if (tls_rsa_key_parse(pem, len, &k->rsa, &k->bits, why, why_len) < 0)
        return -1;
    if (k->bits < DKIM_RSA_MIN_BITS || k->bits > DKIM_RSA_MAX_BITS) {
        snprintf(why, why_len, "an RSA key of %zu bits: DKIM keys must have %d to %d (RFC 8301)", k->bits,
                 DKIM_RSA_MIN_BITS, DKIM_RSA_MAX_BITS);
        return -1;
    }
    if (tls_rsa_key_public_der(k->rsa, k->pub, sizeof k->pub, &k->pub_len) < 0) {
        snprintf(why, why_len, "the RSA public key does not fit");
        return -1;
    }
    k->alg = DKIM_RSA_SHA256;
    k->sig_bytes = (k->bits + 7) / 8;
    return 0;
}

/* key_load — one SELECTOR:PATH into k; -1 with why. */
static int key_load(struct dkim_key *k, const struct config_dkim_key *c, char *why, size_t why_len)
{
    size_t len = 0;
    uint8_t seed[CRYPTO_ED25519_SEED_BYTES], pub[CRYPTO_ED25519_PUBLIC_BYTES];
    bool has_pub = false;
    memcpy(k->selector, c->selector, sizeof k->selector);
    memcpy(k->path, c->path, sizeof k->path);
    char *pem = config_read_file(c->path, DKIM_PEM_MAX_BYTES, &len);
    if (!pem) {
        if (errno == EFBIG)
            snprintf(why, why_len, "cannot read it (over %d bytes)", DKIM_PEM_MAX_BYTES);
        else
            snprintf(why, why_len, "cannot read it (errno %d%s)", errno, errno == ENOENT ? ", no such file" : "");
        return -1;
    }
    int rc = -1;
    enum dkim_pem kind = dkim_pem_ed25519(pem, len, seed, pub, &has_pub);
    if (kind == DKIM_PEM_ED25519)
        rc = key_ed25519(k, seed, pub, has_pub, why, why_len);
    else if (kind == DKIM_PEM_MALFORMED)
        snprintf(why, why_len, "a malformed Ed25519 PKCS#8 key");
    else
        rc = key_rsa(k, pem, len, why, why_len);
    crypto_wipe(seed, sizeof seed);
    crypto_wipe(pem, len);
    free(pem);
    return rc;
}

/* configured — the key list: MRS_DKIM_KEYS, or MRS_DKIM_KEYS_FILE read now. */
static int configured(struct config_dkim_key *out, int *count, char *err, size_t err_len)
{
    if (!config->dkim_keys_file[0]) {
        *count = config->dkim_key_count;
        memcpy(out, config->dkim_keys, sizeof config->dkim_keys);
        return 0;
    }
    char *text = config_read_file(config->dkim_keys_file, CONFIG_DKIM_KEYS_FILE_MAX_BYTES, NULL);
    int rc = text ? config_parse_dkim_keys(text, out, CONFIG_DKIM_KEYS_MAX, count) : -1;
    if (rc < 0)
        snprintf(err, err_len, "MRS_DKIM_KEYS_FILE %s: %s", config->dkim_keys_file,
                 text ? "expected SELECTOR:PATH items (a selector is one DNS label, unique; at most 8)"
                      : "cannot read it");
    free(text);
    return rc;
}

int dkim_sign_load(char *err, size_t err_len)
{
    struct config_dkim_key *list = calloc(CONFIG_DKIM_KEYS_MAX, sizeof *list);
    struct dkim_set *s = calloc(1, sizeof *s);
    int n = 0, rc = -1;
    if (!list || !s) {
        snprintf(err, err_len, "MRS_DKIM_KEYS: out of memory");
        goto out;
    }
    atomic_init(&s->refs, 1);
    if (configured(list, &n, err, err_len) < 0)
        goto out;
    for (; s->count < n; s->count++) {
        char why[300];
        if (key_load(&s->key[s->count], &list[s->count], why, sizeof why) < 0) {
            snprintf(err, err_len, "%s: key %s:%s: %s", config->dkim_keys_file[0] ? "MRS_DKIM_KEYS_FILE" : "MRS_DKIM_KEYS",
                     list[s->count].selector, list[s->count].path, why);
            s->count++; /* freed with the rest */
            goto out;
        }
    }
    pthread_mutex_lock(&set_mu);
    struct dkim_set *old = current;
    current = s;
    pthread_mutex_unlock(&set_mu);
    s = old;
    rc = 0;
out:
    set_put(s);
    free(list);
    return rc;
}

size_t dkim_sign_key_count(void)
{
    struct dkim_set *s = set_get();
    size_t n = s ? (size_t)s->count : 0;
    set_put(s);
    return n;
}

int dkim_sign_paths(char **out, int max)
{
    /* the list as the configuration names it now (a new key file is
     * watched before it loads), else the current set's */
    char err[CONFIG_ERROR_MAX_BYTES];
    struct config_dkim_key *list = calloc(CONFIG_DKIM_KEYS_MAX, sizeof *list);
    int n = 0, count = 0;
    if (config->dkim_keys_file[0] && n < max && (out[n] = strdup(config->dkim_keys_file)))
        n++;
    if (list && configured(list, &count, err, sizeof err) == 0) {
        for (int i = 0; i < count && n < max; i++)
            if ((out[n] = strdup(list[i].path)))
                n++;
    } else {
        struct dkim_set *s = set_get();
        for (int i = 0; s && i < s->count && n < max; i++)
            if ((out[n] = strdup(s->key[i].path)))
                n++;
        set_put(s);
    }
    free(list);
    return n;
}

/* ---- the delegation ------------------------------------------------------------- */

/* delegation — whether `domain` publishes key k at SELECTOR._domainkey.D.
 * *dns gets the lookup's status. */
static enum dkim_delegation delegation(const struct dkim_key *k, const char *domain, unsigned flags,
                                       enum dns_status *dns)
{
    char name[DKIM_NAME_MAX_BYTES];
    struct dns_result *r = NULL;
    struct dkim_record *rec = NULL;
    enum dkim_delegation d;
    snprintf(name, sizeof name, "%s._domainkey.%s", k->selector, domain);
    *dns = dns_lookup(name, DNS_TYPE_TXT, flags, &r);
    if (!dns_status_permanent(*dns))
        d = DKIM_DNS_FAILED;
    else if (*dns != DNS_OK || !r || r->count == 0)
        d = DKIM_NOT_DELEGATED;
    else if (r->count > 1)
        d = DKIM_SEVERAL_RECORDS;
    else if (!(rec = malloc(sizeof *rec)))
        d = DKIM_DNS_FAILED; /* out of memory: as a failed lookup, no signature */
    else if (dkim_parse_record(r->txt[0].data, r->txt[0].len, rec) < 0 || rec->revoked ||
             rec->alg != k->alg || rec->pub_len != k->pub_len || memcmp(rec->pub, k->pub, k->pub_len) != 0)
        d = DKIM_OTHER_KEY;
    else
        d = DKIM_DELEGATED;
    free(rec);
    dns_result_free(r);
    return d;
}

const char *dkim_sign_delegation_name(enum dkim_delegation d)
{
    static const char *const names[] = {"delegated", "not_delegated", "other_key", "several_records",
                                        "dns_error"};
    return (unsigned)d < sizeof names / sizeof names[0] ? names[d] : "?";
}

int dkim_sign_examine(const char *domain, struct dkim_selector_report *out, int max)
{
    struct dkim_set *s = set_get();
    int n = 0;
    for (; s && n < s->count && n < max; n++) {
        const struct dkim_key *k = &s->key[n];
        struct dkim_selector_report *r = &out[n];
        enum dns_status st;
        memset(r, 0, sizeof *r);
        memcpy(r->selector, k->selector, sizeof r->selector);
        r->alg = k->alg;
        snprintf(r->name, sizeof r->name, "%s._domainkey.%s", k->selector, domain);
        snprintf(r->target, sizeof r->target, "%s._domainkey.%s", k->selector, config->dkim_domain);
        r->status = delegation(k, domain, DNS_FRESH, &st);
        snprintf(r->dns_status, sizeof r->dns_status, "%s", dns_status_name(st));
    }
    set_put(s);
    return n;
}

/* ---- one message ------------------------------------------------------------------ */

struct dkim_job {
    struct dkim_set *set;
    struct crypto_sha256_state body_sha;
    struct dkim_body body;
    struct dkim_headers headers;
    const char *segs[2];          /* the relay's prefix, the client's header section */
    char domain[DKIM_DOMAIN_MAX_BYTES];
    char h[DKIM_H_MAX_BYTES];
    size_t room;                  /* what dkim_sign_head() promised */
    bool signable;                /* one From: domain, not too many fields */
    const char *refused;          /* the sender may not sign as domain: why (dkim_sign_refuse) */
};

const char *dkim_sign_domain(const struct dkim_job *j)
{
    return j && j->signable ? j->domain : NULL;
}

void dkim_sign_refuse(struct dkim_job *j, const char *why)
{
    if (j)
        j->refused = why;
}

struct dkim_job *dkim_sign_begin(void)
{
    struct dkim_set *s = set_get();
    if (!s || s->count == 0) {
        set_put(s);
        return NULL;
    }
    struct dkim_job *j = calloc(1, sizeof *j);
    if (!j) {
        set_put(s);
        return NULL;
    }
    j->set = s;
    crypto_sha256_begin(&j->body_sha);
    dkim_body_init(&j->body, dkim_sha256_sink, &j->body_sha);
    return j;
}

size_t dkim_sign_head(struct dkim_job *j, const char *prefix, size_t prefix_len, const char *headers,
                      size_t headers_len)
{
    j->segs[0] = prefix;
    j->segs[1] = headers;
    j->signable = dkim_headers_scan(prefix, prefix_len, 0, &j->headers) == 0 &&
                  dkim_headers_scan(headers, headers_len, 1, &j->headers) == 0 &&
                  dkim_headers_h(&j->headers, j->h, sizeof j->h) > 0 &&
                  dkim_from_domain(headers, headers_len, j->domain) == 0;
    j->room = 0;
    for (int i = 0; i < j->set->count; i++)
        j->room += dkim_sig_max_bytes(strlen(j->h), j->set->key[i].sig_bytes);
    return j->room;
}

void dkim_sign_body(struct dkim_job *j, const char *p, size_t n)
{
    dkim_body_add(&j->body, p, n);
}

/* sign_one — one DKIM-Signature field for key k appended to out (len
 * bytes used of cap); the new length, or 0 on failure. */
static size_t sign_one(struct dkim_job *j, const struct dkim_key *k, const uint8_t bh[CRYPTO_SHA256_BYTES],
                       char *out, size_t len, size_t cap)
{
    struct dkim_sig_params p = {.alg = k->alg, .domain = j->domain, .selector = k->selector,
                                .time = util_wall_ms() / 1000, .h = j->h};
    memcpy(p.bh, bh, sizeof p.bh);
    size_t n = dkim_sig_begin(&p, out + len, cap - len);
    if (n == 0)
        return 0;
    /* RFC 6376 §3.7: the signed fields, then this field without its b=
     * value and without a CRLF, both canonicalized; RFC 8463 §3: Ed25519
     * signs that SHA-256 digest as RSA does */
    struct crypto_sha256_state sha;
    uint8_t digest[CRYPTO_SHA256_BYTES], sig[DKIM_SIGNATURE_MAX_BYTES];
    size_t sig_len = 0;
    crypto_sha256_begin(&sha);
    dkim_headers_hash(&j->headers, j->segs, dkim_sha256_sink, &sha);
    dkim_canon_header(out + len, n, dkim_sha256_sink, &sha);
    crypto_sha256_end(&sha, digest);
    int rc = k->alg == DKIM_ED25519_SHA256
                 ? crypto_ed25519_sign(&k->ed, digest, sizeof digest, sig)
                 : tls_rsa_sign_sha256(k->rsa, digest, sig, sizeof sig, &sig_len);
    if (k->alg == DKIM_ED25519_SHA256)
        sig_len = CRYPTO_ED25519_SIGNATURE_BYTES;
    if (rc < 0 || sig_len != k->sig_bytes)
        return 0;
    size_t total = dkim_sig_finish(out, len + n, cap, sig, sig_len);
    return total;
}

/* note — append "s=SEL …" to the log text. */
static void note(char *text, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(char *text, size_t cap, const char *fmt, ...)
{
    size_t used = strlen(text);
    va_list ap;
    va_start(ap, fmt);
    if (used < cap)
        vsnprintf(text + used, cap - used, fmt, ap); /* a cut log line is still a log line */
    va_end(ap);
}

size_t dkim_sign_finish(struct dkim_job *j, const struct log_fields *lf, char **out)
{
    uint8_t bh[CRYPTO_SHA256_BYTES];
    char text[DKIM_LOG_TEXT_BYTES] = "";
    size_t len = 0;
    bool dns_failed = false;
    dkim_body_end(&j->body);
    crypto_sha256_end(&j->body_sha, bh);
    *out = calloc(1, j->room + 1);
    for (int i = 0; i < j->set->count; i++) {
        const struct dkim_key *k = &j->set->key[i];
        enum stats_dkim_alg a = k->alg == DKIM_ED25519_SHA256 ? STATS_DKIM_ED25519 : STATS_DKIM_RSA;
        enum dkim_delegation d = DKIM_NOT_DELEGATED;
        enum dns_status st = DNS_OK;
        enum stats_dkim_result res;
        size_t n = 0;
        if (j->signable && !j->refused)
            d = delegation(k, j->domain, 0, &st);
        if (!j->signable || j->refused || d == DKIM_NOT_DELEGATED || d == DKIM_OTHER_KEY ||
            d == DKIM_SEVERAL_RECORDS) {
            res = STATS_DKIM_NOT_DELEGATED;
            note(text, sizeof text, "%ss=%s %s", text[0] ? ", " : "", k->selector, dkim_sign_delegation_name(d));
        } else if (d == DKIM_DNS_FAILED) {
            res = STATS_DKIM_DNS_ERROR;
            dns_failed = true;
            note(text, sizeof text, "%ss=%s DNS %s", text[0] ? ", " : "", k->selector, dns_status_name(st));
        } else if (!*out || (n = sign_one(j, k, bh, *out, len, j->room + 1)) == 0) {
            res = STATS_DKIM_ERROR;
            if (*out)
                (*out)[len] = '\0';
            note(text, sizeof text, "%ss=%s signing failed", text[0] ? ", " : "", k->selector);
        } else {
            res = STATS_DKIM_SIGNED;
            len = n;
            note(text, sizeof text, "%ss=%s signed (%s)", text[0] ? ", " : "", k->selector, dkim_alg_name(k->alg));
        }
        STATS_INC(dkim_signatures_total[a][res]);
    }
    struct log_fields f = lf ? *lf : (struct log_fields){0};
    f.result = len ? "signed" : "unsigned";
    if (!j->signable)
        log_info("dkim", &f, "not signed: the From: header does not name exactly one domain (%s)", text);
    else if (j->refused)
        log_warn("dkim", &f, "d=%s not signed: %s", j->domain, j->refused);
    else if (dns_failed)
        log_warn("dkim", &f, "d=%s: %s", j->domain, text);
    else
        log_info("dkim", &f, "d=%s: %s", j->domain, text);
    return *out ? len : 0;
}

void dkim_sign_free(struct dkim_job *j)
{
    if (!j)
        return;
    set_put(j->set);
    free(j);
}

/* ---- subcommands ------------------------------------------------------------------ */

int dkim_sign_keygen_cli(int argc, char **argv)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    const char *type = argc > 2 ? argv[2] : "";
    char *pem = calloc(1, DKIM_PEM_MAX_BYTES);
    int64_t bits = 2048;
    int rc = 2;
    if (!pem) {
        fprintf(stderr, "mrs dkim-keygen: out of memory\n");
        return 1;
    }
    if (!strcmp(type, "ed25519") && argc == 3) {
        uint8_t seed[CRYPTO_ED25519_SEED_BYTES];
        crypto_random(seed, sizeof seed);
        rc = dkim_pem_ed25519_write(seed, pem, DKIM_PEM_MAX_BYTES) ? 0 : 1;
        crypto_wipe(seed, sizeof seed);
    } else if (!strcmp(type, "rsa") && (argc == 3 || (argc == 4 && config_parse_uint(argv[3], 2048, 4096, &bits) == 0))) {
        rc = tls_init(err, sizeof err) == 0 &&
                     tls_rsa_key_generate((unsigned)bits, pem, DKIM_PEM_MAX_BYTES, err, sizeof err) == 0
                 ? 0 : 1;
        if (rc)
            fprintf(stderr, "mrs dkim-keygen: %s\n", err);
    } else {
        fprintf(stderr, "usage: mrs dkim-keygen rsa [BITS] | ed25519   (BITS 2048 to 4096, default 2048)\n");
    }
    if (rc == 0)
        fputs(pem, stdout);
    crypto_wipe(pem, DKIM_PEM_MAX_BYTES);
    free(pem);
    return rc;
}

/* print_txt — the record as quoted character-strings of at most 255
 * bytes (RFC 1035 §3.3.14; DKIM joins them, RFC 6376 §3.6.2.2). */
static void print_txt(const char *rec, size_t len)
{
    for (size_t i = 0; i < len; i += 255)
        printf("%s\"%.*s\"", i ? " " : "", (int)(len - i < 255 ? len - i : 255), rec + i);
}

int dkim_sign_records_cli(int argc, char **argv)
{
    char err[CONFIG_ERROR_MAX_BYTES], rec[CRYPTO_BASE64_LEN(DKIM_PUBLIC_MAX_BYTES) + 64];
    char customer[DKIM_DOMAIN_MAX_BYTES] = "<customer-domain>";
    if (argc > 3 || (argc == 3 && policy_domain_normalize(argv[2], customer, sizeof customer) < 0)) {
        fprintf(stderr, "usage: mrs dkim-records [CUSTOMER-DOMAIN]\n");
        return 2;
    }
    if (tls_init(err, sizeof err) < 0 || dkim_sign_load(err, sizeof err) < 0) {
        fprintf(stderr, "mrs: %s\n", err);
        return 1;
    }
    struct dkim_set *s = set_get();
    if (!s || s->count == 0) {
        fprintf(stderr, "mrs dkim-records: no keys: set MRS_DKIM_KEYS=SELECTOR:PATH,… (keys from mrs dkim-keygen)\n");
        set_put(s);
        return 1;
    }
    printf("; The operator publishes, in the zone of %s, one TXT record per key:\n", config->dkim_domain);
    for (int i = 0; i < s->count; i++) {
        const struct dkim_key *k = &s->key[i];
        size_t n = dkim_format_record(k->alg, k->pub, k->pub_len, rec, sizeof rec);
        printf("%s._domainkey.%s TXT ", k->selector, config->dkim_domain);
        print_txt(rec, n);
        printf("\n");
    }
    printf("; A customer sending as %s adds one CNAME per key:\n", customer);
    for (int i = 0; i < s->count; i++)
        printf("%s._domainkey.%s CNAME %s._domainkey.%s\n", s->key[i].selector, customer,
               s->key[i].selector, config->dkim_domain);
    set_put(s);
    return 0;
}
