//! Property tests: the protocol parser, the perfdata parser and the request
//! handler never panic, whatever the input (bounded number of cases).

use proptest::prelude::*;
use serde_json::{Map, Value};

use overc::perfdata::parse_output;
use overc::protocol::{AlertReport, Ping, StatusReport, parse_object};

/// Arbitrary JSON, biased towards the protocol's own keys so the validators
/// get past their first checks.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("server".to_owned()),
        Just("name".to_owned()),
        Just("key".to_owned()),
        Just("period".to_owned()),
        Just("services".to_owned()),
        Just("state".to_owned()),
        Just("info".to_owned()),
        Just("alerts".to_owned()),
        Just("message".to_owned()),
        Just("service".to_owned()),
        "\\PC{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "\\PC{0,20}".prop_map(Value::String),
        prop_oneof![Just("OK"), Just("warn"), Just("ERR"), Just("60"), Just("")]
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// JSON text for a value that is sometimes right and often awkward: escapes,
/// a lone surrogate, numbers as floats, strings, out of range or too large.
fn awkward() -> BoxedStrategy<String> {
    prop_oneof![
        "\"[a-z]{1,8}\"",
        Just("null".to_owned()),
        Just("60".to_owned()),
        Just("60.0".to_owned()),
        Just("\"60\"".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("1e2".to_owned()),
        Just("1e400".to_owned()),
        Just("31536001".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("\"a\\nb\\\"c\"".to_owned()),
        Just("\"\\u00e9\\u0001\"".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[\"h\", \"k\"]".to_owned()),
        Just("true".to_owned()),
    ]
    .boxed()
}

/// A JSON object's text from its members, in order, duplicates allowed.
fn object_text(members: Vec<(String, String)>) -> String {
    let inner: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// Extra members: unknown keys, known keys again, a key spelled with an escape.
fn extras(keys: &'static [&'static str]) -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        prop::sample::select(keys).prop_map(str::to_owned),
        Just("x".to_owned()),
        Just("na\\u006de".to_owned()),
    ];
    prop::collection::vec((key, awkward()), 0..2)
}

/// Status reports as text, mostly well formed, with the twists above.
fn report_text() -> impl Strategy<Value = String> {
    let service = (
        prop_oneof![4 => "\"[a-z]{1,5}\"", 1 => awkward()],
        prop_oneof![4 => prop::sample::select(&["\"OK\"", "\"warn\"", "\"Fail\"", "\"bogus\""][..]).prop_map(str::to_owned), 1 => awkward()],
        prop::option::of(prop_oneof!["\"[ a-z0-9|=;.]{0,12}\"", awkward()]),
        prop::option::of(prop_oneof!["[1-9][0-9]{0,3}", awkward()]),
        extras(&["name", "state", "info", "period"]),
    )
        .prop_map(|(name, state, info, period, extra)| {
            let mut m = vec![("name".to_owned(), name), ("state".to_owned(), state)];
            if let Some(i) = info {
                m.push(("info".to_owned(), i));
            }
            if let Some(p) = period {
                m.push(("period".to_owned(), p));
            }
            m.extend(extra);
            object_text(m)
        });
    let server = (
        prop_oneof![4 => "\"[a-z]{1,5}\"", 1 => awkward()],
        prop_oneof![4 => "\"[a-zA-Z0-9:]{1,8}\"", 1 => awkward()],
        extras(&["name", "key"]),
    )
        .prop_map(|(name, key, extra)| {
            let mut m = vec![("name".to_owned(), name), ("key".to_owned(), key)];
            m.extend(extra);
            object_text(m)
        });
    (
        prop_oneof![6 => server, 1 => awkward()],
        prop_oneof![4 => "[1-9][0-9]{0,4}", 1 => awkward()],
        prop_oneof![6 => prop::collection::vec(service, 0..10).prop_map(|s| format!("[{}]", s.join(", "))), 1 => awkward()],
        extras(&["server", "period", "services"]),
        prop::sample::select(&["", " ", "\n", " x", "{}"][..]),
    )
        .prop_map(|(server, period, services, extra, tail)| {
            let mut m = vec![
                ("server".to_owned(), server),
                ("period".to_owned(), period),
                ("services".to_owned(), services),
            ];
            m.extend(extra);
            format!("{}{tail}", object_text(m))
        })
}

/// `StatusReport::parse` gives exactly what the general path gives.
fn same_as_general(body: &[u8]) -> Result<(), TestCaseError> {
    let general = parse_object(body).and_then(|o| StatusReport::from_json(&o));
    let parsed = StatusReport::parse(body);
    prop_assert_eq!(
        format!("{parsed:?}"),
        format!("{general:?}"),
        "{}",
        String::from_utf8_lossy(body)
    );
    Ok(())
}

fn check_all(body: &[u8]) {
    if let Ok(obj) = parse_object(body) {
        let _ = Ping::from_json(&obj);
        let _ = StatusReport::from_json(&obj);
        let _ = AlertReport::from_json(&obj);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_all(&body);
        same_as_general(&body)?;
    }

    #[test]
    fn report_text_parses_as_the_general_path_does(body in report_text()) {
        same_as_general(body.as_bytes())?;
    }

    #[test]
    fn random_json_never_panics(v in json()) {
        check_all(v.to_string().as_bytes());
        same_as_general(v.to_string().as_bytes())?;
        if let Value::Object(map) = &v {
            let _ = StatusReport::from_json(map);
        }
    }

    #[test]
    fn valid_reports_round_trip(name in "[a-z]{1,64}", key in "\\PC{1,100}", period in 1u32..=31_536_000,
                                states in prop::collection::vec(("[a-z0-9]{1,10}", "(?i)ok|warn|fail|unk|err", "\\PC{0,50}"), 0..20)) {
        let services: Vec<Value> = states.iter().map(|(n, s, i)| serde_json::json!({"name": n, "state": s, "info": i})).collect();
        let body = serde_json::json!({"server": {"name": name, "key": key}, "period": period, "services": services});
        let report = StatusReport::from_json(&parse_object(body.to_string().as_bytes()).unwrap()).unwrap();
        prop_assert_eq!(report.services.len(), states.len());
        prop_assert_eq!(report.period, period);
    }

    #[test]
    fn perfdata_parser_never_panics(text in "\\PC{0,300}", perf in "([ 'a-z=;:~@0-9.,U%-]){0,200}") {
        let _ = parse_output(&text);
        let _ = parse_output(&format!("{text} | {perf}\nmore | {perf}"));
    }
}

#[test]
fn the_handler_never_panics_on_random_requests() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::common::config_in(dir.path());
    let store = std::sync::Arc::new(
        overc::Store::open(
            &config.database,
            &overc::store::StoreOptions::default(),
            std::sync::Arc::new(overc::SystemClock),
        )
        .unwrap(),
    );
    let app = overc::App::new(config, store, std::sync::Arc::new(overc::SystemClock)).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 500,
        ..ProptestConfig::default()
    });
    let paths = prop_oneof![
        Just("/api/ping"),
        Just("/api/set/service/status"),
        Just("/api/set/alerts"),
        Just("/ui/api/status/"),
        Just("/ui/api/status/service/1/states?hours=x&groups=1"),
        Just("/ui/api/item/server/1"),
        Just("/metrics"),
        Just("/nope"),
    ];
    let methods = prop_oneof![Just("GET"), Just("POST"), Just("DELETE"), Just("PUT")];
    runner
        .run(&(methods, paths, json()), |(method, path, body)| {
            let body = body.to_string();
            let r = app.handle(&overc::server::Request {
                method,
                url: path,
                headers: &[],
                body: body.as_bytes(),
                remote: "127.0.0.1",
            });
            prop_assert!(
                r.status < 500 || r.status == 503,
                "{} {} -> {}",
                method,
                path,
                r.status
            );
            Ok(())
        })
        .unwrap();
}
