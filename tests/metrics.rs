//! The Prometheus exposition checked against the text format's rules, on a store with real
//! traffic: every sample belongs to a family announced once by `# HELP` and `# TYPE` just before
//! it, names are valid and prefixed, counters end in `_total`, values parse, label values are
//! escaped, and the numbers match `Store::stats`.

use std::collections::HashSet;
use std::time::Duration;

use shmstate::{Config, Store, WhenFull};

fn valid_name(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Splits a sample line into (metric name, labels text, value).
fn parse_sample(line: &str) -> (&str, &str, &str) {
    let (series, value) = line.rsplit_once(' ').expect("sample has a value");
    match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace"), value),
        None => (series, "", value),
    }
}

fn sample_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series}"))
        .parse()
        .unwrap()
}

#[test]
fn exposition_follows_the_text_format() {
    let s = Store::anonymous(
        &Config::new()
            .capacity(64)
            .shards(1)
            .when_full(WhenFull::Evict),
    )
    .unwrap();
    for i in 0..200u32 {
        s.set(&i.to_le_bytes(), b"v", Some(Duration::from_secs(60)))
            .unwrap();
    }
    for i in 0..50u32 {
        let _ = s.get(&i.to_le_bytes()).unwrap();
    }
    let _ = s.delete(&199u32.to_le_bytes()).unwrap();
    s.counter("requests").unwrap().add(41);
    s.counter("weird \\ \"name\"\nline é").unwrap().add(-2);

    let text = shmstate::prometheus(&s).unwrap();
    let st = s.stats();
    assert!(text.ends_with('\n'));

    let mut announced: HashSet<String> = HashSet::new();
    let (mut help, mut kind): (Option<String>, Option<String>) = (None, None);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').unwrap();
            assert!(!doc.is_empty());
            assert!(announced.insert(name.to_owned()), "{name} announced twice");
            help = Some(name.to_owned());
            kind = None;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap();
            assert_eq!(Some(name), help.as_deref(), "TYPE without its HELP");
            assert!(["counter", "gauge"].contains(&t), "{t}");
            if t == "counter" {
                assert!(name.ends_with("_total"), "counter {name} lacks _total");
            } else {
                assert!(!name.ends_with("_total"), "gauge {name} ends in _total");
            }
            kind = Some(t.to_owned());
        } else {
            assert!(!line.starts_with('#'), "{line}");
            let (name, labels, value) = parse_sample(line);
            assert!(valid_name(name), "{name}");
            assert!(name.starts_with("shmstate_"), "{name}");
            assert_eq!(
                Some(name),
                help.as_deref(),
                "sample outside its family: {line}"
            );
            assert!(kind.is_some(), "sample before TYPE: {line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            if !labels.is_empty() {
                let (k, v) = labels.split_once('=').unwrap();
                assert!(valid_name(k));
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap();
                // Inside the quotes, only escaped quotes, backslashes and newlines.
                let mut chars = v.chars();
                while let Some(c) = chars.next() {
                    assert_ne!(c, '\n');
                    assert_ne!(c, '"', "unescaped quote in {line}");
                    if c == '\\' {
                        assert!(matches!(chars.next(), Some('\\' | '"' | 'n')), "{line}");
                    }
                }
            }
        }
    }

    // The numbers are the store's.
    assert_eq!(sample_value(&text, "shmstate_entries"), st.entries as f64);
    assert_eq!(sample_value(&text, "shmstate_capacity"), 64.0);
    assert_eq!(sample_value(&text, "shmstate_sets_total"), st.sets as f64);
    assert_eq!(
        sample_value(&text, "shmstate_evictions_total"),
        st.evictions as f64
    );
    assert!(st.evictions > 0);
    assert_eq!(sample_value(&text, "shmstate_deletes_total"), 1.0);
    assert_eq!(
        sample_value(&text, "shmstate_lookups_total{result=\"hit\"}")
            + sample_value(&text, "shmstate_lookups_total{result=\"miss\"}"),
        50.0
    );
    assert_eq!(
        sample_value(&text, "shmstate_region_bytes"),
        s.region_bytes() as f64
    );
    let fill = sample_value(&text, "shmstate_fill_ratio");
    assert!((fill - st.entries as f64 / 64.0).abs() < 1e-9);
    assert_eq!(sample_value(&text, "shmstate_counters_registered"), 2.0);
    assert_eq!(
        sample_value(&text, "shmstate_counter_value{name=\"requests\"}"),
        41.0
    );
    assert_eq!(
        sample_value(
            &text,
            "shmstate_counter_value{name=\"weird \\\\ \\\"name\\\"\\nline é\"}"
        ),
        -2.0
    );

    // The pure renderer gives the same text for the same snapshot.
    assert_eq!(
        shmstate::render_prometheus(&st, &s.counters().unwrap()),
        text
    );
}
