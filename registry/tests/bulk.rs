//! Bulk registration: per-item results, idempotent repeats, CSV input.

mod common;

use common::Fixture;
use strata_registry::{BulkItemResult, DeviceRegistration, RegistryError};

fn item(id: &str, model: &str) -> DeviceRegistration {
    let mut r = DeviceRegistration::new(id);
    r.model = Some(model.into());
    r
}

#[test]
fn bulk_reports_per_item_and_is_idempotent() {
    let f = Fixture::new();
    let batch = vec![
        item("a", "m"),
        item("b", "m"),
        item("bad id", "m"),
        item("c", "m"),
    ];
    let res = f.reg.bulk_register("admin", batch.clone()).unwrap();
    assert!(matches!(res[0], BulkItemResult::Created(_)));
    assert!(matches!(res[1], BulkItemResult::Created(_)));
    assert!(matches!(&res[2], BulkItemResult::Error { id, .. } if id == "bad id"));
    assert!(matches!(res[3], BulkItemResult::Created(_)));
    let keys = match &res[0] {
        BulkItemResult::Created(d) => d.primary_key.clone(),
        _ => unreachable!(),
    };
    f.reg.authenticate_device("a", &keys).unwrap();

    // Same request again: exists, unchanged, keys still valid.
    let again = f.reg.bulk_register("admin", batch).unwrap();
    assert!(matches!(&again[0], BulkItemResult::Exists { id } if id == "a"));
    assert!(matches!(again[2], BulkItemResult::Error { .. }));
    f.reg.authenticate_device("a", &keys).unwrap();

    // Different metadata for an existing id is an error for that item only.
    let changed = f
        .reg
        .bulk_register("admin", vec![item("a", "other"), item("d", "m")])
        .unwrap();
    assert!(
        matches!(&changed[0], BulkItemResult::Error { error, .. } if error.contains("different"))
    );
    assert!(matches!(changed[1], BulkItemResult::Created(_)));
    assert_eq!(f.reg.get_device("a").unwrap().model.as_deref(), Some("m"));
    assert_eq!(f.reg.device_count().unwrap(), 4);
}

#[test]
fn duplicate_ids_within_one_call() {
    let f = Fixture::new();
    let res = f
        .reg
        .bulk_register(
            "admin",
            vec![item("x", "m"), item("x", "m"), item("x", "n")],
        )
        .unwrap();
    assert!(matches!(res[0], BulkItemResult::Created(_)));
    assert!(matches!(res[1], BulkItemResult::Exists { .. }));
    assert!(matches!(res[2], BulkItemResult::Error { .. }));
}

#[test]
fn supplied_keys_count_for_idempotency() {
    let f = Fixture::new();
    let mut r = item("k", "m");
    r.primary_key = Some("supplied-primary-key-000".into());
    let first = f.reg.bulk_register("admin", vec![r.clone()]).unwrap();
    assert!(matches!(first[0], BulkItemResult::Created(_)));
    assert!(matches!(
        f.reg.bulk_register("admin", vec![r.clone()]).unwrap()[0],
        BulkItemResult::Exists { .. }
    ));
    r.primary_key = Some("another-primary-key-000".into());
    assert!(matches!(
        f.reg.bulk_register("admin", vec![r]).unwrap()[0],
        BulkItemResult::Error { .. }
    ));
}

#[test]
fn bulk_results_serialize_with_status() {
    let f = Fixture::new();
    let res = f
        .reg
        .bulk_register("admin", vec![item("a", "m"), item("", "m")])
        .unwrap();
    let json = serde_json::to_value(&res).unwrap();
    assert_eq!(json[0]["status"], "created");
    assert_eq!(json[0]["id"], "a");
    assert!(json[0]["primary_key"].is_string());
    assert_eq!(json[1]["status"], "error");
}

#[test]
fn too_many_items_is_invalid() {
    let f = Fixture::new();
    let reqs = vec![DeviceRegistration::new("x"); strata_registry::MAX_BULK_ITEMS + 1];
    assert!(matches!(
        f.reg.bulk_register("admin", reqs),
        Err(RegistryError::Invalid(_))
    ));
    assert_eq!(f.reg.device_count().unwrap(), 0);
}

#[test]
fn csv_bulk_keeps_row_order_and_row_errors() {
    let f = Fixture::new();
    let csv = "id,model,tags,building\n\
               s1,thermo,a;b,B7\n\
               s2,thermo,,B7,extra\n\
               s 3,thermo,,B8\n\
               s4,,,\n";
    let res = f.reg.bulk_register_csv("admin", csv).unwrap();
    assert_eq!(res.len(), 4);
    assert!(matches!(res[0], BulkItemResult::Created(_)));
    assert!(
        matches!(&res[1], BulkItemResult::Error { id, error } if id == "s2" && error.contains("line 3"))
    );
    assert!(matches!(&res[2], BulkItemResult::Error { id, .. } if id == "s 3"));
    assert!(matches!(res[3], BulkItemResult::Created(_)));
    let d = f.reg.get_device("s1").unwrap();
    assert_eq!(d.attributes["building"], serde_json::json!("B7"));
    assert_eq!(d.tags, vec!["a", "b"]);
    assert!(matches!(
        f.reg.bulk_register_csv("admin", "name\nx\n"),
        Err(RegistryError::Invalid(_))
    ));
    // Repeat is idempotent.
    let again = f.reg.bulk_register_csv("admin", csv).unwrap();
    assert!(matches!(again[0], BulkItemResult::Exists { .. }));
}
