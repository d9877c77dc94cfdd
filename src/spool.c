/*
 * spool — parsers of the message envelope and the state file, the state
 * formatter, loading a message for delivery, and `mrs queue` (see spool.h
 * and docs/spool.md).
 *
 * Files are read with hard caps (SPOOL_ENVELOPE_MAX_BYTES, the state size
 * its recipients allow), so a damaged file can cost at most that much
 * memory.  Nothing here writes, renames or locks.
 */
#include "spool.h"

#include "config.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPOOL_READ_FIRST_BYTES 4096 /* most envelopes fit: recovery reads one per message */
#define SPOOL_PATH_MAX_BYTES (CONFIG_PATH_MAX_BYTES + 64)
/* one state line: "rcpt IDX STATUS WHEN REMOTE REPLY\n" */
#define SPOOL_STATE_LINE_BYTES (48 + SPOOL_REMOTE_MAX_BYTES + SPOOL_REPLY_MAX_BYTES)

static const char *const status_names[] = {"pending", "delivered", "deferred", "failed"};

const char *spool_status_name(enum spool_rcpt_status s)
{
    return (unsigned)s < sizeof status_names / sizeof status_names[0] ? status_names[s] : "?";
}

/* parse_i64 — a non-negative decimal number, the whole of s. */
static int parse_i64(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

bool spool_valid_id(const char *name)
{
    size_t i;
    for (i = 0; name[i]; i++)
        if (i >= QUEUE_ID_BYTES - 1 || !((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    return i == QUEUE_ID_BYTES - 1;
}

int64_t spool_id_ms(const char *id)
{
    int64_t v = 0;
    for (int i = 0; i < 12 && id[i]; i++)
        v = v * 16 + (id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
    return v;
}

/* ---- envelope ---------------------------------------------------------------- */

/* envelope_field — one "key value" line into m; unknown keys are ignored
 * (a newer writer may add some). */
static int envelope_field(struct spool_message *m, char *line, size_t *rcpts)
{
    char *sp = strchr(line, ' ');
    const char *value = sp ? sp + 1 : "";
    if (sp)
        *sp = '\0';
    if (!strcmp(line, "id")) {
        if (!spool_valid_id(value))
            return -1;
        memcpy(m->id, value, QUEUE_ID_BYTES);
    } else if (!strcmp(line, "received")) {
        return parse_i64(value, &m->received_ms);
    } else if (!strcmp(line, "user")) {
        m->user = value;
    } else if (!strcmp(line, "client")) {
        m->client = value;
    } else if (!strcmp(line, "helo")) {
        m->helo = value;
    } else if (!strcmp(line, "body")) {
        m->eightbit = !strcmp(value, "8bitmime");
    } else if (!strcmp(line, "from")) {
        m->from = value;
    } else if (!strcmp(line, "rcpt")) {
        if (*rcpts >= m->rcpt_count || !*value)
            return -1;
        m->rcpts[(*rcpts)++].addr = value;
    }
    return 0;
}

int spool_parse_envelope(char *buf, size_t len, struct spool_message *m, size_t *body_offset)
{
    const char *end = NULL;
    for (size_t i = 1; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\n') {
            end = buf + i;
            break;
        }
    size_t vlen = sizeof QUEUE_SPOOL_VERSION - 1;
    if (!end || len < vlen + 1 || memcmp(buf, QUEUE_SPOOL_VERSION "\n", vlen + 1) != 0)
        return -1;
    size_t block = (size_t)(end - buf), n = 0;
    if (memchr(buf, '\0', block))
        return -1;
    for (const char *p = buf; p < end; p++)
        n += p[0] == '\n' && (size_t)(end - p) > 5 && memcmp(p + 1, "rcpt ", 5) == 0;
    if (n == 0 || n > SPOOL_RCPTS_MAX || !(m->rcpts = calloc(n, sizeof *m->rcpts)))
        return -1;
    m->rcpt_count = n;
    m->user = m->client = m->helo = "";
    m->from = NULL;
    size_t rcpts = 0;
    char *line = buf + vlen + 1;
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line) + 1);
        *nl = '\0';
        if (envelope_field(m, line, &rcpts) < 0)
            return -1;
        line = nl + 1;
    }
    *body_offset = block + 1;
    return m->id[0] && m->received_ms > 0 && m->from && rcpts == n ? 0 : -1;
}

/* ---- state file ---------------------------------------------------------------- */

static int status_from_name(const char *s, enum spool_rcpt_status *out)
{
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++)
        if (!strcmp(s, status_names[i])) {
            *out = (enum spool_rcpt_status)i;
            return 0;
        }
    return -1;
}

/* next_token — the text up to the next space (NUL-terminated in place). */
static char *next_token(char **p)
{
    char *t = *p, *sp = strchr(t, ' ');
    if (!sp)
        return NULL;
    *sp = '\0';
    *p = sp + 1;
    return t;
}

/* state_rcpt — "IDX STATUS WHEN REMOTE REPLY" (line is modified). */
static int state_rcpt(struct spool_message *m, char *p)
{
    char *idx = next_token(&p), *st = idx ? next_token(&p) : NULL, *when = st ? next_token(&p) : NULL;
    char *remote = when ? next_token(&p) : NULL;
    int64_t i, w;
    enum spool_rcpt_status status;
    if (!remote || parse_i64(idx, &i) < 0 || (uint64_t)i >= m->rcpt_count || status_from_name(st, &status) < 0 ||
        parse_i64(when, &w) < 0)
        return -1;
    struct spool_rcpt *r = &m->rcpts[i];
    r->status = status;
    r->when_ms = w;
    spool_set_reply(r, strcmp(remote, "-") ? remote : "", strcmp(p, "-") ? p : "", strcmp(p, "-") ? strlen(p) : 0);
    return 0;
}

static int state_line(struct spool_message *m, char *line)
{
    int64_t v;
    if (!strncmp(line, "rcpt ", 5))
        return state_rcpt(m, line + 5);
    if (!strncmp(line, "attempts ", 9)) {
        if (parse_i64(line + 9, &v) < 0 || v > 1000000)
            return -1;
        m->attempts = (int)v;
        return 0;
    }
    if (!strncmp(line, "next ", 5))
        return parse_i64(line + 5, &m->next_ms);
    return 0; /* a field a newer version added */
}

int spool_parse_state(const char *buf, size_t len, struct spool_message *m)
{
    size_t vlen = sizeof SPOOL_STATE_VERSION - 1;
    char line[SPOOL_STATE_LINE_BYTES];
    if (len < vlen + 1 || memcmp(buf, SPOOL_STATE_VERSION "\n", vlen + 1) != 0 || buf[len - 1] != '\n' ||
        memchr(buf, '\0', len))
        return -1;
    for (size_t i = vlen + 1; i < len;) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t n = (size_t)(nl - (buf + i));
        if (n >= sizeof line)
            return -1;
        memcpy(line, buf + i, n);
        line[n] = '\0';
        if (state_line(m, line) < 0)
            return -1;
        i += n + 1;
    }
    m->has_state = true;
    return 0;
}

size_t spool_state_max_bytes(const struct spool_message *m)
{
    return 128 + m->rcpt_count * SPOOL_STATE_LINE_BYTES;
}

size_t spool_format_state(const struct spool_message *m, char *out, size_t cap)
{
    size_t len = 0;
    int n = snprintf(out, cap, "%s\nattempts %d\nnext %lld\n", SPOOL_STATE_VERSION, m->attempts,
                     (long long)m->next_ms);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    len = (size_t)n;
    for (size_t i = 0; i < m->rcpt_count; i++) {
        const struct spool_rcpt *r = &m->rcpts[i];
        n = snprintf(out + len, cap - len, "rcpt %zu %s %lld %s %s\n", i, spool_status_name(r->status),
                     (long long)r->when_ms, r->remote[0] ? r->remote : "-", r->reply[0] ? r->reply : "-");
        if (n < 0 || (size_t)n >= cap - len)
            return 0;
        len += (size_t)n;
    }
    return len;
}

void spool_set_reply(struct spool_rcpt *r, const char *remote, const char *reply, size_t reply_len)
{
    log_sanitize(r->reply, sizeof r->reply, reply, reply_len);
    if (remote) {
        log_sanitize(r->remote, sizeof r->remote, remote, strlen(remote));
        for (char *p = r->remote; *p; p++)
            if (*p == ' ')
                *p = '_'; /* the state line separates fields with spaces */
    }
}

/* ---- loading ------------------------------------------------------------------- */

static void path_of(const char *id, const char *suffix, char *buf, size_t len)
{
    snprintf(buf, len, "%s/queue/%s%s", config->spool_dir, id, suffix);
}

/* read_envelope — read the file's start until the empty line ending the
 * envelope (at most SPOOL_ENVELOPE_MAX_BYTES) into a new heap buffer. */
static char *read_envelope(int fd, size_t *len_out)
{
    size_t cap = SPOOL_READ_FIRST_BYTES, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        ssize_t n = pread(fd, buf + len, cap - len, (off_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t from = len ? len - 1 : 0;
        len += (size_t)n;
        for (size_t i = from + 1; i < len; i++)
            if (buf[i] == '\n' && buf[i - 1] == '\n') {
                *len_out = len;
                return buf;
            }
        if (len == cap) {
            char *nb = cap < SPOOL_ENVELOPE_MAX_BYTES ? realloc(buf, cap * 2 + 1) : NULL;
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
    }
    free(buf);
    errno = EINVAL;
    return NULL;
}

/* load_state — apply queue/<id>.state when it exists. */
static int load_state(struct spool_message *m)
{
    char path[SPOOL_PATH_MAX_BYTES];
    path_of(m->id, ".state", path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    size_t cap = spool_state_max_bytes(m), len = 0;
    char *buf = malloc(cap);
    int rc = -1;
    while (buf && len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    errno = EINVAL;
    if (buf && len < cap)
        rc = spool_parse_state(buf, len, m);
out:
    free(buf);
    close(fd);
    return rc;
}

int spool_load(const char *id, struct spool_message *m, bool keep_fd, char *err, size_t err_len)
{
    char path[SPOOL_PATH_MAX_BYTES];
    struct stat st;
    size_t len, body;
    memset(m, 0, sizeof *m);
    m->fd = -1;
    path_of(id, "", path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, err_len, "cannot open queue/%s (errno %d)", id, errno);
        goto fail;
    }
    m->file_size = st.st_size;
    if (!(m->env = read_envelope(fd, &len)) || spool_parse_envelope(m->env, len, m, &body) < 0 ||
        strcmp(m->id, id) != 0) {
        snprintf(err, err_len, "queue/%s: malformed envelope", id);
        errno = EINVAL;
        goto fail;
    }
    m->body_offset = (int64_t)body;
    if (load_state(m) < 0) {
        snprintf(err, err_len, "queue/%s.state: malformed or unreadable (errno %d)", id, errno);
        goto fail;
    }
    if (keep_fd)
        m->fd = fd;
    else
        close(fd);
    return 0;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    spool_free(m);
    errno = e;
    return -1;
}

void spool_free(struct spool_message *m)
{
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    free(m->rcpts);
    free(m->env);
    m->rcpts = NULL;
    m->env = NULL;
    m->rcpt_count = 0;
}

/* ---- mrs queue ----------------------------------------------------------------- */

/* format_span — "3d04h", "2h05m", "4m12s", "12s". */
static void format_span(int64_t ms, char *buf, size_t len)
{
    int64_t s = ms < 0 ? 0 : ms / 1000;
    if (s >= 86400)
        snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
    else if (s >= 3600)
        snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else if (s >= 60)
        snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else
        snprintf(buf, len, "%llds", (long long)s);
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* collect_ids — the message ids in queue/, sorted (oldest first). */
static char (*collect_ids(const char *dir, size_t *count))[QUEUE_ID_BYTES]
{
    DIR *d = opendir(dir);
    char (*ids)[QUEUE_ID_BYTES] = NULL;
    size_t n = 0, cap = 0;
    if (!d)
        return NULL;
    for (struct dirent *e; (e = readdir(d)) && n < SPOOL_LIST_MAX_MESSAGES;) {
        if (!spool_valid_id(e->d_name))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            void *p = realloc(ids, nc * sizeof *ids);
            if (!p)
                break;
            ids = p;
            cap = nc;
        }
        memcpy(ids[n++], e->d_name, QUEUE_ID_BYTES);
    }
    closedir(d);
    if (n)
        qsort(ids, n, sizeof *ids, cmp_ids);
    *count = n;
    return ids ? ids : calloc(1, sizeof *ids);
}

static size_t list_one(FILE *out, const struct spool_message *m, int64_t now);

size_t spool_list_message(FILE *out, const struct spool_message *m, int64_t now, const char *note)
{
    size_t left = list_one(out, m, now);
    if (note)
        fprintf(out, "    (%s)\n", note);
    return left;
}

/* list_one — one message: a summary line, then one line per recipient
 * not delivered yet.  Returns the recipients left. */
static size_t list_one(FILE *out, const struct spool_message *m, int64_t now)
{
    char age[32], next[48];
    size_t left = 0;
    for (size_t i = 0; i < m->rcpt_count; i++)
        left += m->rcpts[i].status == SPOOL_PENDING || m->rcpts[i].status == SPOOL_DEFERRED;
    format_span(now - m->received_ms, age, sizeof age);
    if (m->next_ms > now) {
        format_span(m->next_ms - now + 999, next, sizeof next);
        memmove(next + 3, next, strlen(next) + 1);
        memcpy(next, "in ", 3);
    } else {
        snprintf(next, sizeof next, "due now");
    }
    fprintf(out, "%s  age %s  from <%s>  %zu of %zu recipient(s) left  next attempt %s  attempts %d\n",
            m->id, age, m->from, left, m->rcpt_count, next, m->attempts);
    for (size_t i = 0; i < m->rcpt_count; i++) {
        const struct spool_rcpt *r = &m->rcpts[i];
        if (r->status == SPOOL_DELIVERED)
            continue;
        fprintf(out, "    %-9s <%s>%s%s%s%s%s\n", spool_status_name(r->status), r->addr, r->reply[0] ? "  " : "",
                r->reply, r->remote[0] ? " (from " : "", r->remote, r->remote[0] ? ")" : "");
    }
    return left;
}

int spool_cli_list(FILE *out)
{
    char dir[SPOOL_PATH_MAX_BYTES], err[256];
    size_t n = 0, listed = 0, left = 0;
    snprintf(dir, sizeof dir, "%s/queue", config->spool_dir);
    char (*ids)[QUEUE_ID_BYTES] = collect_ids(dir, &n);
    if (!ids) {
        fprintf(stderr, "mrs queue: cannot read %s (errno %d): check MRS_SPOOL_DIR\n", dir, errno);
        return 1;
    }
    int64_t now = util_wall_ms();
    for (size_t i = 0; i < n; i++) {
        struct spool_message m;
        if (spool_load(ids[i], &m, false, err, sizeof err) < 0) {
            if (errno != ENOENT) /* ENOENT: delivered while we listed */
                fprintf(out, "%s  unreadable: %s\n", ids[i], err);
            continue;
        }
        left += list_one(out, &m, now);
        listed++;
        spool_free(&m);
    }
    fprintf(out, "%zu message(s), %zu recipient(s) left in %s\n", listed, left, config->spool_dir);
    free(ids);
    return 0;
}
