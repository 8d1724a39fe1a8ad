//! The command line: subcommands, flags and their parsing. Help texts and
//! exit codes are part of the interface (README.md, docs/api.md).

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

/// `telltale ...`.
#[derive(Debug, Parser)]
#[command(
    name = "telltale",
    version,
    about = "Talk to a running hub: devices, latest values, watch, commands, alert acks",
    after_help = "Exit codes: 0 done; 1 a command failed, expired or timed out; 2 the hub refused the request (or a bad argument); 3 the hub cannot be reached."
)]
pub struct Cli {
    /// The hub's HTTP address (its `[api] listen`).
    #[arg(
        long,
        global = true,
        env = "TELLTALE_HUB",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub hub: String,
    /// The API token to send (`telltale-hub token create`); not needed by
    /// a hub that runs open on loopback (the demo).
    #[arg(
        long,
        global = true,
        env = "TELLTALE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// The devices the hub has heard from: presence, last seen, agent,
    /// labels.
    Devices {
        /// Print the hub's JSON answer as it is (one line per page).
        #[arg(long)]
        json: bool,
    },
    /// The newest value of each (device, metric).
    Latest {
        /// Only these devices: ids and globs, comma separated.
        #[arg(long, value_name = "D")]
        device: Option<String>,
        /// Only these metrics: names and globs, comma separated.
        #[arg(long, value_name = "M")]
        metric: Option<String>,
        /// Print the hub's JSON answer as it is (one line per page).
        #[arg(long)]
        json: bool,
    },
    /// Print the events of a collection as they happen, until Ctrl-C.
    ///
    /// A lost connection is resumed where it stopped: nothing missed,
    /// nothing twice. Times are UTC.
    Watch(WatchArgs),
    /// Send a command to a device and follow it to its end.
    ///
    /// Exits 0 when it succeeded, 1 when it failed, expired or timed out,
    /// 2 when the hub refused it, 3 when the hub cannot be reached.
    Command(CommandArgs),
    /// Acknowledge an open alert.
    Ack {
        /// The alert's id.
        alert: u64,
        /// Who acknowledges [default: $USER; the hub records "api" without
        /// one].
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// A note for whoever looks at the alert next.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
}

pub use telltale_types::Resource;

/// The collections a watch can follow, by name, as a command-line value.
fn resource() -> impl clap::builder::TypedValueParser<Value = Resource> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Resource::ALL.map(Resource::as_str))
        // Only the names above get here.
        .map(|name: String| Resource::parse(&name).unwrap_or(Resource::Readings))
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// What to watch.
    #[arg(value_parser = resource())]
    pub resource: Resource,
    /// A filter expression, e.g. 'metric == "temp" and value > 30' (see
    /// docs/api.md#filters).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// Only these devices: ids and globs, comma separated.
    #[arg(long, value_name = "D")]
    pub device: Option<String>,
    /// Only these metrics: names and globs, comma separated.
    #[arg(long, value_name = "M")]
    pub metric: Option<String>,
    /// Alerts: only these severities, comma separated.
    #[arg(long, value_name = "S")]
    pub severity: Option<String>,
    /// Alerts and commands: only these states, comma separated.
    #[arg(long, value_name = "S")]
    pub state: Option<String>,
    /// Latest, devices, alerts, commands: the current items first (as
    /// ADDED), then their changes.
    #[arg(long)]
    pub initial: bool,
    /// Start after this resourceVersion (from an earlier event or list)
    /// instead of now.
    #[arg(long, value_name = "RV")]
    pub from: Option<String>,
    /// Print each event as the hub's JSON, one per line, BOOKMARKs included.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CommandArgs {
    /// The device's id.
    pub device: String,
    /// The command: ping, set_interval, read_now, get_config, or one the
    /// device's agent configures.
    pub name: String,
    /// A parameter; VALUE is taken as JSON if it parses (5, true, "x",
    /// [1,2]), else as a string. Repeat for more.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub param: Vec<(String, Value)>,
    /// All parameters as one JSON object; --param entries go over it.
    #[arg(long, value_name = "JSON", value_parser = parse_params)]
    pub params: Option<Map<String, Value>>,
    /// Seconds the command may take, from now to its result (1 to 86400;
    /// the hub's default is 30).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Print the queued command and exit without waiting for its end.
    #[arg(long)]
    pub no_wait: bool,
}

/// `key=value` of `--param`: the value as JSON if it parses, else a string.
pub fn parse_param(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has no key before ="));
    }
    let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), v))
}

/// `--params`: a JSON object.
pub fn parse_params(s: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("--params must be a JSON object such as {\"seconds\": 5}".into()),
        Err(e) => Err(format!("--params is not JSON: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_take_json_else_strings() {
        let cases: &[(&str, Option<(&str, Value)>)] = &[
            ("seconds=5", Some(("seconds", json!(5)))),
            ("on=true", Some(("on", json!(true)))),
            ("name=kitchen", Some(("name", json!("kitchen")))),
            ("quoted=\"5\"", Some(("quoted", json!("5")))),
            ("list=[1,2]", Some(("list", json!([1, 2])))),
            ("empty=", Some(("empty", json!("")))),
            ("eq=a=b", Some(("eq", json!("a=b")))),
            ("nokey", None),
            ("=5", None),
        ];
        for (input, want) in cases {
            let got = parse_param(input);
            match want {
                Some((k, v)) => assert_eq!(got, Ok(((*k).to_owned(), v.clone())), "{input}"),
                None => assert!(got.is_err(), "{input}"),
            }
        }
        assert!(parse_params("{\"a\":1}").is_ok());
        assert!(parse_params("[1]").is_err());
        assert!(parse_params("{").is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
