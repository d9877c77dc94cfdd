// fuzz-srcs: src/spool.c src/dsn.c src/config.c src/log.c src/util.c
/*
 * fuzz_spool — libFuzzer target for the spool's readers: the envelope
 * block of queue/<id> and the state file queue/<id>.state (docs/spool.md).
 * A damaged or hand-edited spool file must never crash recovery or
 * `mrs queue`.
 *
 * Input: a flag byte, the length of the message file (2 bytes, big
 * endian, cut to what follows), then the message file's bytes and the
 * state file's bytes.  Flag bit 0: there is a state file; bit 1: also load
 * both through spool_load() from real files in a private spool folder (the
 * reading loop, the size caps, the id check).
 *
 * Checks: a parsed envelope has a valid id, 1..SPOOL_RCPTS_MAX non-empty
 * recipients, a sender, and its body starts right after the empty line; a
 * parsed state leaves printable replies and remotes without spaces; the
 * state formatted back fits spool_state_max_bytes() and parses to the same
 * state; spool_load() agrees with the pure parsers.
 */
#include "config.h"
#include "log.h"
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_ASSERT(c)                                                                   \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "fuzz_spool: %s:%d: assertion %s failed\n", __FILE__, __LINE__, #c); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#define FALLBACK_ID "0123456789abcdef0123"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char spool_dir[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[CONFIG_ERROR_MAX_BYTES], queue[300];
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(spool_dir, sizeof spool_dir, "%s/fuzz-spool.XXXXXX", tmp);
    if (!mkdtemp(spool_dir))
        abort();
    snprintf(queue, sizeof queue, "%s/queue", spool_dir);
    if (mkdir(queue, 0700) < 0)
        abort();
    setenv("MRS_SPOOL_DIR", spool_dir, 1);
    setenv("MRS_HOSTNAME", "mrs.fuzz.test", 1);
    log_init(0, LOG_ERROR);
    if (config_load(err, sizeof err) < 0)
        abort();
    return 0;
}

static bool printable(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

static void check_envelope(const char *buf, size_t len, const struct spool_message *m, size_t body)
{
    FUZZ_ASSERT(spool_valid_id(m->id));
    FUZZ_ASSERT(m->rcpt_count >= 1 && m->rcpt_count <= SPOOL_RCPTS_MAX);
    FUZZ_ASSERT(m->from && m->user && m->client && m->helo);
    for (size_t i = 0; i < m->rcpt_count; i++)
        FUZZ_ASSERT(m->rcpts[i].addr && m->rcpts[i].addr[0]);
    FUZZ_ASSERT(body >= 2 && body <= len && buf[body - 1] == '\n' && buf[body - 2] == '\0');
}

/* check_state — m's state is sane, and formatting it gives a text that
 * fits its bound and parses back to the same state. */
static void check_state(const struct spool_message *m)
{
    for (size_t i = 0; i < m->rcpt_count; i++) {
        const struct spool_rcpt *r = &m->rcpts[i];
        FUZZ_ASSERT(r->status >= SPOOL_PENDING && r->status <= SPOOL_FAILED);
        FUZZ_ASSERT(printable(r->reply, sizeof r->reply) && printable(r->remote, sizeof r->remote));
        FUZZ_ASSERT(!strchr(r->remote, ' '));
    }
    size_t cap = spool_state_max_bytes(m);
    char *text = malloc(cap);
    FUZZ_ASSERT(text != NULL);
    size_t n = spool_format_state(m, text, cap);
    FUZZ_ASSERT(n > 0 && n < cap);
    struct spool_message again = *m;
    again.rcpts = calloc(m->rcpt_count, sizeof *again.rcpts);
    FUZZ_ASSERT(again.rcpts != NULL);
    again.attempts = 0;
    again.next_ms = 0;
    FUZZ_ASSERT(spool_parse_state(text, n, &again) == 0);
    FUZZ_ASSERT(again.attempts == m->attempts && again.next_ms == m->next_ms);
    for (size_t i = 0; i < m->rcpt_count; i++) {
        const struct spool_rcpt *a = &m->rcpts[i], *b = &again.rcpts[i];
        FUZZ_ASSERT(a->status == b->status && a->when_ms == b->when_ms);
        FUZZ_ASSERT(!strcmp(a->remote, b->remote) && !strcmp(a->reply, b->reply));
    }
    free(again.rcpts);
    free(text);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_ASSERT(fd >= 0);
    FUZZ_ASSERT(write(fd, data, len) == (ssize_t)len);
    close(fd);
}

/* check_load — spool_load() over the same bytes as files: the same verdict
 * as the pure parsers (expect_ok: they succeeded and the state file is
 * within the size load_state() reads; id: the envelope's id). */
static void check_load(const uint8_t *env, size_t env_len, const uint8_t *state, size_t state_len,
                       bool with_state, bool expect_ok, const char *id)
{
    char path[600], state_path[620], err[256];
    snprintf(path, sizeof path, "%s/queue/%s", spool_dir, id);
    snprintf(state_path, sizeof state_path, "%s.state", path);
    write_file(path, env, env_len);
    if (with_state)
        write_file(state_path, state, state_len);
    else
        unlink(state_path);
    struct spool_message m;
    int rc = spool_load(id, &m, false, err, sizeof err);
    if (expect_ok)
        FUZZ_ASSERT(rc == 0 && m.fd == -1 && !strcmp(m.id, id) && m.file_size == (int64_t)env_len &&
                    m.body_offset <= m.file_size);
    if (rc == 0) {
        FUZZ_ASSERT(expect_ok);
        check_state(&m);
        spool_free(&m);
    } else {
        FUZZ_ASSERT(errno == EINVAL && err[0]);
    }
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    bool with_state = data[0] & 1, load = data[0] & 2;
    const uint8_t *in = data + 3;
    size_t len = size - 3, split = (size_t)data[1] << 8 | data[2];
    if (!with_state || split > len)
        split = len;
    /* exact-size heap copies: ASan sees any read past the end */
    char *env = malloc(split ? split : 1), *state = malloc(len - split ? len - split : 1);
    FUZZ_ASSERT(env && state);
    memcpy(env, in, split);
    memcpy(state, in + split, len - split);

    struct spool_message m;
    size_t body = 0;
    memset(&m, 0, sizeof m);
    int parsed = spool_parse_envelope(env, split, &m, &body);
    char id[QUEUE_ID_BYTES] = FALLBACK_ID;
    bool expect_ok = false;
    if (parsed == 0) {
        /* load_state() reads at most this much: a bigger file is refused */
        expect_ok = !with_state || len - split < spool_state_max_bytes(&m);
        check_envelope(env, split, &m, body);
        memcpy(id, m.id, sizeof id);
        if (with_state) {
            memcpy(state, in + split, len - split); /* a failed parse may leave half a state */
            if (spool_parse_state(state, len - split, &m) == 0)
                check_state(&m);
            else
                expect_ok = false;
        } else {
            check_state(&m);
        }
    }
    free(m.rcpts);
    if (load)
        check_load(in, split, in + split, len - split, with_state, expect_ok, id);
    free(env);
    free(state);
    return 0;
}
