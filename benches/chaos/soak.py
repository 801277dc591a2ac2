#!/usr/bin/env python3
"""Chaos soak (issue 18, item 5): `sluice run` over 200 http gateways while
everything around it fails, then an independent check of its ledger.

What runs, all real processes on 127.0.0.1:

- PROCESSES reference gateways (`sluice gateway --gateways PER_PROCESS`),
  200 gateways in all by default, each with a data directory (config,
  state, and the apply log `applies.jsonl` the checker reads);
- a config repository: a bare repository the driver pushes to by path,
  served to Sluice by `git daemon` (`git://127.0.0.1:PORT/config.git`);
  four environments of 50 http gateways, spread over every process;
- `sluice run` with its SQLite ledger in a temp dir, polling every 2 s.

For DURATION seconds the driver then, each on its own random clock:
commits a policy change every 10 s; SIGKILLs Sluice every 5-30 s and starts
it again at once; SIGKILLs a gateway process every 25-50 s and brings it
back 2-10 s later on the same ports and data; injects a fault into a random
live gateway every 1-3 s through `/admin/v1/faults` (a 500, a hang past
Sluice's 2 s timeout, or a 429; half of them limited to `PUT`); stops the
git daemon every 40-80 s for 5-25 s. Then every fault is cleared, every
process is up, and the time until all 200 gateways are in sync at the head
revision's version (`sluice status -o json`) is measured. Sluice is
stopped with SIGTERM and `check.py` compares the ledger with what the
gateways say they ran.

Usage:
    python3 benches/chaos/soak.py                 # 600 s
    python3 benches/chaos/soak.py --quick         # 60 s
    python3 benches/chaos/soak.py --duration 300 --seed 7 --json out.json

Python 3 standard library only. Exit 0 when the check finds nothing lost
or invented and the fleet converged; 1 otherwise.
"""

import argparse
import heapq
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKEN_ENV = "GW_TOKEN"
TOKEN = "chaos-soak-gateway-token"
ENVIRONMENTS = ["development", "staging", "production", "sandbox"]
# Sluice's per-request timeout for these gateways: hangs are longer.
GATEWAY_TIMEOUT_S = 2
CONVERGE_DEADLINE_S = 300


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port_block(count, rng):
    """A run of `count` free ports below the kernel's ephemeral range, so a
    client's outgoing connection cannot take a port of a gateway that is
    down for a while."""
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise SystemExit("no block of free ports found")


def git(*args, cwd=None):
    return subprocess.run(
        ["git", "-c", "user.name=Chaos Soak", "-c", "user.email=soak@example.invalid",
         "-c", "init.defaultBranch=main", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()


class Process:
    """A child process with its output in a log file; SIGKILL or SIGTERM."""

    def __init__(self, name, argv, env, logdir, group=False):
        self.name, self.argv, self.env, self.logdir, self.group = name, argv, env, logdir, group
        self.popen = None
        self.starts = 0

    def start(self):
        self.starts += 1
        out = open(os.path.join(self.logdir, f"{self.name}.{self.starts}.log"), "wb")
        self.popen = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=self.group,
        )
        out.close()
        return self

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def pid(self):
        return self.popen.pid

    def kill(self):
        if self.popen is None:
            return
        if self.group:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            self.popen.kill()
        self.popen.wait()

    def terminate(self, grace):
        if not self.alive():
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


def wait_port(port, deadline_s=30):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def peak_rss_kib(pid):
    """VmHWM: the highest resident set the process has had."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def admin(port, method, path, body=None, timeout=2):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.status


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = tempfile.mkdtemp(prefix="sluice-chaos-")
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs)
        self.sluice_bin = os.path.join(ROOT, "target", "release", "sluice")
        self.figures = {
            "sluice_kills": 0, "sluice_restarts": 0, "sluice_unexpected_exits": 0,
            "gateway_process_kills": 0, "git_outages": 0, "commits": 0,
            "faults": {"500": 0, "hang": 0, "429": 0},
            "faults_not_injected_gateway_down": 0,
        }
        self.peak_rss = 0
        self.loads = []
        self.last_commit = time.monotonic()

    # --- setup -----------------------------------------------------------

    def build(self):
        if self.args.no_build:
            return
        log("building sluice (release)")
        subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "--locked",
                        "--bin", "sluice"], cwd=ROOT, check=True)

    def start_fleet(self):
        a = self.args
        total = a.processes * a.per_process
        self.base_port = free_port_block(total, self.rng)
        env = dict(os.environ, **{TOKEN_ENV: TOKEN})
        self.gateway_procs = []
        for p in range(a.processes):
            data = os.path.join(self.work, "gateways", f"p{p}")
            proc = Process(f"gateway-p{p}", [
                self.sluice_bin, "gateway", "--listen",
                f"127.0.0.1:{self.base_port + p * a.per_process}",
                "--gateways", str(a.per_process), "--data", data, "--token-env", TOKEN_ENV,
            ], env, self.logs)
            proc.data = data
            proc.first_port = self.base_port + p * a.per_process
            self.gateway_procs.append(proc.start())
        # Gateway k sits on process k % P, slot k // P: every environment has
        # gateways on every process, so a process kill hits them all.
        self.fleet = []
        for k in range(total):
            p, slot = k % a.processes, k // a.processes
            env_name = ENVIRONMENTS[k * len(ENVIRONMENTS) // total]
            self.fleet.append({
                "environment": env_name, "gateway": f"gw-{k:03d}", "process": p,
                "port": self.base_port + p * a.per_process + slot,
                "data": os.path.join(self.gateway_procs[p].data, str(slot)),
            })
        for proc in self.gateway_procs:
            last = proc.first_port + a.per_process - 1
            if not (wait_port(proc.first_port) and wait_port(last)):
                raise SystemExit(f"{proc.name} did not start; see {self.logs}")
        with open(os.path.join(self.work, "fleet.json"), "w") as f:
            json.dump(self.fleet, f, indent=1)
        log(f"{total} gateways in {a.processes} processes on ports "
            f"{self.base_port}-{self.base_port + total - 1}")

    def write_repo(self, change):
        """The config repository at policy change number `change`: every
        change but every fourth bumps the shared pack (all 200 gateways get
        a new version); the others change one environment's overlay."""
        r = self.author
        os.makedirs(os.path.join(r, "base", "packs"), exist_ok=True)
        with open(os.path.join(r, "sluice.yaml"), "w") as f:
            f.write("promotion:\n  order: [" + ", ".join(ENVIRONMENTS) + "]\n"
                    "defaults:\n  enforcement: enforce\n  drift: { interval: 30s, policy: heal }\n")
        shared = change - change // 4
        with open(os.path.join(r, "base", "packs", "models.yaml"), "w") as f:
            f.write(f"pack: {{ name: models, version: 2.{shared}.0 }}\n"
                    "policies:\n  chain: [model-allowlist, rate-limit]\n"
                    "policy:\n  model-allowlist: { models: [gpt-4o, gpt-4o-mini] }\n"
                    f"  rate-limit: {{ requests_per_minute: {600 + shared} }}\n")
        with open(os.path.join(r, "base", "packs", "baseline.yaml"), "w") as f:
            f.write("pack: { name: baseline, version: 1.0.0 }\n"
                    "policies:\n  chain: [audit-logger, pii-detector]\n"
                    "policy:\n  audit-logger: { retention_days: 30 }\n"
                    "  pii-detector: { action: redact }\n")
        for i, env_name in enumerate(ENVIRONMENTS):
            d = os.path.join(r, "environments", env_name)
            os.makedirs(os.path.join(d, "packs"), exist_ok=True)
            with open(os.path.join(d, "environment.yaml"), "w") as f:
                f.write(f"slug: {env_name}\nname: {env_name.title()}\n"
                        f"isProduction: {'true' if env_name == 'production' else 'false'}\n")
            with open(os.path.join(d, "gateways.yaml"), "w") as f:
                f.write("gateways:\n")
                for g in self.fleet:
                    if g["environment"] == env_name:
                        f.write(f"  - name: {g['gateway']}\n    driver: http\n"
                                f"    url: http://127.0.0.1:{g['port']}\n"
                                f"    tokenEnv: {TOKEN_ENV}\n    timeout: {GATEWAY_TIMEOUT_S}s\n")
            # This environment's own changes so far: the overlay's retention.
            own = sum(1 for c in range(1, change + 1) if c % 4 == 0 and (c // 4) % 4 == i)
            with open(os.path.join(d, "packs", "baseline.yaml"), "w") as f:
                f.write(f"policy:\n  audit-logger: {{ retention_days: {30 + own} }}\n")

    def make_repo(self):
        git_root = os.path.join(self.work, "git")
        self.bare = os.path.join(git_root, "config.git")
        self.author = os.path.join(self.work, "author")
        os.makedirs(git_root)
        git("init", "--bare", "-q", self.bare)
        git("init", "-q", self.author)
        self.write_repo(0)
        check_run = subprocess.run([self.sluice_bin, "validate", "--repo", self.author],
                                   capture_output=True, text=True, env=self.sluice_env())
        if check_run.returncode != 0:
            raise SystemExit(f"the soak's repository does not validate:\n{check_run.stdout}{check_run.stderr}")
        git("add", "-A", cwd=self.author)
        git("commit", "-q", "-m", "chaos soak: initial", cwd=self.author)
        git("remote", "add", "origin", self.bare, cwd=self.author)
        git("push", "-q", "origin", "main", cwd=self.author)
        self.git_port = free_port_block(1, self.rng)
        self.daemon = Process("git-daemon", [
            "git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
            f"--port={self.git_port}", f"--base-path={git_root}", git_root,
        ], dict(os.environ), self.logs, group=True)
        self.daemon.start()
        if not wait_port(self.git_port):
            raise SystemExit("git daemon did not listen")

    def sluice_env(self):
        return dict(os.environ, **{
            TOKEN_ENV: TOKEN,
            "SLUICE_ALLOW_URL": "*=http://127.0.0.1:*",
            "SLUICE_ALLOW_ENV": f"*={TOKEN_ENV}",
        })

    def start_sluice(self):
        self.sluice_data = os.path.join(self.work, "sluice")
        self.sluice = Process("sluice", [
            self.sluice_bin, "run", "--repo", f"git://127.0.0.1:{self.git_port}/config.git",
            "--data-dir", self.sluice_data, "--listen", "127.0.0.1:0", "--interval", "2s",
        ], self.sluice_env(), self.logs)
        self.sluice.start()

    # --- chaos -------------------------------------------------------------

    def commit(self):
        self.figures["commits"] += 1
        n = self.figures["commits"]
        self.write_repo(n)
        git("commit", "-q", "-am", f"chaos soak: policy change {n}", cwd=self.author)
        git("push", "-q", "origin", "main", cwd=self.author)
        self.last_commit = time.monotonic()

    def kill_sluice(self):
        if self.sluice.alive():
            self.peak_rss = max(self.peak_rss, peak_rss_kib(self.sluice.pid()))
            self.sluice.kill()
            self.figures["sluice_kills"] += 1
        self.sluice.start()
        self.figures["sluice_restarts"] += 1

    def inject_fault(self):
        g = self.rng.choice(self.fleet)
        if not self.gateway_procs[g["process"]].alive():
            self.figures["faults_not_injected_gateway_down"] += 1
            return
        kind = self.rng.choice(["500", "hang", "429"])
        if kind == "500":
            body = {"status": 500, "count": self.rng.randint(1, 4)}
        elif kind == "429":
            body = {"status": 429, "count": self.rng.randint(1, 4)}
        else:
            body = {"hang_ms": self.rng.randint(GATEWAY_TIMEOUT_S * 1000 + 500, 6000), "count": 1}
        if self.rng.random() < 0.5:
            body["method"] = "PUT"
        try:
            admin(g["port"], "POST", "/admin/v1/faults", body)
            self.figures["faults"][kind] += 1
        except (urllib.error.URLError, OSError):
            self.figures["faults_not_injected_gateway_down"] += 1

    def run_chaos(self):
        a = self.args
        start = time.monotonic()
        end = start + a.duration
        events = []  # (when, sequence, kind, detail)
        seq = iter(range(10**9))

        def at(delay, kind, detail=None):
            heapq.heappush(events, (time.monotonic() + delay, next(seq), kind, detail))

        at(10, "commit")
        at(self.rng.uniform(5, 30), "kill-sluice")
        at(self.rng.uniform(25, 50), "kill-gateways")
        at(self.rng.uniform(1, 3), "fault")
        at(self.rng.uniform(40, 80), "git-away")
        at(60, "load")
        log(f"chaos for {a.duration} s")
        while True:
            now = time.monotonic()
            if self.sluice.alive():
                self.peak_rss = max(self.peak_rss, peak_rss_kib(self.sluice.pid()))
            elif self.sluice.popen is not None:
                # Sluice stopped without being killed: a crash. Counted, logged, restarted.
                self.figures["sluice_unexpected_exits"] += 1
                log(f"sluice exited by itself ({self.sluice.popen.returncode}); restarting")
                self.sluice.start()
            if not events or events[0][0] > now:
                time.sleep(min(0.2, max(0.0, events[0][0] - now)) if events else 0.2)
                continue
            when, _, kind, detail = heapq.heappop(events)
            chaos = when < end
            if kind == "commit" and chaos:
                self.commit()
                at(10, "commit")
            elif kind == "kill-sluice" and chaos:
                self.kill_sluice()
                at(self.rng.uniform(5, 30), "kill-sluice")
            elif kind == "kill-gateways" and chaos:
                proc = self.rng.choice([p for p in self.gateway_procs if p.alive()] or self.gateway_procs)
                if proc.alive():
                    proc.kill()
                    self.figures["gateway_process_kills"] += 1
                    at(self.rng.uniform(2, 10), "gateways-back", proc)
                at(self.rng.uniform(25, 50), "kill-gateways")
            elif kind == "gateways-back":
                detail.start()
            elif kind == "fault" and chaos:
                self.inject_fault()
                at(self.rng.uniform(1, 3), "fault")
            elif kind == "git-away" and chaos:
                self.daemon.kill()
                self.figures["git_outages"] += 1
                at(self.rng.uniform(5, 25), "git-back")
                at(self.rng.uniform(40, 80), "git-away")
            elif kind == "git-back":
                if not self.daemon.alive():
                    self.daemon.start()
            elif kind == "load":
                self.loads.append(os.getloadavg()[0])
                at(60, "load")
            if not chaos and not any(k in ("gateways-back", "git-back") for _, _, k, _ in events):
                break
        log("chaos over: bringing everything back")

    def restore(self):
        """Every process up, every pending fault cleared: the last fault."""
        for proc in self.gateway_procs:
            if not proc.alive():
                proc.start()
        for proc in self.gateway_procs:
            wait_port(proc.first_port + self.args.per_process - 1)
        if not self.daemon.alive():
            self.daemon.start()
        wait_port(self.git_port)
        for g in self.fleet:
            for _ in range(50):
                try:
                    admin(g["port"], "DELETE", "/admin/v1/faults")
                    break
                except (urllib.error.URLError, OSError):
                    time.sleep(0.1)
        if not self.sluice.alive():
            self.sluice.start()
        return time.monotonic()

    def converged(self, head):
        """Every gateway in sync at the head revision's version, as `sluice
        status -o json` reads it from the ledger."""
        run = subprocess.run([self.sluice_bin, "status", "-o", "json", "--data-dir", self.sluice_data],
                             capture_output=True, text=True, env=self.sluice_env())
        try:
            status = json.loads(run.stdout)
        except json.JSONDecodeError:
            return False, run.stdout + run.stderr
        gateways = status.get("gateways", [])
        good = [g for g in gateways
                if g.get("state") == "in-sync"
                and len(g.get("desiredRevision") or "") >= 8 and head.startswith(g["desiredRevision"])
                and g.get("desiredDigest") and g.get("desiredDigest") == g.get("observedDigest")]
        return len(good) == len(self.fleet) and len(gateways) == len(self.fleet), \
            f"{len(good)}/{len(self.fleet)} in sync at {head[:8]}"

    def converge(self, last_fault):
        head = git("rev-parse", "HEAD", cwd=self.author)
        deadline = last_fault + CONVERGE_DEADLINE_S
        said = None
        while time.monotonic() < deadline:
            if self.sluice.alive():
                self.peak_rss = max(self.peak_rss, peak_rss_kib(self.sluice.pid()))
            ok, summary = self.converged(head)
            if ok:
                return time.monotonic() - last_fault, head
            if summary != said and summary:
                said = summary
            time.sleep(0.5)
        log(f"did not converge within {CONVERGE_DEADLINE_S} s: {said}")
        return None, head

    def stop(self):
        self.peak_rss = max(self.peak_rss, peak_rss_kib(self.sluice.pid()) if self.sluice.alive() else 0)
        code = self.sluice.terminate(40)
        for proc in self.gateway_procs:
            proc.terminate(10)
        self.daemon.kill()
        return code

    def crashes(self):
        """Panics in any process's log."""
        found = []
        for name in sorted(os.listdir(self.logs)):
            with open(os.path.join(self.logs, name), "rb") as f:
                for line in f:
                    if b"panicked" in line:
                        found.append(f"{name}: {line.decode(errors='replace').strip()}")
        return found

    def run(self):
        self.build()
        load_before = os.getloadavg()
        self.start_fleet()
        self.make_repo()
        self.start_sluice()
        began = time.monotonic()
        self.run_chaos()
        chaos_over = time.monotonic()
        last_fault = self.restore()
        seconds, head = self.converge(last_fault)
        after_commit = None if seconds is None else last_fault + seconds - self.last_commit
        code = self.stop()
        log("checking the ledger against the gateways' apply logs")
        result = check.check(os.path.join(self.sluice_data, "state.db"), self.fleet)
        figures = dict(self.figures)
        figures.update({
            "duration_s": self.args.duration,
            "wall_s": round(time.monotonic() - began, 1),
            "gateways": len(self.fleet),
            "gateway_processes": self.args.processes,
            "converged_after_last_fault_s": None if seconds is None else round(seconds, 1),
            "converged_after_last_commit_s": None if after_commit is None else round(after_commit, 1),
            "restore_s": round(last_fault - chaos_over, 1),
            "head": head,
            "sluice_peak_rss_mib": round(self.peak_rss / 1024, 1),
            "sluice_exit_on_sigterm": code,
            "panics": self.crashes(),
            "load_1m_before": round(load_before[0], 2),
            "load_1m_during": [round(x, 2) for x in self.loads],
            "seed": self.args.seed,
            "work_dir": self.work,
            "check": result,
        })
        return figures


def table(figures):
    c = figures["check"]
    rows = [
        ("duration (s)", figures["duration_s"]),
        ("gateways / processes", f"{figures['gateways']} / {figures['gateway_processes']}"),
        ("policy commits", figures["commits"]),
        ("sluice SIGKILLs survived", f"{figures['sluice_kills']} (unexpected exits: {figures['sluice_unexpected_exits']})"),
        ("gateway process SIGKILLs", figures["gateway_process_kills"]),
        ("git remote outages", figures["git_outages"]),
        ("faults injected: 500", figures["faults"]["500"]),
        ("faults injected: hang", figures["faults"]["hang"]),
        ("faults injected: 429", figures["faults"]["429"]),
        ("applies (gateway swaps)", f"{c['swaps']} ({', '.join(f'{k} {v}' for k, v in sorted(c['swaps_by_via'].items()))})"),
        ("ledger attempts", ", ".join(f"{k} {v}" for k, v in sorted(c["attempts"].items()))),
        ("ledger records lost", c["lost"]),
        ("ledger records invented", c["invented"]),
        ("deployments not backed by the gateways", c["invented_deployments"]),
        ("in-sync records not what the gateway runs", c["wrong_final_records"]),
        ("swaps the ledger calls failed/interrupted", c["unacknowledged"]),
        ("applied attempts credited with an earlier swap", c["misattributed"]),
        ("attempts left unfinished", c["unfinished"]),
        ("restoring everything took (s)", figures["restore_s"]),
        ("converged after last fault (s)", figures["converged_after_last_fault_s"]),
        ("converged after last commit (s)", figures["converged_after_last_commit_s"]),
        ("sluice peak RSS (MiB)", figures["sluice_peak_rss_mib"]),
        ("panics in logs", len(figures["panics"])),
        ("load (1 min) during", " ".join(str(x) for x in figures["load_1m_during"])),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of chaos (default 600)")
    parser.add_argument("--quick", action="store_true", help="60 s of chaos, to try it")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--per-process", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--json", default=os.path.join(ROOT, "target", "chaos", "soak.json"))
    parser.add_argument("--no-build", action="store_true", help="use target/release/sluice as it is")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (always kept on failure)")
    args = parser.parse_args()
    if args.quick:
        args.duration = 60
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    soak = Soak(args)
    try:
        figures = soak.run()
    finally:
        for proc in [getattr(soak, "sluice", None), getattr(soak, "daemon", None),
                     *getattr(soak, "gateway_procs", [])]:
            if proc is not None and proc.alive():
                proc.kill()
    print()
    print(table(figures))
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(figures, f, indent=2)
    print(f"\nfigures: {args.json}")
    c = figures["check"]
    ok = (c["lost"] == 0 and c["invented"] == 0 and c["invented_deployments"] == 0
          and c["wrong_final_records"] == 0 and c["unfinished"] == 0
          and figures["converged_after_last_fault_s"] is not None and not figures["panics"])
    if ok and not args.keep:
        import shutil
        shutil.rmtree(soak.work, ignore_errors=True)
    else:
        print(f"work dir kept: {soak.work}")
    for example in c.get("examples", [])[:10]:
        print(f"  {example}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
