"""configs/ and the Dockerfile agree with the binary (SPEC §6, issue 6 Tests;
Kubernetes manifests of SPEC §8.6 / issue 15 part 7).

The YAML files parse; every MRS_* variable that configs/docker-compose.yml,
configs/kubernetes/*.yaml, configs/mrs.env.example and the Dockerfile set is
one the binary accepts, and the binary accepts its value (`mrs token x`
loads and validates the whole configuration: exit 2 naming the variable when
a value is malformed); ports, probes, volumes and secrets match the values
those variables give.  The cert-manager Certificate feeds the Secret mounted
where MRS_TLS_CERT/KEY point (as a directory, so renewals arrive) and its
output format is served by the relay; the NetworkPolicy opens exactly the
container's ports.

The accepted names come from src/config.c's vars[] table (plus the _FILE
variants); test_accepted_names_are_read_by_the_binary proves that list
against the binary itself.
"""
import fnmatch
import glob
import json
import os
import re
import socket
import ssl
import subprocess
import time

from harness import TOP

CONFIGS = os.path.join(TOP, "configs")
K8S = os.path.join(CONFIGS, "kubernetes")
ENV_EXAMPLE = os.path.join(CONFIGS, "mrs.env.example")
COMPOSE = os.path.join(CONFIGS, "docker-compose.yml")
DOCKERFILE = os.path.join(TOP, "Dockerfile")

# Variables whose value names a file the binary may read at load time: the
# value check drops them when the file does not exist on this machine (a
# Kubernetes secret path, say), with their partner.
FILE_VALUED = ("MRS_TLS_CERT", "MRS_TLS_KEY")
PARTNERS = {
    "MRS_TLS_CERT": ["MRS_TLS_KEY"],
    "MRS_TLS_KEY": ["MRS_TLS_CERT"],
    "MRS_SMARTHOST_PASSWORD": ["MRS_SMARTHOST_USER"],
    "MRS_SMARTHOST_PASSWORD_FILE": ["MRS_SMARTHOST_USER"],
    "MRS_RETRY_MIN": ["MRS_RETRY_MAX"],
    "MRS_RETRY_MAX": ["MRS_RETRY_MIN"],
    "MRS_DNS_TIMEOUT": ["MRS_DNS_DEADLINE"],
    "MRS_DNS_DEADLINE": ["MRS_DNS_TIMEOUT"],
}
# A value of each kind that its parser must refuse (kinds that take any
# non-empty text, such as paths, have none).
BAD_BY_KIND = {
    "K_DURATION": "soon", "K_SIZE": "big", "K_UINT": "many", "K_BOOL": "maybe",
    "K_LISTEN": "here:there", "K_DOMAIN": "-bad-", "K_HOSTNAME": "-bad-", "K_PREFIX": "a b",
    "K_PORT": "port", "K_LOGFMT": "xml", "K_LOGLEVEL": "loud", "K_TLSMODE": "ssl",
    "K_DNS": "resolver", "K_SMARTHOST": "relay:0", "K_RATE": "lots", "K_DKIMKEYS": "selector-without-path",
}


# --- what the binary accepts ------------------------------------------------

def _vars_table():
    """[(name, kind, default or None)] from src/config.c's vars[] table."""
    with open(os.path.join(TOP, "src", "config.c")) as f:
        src = f.read()
    start = src.index("static const struct var vars[]")
    table = src[start:src.index("};", start)]
    rows = re.findall(r'\{"(MRS_[A-Z0-9_]+)",\s*(K_[A-Z]+),\s*(NULL|"(?:[^"\\]|\\.)*")', table)
    return [(n, k, None if d == "NULL" else d[1:-1]) for n, k, d in rows]


def _file_variants():
    """Names that may also be given as NAME_FILE (has_file_variant in
    config.c), and MRS_USERS_FILE, the documented users-file variable."""
    with open(os.path.join(TOP, "src", "config.c")) as f:
        src = f.read()
    m = re.search(r"has_file_variant\([^)]*\)\s*\{(.*?)\n\}", src, re.S)
    names = re.findall(r'"(MRS_[A-Z0-9_]+)"', m.group(1)) if m else []
    return [n + "_FILE" for n in names] + ["MRS_USERS_FILE"]


def accepted():
    """{name: default or None} for every MRS_* variable the binary reads."""
    names = {n: d for n, _, d in _vars_table()}
    for n in _file_variants():
        names.setdefault(n, None)
    return names


def _yaml():
    import yaml  # Debian's python3-yaml (build.sh installs it for the tests)
    return yaml


def _load_yaml(path):
    with open(path) as f:
        return [d for d in _yaml().safe_load_all(f) if d is not None]


def _token(h, env):
    return h.run([h.mrs_bin, "token", "x"], env=env, timeout=20)


def _checkable(env):
    """env without the file-valued variables whose file is not on this
    machine (and their partners)."""
    out = dict(env)
    for name, value in env.items():
        if (name.endswith("_FILE") or name in FILE_VALUED) and not os.path.exists(value):
            out.pop(name, None)
            for p in PARTNERS.get(name, []):
                if p in FILE_VALUED or p.endswith("_FILE"):
                    out.pop(p, None)
    return out


def assert_config_accepted(h, env, where):
    """Every MRS_* name in env is accepted, and the binary loads the whole
    set (minus files absent here) without complaint."""
    ok = accepted()
    unknown = sorted(n for n in env if n.startswith("MRS_") and n not in ok)
    assert not unknown, f"{where}: variables the binary does not accept: {unknown}"
    mrs_env = {k: str(v) for k, v in env.items() if k.startswith("MRS_")}
    r = _token(h, _checkable(mrs_env))
    assert r.returncode == 0, f"{where}: mrs refuses this configuration (exit {r.returncode}): {r.stderr.strip()}"


def listen_port(value):
    """The port of a listen address (:587, 1.2.3.4:587, [::]:587), None for off."""
    if value == "off":
        return None
    m = re.fullmatch(r"(?:\[[0-9a-fA-F:.]*\]|[^:\[\]]*):(\d+)", value)
    assert m, f"not a listen address: {value!r}"
    return int(m.group(1))


def duration_s(value):
    """Seconds in 25s, 90, 500ms, 1m30s, 5d (config.c and compose forms)."""
    value = str(value)
    if re.fullmatch(r"\d+", value):
        return int(value)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", value)
    assert parts and "".join(a + b for a, b in parts) == value, f"not a duration: {value!r}"
    return sum(int(n) * units[u] for n, u in parts)


def mebibytes(q):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G)?", str(q))
    assert m, f"not a memory quantity: {q!r}"
    mult = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    return int(m.group(1)) * mult.get(m.group(2), 1 / 2**20)


def effective(env, name):
    """The value the binary uses: env's, else the default."""
    return env.get(name, accepted()[name])


# --- the accepted list itself ----------------------------------------------

def test_accepted_names_are_read_by_the_binary(h):
    table = _vars_table()
    names = [n for n, _, _ in table]
    assert len(names) >= 30 and len(set(names)) == len(names), names
    for must in ("MRS_SPOOL_DIR", "MRS_HEALTH_LISTEN", "MRS_SUBMISSION_LISTEN", "MRS_SHUTDOWN_GRACE"):
        assert must in names, must
    assert {"MRS_USERS_FILE", "MRS_SMARTHOST_PASSWORD_FILE"} <= set(accepted())
    # Black-box: a value each kind must refuse makes the binary exit 2
    # naming exactly that variable, so the binary really reads the name.
    probed = 0
    for name, kind, _ in table:
        bad = BAD_BY_KIND.get(kind)
        if bad is None:
            continue
        r = _token(h, {name: bad})
        assert r.returncode == 2 and name in r.stderr and bad in r.stderr, (name, kind, r.returncode, r.stderr)
        probed += 1
    assert probed >= 25, probed
    # The defaults in the table are ones the binary accepts.
    r = _token(h, {n: d for n, _, d in table if d is not None})
    assert r.returncode == 0, r.stderr


# --- configs/mrs.env.example ------------------------------------------------

def _env_example():
    """[(name, value, set?, comment line above)] in file order."""
    rows = []
    prev = ""
    with open(ENV_EXAMPLE) as f:
        for line in f.read().splitlines():
            m = re.fullmatch(r"(#)?(MRS_[A-Z0-9_]+)=(.*)", line)
            if m:
                rows.append((m.group(2), m.group(3), m.group(1) is None, prev))
            prev = line
    return rows


def test_env_example_lists_every_variable_with_its_default(h):
    rows = _env_example()
    names = [r[0] for r in rows]
    ok = accepted()
    assert len(names) == len(set(names)), "listed twice: %s" % sorted({n for n in names if names.count(n) > 1})
    assert not set(names) - set(ok), f"not accepted by the binary: {sorted(set(names) - set(ok))}"
    assert not set(ok) - set(names), f"missing from mrs.env.example: {sorted(set(ok) - set(names))}"
    for name, value, is_set, comment in rows:
        assert comment.startswith("# ") and not re.match(r"#?\s*MRS_\w+=", comment), \
            f"{name}: needs a one-line comment above it, got {comment!r}"
        default = ok[name]
        if default is None:
            assert not is_set, f"{name} has no default: show its example commented out"
        else:
            assert is_set and value == default, f"{name}={value!r} (set: {is_set}); the default is {default!r}"


def test_env_example_values_are_accepted(h):
    rows = _env_example()
    defaults = {n: v for n, v, s, _ in rows if s}
    assert_config_accepted(h, defaults, "mrs.env.example (set lines)")
    every = {n: v for n, v, _, _ in rows}
    for name, value, is_set, _ in rows:
        if is_set:
            continue
        env = dict(defaults)
        env[name] = value
        for p in PARTNERS.get(name, []):
            env[p] = every[p]
        assert_config_accepted(h, env, f"mrs.env.example: {name}={value}")


# --- YAML -------------------------------------------------------------------

def test_yaml_files_parse(h):
    paths = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.y*ml"), recursive=True))
    assert COMPOSE in paths and len(paths) >= 5, paths
    kinds = set()
    for p in paths:
        docs = _load_yaml(p)
        assert docs, f"{p}: no YAML document"
        for d in docs:
            assert isinstance(d, dict), f"{p}: a document is not a mapping"
            if p.startswith(K8S + os.sep) and d.get("kind") != "Kustomization":
                assert d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"), \
                    f"{p}: a document lacks apiVersion, kind or metadata.name"
                kinds.add(d["kind"])
    for k in ("Secret", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy", "Certificate",
              "ServiceMonitor", "PrometheusRule"):
        assert k in kinds, f"configs/kubernetes has no {k}"


# --- docker compose ---------------------------------------------------------

def _compose_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _container_port(p):
    if isinstance(p, dict):
        return int(p["target"])
    return int(str(p).split("/")[0].rsplit(":", 1)[-1])


def test_compose_matches_binary(h):
    doc = _load_yaml(COMPOSE)[0]
    svc = doc["services"]["mrs"]
    env = _compose_env(svc)
    assert_config_accepted(h, env, "docker-compose.yml")
    for name, value in env.items():
        assert "$" not in value.replace("$$", ""), f"{name}: compose would interpolate {value!r}"
    ports = {_container_port(p) for p in svc["ports"]}
    want = {listen_port(effective(env, n)) for n in
            ("MRS_SUBMISSION_LISTEN", "MRS_SUBMISSIONS_LISTEN", "MRS_HEALTH_LISTEN")} - {None}
    assert ports == want, f"container ports {ports}, the listeners use {want}"
    hc = svc["healthcheck"]["test"]
    assert hc == ["CMD", "/mrs", "healthcheck"], hc
    spool = effective(env, "MRS_SPOOL_DIR")
    targets = [v.split(":")[1] if isinstance(v, str) else v["target"] for v in svc["volumes"]]
    assert spool in targets, f"no volume on the spool {spool}: {targets}"
    named = [v.split(":")[0] for v in svc["volumes"] if isinstance(v, str)]
    assert any(n in (doc.get("volumes") or {}) for n in named), "the spool is not a named volume"
    users = env.get("MRS_USERS_FILE", "")
    m = re.fullmatch(r"/run/secrets/([\w.-]+)", users)
    assert m, f"MRS_USERS_FILE should be a Docker secret, is {users!r}"
    names = [s if isinstance(s, str) else s["source"] for s in svc.get("secrets", [])]
    assert m.group(1) in names and m.group(1) in doc.get("secrets", {}), \
        f"secret {m.group(1)} is not given to the service"
    grace = duration_s(effective(env, "MRS_SHUTDOWN_GRACE"))
    assert duration_s(svc["stop_grace_period"]) > grace, "stop_grace_period must exceed MRS_SHUTDOWN_GRACE"


# --- Kubernetes -------------------------------------------------------------

def _k8s_docs():
    docs = []
    for p in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        docs += [d for d in _load_yaml(p) if d.get("kind") != "Kustomization"]
    return docs


def _one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_kubernetes_statefulset_matches_binary(h):
    docs = _k8s_docs()
    sts = _one(docs, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert _matches(sts["spec"]["selector"]["matchLabels"], labels)
    assert pod.get("enableServiceLinks") is False, \
        "enableServiceLinks must be false: a Service named mrs injects MRS_SERVICE_HOST, MRS_PORT…"
    (c,) = [c for c in pod["containers"] if c["name"] == "mrs"]
    assert c.get("args", ["serve"]) == ["serve"] and "command" not in c
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert all("value" in e for e in c["env"] if e["name"].startswith("MRS_")), "MRS_* from valueFrom"
    assert_config_accepted(h, env, "statefulset.yaml")
    # Ports: named container ports are the listeners' ports.
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for pname, var in (("submission", "MRS_SUBMISSION_LISTEN"), ("submissions", "MRS_SUBMISSIONS_LISTEN"),
                       ("health", "MRS_HEALTH_LISTEN")):
        assert cports.get(pname) == listen_port(effective(env, var)), (pname, cports, effective(env, var))

    def port_of(probe):
        p = probe["httpGet"]["port"]
        return cports[p] if isinstance(p, str) else p
    health = listen_port(effective(env, "MRS_HEALTH_LISTEN"))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        if probe == "startupProbe" and probe not in c:
            continue
        assert c[probe]["httpGet"]["path"] == path, (probe, c[probe])
        assert port_of(c[probe]) == health, (probe, "not on the health port", health)
    # Drain: the kubelet's SIGKILL comes after MRS_SHUTDOWN_GRACE.
    grace = duration_s(effective(env, "MRS_SHUTDOWN_GRACE"))
    assert pod["terminationGracePeriodSeconds"] > grace, (pod["terminationGracePeriodSeconds"], grace)
    # Hardening.
    sc, psc = c["securityContext"], pod.get("securityContext", {})
    assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
    assert sc.get("runAsUser", psc.get("runAsUser", 65534)) != 0
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    if "NET_BIND_SERVICE" not in sc["capabilities"].get("add", []):
        low = [p for p in cports.values() if p < 1024]
        assert not low, f"ports {low} need NET_BIND_SERVICE or high container ports"
    # Resources: enough memory for MRS_AUTH_CONCURRENCY Argon2id runs (64 MiB each).
    res = c["resources"]
    for k in ("cpu", "memory"):
        assert k in res["requests"] and k in res["limits"], res
    conc = int(effective(env, "MRS_AUTH_CONCURRENCY"))
    assert mebibytes(res["limits"]["memory"]) >= 64 * conc + 64, res["limits"]
    # The spool is a claim template mounted at MRS_SPOOL_DIR.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    spool = effective(env, "MRS_SPOOL_DIR")
    claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    assert mounts.get(spool) in claims, f"{spool} is not on a PersistentVolumeClaim: {mounts}, {claims}"
    # File variables point into mounted Secrets, at keys those Secrets have.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for name in ("MRS_USERS_FILE", "MRS_TLS_CERT", "MRS_TLS_KEY", "MRS_SMARTHOST_PASSWORD_FILE"):
        if name not in env:
            continue
        path = env[name]
        mount = [mp for mp in mounts if path.startswith(mp.rstrip("/") + "/")]
        assert mount, f"{name}={path} is under no volumeMount"
        vol = volumes[mounts[mount[0]]]
        key = path[len(mount[0].rstrip("/")) + 1:]
        sname = vol.get("secret", {}).get("secretName")
        assert sname, f"{name}: {mount[0]} is not a Secret volume"
        if sname in secrets:
            s = secrets[sname]
            keys = set(s.get("data") or {}) | set(s.get("stringData") or {})
            assert key in keys, f"{name}: Secret {sname} has no key {key!r} ({sorted(keys)})"


def test_kubernetes_services_and_budget_match(h):
    docs = _k8s_docs()
    sts = _one(docs, "StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    (c,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "mrs"]
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    services = [d for d in docs if d["kind"] == "Service"]
    for s in services:
        assert _matches(s["spec"]["selector"], labels), f"Service {s['metadata']['name']} selects no mrs pod"
        for p in s["spec"]["ports"]:
            t = p.get("targetPort", p["port"])
            assert (cports.get(t) if isinstance(t, str) else t) in cports.values(), \
                f"Service {s['metadata']['name']} port {p['port']} targets {t}, not a container port"
    public = {}
    for s in services:
        for p in s["spec"]["ports"]:
            t = p.get("targetPort", p["port"])
            public[p["port"]] = cports.get(t) if isinstance(t, str) else t
    assert public.get(587) == cports["submission"], f"587 must reach the submission port: {public}"
    assert public.get(465) == cports["submissions"], f"465 must reach the submissions port: {public}"
    headless = _one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"].get("clusterIP") == "None"
    pdb = _one(docs, "PodDisruptionBudget")
    assert _matches(pdb["spec"]["selector"]["matchLabels"], labels)
    assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]
    kust = os.path.join(K8S, "kustomization.yaml")
    if os.path.exists(kust):
        res = _load_yaml(kust)[0]["resources"]
        for r in res:
            assert os.path.exists(os.path.join(K8S, r)), f"kustomization lists missing {r}"


def _strings(node):
    """Every string value (not key) in a parsed YAML/JSON document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _pod_specs(docs):
    """(where, pod spec) of every workload in docs."""
    for d in docs:
        spec = d.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec")
        if pod:
            yield f"{d['kind']} {d['metadata']['name']}", pod


def test_kubernetes_every_mrs_name_is_accepted(h):
    """Every MRS_* variable any container in the manifests sets is accepted
    with its value, and every MRS_* name the manifests, the alerts and the
    dashboard mention in their values (descriptions included) is one the
    binary reads: a renamed variable cannot linger in an alert text."""
    docs = _k8s_docs()
    pods = list(_pod_specs(docs))
    assert pods, "no workload in configs/kubernetes"
    for where, pod in pods:
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
            if any(n.startswith("MRS_") for n in env):
                assert_config_accepted(h, env, f"{where} container {c['name']}")
    ok = accepted()
    sources = [(f"{d['kind']} {d['metadata']['name']}", d) for d in docs]
    prom = os.path.join(CONFIGS, "prometheus")
    for p in sorted(glob.glob(os.path.join(prom, "**", "*.yml"), recursive=True)):
        sources += [(os.path.relpath(p, TOP), d) for d in _load_yaml(p)]
    with open(os.path.join(prom, "grafana-dashboard.json")) as f:
        sources.append(("grafana-dashboard.json", json.load(f)))
    mentioned = 0
    for where, doc in sources:
        for text in _strings(doc):
            for name in re.findall(r"\bMRS_[A-Z0-9_]*[A-Z0-9]\b", text):
                assert name in ok, f"{where} names {name}, which the binary does not read"
                mentioned += 1
    assert mentioned >= 10, mentioned


def test_kubernetes_kustomization_lists_every_manifest(h):
    kust = _load_yaml(os.path.join(K8S, "kustomization.yaml"))[0]
    listed = set(kust["resources"])
    files = {os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))} - {"kustomization.yaml"}
    assert "secret.yaml" not in listed, "an apply would overwrite the real Secrets with the example's"
    assert listed == files - {"secret.yaml"}, \
        f"kustomization.yaml resources {sorted(listed)}, files {sorted(files)}"


def _sts_container(docs):
    sts = _one(docs, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "mrs"]
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    return sts, pod, c, env


def _mount_of(c, path):
    """The volumeMount whose directory holds path."""
    found = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(found) == 1, f"{path}: mounts {found}"
    return found[0]


def test_kubernetes_certificate_feeds_the_tls_volume(h):
    """cert-manager's Certificate (ECDSA P-256, a new key at every renewal)
    writes the Secret that is mounted, as a directory, where MRS_TLS_CERT
    and MRS_TLS_KEY point (tls.crt, tls.key), for the name the relay uses."""
    docs = _k8s_docs()
    cert = _one(docs, "Certificate")
    assert cert["apiVersion"] == "cert-manager.io/v1", cert["apiVersion"]
    spec = cert["spec"]
    pk = spec["privateKey"]
    assert (pk["algorithm"], pk["size"], pk["rotationPolicy"]) == ("ECDSA", 256, "Always"), pk
    assert spec["issuerRef"].get("name"), "issuerRef needs a name"
    _, pod, c, env = _sts_container(docs)
    assert env["MRS_HOSTNAME"] in spec["dnsNames"], (env["MRS_HOSTNAME"], spec["dnsNames"])
    # Renewal happens well before the 14-day alert (alerts.yml) would fire.
    if "renewBefore" in spec:
        renew = duration_s(spec["renewBefore"])
        assert 14 * 86400 < renew < duration_s(spec.get("duration", "2160h")), spec
    volumes = {v["name"]: v for v in pod["volumes"]}
    for name, key in (("MRS_TLS_CERT", "tls.crt"), ("MRS_TLS_KEY", "tls.key")):
        m = _mount_of(c, env[name])
        assert env[name] == m["mountPath"].rstrip("/") + "/" + key, (name, env[name], key)
        assert volumes[m["name"]]["secret"]["secretName"] == spec["secretName"], \
            f"{name} is read from {volumes[m['name']]}, the Certificate writes {spec['secretName']}"
    # No Secret mounted with subPath: such a mount never receives an update,
    # so neither a renewed certificate nor a changed users file would arrive.
    secret_vols = {n for n, v in volumes.items() if "secret" in v}
    for m in c["volumeMounts"]:
        if m["name"] in secret_vols:
            assert "subPath" not in m and "subPathExpr" not in m, f"{m['mountPath']}: subPath never updates"
    assert duration_s(env.get("MRS_RELOAD_INTERVAL", "10s")) > 0, "MRS_RELOAD_INTERVAL=0 reloads only on SIGHUP"


def _kubelet_secret_dir(root, files):
    """A Secret volume as the kubelet writes it: the files in a timestamped
    directory, ..data a symlink to it, each name a symlink into ..data."""
    stamp = os.path.join(root, "..2026_01_01_00_00_00.000000001")
    os.makedirs(stamp)
    for name, data in files.items():
        with open(os.path.join(stamp, name), "wb") as f:
            f.write(data)
    os.symlink(os.path.basename(stamp), os.path.join(root, "..data"))
    for name in files:
        os.symlink(os.path.join("..data", name), os.path.join(root, name))


def test_kubernetes_certificate_secret_is_served(h):
    """What the Certificate produces (an ECDSA P-256 key in cert-manager's
    encoding, tls.crt/tls.key/ca.crt in a kubelet Secret directory) loads
    with the StatefulSet's MRS_TLS_* paths: the relay is ready, serves that
    certificate and reports its notAfter in the expiry gauge."""
    docs = _k8s_docs()
    cert = _one(docs, "Certificate")
    _, _, c, env = _sts_container(docs)
    d = os.path.join(h.tmp, "cert-manager")
    os.makedirs(d)
    key, crt = os.path.join(d, "key.pem"), os.path.join(d, "crt.pem")
    # cert-manager's default encoding (PKCS1) is SEC1 for an EC key.
    encoding = cert["spec"]["privateKey"].get("encoding", "PKCS1")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                   check=True, capture_output=True)
    if encoding == "PKCS8":
        subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", key, "-out", key + ".p8"],
                       check=True, capture_output=True)
        os.replace(key + ".p8", key)
    name = env["MRS_HOSTNAME"]
    subprocess.run(["openssl", "req", "-x509", "-key", key, "-out", crt, "-days", "90", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    with open(key, "rb") as f:
        key_pem = f.read()
    with open(crt, "rb") as f:
        crt_pem = f.read()
    assert (b"BEGIN EC PRIVATE KEY" if encoding == "PKCS1" else b"BEGIN PRIVATE KEY") in key_pem
    mount = _mount_of(c, env["MRS_TLS_CERT"])["mountPath"].rstrip("/")
    secret = os.path.join(h.tmp, "secret-tls")
    os.makedirs(secret)
    _kubelet_secret_dir(secret, {"tls.crt": crt_pem, "tls.key": key_pem, "ca.crt": crt_pem})
    rebased = {n: secret + env[n][len(mount):] for n in ("MRS_TLS_CERT", "MRS_TLS_KEY")}
    m = h.mrs(env=dict(rebased, MRS_HOSTNAME=name, MRS_RELOAD_INTERVAL=env.get("MRS_RELOAD_INTERVAL", "10s")))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", m.submissions_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            served = tls.getpeercert(binary_form=True)
    assert served == ssl.PEM_cert_to_DER_cert(crt_pem.decode()), "the relay serves another certificate"
    end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", crt], check=True,
                         capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    _, metrics = m.http("GET", "/metrics")
    gauge = re.search(r"^mrs_tls_certificate_expiry_timestamp_seconds (\S+)$", metrics, re.M)
    assert gauge and int(float(gauge.group(1))) == int(ssl.cert_time_to_seconds(end)), (gauge, end)
    m.stop()


def _np_port(cports, p):
    port = p["port"]
    if isinstance(port, str):
        assert port in cports, f"NetworkPolicy names port {port!r}, the container has {sorted(cports)}"
        return cports[port]
    return port


def test_kubernetes_networkpolicy_matches_ports(h):
    """SMTP ports open to all, the health port only to the monitoring
    namespace, and out only DNS and SMTP: the ports are the container's
    (and the listeners'), and the delivery port is MRS_DELIVERY_PORT."""
    docs = _k8s_docs()
    np = _one(docs, "NetworkPolicy")
    sts, _, c, env = _sts_container(docs)
    assert _matches(np["spec"]["podSelector"]["matchLabels"], sts["spec"]["template"]["metadata"]["labels"])
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}, np["spec"]["policyTypes"]
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for pname, var in (("submission", "MRS_SUBMISSION_LISTEN"), ("submissions", "MRS_SUBMISSIONS_LISTEN"),
                       ("health", "MRS_HEALTH_LISTEN")):
        assert cports[pname] == listen_port(effective(env, var)), (pname, cports)
    everyone, by_peer = set(), []
    for rule in np["spec"]["ingress"]:
        assert rule.get("ports"), "an ingress rule without ports opens every port"
        ports = {(_np_port(cports, p), p.get("protocol", "TCP")) for p in rule["ports"]}
        if rule.get("from"):
            by_peer.append((rule["from"], ports))
        else:
            everyone |= ports
    smtp = {(cports["submission"], "TCP"), (cports["submissions"], "TCP")}
    health = (cports["health"], "TCP")
    assert everyone == smtp, f"open to all: {everyone}, want the SMTP ports {smtp}"
    peers = [peers for peers, ports in by_peer if health in ports]
    assert peers == [[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]], \
        f"the health port must be open to the monitoring namespace only: {peers}"
    reachable = everyone | {p for _, ports in by_peer for p in ports}
    assert reachable == {(p, "TCP") for p in cports.values()}, (reachable, cports)
    out = set()
    for rule in np["spec"]["egress"]:
        assert rule.get("ports"), "an egress rule without ports opens every port"
        out |= {(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]}
    want = {(53, "UDP"), (53, "TCP"), (int(effective(env, "MRS_DELIVERY_PORT")), "TCP"), (587, "TCP"),
            (465, "TCP")}
    for server in (env.get("MRS_DNS_SERVERS") or "").split(","):
        m = re.search(r"\]:(\d+)$|^[^:\[\]]+:(\d+)$", server.strip())
        if m:
            want |= {(int(m.group(1) or m.group(2)), "UDP"), (int(m.group(1) or m.group(2)), "TCP")}
    if env.get("MRS_SMARTHOST"):
        want.add((int(env["MRS_SMARTHOST"].rsplit(":", 1)[1]), "TCP"))
    assert out == want, f"egress {sorted(out)}, the relay needs {sorted(want)}"


def test_readme_says_what_is_per_pod(h):
    """Issue 15 part 8: the README's section on several replicas names each
    piece of per-pod state, what a per-user limit becomes over R replicas,
    and a shared-store proposal; every MRS_* it names is a real variable."""
    with open(os.path.join(TOP, "README.md")) as f:
        readme = f.read()
    m = re.search(r"^### Running several replicas\n(.*?)(?=^##)", readme, re.M | re.S)
    assert m, "README has no '### Running several replicas' section"
    sec = m.group(1)
    for must in ("spool", "MRS_RATE_LIMIT", "R×N/h", "AUTH throttles", "MRS_MAX_CONNECTIONS_PER_CLIENT",
                 "DNS cache", "verify cache", "Proposal", "Redis", "Kubernetes API"):
        assert must in sec, f"the replicas section does not mention {must!r}"
    assert "configs/prometheus" in readme and "Alerts and dashboard" in readme
    ok = accepted()
    for name in re.findall(r"\bMRS_[A-Z0-9_]*[A-Z0-9]\b", sec):
        assert name in ok, f"README's replicas section names {name}, which the binary does not read"


# --- Dockerfile and .dockerignore -------------------------------------------

def _dockerfile_stages():
    """[(from-line, [(INSTRUCTION, args)])] with continuations joined."""
    with open(DOCKERFILE) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            stages.append((args.strip(), []))
        elif stages:
            stages[-1][1].append((instr, args.strip()))
    return stages


def test_dockerfile_matches_binary(h):
    stages = _dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build expected"
    builder, final = stages[0], stages[-1]
    assert re.match(r"(docker\.io/library/)?debian:trixie-slim\b", builder[0]), builder[0]
    assert any(i == "RUN" and "./build.sh" in a for i, a in builder[1]), "the builder does not run ./build.sh"
    assert final[0] == "scratch", final[0]
    last = {}
    for instr, args in final[1]:
        last[instr] = args
    assert json.loads(last["ENTRYPOINT"]) == ["/mrs"], last["ENTRYPOINT"]
    assert json.loads(last["CMD"]) == ["serve"], last["CMD"]
    assert last["USER"] == "65534:65534", last["USER"]
    hc = re.fullmatch(r"(?:--\S+\s+)*CMD\s+(\[.*\])", last["HEALTHCHECK"])
    assert hc and json.loads(hc.group(1)) == ["/mrs", "healthcheck"], last["HEALTHCHECK"]
    env = {}
    for instr, args in final[1]:
        if instr == "ENV":
            env.update(dict(kv.split("=", 1) for kv in args.split()))
    assert_config_accepted(h, env, "Dockerfile ENV")
    exposed = {int(p.split("/")[0]) for i, a in final[1] if i == "EXPOSE" for p in a.split()}
    listen = {listen_port(effective(env, n)) for n in
              ("MRS_SUBMISSION_LISTEN", "MRS_SUBMISSIONS_LISTEN", "MRS_HEALTH_LISTEN")}
    assert exposed == listen == {587, 465, 8080}, (exposed, listen)
    volumes = [v for i, a in final[1] if i == "VOLUME" for v in json.loads(a)]
    assert effective(env, "MRS_SPOOL_DIR") in volumes, volumes
    copies = " ".join(a for i, a in final[1] if i == "COPY")
    assert "/etc/ssl/certs" in " ".join(a for i, a in builder[1] if i == "RUN") and "--from=" in copies


def _docker_ignored(patterns, path):
    """Docker's .dockerignore rule: the last pattern that matches the path or
    one of its parent directories decides; ! re-includes."""
    ignored = False
    parts = path.split("/")
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        if any(fnmatch.fnmatchcase("/".join(parts[:i]), p) for i in range(1, len(parts) + 1)):
            ignored = not neg
    return ignored


def test_dockerignore_keeps_context_small(h):
    with open(os.path.join(TOP, ".dockerignore")) as f:
        pats = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    for p in ("build/mrs", ".deps/musl/lib/libmbedtls.a", "var/spool/x", ".git/HEAD", "test/run-all.sh"):
        assert _docker_ignored(pats, p), f"{p} would be in the build context"
    for p in ("build.sh", "Makefile", "VERSION", "src/main.c", "src/config.c", "vendor/pins",
              "vendor/mbedtls_config.h"):
        assert not _docker_ignored(pats, p), f"{p} would be missing from the build context"


# --- the probes against the running binary ----------------------------------

def test_probe_paths_are_served_on_the_health_port(h):
    """The probe paths the manifests use answer on MRS_HEALTH_LISTEN of a
    running mrs: liveness 200, readiness 200 or 503 (never 404), and the
    image's HEALTHCHECK command (`mrs healthcheck`, no argument) exits 0
    with the same environment."""
    docs = _k8s_docs()
    sts = _one(docs, "StatefulSet")
    (c,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "mrs"]
    probes = {name: c[name]["httpGet"]["path"] for name in ("livenessProbe", "readinessProbe", "startupProbe")
              if name in c}
    m = h.mrs(start=False)
    m.start(wait=False)
    deadline = time.time() + 15
    code = None
    while time.time() < deadline:
        assert m.proc.alive(), "mrs exited:\n" + m.log()[-2000:]
        try:
            code, _ = m.http("GET", probes["livenessProbe"], timeout=1)
            if code == 200:
                break
        except OSError:
            pass
        time.sleep(0.05)
    assert code == 200, f"liveness {probes['livenessProbe']} answered {code}"
    for name, path in probes.items():
        code, body = m.http("GET", path)
        want = (200,) if name != "readinessProbe" else (200, 503)
        assert code in want, f"{name} {path}: {code} {body!r}"
    hc = _load_yaml(COMPOSE)[0]["services"]["mrs"]["healthcheck"]["test"]
    assert hc[0] == "CMD" and hc[1] == "/mrs"
    r = h.run([h.mrs_bin] + hc[2:], env={"MRS_HEALTH_LISTEN": m.env["MRS_HEALTH_LISTEN"]}, timeout=20)
    assert r.returncode == 0, f"{hc[1:]} exit {r.returncode}: {r.stderr}"
    code, _ = m.http("GET", "/no-such-probe")
    assert code == 404, "unknown paths must be 404, or this test proves nothing"
    m.stop()
