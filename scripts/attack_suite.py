#!/usr/bin/env python3
"""Black-box attack suite for a stele binary (see docs/attack-suite.md).

Each scenario builds a fresh data directory in a temporary directory and
attacks it the way an operator with a shell on the host could: stele
commands, HTTP requests (curl) against `stele serve` on 127.0.0.1, edits to
the files of the data directory, copies of it, and clocks moved with
faketime. It prints one line per scenario:

    DEFENDED    the attack was refused or detected (with Stele's message)
    VULNERABLE  the attack worked (what happened)
    ERROR       the scenario could not run (why)

and exits 0 only when every scenario is DEFENDED (1 otherwise).

Standard library only. Environment: STELE_BIN (the binary; required),
ATTACK_ONLY (comma-separated scenario ids or defect numbers to run),
ATTACK_KEEP=1 (keep the temporary directory and print where it is).
"""

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

BIN = os.environ.get("STELE_BIN", "")
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
DAY = 86400
CMD_TIMEOUT = 120  # seconds: bound on any one stele command
CEDAR = (
    '@id("admin-all") permit (principal in Stele::Role::"admin", action, resource); '
    '@id("writer-append") permit (principal in Stele::Role::"writer", '
    'action == Stele::Action::"append", resource is Stele::Stream) when { !resource.reserved }; '
    '@id("system-append") permit (principal, action == Stele::Action::"append", '
    'resource is Stele::Stream) when { principal.kind == "system" };'
)


class ScenarioError(Exception):
    """The scenario could not be carried out (reported as ERROR)."""


# ---------------------------------------------------------------- processes

SERVERS = []


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STELE_", "FAKETIME"))}
    env.pop("LD_PRELOAD", None)
    env.setdefault("USER", "root")
    if extra:
        env.update(extra)
    return env


def run(args, data_input=None, clock=None, env=None, timeout=CMD_TIMEOUT, check=False):
    """Runs stele with ARGS; CLOCK is a faketime offset such as '-30d'.
    Returns (exit code, stdout, stderr)."""
    cmd = [BIN] + list(args)
    if clock:
        cmd = ["faketime", "-f", clock] + cmd
    try:
        p = subprocess.run(
            cmd,
            input=data_input.encode() if isinstance(data_input, str) else data_input,
            capture_output=True,
            env=clean_env(env),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise ScenarioError(f"`stele {' '.join(args[:2])}` did not finish within {timeout}s")
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    if check and p.returncode != 0:
        raise ScenarioError(f"setup step `stele {' '.join(args[:2])}` failed (exit {p.returncode}): {last_line(err)}")
    return p.returncode, out, err


def last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].strip() if lines else "(no output)"


def error_line(text):
    """The most telling line of a command's standard error."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    for l in lines:
        if "error" in l.lower() or l.startswith("FAIL"):
            return shorten(l)
    return shorten(lines[-1]) if lines else "(no output)"


def shorten(text, n=300):
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


_HELP = {}


def help_text(*sub):
    if sub not in _HELP:
        _, out, err = run(list(sub) + ["--help"], timeout=30)
        _HELP[sub] = out + err
    return _HELP[sub]


def has_check():
    return re.search(r"^\s+check\s", help_text(), re.M) is not None


def has_anchor():
    return "--anchor" in help_text("append")


def announces():
    """Builds that hold a due epoch back for a grace period have `--wait`."""
    return "--wait" in help_text("retention", "run")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, work, data, clock=None, clock_file=None, grace=None, publish_ms=None, anchor=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = [f'data = "{data}"', f'listen = ["127.0.0.1:{self.port}"]']
        if publish_ms is not None:
            cfg.append(f"publish_interval_ms = {publish_ms}")
        if grace is not None and announces():
            cfg.append(f"retention_grace_seconds = {grace}")
        if anchor:
            cfg.append(f'anchor = "{anchor}"')
        self.cfg_path = os.path.join(work, f"server-{self.port}.toml")
        with open(self.cfg_path, "w") as f:
            f.write("\n".join(cfg) + "\n")
        self.log_path = os.path.join(work, f"server-{self.port}.log")
        env = clean_env()
        cmd = [BIN, "serve", "--config", self.cfg_path]
        if clock:
            cmd = ["faketime", "-f", clock] + cmd
        if clock_file:
            # The offset is re-read from CLOCK_FILE at every call, so the
            # wall clock can be moved while the server runs; the monotonic
            # clock is left alone, as a real clock change leaves it.
            env.update(
                LD_PRELOAD=LIBFAKETIME,
                FAKETIME_TIMESTAMP_FILE=clock_file,
                FAKETIME_NO_CACHE="1",
                FAKETIME_DONT_FAKE_MONOTONIC="1",
            )
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        SERVERS.append(self)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.started = False
                return
            code, _ = self.http("GET", "/healthz", timeout=2)
            if code == 200:
                self.started = True
                return
            time.sleep(0.2)
        self.started = False

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def http(self, method, path, token=None, body=None, timeout=30):
        """curl; returns (status, body text). Status 0: no answer."""
        cmd = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--max-time", str(timeout)]
        if token:
            cmd += ["-H", f"Authorization: Bearer {token}"]
        data = None
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
            data = body.encode() if isinstance(body, str) else body
        cmd.append(self.url + path)
        try:
            p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout + 5)
        except subprocess.TimeoutExpired:
            return 0, "curl timed out"
        text = p.stdout.decode(errors="replace")
        text, _, code = text.rpartition("\n")
        try:
            return int(code), text
        except ValueError:
            return 0, p.stderr.decode(errors="replace")

    def stop(self, kill=False):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        if self in SERVERS:
            SERVERS.remove(self)


def stop_all_servers():
    for s in list(SERVERS):
        try:
            s.stop(kill=True)
        except Exception:
            pass


# ------------------------------------------------------------ log helpers


def init_log(d, clock=None):
    run(["init", "--data", d, "--origin", "attack.example/log"], clock=clock, check=True)


def vkey_of(d):
    with open(os.path.join(d, "meta.json")) as f:
        return json.load(f)["verifier_key"]


def append(d, events, stream=None, clock=None, check=True, extra=None):
    args = ["append", "--data", d] + (["--stream", stream] if stream else []) + (extra or [])
    text = "".join(json.dumps(e) + "\n" for e in events)
    rc, out, err = run(args, data_input=text, clock=clock)
    if check and rc != 0:
        raise ScenarioError(f"setup append failed (exit {rc}): {error_line(err)}")
    receipts = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return rc, receipts, out, err


def events(n, tag="e", pad=0):
    return [{"actor": "alice", "action": f"{tag}.{i}", "attributes": {"pad": "A" * pad}} for i in range(n)]


def token_create(d, principal="admin", role="admin"):
    rc, out, err = run(["token", "create", "--data", d, "--principal", principal, "--role", role])
    m = re.search(r"stele_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", out)
    if rc != 0 or not m:
        raise ScenarioError(f"setup `stele token create` failed (exit {rc}): {error_line(err)}")
    return m.group(0)


def checkpoint_size(d):
    with open(os.path.join(d, "log", "checkpoint")) as f:
        return int(f.read().splitlines()[1])


def cli_size(d):
    """Log size as `stele checkpoint` prints it (opens the log)."""
    rc, out, err = run(["checkpoint", "--data", d])
    if rc != 0:
        raise ScenarioError(f"`stele checkpoint` failed: {error_line(err)}")
    return int(out.splitlines()[1])


def verify(d):
    rc, out, err = run(["verify", "--data", d], timeout=300)
    text = out + err
    if rc == 0:
        return rc, "verify: " + shorten(last_line(out) if out.strip() else last_line(err), 160)
    text = text.replace(d.rstrip("/") + "/", "").replace(d, "DIR")
    fails = [l.strip() for l in text.splitlines() if l.strip().startswith(("FAIL ", "stele: error"))]
    more = f" (+{len(fails) - 1} more)" if len(fails) > 1 else ""
    return rc, "verify exit %d: %s%s" % (rc, shorten(fails[0] if fails else last_line(text), 240), more)


def policy_toml(streams, default, local_roles=("admin",)):
    lines = ["version = 1", f'default_stream = "{default}"', ""]
    for name, rule in streams.items():
        lines += [f"[streams.{name}]", f'retain = "{rule}"', ""]
    lines += ["[operators]", "local_roles = [" + ", ".join(f'"{r}"' for r in local_roles) + "]", ""]
    lines += ["[access]", f"cedar = '''{CEDAR}'''", ""]
    return "\n".join(lines)


def apply_policy(d, work, toml, clock=None, extra=None, check=True):
    path = os.path.join(work, f"policy-{secrets.token_hex(4)}.toml")
    with open(path, "w") as f:
        f.write(toml)
    rc, out, err = run(["policy", "apply", "--data", d, path] + (extra or []), clock=clock)
    if check and rc != 0:
        raise ScenarioError(f"setup `stele policy apply` failed (exit {rc}): {error_line(err)}")
    return rc, out, err


def policy_hash(toml, cedar):
    t, c = toml.encode(), cedar.encode()
    return hashlib.sha256(
        b"stele/policy/v1\n" + struct.pack(">Q", len(t)) + t + struct.pack(">Q", len(c)) + c
    ).hexdigest()


def segments(d, stream):
    root = os.path.join(d, "segments", stream)
    if not os.path.isdir(root):
        return []
    return sorted(f[:-4] for f in os.listdir(root) if f.endswith(".seg"))


def purged(d, stream, epoch):
    return os.path.exists(os.path.join(d, "segments", stream, epoch + ".purged"))


def seg_records(path):
    """Frames of a segment file by their first log index: one record per
    entry, or in segments of versions 3 and 4 one block per run of entries
    (docs/formats/segment.md; both share the framing)."""
    with open(path, "rb") as f:
        b = f.read()
    if b[:8] != b"STELESEG":
        raise ScenarioError(f"{path}: not a segment file")
    (n,) = struct.unpack(">H", b[20:22])
    off, recs = 26 + n, {}
    while off + 16 <= len(b):
        (length,) = struct.unpack(">I", b[off : off + 4])
        if length < 32 or off + 4 + length > len(b):
            break
        idx, gen = struct.unpack(">QI", b[off + 4 : off + 16])
        recs[idx] = {"offset": off, "gen": gen, "ct": b[off + 16 : off + 16 + length - 32]}
        off += 4 + length
    return recs


def longest_zero_run(data):
    best = cur = 0
    for byte in data:
        cur = cur + 1 if byte == 0 else 0
        best = max(best, cur)
    return best


def tree_digest(d):
    out = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = os.path.join(root, name)
            rel = os.path.relpath(p, d)
            st = os.lstat(p)
            if os.path.isdir(p):
                out[rel + "/"] = "dir"
            else:
                with open(p, "rb") as f:
                    out[rel] = (hashlib.sha256(f.read()).hexdigest(), st.st_size)
    return out


def tree_changes(before, after):
    changed = [k for k in before if k in after and before[k] != after[k]]
    return changed, [k for k in after if k not in before], [k for k in before if k not in after]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, obj):
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def serve_retention(w, d, token, clock=None, grace=0):
    """Runs retention in `stele serve` (grace GRACE where the build has
    one), asking twice over HTTP. Returns (started, what happened)."""
    srv = Server(w, d, clock=clock, grace=grace)
    try:
        if not srv.started:
            return False, "stele serve did not start: " + error_line(srv.output())
        answers = []
        for _ in range(2):
            code, body = srv.http("POST", "/v1/retention/run", token=token)
            answers.append(f"{code}")
            if code != 200:
                answers[-1] += " " + shorten(body, 160)
            time.sleep(1.5)
        return True, "POST /v1/retention/run: " + ", ".join(answers)
    finally:
        srv.stop()


# --------------------------------------------------------------- scenarios
#
# Each returns (RESULT, message). Defect numbers follow issue 17.


def sc_hold_cli(w):
    """1: a hold over 64 KiB placed with the CLI must be refused without
    changing holds.json, and the log must still open."""
    d = os.path.join(w, "d")
    init_log(d)
    append(d, events(3))
    hp = os.path.join(d, "holds.json")
    before = open(hp, "rb").read() if os.path.exists(hp) else None
    rc, out, err = run(["hold", "add", "--data", d, "--reason", "R" * 100_000])
    after = open(hp, "rb").read() if os.path.exists(hp) else None
    rc2, _, _, err2 = append(d, events(1, "after"), check=False)
    changed = before != after
    if rc2 != 0:
        return "VULNERABLE", f"hold add exit {rc}; the log no longer opens: {error_line(err2)}"
    if rc != 0 and changed:
        return "VULNERABLE", f"hold add refused (exit {rc}: {error_line(err)}) but holds.json changed"
    if rc == 0:
        return "DEFENDED", "the 100 KB hold was recorded whole and the log still opens"
    return "DEFENDED", f"refused (exit {rc}): {error_line(err)}; holds.json unchanged; the log opens"


def _hold_http(w, body, what):
    d = os.path.join(w, "d")
    init_log(d)
    append(d, events(3))
    token = token_create(d)
    hp = os.path.join(d, "holds.json")
    before = open(hp, "rb").read() if os.path.exists(hp) else None
    srv = Server(w, d)
    if not srv.started:
        raise ScenarioError("stele serve did not start: " + error_line(srv.output()))
    code, text = srv.http("POST", "/v1/holds", token=token, body=json.dumps(body))
    srv.stop()
    after = open(hp, "rb").read() if os.path.exists(hp) else None
    srv2 = Server(w, d)
    restarted = srv2.started
    out2 = srv2.output()
    srv2.stop()
    rc, _, _, err = append(d, events(1, "after"), check=False)
    answer = f"POST /v1/holds ({what}) → {code} {shorten(text, 150)}"
    if not restarted or rc != 0:
        why = error_line(err) if rc != 0 else error_line(out2)
        return "VULNERABLE", f"{answer}; afterwards the log no longer opens: {why}"
    if code >= 400 and before != after:
        return "VULNERABLE", f"{answer}; but holds.json changed"
    return "DEFENDED", f"{answer}; holds.json unchanged; restart and CLI open fine"


def sc_hold_http_reason(w):
    """1: POST /v1/holds with a reason over 64 KiB."""
    return _hold_http(w, {"streams": [], "reason": "R" * 100_000}, "100 KB reason")


def sc_hold_http_streams(w):
    """1: POST /v1/holds with a stream list over 64 KiB."""
    streams = [f"s{i:05d}-" + "x" * 50 for i in range(1200)]
    return _hold_http(w, {"streams": streams, "reason": "matter 17"}, "1,200 streams, 70 KB")


def _restore_timelines(w, n=20, m=20, anchor=None):
    """Builds a log of N entries, copies it (the backup), appends M identical
    events, keeps that timeline aside, restores the backup and appends the
    same M events again. Returns the paths and the restored run's output."""
    d = os.path.join(w, "d")
    backup = os.path.join(w, "backup")
    lost = os.path.join(w, "lost-timeline")
    init_log(d)
    anchor_args = ["--anchor", anchor] if anchor else []
    append(d, [dict(e, id=f"base-{i}") for i, e in enumerate(events(n, "base", pad=64))], extra=anchor_args)
    shutil.copytree(d, backup, symlinks=True)
    later = [dict(e, id=f"later-{i}") for i, e in enumerate(events(m, "later", pad=400))]
    append(d, later, extra=anchor_args)
    shutil.copytree(d, lost, symlinks=True)
    shutil.rmtree(d)
    shutil.copytree(backup, d, symlinks=True)
    rc, receipts, out, err = append(d, later, extra=anchor_args, check=False)
    return d, lost, rc, receipts, err


def sc_restore_nonce(w):
    """2: a restored backup must not seal records under a (key, nonce) pair
    already used: the ciphertexts of the same index in the lost and the
    restored timelines must not XOR to long zero runs."""
    d, lost, rc, receipts, err = _restore_timelines(w)
    if rc != 0:
        return "DEFENDED", f"the restored copy refused to append: {error_line(err)}"
    seg_rel = None
    for s in segments(d, "default"):
        seg_rel = os.path.join("segments", "default", s + ".seg")
    if not seg_rel:
        raise ScenarioError("no segment of stream default")
    r1 = seg_records(os.path.join(lost, seg_rel))
    r2 = seg_records(os.path.join(d, seg_rel))
    common = sorted(i for i in receipts_indices(receipts) if i in r1 and i in r2)
    if not common:
        raise ScenarioError("the two timelines share no index in the same segment (a UTC day boundary?)")
    if min(len(r1[i]["ct"]) for i in common) < 432:
        raise ScenarioError("the records compared are shorter than the events written (segment not parsed as expected)")
    reused, worst, gens = 0, 0, set()
    for i in common:
        a, b = r1[i]["ct"], r2[i]["ct"]
        x = bytes(p ^ q for p, q in zip(a[32:], b[32:]))  # after the random salt
        run_len = longest_zero_run(x)
        worst = max(worst, run_len)
        gens.add((r1[i]["gen"], r2[i]["gen"]))
        if run_len >= 16:
            reused += 1
    g = ", ".join(f"{a}/{b}" for a, b in sorted(gens))
    if reused:
        return "VULNERABLE", (
            f"{reused}/{len(common)} records at the same index in the two timelines XOR to zero runs "
            f"(longest {worst} bytes): keystream reused (writer generation lost/restored {g})"
        )
    return "DEFENDED", (
        f"{len(common)} records at the same index compared, longest zero run of C1⊕C2 {worst} bytes: "
        f"no keystream reuse (generations {g})"
    )


def receipts_indices(receipts):
    return [r["index"] for r in receipts if "index" in r]


def sc_restore_fork_check(w):
    """2: a holder of a checkpoint from the lost timeline must be able to
    tell that the restored server forked."""
    d, lost, rc, receipts, err = _restore_timelines(w)
    if rc != 0:
        return "DEFENDED", f"the restored copy refused to append: {error_line(err)}"
    kept = os.path.join(w, "kept-checkpoint")
    shutil.copy(os.path.join(lost, "log", "checkpoint"), kept)
    s_lost, s_new = checkpoint_size(lost), checkpoint_size(d)
    with open(kept) as f:
        root_lost = f.read().splitlines()[2]
    with open(os.path.join(d, "log", "checkpoint")) as f:
        root_new = f.read().splitlines()[2]
    fork = f"two signed checkpoints of size {s_lost}/{s_new}, roots {root_lost[:12]}…/{root_new[:12]}…"
    vrc, vmsg = verify(d)
    if not has_check():
        if vrc == 0:
            return "VULNERABLE", f"{fork}; no `stele check` command; restored log: {vmsg}"
        return "DEFENDED", f"{fork}; restored log: {vmsg}"
    srv = Server(w, d)
    if not srv.started:
        return "DEFENDED", "the restored log does not serve: " + error_line(srv.output())
    try:
        crc, out, cerr = run(["check", "--vkey", vkey_of(d), "--checkpoint", kept, "--url", srv.url], timeout=60)
    finally:
        srv.stop()
    msg = shorten(last_line(out + cerr), 220)
    if crc == 1 and "fork" in (out + cerr):
        return "DEFENDED", f"{fork}; stele check exit 1: {msg}"
    if crc == 0:
        return "VULNERABLE", f"{fork}; stele check exit 0: {msg}"
    raise ScenarioError(f"stele check exit {crc}: {msg}")


def sc_restore_anchor(w):
    """2: with an anchor kept outside the data directory, appending to a
    restored backup must be refused (rollback or fork)."""
    anchor = os.path.join(w, "anchor", "checkpoint")
    os.makedirs(os.path.dirname(anchor))
    if not has_anchor():
        d, lost, rc, receipts, err = _restore_timelines(w)
        if rc == 0:
            return "VULNERABLE", (
                "no --anchor option: the restored backup appended "
                f"{len(receipts_indices(receipts))} events at indices already signed, unnoticed"
            )
        return "DEFENDED", f"the restored copy refused to append: {error_line(err)}"
    d, lost, rc, receipts, err = _restore_timelines(w, anchor=anchor)
    if rc != 0:
        return "DEFENDED", f"append with --anchor on the restored backup refused (exit {rc}): {error_line(err)}"
    return "VULNERABLE", f"the restored backup appended {len(receipts)} events past the anchor"


def _governed(w, streams, default, hold=None):
    """A log whose policy was applied 35 days ago and whose events were
    appended 30 days ago (one epoch per stream), with an optional hold
    placed 29 days ago. Returns (data dir, {stream: epoch}, hold id)."""
    d = os.path.join(w, "d")
    init_log(d, clock="-35d")
    apply_policy(d, w, policy_toml(streams, default), clock="-35d")
    epochs = {}
    for s in streams:
        append(d, events(5, s), stream=s, clock="-30d")
        segs = segments(d, s)
        if len(segs) != 1:
            raise ScenarioError(f"expected one epoch of stream {s}, found {segs}")
        epochs[s] = segs[0]
    hold_id = None
    if hold:
        rc, out, err = run(["hold", "add", "--data", d, "--stream", hold, "--reason", "matter 17"], clock="-29d")
        if rc != 0:
            raise ScenarioError(f"setup hold add failed: {error_line(err)}")
        hold_id = out.strip().splitlines()[-1].strip()
    return d, epochs, hold_id


def _retention_verdict(d, w, token, epochs, victim, control=None, what=""):
    started, ran = serve_retention(w, d, token)
    if not started:
        return "DEFENDED", f"{what}: {ran}"
    gone = purged(d, victim, epochs[victim])
    vrc, vmsg = verify(d)
    if gone:
        return "VULNERABLE", f"{what}: epoch {victim}/{epochs[victim]} purged ({ran}); {vmsg}"
    ctl = ""
    if control:
        ctl = f"; control epoch {control}/{epochs[control]} {'purged' if purged(d, control, epochs[control]) else 'not purged'}"
    return "DEFENDED", f"{what}: epoch {victim}/{epochs[victim]} kept ({ran}{ctl}); {vmsg}"


def sc_forged_policy(w):
    """3: policies/000001.json edited (`forever` → `1d`, hash recomputed):
    retention must not purge the `forever` stream."""
    d, epochs, _ = _governed(w, {"keep": "forever", "short": "1d"}, "keep")
    token = token_create(d)
    path = os.path.join(d, "policies", "000001.json")
    rec = read_json(path)
    src = json.loads(base64.b64decode(rec["source"]))
    if policy_hash(src["toml"], CEDAR) != rec["hash"]:
        raise ScenarioError("could not reproduce the recorded policy hash (docs/policy.md)")
    src["toml"] = src["toml"].replace('retain = "forever"', 'retain = "1d"')
    rec["hash"] = policy_hash(src["toml"], CEDAR)
    rec["source"] = base64.b64encode(json.dumps(src, separators=(",", ":"), ensure_ascii=False).encode()).decode()
    write_json(path, rec)
    return _retention_verdict(d, w, token, epochs, "keep", "short", "forged policy file, retention at the real time")


def sc_forged_hold_release(w):
    """3: a hold marked released by hand in holds.json must not let
    retention purge the held epoch."""
    d, epochs, hold_id = _governed(w, {"ops": "1d"}, "ops", hold="ops")
    token = token_create(d)
    path = os.path.join(d, "holds.json")
    doc = read_json(path)
    for h in doc["holds"]:
        h["released_by"] = "mallory"
        h["released_at"] = h["placed_at"]
    write_json(path, doc)
    return _retention_verdict(d, w, token, epochs, "ops", None, "hold marked released in holds.json")


def sc_deleted_holds(w):
    """3: holds.json deleted: the held epoch must not be purged."""
    d, epochs, hold_id = _governed(w, {"ops": "1d"}, "ops", hold="ops")
    token = token_create(d)
    path = os.path.join(d, "holds.json")
    os.remove(path)
    result, msg = _retention_verdict(d, w, token, epochs, "ops", None, "holds.json deleted")
    if os.path.exists(path) and hold_id and hold_id in open(path).read():
        msg += f"; holds.json rebuilt with {hold_id}"
    return result, msg


def sc_deleted_policy(w):
    """3: deleting the policy file must not return the log to "no policy"
    (where the CLI operator is admin)."""
    d = os.path.join(w, "d")
    init_log(d)
    append(d, events(3))
    rc, out, err = apply_policy(
        d, w, policy_toml({"default": "90d"}, "default", local_roles=()), extra=["--allow-lockout"], check=False
    )
    if rc != 0:
        raise ScenarioError(f"setup policy apply (no local roles) failed: {error_line(err)}")
    rc1, _, err1 = run(["hold", "list", "--data", d])
    if rc1 == 0:
        raise ScenarioError("the operator without roles could list holds before the deletion")
    shutil.rmtree(os.path.join(d, "policies"))
    rc2, out2, err2 = run(["hold", "list", "--data", d])
    if rc2 == 0:
        vrc, vmsg = verify(d)
        return "VULNERABLE", f"after deleting policies/, `stele hold list` (denied before) ran: exit 0; {vmsg}"
    return "DEFENDED", f"after deleting policies/: exit {rc2}: {error_line(err2)}"


def sc_clock_back(w):
    """4: a shorter policy applied with the clock 31 days back must not
    purge epochs of a 90-day and a forever stream at the real time."""
    d, epochs, _ = _governed(w, {"ops": "90d", "keep": "forever"}, "ops")
    rc, out, err = apply_policy(d, w, policy_toml({"ops": "1d", "keep": "1d"}, "ops"), clock="-31d", check=False)
    applied = f"policy apply at -31d: exit {rc}" + ("" if rc == 0 else f" ({error_line(err)})")
    token = token_create(d)
    started, ran = serve_retention(w, d, token)
    if not started:
        raise ScenarioError(ran)
    gone = [s for s in ("ops", "keep") if purged(d, s, epochs[s])]
    vrc, vmsg = verify(d)
    if gone:
        return "VULNERABLE", f"{applied}; retention at the real time purged {', '.join(gone)} ({ran}); {vmsg}"
    return "DEFENDED", f"{applied}; nothing purged ({ran})"


def sc_clock_ahead_cli(w):
    """4: `stele retention run` with the clock 365 days ahead must not purge
    a 90-day epoch written 30 days ago."""
    d, epochs, _ = _governed(w, {"ops": "90d"}, "ops")
    rc, out, err = run(["retention", "run", "--data", d], clock="+365d")
    said = shorten(last_line(out + err), 200)
    if purged(d, "ops", epochs["ops"]):
        return "VULNERABLE", f"retention run at +365d purged ops/{epochs['ops']}: {said}"
    return "DEFENDED", f"retention run at +365d (exit {rc}) purged nothing: {said}"


def _clock_jump(w, grace, back_after):
    """A server started at the real time on a log whose 90-day epoch was
    written 30 days ago; its wall clock then jumps 365 days ahead (the
    monotonic clock does not move with it) and retention is asked for
    three times, 4 s apart. With BACK_AFTER the clock is set right again
    as soon as that many requests were answered. Returns (purged, answers)."""
    d, epochs, _ = _governed(w, {"ops": "90d"}, "ops")
    token = token_create(d)
    clock_file = os.path.join(w, "clock")
    with open(clock_file, "w") as f:
        f.write("+0\n")
    srv = Server(w, d, clock_file=clock_file, grace=grace)
    if not srv.started:
        raise ScenarioError("stele serve did not start: " + error_line(srv.output()))
    answers = []
    try:
        with open(clock_file, "w") as f:
            f.write("+365d\n")
        time.sleep(0.5)
        for i in range(3):
            code, body = srv.http("POST", "/v1/retention/run", token=token)
            answers.append(str(code) + (" purged" if '"segment"' in body else ""))
            if back_after is not None and i + 1 == back_after:
                with open(clock_file, "w") as f:
                    f.write("+0\n")
            time.sleep(4)
    finally:
        srv.stop()
    return purged(d, "ops", epochs["ops"]), epochs["ops"], ", ".join(answers)


def sc_clock_jump_server(w):
    """4: the wall clock of a running server (default grace) jumps 365 days
    ahead: a 90-day epoch written 30 days ago must not be purged at once."""
    gone, epoch, answers = _clock_jump(w, None, None)
    if gone:
        return "VULNERABLE", f"clock +365d while serving: POST /v1/retention/run ({answers}) purged ops/{epoch}"
    grace = " (announced; purged only if the clock stays ahead for the whole grace period, 3600 s by default)"
    return "DEFENDED", f"clock +365d while serving: POST /v1/retention/run ×3 over 12 s ({answers}) purged nothing" + (
        grace if announces() else ""
    )


def sc_clock_jump_back_server(w):
    """4: the wall clock of a running server (grace 3 s) jumps 365 days
    ahead for one retention run and is set right before the grace period
    ends: nothing may be purged."""
    gone, epoch, answers = _clock_jump(w, 3, 1)
    if gone:
        return "VULNERABLE", f"clock +365d for one request, then set right: ({answers}) purged ops/{epoch}"
    return "DEFENDED", f"clock +365d for one request, then set right; over 12 s ({answers}) nothing purged"


def sc_acked_batch(w):
    """5: a flipped bit in a record of an acknowledged batch, while its
    checkpoint is not yet published, must be reported as corruption and
    never cut as a torn tail."""
    d = os.path.join(w, "d")
    init_log(d)
    token = token_create(d)
    srv = Server(w, d, publish_ms=60000)
    if not srv.started:
        raise ScenarioError("stele serve did not start: " + error_line(srv.output()))
    batch = json.dumps([{"actor": "alice", "action": f"pay.{i}", "id": f"b-{i}"} for i in range(10)])
    code, body = srv.http("POST", "/v1/events", token=token, body=json.dumps([{"actor": "a", "action": "warm"}]))
    time.sleep(1.0)
    code, body = srv.http("POST", "/v1/events", token=token, body=batch)
    srv.stop(kill=True)  # SIGKILL right after the acknowledgement
    if code != 200:
        raise ScenarioError(f"POST /v1/events → {code} {shorten(body, 120)}")
    acked = [r["index"] for r in json.loads(body)["receipts"]]
    published = checkpoint_size(d)
    if published > min(acked):
        raise ScenarioError(
            f"the checkpoint covering the batch was published before SIGKILL (size {published}); "
            "crates/log/tests/torn_or_tampered.rs covers this state"
        )
    seg = [os.path.join(d, "segments", "default", s + ".seg") for s in segments(d, "default")][-1]
    recs = seg_records(seg)
    victim = acked[4]
    # The frame holding the entry: its own record, or the block that
    # begins at or before it.
    holder = max((first for first in recs if first <= victim), default=None)
    if holder is None:
        raise ScenarioError("acknowledged record not found in the segment")
    pos = recs[holder]["offset"] + 16 + len(recs[holder]["ct"]) // 2
    with open(seg, "r+b") as f:
        f.seek(pos)
        byte = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([byte ^ 0x10]))
    vrc, vmsg = verify(d)
    rc, receipts, out, err = append(d, [{"actor": "bob", "action": "after"}], check=False)
    state = f"batch {min(acked)}..{max(acked)} acknowledged, checkpoint size {published}, bit flipped in the frame holding entry {victim} (it begins at entry {holder})"
    if rc == 0:
        new_index = receipts_indices(receipts)[0] if receipts else None
        if new_index is not None and new_index <= max(acked):
            return "VULNERABLE", f"{state}; the next open cut the batch: new event got index {new_index}; {vmsg}"
        if vrc == 0:
            return "VULNERABLE", f"{state}; open went on and {vmsg}"
        return "DEFENDED", f"{state}; {vmsg}; next append at {new_index}"
    return "DEFENDED", f"{state}; next open refused: {error_line(err)}; {vmsg}"


def sc_token_events(w):
    """6: `stele token create` / `revoke` must append events to the log."""
    d = os.path.join(w, "d")
    init_log(d)
    append(d, events(2))
    s0 = cli_size(d)
    token = token_create(d, "ci", "writer")
    s1 = cli_size(d)
    tid = token.split("_")[1]
    rc, out, err = run(["token", "revoke", "--data", d, "--id", tid])
    if rc != 0:
        raise ScenarioError(f"token revoke failed: {error_line(err)}")
    s2 = cli_size(d)
    if s1 > s0 and s2 > s1:
        return "DEFENDED", f"log size {s0} → {s1} after token create → {s2} after token revoke"
    return "VULNERABLE", f"log size {s0} → {s1} after token create → {s2} after token revoke: no trace in the log"


def _forge_token(d):
    """Adds a hand-written admin record to tokens.json, modelled on the
    file's own records. Returns the forged token text."""
    path = os.path.join(d, "tokens.json")
    doc = read_json(path)
    rec = dict(doc["tokens"][0])
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    while "_" in secret[:1]:
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    rec["id"] = secrets.token_hex(6)
    rec["principal"] = "mallory"
    rec["roles"] = ["admin"]
    rec["secret_sha256"] = hashlib.sha256(secret.encode()).hexdigest()
    rec.pop("revoked_at", None)
    doc["tokens"].append(rec)
    write_json(path, doc)
    return f"stele_{rec['id']}_{secret}"


def sc_token_forged_http(w):
    """6: a hand-written admin record in tokens.json must not authenticate
    (POST /v1/keys/rotate)."""
    d = os.path.join(w, "d")
    init_log(d)
    append(d, events(2))
    good = token_create(d, "reader1", "reader")
    forged = _forge_token(d)
    srv = Server(w, d)
    if not srv.started:
        return "DEFENDED", "stele serve refused to start: " + error_line(srv.output())
    try:
        ctl, _ = srv.http("GET", "/v1/policy", token=good)
        code, body = srv.http("POST", "/v1/keys/rotate", token=forged)
    finally:
        out = srv.output()
        srv.stop()
    vrc, vmsg = verify(d)
    ans = f"POST /v1/keys/rotate with the forged token → {code} {shorten(body, 120)} (real reader token: {ctl})"
    if code == 200:
        return "VULNERABLE", f"{ans}; {vmsg}"
    if code in (401, 403):
        logged = [l for l in out.splitlines() if "tokens.json" in l]
        logged.sort(key=lambda l: "REFUSED" not in l.upper())
        return "DEFENDED", ans + (f"; server log: {shorten(logged[0], 160)}" if logged else "")
    raise ScenarioError(ans)


def sc_token_401_trace(w):
    """6: failed authentications must leave a trace in the log."""
    d = os.path.join(w, "d")
    init_log(d)
    append(d, events(2))
    token_create(d, "reader1", "reader")
    srv = Server(w, d)
    if not srv.started:
        raise ScenarioError("stele serve did not start: " + error_line(srv.output()))
    codes = set()
    for i in range(20):
        code, _ = srv.http("GET", "/v1/policy", token=f"stele_{secrets.token_hex(6)}_{'x' * 43}")
        codes.add(code)
    srv.stop()
    rc, out, err = run(["export", "--data", d, "--stream", "_system", "--from", "0"])
    if rc != 0:
        raise ScenarioError(f"export of _system failed: {error_line(err)}")
    actions = re.findall(r'"action"\s*:\s*"([^"]+)"', out)
    auth = sorted({a for a in actions if "auth" in a})
    if auth:
        return "DEFENDED", f"20 requests answered {sorted(codes)}; _system holds {', '.join(auth)}"
    return "VULNERABLE", (
        f"20 requests answered {sorted(codes)}; no event about them in _system "
        f"(actions there: {', '.join(sorted(set(actions))) or 'none'})"
    )


def sc_verify_tokens(w):
    """6/7: `stele verify` must notice a hand-written record in tokens.json."""
    d = os.path.join(w, "d")
    init_log(d)
    append(d, events(2))
    token_create(d, "reader1", "reader")
    _forge_token(d)
    vrc, vmsg = verify(d)
    if vrc == 0:
        return "VULNERABLE", f"forged admin record in tokens.json; {vmsg}"
    return "DEFENDED", vmsg


def sc_verify_kek_info(w):
    """7: an edited keys/kek.info `created_at` (an old key made to look
    young) must fail verify."""
    d = os.path.join(w, "d")
    init_log(d, clock="-400d")
    append(d, events(2), clock="-400d")
    run(["keys", "rotate", "--data", d], clock="-399d", check=True)
    path = os.path.join(d, "keys", "kek.info")
    with open(path) as f:
        info = json.loads(f.read())
    info["created_at"] = int(time.time()) - 10 * DAY
    with open(path, "w") as f:
        f.write(json.dumps(info, separators=(",", ":")) + "\n")
    vrc, vmsg = verify(d)
    if vrc == 0:
        return "VULNERABLE", f"kek.info created_at moved 389 days later; {vmsg}"
    return "DEFENDED", vmsg


def sc_verify_audit(w):
    """7: an edited audit/latest.json (a finding rewritten) must fail verify."""
    d = os.path.join(w, "d")
    init_log(d)
    append(d, events(2))
    run(["audit", "run", "--data", d], check=True)
    path = os.path.join(d, "audit", "latest.json")
    doc = read_json(path)
    doc["findings"][0]["detail"] = "entries 0..1000000 verified"
    write_json(path, doc)
    vrc, vmsg = verify(d)
    if vrc == 0:
        return "VULNERABLE", f"audit/latest.json finding rewritten; {vmsg}"
    return "DEFENDED", vmsg


def sc_verify_hold_id(w):
    """7: a hold id changed in holds.json must fail verify."""
    d = os.path.join(w, "d")
    init_log(d)
    append(d, events(2))
    rc, out, err = run(["hold", "add", "--data", d, "--reason", "matter 17"])
    if rc != 0:
        raise ScenarioError(f"hold add failed: {error_line(err)}")
    path = os.path.join(d, "holds.json")
    doc = read_json(path)
    hid = doc["holds"][0]["id"]
    doc["holds"][0]["id"] = hid[:-1] + ("0" if hid[-1] != "0" else "1")
    write_json(path, doc)
    vrc, vmsg = verify(d)
    if vrc == 0:
        return "VULNERABLE", f"hold id {hid} changed in holds.json; {vmsg}"
    return "DEFENDED", vmsg


def sc_verify_read_only(w):
    """7: verify on a directory that needs recovery (a torn index tail)
    must change no file."""
    d = os.path.join(w, "d")
    init_log(d)
    append(d, events(30))
    with open(os.path.join(d, "index"), "ab") as f:
        f.write(b"\x00\x00\x00\x2a\xab\xcd\xef")  # part of a record: a torn append
    shutil.copytree(d, os.path.join(w, "pristine"), symlinks=True)
    before = tree_digest(d)
    vrc, vmsg = verify(d)
    changed, created, removed = tree_changes(before, tree_digest(d))
    copy = os.path.join(w, "copy")
    shutil.copytree(os.path.join(w, "pristine"), copy, symlinks=True)
    run(["checkpoint", "--data", copy])  # a writing open of the same damage
    if not any(tree_changes(before, tree_digest(copy))):
        raise ScenarioError("a writing open of the damaged directory changes nothing: no recovery to provoke")
    if changed or created or removed:
        parts = []
        for label, items in (("changed", changed), ("created", created), ("removed", removed)):
            if items:
                parts.append(f"{label} {', '.join(sorted(items)[:6])}")
        return "VULNERABLE", f"verify modified the data directory: {'; '.join(parts)} ({vmsg})"
    return "DEFENDED", f"no file changed; {vmsg}"


SCENARIOS = [
    ("hold-cli-64k", 1, sc_hold_cli),
    ("hold-http-reason-64k", 1, sc_hold_http_reason),
    ("hold-http-streams-64k", 1, sc_hold_http_streams),
    ("restore-nonce-reuse", 2, sc_restore_nonce),
    ("restore-fork-check", 2, sc_restore_fork_check),
    ("restore-anchor", 2, sc_restore_anchor),
    ("forged-policy-file", 3, sc_forged_policy),
    ("forged-hold-release", 3, sc_forged_hold_release),
    ("deleted-holds-file", 3, sc_deleted_holds),
    ("deleted-policy-file", 3, sc_deleted_policy),
    ("clock-back-policy", 4, sc_clock_back),
    ("clock-ahead-cli", 4, sc_clock_ahead_cli),
    ("clock-jump-server", 4, sc_clock_jump_server),
    ("clock-jump-back-server", 4, sc_clock_jump_back_server),
    ("acked-batch-bitflip", 5, sc_acked_batch),
    ("token-events", 6, sc_token_events),
    ("token-forged-http", 6, sc_token_forged_http),
    ("token-401-trace", 6, sc_token_401_trace),
    ("verify-tokens-json", 7, sc_verify_tokens),
    ("verify-kek-info", 7, sc_verify_kek_info),
    ("verify-audit-json", 7, sc_verify_audit),
    ("verify-hold-id", 7, sc_verify_hold_id),
    ("verify-read-only", 7, sc_verify_read_only),
]


def main():
    if not BIN or not os.access(BIN, os.X_OK):
        print("attack-suite: set STELE_BIN to an executable stele binary", file=sys.stderr)
        return 2
    for tool in ("faketime", "curl"):
        if shutil.which(tool) is None:
            print(f"attack-suite: {tool} is required (Debian: apt-get install -y {tool})", file=sys.stderr)
            return 2
    if not os.path.exists(LIBFAKETIME):
        print(f"attack-suite: {LIBFAKETIME} is required (package libfaketime)", file=sys.stderr)
        return 2
    only = [x for x in os.environ.get("ATTACK_ONLY", "").split(",") if x]
    root = tempfile.mkdtemp(prefix="stele-attack-")
    keep = os.environ.get("ATTACK_KEEP") == "1"
    results = []
    try:
        _, v, _ = run(["--version"], timeout=30)
        print(f"# {BIN}: {v.strip()}", flush=True)
        for sid, defect, fn in SCENARIOS:
            if only and sid not in only and str(defect) not in only:
                continue
            w = os.path.join(root, sid)
            os.makedirs(w)
            t0 = time.time()
            try:
                result, msg = fn(w)
            except ScenarioError as e:
                result, msg = "ERROR", str(e)
            except Exception as e:  # a bug in the scenario, not a verdict
                result, msg = "ERROR", f"{type(e).__name__}: {e} ({traceback.format_exc().splitlines()[-3].strip()})"
            finally:
                stop_all_servers()
            msg = msg.replace(w + "/", "")
            results.append(result)
            print(f"{result:<10} defect {defect}  {sid:<22} {msg}  [{time.time() - t0:.0f}s]", flush=True)
            if not keep:
                shutil.rmtree(w, ignore_errors=True)
    finally:
        stop_all_servers()
        if keep:
            print(f"# kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    counts = {r: results.count(r) for r in ("DEFENDED", "VULNERABLE", "ERROR")}
    print(f"# {counts['DEFENDED']} defended, {counts['VULNERABLE']} vulnerable, {counts['ERROR']} errors", flush=True)
    return 0 if results and counts["DEFENDED"] == len(results) else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    sys.exit(main())
