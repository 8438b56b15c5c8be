"""The PSP types the webhook serves: each registers its route family, verifier and event
mapping here, and nowhere else (the application imports no PSP)."""

from __future__ import annotations

from paykube.settings import Settings
from paykube_webhook.schemes import WebhookScheme
from paykube_webhook.schemes.razorpay import RazorpayScheme
from paykube_webhook.schemes.stripe import StripeScheme


def webhook_schemes(settings: Settings) -> list[WebhookScheme]:
    return [StripeScheme(settings.webhook_tolerance), RazorpayScheme()]
