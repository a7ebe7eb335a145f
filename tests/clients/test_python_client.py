"""Drives a local faceid server with the official fal Python client (fal-client).

Needs, before `import fal_client`: FAL_KEY, FAL_RUN_HOST=127.0.0.1:PORT,
FAL_QUEUE_RUN_HOST=127.0.0.1:PORT/queue and SSL_CERT_FILE=<the server's certificate>
(run.sh sets them), and FACEID_WEBHOOK_PORT, the port the server may post webhooks to. With
FACEID_MODEL_TYPE set, every request names that `model_type` and only
the generating checks run (`run`, `subscribe`). Prints one PASS/FAIL line per check; exits 1 if
any failed.
"""

import asyncio
import json
import os
import queue
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import fal_client
import httpx

APP = "fal-ai/ip-adapter-face-id"
ROOT = Path(__file__).resolve().parents[2]
FACE = fal_client.encode_file(ROOT / "tests/data/faces/astronaut.png")
MODEL_TYPE = os.environ.get("FACEID_MODEL_TYPE")


def args(seed, steps=1, **extra):
    return {
        "prompt": "a photo of an astronaut",
        "face_image_url": FACE,
        "num_inference_steps": steps,
        "num_samples": 1,
        "width": 512,
        "height": 512,
        "seed": seed,
        **({"model_type": MODEL_TYPE} if MODEL_TYPE else {}),
        **extra,
    }


def check_output(out, seed):
    image = out["image"]
    assert out["seed"] == seed, f"seed {out['seed']} != {seed}"
    assert (image["width"], image["height"]) == (512, 512), image
    assert image["content_type"] == "image/png", image["content_type"]
    assert image["file_size"] > 0 and image["file_name"], image
    assert len(out["images"]) == 1, len(out["images"])
    return image


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_run():
    out = fal_client.run(APP, args(seed=11))
    image = check_output(out, 11)
    # The result URL is served by the same server (not by the client): fetch it once.
    if image["url"].startswith("data:"):
        return
    response = httpx.get(image["url"], verify=os.environ["SSL_CERT_FILE"])
    response.raise_for_status()
    assert len(response.content) == image["file_size"], "file_size mismatch"
    assert png_size(response.content) == (512, 512)


def webhook_receiver():
    """A local HTTP server collecting the JSON bodies POSTed to it; returns (url, queue)."""
    received = queue.Queue()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.put(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    # The server posts only to the host:port it allows (run.sh passes the same port to both).
    server = HTTPServer(("127.0.0.1", int(os.environ.get("FACEID_WEBHOOK_PORT", "0"))), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook", received


def test_submit_status_get():
    hook_url, hooks = webhook_receiver()
    handle = fal_client.submit(APP, args(seed=12), webhook_url=hook_url)
    assert handle.request_id
    status = handle.status(with_logs=True)
    assert isinstance(status, (fal_client.Queued, fal_client.InProgress, fal_client.Completed)), status
    check_output(handle.get(), 12)
    status = handle.status(with_logs=True)
    assert isinstance(status, fal_client.Completed) and status.error is None, status
    assert any("step" in log["message"] for log in status.logs), status.logs
    # the module-level helpers build the URLs themselves from the request id
    check_output(fal_client.result(APP, handle.request_id), 12)
    assert isinstance(fal_client.status(APP, handle.request_id), fal_client.Completed)
    hook = hooks.get(timeout=30)
    assert hook["request_id"] == handle.request_id and hook["status"] == "OK", hook
    check_output(hook["payload"], 12)


def test_subscribe_logs():
    updates, enqueued = [], []
    out = fal_client.subscribe(
        APP,
        args(seed=13, steps=2),
        with_logs=True,
        on_enqueue=enqueued.append,
        on_queue_update=updates.append,
    )
    check_output(out, 13)
    assert enqueued and enqueued[0], "on_enqueue not called"
    final = updates[-1]
    assert isinstance(final, fal_client.Completed) and final.error is None, final
    steps = [log["message"] for log in final.logs if log["message"].startswith("step")]
    assert steps == ["step 1/2", "step 2/2"], steps
    assert all({"message", "level", "source", "timestamp"} <= log.keys() for log in final.logs)


def wait_completed(handle, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = handle.status(with_logs=True)
        if isinstance(status, fal_client.Completed):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{handle.request_id} not completed after {timeout}s")


def test_cancel():
    long = fal_client.submit(APP, args(seed=14, steps=200))
    try:
        queued = fal_client.submit(APP, args(seed=15))
        status = queued.status()
        assert isinstance(status, fal_client.Queued), status
        queued.cancel()
        status = wait_completed(queued)
        assert status.error, f"cancelled request has no error: {status}"
        try:
            queued.get()
        except fal_client.FalClientHTTPError as exc:
            assert exc.status_code >= 400, exc.status_code
        else:
            raise AssertionError("result of a cancelled request did not raise")
    finally:
        long.cancel()
    status = wait_completed(long)
    assert status.error, f"cancelled running request has no error: {status}"


def test_errors():
    # validation error: fal's schema has width >= 512
    try:
        fal_client.run(APP, args(seed=16, width=256))
    except fal_client.FalClientHTTPError as exc:
        assert exc.status_code == 422, exc.status_code
    else:
        raise AssertionError("width=256 was accepted")
    # wrong key
    try:
        fal_client.SyncClient(key="wrong").run(APP, args(seed=16))
    except fal_client.FalClientHTTPError as exc:
        assert exc.status_code in (401, 403), exc.status_code
    else:
        raise AssertionError("a wrong key was accepted")


def test_async():
    async def main():
        out = await fal_client.run_async(APP, args(seed=17))
        check_output(out, 17)
        handle = await fal_client.submit_async(APP, args(seed=18))
        status = await handle.status(with_logs=True)
        assert isinstance(status, (fal_client.Queued, fal_client.InProgress, fal_client.Completed))
        check_output(await handle.get(), 18)

    asyncio.run(main())


TESTS = [
    ("run", test_run),
    ("submit(webhook)+status+get", test_submit_status_get),
    ("subscribe(with_logs)", test_subscribe_logs),
    ("cancel", test_cancel),
    ("errors (422, bad key)", test_errors),
    ("run_async+submit_async", test_async),
]


def main():
    failed = 0
    tests = TESTS
    if MODEL_TYPE:
        tests = [(f"{name} [{MODEL_TYPE}]", test) for name, test in TESTS if test in (test_run, test_subscribe_logs)]
    for name, test in tests:
        start = time.monotonic()
        try:
            test()
        except Exception as exc:  # report every failure, keep going
            failed += 1
            print(f"FAIL python {name} ({time.monotonic() - start:.1f}s): {type(exc).__name__}: {exc}"[:2000], flush=True)
        else:
            print(f"PASS python {name} ({time.monotonic() - start:.1f}s)", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
