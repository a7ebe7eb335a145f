//! The playground page in a real headless Chromium against the server on the tiny models: the
//! form from the schema, a generation that matches the API's, the request as curl, a 422 and a
//! no-face error where they belong, cancel, phone and desktop widths, the API key, and a clean
//! console. Screenshots go to `FACEID_SCREENSHOTS` when it is set.

mod page;

use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::common::{agent, input, root, send, start};
use page::{
    DESKTOP, GENERATION, PHONE, click_for_text, download, face_path, faceless_png, fill, open,
    save, snippet, unexpected_console, wait_done,
};

#[test]
fn playground_generates_like_the_api_and_shows_errors_progress_and_cancel() {
    let server = start(|_| {});
    let url = format!("{}/", server.url);

    // The page: one HTML document, a script and a style sheet from this server, under a strict
    // policy.
    let mut weight = 0;
    for (path, kind) in [
        ("", "text/html"),
        ("playground/app.js", "text/javascript"),
        ("playground/app.css", "text/css"),
    ] {
        let mut response = agent().get(&format!("{url}{path}")).call().unwrap();
        assert_eq!(response.status().as_u16(), 200, "/{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "/{path}"
        );
        let csp = headers["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        weight += response.body_mut().read_to_vec().unwrap().len();
    }
    println!("page weight: {weight} bytes (HTML, script and style sheet, uncompressed)");

    let browser = Browser::start(DESKTOP.0, DESKTOP.1);
    open(&browser, &url);

    // The form comes from the schema: every field, each control labelled, the model types this
    // server cannot generate disabled with the reason.
    let (_, _, schema) = send("GET", &format!("{}/openapi.json", server.url), None, None);
    let input_schema = &schema["components"]["schemas"]["Input"];
    for (name, p) in input_schema["properties"].as_object().unwrap() {
        if name.starts_with("face_image") {
            continue;
        }
        let id = format!("f-{name}");
        let found = browser.js(
            "const e = document.getElementById(arguments[0]); \
             return e && {value: e.value, min: e.min, max: e.max, help: document.getElementById('help-' + arguments[1]).textContent}",
            vec![json!(id), json!(name)],
        );
        assert!(found.is_object(), "no control for {name}");
        assert!(
            found["help"]
                .as_str()
                .unwrap()
                .contains(p["description"].as_str().unwrap()),
            "{name}"
        );
        let number = |v: &Value| v.as_str().unwrap().parse::<f64>().unwrap();
        match p.get("default") {
            Some(Value::String(default)) => {
                assert_eq!(found["value"], *default, "{name}'s default")
            }
            Some(default) => assert_eq!(
                number(&found["value"]),
                default.as_f64().unwrap(),
                "{name}'s default"
            ),
            None => {}
        }
        for bound in ["minimum", "maximum"] {
            if let Some(limit) = p.get(bound) {
                let attr = &found[&bound[..3]];
                assert_eq!(number(attr), limit.as_f64().unwrap(), "{name}'s {bound}");
            }
        }
    }
    let unlabelled = browser.js(
        "return [...document.querySelectorAll('input, select, textarea')].filter(e => e.labels.length === 0).map(e => e.id)",
        vec![],
    );
    assert_eq!(unlabelled, json!([]), "controls without a label");
    let options = browser.js(
        "return [...document.querySelectorAll('#f-model_type option')].map(o => [o.value, o.disabled])",
        vec![],
    );
    assert_eq!(
        options,
        json!([
            ["1_5-v1", false],
            ["1_5-v1-plus", true],
            ["1_5-v2-plus", true],
            ["SDXL-v1", true],
            ["SDXL-v2-plus", true],
            ["1_5-auraface-v1", false]
        ])
    );
    let help = browser.text("#help-model_type");
    assert!(
        help.contains("SDXL-v1: this server's base model is an SD 1.x model"),
        "{help}"
    );
    assert!(
        help.contains("1_5-v1-plus: this server's IP-Adapter checkpoint is FaceID;"),
        "{help}"
    );
    save(&browser, "desktop-before");

    // A generation: the seed and the image are the API's for the same input.
    fill(&browser, 2, Some(7), &face_path());
    browser.click("#submit");
    assert_eq!(wait_done(&browser), "Done: seed 7.");
    assert_eq!(browser.text("#seed"), "7");
    let grid = browser.js("return document.getElementById('grid').src", vec![]);
    let (code, _, api) = send(
        "POST",
        &format!("{}/fal-ai/ip-adapter-face-id", server.url),
        Some(&input(2)),
        None,
    );
    assert_eq!(code, 200, "{api}");
    assert_eq!(api["seed"], 7);
    let page_png = download(grid.as_str().unwrap());
    assert_eq!(
        page_png,
        download(api["image"]["url"].as_str().unwrap()),
        "the page's image is the API's"
    );
    let samples = browser.js(
        "return [...document.querySelectorAll('#samples a')].map(a => a.download)",
        vec![],
    );
    assert_eq!(samples.as_array().unwrap().len(), 1);
    save(&browser, "desktop-after");

    // The same request as curl, run as it is shown, gives the same image.
    let curl = snippet(&browser, "curl");
    assert!(curl.contains("base64 -w0 'astronaut.png'"), "{curl}");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&curl)
        .current_dir(root().join("tests/data/faces"))
        .output()
        .expect("bash and curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_curl: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_curl["seed"], 7);
    assert_eq!(
        download(by_curl["image"]["url"].as_str().unwrap()),
        page_png
    );
    for (lang, needles) in [
        (
            "python",
            [
                "fal_client.subscribe(",
                "fal_client.encode_file(\"astronaut.png\")",
                "\"seed\": 7",
            ],
        ),
        (
            "js",
            [
                "fal.subscribe(",
                "readFileSync(\"astronaut.png\")",
                "seed: 7",
            ],
        ),
    ] {
        let code = snippet(&browser, lang);
        for needle in needles {
            assert!(code.contains(needle), "{lang}: no {needle} in\n{code}");
        }
        let host = server.url.split("://").nth(1).unwrap();
        assert!(
            code.contains(&format!("{host}/queue"))
                || code.contains(&format!("\"{}\"", server.url)),
            "{lang}: not pointed at this server:\n{code}"
        );
    }

    // "Reuse this seed" puts the result's seed in the form.
    browser.click("#seed-random");
    browser.click("#reuse-seed");
    let seed = browser.js(
        "const s = document.getElementById('f-seed'); return [s.value, s.disabled]",
        vec![],
    );
    assert_eq!(seed, json!(["7", false]));

    // A 422 is shown next to the field it names.
    browser.type_into("#f-num_inference_steps", "500");
    let error = click_for_text(&browser, "#submit", "err-num_inference_steps");
    assert!(error.contains("200"), "{error}");
    let invalid = browser.js(
        "return document.getElementById('f-num_inference_steps').getAttribute('aria-invalid')",
        vec![],
    );
    assert_eq!(invalid, json!("true"));
    assert_eq!(browser.text("#err-prompt"), "");

    // No face: on the face input, with the advice to lower the detector size.
    fill(&browser, 2, Some(7), &faceless_png());
    browser.click("#submit");
    assert!(wait_done(&browser).starts_with("The input could not be used"));
    let error = browser.text("#err-face");
    assert!(
        error.contains("no face found") && error.contains("face_id_det_size"),
        "{error}"
    );

    // A long request: progress step by step, then cancel stops it.
    fill(&browser, 200, None, &face_path());
    browser.type_into("#f-width", "1024");
    browser.type_into("#f-height", "1024");
    browser.click("#submit");
    browser.wait(
        "two steps",
        GENERATION,
        "return document.getElementById('progress').value >= 2 && document.getElementById('progress').max === 200",
    );
    let shown = browser.text("#progress-text");
    assert!(
        shown.starts_with("Step ") && shown.ends_with(" of 200"),
        "{shown}"
    );
    assert!(
        browser
            .js(
                "return document.querySelectorAll('#logs li').length",
                vec![]
            )
            .as_u64()
            .unwrap()
            >= 2
    );
    save(&browser, "desktop-during");
    let id = browser.js(
        "return document.getElementById('cancel').dataset.request",
        vec![],
    );
    browser.click("#cancel");
    assert_eq!(wait_done(&browser), "Cancelled.");
    let base = format!(
        "{}/queue/fal-ai/ip-adapter-face-id/requests/{}",
        server.url,
        id.as_str().unwrap()
    );
    let (_, _, status) = send("GET", &format!("{base}/status?logs=1"), None, None);
    assert_eq!(status["status"], "COMPLETED");
    let steps = status["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["message"].as_str().unwrap().starts_with("step "))
        .count();
    assert!((2..200).contains(&steps), "{steps} steps ran");
    assert!(
        browser
            .text("#progress-text")
            .starts_with("Cancelled at step ")
    );

    // Nothing came from another host.
    let foreign = browser.js(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin) && !n.startsWith('data:'))",
        vec![],
    );
    assert_eq!(foreign, json!([]));
    let console = unexpected_console(&browser, &[422, 400]);
    assert!(console.is_empty(), "console: {console:#?}");

    // A phone-sized screen: one column, nothing wider than the screen.
    browser.resize(PHONE.0, PHONE.1);
    open(&browser, &url);
    let overflow =
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth";
    assert_eq!(browser.js(overflow, vec![]), json!(0), "wider than a phone");
    save(&browser, "phone-before");
    fill(&browser, 120, None, &face_path());
    browser.click("#submit");
    browser.wait(
        "a step",
        GENERATION,
        "return document.getElementById('progress').value >= 1",
    );
    browser.js(
        "document.getElementById('progress-box').scrollIntoView()",
        vec![],
    );
    save(&browser, "phone-during");
    browser.click("#cancel");
    assert_eq!(wait_done(&browser), "Cancelled.");
    fill(&browser, 2, Some(7), &face_path());
    browser.click("#submit");
    assert_eq!(wait_done(&browser), "Done: seed 7.");
    browser.js("document.getElementById('result').scrollIntoView()", vec![]);
    assert_eq!(
        browser.js(overflow, vec![]),
        json!(0),
        "wider than a phone with a result"
    );
    save(&browser, "phone-after");
    let console = unexpected_console(&browser, &[400]);
    assert!(console.is_empty(), "console: {console:#?}");
}

#[test]
fn playground_asks_for_the_api_key_once_and_sends_it() {
    let server = start(|c| c.api_keys = vec!["playground-key".into()]);
    let browser = Browser::start(DESKTOP.0, DESKTOP.1);
    browser.goto(&format!("{}/", server.url));
    browser.wait(
        "the key dialog",
        Duration::from_secs(20),
        "return document.getElementById('key-dialog').open",
    );

    browser.type_into("#key-input", "wrong-key");
    let refusal = click_for_text(&browser, "#key-save", "key-error");
    assert!(refusal.contains("not valid"), "{refusal}");
    assert_eq!(
        browser.js("return document.getElementById('key-dialog').open", vec![]),
        json!(true)
    );

    browser.type_into("#key-input", "playground-key");
    browser.click("#key-save");
    browser.wait(
        "the dialog to close",
        Duration::from_secs(10),
        "return !document.getElementById('key-dialog').open",
    );
    fill(&browser, 1, Some(11), &face_path());
    browser.click("#submit");
    assert_eq!(wait_done(&browser), "Done: seed 11.");
    let python = snippet(&browser, "python");
    assert!(
        python.contains("os.environ.setdefault(\"FAL_KEY\""),
        "{python}"
    );
    let id = browser.text("#request-id");
    let status = format!(
        "{}/queue/fal-ai/ip-adapter-face-id/requests/{id}/status",
        server.url
    );
    assert_eq!(send("GET", &status, None, Some("playground-key")).0, 200);
    assert_eq!(send("GET", &status, None, None).0, 401);

    // Once per tab: a reload asks no more.
    browser.goto(&format!("{}/", server.url));
    browser.wait(
        "the form",
        Duration::from_secs(20),
        "return document.body.dataset.ready === 'true'",
    );
    assert_eq!(
        browser.js("return document.getElementById('key-dialog').open", vec![]),
        json!(false)
    );
    let console = unexpected_console(&browser, &[401]);
    assert!(console.is_empty(), "console: {console:#?}");
}

#[test]
fn playground_takes_the_face_as_a_url_or_a_zip_of_photos() {
    use std::io::Write;
    let photo = std::fs::read(root().join("tests/data/faces/astronaut.png")).unwrap();
    let served = photo.clone();
    let host = crate::common::stub(Duration::ZERO, move |_| {
        crate::common::http_response("200 OK", &[("Content-Type", "image/png")], &served)
    });
    let server = start(|c| c.fetch.allow_hosts = vec![host.clone()]);
    let browser = Browser::start(DESKTOP.0, DESKTOP.1);
    open(&browser, &format!("{}/", server.url));
    let logs =
        "return [...document.querySelectorAll('#logs li')].map(l => l.textContent).join('\\n')";

    // A URL: fetched by the server, with the image the API gives for the same URL.
    browser.type_into("#f-prompt", "a photo of an astronaut");
    browser.type_into("#f-num_inference_steps", "1");
    browser.type_into("#f-num_samples", "1");
    browser.click("#seed-random");
    browser.type_into("#f-seed", "5");
    browser.click("input[name=face-source][value=url]");
    let url = format!("http://{host}/face.png");
    browser.type_into("#face-url", &url);
    browser.click("#submit");
    assert_eq!(wait_done(&browser), "Done: seed 5.");
    let body = json!({"prompt": "a photo of an astronaut", "face_image_url": url, "num_samples": 1, "num_inference_steps": 1, "seed": 5});
    let (code, _, api) = send(
        "POST",
        &format!("{}/fal-ai/ip-adapter-face-id", server.url),
        Some(&body),
        None,
    );
    assert_eq!(code, 200, "{api}");
    let grid = browser.js("return document.getElementById('grid').src", vec![]);
    assert_eq!(
        download(grid.as_str().unwrap()),
        download(api["image"]["url"].as_str().unwrap())
    );
    let curl = snippet(&browser, "curl");
    assert!(
        curl.contains(&format!("\"face_image_url\": \"{url}\"")),
        "{curl}"
    );

    // A zip of photos: every face is used (their identities averaged).
    let zip_path = std::env::temp_dir().join(format!("faceid-faces-{}.zip", std::process::id()));
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    for (name, data) in [
        ("astronaut.png", photo),
        (
            "obama.jpg",
            std::fs::read(root().join("tests/data/faces/obama.jpg")).unwrap(),
        ),
    ] {
        writer
            .start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(&data).unwrap();
    }
    writer.finish().unwrap();
    browser.click("input[name=face-source][value=zip]");
    browser.run(
        browser
            .find("#face-zip")
            .send_keys(&zip_path.display().to_string()),
    );
    browser.wait(
        "the zip to be read",
        Duration::from_secs(10),
        "return document.getElementById('snippet').textContent.includes('face_images_data_url')",
    );
    browser.click("#submit");
    assert_eq!(wait_done(&browser), "Done: seed 5.");
    let lines = browser.js(logs, vec![]);
    assert!(
        lines
            .as_str()
            .unwrap()
            .contains("face identity from 2 of 2 image(s)"),
        "{lines}"
    );
    assert!(
        !lines.as_str().unwrap().contains("/tests/data"),
        "a server path was shown: {lines}"
    );
    let _ = std::fs::remove_file(&zip_path);
    let console = unexpected_console(&browser, &[]);
    assert!(console.is_empty(), "console: {console:#?}");
}

#[test]
fn the_playground_can_be_turned_off() {
    let server = start(|c| c.playground = false);
    for path in [
        "/",
        "/playground/app.js",
        "/playground/config.json",
        "/playground/key",
    ] {
        assert_eq!(
            send("GET", &format!("{}{path}", server.url), None, None).0,
            404,
            "{path}"
        );
    }
    assert_eq!(
        send("GET", &format!("{}/health", server.url), None, None).0,
        200
    );
}
