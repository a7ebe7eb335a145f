// Drives a local faceid server with the official fal JavaScript client (@fal-ai/client).
//
// Env: FACEID_URL (e.g. https://127.0.0.1:PORT), FAL_KEY, and NODE_EXTRA_CA_CERTS=<the
// server's certificate> for https. The client's fal.run / queue.fal.run URLs are rewritten to
// FACEID_URL by a request middleware; the client itself is used unmodified. With
// FACEID_MODEL_TYPE set, every request names that `model_type` and only the generating checks
// run (`fal.run`, `subscribe`).
// Prints one PASS/FAIL line per check; exits 1 if any failed.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ApiError, ValidationError, createFalClient } from "@fal-ai/client";

const APP = "fal-ai/ip-adapter-face-id";
const BASE = process.env.FACEID_URL.replace(/\/$/, "");
const FACE =
  "data:image/png;base64," +
  readFileSync(new URL("../data/faces/astronaut.png", import.meta.url)).toString("base64");

function rewrite(url) {
  return url
    .replace(/^https:\/\/queue\.fal\.run\//, `${BASE}/queue/`)
    .replace(/^https:\/\/fal\.run\//, `${BASE}/`);
}

function client(credentials) {
  return createFalClient({
    credentials,
    requestMiddleware: async (req) => ({ ...req, url: rewrite(req.url) }),
  });
}

const fal = client(process.env.FAL_KEY);

const MODEL_TYPE = process.env.FACEID_MODEL_TYPE;

const input = (seed, extra = {}) => ({
  ...(MODEL_TYPE ? { model_type: MODEL_TYPE } : {}),
  prompt: "a photo of an astronaut",
  face_image_url: FACE,
  num_inference_steps: 1,
  num_samples: 1,
  width: 512,
  height: 512,
  seed,
  ...extra,
});

function checkOutput(data, seed) {
  assert.equal(data.seed, seed);
  assert.equal(data.image.width, 512);
  assert.equal(data.image.height, 512);
  assert.equal(data.image.content_type, "image/png");
  assert.ok(data.image.file_size > 0 && data.image.url);
  assert.equal(data.images.length, 1);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitCompleted(requestId, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const status = await fal.queue.status(APP, { requestId, logs: true });
    if (status.status === "COMPLETED") return status;
    await sleep(200);
  }
  throw new Error(`${requestId} not completed after ${timeoutMs} ms`);
}

async function rejectsWith(promise, check) {
  try {
    await promise;
  } catch (error) {
    check(error);
    return;
  }
  assert.fail("expected the call to throw");
}

const stepLogs = (updates) =>
  updates.flatMap((u) => u.logs ?? []).map((log) => log.message).filter((m) => m.startsWith("step"));

// The last update's logs are all the request's logs (streaming mode: accumulated by the
// client from the events), each exactly once.
function checkFinalLogs(updates, steps) {
  const final = updates.at(-1);
  assert.equal(final.status, "COMPLETED");
  const expected = Array.from({ length: steps }, (_, i) => `step ${i + 1}/${steps}`);
  const got = stepLogs([final]);
  assert.deepEqual(got, expected, `final update's step logs: ${JSON.stringify(got)}`);
}

const tests = {
  async "fal.run"() {
    const { data, requestId } = await fal.run(APP, { input: input(21) });
    checkOutput(data, 21);
    assert.ok(requestId, "no x-fal-request-id");
  },

  async "queue.submit+status+result"() {
    const submitted = await fal.queue.submit(APP, { input: input(22) });
    assert.equal(submitted.status, "IN_QUEUE");
    const { request_id: requestId } = submitted;
    const status = await fal.queue.status(APP, { requestId, logs: true });
    assert.ok(["IN_QUEUE", "IN_PROGRESS", "COMPLETED"].includes(status.status), status.status);
    const done = await waitCompleted(requestId);
    assert.ok(!done.error, done.error);
    assert.ok(stepLogs([done]).length > 0, "no step log");
    const result = await fal.queue.result(APP, { requestId });
    checkOutput(result.data, 22);
    assert.equal(result.requestId, requestId);
  },

  async "subscribe(logs, polling)"() {
    const updates = [];
    let enqueued;
    const result = await fal.subscribe(APP, {
      input: input(23, { num_inference_steps: 2 }),
      logs: true,
      onEnqueue: (id) => (enqueued = id),
      onQueueUpdate: (update) => updates.push(update),
    });
    checkOutput(result.data, 23);
    assert.equal(result.requestId, enqueued);
    checkFinalLogs(updates, 2);
  },

  async "subscribe(logs, streaming)"() {
    const updates = [];
    const result = await fal.subscribe(APP, {
      input: input(24, { num_inference_steps: 2 }),
      logs: true,
      mode: "streaming",
      onQueueUpdate: (update) => updates.push(update),
    });
    checkOutput(result.data, 24);
    checkFinalLogs(updates, 2);
  },

  async "queue.cancel"() {
    const long = await fal.queue.submit(APP, { input: input(25, { num_inference_steps: 200 }) });
    try {
      const { request_id: requestId } = await fal.queue.submit(APP, { input: input(26) });
      const status = await fal.queue.status(APP, { requestId });
      assert.equal(status.status, "IN_QUEUE");
      assert.equal(typeof status.queue_position, "number");
      await fal.queue.cancel(APP, { requestId });
      const done = await waitCompleted(requestId);
      assert.ok(done.error, "cancelled request has no error");
      await rejectsWith(fal.queue.result(APP, { requestId }), (error) => {
        assert.ok(error instanceof ApiError, String(error));
        assert.ok(error.status >= 400, String(error.status));
      });
    } finally {
      await fal.queue.cancel(APP, { requestId: long.request_id });
    }
    const done = await waitCompleted(long.request_id);
    assert.ok(done.error, "cancelled running request has no error");
  },

  async "errors (422, bad key)"() {
    await rejectsWith(fal.run(APP, { input: input(27, { width: 256 }) }), (error) => {
      assert.ok(error instanceof ValidationError, String(error));
      assert.equal(error.status, 422);
      assert.ok(error.getFieldErrors("width").length > 0, JSON.stringify(error.body));
    });
    await rejectsWith(client("wrong").run(APP, { input: input(27) }), (error) => {
      assert.ok(error instanceof ApiError, String(error));
      assert.ok([401, 403].includes(error.status), String(error.status));
    });
  },
};

const GENERATING = ["fal.run", "subscribe(logs, polling)", "subscribe(logs, streaming)"];
const selected = Object.entries(tests)
  .filter(([name]) => !MODEL_TYPE || GENERATING.includes(name))
  .map(([name, test]) => [MODEL_TYPE ? `${name} [${MODEL_TYPE}]` : name, test]);

let failed = 0;
for (const [name, test] of selected) {
  const start = performance.now();
  const secs = () => ((performance.now() - start) / 1000).toFixed(1);
  try {
    await test();
    console.log(`PASS js ${name} (${secs()}s)`);
  } catch (error) {
    failed += 1;
    const detail = error instanceof ApiError ? ` ${error.status} ${JSON.stringify(error.body)}` : "";
    console.log(`FAIL js ${name} (${secs()}s): ${error.stack ?? error}${detail}`.slice(0, 2000));
  }
}
process.exit(failed ? 1 : 0);
