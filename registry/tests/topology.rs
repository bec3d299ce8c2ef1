//! Entity/topology store: entities, relationships, hierarchy queries (transitive, multi-parent,
//! cycle-safe), filters, pagination, models and SQL snapshots.

mod common;

use common::Fixture;
use strata_registry::{
    DeviceFilter, DeviceModel, DeviceRegistration, EntitySpec, EntityUpdate, NodeRef, PageRequest,
    RegistryError, RelationKind, Relationship, TelemetryField, ValueKind,
};

fn entity(f: &Fixture, id: &str, kind: &str) {
    let spec = EntitySpec {
        id: id.into(),
        kind: kind.into(),
        ..Default::default()
    };
    f.reg.create_entity("admin", spec).unwrap();
}

fn device(f: &Fixture, id: &str, model: &str, floor: i64) {
    let mut r = DeviceRegistration::new(id);
    r.model = Some(model.into());
    r.attributes
        .insert("floor".into(), serde_json::json!(floor));
    r.tags = vec![format!("floor-{floor}")];
    f.reg.register_device("admin", r).unwrap();
}

fn contains(f: &Fixture, parent: &str, child: NodeRef) {
    let rel = Relationship {
        source: NodeRef::Entity(parent.into()),
        kind: RelationKind::Contains,
        target: child,
    };
    f.reg.add_relationship("admin", rel).unwrap();
}

fn e(id: &str) -> NodeRef {
    NodeRef::Entity(id.into())
}

fn d(id: &str) -> NodeRef {
    NodeRef::Device(id.into())
}

/// site → b1 → f1 → r1 → {d1, d2}; site → b2 → d3; fleet ← member_of d1, d3.
fn campus() -> Fixture {
    let f = Fixture::new();
    for (id, kind) in [
        ("site", "site"),
        ("b1", "building"),
        ("b2", "building"),
        ("f1", "floor"),
        ("r1", "room"),
        ("fleet", "fleet"),
    ] {
        entity(&f, id, kind);
    }
    device(&f, "d1", "thermo", 1);
    device(&f, "d2", "meter", 1);
    device(&f, "d3", "thermo", 2);
    contains(&f, "site", e("b1"));
    contains(&f, "site", e("b2"));
    contains(&f, "b1", e("f1"));
    contains(&f, "f1", e("r1"));
    contains(&f, "r1", d("d1"));
    contains(&f, "r1", d("d2"));
    contains(&f, "b2", d("d3"));
    for dev in ["d1", "d3"] {
        let rel = Relationship {
            source: d(dev),
            kind: RelationKind::MemberOf,
            target: e("fleet"),
        };
        f.reg.add_relationship("admin", rel).unwrap();
    }
    f
}

#[test]
fn everything_under_an_entity_is_transitive() {
    let f = campus();
    assert_eq!(f.reg.devices_under("site").unwrap(), vec!["d1", "d2", "d3"]);
    assert_eq!(f.reg.devices_under("b1").unwrap(), vec!["d1", "d2"]);
    assert_eq!(f.reg.devices_under("fleet").unwrap(), vec!["d1", "d3"]);
    assert!(f.reg.devices_under("r1").unwrap().len() == 2);
    let below = f.reg.descendants(&e("site")).unwrap();
    assert_eq!(below.entities, vec!["b1", "b2", "f1", "r1"]);
    assert!(matches!(
        f.reg.devices_under("nope"),
        Err(RegistryError::NotFound { .. })
    ));
}

#[test]
fn multi_parent_ancestors_and_paths() {
    let f = campus();
    assert_eq!(
        f.reg.ancestors(&d("d1")).unwrap(),
        vec!["b1", "f1", "fleet", "r1", "site"]
    );
    assert_eq!(
        f.reg.ancestor_paths(&d("d1")).unwrap(),
        vec!["fleet", "site/b1/f1/r1"]
    );
    let snap = f.reg.devices_snapshot().unwrap();
    let d3 = snap.iter().find(|r| r.id == "d3").unwrap();
    assert_eq!(d3.paths, vec!["fleet", "site/b2"]);
    assert_eq!(d3.model.as_deref(), Some("thermo"));
    let ents = f.reg.entities_snapshot().unwrap();
    let r1 = ents.iter().find(|r| r.id == "r1").unwrap();
    assert_eq!(r1.parents, vec!["f1"]);
    assert_eq!(r1.paths, vec!["site/b1/f1"]);
    assert_eq!(r1.kind, "room");
}

#[test]
fn cycles_do_not_hang_queries() {
    let f = campus();
    // r1 contains site: a cycle through the whole hierarchy.
    contains(&f, "r1", e("site"));
    assert_eq!(f.reg.devices_under("f1").unwrap(), vec!["d1", "d2", "d3"]);
    assert_eq!(f.reg.devices_under("site").unwrap(), vec!["d1", "d2", "d3"]);
    let anc = f.reg.ancestors(&e("site")).unwrap();
    assert_eq!(anc, vec!["b1", "f1", "r1"]);
    let paths = f.reg.ancestor_paths(&d("d1")).unwrap();
    assert!(
        paths.contains(&"site/b1/f1/r1".to_string()) || paths.contains(&"b1/f1/r1".to_string()),
        "{paths:?}"
    );
    f.reg.devices_snapshot().unwrap();
    f.reg.entities_snapshot().unwrap();
    // Self-relationships are refused outright.
    let selfloop = Relationship {
        source: e("b1"),
        kind: RelationKind::Contains,
        target: e("b1"),
    };
    assert!(matches!(
        f.reg.add_relationship("admin", selfloop),
        Err(RegistryError::Invalid(_))
    ));
}

#[test]
fn relationship_rules() {
    let f = campus();
    let dup = Relationship {
        source: e("r1"),
        kind: RelationKind::Contains,
        target: d("d1"),
    };
    assert!(matches!(
        f.reg.add_relationship("admin", dup.clone()),
        Err(RegistryError::AlreadyExists { .. })
    ));
    let dangling = Relationship {
        source: e("r1"),
        kind: RelationKind::Contains,
        target: d("ghost"),
    };
    assert!(matches!(
        f.reg.add_relationship("admin", dangling),
        Err(RegistryError::NotFound { .. })
    ));
    // Custom kinds are stored but not followed by hierarchy queries.
    let feeds = Relationship {
        source: e("b2"),
        kind: RelationKind::Custom("feeds".into()),
        target: e("b1"),
    };
    f.reg.add_relationship("admin", feeds.clone()).unwrap();
    assert_eq!(f.reg.devices_under("b2").unwrap(), vec!["d3"]);
    assert!(f.reg.relationships_of(&e("b1")).unwrap().contains(&feeds));
    let bad = Relationship {
        source: e("b2"),
        kind: RelationKind::Custom("no spaces".into()),
        target: e("b1"),
    };
    assert!(matches!(
        f.reg.add_relationship("admin", bad),
        Err(RegistryError::Invalid(_))
    ));
    f.reg.remove_relationship("admin", &dup).unwrap();
    assert_eq!(f.reg.devices_under("r1").unwrap(), vec!["d2"]);
    assert!(matches!(
        f.reg.remove_relationship("admin", &dup),
        Err(RegistryError::NotFound { .. })
    ));
    let json = serde_json::to_value(&feeds).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"source": {"entity": "b2"}, "kind": "feeds", "target": {"entity": "b1"}})
    );
}

#[test]
fn deletes_cascade_to_relationships() {
    let f = campus();
    f.reg.delete_device("admin", "d1").unwrap();
    assert_eq!(f.reg.devices_under("site").unwrap(), vec!["d2", "d3"]);
    assert_eq!(f.reg.devices_under("fleet").unwrap(), vec!["d3"]);
    f.reg.delete_entity("admin", "f1").unwrap();
    assert_eq!(f.reg.devices_under("b1").unwrap(), Vec::<String>::new());
    assert!(
        f.reg
            .relationships_snapshot()
            .unwrap()
            .iter()
            .all(|r| r.source != e("f1") && r.target != e("f1"))
    );
    let f = f.reopen();
    assert_eq!(f.reg.devices_under("site").unwrap(), vec!["d3"]);
    assert_eq!(f.reg.ancestors(&d("d2")).unwrap(), vec!["r1"]);
}

#[test]
fn hierarchy_index_is_rebuilt_on_reopen() {
    let f = campus().reopen();
    assert_eq!(f.reg.devices_under("b1").unwrap(), vec!["d1", "d2"]);
    assert_eq!(f.reg.devices_under("fleet").unwrap(), vec!["d1", "d3"]);
}

#[test]
fn filters_and_pagination() {
    let f = campus();
    let by_model = DeviceFilter {
        model: Some("thermo".into()),
        ..Default::default()
    };
    let ids = |flt: &DeviceFilter| -> Vec<String> {
        f.reg
            .list_devices(flt, &PageRequest::default())
            .unwrap()
            .items
            .into_iter()
            .map(|d| d.id)
            .collect()
    };
    assert_eq!(ids(&by_model), vec!["d1", "d3"]);
    let mut by_attr = DeviceFilter::default();
    by_attr
        .attributes
        .insert("floor".into(), serde_json::json!(1));
    assert_eq!(ids(&by_attr), vec!["d1", "d2"]);
    let by_tag = DeviceFilter {
        tag: Some("floor-2".into()),
        ..Default::default()
    };
    assert_eq!(ids(&by_tag), vec!["d3"]);
    f.reg.disable_device("admin", "d2").unwrap();
    let disabled = DeviceFilter {
        enabled: Some(false),
        ..Default::default()
    };
    assert_eq!(ids(&disabled), vec!["d2"]);
    let under = DeviceFilter {
        under: Some("b1".into()),
        model: Some("thermo".into()),
        ..Default::default()
    };
    assert_eq!(ids(&under), vec!["d1"]);

    let p1 = f
        .reg
        .list_devices(&DeviceFilter::default(), &PageRequest::first(2))
        .unwrap();
    assert_eq!(p1.items.len(), 2);
    assert_eq!(p1.next_after.as_deref(), Some("d2"));
    let p2 = f
        .reg
        .list_devices(
            &DeviceFilter::default(),
            &PageRequest {
                after: p1.next_after,
                limit: 2,
            },
        )
        .unwrap();
    assert_eq!(
        p2.items.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["d3"]
    );
    assert!(p2.next_after.is_none());
    let under_all = DeviceFilter {
        under: Some("site".into()),
        ..Default::default()
    };
    let q1 = f
        .reg
        .list_devices(&under_all, &PageRequest::first(1))
        .unwrap();
    let q2 = f
        .reg
        .list_devices(
            &under_all,
            &PageRequest {
                after: q1.next_after.clone(),
                limit: 5,
            },
        )
        .unwrap();
    assert_eq!(q1.items[0].id, "d1");
    assert_eq!(
        q2.items.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["d2", "d3"]
    );
}

#[test]
fn entity_crud() {
    let f = Fixture::new();
    entity(&f, "b1", "building");
    assert!(matches!(
        f.reg.create_entity(
            "admin",
            EntitySpec {
                id: "b1".into(),
                kind: "building".into(),
                ..Default::default()
            }
        ),
        Err(RegistryError::AlreadyExists { .. })
    ));
    assert!(matches!(
        f.reg.create_entity(
            "admin",
            EntitySpec {
                id: "b2".into(),
                kind: "no spaces".into(),
                ..Default::default()
            }
        ),
        Err(RegistryError::Invalid(_))
    ));
    let got = f.reg.get_entity("b1").unwrap();
    assert_eq!(got.name, "b1");
    let upd = EntityUpdate {
        name: Some("Building 1".into()),
        ..Default::default()
    };
    assert_eq!(
        f.reg.update_entity("admin", "b1", upd).unwrap().name,
        "Building 1"
    );
    entity(&f, "fleet-a", "fleet");
    let fleets = f
        .reg
        .list_entities(Some("fleet"), &PageRequest::default())
        .unwrap();
    assert_eq!(fleets.items.len(), 1);
    f.reg.delete_entity("admin", "b1").unwrap();
    assert!(matches!(
        f.reg.get_entity("b1"),
        Err(RegistryError::NotFound { .. })
    ));
}

#[test]
fn device_models() {
    let f = Fixture::new();
    let field = |name: &str, min, max| TelemetryField {
        name: name.into(),
        kind: ValueKind::Float,
        unit: Some("°C".into()),
        min,
        max,
        required: false,
        description: None,
    };
    let model = DeviceModel {
        id: "thermo-v1".into(),
        name: Some("Thermometer".into()),
        description: None,
        fields: vec![field("temperature", Some(-40.0), Some(85.0))],
        validation: Default::default(),
        commands: vec![],
        config: vec![],
    };
    f.reg.create_model("admin", model.clone()).unwrap();
    assert_eq!(f.reg.get_model("thermo-v1").unwrap(), model);
    assert!(matches!(
        f.reg.create_model("admin", model.clone()),
        Err(RegistryError::AlreadyExists { .. })
    ));
    let mut bad = model.clone();
    bad.id = "bad".into();
    bad.fields.push(field("temperature", None, None));
    assert!(matches!(
        f.reg.create_model("admin", bad.clone()),
        Err(RegistryError::Invalid(_))
    ));
    bad.fields = vec![field("t", Some(5.0), Some(1.0))];
    assert!(matches!(
        f.reg.create_model("admin", bad),
        Err(RegistryError::Invalid(_))
    ));
    let json = serde_json::to_value(&model).unwrap();
    assert_eq!(json["fields"][0]["type"], "float");
    let parsed: DeviceModel = serde_json::from_value(serde_json::json!({
        "id": "m2", "fields": [{"name": "on", "type": "boolean"}],
        "commands": [{"name": "reboot", "parameters": [{"name": "delay", "type": "unsigned", "unit": "s"}]}],
        "config": [{"name": "interval", "type": "integer", "min": 1, "max": 3600, "default": 60}]
    }))
    .unwrap();
    f.reg.put_model("admin", parsed).unwrap();
    assert_eq!(
        f.reg
            .list_models(&PageRequest::default())
            .unwrap()
            .items
            .len(),
        2
    );
    f.reg.delete_model("admin", "m2").unwrap();
    assert!(matches!(
        f.reg.get_model("m2"),
        Err(RegistryError::NotFound { .. })
    ));
}

#[test]
fn bulk_relationships_are_all_or_nothing_and_idempotent() {
    let f = Fixture::new();
    entity(&f, "b1", "building");
    device(&f, "d1", "m", 1);
    device(&f, "d2", "m", 1);
    let rel = |dev: &str| Relationship {
        source: e("b1"),
        kind: RelationKind::Contains,
        target: d(dev),
    };
    let bad = vec![rel("d1"), rel("ghost")];
    match f.reg.add_relationships("admin", bad) {
        Err(RegistryError::Invalid(msg)) => assert!(msg.contains("item 1"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(f.reg.devices_under("b1").unwrap().is_empty());
    assert_eq!(
        f.reg
            .add_relationships("admin", vec![rel("d1"), rel("d2"), rel("d1")])
            .unwrap(),
        2
    );
    assert_eq!(
        f.reg
            .add_relationships("admin", vec![rel("d1"), rel("d2")])
            .unwrap(),
        0
    );
    assert_eq!(f.reg.devices_under("b1").unwrap(), vec!["d1", "d2"]);
    assert_eq!(f.reg.relationships_snapshot().unwrap().len(), 2);
}
