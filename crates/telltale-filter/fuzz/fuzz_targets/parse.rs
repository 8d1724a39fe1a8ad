//! Parses arbitrary UTF-8 as a `filter=` expression. Whatever parses is
//! matched against a fixed item, and its normalized text must parse back to
//! itself. Run from `crates/telltale-filter`: `cargo fuzz run parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use telltale_filter::{Field, FieldValue, Fields, Filter, Shorthands, MAX_LEN};

/// A reading and an alert in one: every field present but one label.
struct Item;

impl Fields for Item {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        Some(match f {
            Field::Device => FieldValue::Str("sensor-1"),
            Field::Metric => FieldValue::Str("température"),
            Field::Value => FieldValue::Num(31.5),
            Field::Unit => FieldValue::Str("Cel"),
            Field::Severity => FieldValue::Str("major"),
            Field::State => FieldValue::Str("firing"),
            Field::Rule => FieldValue::Str("hot"),
            Field::Label("site") => FieldValue::Str("north"),
            Field::Label(_) => return None,
        })
    }
}

fuzz_target!(|text: &str| {
    let none = Shorthands::default();
    if let Ok(filter) = Filter::parse(Some(text), &none) {
        let matched = filter.matches(&Item);
        let normalized = filter.to_string();
        if normalized.len() <= MAX_LEN {
            let again = Filter::parse(Some(&normalized), &none)
                .expect("the normalized text of a filter parses");
            assert_eq!(again.to_string(), normalized);
            assert_eq!(again.matches(&Item), matched);
        }
    }
});
