//! The key-value state machine: deterministic, so every node that applies the
//! same committed log holds the same data and computes the same answers.

use std::collections::HashMap;

use super::command::{KvCommand, KvReply, SetCondition};

/// The replicated store.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    pub(super) data: HashMap<Vec<u8>, Vec<u8>>,
}

const NOT_AN_INTEGER: &str = "value is not an integer or out of range";

impl KvStore {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Applies (or, for reads, evaluates) `command` and returns its answer.
    pub fn apply(&mut self, command: &KvCommand) -> KvReply {
        match command {
            KvCommand::Set { .. }
            | KvCommand::MSet(_)
            | KvCommand::Del(_)
            | KvCommand::IncrBy { .. }
            | KvCommand::Cas { .. } => self.write(command),
            KvCommand::Transaction(commands) => {
                KvReply::Multi(commands.iter().map(|command| self.apply(command)).collect())
            }
            read => self.read(read),
        }
    }

    /// Evaluates a read command without changing anything.
    pub fn read(&self, command: &KvCommand) -> KvReply {
        match command {
            KvCommand::Get(key) => self.data.get(key).map_or(KvReply::Nil, |value| KvReply::Bulk(value.clone())),
            KvCommand::MGet(keys) => KvReply::Array(keys.iter().map(|key| self.data.get(key).cloned()).collect()),
            KvCommand::Exists(keys) => {
                KvReply::Integer(keys.iter().filter(|key| self.data.contains_key(*key)).count() as i64)
            }
            KvCommand::DbSize => KvReply::Integer(self.data.len() as i64),
            _ => KvReply::Error("internal: a write command reached the read path".into()),
        }
    }

    fn write(&mut self, command: &KvCommand) -> KvReply {
        match command {
            KvCommand::Set { key, value, condition } => {
                let exists = self.data.contains_key(key);
                let allowed = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => !exists,
                    SetCondition::IfPresent => exists,
                };
                if !allowed {
                    return KvReply::Nil;
                }
                self.data.insert(key.clone(), value.clone());
                KvReply::Ok
            }
            KvCommand::MSet(pairs) => {
                for (key, value) in pairs {
                    self.data.insert(key.clone(), value.clone());
                }
                KvReply::Ok
            }
            KvCommand::Del(keys) => {
                KvReply::Integer(keys.iter().filter(|key| self.data.remove(*key).is_some()).count() as i64)
            }
            KvCommand::IncrBy { key, delta } => self.increment(key, *delta),
            KvCommand::Cas { key, expected, new } => {
                if self.data.get(key) == Some(expected) {
                    self.data.insert(key.clone(), new.clone());
                    KvReply::Integer(1)
                } else {
                    KvReply::Integer(0)
                }
            }
            read => self.read(read),
        }
    }

    fn increment(&mut self, key: &[u8], delta: i64) -> KvReply {
        let current = match self.data.get(key) {
            None => 0,
            Some(bytes) => match std::str::from_utf8(bytes).ok().and_then(|text| text.parse::<i64>().ok()) {
                Some(number) => number,
                None => return KvReply::Error(NOT_AN_INTEGER.into()),
            },
        };
        match current.checked_add(delta) {
            Some(next) => {
                self.data.insert(key.to_vec(), next.to_string().into_bytes());
                KvReply::Integer(next)
            }
            None => KvReply::Error("increment or decrement would overflow".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str, condition: SetCondition) -> KvCommand {
        KvCommand::Set { key: key.into(), value: value.into(), condition }
    }

    #[test]
    fn set_honours_nx_and_xx() {
        let mut store = KvStore::default();
        assert_eq!(store.apply(&set("k", "1", SetCondition::IfPresent)), KvReply::Nil);
        assert_eq!(store.apply(&set("k", "1", SetCondition::IfAbsent)), KvReply::Ok);
        assert_eq!(store.apply(&set("k", "2", SetCondition::IfAbsent)), KvReply::Nil);
        assert_eq!(store.apply(&set("k", "3", SetCondition::IfPresent)), KvReply::Ok);
        assert_eq!(store.apply(&KvCommand::Get("k".into())), KvReply::Bulk("3".into()));
    }

    #[test]
    fn increments_refuse_non_integers_and_overflow() {
        let mut store = KvStore::default();
        assert_eq!(store.apply(&KvCommand::IncrBy { key: "n".into(), delta: 5 }), KvReply::Integer(5));
        assert_eq!(store.apply(&KvCommand::IncrBy { key: "n".into(), delta: -7 }), KvReply::Integer(-2));
        store.apply(&set("s", "abc", SetCondition::Always));
        assert!(matches!(store.apply(&KvCommand::IncrBy { key: "s".into(), delta: 1 }), KvReply::Error(_)));
        store.apply(&set("m", &i64::MAX.to_string(), SetCondition::Always));
        assert!(matches!(store.apply(&KvCommand::IncrBy { key: "m".into(), delta: 1 }), KvReply::Error(_)));
    }

    #[test]
    fn a_transaction_runs_its_commands_in_order_and_answers_each() {
        let mut store = KvStore::default();
        let transaction = KvCommand::Transaction(vec![
            set("k", "1", SetCondition::Always),
            KvCommand::IncrBy { key: "k".into(), delta: 2 },
            KvCommand::Get("k".into()),
            set("s", "text", SetCondition::Always),
            KvCommand::IncrBy { key: "s".into(), delta: 1 },
            KvCommand::Del(vec!["s".into()]),
        ]);
        assert!(!transaction.is_read(), "a transaction goes through the log");
        let KvReply::Multi(replies) = store.apply(&transaction) else { panic!("EXEC answers one reply per command") };
        assert_eq!(replies[..4], [KvReply::Ok, KvReply::Integer(3), KvReply::Bulk("3".into()), KvReply::Ok]);
        assert!(matches!(replies[4], KvReply::Error(_)), "a runtime error fails only its command");
        assert_eq!(replies[5], KvReply::Integer(1));
    }

    #[test]
    fn cas_swaps_only_on_a_match() {
        let mut store = KvStore::default();
        store.apply(&set("k", "a", SetCondition::Always));
        let cas =
            |expected: &str, new: &str| KvCommand::Cas { key: "k".into(), expected: expected.into(), new: new.into() };
        assert_eq!(store.apply(&cas("b", "c")), KvReply::Integer(0));
        assert_eq!(store.apply(&cas("a", "c")), KvReply::Integer(1));
        assert_eq!(store.apply(&KvCommand::Get("k".into())), KvReply::Bulk("c".into()));
        assert_eq!(store.apply(&KvCommand::Del(vec!["k".into(), "x".into()])), KvReply::Integer(1));
        assert_eq!(store.apply(&KvCommand::DbSize), KvReply::Integer(0));
    }
}
