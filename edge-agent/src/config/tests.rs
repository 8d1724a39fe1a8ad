use super::*;

fn err(text: &str) -> String {
    match Config::parse(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn defaults() {
    let c = Config::parse("device_id = \"gw-1\"\n").expect("parse");
    assert_eq!(c.device_id, "gw-1");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/telltale-agent"));
    assert_eq!(
        c.outbox_path(),
        PathBuf::from("/var/lib/telltale-agent/outbox.db")
    );
    assert!(c.labels.is_empty());
    assert_eq!(c.mqtt.host, "127.0.0.1");
    assert_eq!(c.mqtt.port, 1883);
    assert_eq!(c.client_id(), "gw-1");
    assert_eq!(c.mqtt.keep_alive_secs, 30);
    assert_eq!(c.mqtt.topic_prefix, "telltale/v1");
    assert_eq!(
        (c.mqtt.reconnect_min_ms, c.mqtt.reconnect_max_ms),
        (500, 30_000)
    );
    assert_eq!((c.batch.max_readings, c.batch.interval_ms), (100, 1000));
    assert_eq!(c.outbox.max_bytes, 64 * 1024 * 1024);
    assert_eq!(
        (c.outbox.ack_timeout_ms, c.outbox.max_in_flight),
        (10_000, 32)
    );
    assert!(c.sources.is_empty());
}

#[test]
fn a_tenant_prefix_and_tls_files_are_taken() {
    let c = Config::parse(
        "device_id = \"d1\"\n[mqtt]\nport = 8883\nusername = \"d1\"\npassword = \"p\"\ntopic_prefix = \"/tenants/tabc1/telltale/v1\"\nca = \"/etc/telltale/ca.pem\"\ncert = \"/etc/telltale/d1.pem\"\nkey = \"/etc/telltale/d1.key\"\n",
    )
    .expect("valid");
    assert_eq!(c.mqtt.topic_prefix, "/tenants/tabc1/telltale/v1");
    assert_eq!(
        c.mqtt.ca.as_deref(),
        Some(Path::new("/etc/telltale/ca.pem"))
    );
}

#[test]
fn full_file_and_source_defaults() {
    let c = Config::parse(
        r#"
        device_id = "gw-1"
        data_dir = "/tmp/x"
        labels = { site = "north", room = "boiler" }
        [mqtt]
        host = "hub.local"
        username = "gw-1"
        password = "s3cret"
        client_id = "gw-1-agent"
        [[source]]
        kind = "simulated"
        metric = "room/temp"
        unit = "Cel"
        [[source]]
        kind = "simulated"
        metric = "door"
        shape = "boolean"
        [[source]]
        kind = "file"
        metric = "cpu/temp"
        path = "/sys/class/thermal/thermal_zone0/temp"
        scale = 0.001
        [[source]]
        kind = "command"
        metric = "load"
        program = "cat"
        args = ["/proc/loadavg"]
        "#,
    )
    .expect("parse");
    assert_eq!(c.client_id(), "gw-1-agent");
    assert_eq!(c.labels.get("site").map(String::as_str), Some("north"));
    assert!(!format!("{c:?}").contains("s3cret"));
    assert_eq!(c.sources.len(), 4);
    let SourceConfig::Simulated(s) = &c.sources[0] else {
        panic!("not simulated")
    };
    assert_eq!(s.shape, Shape::Sine);
    assert_eq!(
        (s.base, s.amplitude, s.period_secs, s.noise),
        (20.0, 5.0, 300.0, 0.1)
    );
    assert_eq!(s.interval_ms, 1000);
    assert_eq!(c.sources[1].unit(), None);
    let SourceConfig::File(f) = &c.sources[2] else {
        panic!("not file")
    };
    assert_eq!(f.scale, 0.001);
    let SourceConfig::Command(cmd) = &c.sources[3] else {
        panic!("not command")
    };
    assert_eq!((cmd.timeout_ms, cmd.args.len()), (5000, 1));
}

#[test]
fn rejects_unknown_keys_everywhere() {
    let cases = [
        ("device_id = \"a\"\nbogus = 1\n", "bogus"),
        ("device_id = \"a\"\n[mqtt]\nhots = \"x\"\n", "hots"),
        ("device_id = \"a\"\n[batch]\nmax = 3\n", "max"),
        ("device_id = \"a\"\n[outbox]\nsize = 3\n", "size"),
        (
            "device_id = \"a\"\n[[source]]\nkind = \"simulated\"\nmetric = \"t\"\nshap = \"sine\"\n",
            "shap",
        ),
        (
            "device_id = \"a\"\n[[source]]\nkind = \"file\"\nmetric = \"t\"\npath = \"/x\"\nscale2 = 1\n",
            "scale2",
        ),
        (
            "device_id = \"a\"\n[[source]]\nkind = \"modbus\"\nmetric = \"t\"\n",
            "modbus",
        ),
    ];
    for (text, word) in cases {
        let e = err(text);
        assert!(e.contains(word), "{text:?}: {e}");
    }
}

#[test]
fn rejects_bad_values() {
    let cases = [
        ("", "device_id"),
        ("device_id = \"bad id\"\n", "device_id"),
        ("device_id = \"a/b\"\n", "device_id"),
        (&format!("device_id = \"{}\"\n", "x".repeat(65)), "device_id"),
        ("device_id = \"a\"\n[batch]\nmax_readings = 0\n", "max_readings"),
        ("device_id = \"a\"\n[batch]\nmax_readings = 1001\n", "max_readings"),
        ("device_id = \"a\"\n[mqtt]\ntopic_prefix = \"a/#\"\n", "topic_prefix"),
        ("device_id = \"a\"\n[mqtt]\ntopic_prefix = \"/x/telltale/v1\"\n", "topic_prefix"),
        ("device_id = \"a\"\n[mqtt]\ntopic_prefix = \"/tenants/t-1/telltale/v1\"\n", "topic_prefix"),
        ("device_id = \"a\"\n[mqtt]\ntopic_prefix = \"/tenants//telltale/v1\"\n", "topic_prefix"),
        ("device_id = \"a\"\n[mqtt]\ntopic_prefix = \"/tenants/t1/\"\n", "topic_prefix"),
        ("device_id = \"a\"\n[mqtt]\nca = \"c\"\ncert = \"x\"\n", "cert and key"),
        ("device_id = \"a\"\n[mqtt]\ncert = \"x\"\nkey = \"y\"\n", "needs ca"),
        ("device_id = \"a\"\n[mqtt]\nreconnect_min_ms = 5000\nreconnect_max_ms = 10\n", "reconnect"),
        ("device_id = \"a\"\n[mqtt]\npassword = \"p\"\n", "username"),
        ("device_id = \"a\"\n[outbox]\nmax_in_flight = 0\n", "max_in_flight"),
        ("device_id = \"a\"\n[outbox]\nmax_bytes = 100\n", "max_bytes"),
        ("device_id = \"a\"\n[[source]]\nkind = \"simulated\"\nmetric = \"_t\"\n", "metric"),
        ("device_id = \"a\"\n[[source]]\nkind = \"simulated\"\nmetric = \"a b\"\n", "metric"),
        ("device_id = \"a\"\n[[source]]\nkind = \"simulated\"\nmetric = \"\"\n", "metric"),
        (
            &format!("device_id = \"a\"\n[[source]]\nkind = \"simulated\"\nmetric = \"{}\"\n", "m".repeat(65)),
            "metric",
        ),
        ("device_id = \"a\"\n[[source]]\nkind = \"simulated\"\nmetric = \"t\"\nperiod_secs = 0\n", "period_secs"),
        ("device_id = \"a\"\n[[source]]\nkind = \"simulated\"\nmetric = \"t\"\nshape = \"square\"\n", "square"),
        ("device_id = \"a\"\n[[source]]\nkind = \"file\"\nmetric = \"t\"\npath = \"/x\"\nscale = 0\n", "scale"),
        ("device_id = \"a\"\n[[source]]\nkind = \"command\"\nmetric = \"t\"\nprogram = \"\"\n", "program"),
        ("device_id = \"a\"\n[[source]]\nkind = \"command\"\nmetric = \"t\"\n", "program"),
        ("device_id = \"a\"\n[[source]]\nmetric = \"t\"\n", "kind"),
    ];
    for (text, word) in cases {
        let e = err(text);
        assert!(e.contains(word), "{text:?}: {e}");
    }
}

#[test]
fn shipped_examples_parse() {
    let example = Config::parse(include_str!("../../agent.example.toml")).expect("example");
    assert_eq!(example.sources.len(), 1);
    let doc = include_str!("../../../docs/agent-config.md");
    let start = doc
        .find("## Example\n\n```toml\n")
        .expect("example section")
        + 20;
    let len = doc[start..].find("```").expect("end of example");
    let c = Config::parse(&doc[start..start + len]).expect("docs example");
    let kinds: Vec<&str> = c.sources.iter().map(SourceConfig::kind).collect();
    assert_eq!(kinds, ["simulated", "simulated", "file", "command"]);
    let names: Vec<&str> = c.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["restart_modem", "ping_host"]);
}

const RESTART: &str = r#"
    device_id = "gw-1"
    [[command]]
    name = "restart_modem"
    program = "/usr/bin/systemctl"
    args = ["restart", "{unit}"]
    timeout_secs = 10
    max_output_bytes = 4096
    [command.params]
    unit = { type = "string", pattern = "^[a-z0-9@._-]{1,64}$" }
"#;

#[test]
fn commands_parse() {
    let c = Config::parse(RESTART).expect("parse");
    assert_eq!(c.commands.len(), 1);
    let cmd = &c.commands[0];
    assert_eq!(
        (cmd.name.as_str(), cmd.program.as_str(), cmd.args.len()),
        ("restart_modem", "/usr/bin/systemctl", 2)
    );
    assert_eq!(
        cmd.params.get("unit"),
        Some(&ParamSpec::String {
            pattern: Some("^[a-z0-9@._-]{1,64}$".into())
        })
    );
    let c = Config::parse(
        r#"
        device_id = "gw-1"
        [[command]]
        name = "tune"
        program = "/usr/local/bin/tune"
        args = ["--level={level}", "--gain={gain}", "--force={force}", "{{literal}}"]
        [command.params]
        level = { type = "integer", min = 0, max = 9 }
        gain = { type = "number", min = -1.5 }
        force = { type = "boolean" }
        "#,
    )
    .expect("parse");
    let cmd = &c.commands[0];
    assert_eq!((cmd.timeout_secs, cmd.max_output_bytes), (10, 4096));
    assert_eq!(
        cmd.params.get("level"),
        Some(&ParamSpec::Integer {
            min: Some(0),
            max: Some(9)
        })
    );
    assert_eq!(cmd.params.get("force"), Some(&ParamSpec::Boolean {}));
}

#[test]
fn command_errors_name_the_field() {
    let with = |extra: &str| format!("{RESTART}{extra}");
    let cases: Vec<(String, &str)> = vec![
        (RESTART.replace("timeout_secs", "timeout"), "unknown field `timeout`"),
        (RESTART.replace("pattern", "patern"), "unknown field `patern`"),
        (RESTART.replace("\"string\"", "\"text\""), "unknown variant `text`"),
        (
            RESTART.replace("type = \"string\", pattern = \"^[a-z0-9@._-]{1,64}$\"", "type = \"boolean\", min = 1"),
            "unknown field `min`",
        ),
        (
            RESTART.replace("/usr/bin/systemctl", "systemctl"),
            "[[command]] #1 (restart_modem): program \"systemctl\" must be an absolute path",
        ),
        (
            RESTART.replace("\"{unit}\"", "\"{uint}\""),
            "[[command]] #1 (restart_modem): args[1] \"{uint}\": placeholder {uint} names no param",
        ),
        (
            RESTART.replace("{1,64}$", "{1,64$"),
            "[[command]] #1 (restart_modem): params.unit: pattern",
        ),
        (
            RESTART.replace("\"restart_modem\"", "\"ping\""),
            "[[command]] #1 (ping): name \"ping\" is a built-in command",
        ),
        (
            with("[[command]]\nname = \"restart_modem\"\nprogram = \"/bin/true\"\n"),
            "[[command]] #2 (restart_modem): name \"restart_modem\" is used by an earlier [[command]]",
        ),
        (RESTART.replace("timeout_secs = 10", "timeout_secs = 0"), "timeout_secs must be 1..=86400"),
        (
            "device_id = \"a\"\n[[source]]\nkind = \"simulated\"\nmetric = \"t\"\nname = \"a b\"\n".to_owned(),
            "name \"a b\" must be",
        ),
    ];
    for (text, want) in cases {
        let e = err(&text);
        assert!(e.contains(want), "{text}\n→ {e}");
    }
}

#[test]
fn serializes_with_secrets_masked() {
    let c = Config::parse("device_id = \"a\"\n[mqtt]\nusername = \"u\"\npassword = \"hunter2\"\n")
        .expect("parse");
    let v = serde_json::to_value(&c).expect("json");
    assert_eq!(v["mqtt"]["password"], serde_json::json!(MASK));
    assert_eq!(v["mqtt"]["username"], serde_json::json!("u"));
    assert!(!v.to_string().contains("hunter2"));
    // What comes out reads back as the same config (bar the secret).
    let back: Config = serde_json::from_value(v).expect("reads back");
    assert_eq!(back.mqtt.port, c.mqtt.port);
}

#[test]
fn metric_names() {
    for ok in ["t", "room/temp", "a:b.c-d_e", "1wire", &"m".repeat(64)] {
        assert!(valid_metric(ok), "{ok}");
    }
    for bad in ["", "-t", "_t", "/t", "a b", "a+b", "ü", &"m".repeat(65)] {
        assert!(!valid_metric(bad), "{bad}");
    }
}
