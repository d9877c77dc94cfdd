/*
 * loadgen — SMTP submission load generator for the benchmark (issue 7).
 *
 * N client threads on loopback, each running the real submission dialog
 * through the project's own client path (conn.c + tls.c, so mbedTLS stays
 * in tls.c): connect, EHLO, STARTTLS, EHLO, AUTH PLAIN, then K times MAIL,
 * RCPT, DATA (RSET between), QUIT.  Bounded by a message count and a time
 * limit: no message starts after the time limit, and every network wait
 * ends at the limit plus LOADGEN_GRACE_MS.  Prints messages/s, latency
 * percentiles, failures by stage and reply code, and one machine-readable
 * "RESULT key=value…" line for test/bench/run.sh.
 *
 * Latency of a message: from the start of its transaction (MAIL; for the
 * first message of a connection, from the TCP connect) to the 250 after the
 * final dot.  So with one message per connection it is the whole session
 * up to the acceptance, TLS handshake and AUTH included.
 *
 * Idle mode (-I N): open N connections (plaintext: banner + EHLO; with -T
 * also STARTTLS, handshake, EHLO), print "HELD n", then hold them until
 * -t seconds passed or SIGTERM/SIGINT, and close them.  For memory per
 * idle session.
 *
 * Test tool, not shipped.  Threads share only the atomic counters and the
 * read-only message; each owns its connection.
 */
#include "conn.h"
#include "tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOADGEN_MAX_CLIENTS 2048
#define LOADGEN_MAX_MESSAGES 10000000L
#define LOADGEN_MAX_SECONDS 3600L
#define LOADGEN_MAX_SIZE (50L * 1024 * 1024)
#define LOADGEN_MAX_PER_CONN 10000L
#define LOADGEN_MAX_IDLE 100000L
#define LOADGEN_IO_TIMEOUT_MS 30000
#define LOADGEN_GRACE_MS 15000
#define LOADGEN_LINE_MAX 1000
#define LOADGEN_REPLY_LINES_MAX 100
#define LOADGEN_STACK_BYTES (256 * 1024)
#define LOADGEN_IDLE_THREADS 8
#define LOADGEN_ARG_MAX 256

enum stage {
    ST_CONNECT, ST_BANNER, ST_EHLO, ST_STARTTLS, ST_TLS, ST_EHLO2, ST_AUTH, ST_MAIL, ST_RCPT,
    ST_DATA, ST_DOT, ST_RSET, ST_QUIT, ST_COUNT
};
static const char *const stage_names[ST_COUNT] = {"connect", "banner", "ehlo", "starttls", "tls",
                                                  "ehlo2", "auth", "mail", "rcpt", "data",
                                                  "dot", "rset", "quit"};

struct options {
    struct sockaddr_in addr;
    long clients, messages, seconds, per_conn, size, idle;
    bool implicit_tls, idle_tls, pipelining, quiet, verbose, resume;
    const char *user, *password, *from, *rcpt, *helo, *sni;
};

static struct options opt = {
    .clients = 1, .messages = 1000, .seconds = 60, .per_conn = 1, .size = 10240,
    .helo = "loadgen.test", .sni = "localhost",
};

/* shared, read-only after start */
static char *message;          /* headers + body + ".\r\n", dot-stuffed */
static size_t message_len;
static char auth_line[LOADGEN_ARG_MAX * 2 + 64];
static int64_t end_ms, hard_end_ms;

/* shared counters */
static atomic_long claimed, accepted, connections, failed;
static atomic_long failures[ST_COUNT][600];
static uint32_t *latency_us;   /* one slot per message, filled via nlat */
static atomic_long nlat;
static atomic_bool stop_flag;
static atomic_bool printed_tls;
/* per-stage time (-v): from the previous reply (or the connect) to this
 * stage's reply, so a stall shows in the stage that waited for it */
static atomic_long stage_us[ST_COUNT], stage_max_us[ST_COUNT], stage_n[ST_COUNT];
static _Thread_local int64_t mark_us;
/* -R: the session (TLS 1.3 ticket) of this thread's last connection */
static _Thread_local struct tls_session *saved_session;
static atomic_long resume_offered;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void stage_done(enum stage st)
{
    int64_t now = now_us(), d = now - mark_us;
    mark_us = now;
    atomic_fetch_add(&stage_us[st], d);
    atomic_fetch_add(&stage_n[st], 1);
    long m = atomic_load(&stage_max_us[st]);
    while (d > m && !atomic_compare_exchange_weak(&stage_max_us[st], &m, d))
        ;
}

static int64_t io_deadline(void)
{
    int64_t d = util_now_ms() + LOADGEN_IO_TIMEOUT_MS;
    return d < hard_end_ms ? d : hard_end_ms;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen -p PORT -u USER -f FROM -r RCPT [options]\n"
            "  -a ADDR   IPv4 loopback address (default 127.0.0.1)\n"
            "  -p PORT   submission port (STARTTLS; with -i implicit TLS)\n"
            "  -c N      concurrent clients (default 1)\n"
            "  -n N      messages in total (default 1000)\n"
            "  -t S      time limit in seconds (default 60)\n"
            "  -k K      messages per connection, RSET between (default 1)\n"
            "  -s BYTES  message size (default 10240)\n"
            "  -u USER   AUTH PLAIN user; password from $LOADGEN_PASSWORD or -w\n"
            "  -w PASS   password\n"
            "  -f FROM   envelope and header sender\n"
            "  -r RCPT   recipient\n"
            "  -e NAME   EHLO name (default loadgen.test); -S NAME TLS SNI (default localhost)\n"
            "  -P        pipeline MAIL, RCPT and DATA (RFC 2920)\n"
            "  -R        resume TLS sessions: offer each thread's last ticket\n"
            "  -i        implicit TLS (RFC 8314) instead of STARTTLS\n"
            "  -I N      idle mode: hold N connections for -t seconds; -T with TLS\n"
            "  -q        print only the RESULT line; -v also the time per stage\n");
    exit(2);
}

/* number — a checked decimal in [min, max]; exits 2 otherwise. */
static long number(const char *s, long min, long max, char flag)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "loadgen: -%c %s: expected a number from %ld to %ld\n", flag, s, min, max);
        exit(2);
    }
    return v;
}

static const char *text_arg(const char *s, char flag)
{
    size_t n = strnlen(s, LOADGEN_ARG_MAX);
    if (n == 0 || n >= LOADGEN_ARG_MAX || strpbrk(s, "\r\n<>")) {
        fprintf(stderr, "loadgen: -%c: empty, too long or holding CR, LF, < or >\n", flag);
        exit(2);
    }
    return s;
}

static void parse_args(int argc, char **argv)
{
    int port = 0;
    const char *addr = "127.0.0.1";
    int ch;
    while ((ch = getopt(argc, argv, "a:p:c:n:t:k:s:u:w:f:r:e:S:PRiI:Tqvh")) != -1) {
        switch (ch) {
        case 'a': addr = optarg; break;
        case 'p': port = (int)number(optarg, 1, 65535, 'p'); break;
        case 'c': opt.clients = number(optarg, 1, LOADGEN_MAX_CLIENTS, 'c'); break;
        case 'n': opt.messages = number(optarg, 1, LOADGEN_MAX_MESSAGES, 'n'); break;
        case 't': opt.seconds = number(optarg, 1, LOADGEN_MAX_SECONDS, 't'); break;
        case 'k': opt.per_conn = number(optarg, 1, LOADGEN_MAX_PER_CONN, 'k'); break;
        case 's': opt.size = number(optarg, 100, LOADGEN_MAX_SIZE, 's'); break;
        case 'u': opt.user = text_arg(optarg, 'u'); break;
        case 'w': opt.password = text_arg(optarg, 'w'); break;
        case 'f': opt.from = text_arg(optarg, 'f'); break;
        case 'r': opt.rcpt = text_arg(optarg, 'r'); break;
        case 'e': opt.helo = text_arg(optarg, 'e'); break;
        case 'S': opt.sni = text_arg(optarg, 'S'); break;
        case 'P': opt.pipelining = true; break;
        case 'R': opt.resume = true; break;
        case 'i': opt.implicit_tls = true; break;
        case 'I': opt.idle = number(optarg, 1, LOADGEN_MAX_IDLE, 'I'); break;
        case 'T': opt.idle_tls = true; break;
        case 'q': opt.quiet = true; break;
        case 'v': opt.verbose = true; break;
        default: usage();
        }
    }
    if (!opt.password)
        opt.password = getenv("LOADGEN_PASSWORD");
    if (!port || (!opt.idle && (!opt.user || !opt.password || !opt.from || !opt.rcpt)))
        usage();
    opt.addr.sin_family = AF_INET;
    opt.addr.sin_port = htons((uint16_t)port);
    /* loopback only: this tool must never load someone else's server */
    if (inet_pton(AF_INET, addr, &opt.addr.sin_addr) != 1 ||
        (ntohl(opt.addr.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "loadgen: -a %s: only IPv4 loopback addresses (127.0.0.0/8)\n", addr);
        exit(2);
    }
}

/* ---- the message and AUTH line ------------------------------------------ */

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
    unsigned char raw[LOADGEN_ARG_MAX * 2 + 2];
    size_t ul = strlen(opt.user), pl = strlen(opt.password);
    raw[0] = 0;
    memcpy(raw + 1, opt.user, ul);
    raw[1 + ul] = 0;
    memcpy(raw + 2 + ul, opt.password, pl);
    char b64[sizeof auth_line - 16];
    base64(raw, 2 + ul + pl, b64, sizeof b64);
    snprintf(auth_line, sizeof auth_line, "AUTH PLAIN %s\r\n", b64);
}

/* make_message — headers, then 76-character lines of text up to opt.size
 * bytes, then the end-of-data dot.  No line starts with a dot. */
static void make_message(void)
{
    size_t cap = (size_t)opt.size + 1024;
    message = malloc(cap);
    if (!message) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(1);
    }
    char date[64];
    util_rfc5322_date(util_wall_ms() / 1000, date, sizeof date);
    int n = snprintf(message, cap,
                     "From: <%s>\r\nTo: <%s>\r\nSubject: loadgen benchmark message\r\n"
                     "Date: %s\r\nMessage-ID: <loadgen.%ld@%s>\r\nMIME-Version: 1.0\r\n"
                     "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                     opt.from, opt.rcpt, date, (long)getpid(), opt.helo);
    size_t len = n > 0 ? (size_t)n : 0;
    static const char text[] = "The quick brown fox jumps over the lazy dog; "
                               "pack my box with five dozen liquor jugs. ";
    for (size_t line = 0; len + 2 < (size_t)opt.size; line++) {
        size_t want = (size_t)opt.size - len - 2;
        size_t w = want < 76 ? want : 76;
        for (size_t i = 0; i < w; i++)
            message[len + i] = text[(line * 7 + i) % (sizeof text - 1)];
        len += w;
        message[len++] = '\r';
        message[len++] = '\n';
    }
    memcpy(message + len, ".\r\n", 3);
    message_len = len + 3;
}

/* ---- one SMTP exchange ---------------------------------------------------- */

/* read_reply — one whole (multi-line) reply; its code, or 0 on I/O error. */
static int read_reply(struct conn *c)
{
    for (int i = 0; i < LOADGEN_REPLY_LINES_MAX; i++) {
        char *line;
        size_t len;
        if (conn_read_line(c, io_deadline(), LOADGEN_LINE_MAX, &line, &len) != CONN_OK)
            return 0;
        if (len < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
            line[2] < '0' || line[2] > '9')
            return 0;
        if (len == 3 || line[3] != '-')
            return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    }
    return 0;
}

/* send_cmd — one command line made of three pieces (b and c may be ""),
 * sent at once. */
static int send_cmd(struct conn *c, const char *a, const char *b, const char *d)
{
    if (conn_write(c, io_deadline(), a, strlen(a)) != CONN_OK ||
        conn_write(c, io_deadline(), b, strlen(b)) != CONN_OK ||
        conn_write(c, io_deadline(), d, strlen(d)) != CONN_OK || conn_flush(c, io_deadline()) != CONN_OK)
        return -1;
    return 0;
}

/* expect — read a reply; true when its code is `want`, otherwise the
 * failure is counted under `stage`. */
static bool expect(struct conn *c, enum stage stage, int want)
{
    int code = read_reply(c);
    if (code == want) {
        stage_done(stage);
        return true;
    }
    atomic_fetch_add(&failures[stage][code >= 0 && code < 600 ? code : 0], 1);
    return false;
}

static bool command(struct conn *c, enum stage stage, const char *a, const char *b, const char *d,
                    int want)
{
    if (send_cmd(c, a, b, d) < 0) {
        atomic_fetch_add(&failures[stage][0], 1);
        return false;
    }
    return expect(c, stage, want);
}

/* resume_handshake — conn_tls_client(), but offering the saved session */
static enum conn_status resume_handshake(struct conn *c)
{
    c->tls = tls_client_new(c->fd, opt.sni, false);
    if (!c->tls)
        return CONN_ERROR;
    if (saved_session && tls_session_set(c->tls, saved_session) == 0)
        atomic_fetch_add(&resume_offered, 1);
    for (;;) {
        int r = tls_handshake(c->tls, c->tls_error, sizeof c->tls_error);
        if (r == 0)
            return CONN_OK;
        if (r == TLS_ERROR)
            return CONN_ERROR;
        int64_t left = io_deadline() - util_now_ms();
        if (left <= 0)
            return CONN_TIMEOUT;
        struct pollfd p = {.fd = c->fd, .events = r == TLS_WANT_WRITE ? POLLOUT : POLLIN};
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
            return CONN_ERROR;
    }
}

static bool start_tls(struct conn *c)
{
    enum conn_status st = opt.resume ? resume_handshake(c)
                                     : conn_tls_client(c, io_deadline(), opt.sni, false);
    if (st != CONN_OK) {
        atomic_fetch_add(&failures[ST_TLS][0], 1);
        if (!opt.quiet)
            fprintf(stderr, "loadgen: TLS handshake: %s\n", c->tls_error);
        return false;
    }
    stage_done(ST_TLS);
    if (!atomic_exchange(&printed_tls, true) && !opt.quiet)
        printf("tls: %s %s\n", tls_version(c->tls), tls_cipher(c->tls));
    return true;
}

/* open_session — connect and get to the point where MAIL may be sent
 * (or, in idle mode, to the point the mode asks for). */
static bool open_session(struct conn *c, bool do_auth, bool tls)
{
    mark_us = now_us();
    int fd = conn_connect((const struct sockaddr *)&opt.addr, sizeof opt.addr, io_deadline());
    if (fd < 0) {
        atomic_fetch_add(&failures[ST_CONNECT][0], 1);
        return false;
    }
    if (conn_init(c, fd, LOADGEN_LINE_MAX * 2) < 0) {
        close(fd);
        atomic_fetch_add(&failures[ST_CONNECT][0], 1);
        return false;
    }
    atomic_fetch_add(&connections, 1);
    if (opt.implicit_tls && !start_tls(c))
        return false;
    if (!expect(c, ST_BANNER, 220) || !command(c, ST_EHLO, "EHLO ", opt.helo, "\r\n", 250))
        return false;
    if (tls && !opt.implicit_tls) {
        if (!command(c, ST_STARTTLS, "STARTTLS\r\n", "", "", 220) || !start_tls(c) ||
            !command(c, ST_EHLO2, "EHLO ", opt.helo, "\r\n", 250))
            return false;
    }
    return !do_auth || command(c, ST_AUTH, auth_line, "", "", 235);
}

/* transaction — MAIL, RCPT, DATA and the message; true on the final 250. */
static bool transaction(struct conn *c)
{
    if (opt.pipelining) {
        if (conn_printf(c, io_deadline(), "MAIL FROM:<%s>\r\n", opt.from) != CONN_OK ||
            conn_printf(c, io_deadline(), "RCPT TO:<%s>\r\n", opt.rcpt) != CONN_OK ||
            send_cmd(c, "DATA\r\n", "", "") < 0) {
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
    if (conn_write(c, io_deadline(), message, message_len) != CONN_OK ||
        conn_flush(c, io_deadline()) != CONN_OK) {
        atomic_fetch_add(&failures[ST_DOT][0], 1);
        return false;
    }
    return expect(c, ST_DOT, 250);
}

/* claim — one more message may start (count and time limits). */
static bool claim(void)
{
    if (atomic_load(&stop_flag) || util_now_ms() >= end_ms)
        return false;
    if (atomic_fetch_add(&claimed, 1) >= opt.messages) {
        atomic_fetch_sub(&claimed, 1);
        return false;
    }
    return true;
}

static void record(int64_t start_us)
{
    int64_t us = now_us() - start_us;
    long i = atomic_fetch_add(&nlat, 1);
    if (i < opt.messages)
        latency_us[i] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* one_connection — one session with up to per_conn messages (the first is
 * already claimed); false when nothing more may start. */
static void one_connection(void)
{
    struct conn c;
    memset(&c, 0, sizeof c);
    c.fd = -1;
    int64_t t0 = now_us();
    long done = 0;
    bool ok = open_session(&c, true, true);
    while (ok) {
        ok = transaction(&c);
        if (!ok)
            break;
        record(t0);
        atomic_fetch_add(&accepted, 1);
        if (++done >= opt.per_conn || !claim())
            break;
        t0 = mark_us = now_us();
        ok = command(&c, ST_RSET, "RSET\r\n", "", "", 250);
    }
    if (!ok)
        atomic_fetch_add(&failed, 1);
    else
        (void)command(&c, ST_QUIT, "QUIT\r\n", "", "", 221);
    if (opt.resume && c.tls) {
        /* the TLS 1.3 ticket came after the handshake: take it now */
        struct tls_session *s = tls_session_get(c.tls);
        if (s) {
            tls_session_free(saved_session);
            saved_session = s;
        }
    }
    if (c.fd >= 0) {
        if (c.tls)
            tls_close_notify(c.tls);
        conn_close(&c);
    }
}

static void *worker(void *arg)
{
    (void)arg;
    /* every iteration claims a message, so at most opt.messages rounds */
    while (claim())
        one_connection();
    tls_session_free(saved_session);
    saved_session = NULL;
    return NULL;
}

/* ---- idle mode ------------------------------------------------------------ */

static struct conn *idle_conns;
static atomic_long idle_next, idle_open;

static void *idle_opener(void *arg)
{
    (void)arg;
    for (;;) {
        long i = atomic_fetch_add(&idle_next, 1);
        if (i >= opt.idle || atomic_load(&stop_flag) || util_now_ms() >= end_ms)
            return NULL;
        struct conn *c = &idle_conns[i];
        c->fd = -1;
        if (open_session(c, false, opt.idle_tls))
            atomic_fetch_add(&idle_open, 1);
        else if (c->fd >= 0)
            conn_close(c);
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
    int64_t t0 = util_now_ms();
    pthread_t th[LOADGEN_IDLE_THREADS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, LOADGEN_STACK_BYTES);
    int started = 0;
    for (int i = 0; i < LOADGEN_IDLE_THREADS; i++)
        started += pthread_create(&th[started], &attr, idle_opener, NULL) == 0;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    printf("HELD %ld of %ld %s connections in %lld ms\n", atomic_load(&idle_open), opt.idle,
           opt.idle_tls ? "TLS" : "plaintext", (long long)(util_now_ms() - t0));
    fflush(stdout);
    while (!atomic_load(&stop_flag) && util_now_ms() < end_ms)
        usleep(50 * 1000);
    for (long i = 0; i < opt.idle; i++)
        if (idle_conns[i].fd >= 0 && idle_conns[i].in)
            conn_close(&idle_conns[i]);
    printf("RELEASED\n");
    fflush(stdout);
    free(idle_conns);
    tls_shutdown();
    return 0;
}

/* ---- report ----------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint32_t *v, long n, double p)
{
    if (n == 0)
        return 0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return v[i] / 1000.0;
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
    if (!opt.quiet) {
        printf("clients %ld, %ld message(s) of %ld bytes per connection%s%s\n", opt.clients,
               opt.per_conn, opt.size, opt.pipelining ? ", pipelined" : "",
               opt.resume ? ", TLS resumption" : "");
        if (opt.resume)
            printf("sessions offered for resumption: %ld\n", atomic_load(&resume_offered));
        printf("accepted %ld, failed %ld, connections %ld in %.2f s: %.1f messages/s\n", ok, bad,
               atomic_load(&connections), secs, rate);
        printf("latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", p50, p90, p99, mx);
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
            int w = snprintf(fails + fl, sizeof fails - fl, "%s%s:%d:%ld", fl ? "," : "",
                             stage_names[s], code, f);
            if (w > 0 && (size_t)w < sizeof fails - fl)
                fl += (size_t)w;
        }
    }
    printf("RESULT accepted=%ld failed=%ld connections=%ld seconds=%.3f rate=%.2f p50_ms=%.2f "
           "p90_ms=%.2f p99_ms=%.2f max_ms=%.2f resume_offered=%ld failures=%s\n",
           ok, bad, atomic_load(&connections), secs, rate, p50, p90, p99, mx,
           atomic_load(&resume_offered), fl ? fails : "none");
}

int main(int argc, char **argv)
{
    char err[256];
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (tls_init(err, sizeof err) < 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 1;
    }
    (void)tls_client_init(NULL, err, sizeof err); /* unverified connections work without a CA */
    end_ms = util_now_ms() + opt.seconds * 1000;
    hard_end_ms = end_ms + LOADGEN_GRACE_MS;
    if (opt.idle)
        return run_idle();
    make_auth_line();
    make_message();
    latency_us = calloc((size_t)opt.messages, sizeof *latency_us);
    pthread_t *th = calloc((size_t)opt.clients, sizeof *th);
    if (!latency_us || !th) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, LOADGEN_STACK_BYTES);
    int64_t t0 = now_us();
    long started = 0;
    for (long i = 0; i < opt.clients; i++)
        started += pthread_create(&th[started], &attr, worker, NULL) == 0;
    for (long i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    report(now_us() - t0);
    fflush(stdout);
    free(th);
    free(latency_us);
    free(message);
    tls_shutdown();
    return atomic_load(&accepted) > 0 ? 0 : 1;
}
