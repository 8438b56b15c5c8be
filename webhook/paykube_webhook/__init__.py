"""The paykube webhook service: verified Stripe events become PaymentSession status."""
