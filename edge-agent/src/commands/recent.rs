//! The ids of recent commands and how they ended, so that a command
//! delivered twice (a QoS 1 redelivery, a hub resending after a reconnect)
//! runs once and the duplicate gets the first outcome. Bounded in ids and
//! in bytes of remembered output. Pure.

use std::collections::{HashMap, VecDeque};
use telltale_wire::msg::CommandResult;

/// What is known about a command id.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Not among the recent ids: run it (it is now recorded as running).
    New,
    /// Received before and still running (or queued).
    Running,
    /// Received before and finished with this result.
    Done(CommandResult),
}

/// One remembered id.
#[derive(Debug, Clone)]
enum Entry {
    /// Queued or running.
    Running,
    /// Finished; `bytes` is what its output costs (0 once dropped).
    Done { result: CommandResult, bytes: usize },
}

/// Recent command ids, oldest first.
#[derive(Debug)]
pub struct Recent {
    /// Most ids remembered.
    max_ids: usize,
    /// Most bytes of output remembered, all results together.
    max_bytes: usize,
    /// Ids, oldest first.
    order: VecDeque<String>,
    /// Each id's state.
    entries: HashMap<String, Entry>,
    /// Bytes of output remembered now.
    bytes: usize,
}

impl Recent {
    /// Remembers up to `max_ids` ids and `max_bytes` of their outputs.
    pub fn new(max_ids: usize, max_bytes: usize) -> Self {
        Self {
            max_ids: max_ids.max(1),
            max_bytes,
            order: VecDeque::new(),
            entries: HashMap::new(),
            bytes: 0,
        }
    }

    /// Looks `id` up; a new id is recorded as running, forgetting the
    /// oldest finished id if the set is full.
    pub fn check_in(&mut self, id: &str) -> Seen {
        match self.entries.get(id) {
            Some(Entry::Running) => return Seen::Running,
            Some(Entry::Done { result, .. }) => return Seen::Done(result.clone()),
            None => {}
        }
        // A running id is never forgotten: it would run twice. If all are
        // running, the set grows past max_ids until some finish (the runner
        // bounds how many are in progress).
        while self.order.len() >= self.max_ids {
            let oldest_done = self
                .order
                .iter()
                .position(|id| matches!(self.entries.get(id), Some(Entry::Done { .. })));
            let Some(old) = oldest_done.and_then(|i| self.order.remove(i)) else {
                break;
            };
            if let Some(Entry::Done { bytes, .. }) = self.entries.remove(&old) {
                self.bytes -= bytes;
            }
        }
        self.order.push_back(id.to_owned());
        self.entries.insert(id.to_owned(), Entry::Running);
        Seen::New
    }

    /// Records how `result.id` ended. If the outputs remembered pass the
    /// byte budget, the oldest lose their output (status and reason stay).
    pub fn finish(&mut self, result: &CommandResult) {
        let Some(entry) = self.entries.get_mut(&result.id) else {
            return;
        };
        let bytes = result.output.as_ref().map_or(0, |o| o.to_string().len());
        if let Entry::Done { bytes: old, .. } = entry {
            self.bytes -= *old;
        }
        *entry = Entry::Done {
            result: result.clone(),
            bytes,
        };
        self.bytes += bytes;
        for id in &self.order {
            if self.bytes <= self.max_bytes {
                break;
            }
            if let Some(Entry::Done { result, bytes }) = self.entries.get_mut(id) {
                if *bytes > 0 {
                    result.output = None;
                    self.bytes -= *bytes;
                    *bytes = 0;
                }
            }
        }
    }

    /// Ids still running, oldest first.
    pub fn running(&self) -> impl Iterator<Item = &str> {
        self.order
            .iter()
            .filter(|id| matches!(self.entries.get(*id), Some(Entry::Running)))
            .map(String::as_str)
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use telltale_wire::msg::ResultStatus;

    fn done(id: &str, output: Option<serde_json::Value>) -> CommandResult {
        CommandResult {
            id: id.to_owned(),
            status: ResultStatus::Succeeded,
            output,
            reason: None,
        }
    }

    #[test]
    fn duplicates_get_the_first_outcome() {
        let mut r = Recent::new(3, 1 << 20);
        assert_eq!(r.check_in("a"), Seen::New);
        assert_eq!(r.check_in("a"), Seen::Running);
        let a = done("a", Some(json!({"pong": true})));
        r.finish(&a);
        assert_eq!(r.check_in("a"), Seen::Done(a.clone()));
        // An unknown id finishing changes nothing.
        r.finish(&done("zzz", None));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn bounded_and_never_forgets_a_running_id() {
        let mut r = Recent::new(3, 1 << 20);
        for id in ["a", "b", "c"] {
            assert_eq!(r.check_in(id), Seen::New);
        }
        r.finish(&done("b", None));
        // Full: the oldest finished id (b) goes, not the running a.
        assert_eq!(r.check_in("d"), Seen::New);
        assert_eq!(r.len(), 3);
        assert_eq!(r.check_in("a"), Seen::Running);
        assert_eq!(r.running().collect::<Vec<_>>(), ["a", "c", "d"]);
        // All running: it grows rather than forget one.
        assert_eq!(r.check_in("e"), Seen::New);
        assert_eq!(r.len(), 4);
        for id in ["a", "c", "d", "e"] {
            r.finish(&done(id, None));
        }
        // Back to the bound: the two oldest finished ids go.
        assert_eq!(r.check_in("f"), Seen::New);
        assert_eq!(r.len(), 3);
        assert_eq!(r.check_in("e"), Seen::Done(done("e", None)));
        // a and b were forgotten: seen as new again.
        assert_eq!(r.check_in("b"), Seen::New);
        assert_eq!(r.running().collect::<Vec<_>>(), ["f", "b"]);
    }

    #[test]
    fn output_over_the_byte_budget_is_dropped_oldest_first() {
        let big = json!({"stdout": "x".repeat(100)});
        let size = big.to_string().len();
        let mut r = Recent::new(10, 2 * size);
        for id in ["a", "b", "c"] {
            r.check_in(id);
            r.finish(&done(id, Some(big.clone())));
        }
        assert_eq!(r.check_in("a"), Seen::Done(done("a", None)));
        assert_eq!(r.check_in("b"), Seen::Done(done("b", Some(big.clone()))));
        assert_eq!(r.check_in("c"), Seen::Done(done("c", Some(big))));
        assert_eq!(r.bytes, 2 * size);
    }
}
