"""The webhook's resource bounds against anonymous senders (no signature needed): stalled
uploads are closed within the read deadline, a sender that goes away mid-body costs an
INFO line and no traceback, and the webhook still answers afterwards."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx

from paykube_dev.programs import start_webhook
from tests.plugins.paykube_fixtures import METRICS_AUTH, Stack

HEAD = (b"POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n")


def stalled(port: int, count: int) -> list[socket.socket]:
    conns = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(HEAD + b"{" + b" " * 4096)  # and then nothing more
        conns.append(conn)
    return conns


def answered_or_closed(conn: socket.socket) -> bool:
    conn.settimeout(0.05)
    try:
        data = conn.recv(4096)
    except TimeoutError:
        return False
    except OSError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 408")


def test_stalled_uploads_are_closed_and_aborts_log_no_traceback(stack: Stack,
                                                                tmp_path: Path) -> None:
    env = {**stack.env, "PAYKUBE_WEBHOOK_READ_TIMEOUT": "1",
           "PAYKUBE_WEBHOOK_MAX_READERS": "4"}
    log = tmp_path / "webhook.log"
    webhook = start_webhook(stack.kube.kubeconfig, log, env)
    port = int(webhook.url.rsplit(":", 1)[1])
    try:
        conns = stalled(port, 12)  # three times the reader slots
        deadline = time.monotonic() + 20
        pending = list(conns)
        while pending and time.monotonic() < deadline:
            pending = [c for c in pending if not answered_or_closed(c)]
            time.sleep(0.2)
        assert not pending, f"{len(pending)} of 12 stalled uploads still open after 20 s"
        for conn in conns:
            conn.close()

        aborted = socket.create_connection(("127.0.0.1", port), timeout=5)
        aborted.sendall(HEAD + b"{" + b" " * 1000)
        time.sleep(0.2)
        aborted.close()  # gone mid-body
        time.sleep(0.5)

        answer = httpx.post(f"{webhook.url}/webhooks/stripe", content=b"{}",
                            headers={"Content-Type": "application/json"}, timeout=10)
        assert answer.status_code == 400  # served again: no signature
    finally:
        webhook.stop()
    text = log.read_text()
    assert "Traceback" not in text
    assert '"levelname": "ERROR"' not in text and '"level": "ERROR"' not in text
    assert "read_timeout" in text


def test_a_route_that_cannot_name_an_account_is_refused(stack: Stack) -> None:
    """Hostile path segments never reach the route table or a Secret name: a route must
    name an account with Kubernetes' own name rules, else 404 with a generic body."""
    body = b'{"id": "evt_x", "type": "checkout.session.completed", "data": {"object": {}}}'
    for path in ("/webhooks/stripe/ns/Bad_NS/acct", "/webhooks/stripe/ns/shop/..%2F..%2Fx",
                 "/webhooks/stripe/cluster/" + "a" * 300, "/webhooks/stripe/cluster/a%00b",
                 "/webhooks/stripe/ns/" + "n" * 64 + "/acct"):
        answer = httpx.post(f"{stack.webhook.url}{path}", content=body,
                            headers={"Content-Type": "application/json"}, timeout=10)
        assert answer.status_code == 404, path
        assert "Traceback" not in answer.text


def test_a_flood_of_bad_signatures_is_counted_exactly_and_logged_once(stack: Stack,
                                                                       tmp_path: Path) -> None:
    """Anyone can send bad signatures: each is counted, but the log gets one line per kind
    and window, not one per request."""
    log = tmp_path / "webhook.log"
    webhook = start_webhook(stack.kube.kubeconfig, log, stack.env)
    flood = 60
    try:
        body = b'{"id": "evt_flood", "type": "checkout.session.completed"}'
        headers = {"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"}
        with httpx.Client(timeout=10) as client:
            for _ in range(flood):
                answer = client.post(f"{webhook.url}/webhooks/stripe", content=body,
                                     headers=headers)
                assert answer.status_code == 400
            metrics = client.get(f"{webhook.url}/metrics", auth=METRICS_AUTH).text
    finally:
        webhook.stop()
    series = 'paykube_webhook_requests_total{outcome="signature_invalid"}'
    counted = next(line for line in metrics.splitlines() if line.startswith(series))
    assert float(counted.rsplit(" ", 1)[1]) == flood
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    refused = [line for line in lines if line["message"] == "webhook refused"]
    assert 1 <= len(refused) <= 2, f"{len(refused)} lines for {flood} refusals"
    # What was held back is said at shutdown, so the log's total matches the counter.
    held = sum(line.get("also_refused", 0) for line in lines
               if line["message"] in ("webhook refused", "webhook refusals held back"))
    assert len(refused) + held == flood


def chunked_request(body: bytes) -> bytes:
    """A whole chunked POST (no Content-Length), headers and body in one buffer."""
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                      for part in (body[i:i + 1000] for i in range(0, len(body), 1000)))
    return (b"POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Stripe-Signature: t=1,v1=00\r\nConnection: close\r\n\r\n"
            + chunks + b"0\r\n\r\n")


def answer_to(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)  # the body arrives with the headers: nothing left to await
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_a_chunked_body_that_arrived_whole_is_held_to_the_cap(stack: Stack,
                                                              tmp_path: Path) -> None:
    """A chunked body announces no size, and one that arrives with its headers is taken
    without waiting: the cap holds on that path too, at exactly the configured size."""
    limit = 4096
    log = tmp_path / "webhook.log"
    webhook = start_webhook(stack.kube.kubeconfig, log,
                            {**stack.env, "PAYKUBE_WEBHOOK_MAX_BODY": str(limit)})
    port = int(webhook.url.rsplit(":", 1)[1])
    try:
        over = b"{" + b" " * (limit - 1) + b"}"  # one byte too many
        status, body = answer_to(port, chunked_request(over))
        assert (status, json.loads(body)) == (413, {"error": {"code": "PayloadInvalid"}})
        at_limit = b"{" + b" " * (limit - 2) + b"}"
        status, body = answer_to(port, chunked_request(at_limit))
        # Read whole and refused for its signature, not its size.
        assert (status, json.loads(body)) == (400, {"error": {"code": "SignatureInvalid"}})
    finally:
        webhook.stop()
    assert "Traceback" not in log.read_text()
