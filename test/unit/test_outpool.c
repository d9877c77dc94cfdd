/* test_outpool — the reuse key (outpool_key): what makes two messages'
 * sessions interchangeable, and where TLS resumption is allowed. */
#include "config.h"
#include "dane.h"
#include "outpool.h"
#include "unit.h"

#include <stdlib.h>

static struct route_target target = {.host = "mx.example.test", .label = "mx.example.test[192.0.2.1]:25"};

static void setup_config(void)
{
    char err[CONFIG_ERROR_MAX_BYTES];
    setenv("MRS_HOSTNAME", "relay.test", 1);
    CHECK(config_load(err, sizeof err) == 0);
}

static void key_of(const struct outbound_tls_req *req, enum smtp_client_tls tls, const char *user, bool smarthost,
                   struct outpool_key *k)
{
    struct smtp_client_job j = {.target = &target, .tls = tls, .user = user, .tls_req = req};
    outpool_key(&j, smarthost, k);
}

static void test_policy_decisions_get_their_own_keys(void)
{
    setup_config();
    struct outbound_tls_req opp = {.policy = TLS_POLICY_OPPORTUNISTIC};
    struct outbound_tls_req enforce = {.policy = TLS_POLICY_MTA_STS_ENFORCE, .tls_required = true, .verify = true,
                                       .verify_name = "mx.example.test"};
    struct outbound_tls_req testing = {.policy = TLS_POLICY_MTA_STS_TESTING, .check = true,
                                       .verify_name = "mx.example.test"};
    struct outbound_tls_req enforce_other = enforce;
    enforce_other.verify_name = "other.example.test";
    struct outpool_key a, b;
    key_of(&opp, SMTP_CLIENT_TLS_OPPORTUNISTIC, NULL, false, &a);
    key_of(&opp, SMTP_CLIENT_TLS_OPPORTUNISTIC, NULL, false, &b);
    CHECK(a.text[0] && !strcmp(a.text, b.text)); /* the same decision: the same key */
    CHECK(a.resumable);
    key_of(&enforce, SMTP_CLIENT_TLS_OPPORTUNISTIC, NULL, false, &b);
    CHECK(strcmp(a.text, b.text) != 0 && !b.resumable);
    struct outpool_key c;
    key_of(&enforce_other, SMTP_CLIENT_TLS_OPPORTUNISTIC, NULL, false, &c);
    CHECK(strcmp(b.text, c.text) != 0);
    key_of(&testing, SMTP_CLIENT_TLS_OPPORTUNISTIC, NULL, false, &c);
    CHECK(strcmp(a.text, c.text) != 0 && strcmp(b.text, c.text) != 0 && !c.resumable);
    /* the plaintext retry after a failed handshake is another destination */
    key_of(&opp, SMTP_CLIENT_TLS_OFF, NULL, false, &c);
    CHECK(strcmp(a.text, c.text) != 0 && !c.resumable);
}

static void test_dane_sets_and_smarthost_users(void)
{
    setup_config();
    uint8_t h1[32] = {1}, h2[32] = {2};
    struct dane_tlsa r1 = {.usage = 3, .selector = 1, .mtype = 1, .data = h1, .len = 32};
    struct dane_tlsa r2 = {.usage = 3, .selector = 1, .mtype = 1, .data = h2, .len = 32};
    struct dane_set s1 = {.host = "mx.example.test", .count = 1, .recs = &r1};
    struct dane_set s2 = {.host = "mx.example.test", .count = 1, .recs = &r2};
    struct outbound_tls_req d1 = {.policy = TLS_POLICY_DANE, .tls_required = true, .verify_name = "mx.example.test",
                                  .dane = &s1};
    struct outbound_tls_req d2 = d1;
    d2.dane = &s2;
    struct outpool_key a, b;
    key_of(&d1, SMTP_CLIENT_TLS_OPPORTUNISTIC, NULL, false, &a);
    key_of(&d2, SMTP_CLIENT_TLS_OPPORTUNISTIC, NULL, false, &b);
    CHECK(strcmp(a.text, b.text) != 0);
    CHECK(!a.resumable && !b.resumable); /* DANE: the certificate is matched on every connection */
    struct outbound_tls_req none = {.policy = TLS_POLICY_NONE};
    key_of(&none, SMTP_CLIENT_TLS_STARTTLS, "relay-user", true, &a);
    key_of(&none, SMTP_CLIENT_TLS_STARTTLS, "other-user", true, &b);
    CHECK(strcmp(a.text, b.text) != 0 && a.resumable);
    key_of(&none, SMTP_CLIENT_TLS_STARTTLS, "relay-user", false, &b);
    CHECK(strcmp(a.text, b.text) != 0);
}

UNIT_MAIN("outpool", UNIT_CASE(test_policy_decisions_get_their_own_keys),
          UNIT_CASE(test_dane_sets_and_smarthost_users))
