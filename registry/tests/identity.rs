//! Identity store contract: keys are returned once, never stored or returned in clear, and
//! wrong, disabled, deleted and rotated-away credentials are refused; events are published.

mod common;

use common::{Fixture, contains};
use strata_registry::{
    DeviceFilter, DeviceRegistration, DeviceUpdate, KeySlot, PageRequest, RegistryError,
    RegistryEvent, RegistryOptions,
};

fn reg_with(id: &str) -> DeviceRegistration {
    let mut r = DeviceRegistration::new(id);
    r.model = Some("thermo-v1".into());
    r.attributes
        .insert("site".into(), serde_json::json!("berlin"));
    r
}

fn is_unauthorized<T: std::fmt::Debug>(r: Result<T, RegistryError>) -> bool {
    matches!(r, Err(RegistryError::Unauthorized(_)))
}

#[test]
fn generated_keys_are_256_bit_hex_and_authenticate() {
    let f = Fixture::new();
    let d = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    assert_eq!(d.primary_key.len(), 64);
    assert_eq!(d.secondary_key.len(), 64);
    assert!(d.primary_key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(d.primary_key, d.secondary_key);
    assert_eq!(
        f.reg.authenticate_device("dev-1", &d.primary_key).unwrap(),
        KeySlot::Primary
    );
    assert_eq!(
        f.reg
            .authenticate_device("dev-1", &d.secondary_key)
            .unwrap(),
        KeySlot::Secondary
    );
    let body = serde_json::to_value(&d).unwrap();
    assert!(body.get("primary_key").is_some() && body.get("secondary_key").is_some());
    assert_eq!(body["id"], "dev-1");
}

#[test]
fn wrong_key_unknown_device_and_bad_ids_are_refused() {
    let f = Fixture::new();
    let d = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    let mut wrong = d.primary_key.clone();
    wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
    assert!(is_unauthorized(f.reg.authenticate_device("dev-1", &wrong)));
    assert!(is_unauthorized(f.reg.authenticate_device("dev-1", "")));
    assert!(is_unauthorized(
        f.reg.authenticate_device("nope", &d.primary_key)
    ));
    assert!(is_unauthorized(
        f.reg.authenticate_device("bad id!", &d.primary_key)
    ));
    assert!(is_unauthorized(
        f.reg.authenticate_device("dev-1", &"x".repeat(10_000))
    ));
}

#[test]
fn keys_are_never_stored_in_clear() {
    let f = Fixture::new();
    let d = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    let mut supplied = DeviceRegistration::new("dev-2");
    supplied.primary_key = Some("my-own-primary-key-1234567890".into());
    supplied.secondary_key = Some("my-own-secondary-key-0987654321".into());
    f.reg.register_device("admin", supplied).unwrap();
    let rotated = f
        .reg
        .rotate_keys("admin", "dev-1", KeySlot::Secondary)
        .unwrap();
    let (_dir, bytes) = f.close_and_read();
    assert!(
        contains(&bytes, b"dev-1"),
        "sanity: the file holds the device id"
    );
    for key in [
        d.primary_key.as_str(),
        d.secondary_key.as_str(),
        rotated.secondary_key.as_deref().unwrap(),
        "my-own-primary-key-1234567890",
        "my-own-secondary-key-0987654321",
    ] {
        assert!(
            !contains(&bytes, key.as_bytes()),
            "key {key} found in the file"
        );
        let raw: Vec<u8> = (0..key.len() / 2)
            .filter_map(|i| u8::from_str_radix(key.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        if raw.len() == 32 {
            assert!(!contains(&bytes, &raw), "raw key bytes found in the file");
        }
    }
}

#[test]
fn keys_are_never_returned_by_reads() {
    let f = Fixture::new();
    let d = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    let got = serde_json::to_string(&f.reg.get_device("dev-1").unwrap()).unwrap();
    let list = serde_json::to_string(
        &f.reg
            .list_devices(&DeviceFilter::default(), &PageRequest::default())
            .unwrap(),
    )
    .unwrap();
    let snap = serde_json::to_string(&f.reg.devices_snapshot().unwrap()).unwrap();
    let audit = serde_json::to_string(&f.reg.list_audit(&PageRequest::default()).unwrap()).unwrap();
    for text in [&got, &list, &snap, &audit] {
        assert!(!text.contains(&d.primary_key));
        assert!(!text.contains(&d.secondary_key));
        assert!(!text.contains("primary_key"));
    }
}

/// Stamped events carry a write generation past the one any reader saw before the change, and
/// a reader that sees the stamp afterwards reads the changed state.
#[test]
fn stamped_events_follow_their_change() {
    let f = Fixture::new();
    let stamped = f.reg.subscribe_stamped();
    let d = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    f.reg.authenticate_device("dev-1", &d.primary_key).unwrap(); // warm the cache
    let before = f.reg.write_generation();
    f.reg.disable_device("admin", "dev-1").unwrap();
    let (stamp, event) = stamped.try_recv().unwrap();
    assert_eq!(
        event,
        RegistryEvent::DeviceDisabled {
            device_id: "dev-1".into()
        }
    );
    assert!(stamp > before, "stamp {stamp}, generation before {before}");
    assert!(f.reg.write_generation() >= stamp);
    assert!(f.reg.authenticate_device("dev-1", &d.primary_key).is_err());
    f.reg.enable_device("admin", "dev-1").unwrap();
    let (later, _) = stamped.try_recv().unwrap();
    assert!(later > stamp);
}

#[test]
fn disable_takes_effect_immediately_and_enable_restores() {
    let f = Fixture::new();
    let events = f.reg.subscribe();
    let d = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    f.reg.authenticate_device("dev-1", &d.primary_key).unwrap(); // warm the cache
    let dev = f.reg.disable_device("admin", "dev-1").unwrap();
    assert!(!dev.enabled);
    match f.reg.authenticate_device("dev-1", &d.primary_key) {
        Err(RegistryError::Unauthorized(msg)) => assert!(msg.contains("disabled"), "{msg}"),
        other => panic!("expected refusal, got {other:?}"),
    }
    assert_eq!(
        events.try_recv().unwrap(),
        RegistryEvent::DeviceDisabled {
            device_id: "dev-1".into()
        }
    );
    f.reg.enable_device("admin", "dev-1").unwrap();
    f.reg.authenticate_device("dev-1", &d.primary_key).unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        RegistryEvent::DeviceEnabled {
            device_id: "dev-1".into()
        }
    );
}

#[test]
fn rotation_refuses_old_key_and_returns_new_once() {
    let f = Fixture::new();
    let events = f.reg.subscribe();
    let d = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    f.reg.authenticate_device("dev-1", &d.primary_key).unwrap();
    let r = f
        .reg
        .rotate_keys("admin", "dev-1", KeySlot::Primary)
        .unwrap();
    assert!(r.secondary_key.is_none());
    let new_primary = r.primary_key.unwrap();
    assert!(is_unauthorized(
        f.reg.authenticate_device("dev-1", &d.primary_key)
    ));
    f.reg.authenticate_device("dev-1", &new_primary).unwrap();
    f.reg
        .authenticate_device("dev-1", &d.secondary_key)
        .unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        RegistryEvent::KeysRotated {
            device_id: "dev-1".into(),
            slot: KeySlot::Primary
        }
    );
    let both = f.reg.rotate_keys("admin", "dev-1", KeySlot::Both).unwrap();
    assert!(is_unauthorized(
        f.reg.authenticate_device("dev-1", &new_primary)
    ));
    assert!(is_unauthorized(
        f.reg.authenticate_device("dev-1", &d.secondary_key)
    ));
    f.reg
        .authenticate_device("dev-1", both.secondary_key.as_deref().unwrap())
        .unwrap();
    assert!(matches!(
        f.reg.rotate_keys("admin", "ghost", KeySlot::Both),
        Err(RegistryError::NotFound { .. })
    ));
}

#[test]
fn deleted_device_is_refused_and_announced() {
    let f = Fixture::new();
    let events = f.reg.subscribe();
    let d = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    f.reg.authenticate_device("dev-1", &d.primary_key).unwrap();
    f.reg.delete_device("admin", "dev-1").unwrap();
    assert!(is_unauthorized(
        f.reg.authenticate_device("dev-1", &d.primary_key)
    ));
    assert!(matches!(
        f.reg.get_device("dev-1"),
        Err(RegistryError::NotFound { .. })
    ));
    assert_eq!(
        events.try_recv().unwrap(),
        RegistryEvent::DeviceDeleted {
            device_id: "dev-1".into()
        }
    );
    // Re-registering the id yields new keys; the old ones stay refused.
    let again = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    assert!(is_unauthorized(
        f.reg.authenticate_device("dev-1", &d.primary_key)
    ));
    f.reg
        .authenticate_device("dev-1", &again.primary_key)
        .unwrap();
}

#[test]
fn unknown_device_registered_later_is_not_stuck_in_negative_cache() {
    let f = Fixture::new();
    assert!(is_unauthorized(
        f.reg.authenticate_device("late", "0123456789abcdef0123")
    ));
    let d = f
        .reg
        .register_device("admin", DeviceRegistration::new("late"))
        .unwrap();
    f.reg.authenticate_device("late", &d.primary_key).unwrap();
}

#[test]
fn duplicate_and_invalid_registrations_fail() {
    let f = Fixture::new();
    f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    assert!(matches!(
        f.reg.register_device("admin", reg_with("dev-1")),
        Err(RegistryError::AlreadyExists { .. })
    ));
    for bad in ["", "a b", "ümlaut", &"x".repeat(129)] {
        assert!(matches!(
            f.reg.register_device("admin", DeviceRegistration::new(bad)),
            Err(RegistryError::Invalid(_))
        ));
    }
    let mut short_key = DeviceRegistration::new("dev-2");
    short_key.primary_key = Some("short".into());
    assert!(matches!(
        f.reg.register_device("admin", short_key),
        Err(RegistryError::Invalid(_))
    ));
}

#[test]
fn certificate_thumbprint_auth() {
    let f = Fixture::new();
    let thumb = "AB".repeat(32);
    let events = f.reg.subscribe();
    let mut r = DeviceRegistration::new("cam-1");
    r.thumbprint = Some(thumb.clone());
    f.reg.register_device("admin", r).unwrap();
    assert_eq!(
        f.reg.get_device("cam-1").unwrap().thumbprint,
        Some("ab".repeat(32))
    );
    let colons: Vec<String> = (0..32).map(|_| "ab".to_string()).collect();
    f.reg
        .authenticate_device_cert("cam-1", &colons.join(":"))
        .unwrap();
    assert!(is_unauthorized(
        f.reg.authenticate_device_cert("cam-1", &"ac".repeat(32))
    ));
    assert!(is_unauthorized(
        f.reg.authenticate_device_cert("cam-1", "zz")
    ));
    let upd = DeviceUpdate {
        thumbprint: Some("cd".repeat(32)),
        ..Default::default()
    };
    f.reg.update_device("admin", "cam-1", upd).unwrap();
    assert_eq!(
        events.try_recv().unwrap(),
        RegistryEvent::ThumbprintChanged {
            device_id: "cam-1".into()
        }
    );
    assert!(is_unauthorized(
        f.reg.authenticate_device_cert("cam-1", &thumb)
    ));
    f.reg
        .authenticate_device_cert("cam-1", &"cd".repeat(32))
        .unwrap();
    f.reg.disable_device("admin", "cam-1").unwrap();
    assert!(is_unauthorized(
        f.reg.authenticate_device_cert("cam-1", &"cd".repeat(32))
    ));
}

#[test]
fn registration_json_accepts_null_and_missing_fields() {
    let r: DeviceRegistration =
        serde_json::from_str(r#"{"id": "d1", "model": "m", "attributes": null, "tags": null}"#)
            .unwrap();
    assert!(r.enabled && r.attributes.is_empty() && r.tags.is_empty());
    let r: DeviceRegistration =
        serde_json::from_str(r#"{"id": "d1", "attributes": {"a": [1, 2]}}"#).unwrap();
    assert_eq!(r.attributes["a"], serde_json::json!([1, 2]));
    assert!(
        serde_json::from_str::<DeviceRegistration>(r#"{"id": "d1", "attributes": [1]}"#).is_err()
    );
}

#[test]
fn update_changes_metadata_only() {
    let f = Fixture::new();
    let d = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    let mut attrs = serde_json::Map::new();
    attrs.insert("floor".into(), serde_json::json!(3));
    let upd = DeviceUpdate {
        model: Some(String::new()),
        attributes: Some(attrs),
        location: Some("room 12".into()),
        tags: Some(vec!["b".into(), "a".into(), "b".into()]),
        thumbprint: None,
    };
    let dev = f.reg.update_device("admin", "dev-1", upd).unwrap();
    assert_eq!(dev.model, None);
    assert_eq!(dev.attributes["floor"], serde_json::json!(3));
    assert_eq!(dev.location.as_deref(), Some("room 12"));
    assert_eq!(dev.tags, vec!["a", "b"]);
    f.reg.authenticate_device("dev-1", &d.primary_key).unwrap();
    assert!(matches!(
        f.reg
            .update_device("admin", "ghost", DeviceUpdate::default()),
        Err(RegistryError::NotFound { .. })
    ));
}

#[test]
fn state_survives_reopen_and_last_seen_is_persisted() {
    let f = Fixture::new();
    let d = f.reg.register_device("admin", reg_with("dev-1")).unwrap();
    f.reg.register_device("admin", reg_with("dev-2")).unwrap();
    f.reg.disable_device("admin", "dev-2").unwrap();
    f.reg.authenticate_device("dev-1", &d.primary_key).unwrap();
    assert!(
        f.reg.get_device("dev-1").unwrap().last_seen_ns.is_some(),
        "pending overlay"
    );
    let f = f.reopen_with(RegistryOptions {
        last_seen_flush_interval: std::time::Duration::ZERO,
        ..Default::default()
    });
    assert!(
        f.reg.get_device("dev-1").unwrap().last_seen_ns.is_some(),
        "flushed on close"
    );
    f.reg.authenticate_device("dev-1", &d.primary_key).unwrap();
    assert!(!f.reg.get_device("dev-2").unwrap().enabled);
    assert_eq!(f.reg.device_count().unwrap(), 2);
}

#[test]
fn flush_persists_last_seen_without_close() {
    let f = Fixture::new();
    let d = f
        .reg
        .register_device("admin", DeviceRegistration::new("d"))
        .unwrap();
    f.reg.authenticate_device("d", &d.primary_key).unwrap();
    f.reg.flush().unwrap();
    let row = f.reg.devices_snapshot().unwrap();
    assert!(row[0].last_seen_ns.is_some());
}

#[test]
fn dropped_subscribers_are_pruned_and_others_still_receive() {
    let f = Fixture::new();
    let gone = f.reg.subscribe();
    drop(gone);
    let live = f.reg.subscribe();
    f.reg
        .register_device("admin", DeviceRegistration::new("d"))
        .unwrap();
    f.reg.disable_device("admin", "d").unwrap();
    assert!(matches!(
        live.try_recv(),
        Ok(RegistryEvent::DeviceDisabled { .. })
    ));
}

#[test]
fn registry_is_send_and_sync_and_concurrent_auth_works() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<strata_registry::Registry>();
    let f = Fixture::new();
    let d = f
        .reg
        .register_device("admin", DeviceRegistration::new("d"))
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    f.reg.authenticate_device("d", &d.primary_key).unwrap();
                }
            });
        }
        s.spawn(|| f.reg.rotate_keys("admin", "d", KeySlot::Secondary).unwrap());
    });
    f.reg.authenticate_device("d", &d.primary_key).unwrap();
    assert!(is_unauthorized(
        f.reg.authenticate_device("d", &d.secondary_key)
    ));
}
