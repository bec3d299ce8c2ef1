//! Property tests: id validation matches its regex, CSV parsing never panics and round-trips
//! simple rows.

use proptest::prelude::*;
use strata_registry::{parse_devices_csv, validate_device_id};

fn reference_valid(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

proptest! {
    #[test]
    fn id_validation_matches_the_pattern(id in ".{0,140}") {
        prop_assert_eq!(validate_device_id(&id).is_ok(), reference_valid(&id));
    }

    #[test]
    fn valid_ids_are_accepted(id in "[A-Za-z0-9._:-]{1,128}") {
        prop_assert!(validate_device_id(&id).is_ok());
    }

    #[test]
    fn csv_never_panics(input in "(?s).{0,400}") {
        let _ = parse_devices_csv(&input);
    }

    #[test]
    fn csv_never_panics_on_csv_like_input(input in "[a-z\",\r\n{}:;0-9 ]{0,300}") {
        let _ = parse_devices_csv(&format!("id,attributes,tags,enabled\n{input}"));
    }

    #[test]
    fn csv_round_trips_quoted_cells(
        ids in prop::collection::vec("[A-Za-z0-9._:-]{1,20}", 1..20),
        note in "[^\"]{0,30}",
    ) {
        let mut text = String::from("id,note\n");
        for id in &ids {
            text.push_str(&format!("{id},\"{}\"\n", note.replace('"', "\"\"")));
        }
        let rows = parse_devices_csv(&text).unwrap();
        prop_assert_eq!(rows.len(), ids.len());
        for (row, id) in rows.iter().zip(&ids) {
            let reg = row.as_ref().unwrap();
            prop_assert_eq!(&reg.id, id);
            if note.is_empty() {
                prop_assert!(!reg.attributes.contains_key("note"));
            } else {
                let got = reg.attributes["note"].as_str().unwrap().to_string();
                let want = note.replace("\r\n", "\n");
                prop_assert!(got == note || got == want, "{:?} vs {:?}", got, note);
            }
        }
    }
}
