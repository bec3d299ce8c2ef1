//! API token contract: secret shown once and never stored in clear, scopes and stream limits,
//! revocation, bootstrap admin token, persistence.

mod common;

use common::{Fixture, contains};
use strata_registry::{NewToken, PageRequest, RegistryError, RegistryEvent, Scope};

fn token(scopes: &[Scope]) -> NewToken {
    NewToken {
        name: Some("app".into()),
        scopes: scopes.to_vec(),
        streams: None,
    }
}

#[test]
fn created_token_authenticates_with_its_scopes() {
    let f = Fixture::new();
    let t = f.reg.create_token("admin", token(&[Scope::Read])).unwrap();
    assert!(t.token.starts_with(&format!("strata_{}_", t.info.id)));
    let info = f.reg.authenticate_token(&t.token).unwrap();
    assert_eq!(info.id, t.info.id);
    assert!(info.allows(Scope::Read));
    assert!(!info.allows(Scope::Write));
    assert!(matches!(
        info.check(Scope::Write, None),
        Err(RegistryError::Forbidden(_))
    ));
    info.check(Scope::Read, Some(("anydb", "anything")))
        .unwrap();
}

#[test]
fn scopes_are_hierarchical() {
    let f = Fixture::new();
    let admin = f
        .reg
        .create_token("admin", token(&[Scope::Admin]))
        .unwrap()
        .info;
    let write = f
        .reg
        .create_token("admin", token(&[Scope::Write]))
        .unwrap()
        .info;
    assert!(admin.allows(Scope::Read) && admin.allows(Scope::Write) && admin.allows(Scope::Admin));
    assert!(write.allows(Scope::Read) && write.allows(Scope::Write) && !write.allows(Scope::Admin));
}

#[test]
fn stream_limited_token() {
    let f = Fixture::new();
    let mut req = token(&[Scope::Write]);
    req.streams = Some(vec!["default/weather".into(), "fleet".into()]);
    let t = f.reg.create_token("admin", req).unwrap();
    let info = f.reg.authenticate_token(&t.token).unwrap();
    info.check(Scope::Write, Some(("default", "weather")))
        .unwrap();
    info.check(Scope::Write, Some(("fleet", "anything")))
        .unwrap();
    assert!(info.allows_database("fleet"));
    assert!(!info.allows_database("default"));
    match info.check(Scope::Write, Some(("default", "power"))) {
        Err(RegistryError::Forbidden(msg)) => assert!(msg.contains("power")),
        other => panic!("{other:?}"),
    }
    // A stream entry names one database only; a database entry is not a stream name.
    assert!(!info.allows_stream("other", "weather"));
    assert!(!info.allows_stream("other", "fleet"));
}

#[test]
fn a_token_never_mints_a_broader_one() {
    let f = Fixture::new();
    let mut req = token(&[Scope::Admin]);
    req.streams = Some(vec!["fleet".into(), "plant/power".into()]);
    let limited = f.reg.create_token("admin", req).unwrap().info;
    let forbidden = |scopes: &[Scope], streams: Option<Vec<&str>>| {
        let mut r = token(scopes);
        r.streams = streams.map(|v| v.into_iter().map(String::from).collect());
        matches!(
            f.reg.create_token_by(&limited, r),
            Err(RegistryError::Forbidden(_))
        )
    };
    assert!(
        forbidden(&[Scope::Read], None),
        "unlimited from a limited token"
    );
    assert!(forbidden(&[Scope::Read], Some(vec!["other"])));
    assert!(
        forbidden(&[Scope::Read], Some(vec!["plant"])),
        "database from a stream entry"
    );
    assert!(forbidden(&[Scope::Read], Some(vec!["plant/heat"])));
    assert!(!forbidden(
        &[Scope::Write],
        Some(vec!["fleet/trucks", "plant/power"])
    ));
    assert!(!forbidden(&[Scope::Admin], Some(vec!["fleet"])));
    let mut r = token(&[Scope::Read]);
    r.streams = Some(vec!["fleet".into()]);
    let reader = f.reg.create_token_by(&limited, r).unwrap();
    assert_eq!(reader.info.created_by, format!("token:{}", limited.id));
    let reader = reader.info;
    let mut r = token(&[Scope::Write]);
    r.streams = Some(vec!["fleet".into()]);
    assert!(
        matches!(
            f.reg.create_token_by(&reader, r),
            Err(RegistryError::Forbidden(_))
        ),
        "scope above the creator's"
    );
}

#[test]
fn wrong_and_revoked_tokens_are_refused() {
    let f = Fixture::new();
    let events = f.reg.subscribe();
    let t = f.reg.create_token("admin", token(&[Scope::Read])).unwrap();
    let mut tampered = t.token.clone();
    tampered.push('0');
    for bad in [
        tampered.as_str(),
        "",
        "strata_",
        "strata_x_y",
        "Bearer nope",
    ] {
        assert!(matches!(
            f.reg.authenticate_token(bad),
            Err(RegistryError::Unauthorized(_))
        ));
    }
    let revoked = f.reg.revoke_token("admin", &t.info.id).unwrap();
    assert!(revoked.revoked_ns.is_some());
    match f.reg.authenticate_token(&t.token) {
        Err(RegistryError::Unauthorized(msg)) => assert!(msg.contains("revoked")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        events.try_recv().unwrap(),
        RegistryEvent::TokenRevoked {
            token_id: t.info.id.clone()
        }
    );
    assert!(matches!(
        f.reg.revoke_token("admin", "nope"),
        Err(RegistryError::NotFound { .. })
    ));
}

#[test]
fn invalid_token_requests_fail() {
    let f = Fixture::new();
    assert!(matches!(
        f.reg.create_token("a", token(&[])),
        Err(RegistryError::Invalid(_))
    ));
    let mut req = token(&[Scope::Read]);
    req.streams = Some(vec!["bad name".into()]);
    assert!(matches!(
        f.reg.create_token("a", req),
        Err(RegistryError::Invalid(_))
    ));
    for bad in ["db/", "/s", "a/b/c", ""] {
        let mut req = token(&[Scope::Read]);
        req.streams = Some(vec![bad.into()]);
        assert!(
            matches!(f.reg.create_token("a", req), Err(RegistryError::Invalid(_))),
            "{bad}"
        );
    }
}

#[test]
fn secrets_not_stored_or_listed_and_survive_reopen() {
    let f = Fixture::new();
    let t = f.reg.create_token("admin", token(&[Scope::Write])).unwrap();
    let listed =
        serde_json::to_string(&f.reg.list_tokens(&PageRequest::default()).unwrap()).unwrap();
    let secret = t.token.rsplit('_').next().unwrap().to_string();
    assert!(!listed.contains(&secret));
    assert!(listed.contains(&t.info.id));
    let f = f.reopen();
    assert_eq!(f.reg.authenticate_token(&t.token).unwrap().id, t.info.id);
    let revoked = f.reg.create_token("admin", token(&[Scope::Read])).unwrap();
    f.reg.revoke_token("admin", &revoked.info.id).unwrap();
    let f = f.reopen();
    assert!(f.reg.authenticate_token(&revoked.token).is_err());
    let (_dir, bytes) = f.close_and_read();
    assert!(!contains(&bytes, t.token.as_bytes()));
    assert!(!contains(&bytes, secret.as_bytes()));
}

#[test]
fn bootstrap_admin_token_is_created_once() {
    let f = Fixture::new();
    let secret = f
        .reg
        .ensure_admin_token(None)
        .unwrap()
        .expect("first start creates one");
    let info = f.reg.authenticate_token(&secret).unwrap();
    assert!(info.allows(Scope::Admin));
    assert_eq!(f.reg.ensure_admin_token(None).unwrap(), None);
    let f = f.reopen();
    assert_eq!(f.reg.ensure_admin_token(None).unwrap(), None);
    f.reg.authenticate_token(&secret).unwrap();
    // Recovery: with every admin token revoked, a restart creates a new one.
    f.reg.revoke_token("admin", &info.id).unwrap();
    let again = f.reg.ensure_admin_token(None).unwrap().expect("recreated");
    assert_ne!(again, secret);
}

#[test]
fn env_admin_token_is_installed_and_replaced() {
    let f = Fixture::new();
    assert_eq!(
        f.reg
            .ensure_admin_token(Some("automation-secret-0001"))
            .unwrap(),
        None
    );
    let info = f.reg.authenticate_token("automation-secret-0001").unwrap();
    assert!(info.allows(Scope::Admin));
    assert_eq!(info.id, strata_registry::ENV_ADMIN_TOKEN_ID);
    // Same value again: no change; no bootstrap token either.
    f.reg
        .ensure_admin_token(Some("automation-secret-0001"))
        .unwrap();
    assert_eq!(f.reg.ensure_admin_token(None).unwrap(), None);
    // New value replaces the old one.
    f.reg
        .ensure_admin_token(Some("strata_abc_automation-2"))
        .unwrap();
    assert!(f.reg.authenticate_token("automation-secret-0001").is_err());
    f.reg.authenticate_token("strata_abc_automation-2").unwrap();
    assert!(matches!(
        f.reg.ensure_admin_token(Some("short")),
        Err(RegistryError::Invalid(_))
    ));
    let (_dir, bytes) = f.close_and_read();
    assert!(!contains(&bytes, b"strata_abc_automation-2"));
}

#[test]
fn token_pagination() {
    let f = Fixture::new();
    for _ in 0..5 {
        f.reg.create_token("admin", token(&[Scope::Read])).unwrap();
    }
    let p1 = f.reg.list_tokens(&PageRequest::first(3)).unwrap();
    assert_eq!(p1.items.len(), 3);
    let p2 = f
        .reg
        .list_tokens(&PageRequest {
            after: p1.next_after.clone(),
            limit: 3,
        })
        .unwrap();
    assert_eq!(p2.items.len(), 2);
    assert!(p2.next_after.is_none());
    assert!(p1.items.last().unwrap().id < p2.items[0].id);
}

/// A stream-limited admin may revoke only tokens it could have minted; it neither counts as
/// the admin a restart keeps (so losing every unlimited one bootstraps a new one) nor can it
/// take the unlimited admin's access away. Refused mints and revokes are audited.
#[test]
fn a_limited_admin_revokes_only_narrower_tokens_and_is_no_bootstrap_admin() {
    let f = Fixture::new();
    let boot = f
        .reg
        .ensure_admin_token(None)
        .unwrap()
        .expect("first start");
    let boot = f.reg.authenticate_token(&boot).unwrap();
    let mut req = token(&[Scope::Admin]);
    req.streams = Some(vec!["fleet".into()]);
    let limited = f.reg.create_token("admin", req).unwrap().info;
    assert!(matches!(
        f.reg.revoke_token_by(&limited, &boot.id),
        Err(RegistryError::Forbidden(_))
    ));
    let mut r = token(&[Scope::Read]);
    r.streams = Some(vec!["fleet/trucks".into()]);
    let narrow = f.reg.create_token_by(&limited, r).unwrap().info;
    f.reg.revoke_token_by(&limited, &narrow.id).unwrap();
    assert!(matches!(
        f.reg.create_token_by(&limited, token(&[Scope::Admin])),
        Err(RegistryError::Forbidden(_))
    ));
    let audit = f.reg.list_audit(&PageRequest::default()).unwrap().items;
    let refused = |action: &str| {
        audit
            .iter()
            .any(|a| a.action == action && !a.ok && a.actor == format!("token:{}", limited.id))
    };
    assert!(refused("token.revoke"), "{audit:?}");
    assert!(refused("token.create"), "{audit:?}");
    // With the unlimited admin revoked, the limited one does not stop a new bootstrap token.
    f.reg.revoke_token("admin", &boot.id).unwrap();
    let again = f.reg.ensure_admin_token(None).unwrap();
    assert!(
        again.is_some(),
        "a new unlimited admin token is bootstrapped"
    );
}

/// A revoked `STRATA_ADMIN_TOKEN` value is not brought back by a restart with the same value.
#[test]
fn a_revoked_env_admin_value_stays_revoked() {
    let f = Fixture::new();
    f.reg
        .ensure_admin_token(Some("automation-secret-0001"))
        .unwrap();
    f.reg
        .revoke_token("admin", strata_registry::ENV_ADMIN_TOKEN_ID)
        .unwrap();
    let f = f.reopen();
    let e = f
        .reg
        .ensure_admin_token(Some("automation-secret-0001"))
        .unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");
    assert!(f.reg.authenticate_token("automation-secret-0001").is_err());
    // A new value is installed.
    f.reg
        .ensure_admin_token(Some("automation-secret-0002"))
        .unwrap();
    f.reg.authenticate_token("automation-secret-0002").unwrap();
}
