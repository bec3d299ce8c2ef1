//! `Registry::backup_bytes`: the copy opens as a registry with the same devices, tokens and
//! audit log, while the original keeps working.

mod common;

use common::Fixture;
use strata_registry::{DeviceRegistration, PageRequest, Registry};

#[test]
fn backup_copy_opens_with_the_same_contents() {
    let f = Fixture::new();
    let mut reg = DeviceRegistration::new("truck-1");
    reg.model = Some("truck".into());
    f.reg.register_device("admin", reg).unwrap();
    let bytes = f.reg.backup_bytes().unwrap();
    // The original is still writable after the copy.
    f.reg
        .register_device("admin", DeviceRegistration::new("truck-2"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    std::fs::write(&path, &bytes).unwrap();
    let copy = Registry::open(&path).unwrap();
    assert_eq!(
        copy.get_device("truck-1").unwrap().model.as_deref(),
        Some("truck")
    );
    assert!(copy.get_device("truck-2").is_err());
    let audit = copy.list_audit(&PageRequest::default()).unwrap();
    assert_eq!(audit.items.len(), 1);
}
