//! `faceid serve` as a process: starts with the tiny models, answers, stops on SIGINT.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::generate::{data, faceid};

#[test]
fn serve_answers_and_stops_cleanly_on_interrupt() {
    let mut child = faceid()
        .args(["serve", "--bind", "127.0.0.1:0", "--api-key", "k"])
        .arg("--base-model")
        .arg(data().join("sd/tiny-a"))
        .arg("--ip-adapter")
        .arg(data().join("faceid/ip-adapter-faceid_tiny.bin"))
        .arg("--recognizer")
        .arg(data().join("face/arcface_r50_bn.onnx"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut url = None;
    let mut seen = String::new();
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(rest) = line
            .split(" at ")
            .nth(1)
            .filter(|_| line.starts_with("serving"))
        {
            url = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("no 'serving' line in:\n{seen}"));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let health = agent.get(&format!("{url}/health")).call().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let submit = agent
        .post(&format!("{url}/queue/fal-ai/ip-adapter-face-id"))
        .header("content-type", "application/json")
        .send(r#"{"prompt": "x"}"#)
        .unwrap();
    assert_eq!(submit.status().as_u16(), 401, "keys are enforced");
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}");
}
