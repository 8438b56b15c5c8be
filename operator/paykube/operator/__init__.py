"""The kopf operator program: reconciles PaymentSessions against the provider."""
