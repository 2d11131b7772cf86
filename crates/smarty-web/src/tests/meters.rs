//! `/api/meters`: the meters and what their values are, for the dashboard, as openapi.json
//! describes them.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;

use super::{Backend, fixture, get};
use smarty_model::event::MeterEvent;

/// The field of `meter`'s `fields` named `name`.
fn field<'a>(meters: &'a Value, name: &str) -> &'a Value {
    meters["meters"][0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {meters}"))
}

async fn meters_describe_their_values_for_the_dashboard(backend: Backend) {
    let f = fixture(backend, 10, None);
    // Before any telegram: the stored series, with what they are.
    let (status, body) = get(&f.app, false, "/api/meters", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let meters: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(meters["time_zone"], "Europe/Luxembourg");
    let gas = field(&meters, "mbus1_gas_m3");
    assert_eq!(gas["label"], "Gas");
    assert_eq!(gas["unit"], "m³");
    assert_eq!(gas["kind"], "mbus_reading");
    assert_eq!(
        gas["mbus"],
        serde_json::json!({"channel": 1, "medium": "gas"})
    );
    assert_eq!(gas["series"], true);
    assert_eq!(gas["cumulative"], true);
    let power = field(&meters, "power_import_l2_kw");
    assert_eq!(power["label"], "Power import L2");
    assert_eq!(power["unit"], "kW");
    assert_eq!(power["phase"], "L2");
    assert_eq!(power["direction"], "import");
    assert_eq!(power["obis"], "1-0:41.7.0");

    // A telegram adds what the meter sends beyond the store, with its codes as sent.
    let telegram = b"/Lux5\\253663629_D\r\n\r\n1-3:0.2.8(42)\r\n0-0:1.0.0(260403175431S)\r\n\
1-0:1.8.0(000006.695*kWh)\r\n1-0:14.7.0(50.01*Hz)\r\n0-2:24.1.0(007)\r\n\
0-2:24.2.1(260403174542S)(00012.345*m3)\r\n!";
    let mut decoder = smarty_p1::Decoder::new(smarty_p1::DecoderConfig::default());
    decoder.push(telegram);
    let decoded = decoder.finish().unwrap().unwrap();
    let event = smarty_model::event::TelegramEvent::new(
        &Arc::from("home"),
        &decoded,
        std::time::SystemTime::now(),
    );
    f.app
        .web
        .live
        .update(&MeterEvent::Telegram(Arc::new(event)));
    let (_, body) = get(&f.app, false, "/api/meters", None).await;
    let meters: Value = serde_json::from_str(&body).unwrap();
    let frequency = field(&meters, "frequency_hz");
    assert_eq!(frequency["unit"], "Hz");
    assert_eq!(frequency["series"], false);
    assert_eq!(frequency["obis"], "1-0:14.7.0");
    let water = field(&meters, "mbus2_water_m3");
    assert_eq!(water["label"], "Water");
    assert_eq!(water["mbus"]["medium"], "water");
    assert_eq!(water["series"], false, "not stored yet");
    assert_eq!(field(&meters, "energy_import_kwh")["series"], true);

    // openapi.json describes every key of the answer, and requires every key of a field.
    let openapi: Value = serde_json::from_str(crate::OPENAPI).unwrap();
    let answer = &openapi["paths"]["/api/meters"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"]["properties"];
    let schemas = &openapi["components"]["schemas"];
    for key in meters.as_object().unwrap().keys() {
        assert!(answer[key].is_object(), "{key} is not in openapi.json");
    }
    for key in meters["meters"][0].as_object().unwrap().keys() {
        assert!(
            schemas["Meter"]["properties"][key].is_object(),
            "Meter.{key} is not in openapi.json"
        );
    }
    let mut keys: Vec<&str> = water
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut required: Vec<&str> = schemas["Field"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort_unstable();
    required.sort_unstable();
    assert_eq!(keys, required, "Field in openapi.json");
}

on_both!(meters_describe_their_values_for_the_dashboard,);
