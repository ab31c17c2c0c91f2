use serde_json::json;

use super::*;

#[test]
fn a_toxic_defaults_as_toxiproxy_names_and_streams() {
    let t = Toxic::from_json(&json!({"type": "latency", "attributes": {"latency": 100}})).unwrap();
    assert_eq!(t.name, "latency_downstream");
    assert_eq!(t.stream, Stream::Downstream);
    assert!((t.toxicity - 1.0).abs() < f64::EPSILON);
    assert_eq!(
        t.kind,
        ToxicKind::Latency {
            latency: 100,
            jitter: 0
        }
    );
}

#[test]
fn the_json_round_trips_in_toxiproxys_shape() {
    let v = json!({
        "name": "s", "type": "slicer", "stream": "upstream", "toxicity": 0.5,
        "attributes": {"average_size": 10, "size_variation": 2, "delay": 5}
    });
    assert_eq!(Toxic::from_json(&v).unwrap().to_json(), v);
}

#[test]
fn bad_attributes_are_refused_naming_the_field() {
    let err = |v| Toxic::from_json(&v).unwrap_err();
    assert!(
        err(json!({"type": "bandwidth", "attributes": {"rate": -1}}))
            .starts_with("attributes.rate:")
    );
    assert!(
        err(json!({"type": "bandwidth", "attributes": {"latency": 1}}))
            .starts_with("attributes.latency:")
    );
    assert!(
        err(json!({"type": "slicer", "attributes": {}})).starts_with("attributes.average_size:")
    );
    assert!(err(json!({"type": "timeout", "stream": "sideways"})).starts_with("stream:"));
    assert!(err(json!({"type": "timeout", "toxicity": "1"})).starts_with("toxicity:"));
    assert!(err(json!({"type": "timeout", "colour": 1})).starts_with("colour:"));
    assert!(err(json!({"attributes": {}})).starts_with("type: missing"));
}

#[test]
fn an_update_merges_attributes_and_keeps_the_identity() {
    let t = Toxic::new(
        ToxicKind::Latency {
            latency: 100,
            jitter: 10,
        },
        Stream::Upstream,
    );
    let u = t
        .update_from_json(&json!({"attributes": {"latency": 5}, "toxicity": 0.25}))
        .unwrap();
    assert_eq!(
        u.kind,
        ToxicKind::Latency {
            latency: 5,
            jitter: 10
        }
    );
    assert_eq!(u.name, t.name);
    assert!(
        t.update_from_json(&json!({"stream": "downstream"}))
            .unwrap_err()
            .starts_with("stream:")
    );
}
