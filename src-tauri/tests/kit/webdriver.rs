//! A minimal W3C WebDriver client: just the calls the webview tests make (session, find, click,
//! text, execute, screenshot, close window), over reqwest against tauri-driver.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use serde_json::{json, Value};

pub struct Session {
    http: reqwest::Client,
    base: String,
    id: String,
}

/// Waits until the driver answers `/status`.
pub async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/status"))
            .send()
            .await
        {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("tauri-driver did not answer on port {port}")
}

impl Session {
    /// Launches `application` with `args` under the driver and attaches to its webview.
    pub async fn start(port: u16, application: &Path, args: &[&str]) -> anyhow::Result<Session> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "wry",
            "tauri:options": {"application": application, "args": args},
        }}});
        let reply: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await?
            .json()
            .await?;
        let id = reply["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session: {reply}"))?
            .to_owned();
        Ok(Session { http, base, id })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/session/{}{}", self.base, self.id, path);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request.send().await?.json().await.context(url.clone())?;
        if let Some(error) = reply["value"]["error"].as_str() {
            bail!("{path}: {error}: {}", reply["value"]["message"]);
        }
        Ok(reply["value"].clone())
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn execute(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Runs an async script; it calls `arguments[arguments.length - 1](value)` to finish.
    pub async fn execute_async(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Invokes one of the app's commands from the page, as the window would.
    pub async fn invoke(&self, command: &str) -> anyhow::Result<Value> {
        self.invoke_with(command, json!({})).await
    }

    /// Invokes a command with arguments.
    pub async fn invoke_with(&self, command: &str, args: Value) -> anyhow::Result<Value> {
        let script = format!(
            "const done = arguments[arguments.length - 1];\
             window.__TAURI_INTERNALS__.invoke({command:?}, {args}).then(\
               v => done({{ok: v}}), e => done({{err: e}}));"
        );
        let reply = self.execute_async(&script).await?;
        match reply.get("ok") {
            Some(v) => Ok(v.clone()),
            None => bail!("{command} failed: {}", reply["err"]),
        }
    }

    /// The element matching an XPath expression.
    pub async fn find_xpath(&self, xpath: &str) -> anyhow::Result<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "xpath", "value": xpath})),
            )
            .await?;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no element id in {v}"))
    }

    pub async fn click(&self, element: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// Clicks the button whose text is exactly `label`.
    pub async fn click_button(&self, label: &str) -> anyhow::Result<()> {
        let element = self
            .find_xpath(&format!("//button[normalize-space()={label:?}]"))
            .await?;
        self.click(&element).await
    }

    /// Saves a PNG of the webview.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let png =
            base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default())?;
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Presses and releases one key (a WebDriver key code such as `\u{E00C}` for Escape).
    pub async fn press_key(&self, key: &str) -> anyhow::Result<()> {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
        ]}]});
        // The window may be gone before the reply: closing it is what the key does.
        let _ = self
            .call(reqwest::Method::POST, "/actions", Some(actions))
            .await;
        Ok(())
    }

    /// Closes the current window through the driver.
    pub async fn close_window(&self) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, "/window", None)
            .await
            .map(drop)
    }

    pub async fn end(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.id))
            .send()
            .await;
    }
}
