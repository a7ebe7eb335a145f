//! `faceid worker` processes on a real redis-server with the tiny models: `kill -9` of the
//! worker running a request, and the other worker completes it once.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use faceid_server::redis_queue::{NewRequest, QueueSettings, RedisQueue};
use faceid_server::testing::RedisServer;
use serde_json::{Value, json};

use crate::generate::{data, faceid, tiny_models};

/// A `faceid worker` process, killed when dropped.
pub(crate) struct Worker(pub(crate) Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(redis: &RedisServer, name: &str) -> Worker {
    worker_for(redis, name, "http://api.example:8000", &[])
}

/// A worker on the tiny models whose images are addressed at `public_url`, taking requests
/// over after 2 s of silence.
pub(crate) fn worker_for(
    redis: &RedisServer,
    name: &str,
    public_url: &str,
    extra: &[&str],
) -> Worker {
    let child = tiny_models(
        faceid()
            .args(["worker", "--queue", &redis.url(), "--name", name])
            .args(["--public-url", public_url, "--visibility-secs", "2"])
            .args(extra),
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    Worker(child)
}

fn face() -> String {
    use base64::Engine;
    let bytes = std::fs::read(data().join("faces/astronaut.png")).unwrap();
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn status(queue: &RedisQueue, id: &str) -> Value {
    queue
        .status(id, None, true)
        .unwrap()
        .expect("a known request")
        .0
}

#[test]
fn a_request_whose_worker_is_killed_completes_on_the_other_worker() {
    let redis = RedisServer::start();
    let settings = QueueSettings {
        visibility: Duration::from_secs(2),
        ..QueueSettings::default()
    };
    let api = RedisQueue::open(&redis.url(), settings).unwrap();
    let workers = [worker(&redis, "wa"), worker(&redis, "wb")];
    let input = json!({
        "prompt": "a photo of an astronaut",
        "face_image_url": face(),
        "num_samples": 1,
        "num_inference_steps": 40,
        "seed": 3,
    });
    let request = NewRequest {
        id: "long".into(),
        owner: None,
        input,
        inline_images: false,
        webhook: None,
    };
    assert_eq!(api.submit(&request).unwrap(), Some(0));

    // Wait until it is a few steps in, then kill its worker without warning.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !status(&api, "long")["logs"]
        .to_string()
        .contains("step 3/40")
    {
        assert!(
            Instant::now() < deadline,
            "the request did not start: {}",
            status(&api, "long")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let running_on: String = redis::cmd("HGET")
        .arg("faceid:req:long")
        .arg("worker")
        .query(&mut conn)
        .unwrap();
    let [mut wa, mut wb] = workers;
    let (victim, survivor) = if running_on == "wa" {
        (&mut wa, &mut wb)
    } else {
        (&mut wb, &mut wa)
    };
    victim.0.kill().unwrap();
    victim.0.wait().unwrap();
    assert!(status(&api, "long")["status"] == "IN_PROGRESS");

    // The other worker takes it over after the visibility timeout and completes it, once.
    while status(&api, "long")["status"] != "COMPLETED" {
        assert!(
            Instant::now() < deadline,
            "not completed: {}",
            status(&api, "long")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let outcome = api.outcome("long", None).unwrap().unwrap().unwrap();
    assert_eq!(outcome.status_code, 200, "{}", outcome.body);
    assert_eq!(outcome.body["seed"], 3);
    let deliveries: u32 = redis::cmd("HGET")
        .arg("faceid:req:long")
        .arg("deliveries")
        .query(&mut conn)
        .unwrap();
    assert_eq!(deliveries, 2);
    let finished_on: String = redis::cmd("HGET")
        .arg("faceid:req:long")
        .arg("worker")
        .query(&mut conn)
        .unwrap();
    assert_ne!(finished_on, running_on);
    let name = outcome.body["image"]["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        api.file(&name)
            .unwrap()
            .is_some_and(|png| png.starts_with(b"\x89PNG"))
    );
    assert!(
        survivor.0.try_wait().unwrap().is_none(),
        "the other worker still runs"
    );
}
