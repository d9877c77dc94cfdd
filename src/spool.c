/*
 * spool — parsers of the message envelope and the state file, the state
 * formatter, loading a message for delivery, salvaging what a damaged
 * envelope still says (for its bounce), and `mrs queue` (see spool.h and
 * docs/spool.md).
 *
 * Loading tells a damaged file (EINVAL: it never gets better, the message
 * is set aside) from a failing read (EIO, ENOMEM…: it may pass, the
 * message is tried again later).
 *
 * Files are read with hard caps (SPOOL_ENVELOPE_MAX_BYTES, the state size
 * its recipients allow), so a damaged file can cost at most that much
 * memory.  Nothing here writes, renames or locks.
 */
#include "spool.h"

#include "config.h"
#include "dsn.h"
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

/* envelope_dsn — the RFC 3461 keys: `ret`, `envid`, and `notify` /
 * `orcpt` for the rcpt line before them (rcpts read so far); checked as
 * strictly as the SMTP parameters they came from.  Other keys are ignored. */
static int envelope_dsn(struct spool_message *m, const char *key, const char *value, size_t rcpts)
{
    size_t n = strlen(value);
    if (!strcmp(key, "ret")) {
        m->ret = !strcmp(value, "FULL") ? DSN_RET_FULL : !strcmp(value, "HDRS") ? DSN_RET_HDRS : -1;
        return m->ret < 0 ? -1 : 0;
    }
    if (!strcmp(key, "envid")) {
        m->envid = value;
        return dsn_valid_envid(value, n) ? 0 : -1;
    }
    bool notify = !strcmp(key, "notify"), orcpt = !strcmp(key, "orcpt");
    if (!notify && !orcpt)
        return 0; /* a key a newer writer added */
    if (rcpts == 0)
        return -1;
    struct spool_rcpt *r = &m->rcpts[rcpts - 1];
    if (notify) {
        r->notify_text = value;
        return dsn_parse_notify(value, n, &r->notify);
    }
    r->orcpt = value;
    return dsn_parse_orcpt(value, n, NULL, 0, NULL);
}

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
    } else if (!strcmp(line, "smtputf8")) {
        m->smtputf8 = !strcmp(value, "1");
    } else if (!strcmp(line, "from")) {
        m->from = value;
    } else if (!strcmp(line, "rcpt")) {
        if (*rcpts >= m->rcpt_count || !*value)
            return -1;
        m->rcpts[(*rcpts)++].addr = value;
    } else {
        return envelope_dsn(m, line, value, *rcpts);
    }
    return 0;
}

/* envelope_end — the LF that ends the envelope block (the second of the
 * first "\n\n"), or NULL when buf has none. */
static char *envelope_end(char *buf, size_t len)
{
    for (size_t i = 1; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\n')
            return buf + i;
    return NULL;
}

/* count_rcpt_lines — the "rcpt " lines of the block [buf, end). */
static size_t count_rcpt_lines(const char *buf, const char *end)
{
    size_t n = 0;
    for (const char *p = buf; p < end; p++)
        n += p[0] == '\n' && (size_t)(end - p) > 5 && memcmp(p + 1, "rcpt ", 5) == 0;
    return n;
}

int spool_parse_envelope(char *buf, size_t len, struct spool_message *m, size_t *body_offset)
{
    char *end = envelope_end(buf, len);
    size_t vlen = sizeof QUEUE_SPOOL_VERSION - 1;
    errno = EINVAL;
    if (!end || len < vlen + 1 || memcmp(buf, QUEUE_SPOOL_VERSION "\n", vlen + 1) != 0)
        return -1;
    size_t block = (size_t)(end - buf), n = count_rcpt_lines(buf, end);
    if (memchr(buf, '\0', block) || n == 0 || n > SPOOL_RCPTS_MAX)
        return -1;
    if (!(m->rcpts = calloc(n, sizeof *m->rcpts)))
        return -1; /* errno ENOMEM: the file may be fine */
    m->rcpt_count = n;
    m->user = m->client = m->helo = "";
    m->from = NULL;
    size_t rcpts = 0;
    char *line = buf + vlen + 1;
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line) + 1);
        *nl = '\0';
        if (envelope_field(m, line, &rcpts) < 0)
            return errno = EINVAL, -1;
        line = nl + 1;
    }
    *body_offset = block + 1;
    if (!m->id[0] || m->received_ms <= 0 || !m->from || rcpts != n)
        return errno = EINVAL, -1;
    return 0;
}

/* ---- salvage (a malformed envelope, for its bounce) ---------------------------- */

/* plausible_address — printable ASCII (a quoted local part may hold
 * spaces) with an '@' inside, and nothing that would break "<addr>". */
static bool plausible_address(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (len == 0 || len > SPOOL_REPLY_MAX_BYTES || !at || at == s || at == s + len - 1)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '<' || s[i] == '>')
            return false;
    return true;
}

/* salvage_line — one NUL-terminated line of a damaged envelope (llen
 * bytes before its LF: a NUL inside means the line is cut, so skipped). */
static void salvage_line(struct spool_message *m, size_t cap, char *line, size_t llen)
{
    char *sp = strchr(line, ' ');
    if (!sp || strlen(line) != llen)
        return;
    *sp = '\0';
    const char *v = sp + 1;
    size_t vlen = llen - (size_t)(v - line);
    if (!strcmp(line, "from") && (vlen == 0 || plausible_address(v, vlen)))
        m->from = v;
    else if (!strcmp(line, "rcpt") && m->rcpt_count < cap && plausible_address(v, vlen))
        m->rcpts[m->rcpt_count++].addr = v;
    else if (!strcmp(line, "received"))
        parse_i64(v, &m->received_ms); /* left 0 when it is not a number */
}

int spool_salvage_envelope(char *buf, size_t len, struct spool_message *m, size_t *body_offset)
{
    char *end = envelope_end(buf, len);
    char *stop = end ? end : buf + len;
    size_t n = count_rcpt_lines(buf, stop);
    n = n == 0 ? 1 : n > SPOOL_RCPTS_MAX ? SPOOL_RCPTS_MAX : n;
    *body_offset = end ? (size_t)(end - buf) + 1 : 0;
    m->user = m->client = m->helo = "";
    m->from = NULL;
    if (!(m->rcpts = calloc(n, sizeof *m->rcpts)))
        return -1;
    for (char *line = buf; line < stop;) {
        char *nl = memchr(line, '\n', (size_t)(stop - line));
        size_t llen = nl ? (size_t)(nl - line) : (size_t)(stop - line);
        if (!nl)
            break; /* a last line without its LF may be cut short */
        *nl = '\0';
        salvage_line(m, n, line, llen);
        line = nl + 1;
    }
    return m->from && m->from[0] && m->rcpt_count > 0 ? 0 : -1;
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
    if (!strncmp(line, "bounced ", 8)) {
        if (!spool_valid_id(line + 8))
            return -1;
        memcpy(m->bounce_id, line + 8, QUEUE_ID_BYTES);
        return 0;
    }
    if (!strncmp(line, "delayed ", 8)) {
        if (!spool_valid_id(line + 8))
            return -1;
        memcpy(m->delay_id, line + 8, QUEUE_ID_BYTES);
        return 0;
    }
    if (!strncmp(line, "relayed ", 8)) {
        if (parse_i64(line + 8, &v) < 0 || (uint64_t)v >= m->rcpt_count)
            return -1;
        m->rcpts[v].relayed = true;
        return 0;
    }
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
    return 192 + m->rcpt_count * (SPOOL_STATE_LINE_BYTES + 32); /* + "relayed IDX" */
}

size_t spool_format_state(const struct spool_message *m, char *out, size_t cap)
{
    size_t len = 0;
    int n = snprintf(out, cap, "%s\nattempts %d\nnext %lld\n%s%s%s%s%s%s", SPOOL_STATE_VERSION, m->attempts,
                     (long long)m->next_ms, m->bounce_id[0] ? "bounced " : "", m->bounce_id,
                     m->bounce_id[0] ? "\n" : "", m->delay_id[0] ? "delayed " : "", m->delay_id,
                     m->delay_id[0] ? "\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return 0;
    len = (size_t)n;
    for (size_t i = 0; i < m->rcpt_count; i++) {
        const struct spool_rcpt *r = &m->rcpts[i];
        n = snprintf(out + len, cap - len, "rcpt %zu %s %lld %s %s\n", i, spool_status_name(r->status),
                     (long long)r->when_ms, r->remote[0] ? r->remote : "-", r->reply[0] ? r->reply : "-");
        if (n >= 0 && (size_t)n < cap - len && r->relayed && r->status == SPOOL_DELIVERED) {
            len += (size_t)n;
            n = snprintf(out + len, cap - len, "relayed %zu\n", i);
        }
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
 * envelope (at most SPOOL_ENVELOPE_MAX_BYTES) into a new heap buffer.
 * NULL with errno: EINVAL when the file ends or the limit is reached
 * first (a damaged file: with `lenient` the bytes read are returned
 * instead), the read's own errno (EIO…) or ENOMEM otherwise, which say
 * nothing about the file's contents. */
static char *read_envelope(int fd, size_t *len_out, bool lenient)
{
    size_t cap = SPOOL_READ_FIRST_BYTES, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        ssize_t n = pread(fd, buf + len, cap - len, (off_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break; /* an I/O error: errno says which */
        size_t from = len ? len - 1 : 0;
        len += (size_t)n;
        *len_out = len;
        if (envelope_end(buf + from, len - from))
            return buf;
        if (n == 0 || (len == cap && cap >= SPOOL_ENVELOPE_MAX_BYTES)) {
            if (lenient)
                return buf;
            free(buf);
            errno = EINVAL; /* ends, or goes on too long, before its empty line */
            return NULL;
        }
        if (len == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
    }
    int e = errno;
    free(buf);
    errno = e;
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
    errno = buf ? EINVAL : ENOMEM; /* too long for its recipients: malformed */
    if (buf && len < cap && (rc = spool_parse_state(buf, len, m)) < 0)
        errno = EINVAL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* load_envelope — read and parse the envelope of the open file fd into m.
 * -1 with errno (EINVAL: malformed) and a line in err. */
static int load_envelope(const char *id, int fd, struct spool_message *m, char *err, size_t err_len)
{
    size_t len, body;
    if (!(m->env = read_envelope(fd, &len, false))) {
        int e = errno;
        if (e == EINVAL)
            snprintf(err, err_len, "queue/%s: malformed envelope (no end)", id);
        else
            snprintf(err, err_len, "cannot read queue/%s (errno %d)", id, e);
        errno = e;
        return -1;
    }
    if (spool_parse_envelope(m->env, len, m, &body) < 0 || strcmp(m->id, id) != 0) {
        int e = errno == ENOMEM ? ENOMEM : EINVAL;
        snprintf(err, err_len, e == ENOMEM ? "queue/%s: out of memory" : "queue/%s: malformed envelope", id);
        errno = e;
        return -1;
    }
    m->body_offset = (int64_t)body;
    return 0;
}

int spool_load(const char *id, struct spool_message *m, bool keep_fd, char *err, size_t err_len)
{
    char path[SPOOL_PATH_MAX_BYTES];
    struct stat st;
    memset(m, 0, sizeof *m);
    m->fd = -1;
    path_of(id, "", path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        snprintf(err, err_len, "cannot open queue/%s (errno %d)", id, e);
        errno = e;
        goto fail;
    }
    m->file_size = st.st_size;
    if (load_envelope(id, fd, m, err, err_len) < 0)
        goto fail;
    if (load_state(m) < 0) {
        int e = errno;
        snprintf(err, err_len, "queue/%s.state: malformed or unreadable (errno %d)", id, e);
        errno = e;
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

/* ---- salvage ------------------------------------------------------------------- */

/* read_head — the header section at offset of fd (at most max bytes, up
 * to and including the CRLF before the empty line) into a heap buffer. */
static char *read_head(int fd, int64_t offset, size_t max, size_t *len_out)
{
    char *buf = max ? malloc(max) : NULL;
    ssize_t n = -1;
    while (buf && (n = pread(fd, buf, max, (off_t)offset)) < 0 && errno == EINTR)
        ;
    if (n <= 0) {
        free(buf);
        return NULL;
    }
    size_t len = (size_t)n;
    for (size_t i = 0; i + 4 <= len; i++)
        if (!memcmp(buf + i, "\r\n\r\n", 4)) {
            len = i + 2;
            break;
        }
    *len_out = len >= 2 && !memcmp(buf, "\r\n", 2) ? 0 : len; /* "\r\n" first: no header section */
    return buf;
}

/* salvage_open — the damaged envelope at path into m (zeroed here), with
 * the number of its rcpt lines; the file stays open in *fd_out (or -1). */
static int salvage_open(const char *path, struct spool_message *m, size_t *body, size_t *lines, int *fd_out)
{
    size_t len = 0;
    memset(m, 0, sizeof *m);
    m->fd = -1;
    *body = *lines = 0;
    if ((*fd_out = open(path, O_RDONLY | O_CLOEXEC)) < 0 || !(m->env = read_envelope(*fd_out, &len, true)))
        return -1;
    char *end = envelope_end(m->env, len);
    *lines = count_rcpt_lines(m->env, end ? end : m->env + len);
    return spool_salvage_envelope(m->env, len, m, body);
}

/* salvage_state — apply the state file when it still maps onto the
 * recipients read (every rcpt line kept, so indexes match) and parses. */
static void salvage_state(struct spool_message *m, size_t lines)
{
    if (m->rcpt_count != lines || load_state(m) == 0)
        return;
    for (size_t i = 0; i < m->rcpt_count; i++) { /* undo a partial update */
        m->rcpts[i].status = SPOOL_PENDING;
        m->rcpts[i].reply[0] = m->rcpts[i].remote[0] = '\0';
    }
}

int spool_salvage(const char *id, struct spool_message *m, size_t headers_max, char **headers, size_t *headers_len)
{
    char path[SPOOL_PATH_MAX_BYTES];
    size_t body, lines;
    int fd;
    *headers = NULL;
    *headers_len = 0;
    path_of(id, "", path, sizeof path);
    int rc = salvage_open(path, m, &body, &lines, &fd);
    snprintf(m->id, sizeof m->id, "%s", id);
    if (m->received_ms <= 0)
        m->received_ms = spool_id_ms(id);
    if (rc == 0) {
        salvage_state(m, lines);
        if (body > 0)
            *headers = read_head(fd, (int64_t)body, headers_max, headers_len);
    }
    if (fd >= 0)
        close(fd);
    return rc;
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

/* id_with_suffix — whether name is a message id followed by suffix. */
static bool id_with_suffix(const char *name, const char *suffix)
{
    char id[QUEUE_ID_BYTES];
    size_t n = strlen(name), sl = strlen(suffix);
    if (n != QUEUE_ID_BYTES - 1 + sl || strcmp(name + QUEUE_ID_BYTES - 1, suffix) != 0)
        return false;
    return util_copy(id, sizeof id, name, QUEUE_ID_BYTES - 1) == 0 && spool_valid_id(id);
}

/* collect_ids — the ids of queue/<id><suffix>, sorted (oldest first). */
static char (*collect_ids(const char *dir, const char *suffix, size_t *count))[QUEUE_ID_BYTES]
{
    DIR *d = opendir(dir);
    char (*ids)[QUEUE_ID_BYTES] = NULL;
    size_t n = 0, cap = 0;
    if (!d)
        return NULL;
    for (struct dirent *e; (e = readdir(d)) && n < SPOOL_LIST_MAX_MESSAGES;) {
        if (!id_with_suffix(e->d_name, suffix))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            void *p = realloc(ids, nc * sizeof *ids);
            if (!p)
                break;
            ids = p;
            cap = nc;
        }
        if (util_copy(ids[n], QUEUE_ID_BYTES, e->d_name, QUEUE_ID_BYTES - 1) == 0)
            n++;
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

/* list_bad — one quarantined message: what its damaged envelope still says. */
static void list_bad(FILE *out, const char *id, int64_t now)
{
    char path[SPOOL_PATH_MAX_BYTES], age[32];
    struct spool_message m;
    size_t body, lines;
    int fd;
    path_of(id, ".bad", path, sizeof path);
    salvage_open(path, &m, &body, &lines, &fd);
    if (fd >= 0)
        close(fd);
    format_span(now - (m.received_ms > 0 ? m.received_ms : spool_id_ms(id)), age, sizeof age);
    fprintf(out, "%s  quarantined  age %s  from %s%s%s  %zu recipient(s) readable  queue/%s.bad: malformed, "
            "set aside\n", id, age, m.from ? "<" : "", m.from ? m.from : "(unreadable)", m.from ? ">" : "",
            m.rcpt_count, id);
    spool_free(&m);
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

/* list_quarantined — every queue/<id>.bad; returns how many. */
static size_t list_quarantined(FILE *out, const char *dir, int64_t now)
{
    size_t n = 0;
    char (*ids)[QUEUE_ID_BYTES] = collect_ids(dir, ".bad", &n);
    for (size_t i = 0; ids && i < n; i++)
        list_bad(out, ids[i], now);
    free(ids);
    return n;
}

int spool_cli_list(FILE *out)
{
    char dir[SPOOL_PATH_MAX_BYTES], err[256];
    size_t n = 0, listed = 0, left = 0;
    snprintf(dir, sizeof dir, "%s/queue", config->spool_dir);
    char (*ids)[QUEUE_ID_BYTES] = collect_ids(dir, "", &n);
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
    free(ids);
    size_t bad = list_quarantined(out, dir, now);
    fprintf(out, "%zu message(s), %zu recipient(s) left in %s", listed, left, config->spool_dir);
    if (bad)
        fprintf(out, "; %zu quarantined (queue/<id>.bad)", bad);
    fprintf(out, "\n");
    return 0;
}

size_t spool_list_quarantined(FILE *out, int64_t now)
{
    char dir[SPOOL_PATH_MAX_BYTES];
    snprintf(dir, sizeof dir, "%s/queue", config->spool_dir);
    return list_quarantined(out, dir, now);
}

static bool has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

#define SPOOL_HEADER_SCAN_MAX (1024 * 1024) /* the head mrs wrote is far smaller */

bool spool_needs_smtputf8(const struct spool_message *m)
{
    if (!m->smtputf8)
        return false;
    if (has_8bit(m->from))
        return true;
    for (size_t i = 0; i < m->rcpt_count; i++)
        if (has_8bit(m->rcpts[i].addr))
            return true;
    char buf[4096];
    unsigned last = 0; /* the previous bytes, for the empty line across pieces */
    for (int64_t off = m->body_offset; off < m->file_size && off - m->body_offset < SPOOL_HEADER_SCAN_MAX;) {
        ssize_t n = pread(m->fd, buf, sizeof buf, off);
        if (n <= 0)
            return true;
        for (ssize_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)buf[i];
            if (c >= 0x80)
                return true;
            last = (last << 8 | c) & 0xffffff;
            if ((last & 0xffff) == 0x0a0a || last == 0x0a0d0a) /* "\n\n", "\n\r\n": the body begins */
                return false;
        }
        off += n;
    }
    return false;
}
