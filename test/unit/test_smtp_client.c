/* Tests of the outbound SMTP client's state machine against a scripted
 * server on a loopback socket (127.0.0.1, an ephemeral port): each test
 * gives the server's replies in order and checks the outcome the client
 * reports for the message and each recipient.  Plaintext only (TLS off). */
#include "config.h"
#include "smtp_client.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct script {
    int listen_fd;
    const char *const *replies; /* the greeting, then one reply per command */
    size_t count;
    char got[8192];             /* what the client sent */
    size_t got_len;
};

/* read_until — read from fd into s->got until what this call read ends
 * with end (or EOF). */
static void read_until(int fd, struct script *s, const char *end)
{
    size_t n = strlen(end), start = s->got_len;
    while (s->got_len < sizeof s->got - 1) {
        if (s->got_len - start >= n && memcmp(s->got + s->got_len - n, end, n) == 0)
            return;
        ssize_t r = read(fd, s->got + s->got_len, 1);
        if (r <= 0)
            return;
        s->got_len++;
    }
}

static void *serve(void *arg)
{
    struct script *s = arg;
    int fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    bool data = false; /* the message was read: the next reply answers it */
    for (size_t i = 0; i < s->count; i++) {
        if (i > 0 && !data)
            read_until(fd, s, "\r\n");
        if (write(fd, s->replies[i], strlen(s->replies[i])) < 0)
            break;
        data = !strncmp(s->replies[i], "354", 3);
        if (data)
            read_until(fd, s, "\r\n.\r\n");
    }
    read_until(fd, s, "\r\n"); /* QUIT, or EOF */
    s->got[s->got_len] = '\0';
    close(fd);
    return NULL;
}

static void load_config(void)
{
    static bool done;
    char err[256];
    if (done)
        return;
    setenv("MRS_HOSTNAME", "relay.test", 1);
    setenv("MRS_DELIVERY_COMMAND_TIMEOUT", "10s", 1);
    setenv("MRS_DELIVERY_CONNECT_TIMEOUT", "10s", 1);
    CHECK(config_load(err, sizeof err) == 0);
    done = true;
}

/* deliver — one message with one recipient through a server answering
 * replies[]; the outcome in out, the recipient's reply in rcpt, what the
 * client sent in s->got. */
static enum smtp_client_result deliver(struct script *s, const char *const *replies, size_t count,
                                       struct smtp_client_outcome *out, struct smtp_client_reply *rcpt)
{
    static const char msg[] = "From: a@example.org\r\n\r\nbody\r\n";
    static const char *const rcpts[] = {"rcpt@example.test"};
    struct route_target target = {.addr = {.family = AF_INET, .len = sizeof(struct sockaddr_in)}};
    socklen_t alen = sizeof target.addr.u.in;
    pthread_t th;
    load_config();
    memset(s, 0, sizeof *s);
    s->replies = replies;
    s->count = count;
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    target.addr.u.in.sin_family = AF_INET;
    target.addr.u.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(s->listen_fd, &target.addr.u.sa, sizeof target.addr.u.in) == 0);
    CHECK(listen(s->listen_fd, 1) == 0);
    CHECK(getsockname(s->listen_fd, &target.addr.u.sa, &alen) == 0);
    snprintf(target.host, sizeof target.host, "mx.example.test");
    snprintf(target.label, sizeof target.label, "mx.example.test[127.0.0.1]");
    FILE *f = tmpfile();
    CHECK(f && fwrite(msg, 1, sizeof msg - 1, f) == sizeof msg - 1 && fflush(f) == 0);
    struct smtp_client_job job = {.target = &target, .tls = SMTP_CLIENT_TLS_OFF, .queue_id = "0123456789abcdef0123",
                                  .from = "a@example.org", .fd = fileno(f), .offset = 0,
                                  .length = sizeof msg - 1, .rcpt_count = 1, .rcpts = rcpts, .rcpt_replies = rcpt};
    CHECK(pthread_create(&th, NULL, serve, s) == 0);
    enum smtp_client_result res = smtp_client_deliver(&job, out);
    pthread_join(th, NULL);
    close(s->listen_fd);
    fclose(f);
    return res;
}

static void test_delivered_after_end_of_data(void)
{
    static const char *const replies[] = {"220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n",
                                          "354 go\r\n", "250 2.0.0 queued\r\n", "221 bye\r\n"};
    struct script s;
    struct smtp_client_outcome out;
    struct smtp_client_reply rcpt;
    CHECK(deliver(&s, replies, 7, &out, &rcpt) == SMTP_CLIENT_SENT);
    CHECK(rcpt.code == 250 && rcpt.remote);
    CHECK(strstr(s.got, "DATA\r\nFrom: a@example.org\r\n\r\nbody\r\n.\r\nQUIT\r\n") != NULL);
}

/* A server that answers DATA with 250 instead of 354 never received the
 * message: its recipients are retried, not counted as delivered (found by
 * test/fuzz/fuzz_smtp_client, regression-data-answered-250). */
static void test_data_answered_2xx_is_not_delivery(void)
{
    static const char *const replies[] = {"220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n",
                                          "250 2.0.0 thanks\r\n", "221 bye\r\n"};
    struct script s;
    struct smtp_client_outcome out;
    struct smtp_client_reply rcpt;
    CHECK(deliver(&s, replies, 6, &out, &rcpt) == SMTP_CLIENT_SENT);
    CHECK(rcpt.code == 451 && !rcpt.remote);
    CHECK(strstr(rcpt.text, "answered DATA with 250") != NULL);
    CHECK(strstr(s.got, "body") == NULL && strstr(s.got, "DATA\r\nQUIT\r\n") != NULL);
}

/* 4xx and 5xx to DATA stay the server's own answer for each recipient. */
static void test_data_refused_keeps_the_servers_reply(void)
{
    static const char *const replies[] = {"220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n",
                                          "554 5.7.1 no thanks\r\n", "221 bye\r\n"};
    struct script s;
    struct smtp_client_outcome out;
    struct smtp_client_reply rcpt;
    CHECK(deliver(&s, replies, 6, &out, &rcpt) == SMTP_CLIENT_SENT);
    CHECK(rcpt.code == 554 && rcpt.remote && strstr(rcpt.text, "no thanks") != NULL);
}

UNIT_MAIN("smtp_client", UNIT_CASE(test_delivered_after_end_of_data), UNIT_CASE(test_data_answered_2xx_is_not_delivery),
          UNIT_CASE(test_data_refused_keeps_the_servers_reply))
