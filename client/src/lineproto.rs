//! Counting rows and field values in line protocol, and splitting a payload into batches of whole
//! lines — enough to report throughput for files the load driver did not generate.

/// Rows (non-empty, non-comment lines) and field values in a payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Number of points.
    pub rows: u64,
    /// Number of field values.
    pub values: u64,
}

/// Counts rows and values. Field values are counted as unquoted, unescaped commas in the field set plus one.
pub fn count(payload: &[u8]) -> Counts {
    let mut c = Counts::default();
    for line in payload.split(|b| *b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        c.rows += 1;
        c.values += field_count(line);
    }
    c
}

/// Number of fields on one line.
fn field_count(line: &[u8]) -> u64 {
    let mut section = 0; // 0 = measurement+tags, 1 = fields, 2 = timestamp
    let (mut quoted, mut escaped, mut fields) = (false, false, 0u64);
    for &b in line {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'"' if section == 1 => quoted = !quoted,
            b' ' if !quoted => {
                section += 1;
                if section == 1 {
                    fields = 1;
                }
            }
            b',' if section == 1 && !quoted => fields += 1,
            _ => {}
        }
    }
    fields
}

/// Splits a payload into chunks of at most `lines` lines each; returns byte ranges.
pub fn split_batches(payload: &[u8], lines: usize) -> Vec<std::ops::Range<usize>> {
    let lines = lines.max(1);
    let mut out = Vec::new();
    let (mut start, mut n) = (0, 0);
    for (i, b) in payload.iter().enumerate() {
        if *b == b'\n' {
            n += 1;
            if n == lines {
                out.push(start..i + 1);
                start = i + 1;
                n = 0;
            }
        }
    }
    if payload[start..].iter().any(|b| !b.is_ascii_whitespace()) {
        out.push(start..payload.len());
    }
    out
}

/// [`split_batches`] with each batch's [`count`]: what a load driver needs before it starts.
pub fn split_counted(payload: &[u8], lines: usize) -> Vec<(std::ops::Range<usize>, Counts)> {
    split_batches(payload, lines)
        .into_iter()
        .map(|r| {
            let counts = count(&payload[r.clone()]);
            (r, counts)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300), lines in 0usize..10) {
            let _ = count(&b);
            let _ = split_batches(&b, lines);
        }

        #[test]
        fn batches_partition_the_payload(text in "([a-z]{1,5} x=[0-9]{1,3}\n){0,40}", lines in 1usize..10) {
            let b = text.as_bytes();
            let ranges = split_batches(b, lines);
            let joined: Vec<u8> = ranges.iter().flat_map(|r| b[r.clone()].iter().copied()).collect();
            prop_assert_eq!(joined, b.to_vec());
            let rows: u64 = ranges.iter().map(|r| count(&b[r.clone()]).rows).sum();
            prop_assert_eq!(rows, count(b).rows);
            prop_assert!(ranges.iter().all(|r| count(&b[r.clone()]).rows as usize <= lines));
            let counted = split_counted(b, lines);
            prop_assert_eq!(counted.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(), ranges);
            let values: u64 = counted.iter().map(|(_, c)| c.values).sum();
            prop_assert_eq!(values, count(b).values);
        }
    }

    #[test]
    fn counts_fields_with_quotes_and_escapes() {
        let p = b"m,t=a\\ b x=1,y=\"a,b c\",z=true 10\n# comment\n\nm x=1i\n";
        assert_eq!(count(p), Counts { rows: 2, values: 4 });
    }

    #[test]
    fn splits_on_line_boundaries() {
        let p = b"a x=1\nb x=2\nc x=3\n";
        assert_eq!(split_batches(p, 2), vec![0..12, 12..18]);
        assert_eq!(split_batches(b"a x=1\nb x=2", 5), vec![0..11]);
    }
}
