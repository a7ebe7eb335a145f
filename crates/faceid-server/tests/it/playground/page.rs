//! Driving the playground page: opening it, filling the form, reading the result, the code
//! snippets and the console.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::browser::Browser;
use crate::common::{agent, root};

pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);
pub const GENERATION: Duration = Duration::from_secs(180);

pub fn download(url: &str) -> Vec<u8> {
    let mut response = agent().get(url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200, "{url}");
    response.body_mut().read_to_vec().unwrap()
}

pub fn save(browser: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("FACEID_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            PathBuf::from(dir).join(format!("{name}.png")),
            browser.screenshot(),
        )
        .unwrap();
    }
}

pub fn face_path() -> String {
    root()
        .join("tests/data/faces/astronaut.png")
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

/// A photo with no face in it: a smooth grey gradient.
pub fn faceless_png() -> String {
    let path = std::env::temp_dir().join(format!("faceid-noface-{}.png", std::process::id()));
    let img = image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x / 2) as u8, (y / 2) as u8, 128])
    });
    img.save(&path).unwrap();
    path.display().to_string()
}

pub fn open(browser: &Browser, url: &str) {
    browser.goto(url);
    browser.wait(
        "the form",
        Duration::from_secs(20),
        "return document.body.dataset.ready === 'true'",
    );
}

/// Fills the form for a request like `common::input(steps)` (seed 7 unless `seed` is None).
pub fn fill(browser: &Browser, steps: u32, seed: Option<u64>, face: &str) {
    browser.type_into("#f-prompt", "a photo of an astronaut");
    browser.run(browser.find("#face-file").send_keys(face));
    browser.wait(
        "the face preview",
        Duration::from_secs(10),
        "return !document.getElementById('face-preview').hidden",
    );
    browser.type_into("#f-num_inference_steps", &steps.to_string());
    browser.type_into("#f-num_samples", "1");
    let random = browser.js(
        "return document.getElementById('seed-random').checked",
        vec![],
    );
    match seed {
        Some(seed) => {
            if random == json!(true) {
                browser.click("#seed-random");
            }
            browser.type_into("#f-seed", &seed.to_string());
        }
        None => {
            if random == json!(false) {
                browser.click("#seed-random");
            }
        }
    }
}

/// Clicks `button` and waits for text in the element `id`; returns it.
pub fn click_for_text(browser: &Browser, button: &str, id: &str) -> String {
    browser.click(button);
    let script = format!("return document.getElementById('{id}').textContent");
    let text = browser.wait(id, Duration::from_secs(20), &script);
    text.as_str().unwrap().to_string()
}

/// The request as code in `lang` (`curl`, `python`, `js`), as the page shows it.
pub fn snippet(browser: &Browser, lang: &str) -> String {
    if browser.js("return document.getElementById('code').open", vec![]) != json!(true) {
        browser.click("#code summary");
    }
    browser.click(&format!("input[name=lang][value={lang}]"));
    browser.text("#snippet")
}

pub fn wait_done(browser: &Browser) -> String {
    browser
        .wait(
            "the generation to end",
            GENERATION,
            "const s = document.getElementById('form-status').textContent; \
             return /^(Done|Failed|Cancelled|The input)/.test(s) ? s : null",
        )
        .as_str()
        .unwrap()
        .to_string()
}

/// Console entries other than the network errors of the answers the test asks for (a 4xx on a
/// fetch is logged by Chromium as "Failed to load resource").
pub fn unexpected_console(browser: &Browser, expected_statuses: &[u16]) -> Vec<String> {
    browser
        .console()
        .into_iter()
        .filter(|(level, source, message)| {
            let wanted = source == "network"
                && expected_statuses
                    .iter()
                    .any(|s| message.contains(&format!("status of {s} ")));
            level == "SEVERE" && !wanted || level == "WARNING" && source != "network"
        })
        .map(|(level, source, message)| format!("{level} {source}: {message}"))
        .collect()
}
