//! The alert rules file: loaded at start, reloaded on demand (SIGHUP, a
//! change of the file), and edited through `/v1/rules`. Whatever changes
//! the rules, the new set is validated first; a bad one is refused with
//! the field it got wrong and the rules in force stay. A good one is
//! written to the file (atomically, for API edits) and handed to the
//! store's writer, which evaluates it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use telltale_rules::{Rule, RuleSet};
use telltale_store::writer::{WriteOp, WriterHandle};
use telltale_store::Routing;

/// Why a rule set was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read or written.
    #[error("rules file {path}: {error}")]
    Io { path: String, error: String },
    /// The file is not TOML of the expected shape.
    #[error("rules file {path}: {error}")]
    Parse { path: String, error: String },
    /// A rule is invalid: `field` names what.
    #[error("{message}")]
    Invalid {
        rule: Option<String>,
        field: String,
        message: String,
    },
    /// No rule has this name.
    #[error("no rule {0:?}")]
    NotFound(String),
    /// The store is gone (the hub is stopping).
    #[error("the store has stopped")]
    StoreGone,
}

/// The file's shape: `[[rule]]` tables.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesToml {
    #[serde(default)]
    rule: Vec<Rule>,
}

/// The rules in force and where they live.
#[derive(Debug)]
pub struct RulesFile {
    path: PathBuf,
    store: WriterHandle,
    routing: Routing,
    /// The notification sinks a rule may name (`None`: not checked).
    sinks: Option<Vec<String>>,
    /// The rules in force, as written.
    current: Mutex<Vec<Rule>>,
    /// One change at a time (file and store in the same order).
    edit: tokio::sync::Mutex<()>,
}

impl RulesFile {
    /// The rules file at `path` (which may not exist yet: no rules).
    pub fn new(path: PathBuf, store: WriterHandle, routing: Routing) -> RulesFile {
        RulesFile {
            path,
            store,
            routing,
            sinks: None,
            current: Mutex::new(Vec::new()),
            edit: tokio::sync::Mutex::new(()),
        }
    }

    /// Checks that every sink a rule names is one of `sinks` (the hub's
    /// configured sinks), at every load and edit.
    pub fn with_sinks(mut self, sinks: Vec<String>) -> RulesFile {
        self.sinks = Some(sinks);
        self
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks a rules file (with `sinks`, also the sinks its
    /// rules name); a missing file is no rules.
    pub fn read(path: &Path, sinks: Option<&[String]>) -> Result<Vec<Rule>, RulesError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(RulesError::Io {
                    path: path.display().to_string(),
                    error: e.to_string(),
                })
            }
        };
        let parsed: RulesToml = toml::from_str(&text).map_err(|e| RulesError::Parse {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        check(&parsed.rule, sinks)?;
        Ok(parsed.rule)
    }

    /// Loads the file again and puts its rules in force. A bad file keeps
    /// the rules in force and says why. Returns how many rules are in force.
    pub async fn reload(&self) -> Result<usize, RulesError> {
        let _one = self.edit.lock().await;
        let rules = Self::read(&self.path, self.sinks.as_deref())?;
        let n = rules.len();
        self.put_in_force(rules).await?;
        Ok(n)
    }

    /// The rules in force.
    pub fn rules(&self) -> Vec<Rule> {
        self.current.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Adds a rule or replaces the one with its name; true if it was new.
    pub async fn upsert(&self, rule: Rule) -> Result<bool, RulesError> {
        let _one = self.edit.lock().await;
        let mut rules = self.rules();
        let new = match rules.iter_mut().find(|r| r.name == rule.name) {
            Some(r) => {
                *r = rule;
                false
            }
            None => {
                rules.push(rule);
                true
            }
        };
        self.write_and_apply(rules).await?;
        Ok(new)
    }

    /// Deletes the rule `name` (its open alerts resolve).
    pub async fn delete(&self, name: &str) -> Result<(), RulesError> {
        let _one = self.edit.lock().await;
        let mut rules = self.rules();
        let before = rules.len();
        rules.retain(|r| r.name != name);
        if rules.len() == before {
            return Err(RulesError::NotFound(name.to_owned()));
        }
        self.write_and_apply(rules).await
    }

    async fn write_and_apply(&self, rules: Vec<Rule>) -> Result<(), RulesError> {
        check(&rules, self.sinks.as_deref())?;
        let io = |e: String| RulesError::Io {
            path: self.path.display().to_string(),
            error: e,
        };
        let text = toml::to_string(&RulesToml {
            rule: rules.clone(),
        })
        .map_err(|e| io(e.to_string()))?;
        // Write beside it, then rename: a crash leaves the old file or the
        // new one, never half of one.
        let tmp = self.path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| io(e.to_string()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io(e.to_string()))?;
        self.put_in_force(rules).await
    }

    async fn put_in_force(&self, rules: Vec<Rule>) -> Result<(), RulesError> {
        let set = compile(rules.clone())?;
        self.store
            .send(WriteOp::Rules {
                rules: set,
                routing: self.routing.clone(),
            })
            .await
            .map_err(|_| RulesError::StoreGone)?;
        self.store.sync().await.map_err(|_| RulesError::StoreGone)?;
        if let Ok(mut c) = self.current.lock() {
            *c = rules;
        }
        Ok(())
    }
}

/// Checks a rule list: each rule, unique names, and (with `sinks`) that the
/// sinks each rule names exist.
pub fn check(rules: &[Rule], sinks: Option<&[String]>) -> Result<RuleSet, RulesError> {
    let set = compile(rules.to_vec())?;
    for rule in rules {
        for (i, sink) in rule.notify.iter().enumerate() {
            if sinks.is_some_and(|known| !known.contains(sink)) {
                return Err(RulesError::Invalid {
                    rule: Some(rule.name.clone()),
                    field: format!("notify[{i}]"),
                    message: format!(
                        "rule {:?}: notify[{i}]: no sink {sink:?} in [notify]",
                        rule.name
                    ),
                });
            }
        }
    }
    Ok(set)
}

/// Checks a rule list (one rule, or the whole set: names must be unique).
pub fn compile(rules: Vec<Rule>) -> Result<RuleSet, RulesError> {
    RuleSet::compile(rules).map_err(|e| {
        let rule = match &e {
            telltale_rules::RuleError::Invalid { rule, .. } => rule.clone(),
            telltale_rules::RuleError::Snapshot(_) => None,
        };
        RulesError::Invalid {
            rule,
            field: e.field().to_owned(),
            message: e.to_string(),
        }
    })
}
