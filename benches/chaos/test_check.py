#!/usr/bin/env python3
"""The checker finds what it is meant to find: a ledger and apply logs made
by hand, clean and with each defect. `python3 benches/chaos/test_check.py`"""

import json
import os
import sqlite3
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402

# The columns of Sluice's ledger the checker reads.
SCHEMA = """
CREATE TABLE attempts (id INTEGER PRIMARY KEY, environment TEXT, gateway TEXT, revision TEXT,
  digest TEXT, triggered_by TEXT, started_at INTEGER, finished_at INTEGER, outcome TEXT, error TEXT);
CREATE TABLE deployments (id INTEGER PRIMARY KEY, environment TEXT, revision TEXT, digest TEXT,
  packs TEXT, verified_at INTEGER);
CREATE TABLE gateways (environment TEXT, gateway TEXT, desired_digest TEXT, desired_revision TEXT,
  observed_digest TEXT, state TEXT, changed_at INTEGER, updated_at INTEGER, error TEXT);
"""


class Fixture:
    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.ledger = os.path.join(self.dir.name, "state.db")
        self.db = sqlite3.connect(self.ledger)
        self.db.executescript(SCHEMA)
        self.fleet = []

    def gateway(self, name, swaps):
        data = os.path.join(self.dir.name, name)
        os.makedirs(data)
        with open(os.path.join(data, "applies.jsonl"), "w") as f:
            for digest, generation, at, via in swaps:
                f.write(json.dumps({"digest": digest, "generation": generation, "at": at, "via": via}) + "\n")
        self.fleet.append({"environment": "prod", "gateway": name, "data": data})

    def attempt(self, gateway, digest, started, finished, outcome):
        self.db.execute("INSERT INTO attempts (environment, gateway, revision, digest, triggered_by,"
                        " started_at, finished_at, outcome) VALUES ('prod', ?, 'r', ?, 'poll', ?, ?, ?)",
                        (gateway, digest, started, finished, outcome))

    def record(self, gateway, observed):
        self.db.execute("INSERT INTO gateways VALUES ('prod', ?, ?, 'r', ?, 'in-sync', 0, 0, NULL)",
                        (gateway, observed, observed))

    def deployment(self, digest, at):
        self.db.execute("INSERT INTO deployments (environment, revision, digest, packs, verified_at)"
                        " VALUES ('prod', 'r', ?, '[]', ?)", (digest, at))

    def check(self):
        self.db.commit()
        return check.check(self.ledger, self.fleet)


class CheckTest(unittest.TestCase):
    def test_a_clean_history_has_no_defects(self):
        f = Fixture()
        f.gateway("g1", [("A", 1000, 1010, "protocol"), ("B", 2000, 2010, "protocol")])
        f.attempt("g1", "A", 999, 1020, "applied")
        f.attempt("g1", "B", 2000, 2020, "applied")
        f.record("g1", "B")
        f.deployment("A", 1030)
        f.deployment("B", 2030)
        r = f.check()
        self.assertEqual((r["lost"], r["invented"], r["invented_deployments"], r["wrong_final_records"],
                          r["unfinished"], r["unacknowledged"], r["swaps"]), (0, 0, 0, 0, 0, 0, 2), r)

    def test_a_killed_sluice_and_a_timeout_are_not_defects(self):
        f = Fixture()
        # Swapped, then Sluice died; the next one found it running B.
        f.gateway("g1", [("A", 1000, 1010, "protocol"), ("B", 2000, 2010, "protocol"),
                         # Persisted, killed before logging: logged on restart.
                         ("C", 3000, 9000, "restart")])
        f.attempt("g1", "A", 999, 1020, "applied")
        f.attempt("g1", "B", 1990, 8000, "applied")
        f.attempt("g1", "C", 2990, 3500, "failed")
        f.record("g1", "C")
        r = f.check()
        self.assertEqual((r["lost"], r["invented"], r["unacknowledged"]), (0, 0, 1), r)

    def test_a_swap_without_an_attempt_is_lost(self):
        f = Fixture()
        f.gateway("g1", [("A", 1000, 1010, "protocol"), ("B", 2000, 2010, "protocol")])
        f.attempt("g1", "A", 999, 1020, "applied")
        # B's attempt started after the generation the gateway got: not its attempt.
        f.attempt("g1", "B", 2500, 2600, "unchanged")
        self.assertEqual(f.check()["lost"], 1)

    def test_an_applied_record_of_a_version_never_run_is_invented(self):
        f = Fixture()
        f.gateway("g1", [("A", 1000, 1010, "protocol")])
        f.attempt("g1", "A", 999, 1020, "applied")
        f.attempt("g1", "B", 2000, 2020, "applied")
        f.record("g1", "B")
        f.deployment("B", 2030)
        r = f.check()
        self.assertEqual((r["invented"], r["invented_deployments"], r["wrong_final_records"]), (1, 1, 1), r)

    def test_an_unfinished_attempt_is_counted(self):
        f = Fixture()
        f.gateway("g1", [])
        f.attempt("g1", "A", 999, None, None)
        self.assertEqual(f.check()["unfinished"], 1)


if __name__ == "__main__":
    unittest.main()
