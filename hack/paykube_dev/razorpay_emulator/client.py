"""Typed clients for the Razorpay emulator's `/_emulator` control endpoints, over the
shared `paykube_dev.psp_emulator.client` base (faults, holds, clock, deliveries)."""

from __future__ import annotations

from typing import Any

from paykube_dev.psp_emulator.client import (
    BaseAsyncControl,
    BaseControl,
    Call,
    P,
    drop_none,
    fault_call,
)
from paykube_dev.psp_emulator.client import EmulatorControlError as EmulatorControlError
from paykube_dev.psp_emulator.clock import JsonObject


class _Calls:
    @staticmethod
    def create_account(keys: dict[str, str], account_id: str | None, name: str | None) -> Call:
        return Call("POST", f"{P}/accounts", drop_none(keys=keys, id=account_id, name=name))

    @staticmethod
    def transition(link_id: str, action: str, amount: int | None, wait: bool,
                   email: str | None) -> Call:
        body = drop_none(amount=amount, wait=wait, email=email)
        return Call("POST", f"{P}/links/{link_id}/{action}", body)

    @staticmethod
    def add_webhook(
        url: str, secret: str, account_id: str | None, key_id: str | None,
        events: list[str] | None, livemode: bool | None, retry_delays: list[float] | None,
        timeout: float | None,
    ) -> Call:
        return Call("POST", f"{P}/webhooks", drop_none(
            url=url, secret=secret, account_id=account_id, key_id=key_id, events=events,
            livemode=livemode, retry_delays=retry_delays, timeout=timeout,
        ))

    @staticmethod
    def requests(path: str | None, account_id: str | None, key_id: str | None,
                 method: str | None) -> Call:
        params = drop_none(path=path, account=account_id, key=key_id, method=method)
        return Call("GET", f"{P}/requests", params=params)

    @staticmethod
    def events(link_id: str | None, event: str | None, account_id: str | None) -> Call:
        params = drop_none(link=link_id, event=event, account=account_id)
        return Call("GET", f"{P}/events", params=params)

    @staticmethod
    def add_fault(kind: str, count: int | None, fields: dict[str, Any],
                  error: dict[str, Any] | None) -> Call:
        return fault_call(kind, count, fields, error)

    @staticmethod
    def refund_mode(status: str, payment_id: str | None) -> Call:
        return Call("POST", f"{P}/refund-mode", drop_none(status=status, payment_id=payment_id))

    @staticmethod
    def refund_transition(refund_id: str, action: str, wait: bool) -> Call:
        return Call("POST", f"{P}/refunds/{refund_id}/{action}", {"wait": wait})

    @staticmethod
    def dashboard_refund(payment_id: str, amount: int | None, wait: bool) -> Call:
        body = drop_none(amount=amount, wait=wait)
        return Call("POST", f"{P}/payments/{payment_id}/refunds", body)

    @staticmethod
    def refunds(payment_id: str | None) -> Call:
        return Call("GET", f"{P}/refunds", params=drop_none(payment_id=payment_id))


class RazorpayControl(BaseControl):
    """Sync control client: `RazorpayControl("http://127.0.0.1:port")`."""

    def create_account(
        self, keys: dict[str, str], *, account_id: str | None = None, name: str | None = None,
    ) -> JsonObject:
        """An account (`acc_` + 14) with these `{key_id: key_secret}` keys; its id is
        `account_id`, else derived from the first key id."""
        return self._do(_Calls.create_account(keys, account_id, name))

    def accounts(self) -> list[JsonObject]:
        return self._data(Call("GET", f"{P}/accounts"))

    def account_for_key(self, key_id: str) -> JsonObject | None:
        found = self._data(Call("GET", f"{P}/accounts", params={"key_id": key_id}))
        return found[0] if found else None

    def add_key(self, account_id: str, key_id: str, secret: str) -> JsonObject:
        body = {"key_id": key_id, "secret": secret}
        return self._do(Call("POST", f"{P}/accounts/{account_id}/keys", body))

    def revoke_key(self, key_id: str) -> None:
        self._do(Call("POST", f"{P}/revoked-keys", {"key_id": key_id}))

    def links(self, reference_id: str | None = None, *,
              account_id: str | None = None) -> list[JsonObject]:
        params = drop_none(reference_id=reference_id, account=account_id)
        return self._data(Call("GET", f"{P}/links", params=params))

    def link(self, link_id: str) -> JsonObject:
        return self._do(Call("GET", f"{P}/links/{link_id}"))

    def links_created(self) -> int:
        return int(self.stats()["links_created"])

    def transition(self, link_id: str, action: str, *, amount: int | None = None,
                   wait: bool = True, email: str | None = None) -> JsonObject:
        """`{"link", "event", "deliveries"}` after the change (and its delivery if wait)."""
        return self._do(_Calls.transition(link_id, action, amount, wait, email))

    def pay(self, link_id: str, *, wait: bool = True) -> JsonObject:
        return self.transition(link_id, "pay", wait=wait)

    def part_pay(self, link_id: str, amount: int, *, wait: bool = True) -> JsonObject:
        return self.transition(link_id, "part_pay", amount=amount, wait=wait)

    def expire(self, link_id: str, *, wait: bool = True) -> JsonObject:
        return self.transition(link_id, "expire", wait=wait)

    def cancel(self, link_id: str, *, wait: bool = True) -> JsonObject:
        return self.transition(link_id, "cancel", wait=wait)

    def events(self, link_id: str | None = None, *, event: str | None = None,
               account_id: str | None = None) -> list[JsonObject]:
        return self._data(_Calls.events(link_id, event, account_id))

    def event_payload(self, event_id: str) -> bytes:
        response = self._http.get(f"{P}/events/{event_id}/payload")
        response.raise_for_status()
        return response.content

    def deliver(self, event_id: str, *, url: str | None = None, secret: str | None = None,
                endpoint_id: str | None = None) -> list[JsonObject]:
        body = drop_none(url=url, secret=secret, endpoint_id=endpoint_id)
        return self._data(Call("POST", f"{P}/events/{event_id}/deliver", body))

    def add_webhook(
        self, url: str, secret: str, *, account_id: str | None = None,
        key_id: str | None = None, events: list[str] | None = None,
        livemode: bool | None = None, retry_delays: list[float] | None = None,
        delivery_timeout: float | None = None,
    ) -> JsonObject:
        """A webhook: `key_id` scopes it to that key's account and mode, `account_id` to an
        account (both modes unless `livemode`); neither: every event. `events` defaults to
        all four payment_link events."""
        return self._do(_Calls.add_webhook(url, secret, account_id, key_id, events, livemode,
                                           retry_delays, delivery_timeout))

    def webhooks(self, account_id: str | None = None) -> list[JsonObject]:
        return self._data(Call("GET", f"{P}/webhooks", params=drop_none(account=account_id)))

    def remove_webhook(self, webhook_id: str) -> None:
        self._do(Call("DELETE", f"{P}/webhooks/{webhook_id}"))

    def requests(self, path: str | None = None, *, account_id: str | None = None,
                 key_id: str | None = None, method: str | None = None) -> list[JsonObject]:
        return self._data(_Calls.requests(path, account_id, key_id, method))

    def add_fault(
        self, kind: str, *, count: int | None = 1, method: str | None = None,
        path: str | None = None, path_prefix: str | None = None, seconds: float | None = None,
        retry_after: int | None = None, probability: float | None = None,
        error: dict[str, Any] | None = None,
    ) -> JsonObject:
        """kind: rate_limit | api_error | latency | hold | drop | garbage | razorpay_error
        (with `error={"status", "code", "message", "param"}`); count None = until cleared."""
        fields = {"method": method, "path": path, "path_prefix": path_prefix,
                  "seconds": seconds, "retry_after": retry_after, "probability": probability}
        return self._do(_Calls.add_fault(kind, count, fields, error))


    def refund_mode(self, status: str, payment_id: str | None = None) -> JsonObject:
        """How the next refunds start: `pending` or `processed` (the default), for one
        payment or (None) for all."""
        return self._do(_Calls.refund_mode(status, payment_id))

    def refund_transition(self, refund_id: str, action: str, *,
                          wait: bool = True) -> JsonObject:
        """action: processed | failed (from pending); `{"refund", "events", "deliveries"}`."""
        return self._do(_Calls.refund_transition(refund_id, action, wait))

    def dashboard_refund(self, payment_id: str, amount: int | None = None, *,
                         wait: bool = True) -> JsonObject:
        """A refund made on the Dashboard (no notes, no receipt); the rest when None."""
        return self._do(_Calls.dashboard_refund(payment_id, amount, wait))

    def refunds(self, payment_id: str | None = None) -> list[JsonObject]:
        return self._data(_Calls.refunds(payment_id))


class AsyncRazorpayControl(BaseAsyncControl):
    """The operations async tests need, for an emulator in the test's own loop."""

    async def create_account(
        self, keys: dict[str, str], *, account_id: str | None = None, name: str | None = None,
    ) -> JsonObject:
        return await self._do(_Calls.create_account(keys, account_id, name))

    async def transition(self, link_id: str, action: str, *, amount: int | None = None,
                         wait: bool = True, email: str | None = None) -> JsonObject:
        return await self._do(_Calls.transition(link_id, action, amount, wait, email))

    async def add_webhook(
        self, url: str, secret: str, *, account_id: str | None = None,
        key_id: str | None = None, events: list[str] | None = None,
        livemode: bool | None = None, retry_delays: list[float] | None = None,
        delivery_timeout: float | None = None,
    ) -> JsonObject:
        return await self._do(_Calls.add_webhook(url, secret, account_id, key_id, events,
                                                 livemode, retry_delays, delivery_timeout))

    async def deliver(self, event_id: str, *, url: str | None = None,
                      secret: str | None = None,
                      endpoint_id: str | None = None) -> list[JsonObject]:
        body = drop_none(url=url, secret=secret, endpoint_id=endpoint_id)
        return await self._data(Call("POST", f"{P}/events/{event_id}/deliver", body))

    async def events(self, link_id: str | None = None, *, event: str | None = None,
                     account_id: str | None = None) -> list[JsonObject]:
        return await self._data(_Calls.events(link_id, event, account_id))

    async def requests(self, path: str | None = None, *, account_id: str | None = None,
                       key_id: str | None = None,
                       method: str | None = None) -> list[JsonObject]:
        return await self._data(_Calls.requests(path, account_id, key_id, method))

    async def add_fault(
        self, kind: str, *, count: int | None = 1, method: str | None = None,
        path: str | None = None, seconds: float | None = None,
        retry_after: int | None = None, probability: float | None = None,
        error: dict[str, Any] | None = None,
    ) -> JsonObject:
        fields = {"method": method, "path": path, "seconds": seconds,
                  "retry_after": retry_after, "probability": probability}
        return await self._do(_Calls.add_fault(kind, count, fields, error))

    async def refund_mode(self, status: str, payment_id: str | None = None) -> JsonObject:
        return await self._do(_Calls.refund_mode(status, payment_id))

    async def refund_transition(self, refund_id: str, action: str, *,
                                wait: bool = True) -> JsonObject:
        return await self._do(_Calls.refund_transition(refund_id, action, wait))

    async def dashboard_refund(self, payment_id: str, amount: int | None = None, *,
                               wait: bool = True) -> JsonObject:
        return await self._do(_Calls.dashboard_refund(payment_id, amount, wait))

    async def refunds(self, payment_id: str | None = None) -> list[JsonObject]:
        return await self._data(_Calls.refunds(payment_id))
