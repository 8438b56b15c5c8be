"""PaymentRefund: the pure lifecycle and the per-session reservation (docs/refunds.md)."""
