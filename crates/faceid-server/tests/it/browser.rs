//! A real headless Chromium driven over WebDriver: Debian's `chromium` and `chromium-driver`
//! (`FACEID_CHROMIUM` and `FACEID_CHROMEDRIVER` name other binaries). chromedriver runs on a
//! free loopback port with its own profile folder and stops with the [`Browser`].

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A browser session and the runtime its client runs on.
pub struct Browser {
    pub client: Client,
    runtime: tokio::runtime::Runtime,
    driver: Child,
    profile: PathBuf,
}

/// chromedriver's `se/log` command: the browser console since the last call.
#[derive(Debug)]
struct ConsoleLog;

impl WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

fn binary(var: &str, default: &str, package: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_string());
    assert!(
        std::path::Path::new(&path).is_file(),
        "{path} is missing: install Debian's {package} (or set {var})"
    );
    path
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width` x `height` window.
    pub fn start(width: u32, height: u32) -> Self {
        let driver_path = binary(
            "FACEID_CHROMEDRIVER",
            "/usr/bin/chromedriver",
            "chromium-driver",
        );
        let chromium = binary("FACEID_CHROMIUM", "/usr/bin/chromium", "chromium");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile =
            std::env::temp_dir().join(format!("faceid-chromium-{}-{port}", std::process::id()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-extensions",
                    "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // chromedriver may take a moment after it listens before it serves sessions.
        let mut attempts = 0;
        let client = loop {
            attempts += 1;
            let session = runtime.block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities.clone())
                    .connect(&format!("http://127.0.0.1:{port}")),
            );
            match session {
                Ok(client) => break client,
                Err(e) if attempts < 5 => {
                    eprintln!("no Chromium session yet ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("no Chromium session: {e}"),
            }
        };
        Self {
            client,
            runtime,
            driver,
            profile,
        }
    }

    /// Runs a WebDriver call.
    pub fn run<T>(
        &self,
        future: impl Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> T {
        self.runtime.block_on(future).unwrap()
    }

    pub fn goto(&self, url: &str) {
        self.run(self.client.goto(url));
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.run(self.client.execute(script, args))
    }

    /// Waits until `script` returns a truthy value; returns it.
    pub fn wait(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.js(script, vec![]);
            if !(value.is_null() || value == json!(false) || value == json!("")) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.run(self.client.find(Locator::Css(css)))
    }

    /// Replaces the text of a field with `text`, as typed.
    pub fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css);
        self.run(field.clear());
        self.run(field.send_keys(text));
    }

    pub fn click(&self, css: &str) {
        self.run(self.find(css).click());
    }

    pub fn text(&self, css: &str) -> String {
        self.run(self.find(css).text())
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        self.run(self.client.screenshot())
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.run(self.client.set_window_size(width, height));
    }

    /// The console messages since the last call: (level, source, message).
    pub fn console(&self) -> Vec<(String, String, String)> {
        let entries = self.run(self.client.issue_cmd(ConsoleLog));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let text = |key: &str| e[key].as_str().unwrap_or_default().to_string();
                (text("level"), text("source"), text("message"))
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.runtime.block_on(client.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
