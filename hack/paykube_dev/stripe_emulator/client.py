"""Typed clients for the Stripe emulator's `/_emulator` control endpoints: sync (httpx) and
async, over the shared `paykube_dev.psp_emulator.client` base."""

from __future__ import annotations

from typing import Any

from paykube_dev.psp_emulator.client import BaseAsyncControl, BaseControl, P, fault_call
from paykube_dev.psp_emulator.client import Call as _Call
from paykube_dev.psp_emulator.client import EmulatorControlError as EmulatorControlError
from paykube_dev.psp_emulator.client import drop_none as _drop_none

from .model import JsonObject
from .state import Action


class _Calls:
    """The control API, one request description per operation."""

    @staticmethod
    def transition(session_id: str, action: Action, wait: bool, email: str | None) -> _Call:
        body = _drop_none(wait=wait, email=email)
        return _Call("POST", f"{P}/sessions/{session_id}/{action}", body)

    @staticmethod
    def refund_mode(status: str, payment_intent: str | None) -> _Call:
        return _Call("POST", f"{P}/refund-mode",
                     _drop_none(status=status, payment_intent=payment_intent))

    @staticmethod
    def refund_transition(refund_id: str, action: str, failure_reason: str | None,
                          wait: bool) -> _Call:
        body = _drop_none(failure_reason=failure_reason, wait=wait)
        return _Call("POST", f"{P}/refunds/{refund_id}/{action}", body)

    @staticmethod
    def dashboard_refund(payment_intent: str, amount: int | None, wait: bool) -> _Call:
        body = _drop_none(amount=amount, wait=wait)
        return _Call("POST", f"{P}/payment-intents/{payment_intent}/refunds", body)

    @staticmethod
    def refunds(payment_intent: str | None) -> _Call:
        return _Call("GET", f"{P}/refunds", params=_drop_none(payment_intent=payment_intent))

    @staticmethod
    def events(type_: str | None, session_id: str | None, account_id: str | None = None) -> _Call:
        params = _drop_none(type=type_, session=session_id, account=account_id)
        return _Call("GET", f"{P}/events", params=params)

    @staticmethod
    def requests(
        path: str | None, account_id: str | None, key_account_id: str | None,
        method: str | None,
    ) -> _Call:
        params = _drop_none(path=path, account=account_id, key_account=key_account_id,
                            method=method)
        return _Call("GET", f"{P}/requests", params=params)

    @staticmethod
    def create_account(
        account_id: str | None, keys: list[str] | None, platform: str | None,
        email: str | None, business_name: str | None, country: str | None,
    ) -> _Call:
        body = _drop_none(id=account_id, keys=keys, platform=platform, email=email,
                          business_name=business_name, country=country)
        return _Call("POST", f"{P}/accounts", body)

    @staticmethod
    def connect(platform_id: str, account_id: str) -> _Call:
        return _Call("POST", f"{P}/accounts/{platform_id}/connected", {"account": account_id})

    @staticmethod
    def deliver(
        event_id: str, url: str | None, secret: str | None, timestamp: int | None,
        endpoint_id: str | None,
    ) -> _Call:
        body = _drop_none(url=url, secret=secret, timestamp=timestamp, endpoint_id=endpoint_id)
        return _Call("POST", f"{P}/events/{event_id}/deliver", body)

    @staticmethod
    def add_endpoint(
        url: str, secrets: list[str], api_key: str | None, enabled_events: list[str] | None,
        retry_delays: list[float] | None, timeout: float | None,
        scope: dict[str, Any] | None = None,
    ) -> _Call:
        body = _drop_none(
            url=url, secrets=secrets, api_key=api_key, enabled_events=enabled_events,
            retry_delays=retry_delays, timeout=timeout, **(scope or {}),
        )
        return _Call("POST", f"{P}/webhook-endpoints", body)

    @staticmethod
    def add_fault(
        kind: str, count: int | None, method: str | None, path: str | None,
        path_prefix: str | None, seconds: float | None, retry_after: int | None,
        reason: str | None, should_retry: bool | None, probability: float | None = None,
        error: dict[str, Any] | None = None, retry_after_date: bool | None = None,
    ) -> _Call:
        fields = {
            "method": method, "path": path, "path_prefix": path_prefix, "seconds": seconds,
            "retry_after": retry_after, "reason": reason, "should_retry": should_retry,
            "probability": probability, "retry_after_date": retry_after_date,
        }
        return fault_call(kind, count, fields, error)


class EmulatorControl(BaseControl):
    """Sync control client: `EmulatorControl("http://127.0.0.1:port")`.

    Do not call it from the event loop that runs the emulator (it would block that loop);
    use `AsyncEmulatorControl` there.
    """

    def sessions_created(self) -> int:
        return int(self.stats()["sessions_created"])

    def requests(
        self, path: str | None = None, *, account_id: str | None = None,
        key_account_id: str | None = None, method: str | None = None,
    ) -> list[JsonObject]:
        """The API request log, oldest first; each given filter must match (`account_id`:
        the account acted on, `key_account_id`: the key's own account)."""
        call = _Calls.requests(path, account_id, key_account_id, method)
        return list(self._do(call)["data"])

    def sessions(self, client_reference_id: str | None = None) -> list[JsonObject]:
        params = _drop_none(client_reference_id=client_reference_id)
        return list(self._do(_Call("GET", f"{P}/sessions", params=params))["data"])

    def session(self, session_id: str) -> JsonObject:
        return self._do(_Call("GET", f"{P}/sessions/{session_id}"))

    def transition(
        self, session_id: str, action: Action, *, wait: bool = True, email: str | None = None,
    ) -> JsonObject:
        """`{"session", "event", "deliveries"}` after the change (and its delivery if wait)."""
        return self._do(_Calls.transition(session_id, action, wait, email))

    def pay(self, session_id: str, *, wait: bool = True) -> JsonObject:
        return self.transition(session_id, "paid", wait=wait)

    def async_pending(self, session_id: str, *, wait: bool = True) -> JsonObject:
        return self.transition(session_id, "async_pending", wait=wait)

    def async_succeed(self, session_id: str, *, wait: bool = True) -> JsonObject:
        return self.transition(session_id, "async_succeeded", wait=wait)

    def async_fail(self, session_id: str, *, wait: bool = True) -> JsonObject:
        return self.transition(session_id, "async_failed", wait=wait)

    def expire(self, session_id: str, *, wait: bool = True) -> JsonObject:
        return self.transition(session_id, "expire", wait=wait)

    def refund_mode(self, status: str, payment_intent: str | None = None) -> JsonObject:
        """How the next refunds start: `pending`, `requires_action` or `succeeded` (the
        default), for one PaymentIntent or (None) for all."""
        return self._do(_Calls.refund_mode(status, payment_intent))

    def refund_transition(
        self, refund_id: str, action: str, *, failure_reason: str | None = None,
        wait: bool = True,
    ) -> JsonObject:
        """action: succeeded | failed | requires_action | canceled; `{"refund", "events",
        "deliveries"}` after the change (and the deliveries if wait)."""
        return self._do(_Calls.refund_transition(refund_id, action, failure_reason, wait))

    def dashboard_refund(
        self, payment_intent: str, amount: int | None = None, *, wait: bool = True,
    ) -> JsonObject:
        """A refund made outside paykube (no metadata); the rest when `amount` is None."""
        return self._do(_Calls.dashboard_refund(payment_intent, amount, wait))

    def refunds(self, payment_intent: str | None = None) -> list[JsonObject]:
        return list(self._do(_Calls.refunds(payment_intent))["data"])

    def refund(self, refund_id: str) -> JsonObject:
        return self._do(_Call("GET", f"{P}/refunds/{refund_id}"))

    def events(
        self, type: str | None = None, session_id: str | None = None, *,
        account_id: str | None = None,
    ) -> list[JsonObject]:
        return list(self._do(_Calls.events(type, session_id, account_id))["data"])

    def event(self, event_id: str) -> JsonObject:
        return self._do(_Call("GET", f"{P}/events/{event_id}"))

    def event_payload(self, event_id: str) -> bytes:
        response = self._http.get(f"{P}/events/{event_id}/payload")
        response.raise_for_status()
        return response.content

    def deliver(
        self, event_id: str, *, url: str | None = None, secret: str | None = None,
        timestamp: int | None = None, endpoint_id: str | None = None,
    ) -> list[JsonObject]:
        call = _Calls.deliver(event_id, url, secret, timestamp, endpoint_id)
        return list(self._do(call)["data"])

    def add_webhook_endpoint(
        self, url: str, secret: str | None = None, *, secrets: list[str] | None = None,
        api_key: str | None = None, enabled_events: list[str] | None = None,
        retry_delays: list[float] | None = None, delivery_timeout: float | None = None,
        account_id: str | None = None, livemode: bool | None = None,
        connect: bool | None = None, api_version: str | None = None,
    ) -> JsonObject:
        """An endpoint with the given secret(s): `api_key` scopes it to that key's account
        and mode, `account_id` to an account (both modes unless `livemode`), `connect` to
        the events of the accounts connected to it; none of them: every event."""
        all_secrets = list(secrets or []) or ([secret] if secret else [])
        scope = _drop_none(account_id=account_id, livemode=livemode, connect=connect,
                           api_version=api_version)
        return self._do(_Calls.add_endpoint(
            url, all_secrets, api_key, enabled_events, retry_delays, delivery_timeout, scope,
        ))

    def webhook_endpoints(self, account_id: str | None = None) -> list[JsonObject]:
        params = _drop_none(account=account_id)
        return list(self._do(_Call("GET", f"{P}/webhook-endpoints", params=params))["data"])

    def remove_webhook_endpoint(self, endpoint_id: str) -> None:
        self._do(_Call("DELETE", f"{P}/webhook-endpoints/{endpoint_id}"))

    def add_fault(
        self, kind: str, *, count: int | None = 1, method: str | None = None,
        path: str | None = None, path_prefix: str | None = None, seconds: float | None = None,
        retry_after: int | None = None, reason: str | None = None,
        should_retry: bool | None = None, probability: float | None = None,
        error: dict[str, Any] | None = None, retry_after_date: bool | None = None,
    ) -> JsonObject:
        """kind: rate_limit | api_error | latency | hold | drop | garbage | stripe_error (with
        `error={"status", "code", "message", "param"}`); count None = until cleared."""
        return self._do(_Calls.add_fault(
            kind, count, method, path, path_prefix, seconds, retry_after, reason, should_retry,
            probability, error, retry_after_date,
        ))

    def set_rate_limit(self, per_second: float | None) -> None:
        self._do(_Call("POST", f"{P}/rate-limit", {"per_second": per_second}))

    def revoke_key(self, key: str) -> None:
        self._do(_Call("POST", f"{P}/revoked-keys", {"key": key}))

    def create_account(
        self, *, keys: list[str] | None = None, account_id: str | None = None,
        platform: str | None = None, email: str | None = None,
        business_name: str | None = None, country: str | None = None,
    ) -> JsonObject:
        """A new account with these keys (several: rotation), connected to `platform` if
        given; its id is `account_id`, else derived from the first key."""
        return self._do(_Calls.create_account(
            account_id, keys, platform, email, business_name, country,
        ))

    def accounts(self) -> list[JsonObject]:
        return list(self._do(_Call("GET", f"{P}/accounts"))["data"])

    def account(self, account_id: str) -> JsonObject:
        return self._do(_Call("GET", f"{P}/accounts/{account_id}"))

    def account_for_key(self, key: str) -> JsonObject:
        """The key's account (created, as the API would, if the key is new)."""
        return dict(self._do(_Call("GET", f"{P}/accounts", params={"key": key}))["data"][0])

    def add_key(self, account_id: str, key: str) -> JsonObject:
        return self._do(_Call("POST", f"{P}/accounts/{account_id}/keys", {"key": key}))

    def connect_account(self, platform_id: str, account_id: str) -> JsonObject:
        """`account_id` becomes a connected account of the platform `platform_id`."""
        return self._do(_Calls.connect(platform_id, account_id))

    def disconnect_account(self, platform_id: str, account_id: str) -> JsonObject:
        return self._do(_Call("DELETE", f"{P}/accounts/{platform_id}/connected/{account_id}"))


class AsyncEmulatorControl(BaseAsyncControl):
    """The same operations for async code (the emulator may share the caller's loop)."""

    async def session(self, session_id: str) -> JsonObject:
        return await self._do(_Call("GET", f"{P}/sessions/{session_id}"))

    async def requests(
        self, path: str | None = None, *, account_id: str | None = None,
        key_account_id: str | None = None, method: str | None = None,
    ) -> list[JsonObject]:
        call = _Calls.requests(path, account_id, key_account_id, method)
        return list((await self._do(call))["data"])

    async def transition(
        self, session_id: str, action: Action, *, wait: bool = True, email: str | None = None,
    ) -> JsonObject:
        return await self._do(_Calls.transition(session_id, action, wait, email))

    async def refund_mode(self, status: str, payment_intent: str | None = None) -> JsonObject:
        return await self._do(_Calls.refund_mode(status, payment_intent))

    async def refund_transition(
        self, refund_id: str, action: str, *, failure_reason: str | None = None,
        wait: bool = True,
    ) -> JsonObject:
        return await self._do(_Calls.refund_transition(refund_id, action, failure_reason, wait))

    async def dashboard_refund(
        self, payment_intent: str, amount: int | None = None, *, wait: bool = True,
    ) -> JsonObject:
        return await self._do(_Calls.dashboard_refund(payment_intent, amount, wait))

    async def refunds(self, payment_intent: str | None = None) -> list[JsonObject]:
        return list((await self._do(_Calls.refunds(payment_intent)))["data"])

    async def refund(self, refund_id: str) -> JsonObject:
        return await self._do(_Call("GET", f"{P}/refunds/{refund_id}"))

    async def events(
        self, type: str | None = None, session_id: str | None = None, *,
        account_id: str | None = None,
    ) -> list[JsonObject]:
        return list((await self._do(_Calls.events(type, session_id, account_id)))["data"])

    async def deliver(
        self, event_id: str, *, url: str | None = None, secret: str | None = None,
        timestamp: int | None = None, endpoint_id: str | None = None,
    ) -> list[JsonObject]:
        call = _Calls.deliver(event_id, url, secret, timestamp, endpoint_id)
        return list((await self._do(call))["data"])

    async def add_webhook_endpoint(
        self, url: str, secret: str | None = None, *, secrets: list[str] | None = None,
        api_key: str | None = None, enabled_events: list[str] | None = None,
        retry_delays: list[float] | None = None, delivery_timeout: float | None = None,
        account_id: str | None = None, livemode: bool | None = None,
        connect: bool | None = None, api_version: str | None = None,
    ) -> JsonObject:
        all_secrets = list(secrets or []) or ([secret] if secret else [])
        scope = _drop_none(account_id=account_id, livemode=livemode, connect=connect,
                           api_version=api_version)
        return await self._do(_Calls.add_endpoint(
            url, all_secrets, api_key, enabled_events, retry_delays, delivery_timeout, scope,
        ))

    async def webhook_endpoints(self, account_id: str | None = None) -> list[JsonObject]:
        params = _drop_none(account=account_id)
        body = await self._do(_Call("GET", f"{P}/webhook-endpoints", params=params))
        return list(body["data"])

    async def revoke_key(self, key: str) -> None:
        await self._do(_Call("POST", f"{P}/revoked-keys", {"key": key}))

    async def create_account(
        self, *, keys: list[str] | None = None, account_id: str | None = None,
        platform: str | None = None, email: str | None = None,
        business_name: str | None = None, country: str | None = None,
    ) -> JsonObject:
        return await self._do(_Calls.create_account(
            account_id, keys, platform, email, business_name, country,
        ))

    async def accounts(self) -> list[JsonObject]:
        return list((await self._do(_Call("GET", f"{P}/accounts")))["data"])

    async def account_for_key(self, key: str) -> JsonObject:
        body = await self._do(_Call("GET", f"{P}/accounts", params={"key": key}))
        return dict(body["data"][0])

    async def add_key(self, account_id: str, key: str) -> JsonObject:
        return await self._do(_Call("POST", f"{P}/accounts/{account_id}/keys", {"key": key}))

    async def connect_account(self, platform_id: str, account_id: str) -> JsonObject:
        return await self._do(_Calls.connect(platform_id, account_id))

    async def disconnect_account(self, platform_id: str, account_id: str) -> JsonObject:
        return await self._do(
            _Call("DELETE", f"{P}/accounts/{platform_id}/connected/{account_id}"))

    async def account(self, account_id: str) -> JsonObject:
        return await self._do(_Call("GET", f"{P}/accounts/{account_id}"))

    async def add_fault(
        self, kind: str, *, count: int | None = 1, method: str | None = None,
        path: str | None = None, path_prefix: str | None = None, seconds: float | None = None,
        retry_after: int | None = None, reason: str | None = None,
        should_retry: bool | None = None, probability: float | None = None,
        retry_after_date: bool | None = None,
    ) -> JsonObject:
        return await self._do(_Calls.add_fault(
            kind, count, method, path, path_prefix, seconds, retry_after, reason, should_retry,
            probability, None, retry_after_date,
        ))

