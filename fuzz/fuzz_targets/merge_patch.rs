//! The JSON merge patch (RFC 7386) that overlays an environment's pack on
//! its base: two JSON values in a row, the target and the patch.
//! Properties: no panic; applying a patch twice is applying it once; keys
//! the patch sets are what it says, keys it deletes are gone, keys it does
//! not name keep their value and their order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sluice::config::merge::merge_patch;

fuzz_target!(|data: &[u8]| {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let (Some(Ok(target)), Some(Ok(patch))) = (values.next(), values.next()) else {
        return;
    };
    let mut once = target.clone();
    merge_patch(&mut once, &patch);
    let mut twice = once.clone();
    merge_patch(&mut twice, &patch);
    assert_eq!(once, twice, "a merge patch is idempotent");
    let (Value::Object(before), Value::Object(patch), Value::Object(after)) =
        (&target, &patch, &once)
    else {
        return;
    };
    for (key, value) in patch {
        match value {
            Value::Null => assert!(!after.contains_key(key), "`{key}` deleted"),
            Value::Object(_) => assert!(after.get(key).is_some_and(Value::is_object)),
            other => assert_eq!(after.get(key), Some(other), "`{key}` replaced"),
        }
    }
    let kept = |map: &serde_json::Map<String, Value>| -> Vec<(String, Value)> {
        map.iter()
            .filter(|(k, _)| !patch.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(kept(before), kept(after), "keys the patch does not name");
});
