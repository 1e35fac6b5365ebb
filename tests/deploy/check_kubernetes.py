#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests in deploy/kubernetes (no cluster, no API server).

usage: check_kubernetes.py CHAINRL [--manifests DIR] [--no-smoke] [--keep]

Checks, in order (each line of the output says what was checked, and the end says what was not):
  1. every YAML document parses; apiVersion/kind pairs are known stable kinds; names are valid;
     no manifest names a namespace; required fields of each kind (see check_* below);
  2. cross references: selectors match template labels, Services select some pod template and
     their ports reach container ports, StatefulSet serviceName is a headless Service, volume
     mounts name defined volumes, ConfigMaps/Secrets/PVCs referenced exist in the manifests
     (with the keys used), kustomization.yaml lists every manifest but the Secret templates;
  3. every `chainrl` command in a container (the shell script of `sh -c`, after the kubelet's
     $(VAR) expansion): the subcommand exists and each --flag is in `CHAINRL SUB --help`;
  4. every --set KEY=VALUE with `chainrl config show RUN.toml --set ...`, RUN.toml being the
     ConfigMap's TOML written to a temporary directory; then, on the resolved config: learner
     ports = learner.bind's PORT..PORT+2, actors connect to a Service that reaches rank 0 there,
     key files come from Secret volumes of mode 0400/0600 without fsGroup, metrics.bind port =
     container port = Prometheus annotation, the run directory is on the PersistentVolumeClaim
     and the learner resumes with --resume latest, data-parallel variables agree with the
     StatefulSet, init-model writes model.path with the config's [model.init];
  5. README.md's key commands, run in a temporary directory (`chainrl keys`, and
     `kubectl create secret generic --dry-run=client -o yaml` when kubectl is installed), make
     Secrets with the names and keys the manifests mount;
  6. kubectl, when installed: `kubectl kustomize` builds the directory, and workloads and Services
     decode into Kubernetes' Go types (`kubectl set env/selector --local`) without losing fields;
  7. smoke (unless --no-smoke): the learner and actor pods simulated as processes on this host,
     with the manifests' commands, volumes (paths mapped to temporary directories), environment
     and the keys from step 5: one training step, the probes, a restart that resumes.

Exit 0 when everything checked passed, 1 when a check failed, 77 (skipped) when python3-yaml or
the chainrl binary is missing.
"""

import argparse
import base64
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import yaml
except ImportError:  # python3-yaml (Debian) is what this check needs beyond the standard library
    if os.environ.get("CI") == "true":  # setup.sh installs it: missing in CI is a failure
        print("FAIL: python3-yaml is not installed (scripts/setup.sh installs it)")
        sys.exit(1)
    print("SKIP: python3-yaml is not installed (apt-get install python3-yaml)")
    sys.exit(77)
try:
    import tomllib
except ImportError:
    tomllib = None

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# apiVersion/kind pairs of stable (GA) Kubernetes kinds that a deployment like this may use.
KNOWN_KINDS = {
    ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "PersistentVolumeClaim"),
    ("v1", "Namespace"), ("v1", "ServiceAccount"), ("v1", "Pod"), ("v1", "LimitRange"),
    ("v1", "ResourceQuota"),
    ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"), ("batch/v1", "CronJob"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("networking.k8s.io/v1", "Ingress"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
}
KUSTOMIZATION = ("kustomize.config.k8s.io/v1beta1", "Kustomization")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
SHELLS = {"sh", "bash", "dash"}
SHELL_WORDS = {"exec", "if", "then", "else", "elif", "do", "while", "until", "!", "{", "command"}
SEPARATORS = {";", "&", "&&", "|", "||", "(", ")", ";;"}
FIELD_PATHS = {"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
               "spec.serviceAccountName", "status.hostIP", "status.podIP", "status.podIPs"}

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
SUFFIX = {None: 1, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
          "P": 1e15, "E": 1e18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
          "Pi": 2**50, "Ei": 2**60}


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.not_checked = []

    def ok(self, what):
        self.passed += 1
        print("ok:   " + what)

    def fail(self, what):
        self.failed += 1
        print("FAIL: " + what)

    def check(self, cond, what, why=""):
        if cond:
            self.ok(what)
        else:
            self.fail(what + (": " + why if why else ""))
        return cond

    def skip(self, what):
        self.not_checked.append(what)


R = Report()


# ---- small helpers --------------------------------------------------------------------------

def quantity(q):
    """A Kubernetes quantity ("500m", "4Gi", 2) as a float; None when malformed."""
    m = QUANTITY.match(str(q))
    if not m:
        return None
    v = float(m.group(1))
    s = m.group(2)
    if s and s[0] in "eE":
        return v * 10 ** int(s[1:])
    return v * SUFFIX[s]


def valid_label_key(k):
    if "/" in k:
        prefix, name = k.split("/", 1)
        return len(prefix) <= 253 and bool(DNS1123_SUBDOMAIN.match(prefix)) and \
            len(name) <= 63 and bool(LABEL_NAME.match(name))
    return len(k) <= 63 and bool(LABEL_NAME.match(k))


def valid_port_name(n):
    return (isinstance(n, str) and len(n) <= 15 and bool(IANA_SVC_NAME.match(n))
            and "--" not in n and re.search("[a-z]", n) is not None)


def kubelet_expand(s, env):
    """The kubelet's $(VAR) expansion of command, args and env values: $$ is $, $(NAME) of a
    defined variable is its value, anything else stays as it is."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "$" and i + 1 < len(s):
            if s[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            if s[i + 1] == "(":
                j = s.find(")", i + 2)
                if j < 0:
                    out.append(s[i:])
                    break
                name = s[i + 2:j]
                out.append(env[name] if name in env else s[i:j + 1])
                i = j + 1
                continue
        out.append(s[i])
        i += 1
    return "".join(out)


def shell_commands(script):
    """Simple commands of a POSIX shell script as token lists (enough for the scripts here:
    continuations joined, comments dropped, split at ; & | ( ) and newlines)."""
    cmds = []
    for line in script.replace("\\\n", " ").split("\n"):
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lex.whitespace_split = True
        cur = []
        for tok in lex:
            if tok in SEPARATORS:
                if cur:
                    cmds.append(cur)
                cur = []
            else:
                cur.append(tok)
        if cur:
            cmds.append(cur)
    return cmds


def chainrl_invocations(cmds):
    """The argument lists (after the program) of the chainrl commands among `cmds`."""
    found = []
    for c in cmds:
        i = 0
        while i < len(c) and (c[i] in SHELL_WORDS or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", c[i])):
            i += 1
        if i < len(c) and os.path.basename(c[i]) == "chainrl":
            found.append(c[i + 1:])
    return found


def run(argv, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(argv, **kw)


def free_port_block(n):
    """A base port with `n` consecutive free TCP ports on 127.0.0.1."""
    for _ in range(200):
        base = 20000 + int.from_bytes(os.urandom(2), "little") % 30000
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


# ---- the manifests --------------------------------------------------------------------------

class Manifests:
    def __init__(self, root):
        self.root = root
        self.docs = []            # (file, document)
        self.kustomization = None
        self.files = sorted(f for f in os.listdir(root) if f.endswith((".yaml", ".yml")))

    def of_kind(self, kind):
        return [d for _, d in self.docs if d.get("kind") == kind]

    def named(self, kind, name):
        for d in self.of_kind(kind):
            if d["metadata"].get("name") == name:
                return d
        return None

    def pod_templates(self):
        """(workload, pod template) pairs."""
        out = []
        for _, d in self.docs:
            if d.get("kind") in WORKLOADS:
                t = d.get("spec", {}).get("template") or {}
                out.append((d, t))
            elif d.get("kind") == "Pod":
                out.append((d, d))
        return out


def load(m):
    for f in m.files:
        path = os.path.join(m.root, f)
        try:
            with open(path) as fh:
                docs = [d for d in yaml.safe_load_all(fh) if d is not None]
        except yaml.YAMLError as e:
            R.fail("%s parses as YAML: %s" % (f, e))
            continue
        R.ok("%s parses as YAML (%d documents)" % (f, len(docs)))
        for d in docs:
            if not isinstance(d, dict):
                R.fail("%s: a document is a %s, not a mapping" % (f, type(d).__name__))
                continue
            pair = (d.get("apiVersion"), d.get("kind"))
            if pair == KUSTOMIZATION:
                m.kustomization = (f, d)
                continue
            name = (d.get("metadata") or {}).get("name")
            what = "%s %s/%s" % (f, pair[1], name)
            R.check(pair in KNOWN_KINDS, "%s: apiVersion %s with kind %s is a known stable kind"
                    % (what, pair[0], pair[1]))
            if not isinstance(d.get("metadata"), dict) or not name:
                R.fail("%s: metadata.name is set" % what)
                continue
            m.docs.append((f, d))
    seen = {}
    for f, d in m.docs:
        key = (d["kind"], d["metadata"]["name"])
        if key in seen:
            R.fail("%s/%s is defined once (also in %s)" % (key[0], key[1], seen[key]))
        seen[key] = f
    R.check(len(seen) == len(m.docs), "every kind/name is defined once (%d objects)" % len(m.docs))


def check_metadata(f, d):
    md = d["metadata"]
    name, kind = md["name"], d["kind"]
    what = "%s %s/%s" % (f, kind, name)
    if kind == "Service":
        R.check(len(name) <= 63 and DNS1035_LABEL.match(name),
                "%s: name is a DNS-1035 label" % what)
    elif kind == "StatefulSet":
        R.check(len(name) <= 52 and DNS1123_LABEL.match(name),
                "%s: name is a DNS-1123 label short enough for NAME-ORDINAL pods" % what)
    else:
        R.check(len(name) <= 253 and DNS1123_SUBDOMAIN.match(name),
                "%s: name is a DNS-1123 subdomain" % what)
    R.check("namespace" not in md, "%s: names no namespace (the set is namespace-agnostic)" % what)
    for where, labels in (("metadata.labels", md.get("labels") or {}),):
        bad = [k for k, v in labels.items() if not valid_label_key(k) or
               not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v)]
        R.check(not bad, "%s: %s are valid label keys and string values" % (what, where),
                "bad: %s" % bad)
    for k, v in (md.get("annotations") or {}).items():
        if not isinstance(v, str):
            R.fail("%s: annotation %s is a string (quote it)" % (what, k))


def check_configmap(f, d):
    what = "%s ConfigMap/%s" % (f, d["metadata"]["name"])
    data = d.get("data") or {}
    R.check(data and all(DATA_KEY.match(k) and isinstance(v, str) for k, v in data.items()),
            "%s: data has valid keys and string values" % what)


def secret_keys(d):
    keys = {}
    for k, v in (d.get("stringData") or {}).items():
        keys[k] = v
    for k, v in (d.get("data") or {}).items():
        try:
            keys[k] = base64.b64decode(v, validate=True).decode("utf-8", "replace")
        except Exception:
            R.fail("Secret/%s: data.%s is base64" % (d["metadata"]["name"], k))
    return keys


def check_secret(f, d):
    what = "%s Secret/%s" % (f, d["metadata"]["name"])
    keys = secret_keys(d)
    R.check(keys and all(DATA_KEY.match(k) for k in keys),
            "%s: data/stringData has valid keys (%s)" % (what, ", ".join(sorted(keys))))
    R.check(d.get("type", "Opaque") == "Opaque", "%s: type Opaque" % what)


def check_pvc(f, d):
    what = "%s PersistentVolumeClaim/%s" % (f, d["metadata"]["name"])
    spec = d.get("spec") or {}
    modes = spec.get("accessModes") or []
    R.check(modes and set(modes) <= {"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany",
                                     "ReadWriteOncePod"}, "%s: accessModes are valid" % what)
    st = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    R.check(st is not None and quantity(st), "%s: resources.requests.storage is a quantity" % what)


def template_labels_for(m, selector):
    """Pod templates whose labels include `selector`. The StatefulSet controller adds
    statefulset.kubernetes.io/pod-name = NAME-ORDINAL (ordinal < replicas) to its pods."""
    out = []
    for w, t in m.pod_templates():
        labels = dict((t.get("metadata") or {}).get("labels") or {})
        sel = dict(selector)
        podname = sel.pop("statefulset.kubernetes.io/pod-name", None)
        if podname is not None:
            if w["kind"] != "StatefulSet":
                continue
            base = w["metadata"]["name"] + "-"
            ordinal = podname[len(base):] if podname.startswith(base) else ""
            if not ordinal.isdigit() or int(ordinal) >= int(w["spec"].get("replicas", 1)):
                continue
        if all(labels.get(k) == v for k, v in sel.items()):
            out.append((w, t))
    return out


def container_ports(t):
    ports = []
    spec = t.get("spec") or {}
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            ports.append((c["name"], p.get("name"), p.get("containerPort"),
                          p.get("protocol", "TCP")))
    return ports


def check_service(m, f, d):
    name = d["metadata"]["name"]
    what = "%s Service/%s" % (f, name)
    spec = d.get("spec") or {}
    ports = spec.get("ports") or []
    R.check(ports, "%s: has ports" % what)
    names = [p.get("name") for p in ports]
    R.check(len(ports) <= 1 or (all(names) and len(set(names)) == len(names)),
            "%s: ports are named, names unique" % what)
    R.check(all(n is None or valid_port_name(n) for n in names),
            "%s: port names are IANA service names (<= 15 characters)" % what)
    nums = [(p.get("port"), p.get("protocol", "TCP")) for p in ports]
    R.check(all(isinstance(n, int) and 0 < n < 65536 for n, _ in nums) and
            len(set(nums)) == len(nums), "%s: port numbers valid and unique" % what)
    R.check(spec.get("type", "ClusterIP") in ("ClusterIP", "NodePort", "LoadBalancer"),
            "%s: type %s" % (what, spec.get("type", "ClusterIP")))
    sel = spec.get("selector") or {}
    if not sel:
        R.fail("%s: has a selector" % what)
        return
    matched = template_labels_for(m, sel)
    R.check(matched, "%s: selector %s matches a pod template" % (what, sel))
    for w, t in matched:
        cports = container_ports(t)
        for p in ports:
            tp = p.get("targetPort", p.get("port"))
            hit = [c for c in cports if (c[1] == tp if isinstance(tp, str) else c[2] == tp)
                   and c[3] == p.get("protocol", "TCP")]
            R.check(hit, "%s: port %s (targetPort %s) is a container port of %s/%s"
                    % (what, p.get("name"), tp, w["kind"], w["metadata"]["name"]))


def check_probe(what, probe, c):
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in probe]
    R.check(len(handlers) == 1, "%s: exactly one handler (%s)" % (what, ", ".join(handlers)))
    names = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    numbers = set(names.values())
    for h in ("httpGet", "tcpSocket", "grpc"):
        if h in probe:
            port = probe[h].get("port")
            R.check(port in names if isinstance(port, str) else port in numbers,
                    "%s: %s port %s is a port of the container" % (what, h, port))
    if "exec" in probe:
        R.check(probe["exec"].get("command"), "%s: exec command is set" % what)


def check_pod_spec(m, f, w, t):
    wname = "%s %s/%s" % (f, w["kind"], w["metadata"]["name"])
    spec = t.get("spec") or {}
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    R.check(len(volumes) == len(spec.get("volumes") or []), "%s: volume names unique" % wname)
    all_containers = [("initContainers", c) for c in spec.get("initContainers") or []] + \
        [("containers", c) for c in spec.get("containers") or []]
    R.check(spec.get("containers"), "%s: has containers" % wname)
    cnames = [c.get("name") for _, c in all_containers]
    R.check(all(n and DNS1123_LABEL.match(n) for n in cnames) and len(set(cnames)) == len(cnames),
            "%s: container names are unique DNS labels (%s)" % (wname, ", ".join(map(str, cnames))))
    used = set()
    pod_ports = []
    for kind, c in all_containers:
        what = "%s container %s" % (wname, c.get("name"))
        R.check(c.get("image"), "%s: has an image (%s)" % (what, c.get("image")))
        R.check(c.get("command") or c.get("args"), "%s: has a command or args" % what)
        for p in c.get("ports") or []:
            pod_ports.append((p.get("containerPort"), p.get("protocol", "TCP"), p.get("name")))
            R.check(isinstance(p.get("containerPort"), int) and 0 < p["containerPort"] < 65536,
                    "%s: port %s is a number" % (what, p.get("name")))
            R.check(p.get("name") is None or valid_port_name(p.get("name")),
                    "%s: port name %s is an IANA service name" % (what, p.get("name")))
        mounts = c.get("volumeMounts") or []
        for vm in mounts:
            used.add(vm.get("name"))
            R.check(vm.get("name") in volumes, "%s: mount %s refers to a defined volume"
                    % (what, vm.get("name")))
        paths = [vm.get("mountPath") for vm in mounts]
        R.check(len(set(paths)) == len(paths) and all(p and p.startswith("/") for p in paths),
                "%s: mount paths absolute and unique" % what)
        env = c.get("env") or []
        enames = [e.get("name") for e in env]
        R.check(all(n and ENV_NAME.match(n) for n in enames) and len(set(enames)) == len(enames),
                "%s: env names valid and unique" % what)
        for e in env:
            vf = e.get("valueFrom")
            if vf is None:
                R.check(isinstance(e.get("value", ""), str),
                        "%s: env %s value is a string (quote numbers)" % (what, e.get("name")))
                continue
            if "fieldRef" in vf:
                R.check(vf["fieldRef"].get("fieldPath") in FIELD_PATHS or
                        re.match(r"^metadata\.(labels|annotations)\['[^']+'\]$",
                                 vf["fieldRef"].get("fieldPath", "")),
                        "%s: env %s fieldRef %s is a downward-API field"
                        % (what, e["name"], vf["fieldRef"].get("fieldPath")))
            if "resourceFieldRef" in vf:
                rf = vf["resourceFieldRef"]
                target = next((x for _, x in all_containers
                               if x.get("name") == rf.get("containerName", c.get("name"))), None)
                res = rf.get("resource", "")
                part, _, rname = res.partition(".")
                have = ((target or {}).get("resources") or {}).get(part, {}) or {}
                R.check(target is not None and rname in have,
                        "%s: env %s resourceFieldRef %s of container %s is set there"
                        % (what, e["name"], res, rf.get("containerName")))
            for ref in ("configMapKeyRef", "secretKeyRef"):
                if ref in vf:
                    kind = "ConfigMap" if ref == "configMapKeyRef" else "Secret"
                    obj = m.named(kind, vf[ref].get("name"))
                    keys = (obj or {}).get("data") or {}
                    if kind == "Secret" and obj:
                        keys = secret_keys(obj)
                    R.check(obj is not None and vf[ref].get("key") in keys,
                            "%s: env %s %s %s/%s exists" % (what, e["name"], ref, kind,
                                                            vf[ref].get("name")))
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        R.check(req and lim, "%s: has resource requests and limits" % what)
        for k, v in list(req.items()) + list(lim.items()):
            if quantity(v) is None:
                R.fail("%s: resource %s = %r is a quantity" % (what, k, v))
        for k in set(req) & set(lim):
            R.check(quantity(req[k]) <= quantity(lim[k]),
                    "%s: request %s <= limit" % (what, k))
        if kind == "containers":
            for pname in ("startupProbe", "readinessProbe", "livenessProbe"):
                if pname in c:
                    check_probe("%s %s" % (what, pname), c[pname], c)
    keyset = [(p, proto) for p, proto, _ in pod_ports]
    R.check(len(set(keyset)) == len(keyset), "%s: container ports unique in the pod" % wname)
    pnames = [n for _, _, n in pod_ports if n]
    R.check(len(set(pnames)) == len(pnames), "%s: port names unique in the pod" % wname)
    unused = set(volumes) - used
    R.check(not unused, "%s: every volume is mounted" % wname, "unused: %s" % sorted(unused))
    for vname, v in volumes.items():
        what = "%s volume %s" % (wname, vname)
        if "configMap" in v:
            obj = m.named("ConfigMap", v["configMap"].get("name"))
            R.check(obj is not None, "%s: ConfigMap %s is defined in the manifests"
                    % (what, v["configMap"].get("name")))
            for it in v["configMap"].get("items") or []:
                R.check(obj and it.get("key") in (obj.get("data") or {}),
                        "%s: item %s is a key of the ConfigMap" % (what, it.get("key")))
        if "secret" in v:
            obj = m.named("Secret", v["secret"].get("secretName"))
            R.check(obj is not None, "%s: Secret %s is defined in the manifests (template)"
                    % (what, v["secret"].get("secretName")))
            for it in v["secret"].get("items") or []:
                R.check(obj and it.get("key") in secret_keys(obj),
                        "%s: item %s is a key of the Secret" % (what, it.get("key")))
        if "persistentVolumeClaim" in v:
            R.check(m.named("PersistentVolumeClaim", v["persistentVolumeClaim"].get("claimName")),
                    "%s: PersistentVolumeClaim %s is defined in the manifests"
                    % (what, v["persistentVolumeClaim"].get("claimName")))
        for src in ("configMap", "secret"):
            mode = (v.get(src) or {}).get("defaultMode")
            if mode is not None:
                R.check(isinstance(mode, int) and 0 <= mode <= 0o777,
                        "%s: defaultMode %s is a mode (0..0777)" % (what, mode))


def check_workload(m, f, d):
    what = "%s %s/%s" % (f, d["kind"], d["metadata"]["name"])
    spec = d.get("spec") or {}
    t = spec.get("template") or {}
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = (t.get("metadata") or {}).get("labels") or {}
    R.check(sel and all(labels.get(k) == v for k, v in sel.items()),
            "%s: spec.selector.matchLabels %s match the template's labels" % (what, sel))
    R.check(all(valid_label_key(k) and isinstance(v, str) and LABEL_VALUE.match(v)
                for k, v in labels.items()), "%s: template labels valid" % what)
    if d["kind"] in ("Deployment", "StatefulSet"):
        R.check(isinstance(spec.get("replicas", 1), int) and spec.get("replicas", 1) >= 0,
                "%s: replicas is a number" % what)
    if d["kind"] == "StatefulSet":
        svc = m.named("Service", spec.get("serviceName"))
        R.check(svc is not None and (svc.get("spec") or {}).get("clusterIP") == "None",
                "%s: serviceName %s names a headless Service" % (what, spec.get("serviceName")))
        if svc is not None:
            ssel = (svc.get("spec") or {}).get("selector") or {}
            R.check(all(labels.get(k) == v for k, v in ssel.items()),
                    "%s: the headless Service selects its pods" % what)
        R.check(spec.get("podManagementPolicy", "OrderedReady") in ("OrderedReady", "Parallel"),
                "%s: podManagementPolicy valid" % what)
    for k, v in ((t.get("metadata") or {}).get("annotations") or {}).items():
        R.check(isinstance(v, str), "%s: template annotation %s is a string" % (what, k))
    check_pod_spec(m, f, d, t)


def check_kustomization(m):
    if m.kustomization is None:
        R.skip("kustomization.yaml (there is none)")
        return
    f, k = m.kustomization
    res = k.get("resources") or []
    R.check(all(os.path.exists(os.path.join(m.root, r)) for r in res),
            "%s: every resource exists (%s)" % (f, ", ".join(res)))
    manifests = [x for x in m.files if x != f and ".example." not in x]
    R.check(sorted(res) == sorted(manifests),
            "%s lists every manifest except the *.example.yaml templates" % f,
            "listed %s, manifests %s" % (sorted(res), sorted(manifests)))
    R.check(not any(".example." in r for r in res),
            "%s leaves out the Secret templates (placeholders never replace real keys)" % f)


# ---- containers and their chainrl commands --------------------------------------------------

class Help:
    def __init__(self, binary):
        self.binary = binary
        self.cache = {}

    def top(self):
        if None not in self.cache:
            p = run([self.binary, "--help"])
            self.cache[None] = (p.returncode, p.stdout)
        return self.cache[None]

    def sub(self, name):
        if name not in self.cache:
            p = run([self.binary, name, "--help"])
            self.cache[name] = (p.returncode, p.stdout)
        return self.cache[name]

    def flags(self, name):
        """{--flag: takes a value} from `chainrl SUB --help`."""
        _, text = self.sub(name)
        out = {}
        for line in text.splitlines():
            mm = re.match(r"^\s+(--[a-z0-9][a-z0-9-]*)(?:\s+([A-Z][A-Z|]*))?(\s{2,}|$)", line)
            if mm:
                out[mm.group(1)] = mm.group(2) is not None
        return out


class Invocation:
    """One `chainrl SUB ...` command of a container."""

    def __init__(self, workload, template, container, is_init, argv, env):
        self.workload = workload
        self.template = template
        self.container = container
        self.is_init = is_init
        self.argv = argv
        self.env = env
        self.sub = argv[0] if argv else None
        self.options = {}      # --flag -> [values]
        self.sets = []         # KEY=VALUE
        self.positionals = []

    @property
    def where(self):
        return "%s/%s container %s: chainrl %s" % (
            self.workload["kind"], self.workload["metadata"]["name"], self.container["name"],
            self.sub)

    def option(self, flag):
        v = self.options.get(flag)
        return v[-1] if v else None


def pod_name(w, ordinal=0):
    """A name the workload's controller gives a pod: NAME-ORDINAL for a StatefulSet,
    NAME-HASH-SUFFIX for a Deployment."""
    if w["kind"] == "StatefulSet":
        return "%s-%s" % (w["metadata"]["name"], ordinal)
    return "%s-7d4b9c6f5-x2k9%s" % (w["metadata"]["name"], ordinal)


def container_env(w, c, pod=None):
    """The container's variables as the kubelet would give them (metadata.name is `pod`, by
    default pod_name(w); other downward-API fields are made up)."""
    pod = pod or pod_name(w)
    env = {}
    for e in c.get("env") or []:
        vf = e.get("valueFrom")
        if vf is None:
            env[e["name"]] = kubelet_expand(str(e.get("value", "")), env)
        elif "fieldRef" in vf:
            env[e["name"]] = pod if vf["fieldRef"].get("fieldPath") == "metadata.name" else "x"
        elif "resourceFieldRef" in vf:
            rf = vf["resourceFieldRef"]
            part, _, rname = rf.get("resource", "").partition(".")
            conts = (w["spec"]["template"]["spec"].get("containers") or []) + \
                (w["spec"]["template"]["spec"].get("initContainers") or [])
            tc = next((x for x in conts if x["name"] == rf.get("containerName", c["name"])), c)
            q = quantity(((tc.get("resources") or {}).get(part) or {}).get(rname, 0)) or 0
            env[e["name"]] = str(max(1, math.ceil(q / (quantity(rf.get("divisor", "1")) or 1))))
        else:
            env[e["name"]] = "x"
    return pod, env


def container_script(c, env):
    """(shell script or None, argv) of a container after the kubelet's expansion."""
    argv = [kubelet_expand(str(a), env) for a in (c.get("command") or []) + (c.get("args") or [])]
    if argv and os.path.basename(argv[0]) in SHELLS and "-c" in argv[1:3]:
        i = argv.index("-c")
        return (argv[i + 1] if i + 1 < len(argv) else ""), argv
    return None, argv


def collect_invocations(m, helper):
    invs = []
    for w, t in m.pod_templates():
        spec = t.get("spec") or {}
        for is_init, key in ((True, "initContainers"), (False, "containers")):
            for c in spec.get(key) or []:
                _, env = container_env(w, c)
                script, argv = container_script(c, env)
                what = "%s/%s container %s" % (w["kind"], w["metadata"]["name"], c["name"])
                if script is not None:
                    shell = shutil.which("dash") or shutil.which("sh")
                    p = run([shell, "-n", "-c", script])
                    R.check(p.returncode == 0, "%s: its sh -c script parses (%s -n)"
                            % (what, os.path.basename(shell)), p.stdout.strip())
                    try:
                        found = chainrl_invocations(shell_commands(script))
                    except ValueError as e:
                        R.fail("%s: script tokenises: %s" % (what, e))
                        found = []
                else:
                    found = chainrl_invocations([argv])
                for a in found:
                    invs.append(Invocation(w, t, c, is_init, a, env))
                if not is_init:
                    R.check(found, "%s runs chainrl" % what)
    for inv in invs:
        check_invocation(inv, helper)
    return invs


def check_invocation(inv, helper):
    rc, top = helper.top()
    if not inv.sub or inv.sub.startswith("-"):
        R.fail("%s: names a subcommand" % inv.where)
        return
    R.check(rc == 0 and re.search(r"^\s+%s\s" % re.escape(inv.sub), top, re.M),
            "%s: `chainrl --help` lists the subcommand" % inv.where)
    rc, _ = helper.sub(inv.sub)
    R.check(rc == 0, "%s: `chainrl %s --help` exits 0" % (inv.where, inv.sub))
    flags = helper.flags(inv.sub)
    args = inv.argv[1:]
    i, unknown, used = 0, [], []
    while i < len(args):
        a = args[i]
        if a.startswith("--") and len(a) > 2:
            flag, eq, val = a.partition("=")
            used.append(flag)
            if flag not in flags:
                unknown.append(flag)
                i += 1
                continue
            if flags[flag] and not eq:
                val = args[i + 1] if i + 1 < len(args) else None
                i += 1
            inv.options.setdefault(flag, []).append(val if flags[flag] else True)
            if flag == "--set":
                inv.sets.append(val)
        else:
            inv.positionals.append(a)
        i += 1
    R.check(not unknown, "%s: flags %s are in `chainrl %s --help`"
            % (inv.where, " ".join(sorted(set(used))) or "(none)", inv.sub),
            "unknown: %s" % " ".join(unknown))
    R.check(all(s and "=" in s for s in inv.sets), "%s: every --set is KEY=VALUE" % inv.where)


# ---- paths inside a pod ---------------------------------------------------------------------

def resolve_path(m, inv, path):
    """(volume, relative path, content or None) of `path` inside inv's container."""
    if not path.startswith("/"):
        path = os.path.normpath(os.path.join(inv.container.get("workingDir", "/"), path))
    spec = inv.template["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    best = None
    for vm in inv.container.get("volumeMounts") or []:
        mp = vm["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best[0]["mountPath"].rstrip("/")):
                best = (vm, path[len(mp):].lstrip("/"))
    if best is None:
        return None, None, None, None
    vm, rel = best
    v = volumes.get(vm["name"], {})
    content = None
    if "configMap" in v:
        obj = m.named("ConfigMap", v["configMap"].get("name")) or {}
        key = rel
        for it in v["configMap"].get("items") or []:
            if it.get("path") == rel:
                key = it.get("key")
        content = (obj.get("data") or {}).get(key)
    if "secret" in v:
        obj = m.named("Secret", v["secret"].get("secretName"))
        key = rel
        for it in v["secret"].get("items") or []:
            if it.get("path") == rel:
                key = it.get("key")
        content = secret_keys(obj).get(key) if obj else None
    return vm, v, rel, content


def run_config(m, inv):
    """The ConfigMap text of the invocation's RUN.toml, or None."""
    if not inv.positionals:
        R.fail("%s: names a RUN.toml" % inv.where)
        return None
    vm, v, rel, content = resolve_path(m, inv, inv.positionals[0])
    R.check(v is not None and "configMap" in v and content is not None,
            "%s: RUN.toml %s is a key of a mounted ConfigMap" % (inv.where, inv.positionals[0]))
    if vm is not None:
        R.check(vm.get("readOnly"), "%s: the config is mounted read-only" % inv.where)
    return content


def config_show(binary, tmp, toml_text, sets, label):
    path = os.path.join(tmp, "config-" + label)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "run.toml"), "w") as fh:
        fh.write(toml_text)
    argv = [binary, "config", "show", "run.toml"]
    for s in sets:
        argv += ["--set", s]
    p = run(argv, cwd=path, stderr=subprocess.PIPE)
    return p


def split_address(addr):
    mm = re.match(r"^(?:tcp://)?(\[[^\]]*\]|[^:/]*):(\d+)$", addr or "")
    return (mm.group(1), int(mm.group(2))) if mm else (None, None)


def check_config_and_wiring(m, invs, binary, tmp):
    main = [i for i in invs if not i.is_init and i.sub in ("learner", "actor")]
    learners = [i for i in main if i.sub == "learner"]
    actors = [i for i in main if i.sub == "actor"]
    R.check(learners, "the manifests run a chainrl learner")
    R.check(actors, "the manifests run chainrl actors")
    resolved = {}
    texts = {}
    for inv in main:
        text = run_config(m, inv)
        if text is None:
            continue
        texts[id(inv)] = text
        p = config_show(binary, tmp, text, inv.sets, inv.sub)
        ok = R.check(p.returncode == 0, "%s: `chainrl config show RUN.toml` accepts every --set "
                     "(%s)" % (inv.where, ", ".join(s.split("=")[0] for s in inv.sets)),
                     (p.stderr or "").strip())
        if ok and tomllib is not None:
            try:
                resolved[id(inv)] = tomllib.loads(p.stdout)
            except Exception as e:
                R.fail("%s: the resolved config parses as TOML: %s" % (inv.where, e))
    if tomllib is None:
        R.skip("the resolved configs' values (python3 without tomllib)")
        return None
    shipped = os.path.join(REPO, "configs", "quickstart.toml")
    cm = m.named("ConfigMap", "chainrl-config")
    if cm is not None and os.path.exists(shipped):
        with open(shipped) as fh:
            R.check((cm.get("data") or {}).get("run.toml") == fh.read(),
                    "ConfigMap chainrl-config run.toml is configs/quickstart.toml, as it says",
                    "copy configs/quickstart.toml into deploy/kubernetes/configmap.yaml")

    wiring = {}
    for inv in learners:
        cfg = resolved.get(id(inv))
        if cfg is None:
            continue
        w, t = inv.workload, inv.template
        bind = cfg["learner"]["bind"]
        host, port = split_address(bind)
        R.check(port is not None, "%s: learner.bind %s is tcp://HOST:PORT" % (inv.where, bind))
        if port is None:
            continue
        wiring["learner"] = (inv, cfg, port)
        cports = {p.get("containerPort"): p.get("name") for p in inv.container.get("ports") or []}
        R.check(all(port + k in cports for k in range(3)),
                "%s: container ports include learner.bind's %d, %d, %d (work, trajectories, "
                "weights)" % (inv.where, port, port + 1, port + 2))
        loopback = host in ("127.0.0.1", "localhost", "[::1]")
        R.check(not loopback, "%s: learner.bind %s is reachable from other pods"
                % (inv.where, bind))
        sec = cfg["security"]
        keyed = bool(sec["learner_secret_key_file"]) and bool(sec["authorized_keys_file"])
        R.check(keyed or sec["trusted_network"],
                "%s: binding beyond loopback with keys (learner_secret_key_file, "
                "authorized_keys_file)" % inv.where)
        check_key_file(m, inv, sec["learner_secret_key_file"], "security.learner_secret_key_file",
                       secret=True)
        check_key_file(m, inv, sec["authorized_keys_file"], "security.authorized_keys_file",
                       secret=False)
        # Services that reach the learner's pods expose all three ports.
        for svc in m.of_kind("Service"):
            sel = (svc.get("spec") or {}).get("selector") or {}
            if any(x is w for x, _ in template_labels_for(m, sel)):
                sp = {p.get("targetPort", p.get("port")): p.get("port")
                      for p in svc["spec"].get("ports") or []}
                reach = {cports.get(port + k) if cports.get(port + k) in sp else port + k
                         for k in range(3)}
                R.check(all(r in sp for r in reach),
                        "Service/%s exposes the learner's ports %d..%d"
                        % (svc["metadata"]["name"], port, port + 2))
                R.check(all(sp.get(cports.get(port + k), sp.get(port + k)) == port + k
                            for k in range(3)),
                        "Service/%s serves them on the same port numbers (actors derive PORT+1 "
                        "and PORT+2 from the address)" % svc["metadata"]["name"])
        # Run directory on the PersistentVolumeClaim; resume after a restart.
        run_dir = inv.option("--run-dir") or cfg["run"]["run_dir"]
        R.check(bool(run_dir), "%s: a fixed run directory (--run-dir or run.run_dir)" % inv.where)
        vm, v, _, _ = resolve_path(m, inv, run_dir or "/")
        R.check(v is not None and "persistentVolumeClaim" in v,
                "%s: run directory %s is on a PersistentVolumeClaim" % (inv.where, run_dir))
        ck = cfg["checkpoint"]["dir"]
        if ck:
            _, v2, _, _ = resolve_path(m, inv, ck)
            R.check(v2 is not None and "persistentVolumeClaim" in v2,
                    "%s: checkpoint.dir %s is on a PersistentVolumeClaim" % (inv.where, ck))
        R.check(inv.option("--resume") == "latest" or cfg["checkpoint"]["resume"] == "latest",
                "%s: a restarted learner resumes (--resume latest)" % inv.where)
        R.check(cfg["checkpoint"]["every"] > 0,
                "%s: checkpoint.every > 0 (a restart loses at most that many steps)" % inv.where)
        check_metrics(m, inv, cfg)
        check_model(m, invs, inv, cfg)
        check_ranks(m, inv, cfg, port)
        grace = t["spec"].get("terminationGracePeriodSeconds", 30)
        R.check(grace >= 60, "%s: terminationGracePeriodSeconds %s leaves time for the "
                "checkpoint that SIGTERM triggers" % (inv.where, grace))
        # Probes must not be TCP/HTTP connects to the ZeroMQ ports (counted as refused peers).
        zmq = {port, port + 1, port + 2} | {cports.get(port + k) for k in range(3)}
        for pname in ("startupProbe", "readinessProbe", "livenessProbe"):
            pr = inv.container.get(pname) or {}
            for h in ("tcpSocket", "httpGet", "grpc"):
                if h in pr:
                    R.check(pr[h].get("port") not in zmq,
                            "%s: %s does not connect to a ZeroMQ port (a connect without a CURVE "
                            "handshake is a refused peer)" % (inv.where, pname))
            if "exec" in pr:
                check_exec_probe(m, inv, pname, pr["exec"]["command"], zmq)

    for inv in actors:
        cfg = resolved.get(id(inv))
        if cfg is None or "learner" not in wiring:
            continue
        linv, lcfg, lport = wiring["learner"]
        connect = inv.option("--connect") or cfg["actors"]["connect"]
        host, port = split_address(connect)
        R.check(port == lport, "%s: --connect %s uses the learner's port %d" % (
            inv.where, connect, lport))
        if host:
            svc = m.named("Service", host.split(".")[0])
            if svc is not None and (host.count(".") == 0 or host.endswith(".svc")
                                    or ".svc." in host):
                sel = (svc.get("spec") or {}).get("selector") or {}
                hits = [x for x, _ in template_labels_for(m, sel)]
                R.check(hits and all(x is linv.workload for x in hits),
                        "%s: %s is Service/%s, which selects only the learner"
                        % (inv.where, host, host.split(".")[0]))
                if (linv.workload["kind"] == "StatefulSet" and
                        linv.workload["spec"].get("replicas", 1) > 1):
                    R.check(sel.get("statefulset.kubernetes.io/pod-name") ==
                            linv.workload["metadata"]["name"] + "-0" or
                            svc["spec"].get("clusterIP") != "None",
                            "%s: Service/%s reaches rank 0 only" % (inv.where, host))
                sp = [p.get("port") for p in svc["spec"].get("ports") or []]
                R.check(all(port + k in sp for k in range(3)),
                        "%s: Service/%s serves ports %d..%d" % (inv.where, host, port, port + 2))
            else:
                sts = linv.workload["metadata"]["name"]
                hs = linv.workload["spec"].get("serviceName")
                R.check(host.split(".")[:2] == [sts + "-0", hs],
                        "%s: %s is a Service of the manifests or learner-0's pod DNS name (%s-0.%s)"
                        % (inv.where, host, sts, hs))
        sec = cfg["security"]
        if lcfg["security"]["learner_secret_key_file"]:
            R.check(sec["actor_secret_key_file"] and sec["learner_public_key"],
                    "%s: security.actor_secret_key_file and security.learner_public_key are set "
                    "(the learner has keys)" % inv.where)
            check_key_file(m, inv, sec["actor_secret_key_file"], "security.actor_secret_key_file",
                           secret=True)
            if len(sec["learner_public_key"]) != 40:
                check_key_file(m, inv, sec["learner_public_key"], "security.learner_public_key",
                               secret=False)
        check_metrics(m, inv, cfg)
        check_model(m, invs, inv, cfg)
        R.check(inv.option("--index") is not None or inv.workload["spec"].get("replicas", 1) <= 1,
                "%s: each replica has its own --index (the learner names actors KEYNAME/actor-N)"
                % inv.where)
        wiring.setdefault("actors", []).append((inv, cfg, connect))
    return wiring


def check_exec_probe(m, inv, pname, command, zmq_ports):
    what = "%s: %s" % (inv.where, pname)
    if os.path.basename(command[0]) in SHELLS and len(command) > 1 and command[1] != "-c":
        vm, v, rel, content = resolve_path(m, inv, command[1])
        if R.check(content is not None, "%s: script %s comes from a mounted ConfigMap"
                   % (what, command[1])):
            p = run(["bash", "-n"], input=content)
            R.check(p.returncode == 0, "%s: script parses (bash -n)" % what, p.stdout.strip())
            R.check(not any(re.search(r"/dev/tcp/[^/\s]+/%s\b" % q, content)
                            for q in zmq_ports if isinstance(q, int)),
                    "%s: script connects to no ZeroMQ port" % what)
            args = command[2:]
            R.check(not any(a in {str(q) for q in zmq_ports} for a in args),
                    "%s: script is not pointed at a ZeroMQ port" % what)


def check_key_file(m, inv, path, key, secret):
    what = "%s: %s" % (inv.where, key)
    if not path:
        R.fail("%s is set" % what)
        return
    vm, v, rel, content = resolve_path(m, inv, path)
    if not R.check(v is not None and "secret" in v,
                   "%s = %s lies in a mounted Secret" % (what, path)):
        return
    R.check(content is not None, "%s: %s is a key of Secret %s" % (what, rel,
                                                                   v["secret"].get("secretName")))
    R.check(vm.get("readOnly"), "%s: the Secret is mounted read-only" % what)
    if secret:
        mode = v["secret"].get("defaultMode", 0o644)
        for it in v["secret"].get("items") or []:
            if it.get("path") == rel and "mode" in it:
                mode = it["mode"]
        R.check(mode & 0o077 == 0, "%s: file mode %04o (chainrl refuses a secret key readable "
                "by group or others)" % (what, mode))
        psc = inv.template["spec"].get("securityContext") or {}
        R.check("fsGroup" not in psc,
                "%s: no pod fsGroup (it would make the key group-readable, 0440)" % what)
        csc = inv.container.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        nonroot = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        R.check(uid in (None, 0) and not nonroot,
                "%s: the process runs as the owner of the Secret's files (root, the kubelet's "
                "owner of them), so mode %04o lets it read the key" % (what, mode))


def check_metrics(m, inv, cfg):
    bind = cfg["metrics"].get("bind")
    if bind is None:
        R.fail("%s: metrics.bind exists in the resolved config" % inv.where)
        return
    host, port = split_address(bind)
    R.check(cfg["metrics"]["enabled"] and port and host not in ("127.0.0.1", "localhost", "[::1]"),
            "%s: metrics.bind %s serves /metrics beyond loopback on a fixed port"
            % (inv.where, bind))
    cports = {p.get("containerPort"): p.get("name") for p in inv.container.get("ports") or []}
    R.check(port in cports, "%s: metrics port %s is a container port (%s)"
            % (inv.where, port, cports.get(port)))
    ann = (inv.template.get("metadata") or {}).get("annotations") or {}
    R.check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port)
            and ann.get("prometheus.io/path", "/metrics") == "/metrics",
            "%s: prometheus.io annotations scrape port %s path /metrics" % (inv.where, port))


INIT_MODEL_FLAGS = {  # init-model flag -> ([model.init] key, default when the flag is absent)
    "--arch": ("arch", None), "--layers": ("layers", None), "--hidden": ("hidden", None),
    "--heads": ("heads", None), "--kv-heads": ("kv_heads", "heads"),
    "--intermediate": ("intermediate", None), "--max-position": ("max_position", 32768),
    "--rope-theta": ("rope_theta", 10000.0), "--tokenizer": ("tokenizer", ""),
    "--seed": ("seed", 0), "--vocab-size": ("vocab_size", 0),
}


def check_model(m, invs, inv, cfg):
    path = cfg["model"]["path"]
    vm, v, rel, _ = resolve_path(m, inv, path)
    if not R.check(v is not None, "%s: model.path %s is on a mounted volume" % (inv.where, path)):
        return
    writers = [i for i in invs
               if i.is_init and i.sub == "init-model" and i.template is inv.template]
    if "emptyDir" not in v and not writers:
        R.ok("%s: model.path is a mounted volume (%s)" % (inv.where, vm["name"]))
        return
    mine = [i for i in writers if i.option("--out") and
            resolve_path(m, i, i.option("--out"))[0] is not None and
            resolve_path(m, i, i.option("--out"))[0]["name"] == vm["name"] and
            resolve_path(m, i, i.option("--out"))[2] == rel]
    if not R.check(mine, "%s: an init container writes model.path (chainrl init-model --out %s)"
                   % (inv.where, path)):
        return
    w = mine[0]
    mi = cfg["model"]["init"]
    diffs = []
    for flag, (key, default) in INIT_MODEL_FLAGS.items():
        got = w.option(flag)
        if got is None:
            got = mi.get(default) if isinstance(default, str) and default in mi else default
        want = mi.get(key)
        if got is None or want is None:
            if want not in (None, 0, "") or got not in (None, 0, ""):
                diffs.append("%s %s vs %s %s" % (flag, got, key, want))
            continue
        try:
            same = type(want)(got) == want if not isinstance(want, bool) else got == want
        except (TypeError, ValueError):
            same = False
        if not same:
            diffs.append("%s %s vs model.init.%s = %s" % (flag, got, key, want))
    if bool(w.option("--tie-embeddings")) != bool(mi.get("tie_embeddings")):
        diffs.append("--tie-embeddings vs model.init.tie_embeddings = %s"
                     % mi.get("tie_embeddings"))
    if (w.option("--dtype") or "float32") != cfg["model"]["dtype"]:
        diffs.append("--dtype vs model.dtype = %s" % cfg["model"]["dtype"])
    R.check(not diffs, "%s: init-model's flags equal the config's [model.init] and model.dtype"
            % inv.where, "; ".join(diffs))


def check_ranks(m, inv, cfg, port):
    w = inv.workload
    if w["kind"] != "StatefulSet":
        R.skip("data-parallel ranks (the learner is a %s, not a StatefulSet)" % w["kind"])
        return
    env = {e["name"]: e for e in inv.container.get("env") or []}
    replicas = w["spec"].get("replicas", 1)
    ws = (env.get("WORLD_SIZE") or {}).get("value")
    R.check(ws == str(replicas), "%s: WORLD_SIZE %s = StatefulSet replicas %s"
            % (inv.where, ws, replicas))
    pod = (env.get("POD_NAME") or {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    script, _ = container_script(inv.container, inv.env)
    R.check(pod == "metadata.name" and script is not None and
            re.search(r"\bRANK=\"?\$\{POD_NAME##\*-\}", script),
            "%s: RANK is the pod's ordinal (POD_NAME from metadata.name, RANK=${POD_NAME##*-})"
            % inv.where)
    sts, hs = w["metadata"]["name"], w["spec"].get("serviceName")
    ma = (env.get("MASTER_ADDR") or {}).get("value", "")
    R.check(ma == "%s-0.%s" % (sts, hs),
            "%s: MASTER_ADDR %s is rank 0's DNS name %s-0.%s (no namespace named)"
            % (inv.where, ma, sts, hs))
    mp = (env.get("MASTER_PORT") or {}).get("value", "")
    cports = [p.get("containerPort") for p in inv.container.get("ports") or []]
    R.check(mp.isdigit() and int(mp) in cports and int(mp) not in (port, port + 1, port + 2),
            "%s: MASTER_PORT %s is a container port apart from the ZeroMQ ports" % (inv.where, mp))
    svc = m.named("Service", hs)
    if svc is not None:
        R.check(mp.isdigit() and int(mp) in [p.get("port") for p in svc["spec"].get("ports", [])],
                "%s: headless Service %s lists MASTER_PORT" % (inv.where, hs))
        R.check(svc["spec"].get("publishNotReadyAddresses") is True,
                "%s: headless Service publishes not-ready pods (ranks rendezvous before ready)"
                % inv.where)
    R.check(w["spec"].get("podManagementPolicy") == "Parallel",
            "%s: podManagementPolicy Parallel (rank 0 waits for the others to start)" % inv.where)
    R.check((env.get("LOCAL_WORLD_SIZE") or {}).get("value") == "1",
            "%s: LOCAL_WORLD_SIZE 1 (one rank per pod)" % inv.where)
    R.check(cfg["distributed"]["backend"] in ("auto", "gloo") and
            (cfg["distributed"]["backend"] == "gloo" or cfg["run"]["device"] == "cpu"),
            "%s: the data-parallel backend resolves to gloo (this build has no NCCL)" % inv.where)


# ---- README key commands --------------------------------------------------------------------

def readme_key_block(m):
    path = os.path.join(m.root, "README.md")
    if not os.path.exists(path):
        R.fail("deploy/kubernetes/README.md exists")
        return None
    with open(path) as fh:
        text = fh.read()
    mm = re.search(r"<!-- keys:begin -->\s*```sh\n(.*?)```\s*<!-- keys:end -->", text, re.S)
    R.check(mm, "README.md has the key commands between <!-- keys:begin/end --> markers")
    return mm.group(1) if mm else None


def offline_kubeconfig(tmp):
    """An empty kubeconfig: kubectl talks to no cluster of the user's and warns of no file."""
    path = os.path.join(tmp, "kubeconfig")
    if not os.path.exists(path):
        with open(path, "w") as fh:
            fh.write("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"
                     "preferences: {}\n")
    return path


def check_readme_keys(m, binary, tmp):
    """Runs README.md's key commands; returns {secret name: {key: text}} or None."""
    block = readme_key_block(m)
    if block is None:
        return None
    work = os.path.join(tmp, "keys-flow")
    os.makedirs(work)
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir, exist_ok=True)
    if not os.path.exists(os.path.join(bindir, "chainrl")):
        os.symlink(binary, os.path.join(bindir, "chainrl"))
    made = {}
    kubectl = shutil.which("kubectl")
    shell_lines = []
    for cmd in shell_commands(block):
        if cmd and cmd[0] == "kubectl":
            words = [w for w in cmd if w not in ("-n", "$NAMESPACE", "${NAMESPACE}")]
            if words[1:4] != ["create", "secret", "generic"]:
                R.fail("README.md: kubectl command is `create secret generic`: %s" % " ".join(cmd))
                continue
            made[words[4]] = [w for w in words[5:]]
        else:
            shell_lines.append(cmd)
    script = "set -eu\n" + "\n".join(" ".join(shlex.quote(w) if not re.search(r"[>*]", w)
                                               else w for w in c) for c in shell_lines)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    p = run(["sh", "-c", script], cwd=work, env=env)
    if not R.check(p.returncode == 0, "README.md's key commands run (chainrl keys, cat)",
                   p.stdout.strip()):
        return None
    secrets = {}
    for name, words in made.items():
        data = {}
        for w in words:
            mm = re.match(r"^--from-file=(?:([^=]+)=)?(.+)$", w)
            if not mm:
                R.fail("README.md: kubectl create secret %s: %s is --from-file=KEY=PATH"
                       % (name, w))
                continue
            key = mm.group(1) or os.path.basename(mm.group(2))
            fpath = os.path.join(work, mm.group(2))
            if R.check(os.path.exists(fpath), "README.md: %s exists after the commands above it"
                       % mm.group(2)):
                with open(fpath) as fh:
                    data[key] = fh.read()
        secrets[name] = data
        if kubectl:
            kp = run([kubectl, "create", "secret", "generic", name] + words +
                     ["--dry-run=client", "-o", "json"], cwd=work,
                     env=dict(env, KUBECONFIG=offline_kubeconfig(tmp)), stderr=subprocess.PIPE)
            if R.check(kp.returncode == 0, "README.md: `kubectl create secret generic %s ... "
                       "--dry-run=client -o json` works offline" % name,
                       (kp.stderr or "").strip()[-400:]):
                obj = json.loads(kp.stdout)
                got = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
                R.check(got == data, "README.md: kubectl's Secret %s holds the files' text" % name)
    if not kubectl:
        R.skip("`kubectl create secret generic --dry-run=client` on README.md's commands "
               "(kubectl is not installed)")
    for s in m.of_kind("Secret"):
        name = s["metadata"]["name"]
        R.check(name in secrets and set(secrets[name]) == set(secret_keys(s)),
                "README.md makes Secret %s with the template's keys (%s)"
                % (name, ", ".join(sorted(secret_keys(s)))),
                "README makes %s" % {k: sorted(v) for k, v in secrets.items()})
    for name in secrets:
        R.check(m.named("Secret", name) is not None,
                "README.md's Secret %s has a template in the manifests" % name)
    for fname, text in ((k, v) for d in secrets.values() for k, v in d.items()):
        if fname.endswith(".key"):
            R.check("secret-key" in text, "README.md: %s is a key pair file" % fname)
    return secrets


# ---- kubectl, offline -----------------------------------------------------------------------

def subset(a, b, path=""):
    """Paths of `a` that `b` lacks or changes (b may add fields and list items)."""
    out = []
    if isinstance(a, dict):
        if not isinstance(b, dict):
            return [path or "/"]
        for k, v in a.items():
            if k not in b:
                if v not in (False, 0, "", [], {}, None):  # Go leaves out empty values
                    out.append("%s.%s" % (path, k))
            else:
                out += subset(v, b[k], "%s.%s" % (path, k))
    elif isinstance(a, list):
        if not isinstance(b, list) or len(b) < len(a):
            return [path]
        for i, v in enumerate(a):
            out += subset(v, b[i], "%s[%d]" % (path, i))
    else:
        if a != b and str(a) != str(b):
            out.append("%s (%r -> %r)" % (path, a, b))
    return out


def check_kubectl(m, tmp):
    kubectl = shutil.which("kubectl")
    schema = ("the schema of each field against the Kubernetes OpenAPI spec (no offline schema "
              "available; kubectl's --validate downloads it from the API server)")
    if not kubectl:
        R.skip("kubectl kustomize, and decoding into Kubernetes' Go types (kubectl is not "
               "installed: apt-get install kubernetes-client)")
        R.skip(schema)
        return
    env = dict(os.environ, KUBECONFIG=offline_kubeconfig(tmp))
    p = run([kubectl, "version", "--client"], env=env, stderr=subprocess.DEVNULL)
    mm = re.search(r"v\d+\.\d+\.\d+[^\s\",]*", p.stdout or "")
    version = "kubectl " + (mm.group(0) if mm else "of unknown version")
    if m.kustomization is not None:
        p = run([kubectl, "kustomize", m.root], env=env, stderr=subprocess.PIPE)
        if R.check(p.returncode == 0, "`kubectl kustomize` builds the directory (%s)" % version,
                   (p.stderr or "").strip()[-400:]):
            built = [d for d in yaml.safe_load_all(p.stdout) if d]
            R.check(len(built) == len([1 for f, _ in m.docs if ".example." not in f]),
                    "`kubectl kustomize` yields every object of the listed manifests (%d)"
                    % len(built))
    # Typed decoding: `kubectl set ... --local` turns each object into its Go type and back;
    # a field Kubernetes does not know is dropped, a value of the wrong type is an error.
    for f, d in m.docs:
        kind, name = d["kind"], d["metadata"]["name"]
        path = os.path.join(tmp, "typed-%s-%s.yaml" % (kind, name))
        with open(path, "w") as fh:
            yaml.safe_dump(d, fh)
        if kind in WORKLOADS:
            argv = [kubectl, "set", "env", "--local", "-f", path, "-o", "json",
                    "CHAINRL_OFFLINE_CHECK=1"]
        elif kind == "Service" and (d.get("spec") or {}).get("selector"):
            sel = ",".join("%s=%s" % kv for kv in d["spec"]["selector"].items())
            argv = [kubectl, "set", "selector", "--local", "-f", path, "-o", "json", sel]
        else:
            continue
        p = run(argv, env=env, stderr=subprocess.PIPE)
        if not R.check(p.returncode == 0, "%s %s/%s decodes into its Go type (kubectl set --local)"
                       % (f, kind, name), (p.stderr or "").strip()[-400:]):
            continue
        lost = subset(json.loads(json.dumps(d)), json.loads(p.stdout))
        R.check(not lost, "%s %s/%s: every field is a field of the Kubernetes type"
                % (f, kind, name),
                "unknown or changed: %s" % ", ".join(lost))
    R.skip("typed decoding of ConfigMap, Secret and PersistentVolumeClaim (no offline kubectl "
           "command decodes them; their fields are checked by hand above)")
    probe = os.path.join(tmp, "probe-cm.yaml")
    with open(probe, "w") as fh:
        fh.write("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\ndata: {a: b}\n")
    p = run([kubectl, "apply", "--dry-run=client", "--validate=false", "-f", probe,
             "--server=http://127.0.0.1:9", "--request-timeout=5s"], env=env, timeout=60)
    if p.returncode == 0:
        for f in m.files:
            if ".example." in f or (m.kustomization and f == m.kustomization[0]):
                continue
            q = run([kubectl, "apply", "--dry-run=client", "--validate=false", "-f",
                     os.path.join(m.root, f), "--server=http://127.0.0.1:9",
                     "--request-timeout=5s"], env=env, timeout=60)
            R.check(q.returncode == 0, "kubectl apply --dry-run=client -f %s" % f, q.stdout[-400:])
    else:
        R.skip("`kubectl apply/create --dry-run=client` (it needs an API server for discovery "
               "even in client dry-run; %s)" % version)
    R.skip(schema)


# ---- smoke: the pods as processes -----------------------------------------------------------

class SimPod:
    """A pod of the manifests as processes here: volumes are directories, mount paths in the
    containers' scripts are mapped to them, variables are the container's."""

    def __init__(self, tmp, w, t, secrets, ordinal, pvcs, m):
        self.w, self.t = w, t
        self.name = pod_name(w, ordinal)
        self.root = os.path.join(tmp, "pods", self.name)
        self.vols = {}
        for v in t["spec"].get("volumes") or []:
            d = os.path.join(self.root, "volumes", v["name"])
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                d = pvcs.setdefault(claim, os.path.join(tmp, "pvc", claim))
            os.makedirs(d, exist_ok=True)
            if "configMap" in v or "secret" in v:
                src = v.get("configMap") or v.get("secret")
                if "configMap" in v:
                    data = (m.named("ConfigMap", src["name"]) or {}).get("data") or {}
                else:
                    data = secrets.get(src["secretName"], {})
                mode = src.get("defaultMode", 0o644)
                for k, text in data.items():
                    p = os.path.join(d, k)
                    with open(p, "w") as fh:
                        fh.write(text)
                    os.chmod(p, mode)
            self.vols[v["name"]] = d

    def mapping(self, c):
        return sorted(((vm["mountPath"].rstrip("/"), self.vols[vm["name"]])
                       for vm in c.get("volumeMounts") or []), key=lambda x: -len(x[0]))

    def map_text(self, c, text):
        for mp, d in self.mapping(c):
            text = re.sub(r"(^|[\s=:\"'])%s(?=$|[/\s\"'])" % re.escape(mp),
                          lambda mm: mm.group(1) + d, text, flags=re.M)
        return text

    def env(self, c, bindir, overrides):
        _, env = container_env(self.w, c, self.name)
        base = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TMPDIR")}
        base.update(env)
        base.update(PATH=bindir + os.pathsep + "/usr/local/bin:/usr/bin:/bin",
                    HOSTNAME=self.name, HOME=self.root)
        base.update(overrides)
        return base

    def start(self, c, bindir, overrides, replace, log):
        env = self.env(c, bindir, overrides)
        script, argv = container_script(c, env)
        if script is None:
            script = " ".join(shlex.quote(a) for a in argv)
        for old, new in replace:
            script = script.replace(old, new)
        script = self.map_text(c, script)
        cwd = self.map_text(c, c.get("workingDir", self.root)) if c.get("workingDir") else self.root
        os.makedirs(cwd, exist_ok=True)
        fh = open(log, "w")
        return subprocess.Popen(["sh", "-c", script], cwd=cwd, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def run_init(self, bindir, log):
        for c in self.t["spec"].get("initContainers") or []:
            p = self.start(c, bindir, {}, [], log + "." + c["name"])
            if p.wait(timeout=120) != 0:
                return c["name"]
        return None


def read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def stop(p, sig=signal.SIGTERM, timeout=30):
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode


def probe_ok(pod, c, port, manifest_port, name=None):
    """Runs the container's readiness probe as the kubelet would (exec or httpGet), pointed at
    `port` where the manifest says `manifest_port`, in pod `name` (default pod.name)."""
    pr = c.get("readinessProbe") or {}
    if "exec" in pr:
        cmd = [str(port) if a == str(manifest_port) else pod.map_text(c, a)
               for a in pr["exec"]["command"]]
        name = name or pod.name
        env = dict(os.environ, POD_NAME=name, HOSTNAME=name)
        return subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=30).returncode == 0
    if "httpGet" in pr:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, pr["httpGet"].get(
                    "path", "/")), timeout=5) as r:
                return r.status == 200
        except Exception:
            return False
    return True


def smoke(m, wiring, secrets, binary, tmp):
    """The learner's pods and one actor pod as processes, with the manifests' commands: one RL
    step, the probes, a restart that resumes; then the same with two learner ranks."""
    if not wiring or "learner" not in wiring or not wiring.get("actors") or secrets is None:
        R.skip("smoke run (the checks it builds on failed)")
        return
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir, exist_ok=True)
    if not os.path.exists(os.path.join(bindir, "chainrl")):
        os.symlink(binary, os.path.join(bindir, "chainrl"))
    # Overrides appended to the learner's and the actor's command lines by a `chainrl` wrapper:
    # a short run (1 RL step of 2 prompts x 2 samples, no SFT, 4 held-out problems) on this
    # host's free loopback ports. Everything else is the manifests' own command lines.
    wrapper = os.path.join(tmp, "bin-smoke")
    os.makedirs(wrapper, exist_ok=True)
    q = shlex.quote(binary)
    with open(os.path.join(wrapper, "chainrl"), "w") as fh:
        fh.write("#!/bin/sh\n# appends the smoke run's overrides to learner and actor commands\n"
                 "case \"$1\" in\n"
                 "  learner) exec %s \"$@\" $CHAINRL_SMOKE_LEARNER ;;\n"
                 "  actor) exec %s \"$@\" $CHAINRL_SMOKE_ACTOR ;;\n"
                 "  *) exec %s \"$@\" ;;\nesac\n" % (q, q, q))
    os.chmod(os.path.join(wrapper, "chainrl"), 0o755)
    for ranks in (1, 2):
        print("-- %d learner rank%s" % (ranks, "" if ranks == 1 else "s"))
        if not smoke_phase(m, wiring, secrets, tmp, bindir, wrapper, ranks):
            break


def smoke_phase(m, wiring, secrets, tmp, bindir, wrapper, ranks):
    linv, lcfg, lport = wiring["learner"]
    ainv, acfg, connect = wiring["actors"][0]
    lc, ac = linv.container, ainv.container
    root = os.path.join(tmp, "smoke-%d" % ranks)
    pvcs = {}
    lpods = [SimPod(root, linv.workload, linv.template, secrets, r, pvcs, m) for r in range(ranks)]
    apod = SimPod(root, ainv.workload, ainv.template, secrets, "p", pvcs, m)
    logs = os.path.join(root, "logs")
    os.makedirs(logs)
    for pod in lpods + [apod]:
        bad = pod.run_init(bindir, os.path.join(logs, pod.name))
        if not R.check(bad is None, "smoke: pod %s's init containers succeed" % pod.name,
                       "%s failed: %s" % (bad, read(os.path.join(logs, "%s.%s" % (pod.name, bad)))
                                          [-800:])):
            return False
    base = free_port_block(6)
    lmetrics, ametrics, master = base + 3, base + 4, base + 5
    lmport = split_address(lcfg["metrics"]["bind"])[1]
    amport = split_address(acfg["metrics"]["bind"])[1]
    short = ["run.total_steps=1", "sft.steps=0", "data.num_eval_examples=4",
             "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=24",
             "learner.lr_schedule=constant", "curriculum.budget_schedule=constant",
             "curriculum.budget_start=24", "curriculum.budget_end=24"]
    sets = " ".join("--set " + x for x in short)
    lover = {"CHAINRL_SMOKE_LEARNER": sets + " --set learner.bind=tcp://127.0.0.1:%d"
             " --set metrics.bind=127.0.0.1:%d" % (base, lmetrics), "CHAINRL_THREADS": "1"}
    if ranks > 1:  # replicas: N with WORLD_SIZE N; rank 0's DNS name is this host
        lover.update(WORLD_SIZE=str(ranks), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(master))
    aover = {"CHAINRL_SMOKE_ACTOR": sets + " --set metrics.bind=127.0.0.1:%d" % ametrics,
             "CHAINRL_THREADS": "1"}
    new_connect = "tcp://127.0.0.1:%d" % base

    def start_learners(tag):
        return [(pod, pod.start(lc, wrapper, lover, [], os.path.join(logs, "%s-%s.log"
                                                                      % (pod.name, tag))))
                for pod in lpods]

    def wait_all(procs, timeout):
        rcs = []
        deadline = time.time() + timeout
        for _, p in procs:
            try:
                rcs.append(p.wait(timeout=max(1, deadline - time.time())))
            except subprocess.TimeoutExpired:
                rcs.append(stop(p))
        return rcs

    def logs_of(tag):
        return "\n".join("%s:\n%s" % (pod.name, read(os.path.join(logs, "%s-%s.log" % (
            pod.name, tag)))[-1500:]) for pod in lpods)

    alog = os.path.join(logs, "actor.log")
    procs = start_learners("1")
    ap = apod.start(ac, wrapper, aover, [(connect, new_connect)], alog)
    lp0 = procs[0][1]
    try:
        if ranks == 1:
            ready = False
            deadline = time.time() + 90
            while time.time() < deadline and lp0.poll() is None and not ready:
                ready = probe_ok(lpods[0], lc, lmetrics, lmport)
                time.sleep(0.3)
            R.check(ready, "smoke: the learner's readiness probe (%s) passes against its "
                    "/metrics" % " ".join((lc.get("readinessProbe") or {}).get("exec", {}).get(
                        "command", [])), logs_of("1"))
            R.check(probe_ok(lpods[0], lc, free_port_block(1), lmport,
                             pod_name(linv.workload, 1)),
                    "smoke: the probe passes on a rank other than 0 (it serves no /metrics)")
            R.check(not probe_ok(lpods[0], lc, free_port_block(1), lmport),
                    "smoke: the probe fails when /metrics does not answer")
            aready = False
            deadline = time.time() + 60
            while time.time() < deadline and ap.poll() is None and not aready:
                aready = probe_ok(apod, ac, ametrics, amport)
                time.sleep(0.3)
            R.check(aready, "smoke: the actor's readiness probe (httpGet /metrics) passes",
                    read(alog)[-1500:])
        rcs = wait_all(procs, 180)
        ok = R.check(all(rc == 0 for rc in rcs),
                     "smoke: %s (RANK from the pod name, keys from README's commands in Secret "
                     "files of mode 0400) %s a step with the actor and exit%s 0"
                     % ("the learner pod" if ranks == 1 else "%d learner pods" % ranks,
                        "trains" if ranks == 1 else "train", "s" if ranks == 1 else ""),
                     "rc %s\n%s\nactor:\n%s" % (rcs, logs_of("1"), read(alog)[-1500:]))
        rundir = None
        for d, _, files in os.walk(lpods[0].vols.get("run", root)):
            if "summary.json" in files:
                rundir = d
        if R.check(rundir is not None, "smoke: summary.json is on the PersistentVolumeClaim"):
            summary = json.loads(read(os.path.join(rundir, "summary.json")))
            R.check(summary.get("groups_trained", 0) > 0 and summary.get("peers_refused") == 0
                    and summary.get("learner_ranks", 1) == ranks,
                    "smoke: groups trained %s by %s rank(s), peers refused %s (the probes are "
                    "not refused peers)" % (summary.get("groups_trained"),
                                            summary.get("learner_ranks"),
                                            summary.get("peers_refused")))
            R.check(os.path.isdir(os.path.join(rundir, "checkpoints")) and
                    os.listdir(os.path.join(rundir, "checkpoints")),
                    "smoke: a checkpoint is on the PersistentVolumeClaim")
        arc = stop(ap, signal.SIGTERM, 30)
        R.check(arc == 0, "smoke: the actor leaves cleanly on SIGTERM (what Kubernetes sends)",
                "rc %s\n%s" % (arc, read(alog)[-800:]))
        if not ok:
            return False
        procs = start_learners("2")
        rcs = wait_all(procs, 120)
        R.check(all(rc == 0 for rc in rcs) and "resumed from" in read(
            os.path.join(logs, "%s-2.log" % lpods[0].name)),
            "smoke: the restarted learner pod%s resume%s from the checkpoint (--resume latest)"
            % (("", "s") if ranks == 1 else ("s", "")), logs_of("2"))
        return True
    finally:
        for _, p in procs:
            stop(p)
        stop(ap)


# ---- main -----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chainrl", help="the chainrl binary")
    ap.add_argument("--manifests", default=os.path.join(REPO, "deploy", "kubernetes"))
    ap.add_argument("--no-smoke", action="store_true", help="skip the processes' run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    binary = os.path.abspath(a.chainrl)
    if not os.access(binary, os.X_OK):
        print("SKIP: no chainrl binary at %s" % binary)
        return 77
    m = Manifests(a.manifests)
    tmp = tempfile.mkdtemp(prefix="check-kubernetes-")
    try:
        print("== manifests in %s" % m.root)
        load(m)
        for f, d in m.docs:
            check_metadata(f, d)
            kind = d["kind"]
            if kind == "ConfigMap":
                check_configmap(f, d)
            elif kind == "Secret":
                check_secret(f, d)
            elif kind == "PersistentVolumeClaim":
                check_pvc(f, d)
            elif kind == "Service":
                check_service(m, f, d)
            elif kind in WORKLOADS:
                check_workload(m, f, d)
        check_kustomization(m)
        print("== chainrl commands in the containers")
        helper = Help(binary)
        invs = collect_invocations(m, helper)
        print("== the run's config, with each command's --set")
        wiring = check_config_and_wiring(m, invs, binary, tmp)
        print("== README.md's key commands")
        secrets = check_readme_keys(m, binary, tmp)
        print("== kubectl, offline")
        check_kubectl(m, tmp)
        if a.no_smoke:
            R.skip("smoke run (--no-smoke)")
        else:
            print("== smoke: the learner and an actor pod as processes")
            smoke(m, wiring, secrets, binary, tmp)
    finally:
        if a.keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    for what in R.not_checked + [
            "anything that needs a cluster: scheduling, storage provisioning, DNS, the kubelet's "
            "real secret and ConfigMap volumes, image pulls (chainrl:latest is a placeholder)",
            "learner ranks on separate hosts: the smoke run's two ranks share this host's "
            "loopback (Gloo across pods, GLOO_SOCKET_IFNAME)",
            "a container image: the check runs the chainrl binary given to it"]:
        print("not checked: " + what)
    print("check_kubernetes: %d passed, %d failed" % (R.passed, R.failed))
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
