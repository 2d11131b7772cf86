use super::*;

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, "smarty.toml", &[])
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The mistakes of `text` with `env` and `flags`, one line each.
fn mistakes(text: &str, env_pairs: &[(&str, &str)], flags: &Overrides) -> Vec<String> {
    match Config::from_layers(Some((text, "smarty.toml")), &env(env_pairs), flags) {
        Ok(_) => Vec::new(),
        Err(e) => e.lines(),
    }
}

const METER: &str = "[[meter]]\nname = \"home\"\nsource = \"/dev/ttyUSB0\"\n";

#[test]
fn the_example_is_valid() {
    let config = parse(EXAMPLE).unwrap();
    assert!(!config.meters.is_empty());
    assert!(config.mqtt.is_some());
    assert_eq!(config.tariff.unwrap().reference_power_kw, 3.0);
}

/// The example's `[tariff]` section read alone, and through the whole configuration with an
/// environment override as the service reads it.
#[test]
fn the_example_tariff_parses() {
    let example: toml::Table = EXAMPLE.parse().unwrap();
    let section = example.get("tariff").cloned();
    let section = section.expect("the example has a [tariff] section");
    let config: TariffConfig = section.try_into().unwrap();
    config.check().unwrap();
    assert_eq!(config.currency, "EUR");
    let env = env(&[("SMARTY_TARIFF_REFERENCE_POWER_KW", "7")]);
    let whole = Config::parse(EXAMPLE, "example", &env).unwrap();
    let config = whole.tariff.unwrap();
    config.check().unwrap();
    assert_eq!(config.reference_power_kw, 7.0);
}

#[test]
fn mistakes_name_their_line() {
    let err = parse("[[meter]]\nname = \"home\"\nsource = \"/dev/ttyUSB0\"\nbaud = \"fast\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("smarty.toml:4:8: meter[0].baud:"), "{err}");
    let err = parse("[[meter]]\nname = \"home\"\nsourc = \"/dev/ttyUSB0\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("smarty.toml:3:1: unknown field `sourc`"),
        "{err}"
    );
    // The missing field that the misspelt one leaves is reported too.
    assert!(
        err.contains("smarty.toml:1:1: meter[0]: missing field `source`"),
        "{err}"
    );
    let err = parse("[[meter]\n").unwrap_err().to_string();
    assert!(err.starts_with("smarty.toml:1:"), "{err}");
}

#[test]
fn every_syntax_error_is_reported() {
    let err = parse("[[meter]]\nname = \"home\nsource = 3 4\n[mqtt\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("smarty.toml:2:"), "{err}");
    assert!(err.contains("smarty.toml:4:"), "{err}");
}

#[test]
fn semantic_mistakes_name_the_meter() {
    let two = "[[meter]]\nname = \"a\"\nsource = \"-\"\n[[meter]]\nname = \"A\"\nsource = \"x\"\n";
    let err = parse(two).unwrap_err().to_string();
    assert!(
        err.starts_with("smarty.toml:5:8: two meters are named \"A\""),
        "{err}"
    );
    let bad_key = "[[meter]]\nname = \"a\"\nsource = \"-\"\nkey = \"0011\"\n";
    let err = parse(bad_key).unwrap_err().to_string();
    assert!(
        err.starts_with("smarty.toml:4:7: meter \"a\": invalid key: a key is 32 hex digits"),
        "{err}"
    );
    assert!(!err.contains("0011"));
    assert!(parse("").unwrap_err().to_string().contains("no [[meter]]"));
    let bad_name = "[[meter]]\nname = \"my meter\"\nsource = \"-\"\n";
    let err = parse(bad_name).unwrap_err().to_string();
    assert!(err.starts_with("smarty.toml:2:8:"), "{err}");
}

/// A mistake of `[http]` is shown at the setting it concerns, not always at `listen`.
#[test]
fn http_mistakes_name_their_setting() {
    let text = format!("{METER}[http]\nlisten = \"127.0.0.1:8080\"\nmax_connections = 0\n");
    let lines = mistakes(&text, &[], &Overrides::default());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("smarty.toml:6:19: [http]: max_connections = 0 is out of range"),
        "{lines:?}"
    );
    let text = format!("{METER}[http]\nlisten = \"0.0.0.0:8080\"\n");
    let lines = mistakes(&text, &[], &Overrides::default());
    assert!(
        lines[0].starts_with("smarty.toml:5:10: [http]: listen = \"0.0.0.0:8080\" is reachable"),
        "{lines:?}"
    );
}

#[test]
fn every_mistake_is_reported_once_with_its_place() {
    let text = "\
[[meter]]
name = \"home\"
source = \"tcp://dongle.lan\"
key = \"0011\"
key_file = \"/etc/smarty/key\"
serial = \"9X1\"
[[meter]]
name = \"garage\"
baud = \"fast\"
[mqtt]
qos = 3
[proxy]
listen = \"0.0.0.0:8080\"
meter = \"attic\"
";
    let lines = mistakes(text, &[], &Overrides::default());
    let expected = [
        "smarty.toml:3:10: meter \"home\": source: tcp://dongle.lan: expected tcp://HOST:PORT",
        "smarty.toml:4:7: meter \"home\": invalid key",
        "smarty.toml:5:12: meter \"home\": give key or key_file, not both",
        "smarty.toml:6:10: meter \"home\": \"9X1\" is not a serial format",
        "smarty.toml:7:1: meter[1]: missing field `source`",
        "smarty.toml:9:8: meter[1].baud: expected u32, found text",
        "smarty.toml:11:7: mqtt.qos must be 0, 1 or 2",
        "smarty.toml:13:10: [proxy] listens on 0.0.0.0:8080, where [http] listens too",
        "smarty.toml:14:9: [proxy]: meter \"attic\" is not configured",
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, expected) in lines.iter().zip(expected) {
        assert!(line.starts_with(expected), "{line}\nexpected: {expected}");
    }
}

#[test]
fn listeners_on_one_address_are_refused() {
    let clash = |http: &str, proxy: &str| {
        let text = format!(
            "{METER}[http]\nlisten = \"{http}\"\ntoken = \"0123456789abcdef\"\n[proxy]\nlisten = \"{proxy}\"\n"
        );
        !mistakes(&text, &[], &Overrides::default()).is_empty()
    };
    assert!(clash("127.0.0.1:8080", "127.0.0.1:8080"));
    assert!(clash("127.0.0.1:8080", "0.0.0.0:8080"));
    assert!(clash("0.0.0.0:8080", "127.0.0.1:8080"));
    assert!(clash("[::]:8080", "127.0.0.1:8080"));
    assert!(clash("localhost:8080", "127.0.0.1:8080"));
    assert!(!clash("127.0.0.1:8080", "127.0.0.1:2001"));
    assert!(!clash("127.0.0.1:0", "127.0.0.1:0"));
    assert!(!clash("127.0.0.1:8080", "127.0.0.2:8080"));
    assert!(!clash("0.0.0.0:8080", "[::1]:8080"));
    // The web server's default address counts, and a server that is off does not.
    let text = format!("{METER}[proxy]\nlisten = \"127.0.0.1:8080\"\n");
    assert_eq!(mistakes(&text, &[], &Overrides::default()).len(), 1);
    let text = format!("{text}[http]\nenabled = false\n");
    assert!(mistakes(&text, &[], &Overrides::default()).is_empty());
}

#[test]
fn sources_are_checked_and_never_shared() {
    let source = |spec: &str| {
        let text = format!("[[meter]]\nname = \"a\"\nsource = \"{spec}\"\n");
        mistakes(&text, &[], &Overrides::default())
    };
    for ok in [
        "-",
        "/dev/ttyUSB0",
        "tcp://192.168.1.50:2001",
        "tcp://[::1]:2001",
        "mqtt://broker.lan/smarty/home/raw",
        "capture.bin",
    ] {
        assert!(source(ok).is_empty(), "{ok}: {:?}", source(ok));
    }
    for bad in [
        "tcp://dongle.lan",
        "tcp://:2001",
        "tcp://host:99999",
        "mqtt://broker.lan",
        "serial:///dev/ttyUSB0",
        "",
    ] {
        let lines = source(bad);
        assert_eq!(lines.len(), 1, "{bad}: {lines:?}");
        assert!(lines[0].starts_with("smarty.toml:3:10:"), "{lines:?}");
    }
    let two = |a: &str, b: &str| {
        let text = format!(
            "[[meter]]\nname = \"a\"\nsource = \"{a}\"\n[[meter]]\nname = \"b\"\nsource = \"{b}\"\n"
        );
        mistakes(&text, &[], &Overrides::default())
    };
    let lines = two("/dev/ttyUSB0", "/dev/ttyUSB0");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("smarty.toml:6:10: meter \"b\" reads the same source"),
        "{lines:?}"
    );
    assert_eq!(two("tcp://Dongle:2001", "tcp://dongle:2001").len(), 1);
    assert!(two("/dev/ttyUSB0", "/dev/ttyUSB1").is_empty());
    // A link to the same device is the same device.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("capture.bin");
    std::fs::write(&file, b"").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let (file, link) = (file.display().to_string(), link.display().to_string());
    assert_eq!(two(&file, &link).len(), 1);
}

#[test]
fn environment_overrides_take_the_type_of_their_field() {
    let text = format!("{METER}[mqtt]\nurl = \"mqtt://a\"\n");
    let config = Config::from_layers(
        Some((&text, "f")),
        &env(&[
            ("SMARTY_MQTT_URL", "mqtt://b:1884"),
            ("SMARTY_MQTT_QOS", "0"),
            ("SMARTY_MQTT_USERNAME", "1234"),
            ("SMARTY_MQTT_PASSWORD", "123456"),
            ("SMARTY_MQTT_PREFIX", "true"),
            ("SMARTY_MQTT_CLIENT_ID", "1.5"),
            ("SMARTY_MQTT_RETAIN_STATE", "yes"),
            ("SMARTY_MQTT_PROTOCOL", "5"),
            ("SMARTY_MQTT_KEEP_ALIVE_S", " 60 "),
            ("SMARTY_HTTP_TOKEN", "1234567890123456"),
            ("SMARTY_STORE_COMMIT_INTERVAL_S", "0.25"),
            ("SMARTY_TARIFF_REFERENCE_POWER_KW", "7"),
            ("SMARTY_TARIFF_CURRENCY", "1"),
            ("SMARTY_STATE_DIR", "/srv/smarty"),
            ("SMARTY_METER_HOME_KEY", "00000000000000000000000000000001"),
            ("SMARTY_METER_HOME_VERIFY_TAG", "false"),
            ("SMARTY_METER_HOME_INTERVAL_S", "1"),
            ("SMARTY_METER_HOME_SERIAL", "7E1"),
            ("SMARTY_UNRELATED", "x"),
            ("SMARTY_MQTT_USERNAME_UNSET", ""),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    let mqtt = config.mqtt.unwrap();
    assert_eq!(mqtt.url, "mqtt://b:1884");
    assert_eq!(mqtt.qos, 0);
    assert_eq!(mqtt.username.as_deref(), Some("1234"));
    assert_eq!(mqtt.password.unwrap().expose(), "123456");
    assert_eq!(mqtt.prefix, "true");
    assert_eq!(mqtt.client_id.as_deref(), Some("1.5"));
    assert!(mqtt.retain_state);
    assert_eq!(mqtt.protocol, smarty_mqtt::Protocol::V5);
    assert_eq!(mqtt.keep_alive_s, 60);
    assert_eq!(
        config.http.unwrap().token.unwrap().expose(),
        "1234567890123456"
    );
    assert_eq!(config.store.unwrap().commit_interval_s, 0.25);
    let tariff = config.tariff.unwrap();
    assert_eq!(
        (tariff.reference_power_kw, tariff.currency.as_str()),
        (7.0, "1")
    );
    assert_eq!(config.state_dir, Some(PathBuf::from("/srv/smarty")));
    let meter = &config.meters[0];
    assert_eq!(
        meter.key.as_ref().unwrap().expose(),
        "00000000000000000000000000000001"
    );
    assert!(!meter.verify_tag);
    assert_eq!(meter.interval_s, 1.0);
    assert_eq!(meter.serial, "7E1");
}

#[test]
fn environment_mistakes_name_the_variable_never_the_value() {
    let text = format!("{METER}[mqtt]\nusername = \"me\"\n");
    for (name, value, field) in [
        ("SMARTY_MQTT_QOS", "secret-1", "mqtt.qos"),
        ("SMARTY_MQTT_QOS", "99999", "mqtt.qos"),
        ("SMARTY_MQTT_QOS", "-1", "mqtt.qos"),
        ("SMARTY_MQTT_DISCOVERY", "secret-1", "mqtt.discovery"),
        ("SMARTY_MQTT_PROTOCOL", "secret-1", "mqtt.protocol"),
        ("SMARTY_MQTT_QUEUE_MAX", "1e3", "mqtt.queue_max"),
        (
            "SMARTY_HTTP_HEALTHY_WITHIN_S",
            "secret-1",
            "http.healthy_within_s",
        ),
        (
            "SMARTY_STORE_RAW_RETENTION_DAYS",
            "4294967296",
            "store.raw_retention_days",
        ),
        ("SMARTY_METER_HOME_BAUD", "secret-1", "meter[0].baud"),
        (
            "SMARTY_METER_HOME_VERIFY_TAG",
            "secret-1",
            "meter[0].verify_tag",
        ),
        ("SMARTY_TARIFF_VAT_RATE", "secret-1", "tariff.vat_rate"),
    ] {
        let lines = mistakes(&text, &[(name, value)], &Overrides::default());
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        let line = &lines[0];
        assert!(
            line.starts_with(&format!(
                "smarty.toml: environment variable {name}: {field}: "
            )),
            "{line}"
        );
        assert!(!line.contains(value), "{line}");
    }
    let lines = mistakes(
        &text,
        &[("SMARTY_METER_HOME_KEY", "0011secret")],
        &Overrides::default(),
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "smarty.toml: environment variable SMARTY_METER_HOME_KEY: meter \"home\": invalid key"
        ),
        "{lines:?}"
    );
    assert!(!lines[0].contains("0011secret"), "{lines:?}");
    let lines = mistakes(
        &text,
        &[("SMARTY_MQTT_PASWORD", "x")],
        &Overrides::default(),
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("SMARTY_MQTT_PASWORD: unknown field `pasword`"),
        "{lines:?}"
    );
}

#[test]
fn secrets_never_show_in_debug() {
    let text = "[[meter]]\nname = \"home\"\nsource = \"-\"\nkey = \"000102030405060708090A0B0C0D0E0F\"\n\
         auth_key = \"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\"\n\
         [mqtt]\nusername = \"me\"\npassword = \"hunter2hunter2\"\n\
         [http]\ntoken = \"tokentokentokentoken\"\n";
    let config = parse(text).unwrap();
    let debug = format!("{config:?}");
    for secret in [
        "000102030405060708090A0B0C0D0E0F",
        "BBBBBBBBBBBBBBBB",
        "hunter2",
        "tokentoken",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn layers_stack_flags_over_environment_over_file() {
    let text = format!(
        "{METER}key_file = \"/etc/smarty/home.key\"\n[mqtt]\npassword_file = \"/etc/p\"\nusername = \"u\"\n\
         [http]\nlisten = \"127.0.0.1:8081\"\n[store]\nenabled = true\n"
    );
    let file_only = parse(&text).unwrap();
    assert_eq!(file_only.mqtt_password_file, Some(PathBuf::from("/etc/p")));
    // The environment's key replaces the file's key_file, its password the password_file.
    let e = [
        ("SMARTY_METER_HOME_KEY", "000102030405060708090A0B0C0D0E0F"),
        ("SMARTY_MQTT_PASSWORD", "pw"),
        ("SMARTY_HTTP_LISTEN", "127.0.0.1:8082"),
        ("SMARTY_STORE_ENABLED", "true"),
    ];
    let config = Config::from_layers(Some((&text, "f")), &env(&e), &Overrides::default()).unwrap();
    assert!(config.meters[0].key.is_some());
    assert_eq!(config.meters[0].key_file, None);
    assert_eq!(config.mqtt_password_file, None);
    assert_eq!(config.http.as_ref().unwrap().listen, "127.0.0.1:8082");
    // Flags win over both, and a flag's key_file over the environment's key.
    let mut flags = Overrides::default();
    flags.flag("http.listen", "127.0.0.1:8083", "--http");
    flags.flag("store.enabled", false, "--no-store");
    flags.flag("meter[0].key_file", "/run/key", "--key-file");
    let config = Config::from_layers(Some((&text, "f")), &env(&e), &flags).unwrap();
    assert_eq!(config.http.as_ref().unwrap().listen, "127.0.0.1:8083");
    assert!(!config.store.unwrap().enabled);
    assert_eq!(config.meters[0].key, None);
    assert_eq!(config.meters[0].key_file, Some(PathBuf::from("/run/key")));
    // A flag's mistake names the flag.
    let mut flags = Overrides::default();
    flags.flag("http.listen", "nowhere", "--http");
    let lines = mistakes(&text, &[], &flags);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("--http: [http]: listen"), "{lines:?}");
}

#[test]
fn a_flag_that_needs_its_section_is_refused_without_it() {
    let mut flags = Overrides::default();
    flags.flag_in_section("mqtt.publish_raw", true, "--publish-raw", "needs [mqtt]");
    let lines = mistakes(METER, &[], &flags);
    assert_eq!(lines, ["--publish-raw: needs [mqtt]"]);
    // From the file, the environment or another flag.
    assert!(mistakes(&format!("{METER}[mqtt]\n"), &[], &flags).is_empty());
    assert!(mistakes(METER, &[("SMARTY_MQTT_URL", "mqtt://b")], &flags).is_empty());
    flags.flag("mqtt.url", "mqtt://b", "--mqtt");
    let config = Config::from_layers(Some((METER, "f")), &[], &flags).unwrap();
    assert!(config.mqtt.unwrap().publish_raw);
}

#[test]
fn a_configuration_of_flags_alone() {
    let mut flags = Overrides::default();
    flags.flag("meter[0].source", "/dev/ttyUSB0", "SOURCE");
    flags.flag("meter[0].name", "home", "--name");
    flags.flag("meter[0].interval_s", 0.5, "--interval");
    let e = [
        ("SMARTY_METER_HOME_KEY", "000102030405060708090A0B0C0D0E0F"),
        ("SMARTY_METER_HOME_INTERVAL_S", "7"),
    ];
    let config = Config::from_layers(None, &env(&e), &flags).unwrap();
    let meter = &config.meters[0];
    assert_eq!((meter.name.as_str(), meter.interval_s), ("home", 0.5));
    assert!(
        meter.key.is_some(),
        "the environment names the flags' meter"
    );
    let err = Config::from_layers(None, &[], &Overrides::default()).unwrap_err();
    assert_eq!(err.to_string(), "the command line: no [[meter]] configured");
}

/// Values at and beyond the edges of every type.
const EXTREMES: [&str; 17] = [
    "0",
    "-0.0",
    "-1",
    "1",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "1e300",
    "-1e300",
    "2e19",
    "1e-300",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "65536",
    "0.000001",
];

#[test]
fn no_value_of_a_numeric_field_panics_and_every_refusal_names_field_and_line() {
    let fields = [
        ("meter", "interval_s"),
        ("meter", "baud"),
        ("mqtt", "qos"),
        ("mqtt", "keep_alive_s"),
        ("mqtt", "queue_max"),
        ("http", "healthy_within_s"),
        ("store", "raw_retention_days"),
        ("store", "commit_interval_s"),
        ("tariff", "reference_power_kw"),
        ("tariff", "energy_price_eur_per_kwh"),
        ("tariff", "network_price_eur_per_kwh"),
        ("tariff", "above_reference_price_eur_per_kwh"),
        ("tariff", "electricity_tax_eur_per_kwh"),
        ("tariff", "compensation_eur_per_kwh"),
        ("tariff", "fixed_eur_per_month"),
        ("tariff", "vat_rate"),
        ("tariff", "export_price_eur_per_kwh"),
    ];
    let mut refused = 0;
    for (section, field) in fields {
        for value in EXTREMES {
            let text = if section == "meter" {
                format!("[[meter]]\nname = \"home\"\nsource = \"-\"\n{field} = {value}\n")
            } else {
                format!("{METER}[{section}]\n{field} = {value}\n")
            };
            let line = text.lines().count();
            // From the file: refused at its line, naming the field.
            let lines = mistakes(&text, &[], &Overrides::default());
            for l in &lines {
                assert!(
                    l.starts_with(&format!("smarty.toml:{line}:")) && l.contains(field),
                    "{section}.{field} = {value}: {l}"
                );
            }
            refused += usize::from(!lines.is_empty());
            // From the environment: refused naming the variable, never showing the value.
            let name = if section == "meter" {
                format!("SMARTY_METER_HOME_{}", field.to_ascii_uppercase())
            } else {
                format!(
                    "SMARTY_{}_{}",
                    section.to_ascii_uppercase(),
                    field.to_ascii_uppercase()
                )
            };
            let base = if section == "meter" {
                "[[meter]]\nname = \"home\"\nsource = \"-\"\n".to_owned()
            } else {
                METER.to_owned()
            };
            for l in mistakes(&base, &[(&name, value)], &Overrides::default()) {
                assert!(
                    l.contains(&name) && l.contains(field),
                    "{name}={value}: {l}"
                );
            }
            // Programmatic configurations are checked too: `problems` never panics.
            if let Ok(config) = Config::from_layers(Some((&base, "f")), &[], &Overrides::default())
            {
                let _ = config.problems();
            }
        }
    }
    assert!(refused > 100, "only {refused} extreme values refused");
}

#[test]
fn tariff_mistakes_name_their_line_and_field() {
    let text = format!(
        "{METER}[tariff]\nreference_power_kw = \"seven\"\nvat_rate = 8\n\n[[tariff.periods]]\n\
         from = \"2026-01-01\"\nenergy_price_eur_per_kwh = \"x\"\n"
    );
    let lines = mistakes(&text, &[], &Overrides::default());
    let all = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("smarty.toml:5:") && l.contains("tariff.reference_power_kw")),
        "{all}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("smarty.toml:10:")
            && l.contains("tariff.periods[0].energy_price_eur_per_kwh")),
        "{all}"
    );
    // A range mistake found by the section's check points at its field.
    let text = format!("{METER}[tariff]\nvat_rate = 8\n");
    let lines = mistakes(&text, &[], &Overrides::default());
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("smarty.toml:5:") && l.contains("`vat_rate`")),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn the_web_servers_settings_alone_for_fleet_serve() {
    // `smarty fleet serve --config`: a household's file (or none) gives [http] and [tariff];
    // the meters are not its concern, but its [http] mistakes are.
    let household = "[[meter]]\nname = \"home\"\nsource = \"/dev/ttyUSB0\"\nkey_file = \"/nope\"\n\
                     [http]\nlisten = \"127.0.0.1:9090\"\n";
    let config = Config::build(
        Some((household, "smarty.toml")),
        &[],
        &Overrides::default(),
        Scope::Web,
    )
    .unwrap();
    assert_eq!(config.http.unwrap().listen, "127.0.0.1:9090");
    let none = Config::build(None, &[], &Overrides::default(), Scope::Web).unwrap();
    assert!(none.meters.is_empty());
    let mut flags = Overrides::default();
    flags.flag("http.listen", "0.0.0.0:8080", "--http");
    let open = Config::build(None, &[], &flags, Scope::Web)
        .unwrap_err()
        .to_string();
    assert!(open.contains("--http") && open.contains("token"), "{open}");
    let with_token = Config::build(
        None,
        &env(&[("SMARTY_HTTP_TOKEN", "1234567890123456")]),
        &flags,
        Scope::Web,
    )
    .unwrap();
    assert_eq!(with_token.http.unwrap().listen, "0.0.0.0:8080");
}

/// `[guard]`: the example's commented section parses uncommented, the environment overrides
/// it, the tariff's reference power is the default, and mistakes name their field.
#[test]
fn the_guard_section_parses_and_is_checked() {
    let uncommented: String = EXAMPLE
        .split("# [guard]")
        .nth(1)
        .expect("the example has a commented [guard] section")
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!("{METER}[guard]{uncommented}\n");
    let env = env(&[("SMARTY_GUARD_HEADROOM_BELOW_KW", "0.5")]);
    let config = Config::parse(&text, "smarty.toml", &env).unwrap();
    let guard = config.guard.clone().unwrap();
    assert_eq!(guard.headroom_below_kw, Some(0.5));
    assert_eq!(guard.command.as_deref().map(<[String]>::len), Some(1));
    assert!(guard.delivers());
    assert_eq!(config.guard_config().unwrap().reference_power_kw, 3.0);
    // Without a section: on, at the tariff's reference power.
    let config = parse(&format!("{METER}[tariff]\nreference_power_kw = 7\n")).unwrap();
    assert_eq!(config.guard_config().unwrap().reference_power_kw, 7.0);
    assert!(!config.guard().delivers());
    let config = parse(&format!("{METER}[guard]\nenabled = false\n")).unwrap();
    assert_eq!(config.guard_config(), None);
    let err = parse(&format!(
        "{METER}[guard]\nreference_power_kw = -1\nnotify_url = \"ntfy.sh/x\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("smarty.toml:5:22: [guard]: reference_power_kw = -1 must be more than 0 kW"),
        "{err}"
    );
    // The URL itself is not repeated: its topic may be a secret.
    assert!(
        err.contains(
            "smarty.toml:6:14: [guard]: notify_url must be a whole http:// or https:// URL"
        ),
        "{err}"
    );
    assert!(!err.contains("ntfy.sh/x"), "{err}");
}
