/*
 * util — clocks, ASCII helpers, the drain eventfd.
 */
#include "util.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int drain_fd = -1;
static atomic_bool draining;

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char util_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

void util_lower_str(char *s)
{
    for (; *s; s++)
        *s = util_lower(*s);
}

bool util_ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (util_lower(a[i]) != util_lower(b[i]))
            return false;
    return true;
}

int util_drain_init(void)
{
    if (drain_fd < 0)
        drain_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return drain_fd < 0 ? -1 : 0;
}

int util_drain_fd(void)
{
    return drain_fd;
}

void util_drain_start(void)
{
    uint64_t one = 1;
    atomic_store(&draining, true);
    if (drain_fd >= 0) {
        ssize_t n = write(drain_fd, &one, sizeof one);
        (void)n;
    }
}

bool util_draining(void)
{
    return atomic_load(&draining);
}

bool util_sleep_ms(int64_t ms)
{
    int64_t end = util_now_ms() + ms;
    for (;;) {
        int64_t left = end - util_now_ms();
        if (left <= 0)
            return true;
        struct pollfd p = {.fd = drain_fd, .events = POLLIN};
        int n = poll(&p, drain_fd >= 0 ? 1 : 0, (int)(left > 60000 ? 60000 : left));
        if (n > 0)
            return false;
        if (n < 0 && errno != EINTR)
            return true;
    }
}

void util_rfc5322_date(int64_t unix_s, char *buf, size_t len)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    time_t t = (time_t)unix_s;
    gmtime_r(&t, &tm);
    snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int util_copy(char *dst, size_t dst_size, const char *src, size_t len)
{
    if (dst_size == 0)
        return -1;
    if (len >= dst_size) {
        dst[0] = '\0';
        return -1;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

void util_client_key(const struct sockaddr *sa, uint8_t key[UTIL_CLIENT_KEY_BYTES])
{
    memset(key, 0, UTIL_CLIENT_KEY_BYTES);
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            key[0] = 4;
            memcpy(key + 1, &a->s6_addr[12], 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, a->s6_addr, 8); /* one host usually owns a whole /64 */
        }
    }
}
