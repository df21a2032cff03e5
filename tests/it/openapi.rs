//! `proto/openapi.yaml` and the router must agree: every served route is specified, and every specified route
//! is served.

use std::collections::BTreeSet;

use serde_yaml::Value;

fn spec() -> Value {
    serde_yaml::from_str(include_str!("../../proto/openapi.yaml")).expect("openapi.yaml parses")
}

fn spec_routes(spec: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths is a mapping") {
        for (method, _) in item.as_mapping().expect("path item is a mapping") {
            let method = method.as_str().unwrap();
            if ["get", "put", "post", "patch", "delete"].contains(&method) {
                routes.insert((method.to_uppercase(), path.as_str().unwrap().to_owned()));
            }
        }
    }
    routes
}

#[test]
fn the_spec_is_openapi_3_1() {
    let spec = spec();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[test]
fn every_route_in_the_router_is_in_the_spec() {
    let specified = spec_routes(&spec());
    let missing: Vec<_> = natter::gateway::route_list()
        .into_iter()
        .map(|(method, path)| (method.to_owned(), path.to_owned()))
        .filter(|route| !specified.contains(route))
        .collect();
    assert!(missing.is_empty(), "routes served but not in proto/openapi.yaml: {missing:?}");
}

#[test]
fn every_route_in_the_spec_is_served() {
    let served: BTreeSet<_> =
        natter::gateway::route_list().into_iter().map(|(method, path)| (method.to_owned(), path.to_owned())).collect();
    let extra: Vec<_> = spec_routes(&spec()).into_iter().filter(|route| !served.contains(route)).collect();
    assert!(extra.is_empty(), "routes in proto/openapi.yaml that the gateway does not serve: {extra:?}");
}

#[test]
fn every_operation_documents_its_errors() {
    let spec = spec();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for (method, operation) in item.as_mapping().unwrap() {
            if method.as_str() == Some("parameters") {
                continue;
            }
            let responses = operation["responses"].as_mapping();
            let responses = responses.unwrap_or_else(|| panic!("{method:?} {path:?} has no responses"));
            assert!(responses.contains_key("200"), "{method:?} {path:?} documents no 200");
            assert!(responses.len() > 1, "{method:?} {path:?} documents no error");
        }
    }
}
