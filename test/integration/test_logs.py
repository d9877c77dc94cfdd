"""Logs (SPEC §6, issue 6): one line per event, MRS_LOG_FORMAT=json with
stable keys, no password or AUTH payload ever, client text escaped."""
import json

from harness import SPF_OK, auth_plain, free_port, token_for

USER, PW = "alice@customer.test", "alice-secret"
ZONE = [f'customer.test. TXT "{SPF_OK}"', f'customer.test. TXT "{token_for(USER)}"']


def session(m):
    s = m.smtp(login=(USER, PW))
    s.mail("news@customer.test")
    s.rcpt("rcpt@dest.test")
    code, text = s.data(b"From: news@customer.test\r\n\r\nhi\r\n")
    assert code == 250
    s.quit()
    r = m.raw(tls=True)
    r.reply()
    r.cmd("EHLO evil\x1b[31m.test")
    r.cmd("EHLO client.test")
    r.cmd("AUTH PLAIN " + auth_plain(USER, "Sup3rSecretGuess"))
    r.close()
    return text.decode().rsplit(" ", 1)[1]


def test_json_lines_with_stable_keys(h):
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns, env={"MRS_LOG_FORMAT": "json", "MRS_LOG_LEVEL": "info",
                            "MRS_SMARTHOST": f"127.0.0.1:{free_port()}", "MRS_RETRY_MIN": "1h",
                            "MRS_RETRY_MAX": "1h"})
    qid = session(m)
    m.stop()
    events = []
    for line in m.log().splitlines():
        if not line.strip():
            continue
        ev = json.loads(line)  # every line is one JSON object
        assert {"ts", "level", "event"} <= ev.keys(), ev
        assert ev["level"] in ("debug", "info", "warn", "error")
        events.append(ev)
    names = {e["event"] for e in events}
    for needed in ("start", "connect", "tls", "auth", "policy", "accepted", "disconnect", "shutdown"):
        assert needed in names, (needed, sorted(names))
    acc = [e for e in events if e["event"] == "accepted"][0]
    assert acc["queue_id"] == qid and acc["user"] == USER and acc["from"] == "news@customer.test"
    assert acc["client"] == "127.0.0.1" and acc["session"]
    fails = [e for e in events if e["event"] == "auth" and e.get("result") == "fail"]
    assert fails and fails[0]["user"] == USER
    text = m.log()
    assert "Sup3rSecretGuess" not in text and PW not in text
    assert auth_plain(USER, PW) not in text and auth_plain(USER, "Sup3rSecretGuess") not in text
    assert "\x1b" not in text


def test_text_lines_one_per_event(h):
    dns = h.dns(ZONE)
    m = h.mrs(dns=dns, env={"MRS_LOG_LEVEL": "debug", "MRS_SMARTHOST": f"127.0.0.1:{free_port()}",
                            "MRS_RETRY_MIN": "1h", "MRS_RETRY_MAX": "1h"})
    qid = session(m)
    m.stop()
    text = m.log()
    assert "Sup3rSecretGuess" not in text and PW not in text
    assert auth_plain(USER, "Sup3rSecretGuess") not in text
    assert "\x1b" not in text and "\\x1b" in text  # escaped, not dropped
    accepted = [ln for ln in text.splitlines() if " accepted " in ln]
    assert len(accepted) == 1 and f"queue_id={qid}" in accepted[0] and f"user={USER}" in accepted[0]
