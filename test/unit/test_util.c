/* Unit tests of util: the bounded copy into fixed arrays (util_copy) and
 * the per-client key (util_client_key). */
#include "unit.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static void test_copy_fits(void)
{
    char dst[8];
    memset(dst, 'x', sizeof dst);
    CHECK(util_copy(dst, sizeof dst, "abc", 3) == 0);
    CHECK_STR(dst, "abc");
    CHECK(util_copy(dst, sizeof dst, "1234567", 7) == 0); /* exactly fits with its NUL */
    CHECK_STR(dst, "1234567");
    CHECK(util_copy(dst, sizeof dst, "ignored", 0) == 0);
    CHECK_STR(dst, "");
    /* only len bytes are read: src need not be NUL-terminated */
    CHECK(util_copy(dst, sizeof dst, "abcdefghij", 2) == 0);
    CHECK_STR(dst, "ab");
}

/* a source that does not fit is refused, never cut: dst becomes "" and
 * nothing past it is written */
static void test_copy_refuses_what_does_not_fit(void)
{
    struct {
        char dst[8];
        char after[8];
    } s;
    memset(&s, 'x', sizeof s);
    CHECK(util_copy(s.dst, sizeof s.dst, "12345678", 8) == -1);
    CHECK_STR(s.dst, "");
    CHECK(s.after[0] == 'x' && s.after[7] == 'x');
    memset(&s, 'x', sizeof s);
    CHECK(util_copy(s.dst, sizeof s.dst, "a much longer text than eight", 29) == -1);
    CHECK(s.dst[0] == '\0' && s.dst[1] == 'x' && s.after[0] == 'x');
    CHECK(util_copy(s.dst, 0, "a", 1) == -1); /* no room at all: nothing written */
    CHECK(s.dst[1] == 'x');
}

static void key_of(const char *text, uint8_t key[UTIL_CLIENT_KEY_BYTES])
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        CHECK(inet_pton(AF_INET6, text, &a->sin6_addr) == 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        CHECK(inet_pton(AF_INET, text, &a->sin_addr) == 1);
    }
    util_client_key((const struct sockaddr *)&ss, key);
}

static bool same_key(const char *a, const char *b)
{
    uint8_t ka[UTIL_CLIENT_KEY_BYTES], kb[UTIL_CLIENT_KEY_BYTES];
    key_of(a, ka);
    key_of(b, kb);
    return memcmp(ka, kb, sizeof ka) == 0;
}

/* an IPv4-mapped peer (a dual-stack listener) is the IPv4 client it is;
 * IPv4 clients differ by address, IPv6 ones by /64 */
static void test_client_key(void)
{
    CHECK(same_key("192.0.2.7", "::ffff:192.0.2.7"));
    CHECK(!same_key("192.0.2.7", "192.0.2.8"));
    CHECK(!same_key("::ffff:192.0.2.7", "::ffff:192.0.2.8"));
    CHECK(same_key("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"));
    CHECK(!same_key("2001:db8:1:2::1", "2001:db8:1:3::1"));
    CHECK(!same_key("::ffff:192.0.2.7", "2001:db8::1"));
    CHECK(!same_key("0.0.0.0", "::"));
}

UNIT_MAIN("util", UNIT_CASE(test_copy_fits), UNIT_CASE(test_copy_refuses_what_does_not_fit), UNIT_CASE(test_client_key))
