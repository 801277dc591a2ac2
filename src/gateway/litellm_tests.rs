use super::*;
use crate::config::document::FORMAT;
use serde_json::json;

const STAMP: Stamp<'static> = Stamp {
    digest: "sha256:00000000000000000000000000000000000000000000000000000000000000aa",
    revision: "0123456789abcdef0123456789abcdef01234567",
};

fn document(enforcement: &str, packs: Value) -> PolicyDocument {
    serde_json::from_value(json!({"format": FORMAT, "enforcement": enforcement, "packs": packs}))
        .expect("a test document")
}

fn pack(chain: &[&str], settings: Value) -> Value {
    json!({"version": "1.0.0", "enabled": true, "chain": chain, "settings": settings})
}

/// The example repository's production policy (baseline overlaid, models).
fn production(enforcement: &str) -> PolicyDocument {
    document(
        enforcement,
        json!({
            "baseline": pack(
                &["audit-logger", "pii-detector", "prompt-injection"],
                json!({
                    "audit-logger": {"log_all_access": true},
                    "pii-detector": {"action": "block", "detect_patterns": ["email", "phone", "credit_card", "iban"], "pci_mode": true},
                    "prompt-injection": {"action": "block", "threshold": 0.8},
                }),
            ),
            "models": pack(
                &["model-allowlist", "rate-limit"],
                json!({
                    "model-allowlist": {"models": ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4"]},
                    "rate-limit": {"requests_per_minute": 600},
                }),
            ),
        }),
    )
}

fn base() -> Base {
    let value = json!({
        "model_list": [
            {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY", "api_base": "https://api.openai.com/v1"}},
            {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY", "rpm": 100}, "model_info": {"team": "core", "sluice_digest": "forged"}},
            {"model_name": "gpt-5", "litellm_params": {"model": "openai/gpt-5", "api_key": "os.environ/OPENAI_API_KEY"}},
        ],
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        "litellm_settings": {"drop_params": true},
        "include": ["other.yaml"],
        "environment_variables": {"OPENAI_API_KEY": "stolen"},
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn pointers(document: &PolicyDocument) -> Vec<String> {
    unsupported(document)
        .into_iter()
        .map(|u| u.pointer)
        .collect()
}

#[test]
fn production_renders_the_documented_mapping() {
    let text = render(&production("enforce"), &base(), &STAMP);
    let config = parse(&text).expect("the rendering reads back");
    // Only the base's four sections, in the fixed order, plus Sluice's own.
    let keys: Vec<&str> = config.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "model_list",
            "router_settings",
            "guardrails",
            "policies",
            "policy_attachments",
            "litellm_settings",
            "general_settings",
            "sluice"
        ]
    );
    // The allow-list drops gpt-5; rpm is the lower of base and policy.
    let names: Vec<&str> = models(&config)
        .map(|m| m["model_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gpt-4o-mini", "gpt-4o"]);
    let rpm: Vec<u64> = models(&config)
        .map(|m| m["litellm_params"]["rpm"].as_u64().unwrap())
        .collect();
    assert_eq!(rpm, [600, 100]);
    assert_eq!(
        config["router_settings"],
        json!({"optional_pre_call_checks": ["enforce_model_rate_limits"]})
    );
    // The base cannot forge a stamp; its own model_info stays.
    let info = &config["model_list"][1]["model_info"];
    assert_eq!(info["team"], "core");
    assert_eq!(info["sluice_digest"], STAMP.digest);
    assert_eq!(info["sluice_revision"], STAMP.revision);

    let guardrails = config["guardrails"].as_array().unwrap();
    let names: Vec<&str> = guardrails
        .iter()
        .map(|g| g["guardrail_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sluice.baseline.pii-detector",
            "sluice.baseline.prompt-injection"
        ]
    );
    let pii = &guardrails[0]["litellm_params"];
    assert_eq!(pii["mode"], "pre_call");
    assert_eq!(pii["default_on"], false);
    let patterns: Vec<(&str, &str)> = pii["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pattern_name"].as_str().unwrap(),
                p["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(patterns[0], ("email", "BLOCK"));
    assert!(patterns.contains(&("credit_card", "BLOCK")));
    assert!(patterns.contains(&("iban", "BLOCK")));
    assert!(patterns.contains(&("us_phone", "BLOCK")));
    let injection = &guardrails[1]["litellm_params"];
    assert_eq!(injection["mode"], "pre_call");
    assert_eq!(injection["categories"][0]["severity_threshold"], "high");
    assert_eq!(injection["categories"][0]["action"], "BLOCK");
    assert_eq!(
        config["policies"]["sluice"]["guardrails"]["add"],
        json!(names)
    );
    assert_eq!(
        config["policy_attachments"],
        json!([{"policy": "sluice", "scope": "*"}])
    );
    assert_eq!(
        config["litellm_settings"],
        json!({"callbacks": ["sluice_audit.audit"], "drop_params": true})
    );
    assert_eq!(
        config["sluice"]["chains"],
        json!({"baseline": ["audit-logger", "pii-detector", "prompt-injection"], "models": ["model-allowlist", "rate-limit"]})
    );
    // Base sections other than the four are never rendered.
    assert!(!text.contains("stolen") && !text.contains("other.yaml"));
}

#[test]
fn a_table_per_policy_and_mode() {
    // (enforcement, policy settings) → (mode, a pattern or category and its action)
    struct Case {
        enforcement: &'static str,
        policy: &'static str,
        settings: Value,
        mode: &'static str,
        check: fn(&Value),
    }
    let cases = [
        Case {
            enforcement: "enforce",
            policy: "pii-detector",
            settings: json!({"action": "redact", "detect_patterns": ["ssn", "email"]}),
            mode: "pre_call",
            check: |p| {
                assert_eq!(
                    p["patterns"],
                    json!([
                        {"pattern_type": "prebuilt", "pattern_name": "us_ssn", "action": "MASK"},
                        {"pattern_type": "prebuilt", "pattern_name": "email", "action": "MASK"},
                    ])
                )
            },
        },
        Case {
            enforcement: "enforce",
            policy: "pii-detector",
            settings: json!({"action": "redact", "detect_patterns": ["ssn", "credit_card"], "pci_mode": true}),
            mode: "pre_call",
            check: |p| {
                assert_eq!(p["patterns"][0]["action"], "MASK");
                assert_eq!(p["patterns"][1]["pattern_name"], "credit_card");
                assert_eq!(p["patterns"][1]["action"], "BLOCK");
            },
        },
        Case {
            enforcement: "enforce",
            policy: "pii-detector",
            settings: json!({"detect_patterns": ["ip_address"], "pci_mode": true}),
            mode: "pre_call",
            check: |p| {
                let names: Vec<&str> = p["patterns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["pattern_name"].as_str().unwrap())
                    .collect();
                assert_eq!(names, ["ipv4", "ipv6", "credit_card"]);
                assert_eq!(p["patterns"][0]["action"], "MASK", "redact is the default");
            },
        },
        Case {
            enforcement: "monitor",
            policy: "pii-detector",
            settings: json!({"action": "block", "detect_patterns": ["ssn"]}),
            mode: "logging_only",
            check: |p| assert_eq!(p["patterns"][0]["action"], "BLOCK"),
        },
        Case {
            enforcement: "alert",
            policy: "pii-detector",
            settings: json!({"detect_patterns": ["ssn"]}),
            mode: "logging_only",
            check: |p| assert_eq!(p["patterns"][0]["action"], "MASK"),
        },
        Case {
            enforcement: "enforce",
            policy: "prompt-injection",
            settings: json!({}),
            mode: "pre_call",
            check: |p| {
                let categories = p["categories"].as_array().unwrap();
                assert_eq!(categories.len(), 3);
                assert_eq!(categories[0]["severity_threshold"], "medium");
                assert_eq!(categories[0]["enabled"], true);
            },
        },
        Case {
            enforcement: "enforce",
            policy: "prompt-injection",
            settings: json!({"action": "flag", "threshold": 0.2}),
            mode: "logging_only",
            check: |p| assert_eq!(p["categories"][1]["severity_threshold"], "low"),
        },
        Case {
            enforcement: "monitor",
            policy: "prompt-injection",
            settings: json!({"action": "block", "threshold": 0.5}),
            mode: "logging_only",
            check: |p| assert_eq!(p["categories"][2]["action"], "BLOCK"),
        },
        Case {
            enforcement: "enforce",
            policy: "x-words",
            settings: json!({"guardrail": "litellm_content_filter", "blocked_words": [{"keyword": "acme", "action": "BLOCK"}]}),
            mode: "pre_call",
            check: |p| {
                assert_eq!(p["guardrail"], "litellm_content_filter");
                assert_eq!(p["blocked_words"][0]["keyword"], "acme");
            },
        },
        Case {
            enforcement: "enforce",
            policy: "x-words",
            settings: json!({"guardrail": "litellm_content_filter", "mode": "post_call", "default_on": true}),
            mode: "post_call",
            check: |p| assert_eq!(p["default_on"], false, "attached through the policy"),
        },
        Case {
            enforcement: "alert",
            policy: "x-words",
            settings: json!({"guardrail": "litellm_content_filter", "mode": "post_call"}),
            mode: "logging_only",
            check: |_| {},
        },
    ];
    for case in cases {
        let doc = document(
            case.enforcement,
            json!({"p": pack(&[case.policy], json!({case.policy: case.settings}))}),
        );
        let config = parse(&render(&doc, &base(), &STAMP)).unwrap();
        let guardrail = &config["guardrails"][0];
        assert_eq!(
            guardrail["guardrail_name"],
            format!("sluice.p.{}", case.policy)
        );
        let params = &guardrail["litellm_params"];
        assert_eq!(
            params["mode"], case.mode,
            "{} {}",
            case.enforcement, case.policy
        );
        (case.check)(params);
    }
}

#[test]
fn thresholds_fall_in_thirds() {
    for (threshold, bucket) in [
        (None, "medium"),
        (Some(0.0), "low"),
        (Some(0.33), "low"),
        (Some(0.34), "medium"),
        (Some(0.5), "medium"),
        (Some(0.66), "medium"),
        (Some(0.67), "high"),
        (Some(0.8), "high"),
        (Some(1.0), "high"),
    ] {
        assert_eq!(severity_threshold(threshold), bucket, "{threshold:?}");
    }
}

#[test]
fn policies_without_guardrails_in_each_mode() {
    let chain = ["audit-logger", "model-allowlist", "rate-limit"];
    let settings = json!({
        "audit-logger": {},
        "model-allowlist": {"models": ["gpt-4o"]},
        "rate-limit": {"requests_per_minute": 5},
    });
    let enforce = parse(&render(
        &document("enforce", json!({"p": pack(&chain, settings.clone())})),
        &base(),
        &STAMP,
    ))
    .unwrap();
    assert_eq!(enforce["model_list"].as_array().unwrap().len(), 1);
    assert_eq!(enforce["model_list"][0]["litellm_params"]["rpm"], 5);
    assert_eq!(
        enforce["litellm_settings"]["callbacks"],
        json!(["sluice_audit.audit_hits"])
    );
    assert!(enforce.get("guardrails").is_none() && enforce.get("policies").is_none());

    // Under monitor nothing is filtered or limited (and both are findings);
    // the base's own rpm still needs the check to mean anything.
    let monitor = parse(&render(
        &document("monitor", json!({"p": pack(&chain, settings)})),
        &base(),
        &STAMP,
    ))
    .unwrap();
    assert_eq!(monitor["model_list"].as_array().unwrap().len(), 3);
    assert!(
        monitor["model_list"][0]["litellm_params"]
            .get("rpm")
            .is_none()
    );
    assert_eq!(monitor["model_list"][1]["litellm_params"]["rpm"], 100);
    assert_eq!(
        monitor["router_settings"]["optional_pre_call_checks"],
        json!(["enforce_model_rate_limits"])
    );
}

#[test]
fn disabled_packs_contribute_nothing_and_chain_order_is_guardrail_order() {
    let mut off = pack(&["pii-detector"], json!({}));
    off["enabled"] = false.into();
    let doc = document(
        "enforce",
        json!({
            "a": pack(&["prompt-injection", "pii-detector"], json!({"pii-detector": {"detect_patterns": ["ssn"]}})),
            "b": off,
            "c": pack(&["x-one"], json!({"x-one": {"guardrail": "litellm_content_filter"}})),
        }),
    );
    let config = parse(&render(&doc, &base(), &STAMP)).unwrap();
    let names: Vec<&str> = config["guardrails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["guardrail_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sluice.a.prompt-injection",
            "sluice.a.pii-detector",
            "sluice.c.x-one"
        ]
    );
    assert_eq!(
        config["policies"]["sluice"]["guardrails"]["add"],
        json!(names)
    );
    assert!(config["sluice"]["chains"].get("b").is_none());
}

#[test]
fn rendering_is_deterministic_and_independent_of_key_order() {
    let doc = production("enforce");
    let first = render(&doc, &base(), &STAMP);
    assert_eq!(first, render(&doc, &base(), &STAMP));
    // The same base with every mapping's keys reversed renders the same bytes.
    fn reversed(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), reversed(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
            other => other.clone(),
        }
    }
    let Value::Object(base_reversed) = reversed(&Value::Object(base())) else {
        unreachable!()
    };
    assert_eq!(first, render(&doc, &base_reversed, &STAMP));
    // Another stamp changes the stamp only.
    let other = Stamp {
        digest: "sha256:bb",
        revision: "r2",
    };
    let second = render(&doc, &base(), &other);
    assert_ne!(first, second);
    assert_eq!(stamp_of(&first).unwrap().2, stamp_of(&second).unwrap().2);
}

#[test]
fn the_stamp_reads_back_and_native_detects_hand_edits() {
    let text = render(&production("enforce"), &base(), &STAMP);
    let (digest, revision, native) = stamp_of(&text).expect("stamped");
    assert_eq!(digest, STAMP.digest);
    assert_eq!(revision, STAMP.revision);
    assert!(native.starts_with("sha256:") && native.len() == 71);
    assert_eq!(native_of(&text).unwrap(), native);
    // Reformatting is not an edit; a changed action is.
    let reformatted = serde_json::to_string_pretty(&Value::Object(parse(&text).unwrap())).unwrap();
    assert_eq!(native_of(&reformatted).unwrap(), native);
    let edited = text.replacen("\"BLOCK\"", "\"MASK\"", 1);
    assert_ne!(native_of(&edited).unwrap(), native);
    // Without the top-level mapping the model entries still carry it.
    let mut config = parse(&text).unwrap();
    config.shift_remove("sluice");
    let text = emit(&Value::Object(config));
    assert_eq!(stamp_of(&text).unwrap().0, STAMP.digest);
    assert_eq!(stamp_of("model_list: []\n"), None);
    assert_eq!(stamp_of("[1, 2]"), None);
}

#[test]
fn project_of_render_is_the_projection() {
    for enforcement in ["enforce", "alert", "monitor"] {
        let doc = production(enforcement);
        let text = render(&doc, &base(), &STAMP);
        assert_eq!(
            project(&text).unwrap(),
            projected(&doc, &base()),
            "{enforcement}"
        );
    }
    let projection = projected(&production("enforce"), &base());
    assert_eq!(projection["models"], json!(["gpt-4o-mini", "gpt-4o"]));
    let packs = &projection["packs"];
    assert_eq!(
        packs["baseline"]["audit-logger"],
        json!({"on": true, "log_all_access": true})
    );
    assert_eq!(packs["baseline"]["pii-detector"]["mode"], "pre_call");
    assert_eq!(packs["baseline"]["pii-detector"]["attached"], true);
    assert_eq!(
        packs["baseline"]["pii-detector"]["patterns"]["credit_card"],
        "BLOCK"
    );
    assert_eq!(
        packs["baseline"]["prompt-injection"]["categories"]["prompt_injection_jailbreak"],
        json!({"action": "BLOCK", "enabled": true, "severity_threshold": "high"})
    );
    assert_eq!(
        packs["models"]["model-allowlist"],
        json!({"models": ["gpt-4o-mini", "gpt-4o"]})
    );
    assert_eq!(
        packs["models"]["rate-limit"],
        json!({"requests_per_minute": {"gpt-4o-mini": 600, "gpt-4o": 100}, "enforced": true})
    );
    assert!(projection.get("other_guardrails").is_none());
}

/// Paths where two JSON values differ.
fn differences(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                differences(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{at}/{k}"),
                    out,
                );
            }
        }
        _ if a != b => out.push(at.to_owned()),
        _ => {}
    }
}

#[test]
fn hand_edits_show_as_field_level_differences() {
    let doc = production("enforce");
    let desired = projected(&doc, &base());
    let text = render(&doc, &base(), &STAMP);
    let edit = |f: &dyn Fn(&mut Map<String, Value>)| {
        let mut config = parse(&text).unwrap();
        f(&mut config);
        let live = project(&emit(&Value::Object(config))).unwrap();
        let mut out = Vec::new();
        differences(&desired, &live, "", &mut out);
        out
    };
    // A guardrail removed.
    let diff = edit(&|c| {
        c["guardrails"].as_array_mut().unwrap().remove(1);
    });
    assert_eq!(diff, ["/packs/baseline/prompt-injection"]);
    // MASK ↔ BLOCK.
    let diff = edit(&|c| {
        c["guardrails"][0]["litellm_params"]["patterns"][0]["action"] = "MASK".into();
    });
    assert_eq!(diff, ["/packs/baseline/pii-detector/patterns/email"]);
    // rpm changed, and the check removed.
    let diff = edit(&|c| {
        c["model_list"][0]["litellm_params"]["rpm"] = 6000.into();
        c.shift_remove("router_settings");
    });
    assert_eq!(
        diff,
        [
            "/packs/models/rate-limit/enforced",
            "/packs/models/rate-limit/requests_per_minute/gpt-4o-mini"
        ]
    );
    // Detached (the attachment dropped) and switched to logging_only.
    let diff = edit(&|c| {
        c.shift_remove("policy_attachments");
        c["guardrails"][1]["litellm_params"]["mode"] = "logging_only".into();
    });
    assert_eq!(
        diff,
        [
            "/packs/baseline/pii-detector/attached",
            "/packs/baseline/prompt-injection/attached",
            "/packs/baseline/prompt-injection/mode"
        ]
    );
    // A model added by hand, the audit callback removed, a foreign guardrail.
    let diff = edit(&|c| {
        c["model_list"]
            .as_array_mut()
            .unwrap()
            .push(json!({"model_name": "gpt-5"}));
        c["litellm_settings"]["callbacks"] = json!([]);
        c["guardrails"]
            .as_array_mut()
            .unwrap()
            .push(json!({"guardrail_name": "mine", "litellm_params": {"guardrail": "x"}}));
    });
    assert_eq!(
        diff,
        [
            "/models",
            "/other_guardrails",
            "/packs/baseline/audit-logger/log_all_access",
            "/packs/baseline/audit-logger/on",
            // (gpt-5 has no rpm: null, which this helper does not tell from absent)
            "/packs/models/model-allowlist/models",
        ]
    );
}

#[test]
fn unsupported_settings_point_into_the_document() {
    // Production: retention and immutability.
    let mut doc = production("enforce");
    doc.packs.get_mut("baseline").unwrap().settings.0.insert(
        "audit-logger".into(),
        json!({"retention_days": 365, "immutable": true, "log_all_access": true}),
    );
    assert_eq!(
        pointers(&doc),
        [
            "/packs/baseline/settings/audit-logger/retention_days",
            "/packs/baseline/settings/audit-logger/immutable"
        ]
    );
    // immutable: false is what LiteLLM does anyway.
    doc.packs
        .get_mut("baseline")
        .unwrap()
        .settings
        .0
        .insert("audit-logger".into(), json!({"immutable": false}));
    assert_eq!(pointers(&doc), Vec::<String>::new());
    // Monitor: the allow-list and the rate limit cannot merely flag.
    assert_eq!(
        pointers(&production("monitor")),
        [
            "/packs/models/settings/model-allowlist/models",
            "/packs/models/settings/rate-limit/requests_per_minute"
        ]
    );
    // Alert: no alert delivery, besides.
    assert_eq!(pointers(&production("alert"))[0], "/enforcement");
    // Monitor or flag without an audit-logger: the flag goes nowhere.
    let flag = document(
        "enforce",
        json!({"p": pack(&["prompt-injection"], json!({"prompt-injection": {"action": "flag"}}))}),
    );
    assert_eq!(
        pointers(&flag),
        ["/packs/p/settings/prompt-injection/action"]
    );
    let monitor = document(
        "monitor",
        json!({"p": pack(&["pii-detector"], json!({"pii-detector": {"detect_patterns": ["ssn"]}}))}),
    );
    assert_eq!(pointers(&monitor), ["/enforcement"]);
    // PII kinds without a LiteLLM pattern, given or by default.
    let kinds = document(
        "enforce",
        json!({"p/q": pack(&["pii-detector"], json!({"pii-detector": {"detect_patterns": ["ssn", "name", "date_of_birth"]}}))}),
    );
    let found = unsupported(&kinds);
    assert_eq!(
        found[0].pointer,
        "/packs/p~1q/settings/pii-detector/detect_patterns"
    );
    assert!(
        found[0].message.contains("name, date_of_birth"),
        "{}",
        found[0].message
    );
    let default = document("enforce", json!({"p": pack(&["pii-detector"], json!({}))}));
    assert!(
        unsupported(&default)[0]
            .message
            .contains("default is every kind")
    );
    // Custom policies: a guardrail type, no module, no env or URL.
    let custom = document(
        "enforce",
        json!({"p": pack(&["x-a", "x-b", "x-c", "x-d"], json!({
            "x-b": {"mode": "pre_call"},
            "x-c": {"guardrail": "custom_guardrail.Mine"},
            "x-d": {"guardrail": "aporia", "api_key": "os.environ/SECRET", "api_base": "https://evil.example", "nested": [{"u": "http://x"}]},
        }))}),
    );
    assert_eq!(
        pointers(&custom),
        [
            "/packs/p/settings/x-a",
            "/packs/p/settings/x-b/guardrail",
            "/packs/p/settings/x-c/guardrail",
            "/packs/p/settings/x-d/api_key",
            "/packs/p/settings/x-d/api_base",
            "/packs/p/settings/x-d/nested/0/u",
        ]
    );
    // A disabled pack is not rendered, so it has no findings.
    let mut off = production("monitor");
    off.packs.get_mut("models").unwrap().enabled = false;
    assert_eq!(pointers(&off), Vec::<String>::new());
}

#[test]
fn variables_and_urls_of_a_base() {
    let mut base = base();
    base.insert(
        "router_settings".into(),
        json!({"redis_host": "redis.internal", "a/b": "os.environ/WEIRD"}),
    );
    assert_eq!(
        variables(&base),
        [
            (
                "/model_list/0/litellm_params/api_key".to_owned(),
                "OPENAI_API_KEY".to_owned()
            ),
            (
                "/model_list/1/litellm_params/api_key".into(),
                "OPENAI_API_KEY".into()
            ),
            (
                "/model_list/2/litellm_params/api_key".into(),
                "OPENAI_API_KEY".into()
            ),
            (
                "/general_settings/master_key".into(),
                "LITELLM_MASTER_KEY".into()
            ),
            ("/router_settings/a~1b".into(), "WEIRD".into()),
        ]
    );
    assert_eq!(
        urls(&base),
        [
            (
                "/model_list/0/litellm_params/api_base".to_owned(),
                "https://api.openai.com/v1".to_owned()
            ),
            (
                "/router_settings/redis_host".into(),
                "redis.internal".into()
            ),
        ]
    );
}

#[test]
fn yaml_is_read_the_same_by_both_readers() {
    // Values YAML 1.1 would read as booleans or numbers stay strings; odd
    // keys are quoted; floats carry a dot and a signed exponent.
    let mut base = Base::new();
    base.insert(
        "litellm_settings".into(),
        json!({"on": "no", "y": "1e5", "tricky key: #": "line\nbreak \"q\" \\ \u{2028} é 😀 \u{7}", "f": 1e20, "g": 0.5, "e": [], "m": {}, "nested": [[1, 2], [{"a": 1, "b": [true, null]}]]}),
    );
    let doc = document("enforce", json!({}));
    let text = render(&doc, &base, &STAMP);
    assert!(text.contains("\"on\": \"no\""), "{text}");
    assert!(text.contains("f: 1.0e+20"), "{text}");
    assert!(text.is_ascii());
    let back = parse(&text).unwrap();
    assert_eq!(back["litellm_settings"], sorted(&base["litellm_settings"]));
}

#[test]
fn hostile_input_to_project_is_an_error_never_a_panic() {
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_block = (0..500)
        .map(|i| format!("{}k:", " ".repeat(i * 2)))
        .collect::<Vec<_>>()
        .join("\n");
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n\
                b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
                d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n\
                f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    let huge = format!("a: \"{}\"\n", "x".repeat(MAX_CONFIG_BYTES));
    for (name, text) in [
        ("deep flow", deep.as_str()),
        ("deep block", deep_block.as_str()),
        ("alias bomb", bomb),
        ("huge", huge.as_str()),
        ("sequence root", "- 1\n- 2\n"),
        ("scalar root", "42"),
        ("empty", ""),
        ("null", "~"),
        ("syntax", "a: [\n"),
        ("two documents", "a: 1\n---\nb: 2\n"),
        ("duplicate keys", "a: 1\na: 2\n"),
    ] {
        assert!(project(text).is_err(), "{name} is refused");
        assert_eq!(stamp_of(text), None, "{name}");
        assert!(native_of(text).is_err(), "{name}");
    }
    assert!(matches!(project(&huge), Err(LitellmError::TooLarge(_))));
    // Wrong shapes everywhere are read as what they enforce: nothing.
    for text in [
        "model_list: 3\nguardrails: {a: 1}\nsluice: [1]\n",
        "model_list: [1, [2], {model_name: 3, litellm_params: 4}]\npolicy_attachments: [{scope: \"*\", policy: 1}]\n",
        "sluice: {chains: {p: [pii-detector, 3, rate-limit]}}\nguardrails: [{guardrail_name: sluice.p.pii-detector, litellm_params: {patterns: [1, {pattern_type: regex}, {pattern_type: regex, name: r, action: MASK}], categories: 7}}]\nlitellm_settings: {callbacks: 5}\nrouter_settings: {optional_pre_call_checks: 1}\n",
    ] {
        let projection = project(text).expect("a mapping projects");
        assert!(projection.get("packs").is_some());
    }
    let odd = project(
        "sluice: {chains: {p: [pii-detector]}}\nguardrails: [{guardrail_name: sluice.p.pii-detector, litellm_params: {patterns: [{pattern_type: regex, name: r, action: MASK}]}}]\n",
    )
    .unwrap();
    assert_eq!(
        odd["packs"]["p"]["pii-detector"]["patterns"],
        json!({"regex:r": "MASK"})
    );
}

#[test]
fn the_audit_callback_has_both_instances() {
    assert!(AUDIT_CALLBACK.contains("\naudit = SluiceAudit(all_access=True)"));
    assert!(AUDIT_CALLBACK.contains("\naudit_hits = SluiceAudit(all_access=False)"));
    assert_eq!(AUDIT_CALLBACK_FILE, "sluice_audit.py");
}

/// What LiteLLM 1.108.7 answered on its admin API for
/// `tests/litellm/served/config.yaml` (captured from a real proxy).
fn served_fixture() -> (String, Served) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/litellm/served");
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let served = Served {
        models: read("model_info.json"),
        guardrails: read("guardrails_list.json"),
        policies: read("policies_list.json"),
        attachments: read("policies_attachments_list.json"),
        callbacks: read("get_config_callbacks.json"),
        details: read("health_readiness_details.json"),
    };
    (
        std::fs::read_to_string(dir.join("config.yaml")).unwrap(),
        served,
    )
}

#[test]
fn what_the_api_serves_projects_as_the_config_it_was_started_with() {
    let (config, served) = served_fixture();
    let running = project_served(&served);
    assert_eq!(running, project(&config).unwrap());
    // It names packs and policies, so a drift diff does too.
    assert_eq!(
        running["packs"]["baseline"]["pii-detector"]["patterns"]["email"],
        "MASK"
    );
    assert_eq!(running["packs"]["models"]["rate-limit"]["enforced"], true);
    assert_eq!(running["packs"]["baseline"]["audit-logger"]["on"], true);
}

#[test]
fn a_guardrail_or_check_the_api_no_longer_shows_is_a_change() {
    let (config, served) = served_fixture();
    let written = project(&config).unwrap();

    let mut removed = served.clone();
    removed.guardrails["guardrails"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let running = project_served(&removed);
    assert_ne!(running, written);
    assert_eq!(running["packs"]["baseline"]["pii-detector"], Value::Null);

    let mut unchecked = served.clone();
    unchecked.details["success_callbacks"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c != RATE_LIMIT_HOOK);
    assert_eq!(
        project_served(&unchecked)["packs"]["models"]["rate-limit"]["enforced"],
        false
    );

    let mut masked = served;
    masked.guardrails["guardrails"][0]["litellm_params"]["patterns"][0]["action"] = json!("BLOCK");
    assert_ne!(project_served(&masked), written);
}

#[test]
fn a_proxy_runs_the_stamped_version_only_when_started_from_that_file_unchanged() {
    let (config, served) = served_fixture();
    let stamp = served_stamp(&served.models).expect("every model is stamped");
    let version = Digest::parse(&stamp.0).unwrap();
    assert_eq!(stamp_of(&config), Some(stamp.clone()));
    assert_eq!(
        running_version(Some(&config), Some(&stamp)),
        Some(version.clone())
    );
    // Nothing written and nothing stamped: not configured yet.
    assert_eq!(running_version(None, None), None);
    // A hand edit on disk (restarted or not), a file written but not loaded
    // yet, or a deleted file: some mix, which is no version.
    let edited = config.replacen("\"MASK\"", "\"BLOCK\"", 1);
    let newer = (
        "sha256:00000000000000000000000000000000000000000000000000000000000000bb".to_owned(),
        stamp.1.clone(),
        stamp.2.clone(),
    );
    let mixes = [
        running_version(Some(&edited), Some(&stamp)),
        running_version(Some(&config), Some(&newer)),
        running_version(None, Some(&stamp)),
        running_version(Some(&config), None),
    ];
    for mix in &mixes {
        assert!(mix.is_some() && mix.as_ref() != Some(&version), "{mix:?}");
    }
    // Models that disagree carry no stamp.
    let mut models = served.models.clone();
    models["data"][0]["model_info"]["sluice_digest"] = json!("sha256:ff");
    let mut two = served.models;
    let second = two["data"][0].clone();
    two["data"].as_array_mut().unwrap().push(second);
    assert!(served_stamp(&two).is_some());
    two["data"][1] = models["data"][0].clone();
    assert_eq!(served_stamp(&two), None);
}

#[test]
fn a_proxy_serves_its_config_whatever_defaults_it_echoes_for_a_guardrail() {
    let (config, served) = served_fixture();
    let written = project(&config).unwrap();
    let running = project_served(&served);
    assert!(serves(&written, &running));
    // A parameter LiteLLM fills in that the config did not write...
    let mut echoed = running.clone();
    echoed["packs"]["baseline"]["pii-detector"]["params"] = json!({"some_default": 3});
    assert!(serves(&written, &echoed));
    // ...but a written one that differs, or a changed action, does not serve.
    let mut with_param = written.clone();
    with_param["packs"]["baseline"]["pii-detector"]["params"] = json!({"some_default": 4});
    assert!(!serves(&with_param, &echoed));
    let mut blocked = running;
    blocked["packs"]["baseline"]["pii-detector"]["patterns"]["email"] = json!("BLOCK");
    assert!(!serves(&written, &blocked));
}
