"""`mrs check-domain` (SPEC §1, §2) against a real DNS server (unbound)
serving one zone per case: exit codes 0 / 1 / 3, a ✔/✘ line per
requirement, and the exact record to add or change."""
from harness import token_for

USER = "steve.mailer@mycorp.se"
OTHER = "someone.else@othercorp.se"
TOK = token_for(USER)
SPF = "v=spf1 include:elastx.email -all"
OK = "\u2714"
BAD = "\u2718"

ZONES = [
    # both records good (the SPEC example)
    f'new.mycorp.se. TXT "{SPF}"', f'new.mycorp.se. TXT "{TOK}"',
    'new.mycorp.se. TXT "google-site-verification=abc123"',
    # the SPF record split into several character-strings
    f'split.test. TXT "v=spf1 " "include:elastx.email" " -all"', f'split.test. TXT "{TOK}"',
    # SPF missing
    f'nospf.test. TXT "{TOK}"',
    # SPF without the include
    f'mxonly.test. TXT "v=spf1 mx -all"', f'mxonly.test. TXT "{TOK}"',
    # token missing
    f'notoken.test. TXT "{SPF}"',
    # the token of another user
    f'othertoken.test. TXT "{SPF}"', f'othertoken.test. TXT "{token_for(OTHER)}"',
    # an uppercase token, with spaces around it
    f'upper.test. TXT "{SPF}"', f'upper.test. TXT " {TOK.upper().replace("ELASTX-MRS", "elastx-mrs")} "',
    # +include
    f'plus.test. TXT "v=spf1 +include:elastx.email ~all"', f'plus.test. TXT "{TOK}"',
    # look-alike include
    f'lookalike.test. TXT "v=spf1 include:elastx.email.evil.example -all"', f'lookalike.test. TXT "{TOK}"',
    # the include only through another include
    f'indirect.test. TXT "v=spf1 include:spf.indirect.test -all"', f'indirect.test. TXT "{TOK}"',
    f'spf.indirect.test. TXT "{SPF}"',
    # redirect=
    f'redirect.test. TXT "v=spf1 redirect=elastx.email"', f'redirect.test. TXT "{TOK}"',
    # a soft-fail qualifier on the include
    f'softinc.test. TXT "v=spf1 ~include:elastx.email -all"', f'softinc.test. TXT "{TOK}"',
    # two SPF records
    f'twospf.test. TXT "{SPF}"', f'twospf.test. TXT "v=spf1 mx -all"', f'twospf.test. TXT "{TOK}"',
    # the include term in a TXT record that is not the SPF record
    f'notspf.test. TXT "include:elastx.email"', f'notspf.test. TXT "{TOK}"',
    # records only on the parent domain: sending from a subdomain
    f'parent.test. TXT "{SPF}"', f'parent.test. TXT "{TOK}"', 'sub.parent.test. A 192.0.2.1',
    # records only on a subdomain: sending from its parent
    f'child.kid.test. TXT "{SPF}"', f'child.kid.test. TXT "{TOK}"', 'kid.test. A 192.0.2.2',
    # a CNAME'd name
    'alias.test. CNAME new.mycorp.se.',
    # several accounts authorized
    f'shared.test. TXT "{SPF}"', f'shared.test. TXT "{token_for(OTHER)}"', f'shared.test. TXT "{TOK}"',
]


def setup(h):
    return {"h": h, "dns": h.dns(ZONES)}


def check(ctx, target, user=USER, env=None):
    h = ctx["h"]
    e = {"MRS_DNS_SERVERS": ctx["dns"].server}
    e.update(env or {})
    r = h.run([h.mrs_bin, "check-domain", user, target], env=e, timeout=60)
    assert "Traceback" not in r.stderr
    return r


def lines_with(out, mark):
    return [ln for ln in out.splitlines() if ln.startswith(mark)]


def test_both_records_good(ctx):
    r = check(ctx, "newsletter@new.mycorp.se")
    assert r.returncode == 0, r.stdout
    assert f"Answer from {ctx['dns'].server}: 3 TXT records for new.mycorp.se" in r.stdout
    for rec in (SPF, TOK, "google-site-verification=abc123"):
        assert f'  TXT "{rec}"' in r.stdout, rec          # every TXT record seen
    assert len(lines_with(r.stdout, OK)) == 2 and not lines_with(r.stdout, BAD), r.stdout


def test_domain_given_directly_in_any_case(ctx):
    assert check(ctx, "New.MyCorp.SE.").returncode == 0


def test_spf_split_into_character_strings(ctx):
    r = check(ctx, "split.test")
    assert r.returncode == 0, r.stdout
    assert f'TXT "{SPF}"' in r.stdout  # shown joined (RFC 7208 §3.3)


def test_spf_missing(ctx):
    r = check(ctx, "nospf.test")
    assert r.returncode == 1, r.stdout
    assert f"{BAD} SPF: nospf.test has no SPF record" in r.stdout
    assert "    Add this TXT record to nospf.test:\n      v=spf1 include:elastx.email -all\n" in r.stdout
    assert f"{OK} Token" in r.stdout
    assert "550 5.7.1 nospf.test has no SPF record containing include:elastx.email" in r.stdout


def test_spf_without_the_include_shows_the_exact_change(ctx):
    r = check(ctx, "mxonly.test")
    assert r.returncode == 1, r.stdout
    assert "Change the TXT record\n      v=spf1 mx -all\n    to\n      v=spf1 mx include:elastx.email -all\n" in r.stdout


def test_token_missing(ctx):
    r = check(ctx, "notoken.test")
    assert r.returncode == 1, r.stdout
    assert f"{OK} SPF" in r.stdout
    assert f"{BAD} Token: notoken.test has no elastx-mrs record for {USER}" in r.stdout
    assert f"    Add this TXT record to notoken.test:\n      {TOK}\n" in r.stdout
    assert f'550 5.7.1 notoken.test has no TXT record "{TOK}" for this account' in r.stdout


def test_token_of_another_user(ctx):
    r = check(ctx, "othertoken.test")
    assert r.returncode == 1, r.stdout
    assert f"      {TOK}\n" in r.stdout
    assert "1 elastx-mrs record there belongs to other accounts" in r.stdout
    # ... and that other user is authorized there
    assert check(ctx, "othertoken.test", user=OTHER).returncode == 0


def test_uppercase_token(ctx):
    r = check(ctx, "upper.test")
    assert r.returncode == 0, r.stdout


def test_plus_include(ctx):
    assert check(ctx, "plus.test").returncode == 0


def test_lookalike_include(ctx):
    r = check(ctx, "lookalike.test")
    assert r.returncode == 1, r.stdout
    assert "v=spf1 include:elastx.email.evil.example include:elastx.email -all" in r.stdout


def test_include_only_via_another_include(ctx):
    r = check(ctx, "indirect.test")
    assert r.returncode == 1, r.stdout
    assert "includes and redirect= are not followed" in r.stdout


def test_redirect(ctx):
    r = check(ctx, "redirect.test")
    assert r.returncode == 1, r.stdout
    assert "v=spf1 include:elastx.email redirect=elastx.email" in r.stdout


def test_softfail_qualifier_on_the_include(ctx):
    r = check(ctx, "softinc.test")
    assert r.returncode == 1, r.stdout
    assert "    to\n      v=spf1 include:elastx.email -all\n" in r.stdout


def test_two_spf_records(ctx):
    r = check(ctx, "twospf.test")
    assert r.returncode == 1, r.stdout
    assert f"{BAD} SPF: twospf.test has 2 SPF records" in r.stdout
    assert "550 5.7.1 twospf.test has 2 SPF records" in r.stdout


def test_include_in_a_non_spf_record(ctx):
    assert check(ctx, "notspf.test").returncode == 1


def test_parent_records_do_not_cover_a_subdomain(ctx):
    r = check(ctx, "sub.parent.test")
    assert r.returncode == 1, r.stdout
    assert "0 TXT records for sub.parent.test" in r.stdout
    assert check(ctx, "parent.test").returncode == 0


def test_subdomain_records_do_not_cover_the_parent(ctx):
    r = check(ctx, "kid.test")
    assert r.returncode == 1, r.stdout
    assert check(ctx, "child.kid.test").returncode == 0


def test_nxdomain(ctx):
    r = check(ctx, "newsletter@nonexistent.test")
    assert r.returncode == 1, r.stdout
    assert "nonexistent.test does not exist (NXDOMAIN)" in r.stdout
    assert "v=spf1 include:elastx.email -all" in r.stdout and TOK in r.stdout
    assert "550 5.7.1 nonexistent.test does not exist in DNS" in r.stdout


def test_cname(ctx):
    r = check(ctx, "alias.test")
    assert r.returncode == 0, r.stdout
    assert "CNAME to new.mycorp.se" in r.stdout


def test_several_accounts(ctx):
    assert check(ctx, "shared.test").returncode == 0
    assert check(ctx, "shared.test", user=OTHER).returncode == 0
    assert check(ctx, "shared.test", user="third@x.se").returncode == 1


def test_username_domain_plays_no_part(ctx):
    """steve.mailer@mycorp.se may send as new.mycorp.se, not as mycorp.se."""
    assert check(ctx, "newsletter@new.mycorp.se").returncode == 0
    assert check(ctx, "steve.mailer@mycorp.se").returncode == 1


def test_configured_include_and_prefix(ctx):
    env = {"MRS_SPF_INCLUDE": "spf.indirect.test", "MRS_TOKEN_PREFIX": "acme-relay"}
    r = check(ctx, "indirect.test", env=env)
    assert r.returncode == 1, r.stdout
    assert f"{OK} SPF" in r.stdout
    assert "      " + token_for(USER, "acme-relay") + "\n" in r.stdout


def test_dns_failing_is_exit_3(ctx):
    h = ctx["h"]
    from fakedns import FakeDns
    fake = FakeDns(h, mode="servfail")
    r = check(ctx, "new.mycorp.se", env={"MRS_DNS_SERVERS": fake.server})
    assert r.returncode == 3, r.stdout
    assert "failed temporarily: servfail" in r.stdout and "451 4.4.3" in r.stdout
    fake.stop()


def test_usage_errors_exit_2(ctx):
    h = ctx["h"]
    for argv in (["check-domain"], ["check-domain", USER], ["check-domain", USER, "a@[192.0.2.1]"],
                 ["check-domain", USER, "bad domain"], ["check-domain", USER, "<>"],
                 ["check-domain", USER, "x.test", "extra"]):
        r = h.run([h.mrs_bin, *argv], env={"MRS_DNS_SERVERS": ctx["dns"].server})
        assert r.returncode == 2, (argv, r.returncode, r.stdout)
        assert r.stderr.strip(), argv


# --- GET /check (SPEC 8.6): the same findings as JSON ------------------------------

def http_check(m, query):
    import json
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{m.health_port}/check?{query}", timeout=30) as r:
            assert r.headers["Content-Type"] == "application/json"
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def relay(ctx):
    if "mrs" not in ctx:
        ctx["mrs"] = ctx["h"].mrs(dns=ctx["dns"])
    return ctx["mrs"]


def test_http_check_authorized(ctx):
    m = relay(ctx)
    code, j = http_check(m, "user=steve.mailer%40mycorp.se&domain=newsletter%40new.mycorp.se")
    assert code == 200, j
    assert j["result"] == "authorized" and j["domain"] == "new.mycorp.se" and j["user"] == USER
    assert j["spf"]["ok"] is True and j["token"]["ok"] is True
    assert j["reply"]["code"] == 250
    assert set(j["dns"]["txt"]) == {SPF, TOK, "google-site-verification=abc123"}
    assert "dkim" in j and j["dkim"]["ok"] is False  # a recommendation, never the verdict


def test_http_check_says_what_to_publish_like_the_cli(ctx):
    m = relay(ctx)
    code, j = http_check(m, "user=steve.mailer@mycorp.se&domain=mxonly.test")
    assert code == 200 and j["result"] == "not_authorized", j
    assert j["spf"]["ok"] is False
    assert j["spf"]["change_from"] == "v=spf1 mx -all"
    assert j["spf"]["publish"] == "v=spf1 mx include:elastx.email -all"
    assert j["reply"]["code"] == 550 and j["reply"]["enhanced"] == "5.7.1"
    cli = check(ctx, "mxonly.test")
    assert f"{BAD} {j['spf']['text']}" in cli.stdout  # the same sentence
    code, j = http_check(m, "user=steve.mailer@mycorp.se&domain=notoken.test")
    assert j["token"]["ok"] is False and j["token"]["publish"] == TOK
    code, j = http_check(m, "user=steve.mailer@mycorp.se&domain=nospf.test")
    assert j["spf"]["publish"] == "v=spf1 include:elastx.email -all" and j["spf"]["change_from"] is None


def test_http_check_bad_parameters_are_400(ctx):
    m = relay(ctx)
    for q in ["", "user=steve.mailer@mycorp.se", "domain=x.test", "user=&domain=x.test",
              "user=a&user=b&domain=x.test", "user=a%0d%0a&domain=x.test",
              "user=a%20b&domain=x.test", "user=a&domain=not a domain", "user=a&domain=%5B1.2.3.4%5D"]:
        code, j = http_check(m, q.replace(" ", "%20"))
        assert code == 400 and "error" in j, (q, code, j)


def test_http_check_dns_failure(h):
    from harness import free_port
    m = h.mrs(env={"MRS_DNS_SERVERS": f"127.0.0.1:{free_port()}",
                   "MRS_DNS_TIMEOUT": "200ms", "MRS_DNS_DEADLINE": "1s"})
    code, j = http_check(m, "user=a@b.test&domain=c.test")
    assert code == 200 and j["result"] == "dns_temporary_failure" and j["reply"]["code"] == 451, j
    assert j["spf"]["ok"] is None


def test_http_check_is_rate_limited(ctx):
    m = ctx["h"].mrs(dns=ctx["dns"])
    codes = [http_check(m, "user=a@b.test&domain=new.mycorp.se")[0] for _ in range(40)]
    assert 429 in codes and 200 in codes, codes
