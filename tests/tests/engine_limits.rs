//! Write limits and engine counters through the real server: `--max-fields-per-stream` refuses a
//! write past it with 422 naming the limit and storing nothing; `/metrics` reports the refusal,
//! flush and compaction bytes and the write amplification.

use strata_tests::{Server, temp_data_dir};

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in /metrics"))
}

#[test]
fn a_write_past_a_limit_is_refused_whole_and_counted() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &["--max-fields-per-stream", "2"]);
    let ok = server.write("iot", "m,device=d1 a=1,b=2 1000000000");
    assert_eq!(ok.status, 204, "{}", ok.error());
    let refused = server.write(
        "iot",
        "m,device=d1 a=1,c=3 2000000000\nm,device=d2 a=5 3000000000",
    );
    assert_eq!(refused.status, 422, "{}", refused.error());
    let message = refused.error();
    assert!(message.contains("max_fields_per_stream"), "{message}");
    // Nothing of the refused request was stored: d2's point of the same body is absent.
    let read = server.read("db=iot&stream=m");
    let body = read.json().to_string();
    assert!(!body.contains("d2"), "{body}");
    let flushed = server.post("/api/v1/flush", b"", &[]);
    assert!(flushed.status < 300, "{}", flushed.error());
    let text = server.get("/metrics").body;
    assert_eq!(metric(&text, "strata_writes_refused_limit_total"), 1.0);
    assert!(metric(&text, "strata_flush_bytes_written_total") > 0.0);
    let wa = metric(&text, "strata_write_amplification");
    assert!(wa > 0.0, "{wa}");
}

#[test]
fn a_range_read_past_max_read_rows_is_refused_and_a_narrower_one_answers() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(&dir, &["--max-read-rows", "5"]);
    let lines: Vec<String> = (1..=10)
        .map(|i| format!("m,device=d1 v={i} {i}000000000"))
        .collect();
    let ok = server.write("iot", &lines.join("\n"));
    assert_eq!(ok.status, 204, "{}", ok.error());
    let refused = server.read("db=iot&stream=m");
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.error().contains("--max-read-rows"),
        "{}",
        refused.body
    );
    let narrow = server.read("db=iot&stream=m&start=1970-01-01T00:00:01Z&end=1970-01-01T00:00:04Z");
    assert_eq!(narrow.status, 200, "{}", narrow.body);
    let values = &narrow.json()["series"][0]["values"];
    assert_eq!(values.as_array().map(Vec::len), Some(3), "{}", narrow.body);
}
