#!/usr/bin/env python3
"""The chaos soak's checker: Sluice's SQLite ledger against what each
reference gateway says it ran (`<data>/applies.jsonl`, one line per swap,
written before the swap is answered). Not Sluice's code: it reads the
ledger with sqlite3 and the gateways' files, and trusts neither Sluice's
output nor its types.

How a swap and an attempt are matched: Sluice sends each apply with a
`Sluice-Generation` taken from its clock when the request is made, after
the attempt was written as started; the gateway logs that generation. So a
swap of digest D on gateway G belongs to an attempt for (G, D) whose
[started_at, finished_at] holds the swap's generation (a little slack after
finished_at: generations run ahead of the clock by one per apply in a
millisecond). An attempt left unfinished by a kill is finished by the next
Sluice, later, so its window only grows.

Figures (the first four are defects, goal 0):
- lost: a gateway swapped to a version with no ledger attempt for it;
- invented: an attempt `applied` for (G, D) though G never ran D by the
  time the attempt finished;
- invented_deployments: the ledger says an environment ran D on every
  gateway (a deployment) while one of its gateways ran something else then;
- wrong_final_records: after the soak, a gateway the ledger calls in sync
  at D runs something else;
- unfinished: attempts never finished (after a clean stop, goal 0);
- unacknowledged: swaps whose only attempts say failed or interrupted (a
  timeout or a kill after the gateway swapped; the next pass reads the
  gateway and carries on: expected under chaos, not a defect);
- misattributed: `applied` attempts whose gateway was already running D
  from an earlier swap (an earlier attempt's answer lost to a timeout).

Usage: python3 benches/chaos/check.py LEDGER FLEET_JSON
"""

import json
import os
import sqlite3
import sys
from collections import Counter, defaultdict

# Generations may run ahead of Sluice's clock by one per apply made in the
# same millisecond; a few seconds is far more than 200 gateways make.
SLACK_MS = 5000


def read_applies(data_dir):
    path = os.path.join(data_dir, "applies.jsonl")
    swaps = []
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    swaps.append(json.loads(line))
                except ValueError:
                    pass  # a torn last line
    except FileNotFoundError:
        pass
    return swaps


def check(ledger_path, fleet):
    db = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    attempts = defaultdict(list)
    outcomes = Counter()
    unfinished = 0
    for row in db.execute("SELECT * FROM attempts ORDER BY id"):
        attempts[(row["environment"], row["gateway"])].append(dict(row))
        outcomes[row["outcome"] or "unfinished"] += 1
        unfinished += row["outcome"] is None
    deployments = [dict(r) for r in db.execute("SELECT * FROM deployments ORDER BY id")]
    records = {(r["environment"], r["gateway"]): dict(r) for r in db.execute("SELECT * FROM gateways")}
    db.close()

    swaps_of = {}
    for g in fleet:
        swaps_of[(g["environment"], g["gateway"])] = read_applies(g["data"])

    examples = []
    lost = unacknowledged = invented = misattributed = 0
    other_swaps = Counter()
    by_via = Counter()
    total_swaps = 0

    def window(attempt):
        end = attempt["finished_at"]
        return attempt["started_at"], (float("inf") if end is None else end + SLACK_MS)

    for key, swaps in swaps_of.items():
        mine = attempts.get(key, [])
        for swap in swaps:
            via = swap.get("via")
            if via not in ("protocol", "restart"):
                other_swaps[via] += 1
                continue
            total_swaps += 1
            by_via[via] += 1
            if via == "protocol":
                point = swap["generation"]
            else:
                # Logged when the gateway came back: the attempt began before.
                point = swap["at"]
            if via == "protocol":
                matches = [a for a in mine if a["digest"] == swap["digest"]
                           and window(a)[0] <= point <= window(a)[1]]
            else:
                matches = [a for a in mine if a["digest"] == swap["digest"] and a["started_at"] <= point]
            if not matches:
                lost += 1
                examples.append(f"lost: {key[0]}/{key[1]} swapped to {swap['digest'][:19]} "
                                f"(generation {swap['generation']}, {via}) with no attempt for it")
            elif all(a["outcome"] in ("failed", "interrupted") for a in matches):
                unacknowledged += 1

    for key, mine in attempts.items():
        swaps = swaps_of.get(key)
        if swaps is None:
            continue  # not one of the soak's gateways
        for a in mine:
            if a["outcome"] != "applied":
                continue
            start, end = window(a)
            ran_by_then = [s for s in swaps if s["digest"] == a["digest"] and s["at"] <= end]
            if not ran_by_then:
                invented += 1
                examples.append(f"invented: attempt {a['id']} says {key[0]}/{key[1]} applied "
                                f"{a['digest'][:19]}, which it never ran")
                continue
            own = [s for s in ran_by_then if
                   (s.get("via") == "protocol" and start <= s["generation"] <= end)
                   or (s.get("via") == "restart" and s["at"] >= start)]
            if not own:
                misattributed += 1

    invented_deployments = 0
    gateways_of = defaultdict(list)
    for g in fleet:
        gateways_of[g["environment"]].append((g["environment"], g["gateway"]))
    for d in deployments:
        for key in gateways_of.get(d["environment"], []):
            before = [s for s in swaps_of[key] if s["at"] <= d["verified_at"]]
            running = before[-1]["digest"] if before else None
            if running != d["digest"]:
                invented_deployments += 1
                examples.append(f"invented deployment {d['id']}: {d['environment']} at "
                                f"{d['digest'][:19]}, but {key[1]} ran {str(running)[:19]}")

    wrong_final = 0
    for key, swaps in swaps_of.items():
        record = records.get(key)
        if record is None or record["state"] != "in-sync":
            continue
        running = swaps[-1]["digest"] if swaps else None
        if record["observed_digest"] != running:
            wrong_final += 1
            examples.append(f"final: the ledger has {key[1]} in sync at "
                            f"{str(record['observed_digest'])[:19]}; it runs {str(running)[:19]}")

    return {
        "swaps": total_swaps,
        "swaps_by_via": dict(by_via),
        "other_swaps": dict(other_swaps),
        "attempts": dict(outcomes),
        "deployments": len(deployments),
        "lost": lost,
        "invented": invented,
        "invented_deployments": invented_deployments,
        "wrong_final_records": wrong_final,
        "unfinished": unfinished,
        "unacknowledged": unacknowledged,
        "misattributed": misattributed,
        "examples": examples[:50],
    }


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    with open(sys.argv[2]) as f:
        fleet = json.load(f)
    result = check(sys.argv[1], fleet)
    print(json.dumps(result, indent=2))
    defects = (result["lost"] + result["invented"] + result["invented_deployments"]
               + result["wrong_final_records"] + result["unfinished"])
    return 0 if defects == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
