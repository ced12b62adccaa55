//! A headless Chromium driven over the W3C WebDriver protocol (`chromedriver`), for the web
//! console's tests: navigate, find elements by CSS, read text and attributes, type, click and
//! save screenshots. The protocol is JSON over HTTP/1.1 on loopback, spoken here with a plain
//! socket: the handful of calls a test needs do not justify a client crate and its tree.
//!
//! Binaries: `BK_CHROMEDRIVER` (default `chromedriver`) and `BK_CHROMIUM` (default
//! `/usr/bin/chromium`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; the driver (and with it the browser) is killed on drop.
pub struct Browser {
    driver: Child,
    address: String,
    session: String,
}

/// Where the driver and browser binaries are, or why the test cannot run.
///
/// # Errors
/// Names the missing binary and the variable that points at it.
pub fn binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    let driver = std::env::var_os("BK_CHROMEDRIVER").map_or_else(
        || which("chromedriver").unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver")),
        PathBuf::from,
    );
    let chromium = std::env::var_os("BK_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    for (path, variable, package) in
        [(&driver, "BK_CHROMEDRIVER", "chromium-driver"), (&chromium, "BK_CHROMIUM", "chromium")]
    {
        if !path.exists() {
            bail!("{} not found: install Debian's `{package}` or set {variable}", path.display());
        }
    }
    Ok((driver, chromium))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
}

impl Browser {
    /// Starts the driver on a free port and opens a headless session with a 1400×1000 window.
    ///
    /// # Errors
    /// When the driver does not start or refuses the session.
    pub fn start() -> anyhow::Result<Self> {
        let (driver_binary, chromium) = binaries()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new(&driver_binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", driver_binary.display()))?;
        let address = format!("127.0.0.1:{port}");
        let mut browser = Browser { driver, address, session: String::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.call("GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on {} within 20 s", browser.address);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"]
            }
        }}});
        let answer = browser.call("POST", "/session", Some(capabilities))?;
        browser.session =
            answer["sessionId"].as_str().context("the driver answered no session id")?.to_string();
        Ok(browser)
    }

    /// Opens `url` and waits for it to load.
    ///
    /// # Errors
    /// When the driver fails.
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.session_call("POST", "/url", json!({ "url": url })).map(drop)
    }

    /// The first element matching `css`, if any.
    ///
    /// # Errors
    /// When the driver fails for another reason than "no such element".
    pub fn find(&self, css: &str) -> anyhow::Result<Option<String>> {
        let body = json!({ "using": "css selector", "value": css });
        match self.session_call("POST", "/element", body) {
            Ok(value) => Ok(value[ELEMENT_KEY].as_str().map(str::to_string)),
            Err(error) if error.to_string().contains("no such element") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The rendered text of the first element matching `css` (`None` when there is none). Read
    /// in one script, so a page that refreshes itself cannot swap the element in between.
    ///
    /// # Errors
    /// When the driver fails.
    pub fn text(&self, css: &str) -> anyhow::Result<Option<String>> {
        let script = "const element = document.querySelector(arguments[0]); \
                      return element ? element.innerText : null;";
        let value =
            self.session_call("POST", "/execute/sync", json!({ "script": script, "args": [css] }))?;
        Ok(value.as_str().map(str::to_string))
    }

    /// Runs `script` in the page and returns what it returns.
    ///
    /// # Errors
    /// When the script throws or the driver fails.
    pub fn eval(&self, script: &str) -> anyhow::Result<Value> {
        self.session_call("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Types `text` into the element matching `css`.
    ///
    /// # Errors
    /// When there is no such element or the driver fails.
    pub fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let element =
            self.find(css)?.with_context(|| format!("no element `{css}` to type into"))?;
        self.session_call("POST", &format!("/element/{element}/value"), json!({ "text": text }))
            .map(drop)
    }

    /// Clicks the element matching `css`.
    ///
    /// # Errors
    /// When there is no such element or the driver fails.
    pub fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.find(css)?.with_context(|| format!("no element `{css}` to click"))?;
        self.session_call("POST", &format!("/element/{element}/click"), json!({})).map(drop)
    }

    /// Sends a key press (e.g. `"\u{E004}"`, Tab) to the focused element.
    ///
    /// # Errors
    /// When the driver fails.
    pub fn press(&self, key: &str) -> anyhow::Result<()> {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.session_call("POST", "/actions", actions).map(drop)
    }

    /// Saves a PNG of the window to `path`.
    ///
    /// # Errors
    /// When the driver fails or the file cannot be written.
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        use base64::Engine as _;
        let value = self.session_call("GET", "/screenshot", Value::Null)?;
        let encoded = value.as_str().context("the screenshot answer is not a string")?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, base64::engine::general_purpose::STANDARD.decode(encoded)?)?;
        Ok(())
    }

    /// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
    ///
    /// # Errors
    /// Names `what` on time-out, or the first driver failure.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check(self)? {
                return Ok(found);
            }
            if Instant::now() > deadline {
                let text = self.text("body").ok().flatten().unwrap_or_default();
                bail!("timed out after {timeout:?} waiting for {what}; the page reads:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn session_call(&self, method: &str, path: &str, body: Value) -> anyhow::Result<Value> {
        let body = (!body.is_null()).then_some(body);
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// One WebDriver call; the answer's `value`, or its error as an `Err`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(&self.address)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        )?;
        let (head, payload) = read_response(&mut stream)?;
        let answer: Value = serde_json::from_slice(&payload)
            .with_context(|| format!("{method} {path}: not JSON: {head}"))?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            bail!("{method} {path}: {error}: {}", value["message"].as_str().unwrap_or_default());
        }
        Ok(value)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The status line and headers, and the body: `Content-Length` bytes of it (chromedriver keeps
/// the connection open despite `Connection: close`), or up to the end when there is no length.
fn read_response(stream: &mut TcpStream) -> anyhow::Result<(String, Vec<u8>)> {
    let mut response = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if let Some(end) = response.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_string();
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            let body_start = end + 4;
            match length {
                Some(length) => {
                    while response.len() < body_start + length {
                        let read = stream.read(&mut buffer)?;
                        if read == 0 {
                            bail!("the driver closed the connection mid-answer");
                        }
                        response.extend_from_slice(&buffer[..read]);
                    }
                    return Ok((head, response[body_start..body_start + length].to_vec()));
                }
                None => {
                    stream.read_to_end(&mut response)?;
                    return Ok((head, response[body_start..].to_vec()));
                }
            }
        }
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            bail!("the driver closed the connection before its headers ended");
        }
        response.extend_from_slice(&buffer[..read]);
    }
}
