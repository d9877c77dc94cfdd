/*
 * loadgen-ossl — the benchmark's load generator on OpenSSL (issue 11).
 *
 * The same dialog, options and output as test/tools/loadgen.c, but with
 * the client side of TLS on the system's OpenSSL instead of mrs's own
 * mbedTLS path, so that the client's handshake cost (X25519 and the
 * signature check) is OpenSSL's, not mbedTLS's, and does not decide a row
 * on a machine where client and server share the CPUs.  N client threads
 * on loopback: connect, EHLO, STARTTLS, EHLO, AUTH PLAIN, then K times
 * MAIL, RCPT, DATA (RSET between), QUIT.  TLS 1.3 only.
 *
 * Bounded like loadgen: no message starts after -t seconds and every
 * socket wait ends at the limit plus LOADGEN_GRACE_MS (SO_RCVTIMEO and
 * SO_SNDTIMEO on blocking sockets, set before each wait).  The RESULT
 * line adds cpu_s= (this process's own user + system CPU), resumed=
 * (handshakes the server resumed) and server_key= (the key type of the
 * certificate the server chose, e.g. EC-256 or RSA-2048).
 *
 * Extra option: -x rsa offers only RSA signature algorithms, so a server
 * holding an ECDSA and an RSA certificate serves the RSA one.
 *
 * Built by test/bench/build-loadgen-ossl.sh with the system compiler
 * against libssl (a bench and test dependency, like Postfix), not by the
 * Makefile: it is not part of the static binary's toolchain.  Test tool,
 * not shipped.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_CLIENTS 2048
#define LG_MAX_MESSAGES 10000000L
#define LG_MAX_SECONDS 3600L
#define LG_MAX_SIZE (50L * 1024 * 1024)
#define LG_MAX_PER_CONN 10000L
#define LG_MAX_IDLE 100000L
#define LG_IO_TIMEOUT_MS 30000
#define LG_GRACE_MS 15000
#define LG_LINE_MAX 1000
#define LG_REPLY_LINES_MAX 100
#define LG_STACK_BYTES (256 * 1024)
#define LG_IDLE_THREADS 8
#define LG_ARG_MAX 256
#define LG_INBUF 4096

enum stage {
    ST_CONNECT, ST_BANNER, ST_EHLO, ST_STARTTLS, ST_TLS, ST_EHLO2, ST_AUTH, ST_MAIL, ST_RCPT,
    ST_DATA, ST_DOT, ST_RSET, ST_QUIT, ST_COUNT
};
static const char *const stage_names[ST_COUNT] = {"connect", "banner", "ehlo", "starttls", "tls",
                                                  "ehlo2", "auth", "mail", "rcpt", "data",
                                                  "dot", "rset", "quit"};

static struct {
    struct sockaddr_in addr;
    long clients, messages, seconds, per_conn, size, idle;
    bool implicit_tls, idle_tls, pipelining, quiet, verbose, resume, rsa_only;
    const char *user, *password, *from, *rcpt, *helo, *sni;
} opt = {
    .clients = 1, .messages = 1000, .seconds = 60, .per_conn = 1, .size = 10240,
    .helo = "loadgen.test", .sni = "localhost",
};

/* shared, read-only after start */
static SSL_CTX *ctx;
static char *message;
static size_t message_len;
static char auth_line[LG_ARG_MAX * 3 + 64];
static int64_t end_ms, hard_end_ms;

static atomic_long claimed, accepted, connections, failed, resume_offered, resumed;
static atomic_long failures[ST_COUNT][600];
static uint32_t *latency_us;
static atomic_long nlat;
static atomic_bool stop_flag, printed_tls;
static char server_key[32] = "none"; /* the first server certificate's key, e.g. EC-256 */
static atomic_long stage_us[ST_COUNT], stage_max_us[ST_COUNT], stage_n[ST_COUNT];
static _Thread_local int64_t mark_us;
static _Thread_local SSL_SESSION *saved_session;

/* one client connection: the socket, TLS once started, buffered input */
struct cl {
    int fd;
    SSL *ssl;
    char in[LG_INBUF];
    size_t start, end;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_ms(void) { return mono_us() / 1000; }

static void stage_done(enum stage st)
{
    int64_t now = mono_us(), d = now - mark_us;
    mark_us = now;
    atomic_fetch_add(&stage_us[st], d);
    atomic_fetch_add(&stage_n[st], 1);
    long m = atomic_load(&stage_max_us[st]);
    while (d > m && !atomic_compare_exchange_weak(&stage_max_us[st], &m, d))
        ;
}

/* arm — the next socket wait ends at the I/O timeout or the hard end;
 * false when the hard end has passed. */
static bool arm(int fd)
{
    int64_t now = mono_ms(), d = now + LG_IO_TIMEOUT_MS;
    if (d > hard_end_ms)
        d = hard_end_ms;
    if (d <= now)
        return false;
    struct timeval tv = {.tv_sec = (d - now) / 1000, .tv_usec = (d - now) % 1000 * 1000};
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
           setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen-ossl -p PORT -u USER -f FROM -r RCPT [options]\n"
            "  the options of loadgen (-a -p -c -n -t -k -s -u -w -f -r -e -S -P -R -i -I -T -q -v),\n"
            "  the client on OpenSSL, TLS 1.3 only; and\n"
            "  -x rsa    offer only RSA signature algorithms (the server's RSA certificate)\n");
    exit(2);
}

static long number(const char *s, long min, long max, char flag)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "loadgen-ossl: -%c %s: expected a number from %ld to %ld\n", flag, s, min, max);
        exit(2);
    }
    return v;
}

static const char *text_arg(const char *s, char flag)
{
    size_t n = strnlen(s, LG_ARG_MAX);
    if (n == 0 || n >= LG_ARG_MAX || strpbrk(s, "\r\n<>")) {
        fprintf(stderr, "loadgen-ossl: -%c: empty, too long or holding CR, LF, < or >\n", flag);
        exit(2);
    }
    return s;
}

static void parse_args(int argc, char **argv)
{
    int port = 0, ch;
    const char *addr = "127.0.0.1";
    while ((ch = getopt(argc, argv, "a:p:c:n:t:k:s:u:w:f:r:e:S:PRiI:Tqvx:h")) != -1) {
        switch (ch) {
        case 'a': addr = optarg; break;
        case 'p': port = (int)number(optarg, 1, 65535, 'p'); break;
        case 'c': opt.clients = number(optarg, 1, LG_MAX_CLIENTS, 'c'); break;
        case 'n': opt.messages = number(optarg, 1, LG_MAX_MESSAGES, 'n'); break;
        case 't': opt.seconds = number(optarg, 1, LG_MAX_SECONDS, 't'); break;
        case 'k': opt.per_conn = number(optarg, 1, LG_MAX_PER_CONN, 'k'); break;
        case 's': opt.size = number(optarg, 100, LG_MAX_SIZE, 's'); break;
        case 'u': opt.user = text_arg(optarg, 'u'); break;
        case 'w': opt.password = text_arg(optarg, 'w'); break;
        case 'f': opt.from = text_arg(optarg, 'f'); break;
        case 'r': opt.rcpt = text_arg(optarg, 'r'); break;
        case 'e': opt.helo = text_arg(optarg, 'e'); break;
        case 'S': opt.sni = text_arg(optarg, 'S'); break;
        case 'P': opt.pipelining = true; break;
        case 'R': opt.resume = true; break;
        case 'i': opt.implicit_tls = true; break;
        case 'I': opt.idle = number(optarg, 1, LG_MAX_IDLE, 'I'); break;
        case 'T': opt.idle_tls = true; break;
        case 'q': opt.quiet = true; break;
        case 'v': opt.verbose = true; break;
        case 'x':
            if (strcmp(optarg, "rsa") != 0)
                usage();
            opt.rsa_only = true;
            break;
        default: usage();
        }
    }
    if (!opt.password)
        opt.password = getenv("LOADGEN_PASSWORD");
    if (opt.password)
        text_arg(opt.password, 'w');
    if (!port || (!opt.idle && (!opt.user || !opt.password || !opt.from || !opt.rcpt)))
        usage();
    opt.addr.sin_family = AF_INET;
    opt.addr.sin_port = htons((uint16_t)port);
    /* loopback only: this tool must never load someone else's server */
    if (inet_pton(AF_INET, addr, &opt.addr.sin_addr) != 1 || (ntohl(opt.addr.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "loadgen-ossl: -a %s: only IPv4 loopback addresses (127.0.0.0/8)\n", addr);
        exit(2);
    }
}

/* ---- the message and AUTH line -------------------------------------------- */

static void base64(const unsigned char *in, size_t n, char *out, size_t cap)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

static void make_auth_line(void)
{
    unsigned char raw[LG_ARG_MAX * 2 + 2];
    size_t ul = strlen(opt.user), pl = strlen(opt.password);
    raw[0] = 0;
    memcpy(raw + 1, opt.user, ul);
    raw[1 + ul] = 0;
    memcpy(raw + 2 + ul, opt.password, pl);
    char b64[LG_ARG_MAX * 3];
    base64(raw, 2 + ul + pl, b64, sizeof b64);
    snprintf(auth_line, sizeof auth_line, "AUTH PLAIN %s\r\n", b64);
}

/* make_message — headers, 76-character text lines up to opt.size bytes,
 * the end-of-data dot; no line starts with a dot. */
static void make_message(void)
{
    size_t cap = (size_t)opt.size + 1024;
    message = malloc(cap);
    if (!message) {
        fprintf(stderr, "loadgen-ossl: out of memory\n");
        exit(1);
    }
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    int n = snprintf(message, cap,
                     "From: <%s>\r\nTo: <%s>\r\nSubject: loadgen benchmark message\r\n"
                     "Date: %s\r\nMessage-ID: <loadgen.%ld@%s>\r\nMIME-Version: 1.0\r\n"
                     "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                     opt.from, opt.rcpt, date, (long)getpid(), opt.helo);
    size_t len = n > 0 ? (size_t)n : 0;
    static const char text[] = "The quick brown fox jumps over the lazy dog; "
                               "pack my box with five dozen liquor jugs. ";
    for (size_t line = 0; len + 2 < (size_t)opt.size; line++) {
        size_t want = (size_t)opt.size - len - 2, w = want < 76 ? want : 76;
        for (size_t i = 0; i < w; i++)
            message[len + i] = text[(line * 7 + i) % (sizeof text - 1)];
        len += w;
        message[len++] = '\r';
        message[len++] = '\n';
    }
    memcpy(message + len, ".\r\n", 3);
    message_len = len + 3;
}

/* ---- I/O -------------------------------------------------------------------- */

static bool cl_write(struct cl *c, const char *p, size_t n)
{
    while (n) {
        if (!arm(c->fd))
            return false;
        if (c->ssl) {
            size_t w = 0;
            if (SSL_write_ex(c->ssl, p, n, &w) != 1)
                return false;
            p += w;
            n -= w;
        } else {
            ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return false;
            p += w;
            n -= (size_t)w;
        }
    }
    return true;
}

static bool cl_fill(struct cl *c)
{
    if (c->start > 0) {
        memmove(c->in, c->in + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end == sizeof c->in || !arm(c->fd))
        return false;
    for (;;) {
        if (c->ssl) {
            size_t r = 0;
            if (SSL_read_ex(c->ssl, c->in + c->end, sizeof c->in - c->end, &r) != 1)
                return false;
            c->end += r;
            return true;
        }
        ssize_t r = recv(c->fd, c->in + c->end, sizeof c->in - c->end, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        c->end += (size_t)r;
        return true;
    }
}

/* read_reply — one whole (multi-line) reply; its code, or 0 on error. */
static int read_reply(struct cl *c)
{
    for (int i = 0; i < LG_REPLY_LINES_MAX; i++) {
        char *nl;
        while (!(nl = memchr(c->in + c->start, '\n', c->end - c->start)))
            if (c->end - c->start > LG_LINE_MAX || !cl_fill(c))
                return 0;
        char *line = c->in + c->start;
        size_t len = (size_t)(nl - line) + 1;
        c->start += len;
        if (len < 4 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' ||
            line[2] > '9')
            return 0;
        if (line[3] != '-')
            return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    }
    return 0;
}

static bool expect(struct cl *c, enum stage stage, int want)
{
    int code = read_reply(c);
    if (code == want) {
        stage_done(stage);
        return true;
    }
    atomic_fetch_add(&failures[stage][code >= 0 && code < 600 ? code : 0], 1);
    return false;
}

/* command — one line made of three pieces, sent in one write */
static bool command(struct cl *c, enum stage stage, const char *a, const char *b, const char *d, int want)
{
    char line[LG_ARG_MAX * 4 + 64];
    int n = snprintf(line, sizeof line, "%s%s%s", a, b, d);
    if (n < 0 || (size_t)n >= sizeof line || !cl_write(c, line, (size_t)n)) {
        atomic_fetch_add(&failures[stage][0], 1);
        return false;
    }
    return expect(c, stage, want);
}

static bool start_tls(struct cl *c)
{
    c->ssl = SSL_new(ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_set_tlsext_host_name(c->ssl, opt.sni) != 1) {
        atomic_fetch_add(&failures[ST_TLS][0], 1);
        return false;
    }
    if (opt.resume && saved_session && SSL_set_session(c->ssl, saved_session) == 1)
        atomic_fetch_add(&resume_offered, 1);
    if (!arm(c->fd) || SSL_connect(c->ssl) != 1) {
        atomic_fetch_add(&failures[ST_TLS][0], 1);
        if (!opt.quiet) {
            char e[256];
            ERR_error_string_n(ERR_get_error(), e, sizeof e);
            fprintf(stderr, "loadgen-ossl: TLS handshake: %s\n", e);
        }
        return false;
    }
    if (SSL_session_reused(c->ssl))
        atomic_fetch_add(&resumed, 1);
    stage_done(ST_TLS);
    if (!atomic_exchange(&printed_tls, true)) {
        X509 *peer = SSL_get0_peer_certificate(c->ssl);
        EVP_PKEY *pk = peer ? X509_get0_pubkey(peer) : NULL;
        if (pk)
            snprintf(server_key, sizeof server_key, "%s-%d",
                     EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA ? "RSA" : EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC ? "EC" : "other",
                     EVP_PKEY_get_bits(pk));
        if (!opt.quiet)
            printf("tls: %s %s, server key %s\n", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl), server_key);
    }
    return true;
}

static void cl_close(struct cl *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* open_session — connect and get to the point where MAIL may be sent (in
 * idle mode: to where the mode asks). */
static bool open_session(struct cl *c, bool do_auth, bool tls)
{
    mark_us = mono_us();
    c->start = c->end = 0;
    c->ssl = NULL;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || !arm(c->fd) || connect(c->fd, (struct sockaddr *)&opt.addr, sizeof opt.addr) != 0) {
        atomic_fetch_add(&failures[ST_CONNECT][0], 1);
        return false;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    atomic_fetch_add(&connections, 1);
    if (opt.implicit_tls && !start_tls(c))
        return false;
    if (!expect(c, ST_BANNER, 220) || !command(c, ST_EHLO, "EHLO ", opt.helo, "\r\n", 250))
        return false;
    if (tls && !opt.implicit_tls &&
        (!command(c, ST_STARTTLS, "STARTTLS\r\n", "", "", 220) || !start_tls(c) ||
         !command(c, ST_EHLO2, "EHLO ", opt.helo, "\r\n", 250)))
        return false;
    return !do_auth || command(c, ST_AUTH, auth_line, "", "", 235);
}

static bool transaction(struct cl *c)
{
    if (opt.pipelining) {
        char cmds[LG_ARG_MAX * 2 + 64];
        int n = snprintf(cmds, sizeof cmds, "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", opt.from, opt.rcpt);
        if (n < 0 || (size_t)n >= sizeof cmds || !cl_write(c, cmds, (size_t)n)) {
            atomic_fetch_add(&failures[ST_MAIL][0], 1);
            return false;
        }
        if (!expect(c, ST_MAIL, 250) || !expect(c, ST_RCPT, 250) || !expect(c, ST_DATA, 354))
            return false;
    } else if (!command(c, ST_MAIL, "MAIL FROM:<", opt.from, ">\r\n", 250) ||
               !command(c, ST_RCPT, "RCPT TO:<", opt.rcpt, ">\r\n", 250) ||
               !command(c, ST_DATA, "DATA\r\n", "", "", 354)) {
        return false;
    }
    if (!cl_write(c, message, message_len)) {
        atomic_fetch_add(&failures[ST_DOT][0], 1);
        return false;
    }
    return expect(c, ST_DOT, 250);
}

static bool claim(void)
{
    if (atomic_load(&stop_flag) || mono_ms() >= end_ms)
        return false;
    if (atomic_fetch_add(&claimed, 1) >= opt.messages) {
        atomic_fetch_sub(&claimed, 1);
        return false;
    }
    return true;
}

static void record(int64_t start_us)
{
    int64_t us = mono_us() - start_us;
    long i = atomic_fetch_add(&nlat, 1);
    if (i < opt.messages)
        latency_us[i] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void one_connection(void)
{
    struct cl *c = malloc(sizeof *c);
    if (!c) {
        atomic_fetch_add(&failed, 1);
        return;
    }
    int64_t t0 = mono_us();
    long done = 0;
    bool ok = open_session(c, true, true);
    while (ok) {
        if (!(ok = transaction(c)))
            break;
        record(t0);
        atomic_fetch_add(&accepted, 1);
        if (++done >= opt.per_conn || !claim())
            break;
        t0 = mark_us = mono_us();
        ok = command(c, ST_RSET, "RSET\r\n", "", "", 250);
    }
    if (!ok)
        atomic_fetch_add(&failed, 1);
    else
        (void)command(c, ST_QUIT, "QUIT\r\n", "", "", 221);
    if (opt.resume && c->ssl) {
        /* a TLS 1.3 ticket arrives after the handshake: by QUIT it is in */
        SSL_SESSION *s = SSL_get1_session(c->ssl);
        if (s && SSL_SESSION_is_resumable(s)) {
            SSL_SESSION_free(saved_session);
            saved_session = s;
        } else {
            SSL_SESSION_free(s);
        }
    }
    cl_close(c);
    free(c);
}

static void *worker(void *arg)
{
    (void)arg;
    while (claim()) /* each round claims a message: at most opt.messages */
        one_connection();
    SSL_SESSION_free(saved_session);
    saved_session = NULL;
    return NULL;
}

/* ---- idle mode ------------------------------------------------------------------ */

static struct cl *idle_conns;
static atomic_long idle_next, idle_open;

static void *idle_opener(void *arg)
{
    (void)arg;
    for (;;) {
        long i = atomic_fetch_add(&idle_next, 1);
        if (i >= opt.idle || atomic_load(&stop_flag) || mono_ms() >= end_ms)
            return NULL;
        if (open_session(&idle_conns[i], false, opt.idle_tls))
            atomic_fetch_add(&idle_open, 1);
        else
            cl_close(&idle_conns[i]);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, true);
}

static int run_idle(void)
{
    idle_conns = calloc((size_t)opt.idle, sizeof *idle_conns);
    if (!idle_conns)
        return 1;
    for (long i = 0; i < opt.idle; i++)
        idle_conns[i].fd = -1;
    int64_t t0 = mono_ms();
    pthread_t th[LG_IDLE_THREADS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, LG_STACK_BYTES);
    int started = 0;
    for (int i = 0; i < LG_IDLE_THREADS; i++)
        started += pthread_create(&th[started], &attr, idle_opener, NULL) == 0;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    printf("HELD %ld of %ld %s connections in %lld ms\n", atomic_load(&idle_open), opt.idle,
           opt.idle_tls ? "TLS" : "plaintext", (long long)(mono_ms() - t0));
    fflush(stdout);
    while (!atomic_load(&stop_flag) && mono_ms() < end_ms)
        usleep(50 * 1000);
    for (long i = 0; i < opt.idle; i++)
        cl_close(&idle_conns[i]);
    printf("RELEASED\n");
    fflush(stdout);
    free(idle_conns);
    return 0;
}

/* ---- report ------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint32_t *v, long n, double p)
{
    return n ? v[(long)(p * (double)(n - 1) + 0.5)] / 1000.0 : 0;
}

static void report(int64_t elapsed_us)
{
    long n = atomic_load(&nlat);
    if (n > opt.messages)
        n = opt.messages;
    qsort(latency_us, (size_t)n, sizeof *latency_us, cmp_u32);
    double secs = elapsed_us / 1e6;
    long ok = atomic_load(&accepted), bad = atomic_load(&failed);
    double rate = secs > 0 ? ok / secs : 0;
    double p50 = pct_ms(latency_us, n, 0.50), p90 = pct_ms(latency_us, n, 0.90);
    double p99 = pct_ms(latency_us, n, 0.99), mx = n ? latency_us[n - 1] / 1000.0 : 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    if (!opt.quiet) {
        printf("clients %ld, %ld message(s) of %ld bytes per connection%s%s (OpenSSL %s)\n", opt.clients,
               opt.per_conn, opt.size, opt.pipelining ? ", pipelined" : "", opt.resume ? ", TLS resumption" : "",
               OpenSSL_version(OPENSSL_VERSION_STRING));
        if (opt.resume)
            printf("sessions offered for resumption: %ld, resumed by the server: %ld\n",
                   atomic_load(&resume_offered), atomic_load(&resumed));
        printf("accepted %ld, failed %ld, connections %ld in %.2f s: %.1f messages/s\n", ok, bad,
               atomic_load(&connections), secs, rate);
        printf("latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", p50, p90, p99, mx);
        printf("own CPU: %.2f s (%.3f ms per message)\n", cpu, ok ? cpu * 1000 / ok : 0.0);
    }
    for (int st = 0; opt.verbose && st < ST_COUNT; st++) {
        long k = atomic_load(&stage_n[st]);
        if (k)
            printf("stage %-8s n %7ld  avg ms %8.2f  max ms %8.2f\n", stage_names[st], k,
                   atomic_load(&stage_us[st]) / 1000.0 / k, atomic_load(&stage_max_us[st]) / 1000.0);
    }
    char fails[1024];
    size_t fl = 0;
    fails[0] = '\0';
    for (int s = 0; s < ST_COUNT; s++) {
        for (int code = 0; code < 600; code++) {
            long f = atomic_load(&failures[s][code]);
            if (!f)
                continue;
            if (!opt.quiet)
                printf("failures: %s %s%d: %ld\n", stage_names[s], code ? "" : "I/O error ", code, f);
            int w = snprintf(fails + fl, sizeof fails - fl, "%s%s:%d:%ld", fl ? "," : "", stage_names[s], code, f);
            if (w > 0 && (size_t)w < sizeof fails - fl)
                fl += (size_t)w;
        }
    }
    printf("RESULT accepted=%ld failed=%ld connections=%ld seconds=%.3f rate=%.2f p50_ms=%.2f "
           "p90_ms=%.2f p99_ms=%.2f max_ms=%.2f resume_offered=%ld resumed=%ld cpu_s=%.3f server_key=%s failures=%s\n",
           ok, bad, atomic_load(&connections), secs, rate, p50, p90, p99, mx, atomic_load(&resume_offered),
           atomic_load(&resumed), cpu, server_key, fl ? fails : "none");
}

static int make_ctx(void)
{
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
        return -1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* a self-signed benchmark certificate */
    SSL_CTX_set_session_cache_mode(ctx, opt.resume ? SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE
                                                   : SSL_SESS_CACHE_OFF);
    if (opt.rsa_only &&
        SSL_CTX_set1_sigalgs_list(ctx, "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:"
                                       "rsa_pkcs1_sha256:rsa_pkcs1_sha384") != 1)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (make_ctx() < 0) {
        fprintf(stderr, "loadgen-ossl: cannot set up the OpenSSL context\n");
        return 1;
    }
    end_ms = mono_ms() + opt.seconds * 1000;
    hard_end_ms = end_ms + LG_GRACE_MS;
    if (opt.idle)
        return run_idle();
    make_auth_line();
    make_message();
    latency_us = calloc((size_t)opt.messages, sizeof *latency_us);
    pthread_t *th = calloc((size_t)opt.clients, sizeof *th);
    if (!latency_us || !th) {
        fprintf(stderr, "loadgen-ossl: out of memory\n");
        return 1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, LG_STACK_BYTES);
    int64_t t0 = mono_us();
    long started = 0;
    for (long i = 0; i < opt.clients; i++)
        started += pthread_create(&th[started], &attr, worker, NULL) == 0;
    for (long i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    report(mono_us() - t0);
    fflush(stdout);
    free(th);
    free(latency_us);
    free(message);
    SSL_CTX_free(ctx);
    return atomic_load(&accepted) > 0 ? 0 : 1;
}
