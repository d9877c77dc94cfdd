// fuzz-srcs: src/auth.c src/log.c src/util.c
/*
 * fuzz_users — libFuzzer target for the users table: auth_load() over
 * MRS_USERS (inline, space/tab/CR/LF-separated) and MRS_USERS_FILE (one
 * entry per line) texts from the fuzz input, then lookups in the table.
 *
 * Input: one flag byte, then the text.  Flag bits 0-1: the text is MRS_USERS
 * (0), the file (1), or both (2, 3: split where the second byte says).
 * Flag bit 2: the text is not the users text itself but a list of names
 * separated by NUL bytes, each made an entry with a valid hash and joined
 * by the separator its first byte picks (space, tab, CR, LF), so that
 * tables of many entries are as easy to reach as malformed ones.
 * The file is a memfd read through /proc/self/fd, as config_read_file()
 * reads any path.
 *
 * Checks, against a small model of the documented format (auth.h, SPEC §3):
 * auth_load succeeds exactly when every entry is `name:hash` with a name of
 * 1..255 bytes without spaces or control bytes, an Argon2 hash, and no name
 * twice; then the table holds exactly those users, each one verifies with
 * its password and an unknown name is refused — every lookup ends (the
 * libFuzzer -timeout catches a probe loop that does not).  Argon2id is
 * replaced: a hash "…$<password>" verifies that password.  So is
 * config_read_file(): the real one takes its 16 MiB cap as one allocation,
 * which under ASan costs more than the parsing; this one has the same
 * contract and allocates what the file holds.
 */
#define crypto_password_hash real_crypto_password_hash
#define crypto_password_verify real_crypto_password_verify
#include "../../src/crypto.c"
#undef crypto_password_hash
#undef crypto_password_verify

#define config_read_file real_config_read_file
#include "../../src/config.c"
#undef config_read_file

#include "auth.h"
#include "config.h"
#include "log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_ASSERT(c)                                                                   \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "fuzz_users: %s:%d: assertion %s failed\n", __FILE__, __LINE__, #c); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int crypto_password_hash(const char *pw, size_t len, char out[CRYPTO_PWHASH_MAX_BYTES]);
int crypto_password_verify(const char *hash, const char *pw, size_t len);

int crypto_password_hash(const char *pw, size_t len, char out[CRYPTO_PWHASH_MAX_BYTES])
{
    snprintf(out, CRYPTO_PWHASH_MAX_BYTES, "$argon2id$v=19$m=65536,t=2,p=1$ZnV6eg$\x7f");
    return 0;
}

int crypto_password_verify(const char *hash, const char *pw, size_t len)
{
    const char *tail = strrchr(hash, '$');
    if (!tail)
        return -1;
    tail++;
    return strlen(tail) == len && memcmp(tail, pw, len) == 0 ? 0 : -1;
}

char *config_read_file(const char *path, size_t max, size_t *len_out);
char *config_read_file(const char *path, size_t max, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return NULL;
    char *buf = NULL;
    if (fstat(fd, &st) < 0 || (size_t)st.st_size > max) {
        errno = EFBIG;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    FUZZ_ASSERT(buf != NULL);
    ssize_t n = pread(fd, buf, (size_t)st.st_size, 0);
    FUZZ_ASSERT(n == st.st_size);
    buf[n] = '\0';
    if (len_out)
        *len_out = (size_t)n;
out:
    close(fd);
    return buf;
}

/* ---- the model ------------------------------------------------------------ */

#define MODEL_MAX 4096

struct entry {
    const char *name;
    size_t name_len;
    const char *hash;
};

struct model {
    struct entry e[MODEL_MAX];
    size_t n;
    bool bad;
};

static bool model_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > AUTH_USER_MAX_BYTES)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* model_add — the entries of text (modified in place), split on seps. */
static void model_add(struct model *m, char *text, const char *seps)
{
    char *save = NULL;
    for (char *tok = strtok_r(text, seps, &save); tok && !m->bad; tok = strtok_r(NULL, seps, &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t n = strlen(tok);
        while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t' || tok[n - 1] == '\r'))
            tok[--n] = '\0';
        if (n == 0 || tok[0] == '#')
            continue;
        char *colon = strrchr(tok, ':');
        if (!colon || !model_name_ok(tok, (size_t)(colon - tok)) || !crypto_password_hash_valid(colon + 1)) {
            m->bad = true;
            return;
        }
        for (size_t i = 0; i < m->n; i++)
            if (m->e[i].name_len == (size_t)(colon - tok) && !memcmp(m->e[i].name, tok, m->e[i].name_len))
                m->bad = true; /* listed twice */
        if (m->n == MODEL_MAX) {
            m->bad = true; /* the model's own limit: not compared */
            return;
        }
        m->e[m->n++] = (struct entry){tok, (size_t)(colon - tok), colon + 1};
    }
}

/* ---- the target ------------------------------------------------------------ */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    setenv("MRS_HOSTNAME", "mrs.fuzz.test", 1);
    log_init(0, LOG_ERROR);
    if (crypto_init() < 0 || config_load(err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_users: setup failed: %s\n", err);
        abort();
    }
    return 0;
}

static int memfd_with(const char *text, size_t len)
{
    int fd = memfd_create("users", MFD_CLOEXEC);
    FUZZ_ASSERT(fd >= 0);
    FUZZ_ASSERT(write(fd, text, len) == (ssize_t)len);
    return fd;
}

#define GEN_HASH "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$pw"

/* generate — the users text of a list of NUL-separated names (flag bit 2):
 * "name:<hash>pwN" entries joined by the separator each name's first byte
 * picks.  Returns a heap string; *len_out its length. */
static char *generate(const char *names, size_t len, size_t *len_out)
{
    static const char seps[] = {' ', '\t', '\r', '\n'};
    size_t cap = len * (sizeof GEN_HASH + 16) + 1, used = 0, i = 0;
    char *out = malloc(cap);
    FUZZ_ASSERT(out != NULL);
    for (unsigned k = 0; i < len; k++) {
        const char *end = memchr(names + i, '\0', len - i);
        size_t n = end ? (size_t)(end - (names + i)) : len - i;
        int w = snprintf(out + used, cap - used, "%.*s:" GEN_HASH "%u%c", (int)n, names + i, k,
                         seps[(unsigned char)names[i] & 3]);
        FUZZ_ASSERT(w > 0 && (size_t)w < cap - used);
        used += (size_t)w;
        i += n + 1;
    }
    out[used] = '\0';
    *len_out = used;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 64 * 1024)
        return 0;
    struct config *cfg = (struct config *)config; /* the harness plays config_load */
    unsigned mode = data[0] & 3;
    char *generated = NULL;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 4)
        text = generated = generate(text, len, &len);
    size_t split = mode >= 2 ? (size_t)data[1] * len / 256 : mode == 0 ? len : 0;
    char *inline_text = mode == 1 ? NULL : strndup(text, split);
    char *file_text = mode == 0 ? NULL : strndup(text + split, len - split);
    int fd = -1;
    cfg->users_inline = inline_text ? strdup(inline_text) : NULL;
    cfg->users_file[0] = '\0';
    if (file_text) {
        fd = memfd_with(text + split, len - split);
        snprintf(cfg->users_file, sizeof cfg->users_file, "/proc/self/fd/%d", fd);
    }

    static struct model model; /* ~100 KB: static, not a fresh allocation per input */
    struct model *m = &model;
    m->n = 0;
    m->bad = false;
    if (inline_text)
        model_add(m, inline_text, " \t\r\n");
    if (file_text)
        model_add(m, file_text, "\n");

    char err[CONFIG_ERROR_MAX_BYTES] = "";
    bool malformed = false;
    int rc = auth_load(err, sizeof err, &malformed);
    if (m->n < MODEL_MAX) {
        FUZZ_ASSERT((rc == 0) == !m->bad);
        FUZZ_ASSERT(rc == 0 || (malformed && err[0]));
    }
    if (rc == 0) {
        FUZZ_ASSERT(auth_user_count() == m->n);
        for (size_t i = 0; i < m->n && i < 64; i++) {
            const char *pw = strrchr(m->e[i].hash, '$') + 1;
            FUZZ_ASSERT(auth_verify(m->e[i].name, m->e[i].name_len, pw, strlen(pw), NULL) == AUTH_OK);
        }
        /* an unknown name: the lookup must end and refuse */
        FUZZ_ASSERT(auth_verify("\x01unknown", 8, "x", 1, NULL) == AUTH_FAIL);
    }
    free(inline_text);
    free(file_text);
    free(generated);
    free(cfg->users_inline);
    cfg->users_inline = NULL;
    if (fd >= 0)
        close(fd);
    return 0;
}
