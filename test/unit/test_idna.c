/* Unit tests of idna: the sample strings of RFC 3492 §7.1 both ways, A-labels
 * of whole domains, and UTF-8 validation (overlongs, surrogates, range). */
#include "idna.h"
#include "unit.h"

#include <string.h>

struct sample {
    const char *name;
    uint32_t cp[48];
    size_t n;
    const char *puny;
};

static const struct sample samples[] = {
    {"A arabic", {0x0644, 0x064A, 0x0647, 0x0645, 0x0627, 0x0628, 0x062A, 0x0643, 0x0644, 0x0645, 0x0648, 0x0634,
                  0x0639, 0x0631, 0x0628, 0x064A, 0x061F}, 17, "egbpdaj6bu4bxfgehfvwxn"},
    {"B chinese", {0x4ED6, 0x4EEC, 0x4E3A, 0x4EC0, 0x4E48, 0x4E0D, 0x8BF4, 0x4E2D, 0x6587}, 9,
     "ihqwcrb4cv8a8dqg056pqjye"},
    {"L 3nenB", {0x0033, 0x5E74, 0x0042, 0x7D44, 0x91D1, 0x516B, 0x5148, 0x751F}, 8, "3B-ww4c5e180e575a65lsy2b"},
    {"M monkeys", {0x5B89, 0x5BA4, 0x5948, 0x7F8E, 0x6075, 0x002D, 0x0077, 0x0069, 0x0074, 0x0068, 0x002D, 0x0053,
                   0x0055, 0x0050, 0x0045, 0x0052, 0x002D, 0x004D, 0x004F, 0x004E, 0x004B, 0x0045, 0x0059, 0x0053},
     24, "-with-SUPER-MONKEYS-pc58ag80a8qai00g7n9n"},
    {"R sono", {0x305D, 0x306E, 0x30B9, 0x30D4, 0x30FC, 0x30C9, 0x3067}, 7, "d9juau41awczczp"},
    {"S dollar", {0x002D, 0x003E, 0x0020, 0x0024, 0x0031, 0x002E, 0x0030, 0x0030, 0x0020, 0x003C, 0x002D}, 11,
     "-> $1.00 <--"},
};

static void test_rfc3492_samples(void)
{
    for (size_t s = 0; s < sizeof samples / sizeof samples[0]; s++) {
        char out[128];
        uint32_t back[64];
        int n = idna_punycode_encode(samples[s].cp, samples[s].n, out, sizeof out);
        CHECK(n == (int)strlen(samples[s].puny));
        CHECK_STR(out, samples[s].puny);
        int m = idna_punycode_decode(samples[s].puny, strlen(samples[s].puny), back, 64);
        CHECK(m == (int)samples[s].n);
        CHECK(m > 0 && memcmp(back, samples[s].cp, samples[s].n * sizeof *back) == 0);
        /* too small an output: refused, not cut */
        CHECK(idna_punycode_encode(samples[s].cp, samples[s].n, out, strlen(samples[s].puny)) == -1);
        CHECK(idna_punycode_decode(samples[s].puny, strlen(samples[s].puny), back, samples[s].n - 1) == -1);
    }
    uint32_t cp[8];
    CHECK(idna_punycode_decode("99999999999999999999", 20, cp, 8) == -1); /* overflow */
    CHECK(idna_punycode_decode("a-!", 3, cp, 8) == -1);                   /* not a digit */
    CHECK(idna_punycode_decode("abc-9", 5, cp, 8) == -1);                 /* cut */
}

static void test_domains_to_a_labels(void)
{
    char out[300];
    CHECK(idna_to_ascii("b\xc3\xbc" "cher.example", 15, out, sizeof out) > 0);
    CHECK_STR(out, "xn--bcher-kva.example");
    CHECK(idna_to_ascii("M\xc3\xbcnchen.DE", 11, out, sizeof out) > 0);
    CHECK_STR(out, "xn--mnchen-3ya.de");
    CHECK(idna_to_ascii("Example.COM", 11, out, sizeof out) == 11);
    CHECK_STR(out, "example.com");
    CHECK(idna_to_ascii("a..b", 4, out, sizeof out) == -1);          /* empty label */
    CHECK(idna_to_ascii("b\xc3\x28", 3, out, sizeof out) == -1);    /* bad UTF-8 */
    char big[80];
    memset(big, 'a', 64);
    CHECK(idna_to_ascii(big, 64, out, sizeof out) == -1);          /* label over 63 */
    CHECK(idna_to_ascii(big, 63, out, sizeof out) == 63);
    CHECK(idna_to_ascii("b\xc3\xbc" "cher.example", 15, out, 10) == -1); /* no room */
}

static void test_utf8_validation(void)
{
    CHECK(idna_utf8_valid("plain", 5));
    CHECK(idna_utf8_valid("\xc3\xa5\xe2\x82\xac\xf0\x9f\x98\x80", 9));   /* å € 😀 */
    CHECK(!idna_utf8_valid("\xc0\xaf", 2));                            /* overlong '/' */
    CHECK(!idna_utf8_valid("\xe0\x80\xaf", 3));                        /* overlong, 3 bytes */
    CHECK(!idna_utf8_valid("\xf0\x80\x80\xaf", 4));                    /* overlong, 4 bytes */
    CHECK(!idna_utf8_valid("\xed\xa0\x80", 3));                        /* surrogate U+D800 */
    CHECK(!idna_utf8_valid("\xf4\x90\x80\x80", 4));                    /* U+110000 */
    CHECK(!idna_utf8_valid("\xe2\x82", 2));                            /* cut */
    CHECK(!idna_utf8_valid("\x80", 1));                                /* lone continuation */
    CHECK(!idna_utf8_valid("\xff", 1));
    CHECK(idna_is_ascii("abc", 3) && !idna_is_ascii("\xc3\xa5", 2));
}

UNIT_MAIN("idna", UNIT_CASE(test_rfc3492_samples), UNIT_CASE(test_domains_to_a_labels),
          UNIT_CASE(test_utf8_validation))
