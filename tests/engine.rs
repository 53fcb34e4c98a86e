//! SPEC §7: the engine embedded without HTTP, and notifiers of the
//! application's own beside the alert plugin commands.

use std::sync::{Arc, Mutex};

use overc::engine::{Engine, EngineSettings};
use overc::store::{StatusFilter, StoreOptions};
use overc::{
    Clock, ManualClock, Notification, Server, ServerId, ServiceReport, State, StatusReport,
};
use serde_json::json;

use crate::common::backend::store_any;
use crate::common::{T0, TestServer, config_any, report};

/// A notifier that records what it got, and refuses while `refuse` is set.
#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<String>>>,
    refuse: Arc<Mutex<bool>>,
}

impl Inbox {
    fn notifier(&self) -> impl Fn(&Notification) -> Result<(), String> + 'static {
        let me = self.clone();
        move |n: &Notification| {
            if *me.refuse.lock().unwrap() {
                return Err("the pager is down".into());
            }
            me.got.lock().unwrap().push(n.text());
            Ok(())
        }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

fn status(service: &str, state: State, period: Option<u32>) -> StatusReport {
    StatusReport {
        server: ServerId {
            name: "app".into(),
            key: "k".into(),
        },
        period: 60,
        services: vec![ServiceReport {
            name: service.into(),
            state,
            info: "from the app".into(),
            period,
            retries: None,
        }],
        retries: None,
    }
}

#[test]
fn an_application_drives_the_engine_without_http_and_gets_notified() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let (store, _pg) = store_any(dir.path(), &StoreOptions::default(), clock_dyn.clone());
    let inbox = Inbox::default();
    let settings = EngineSettings::default().notifier("app", inbox.notifier());
    let engine = Engine::start(store, settings, clock_dyn).unwrap();

    engine
        .report(status("job", State::Warn, Some(30)), "in-process")
        .unwrap();
    engine.supervise_now().unwrap();
    assert_eq!(
        inbox.take(),
        vec![
            "app job: [service:state/WARN] State changed: \"(?)\" -> \"WARN\"\nCurrent: WARN: from the app"
        ]
    );

    // Supervision: the service stops reporting.
    clock.advance(31_000);
    let (offline, _) = engine.supervise_now().unwrap();
    assert_eq!(offline, 1);
    assert_eq!(
        inbox.take(),
        vec!["app job: [plugin/offline] Monitoring plugin offline\nCurrent: WARN: from the app"]
    );

    // A notifier that refuses is offered the alert again after the backoff.
    *inbox.refuse.lock().unwrap() = true;
    engine
        .report(status("job", State::Ok, Some(30)), "in-process")
        .unwrap();
    engine.supervise_now().unwrap();
    assert!(inbox.take().is_empty());
    *inbox.refuse.lock().unwrap() = false;
    clock.advance(10_000);
    engine.supervise_now().unwrap();
    let got = inbox.take();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("[service:state/OK]"), "{got:?}");
    assert!(got[1].contains("[plugin/online]"), "{got:?}");

    let view = engine.status(StatusFilter::All).unwrap().unwrap();
    let svc = &view.servers[0].services[0];
    assert_eq!(svc.name, "job");
    assert_eq!(
        serde_json::to_value(&view).unwrap()["servers"][0]["name"],
        "app"
    );
    engine.stop();
}

#[test]
fn a_server_built_with_a_notifier_hands_it_the_alerts_beside_the_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::default();
    let clock = ManualClock::new(T0);
    let (config, pg) = config_any(dir.path());
    let server = Server::builder(config.clone())
        .clock(Arc::new(clock))
        .notifier("app", inbox.notifier())
        .start()
        .unwrap();
    let t = TestServer::wrap_any(server, dir, config, pg);
    assert_eq!(
        t.post_json(
            "/api/set/service/status",
            &report("h", "k", "s", "FAIL", "down")
        )
        .0,
        200
    );
    t.server().app().supervise_now().unwrap();
    assert_eq!(
        inbox.take(),
        vec!["h s: [service:state/FAIL] State changed: \"(?)\" -> \"FAIL\"\nCurrent: FAIL: down"]
    );
    let (_, alerts) = t.get("/ui/api/status/alerts/");
    assert_eq!(alerts["alerts"][0]["delivered"], json!(true));
}
