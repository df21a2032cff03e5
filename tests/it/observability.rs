use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

fn value(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(line_start))
        .unwrap_or_else(|| panic!("no metric line starting with {line_start}:\n{metrics}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_connections_events_deliveries_requests_and_commits() {
    let gateway = spawn_gateway().await;
    gateway.create_conversation("c", &["alice", "bob"]).await;
    let bob = gateway.connect("bob").await;
    let subscription = bob.conversation("c").subscribe_messages().await.unwrap();
    within(subscription.connected()).await.unwrap();
    gateway.send_text("c", "alice", "counted").await;
    within(subscription.wait_for(|state| !messages(state).is_empty())).await;

    let response = gateway.client.get(format!("{}/metrics", gateway.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let metrics = response.text().await.unwrap();
    assert_eq!(value(&metrics, "natter_websocket_connections "), 1.0);
    assert_eq!(value(&metrics, "natter_subscriptions "), 1.0);
    assert!(value(&metrics, "natter_events_published_total ") >= 1.0);
    assert!(value(&metrics, "natter_deliveries_total ") >= 1.0);
    assert!(value(&metrics, "natter_store_commit_duration_seconds_count ") >= 1.0);
    assert!(value(&metrics, "natter_store_commit_batch_jobs_count ") >= 1.0);
    // Requests are recorded by route template, not by concrete path.
    assert!(metrics.contains(r#"route="/v1/{appId}/conversations/{conversationId}/messages""#), "{metrics}");
    assert!(!metrics.contains("/conversations/c/messages"), "concrete paths must not become labels");
    assert!(!metrics.contains(SECRET));
}

#[tokio::test]
async fn readyz_answers_once_the_store_is_open() {
    let gateway = spawn_gateway().await;
    let reply = gateway.send(Method::GET, &format!("{}/readyz", gateway.base), None, None).await;
    assert_eq!(reply.expect(200)["status"], json!("ok"));
}
