//! The Redis-backed shared queue against a real `redis-server`: capacity, order, ownership and
//! cancel across nodes; claims kept alive, reclaimed from silent workers and completed once;
//! requests that kill their workers end failed; nothing accepted is lost when Redis crashes.

use std::time::{Duration, Instant, SystemTime};

use faceid_server::redis_queue::{
    Claim, NewRequest, QueueSettings, RedisQueue, SharedStats, Start,
};
use faceid_server::{Cancelled, Outcome, cancelled_outcome};
use serde_json::json;

use faceid_server::testing::RedisServer;

fn settings(capacity: usize, visibility_ms: u64, max_deliveries: u32) -> QueueSettings {
    QueueSettings {
        capacity,
        visibility: Duration::from_millis(visibility_ms),
        max_deliveries,
        ..QueueSettings::default()
    }
}

fn request(id: &str, owner: Option<&str>) -> NewRequest {
    NewRequest {
        id: id.into(),
        owner: owner.map(Into::into),
        input: json!({"prompt": id, "seed": 7}),
        inline_images: false,
        webhook: None,
    }
}

fn done(worker: &str) -> Outcome {
    Outcome {
        status_code: 200,
        body: json!({"by": worker}),
        inference_time: 0.5,
        error: None,
        finished_at: SystemTime::now(),
    }
}

fn failed(message: &str) -> Outcome {
    Outcome {
        status_code: 500,
        body: json!({"detail": message}),
        inference_time: 0.0,
        error: Some((message.into(), "WorkerLost".into())),
        finished_at: SystemTime::now(),
    }
}

/// Claims until `worker` gets something (reclaims wait for the visibility timeout).
fn claim_one(queue: &RedisQueue, worker: &str) -> Claim {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut claims = queue.claim(worker, 1, Duration::from_millis(100)).unwrap();
        if let Some(claim) = claims.pop() {
            return claim;
        }
        assert!(Instant::now() < deadline, "{worker} got nothing to do");
    }
}

fn run(queue: &RedisQueue, worker: &str, claim: &mut Claim) -> NewRequest {
    match queue.start(worker, claim).unwrap() {
        Start::Run(request) => request,
        other => panic!("{} should run, not {other:?}", claim.id),
    }
}

fn status(queue: &RedisQueue, id: &str, key: Option<&str>) -> serde_json::Value {
    queue
        .status(id, key, true)
        .unwrap()
        .expect("a known request")
        .0
}

#[test]
fn capacity_order_ownership_and_cancel_hold_across_api_nodes() {
    let redis = RedisServer::start();
    let a = RedisQueue::open(&redis.url(), settings(3, 60_000, 3)).unwrap();
    let b = RedisQueue::open(&redis.url(), settings(3, 60_000, 3)).unwrap();
    assert_eq!(a.submit(&request("r1", Some("k1"))).unwrap(), Some(0));
    assert_eq!(b.submit(&request("r2", None)).unwrap(), Some(1));
    assert_eq!(a.submit(&request("r3", Some("k2"))).unwrap(), Some(2));
    // The capacity is the queue's, not a node's.
    assert_eq!(b.submit(&request("r4", None)).unwrap(), None);
    assert_eq!(a.depth().unwrap(), (3, 0));

    // Any node reads any request, but only with its key.
    let s = status(&b, "r3", Some("k2"));
    assert_eq!(
        (s["status"].clone(), s["queue_position"].clone()),
        (json!("IN_QUEUE"), json!(2))
    );
    assert!(b.status("r3", Some("k1"), false).unwrap().is_none());
    assert!(b.status("r3", None, false).unwrap().is_none());
    assert_eq!(b.cancel("r1", Some("k2")).unwrap(), Cancelled::NotFound);

    // Cancel from the other node dequeues it at once and frees its place.
    assert_eq!(b.cancel("r1", Some("k1")).unwrap(), Cancelled::Dequeued);
    let s = status(&a, "r1", Some("k1"));
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["error_type"], "RequestCancelled");
    assert_eq!(s["logs"][0]["message"], "cancelled before it started");
    assert_eq!(
        a.cancel("r1", Some("k1")).unwrap(),
        Cancelled::AlreadyCompleted
    );
    assert_eq!(status(&a, "r2", None)["queue_position"], 0);
    assert_eq!(a.submit(&request("r4", None)).unwrap(), Some(2));

    // Workers get them in acceptance order; the cancelled one never runs.
    let mut cancelled = claim_one(&a, "w1");
    assert_eq!(cancelled.id, "r1");
    assert!(matches!(
        a.start("w1", &mut cancelled).unwrap(),
        Start::Gone
    ));
    let mut first = claim_one(&a, "w1");
    assert_eq!(run(&a, "w1", &mut first).id, "r2");
    let mut second = claim_one(&b, "w2");
    assert_eq!(run(&b, "w2", &mut second).id, "r3");
    assert_eq!(b.depth().unwrap(), (1, 2));
    assert_eq!(status(&b, "r2", None)["status"], "IN_PROGRESS");
}

#[test]
fn a_silent_workers_request_is_reclaimed_and_completed_once() {
    let redis = RedisServer::start();
    let api = RedisQueue::open(&redis.url(), settings(8, 300, 3)).unwrap();
    let w1 = RedisQueue::open(&redis.url(), settings(8, 300, 3)).unwrap();
    let w2 = RedisQueue::open(&redis.url(), settings(8, 300, 3)).unwrap();
    api.submit(&request("r1", None)).unwrap();

    let mut claim1 = claim_one(&w1, "w1");
    let input = run(&w1, "w1", &mut claim1);
    assert_eq!(
        (
            input.input["prompt"].clone(),
            claim1.deliveries,
            claim1.reclaimed
        ),
        (json!("r1"), 1, false)
    );
    assert!(!w1.log("r1", "INFO", "step 1/2".into()).unwrap());

    // w1 goes silent: after the visibility timeout w2 takes the request over.
    let mut claim2 = claim_one(&w2, "w2");
    assert_eq!((claim2.id.as_str(), claim2.reclaimed), ("r1", true));
    run(&w2, "w2", &mut claim2);
    assert_eq!(claim2.deliveries, 2);

    // Both finish: only the first completion counts.
    assert!(w2.complete("r1", Some(&claim2.entry), &done("w2")).unwrap());
    assert!(!w1.complete("r1", Some(&claim1.entry), &done("w1")).unwrap());
    let outcome = api.outcome("r1", None).unwrap().unwrap().unwrap();
    assert_eq!(outcome.body, json!({"by": "w2"}));
    let s = status(&api, "r1", None);
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["logs"][0]["message"], "step 1/2");
    assert_eq!(api.depth().unwrap(), (0, 0));
    assert_eq!(
        api.stats().unwrap(),
        SharedStats {
            succeeded: 1,
            reclaimed: 1,
            ..SharedStats::default()
        }
    );
    // Nothing is left pending in the group.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg("faceid:stream")
        .arg("workers")
        .query(&mut conn)
        .unwrap();
    assert_eq!(pending[0], redis::Value::Int(0), "{pending:?}");
}

#[test]
fn a_heartbeat_keeps_the_claim_and_a_cancel_reaches_the_worker_at_its_next_step() {
    let redis = RedisServer::start();
    let api = RedisQueue::open(&redis.url(), settings(8, 1000, 3)).unwrap();
    let w1 = RedisQueue::open(&redis.url(), settings(8, 1000, 3)).unwrap();
    let w2 = RedisQueue::open(&redis.url(), settings(8, 1000, 3)).unwrap();
    api.submit(&request("r1", None)).unwrap();
    let mut claim = claim_one(&w1, "w1");
    run(&w1, "w1", &mut claim);
    // Beating every 100 ms for three visibility timeouts: nobody else takes it.
    let until = Instant::now() + Duration::from_millis(3000);
    while Instant::now() < until {
        w1.heartbeat("w1", &[&claim.entry]).unwrap();
        assert!(
            w2.claim("w2", 1, Duration::from_millis(100))
                .unwrap()
                .is_empty()
        );
    }
    assert!(!w1.log("r1", "INFO", "step 1/50".into()).unwrap());
    assert_eq!(api.cancel("r1", None).unwrap(), Cancelled::Requested);
    assert!(
        w1.log("r1", "INFO", "step 2/50".into()).unwrap(),
        "the worker hears the cancel"
    );
    let cancelled = cancelled_outcome();
    assert!(w1.complete("r1", Some(&claim.entry), &cancelled).unwrap());
    assert_eq!(status(&api, "r1", None)["error_type"], "RequestCancelled");
}

#[test]
fn a_request_that_kills_its_workers_ends_failed_and_does_not_block_the_queue() {
    let redis = RedisServer::start();
    let api = RedisQueue::open(&redis.url(), settings(8, 1000, 2)).unwrap();
    let worker = RedisQueue::open(&redis.url(), settings(8, 1000, 2)).unwrap();
    api.submit(&request("poison", None)).unwrap();
    api.submit(&request("fine", None)).unwrap();

    // Each delivery of the poison request "kills" its worker (nothing is completed or beaten).
    let mut first = claim_one(&worker, "doomed-1");
    assert_eq!(run(&worker, "doomed-1", &mut first).id, "poison");
    // Meanwhile the next request runs and completes on another worker.
    let mut other = claim_one(&worker, "w");
    assert_eq!(run(&worker, "w", &mut other).id, "fine");
    assert!(
        worker
            .complete("fine", Some(&other.entry), &done("w"))
            .unwrap()
    );

    let mut second = claim_one(&worker, "doomed-2");
    assert!(second.reclaimed);
    run(&worker, "doomed-2", &mut second);
    let mut third = claim_one(&worker, "w");
    assert!(matches!(
        worker.start("w", &mut third).unwrap(),
        Start::Exhausted { webhook: None }
    ));
    assert_eq!(third.deliveries, 3);
    let lost = failed("the request stopped its worker 2 times; it is not run again");
    assert!(
        worker
            .complete("poison", Some(&third.entry), &lost)
            .unwrap()
    );
    let s = status(&api, "poison", None);
    assert_eq!(
        (s["status"].clone(), s["error_type"].clone()),
        (json!("COMPLETED"), json!("WorkerLost"))
    );
    assert!(
        worker
            .claim("w", 1, Duration::from_millis(300))
            .unwrap()
            .is_empty()
    );
    assert_eq!(api.depth().unwrap(), (0, 0));
    // Both deliveries after the first took the request over from a silent worker.
    assert_eq!(
        api.stats().unwrap(),
        SharedStats {
            succeeded: 1,
            failed: 1,
            reclaimed: 2,
            ..SharedStats::default()
        }
    );
}

#[test]
fn accepted_requests_survive_a_redis_crash() {
    let mut redis = RedisServer::start();
    let api = RedisQueue::open(&redis.url(), settings(8, 60_000, 3)).unwrap();
    for id in ["r1", "r2", "r3"] {
        api.submit(&request(id, Some("k"))).unwrap();
    }
    redis.crash_and_restart();
    // The same node carries on over new connections.
    assert_eq!(api.depth().unwrap(), (3, 0));
    assert_eq!(status(&api, "r3", Some("k"))["queue_position"], 2);
    let worker = RedisQueue::open(&redis.url(), settings(8, 60_000, 3)).unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut claim = claim_one(&worker, "w");
        let run = run(&worker, "w", &mut claim);
        assert_eq!(run.owner.as_deref(), Some("k"));
        ids.push(run.id);
    }
    assert_eq!(ids, ["r1", "r2", "r3"]);
}

#[test]
fn two_workers_generate_every_request_once_with_the_images_of_one_process() {
    use faceid_server::FetchPolicy;
    use faceid_server::redis_queue::worker::{self, WorkerConfig};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let redis = RedisServer::start();
    let queue_settings = settings(16, 2000, 3);
    let api = RedisQueue::open(&redis.url(), queue_settings.clone()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let public = "http://api.example:8000";
    let workers: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|name| {
            let queue = Arc::new(RedisQueue::open(&redis.url(), queue_settings.clone()).unwrap());
            let stop = stop.clone();
            std::thread::spawn(move || {
                let models = crate::common::models();
                let config = WorkerConfig {
                    name: name.into(),
                    max_batch: 2,
                    public_url: public.into(),
                    fetch: FetchPolicy::default(),
                    poll: Duration::from_millis(200),
                    webhooks: Default::default(),
                };
                worker::run(queue, &models, &config, &stop)
            })
        })
        .collect();
    let inputs: Vec<(String, serde_json::Value)> = (1..=4)
        .map(|seed| {
            let mut input = crate::common::input(2);
            input["seed"] = json!(seed);
            (format!("req-{seed}"), input)
        })
        .collect();
    for (id, input) in &inputs {
        let request = NewRequest {
            input: input.clone(),
            ..request(id, None)
        };
        assert!(api.submit(&request).unwrap().is_some());
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while inputs
        .iter()
        .any(|(id, _)| status(&api, id, None)["status"] != "COMPLETED")
    {
        assert!(Instant::now() < deadline, "not every request completed");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let completed: Vec<usize> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(
        completed.iter().sum::<usize>(),
        4,
        "completions per worker: {completed:?}"
    );

    // Each image is the one a single process gives for the same input, kept in Redis for any
    // API node to serve at the public address.
    let single = crate::common::start(|_| {});
    for (id, input) in &inputs {
        let outcome = api.outcome(id, None).unwrap().unwrap().unwrap();
        assert_eq!(outcome.status_code, 200, "{}", outcome.body);
        let url = outcome.body["image"]["url"].as_str().unwrap();
        let name = url.strip_prefix(&format!("{public}/files/")).unwrap();
        let shared = api.file(name).unwrap().expect("the image is kept");
        let (code, _, alone) = crate::common::send(
            "POST",
            &format!("{}/fal-ai/ip-adapter-face-id", single.url),
            Some(input),
            None,
        );
        assert_eq!(code, 200, "{alone}");
        let mut response = crate::common::agent()
            .get(alone["image"]["url"].as_str().unwrap())
            .call()
            .unwrap();
        // Two requests of the same shape may share a loop on a worker: within 1/255 of the
        // image alone, as the pipeline guarantees for batches.
        let decode = |png: &[u8]| image::load_from_memory(png).unwrap().to_rgb8();
        let (shared, alone) = (
            decode(&shared),
            decode(&response.body_mut().read_to_vec().unwrap()),
        );
        assert_eq!(shared.dimensions(), alone.dimensions(), "{id}");
        let worst = shared
            .as_raw()
            .iter()
            .zip(alone.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max();
        assert!(worst <= Some(1), "{id}: {worst:?}/255 from the image alone");
        let logs = status(&api, id, None)["logs"].to_string();
        assert!(logs.contains("step 2/2"), "{logs}");
    }
}

#[test]
fn completed_requests_their_logs_and_images_expire_after_the_retention_time() {
    let redis = RedisServer::start();
    let settings = QueueSettings {
        retention: Duration::from_millis(600),
        ..settings(8, 60_000, 3)
    };
    let api = RedisQueue::open(&redis.url(), settings.clone()).unwrap();
    let worker = RedisQueue::open(&redis.url(), settings).unwrap();
    api.submit(&request("r1", None)).unwrap();
    let mut claim = claim_one(&worker, "w");
    run(&worker, "w", &mut claim);
    worker.log("r1", "INFO", "step 1/1".into()).unwrap();
    worker.put_file("r1.png", b"\x89PNG...").unwrap();
    assert!(
        worker
            .complete("r1", Some(&claim.entry), &done("w"))
            .unwrap()
    );
    // A line after completion (a webhook delivery) is kept with the request.
    worker
        .note("r1", "INFO", "webhook delivered (attempt 1)".into())
        .unwrap();
    let s = status(&api, "r1", None);
    assert_eq!(s["logs"].as_array().unwrap().len(), 2, "{s}");
    assert!(api.file("r1.png").unwrap().is_some());

    std::thread::sleep(Duration::from_millis(900));
    assert!(api.status("r1", None, true).unwrap().is_none());
    assert!(api.file("r1.png").unwrap().is_none());
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("faceid:*:r1*")
        .query(&mut conn)
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}
