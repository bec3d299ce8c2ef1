//! Crash safety: a child process registers devices and aborts (no destructors, like kill -9);
//! everything committed before the abort is there after reopening.

use std::process::Command;

use strata_registry::{DeviceRegistration, Registry};

const DIR_ENV: &str = "STRATA_REGISTRY_CRASH_DIR";

/// Child half: only acts when started by `committed_state_survives_abort`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let reg = Registry::open_in_dir(&dir).unwrap();
    let mut keys = String::new();
    for i in 0..20 {
        let d = reg
            .register_device("child", DeviceRegistration::new(format!("dev-{i}")))
            .unwrap();
        keys.push_str(&format!("{} {}\n", d.device.id, d.primary_key));
    }
    reg.disable_device("child", "dev-0").unwrap();
    std::fs::write(std::path::Path::new(&dir).join("keys.txt"), keys).unwrap();
    std::process::abort();
}

#[test]
fn committed_state_survives_abort() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, dir.path())
        .status()
        .unwrap();
    assert!(!status.success(), "child must have aborted");
    let reg = Registry::open_in_dir(dir.path()).unwrap();
    assert_eq!(reg.device_count().unwrap(), 20);
    let keys = std::fs::read_to_string(dir.path().join("keys.txt")).unwrap();
    for line in keys.lines() {
        let (id, key) = line.split_once(' ').unwrap();
        let res = reg.authenticate_device(id, key);
        if id == "dev-0" {
            assert!(res.is_err(), "disable survived the crash");
        } else {
            res.unwrap();
        }
    }
}
