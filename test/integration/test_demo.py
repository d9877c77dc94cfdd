"""Issue 15 part 1: the README's first command, `./build.sh run`, ends with a
delivered message.  The test runs it as a new user would, copies the swaks
command it prints, runs that, and finds the message in the demo mailbox."""
import glob
import os
import re
import shlex
import signal
import subprocess
import time

from harness import Proc, free_port


def test_build_sh_run_shows_a_message_delivered(h):
    run_dir = os.path.join(h.tmp, "run-var")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MRS_")}
    env.update({
        "RUN_DIR": run_dir,
        "MRS_SUBMISSION_LISTEN": f"127.0.0.1:{free_port()}",
        "MRS_SUBMISSIONS_LISTEN": f"127.0.0.1:{free_port()}",
        "MRS_HEALTH_LISTEN": f"127.0.0.1:{free_port()}",
        "DEMO_DNS_PORT": str(free_port()),
        "DEMO_SINK_PORT": str(free_port()),
    })
    p = Proc(h, "build-run", [os.path.join(h.top, "build.sh"), "run"], env=env, cwd=h.top)
    deadline = time.time() + 600  # the first call may compile the release build
    cmd = None
    while time.time() < deadline and p.alive():
        m = re.search(r"^\s+(swaks --server .*)$", p.output(), re.M)
        if m:
            cmd = m.group(1)
            break
        time.sleep(0.2)
    assert cmd, "no swaks command printed:\n" + p.output()[-3000:]
    out = subprocess.run(shlex.split(cmd), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "250 2.0.0 Ok: queued as" in out.stdout, out.stdout[-2000:]
    mails = []
    deadline = time.time() + 60
    while time.time() < deadline and not mails:
        mails = glob.glob(os.path.join(run_dir, "demo", "mail", "*.eml"))
        time.sleep(0.2)
    assert mails, "nothing delivered:\n" + p.output()[-3000:]
    with open(mails[0], "rb") as f:
        msg = f.read()
    assert b"Subject: hello from mrs" in msg
    assert b"(authenticated user demo@localhost)" in msg and b"with ESMTPSA" in msg
    assert b"X-Demo-Envelope-To: friend@example.net" in msg
    assert "demo: delivered:" in p.output()
    # SIGTERM (what a terminal's Ctrl-C also does to the whole process group:
    # a test runner may have SIGINT ignored) drains the relay, exit 0, and
    # stops the demo servers
    assert p.stop(signal.SIGTERM, timeout=60) == 0, p.output()[-3000:]
    assert not os.path.exists(os.path.join(run_dir, "demo", "ready"))
