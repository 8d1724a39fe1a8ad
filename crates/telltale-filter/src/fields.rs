//! How an item (a reading, an alert, a command, a device) shows its fields to
//! a filter, without this crate knowing any of those types.

/// A field a filter can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field<'a> {
    /// `device`: the device id.
    Device,
    /// `metric`: the metric (SenML name).
    Metric,
    /// `value`: a reading's value, which may be a number, a boolean or a string.
    Value,
    /// `unit`: a reading's unit.
    Unit,
    /// `severity`: an alert's severity.
    Severity,
    /// `state`: an alert's or a command's lifecycle state.
    State,
    /// `rule`: the name of the rule that raised an alert.
    Rule,
    /// `labels.<key>`: one of the device's labels.
    Label(&'a str),
}

/// A field's value in one item.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue<'a> {
    /// A string.
    Str(&'a str),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
}

/// An item a [`Filter`](crate::Filter) can match.
///
/// Return `None` for a field the item does not have (a reading has no
/// `severity`, a device may lack a label). Every comparison on a missing
/// field is false, `!=` included.
pub trait Fields {
    /// The value of field `f` in this item, if it has one.
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>>;
}
