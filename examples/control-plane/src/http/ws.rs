//! WebSocket `/ws`: a hello on connect, then every text message echoed back as `{"echo": ...}`.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn upgrade(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(socket, state))
}

async fn session(mut socket: WebSocket, state: AppState) {
    let hello = json!({
        "type": "hello",
        "service": state.config.service_name,
        "instance": state.config.instance_id,
        "version": state.config.app_version,
    });
    if socket.send(Message::Text(hello.to_string().into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        let echo = match message {
            // Echo JSON as JSON, anything else as a string.
            Message::Text(text) => {
                serde_json::from_str::<Value>(text.as_str()).unwrap_or_else(|_| json!(text.as_str()))
            }
            Message::Binary(bytes) => json!(bytes.len()),
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(Message::Text(json!({ "echo": echo }).to_string().into())).await.is_err() {
            break;
        }
    }
}
