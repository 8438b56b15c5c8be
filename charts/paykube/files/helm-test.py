"""`helm test`: the webhook's Service, from inside the cluster.

Always, harmless anywhere: an unsigned delivery is refused (400), and a delivery signed
with the configured secret for a session paykube does not manage is acknowledged (200,
ignored). Both go through the Service's DNS name, so they prove DNS, the Service, a ready
webhook pod and that the pod has the signing secret this test pod was given.

With tests.payment.enabled (Stripe test mode only): a payment, end to end. A
PaymentSession is created, the operator opens it at Stripe, a signed
checkout.session.completed for that session is delivered to the Service, and the object
must reach Paid; then it is deleted. Standard library only: it runs in paykube's image.
"""

import hashlib
import hmac
import json
import os
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.request

WEBHOOK = os.environ["PAYKUBE_TEST_WEBHOOK_URL"]
SECRETS_FILE = os.environ.get("PAYKUBE_TEST_SECRETS_FILE", "")
NAMESPACE = os.environ["PAYKUBE_TEST_NAMESPACE"]
PAYMENT = os.environ.get("PAYKUBE_TEST_PAYMENT") == "true"
TIMEOUT = float(os.environ.get("PAYKUBE_TEST_TIMEOUT", "120"))
SA = "/var/run/secrets/kubernetes.io/serviceaccount"
# urlopen below only ever opens these two kinds of URL (the webhook's, from the chart, and
# the API server's): never file:// or another scheme from the environment.
if not WEBHOOK.startswith(("http://", "https://")):
    sys.exit(f"FAILED: PAYKUBE_TEST_WEBHOOK_URL must be http(s), not {WEBHOOK!r}")


def check(ok, what):
    print(("ok: " if ok else "FAILED: ") + what, flush=True)
    if not ok:
        sys.exit(1)


def signing_secret():
    with open(SECRETS_FILE) as f:
        found = [s.strip() for s in f.read().replace(",", "\n").splitlines() if s.strip()]
    check(bool(found), f"a signing secret in {SECRETS_FILE}")
    return found[0]


def deliver(event, secret=None):
    payload = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        stamp = str(int(time.time()))
        mac = hmac.new(secret.encode(), stamp.encode() + b"." + payload, hashlib.sha256)
        headers["Stripe-Signature"] = f"t={stamp},v1={mac.hexdigest()}"
    request = urllib.request.Request(WEBHOOK, data=payload, headers=headers,  # noqa: S310
                                     method="POST")
    for attempt in range(10):  # the Service may still be settling right after install
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except OSError as exc:
            print(f"  {WEBHOOK}: {exc}, retrying", flush=True)
            time.sleep(min(2 ** attempt, 10))
    check(False, f"the webhook Service at {WEBHOOK} answers")
    return 0, {}


def event(kind, session, **fields):
    return {"id": "evt_helmtest_" + secrets.token_hex(8), "object": "event", "type": kind,
            "created": int(time.time()), "data": {"object": session}, **fields}


def api(method, path, body=None):
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    with open(f"{SA}/token") as f:
        token = f.read().strip()
    request = urllib.request.Request(
        f"https://{host}:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=f"{SA}/ca.crt")
    with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")


def wait_for_phase(path, wanted):
    deadline = time.monotonic() + TIMEOUT
    obj = {}
    while time.monotonic() < deadline:
        obj = api("GET", path)
        if obj.get("status", {}).get("phase") in wanted:
            return obj
        time.sleep(1)
    check(False, f"phase {' or '.join(wanted)} within {TIMEOUT:.0f}s (status: "
                 f"{json.dumps(obj.get('status', {}))[:400]})")
    return obj


def payment(secret):
    plural = f"/apis/payments.paykube.dev/v1alpha1/namespaces/{NAMESPACE}/paymentsessions"
    name = "helm-test-" + secrets.token_hex(4)
    api("POST", plural, {
        "apiVersion": "payments.paykube.dev/v1alpha1", "kind": "PaymentSession",
        "metadata": {"name": name, "labels": {"paykube.dev/helm-test": "true"}},
        "spec": {"amount": 4200, "currency": "usd", "description": "paykube helm test",
                 "successUrl": "https://example.com/ok", "cancelUrl": "https://example.com/no",
                 "metadata": {"helm_test": "true"}, "deletionPolicy": "Expire"}})
    try:
        opened = wait_for_phase(f"{plural}/{name}", ("Open",))
        status, meta = opened["status"], opened["metadata"]
        check(True, f"{name} Open as {status['sessionId']}")
        session = {"id": status["sessionId"], "object": "checkout.session",
                   "status": "complete", "payment_status": "paid",
                   "amount_total": 4200, "currency": "usd",
                   "client_reference_id": meta["uid"],
                   "metadata": {"helm_test": "true", "paykube_namespace": NAMESPACE,
                                "paykube_name": name, "paykube_uid": meta["uid"]}}
        extra = {}
        if status.get("livemode") is not None:
            extra["livemode"] = status["livemode"]
        if status.get("account"):
            extra["account"] = status["account"]
        code, body = deliver(event("checkout.session.completed", session, **extra), secret)
        check(code == 200 and body.get("outcome") == "applied",
              f"the signed completion is applied (HTTP {code}, {body})")
        paid = wait_for_phase(f"{plural}/{name}", ("Paid",))
        sources = {h["phase"]: h.get("source") for h in paid["status"].get("history", [])}
        check(sources.get("Paid") == "webhook", f"{name} Paid through the webhook")
    finally:
        api("DELETE", f"{plural}/{name}")


def main():
    code, _ = deliver(event("checkout.session.completed", {"id": "cs_test_helm"}), None)
    check(code == 400, f"an unsigned delivery is refused (HTTP {code})")
    if not SECRETS_FILE:
        print("no webhook signing secret configured (secrets.keys.webhookSecrets): "
              "signed deliveries not tested", flush=True)
        return
    secret = signing_secret()
    unmanaged = {"id": "cs_test_helm_" + secrets.token_hex(6), "object": "checkout.session",
                 "status": "complete", "payment_status": "paid", "metadata": {}}
    code, body = deliver(event("checkout.session.completed", unmanaged), secret)
    check(code == 200 and body.get("outcome") == "ignored_unmanaged",
          f"a signed delivery for another system's session is acknowledged "
          f"(HTTP {code}, {body})")
    if PAYMENT:
        payment(secret)
    print("paykube helm test passed", flush=True)


main()
