//! Benchmark of the drift diff: two policy documents of about 1 MB that
//! differ in 1% of their settings, compared field by field and as a text
//! diff (what an alert and `sluice drift` carry).
//!
//! `cargo bench --bench drift` prints the median and worst of 21 runs.

use serde_json::{Value, json};
use sluice::drift::compare;
use std::time::{Duration, Instant};

const PACKS: usize = 2_000;
const RUNS: usize = 21;

/// A document of the rendered shape with `PACKS` packs; every hundredth
/// pack's PII action is `action`.
fn document(action: &str) -> Value {
    let mut packs = serde_json::Map::new();
    for p in 0..PACKS {
        let this = if p % 100 == 0 { action } else { "redact" };
        packs.insert(
            format!("pack-{p:04}"),
            json!({
                "chain": ["audit-logger", "pii-detector", "prompt-injection", "model-allowlist"],
                "description": "A pack of the synthetic benchmark document, long enough to weigh",
                "enabled": true,
                "settings": {
                    "audit-logger": {"immutable": true, "log_all_access": true, "retention_days": 365},
                    "pii-detector": {"action": this, "detect_patterns": ["email", "phone", "credit_card", "iban"], "pci_mode": true},
                    "prompt-injection": {"action": "block", "threshold": 0.8},
                    "model-allowlist": {"models": ["gpt-4o", "claude-sonnet", "llama-3-70b"]}
                },
                "version": "1.4.0"
            }),
        );
    }
    json!({"enforcement": "enforce", "format": "sluice.dev/policy/v1", "packs": packs})
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let desired = document("redact");
    let live = document("block");
    let size = serde_json::to_string(&desired).unwrap().len();
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let (changes, diff) = compare(&desired, &live);
            let elapsed = start.elapsed();
            assert_eq!(changes.len(), PACKS / 100);
            assert!(diff.contains("+"));
            elapsed
        })
        .collect();
    times.sort();
    println!(
        "diff of two {:.2} MB documents ({} changed settings): median {:.2?}, worst {:.2?} (goal < 50 ms)",
        size as f64 / 1e6,
        PACKS / 100,
        times[RUNS / 2],
        times[RUNS - 1]
    );
}
