/* policy — placeholder until the DNS/policy work lands (issue 4). */
#include "policy.h"

#include <stdio.h>
#include <string.h>

static void tempfail(struct policy_verdict *v)
{
    memset(v, 0, sizeof *v);
    v->status = POLICY_TEMPFAIL;
    v->code = 451;
    snprintf(v->enhanced, sizeof v->enhanced, "4.4.3");
    snprintf(v->text, sizeof v->text, "sender authorization not available");
    v->reason = "dns_temp";
}

void policy_check_domain(const char *user, const char *domain, struct policy_verdict *v)
{
    tempfail(v);
}

void policy_evaluate(const char *user, const char *domain, const char *const *txt,
                     const size_t *txt_len, size_t txt_count, struct policy_verdict *v)
{
    tempfail(v);
}

int policy_sender_domain(const char *addr, char *out, size_t out_len)
{
    return -1;
}

int policy_parse_from(const char *value, size_t len, char domains[][POLICY_DOMAIN_MAX_BYTES],
                      size_t max)
{
    return -1;
}

void policy_check_header_from(const char *user, const char *headers, size_t len,
                              struct policy_verdict *v)
{
    tempfail(v);
}

int policy_cli_check_domain(int argc, char **argv)
{
    fprintf(stderr, "mrs check-domain: not available in this build yet\n");
    return 3;
}
