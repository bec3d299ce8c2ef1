//! Audit log: every administrative mutation is recorded with actor, action, target and result.

mod common;

use common::Fixture;
use strata_registry::{DeviceRegistration, KeySlot, NewToken, PageRequest, Scope};

#[test]
fn mutations_are_audited_including_failures() {
    let f = Fixture::new();
    f.reg
        .register_device("alice", DeviceRegistration::new("d1"))
        .unwrap();
    f.reg.disable_device("alice", "d1").unwrap();
    f.reg.rotate_keys("bob", "d1", KeySlot::Both).unwrap();
    let _ = f.reg.register_device("bob", DeviceRegistration::new("d1"));
    f.reg
        .create_token(
            "carol",
            NewToken {
                name: None,
                scopes: vec![Scope::Read],
                streams: None,
            },
        )
        .unwrap();
    f.reg
        .bulk_register(
            "carol",
            vec![DeviceRegistration::new("d2"), DeviceRegistration::new("d1")],
        )
        .unwrap();
    f.reg.delete_device("alice", "d1").unwrap();
    // Reads are not audited.
    f.reg.get_device("d2").unwrap();

    let page = f.reg.list_audit(&PageRequest::default()).unwrap();
    let summary: Vec<(String, String, String, bool)> = page
        .items
        .iter()
        .map(|r| (r.actor.clone(), r.action.clone(), r.target.clone(), r.ok))
        .collect();
    let expect = [
        ("alice", "device.register", "d1", true),
        ("alice", "device.disable", "d1", true),
        ("bob", "device.rotate_keys", "d1", true),
        ("bob", "device.register", "d1", false),
        ("carol", "token.create", "", true),
        ("carol", "device.bulk_register", "2 devices", true),
        ("alice", "device.delete", "d1", true),
    ];
    assert_eq!(summary.len(), expect.len(), "{summary:?}");
    for (got, want) in summary.iter().zip(expect) {
        assert_eq!(got.0, want.0);
        assert_eq!(got.1, want.1);
        if !want.2.is_empty() {
            assert_eq!(got.2, want.2);
        }
        assert_eq!(got.3, want.3);
    }
    assert!(
        page.items[3]
            .detail
            .as_deref()
            .unwrap()
            .contains("already exists")
    );
    assert!(
        page.items[5]
            .detail
            .as_deref()
            .unwrap()
            .contains("created 1")
    );
    assert!(
        page.items
            .windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].time_ns <= w[1].time_ns)
    );
}

#[test]
fn audit_pagination_and_persistence() {
    let f = Fixture::new();
    for i in 0..7 {
        f.reg
            .register_device("ops", DeviceRegistration::new(format!("d{i}")))
            .unwrap();
    }
    let f = f.reopen();
    let p1 = f.reg.list_audit(&PageRequest::first(4)).unwrap();
    assert_eq!(p1.items.len(), 4);
    let p2 = f
        .reg
        .list_audit(&PageRequest {
            after: p1.next_after.clone(),
            limit: 4,
        })
        .unwrap();
    assert_eq!(p2.items.len(), 3);
    assert!(p2.next_after.is_none());
    assert_eq!(p2.items[0].seq, p1.items[3].seq + 1);
    assert!(
        f.reg
            .list_audit(&PageRequest {
                after: Some("x".into()),
                limit: 1
            })
            .is_err()
    );
}
