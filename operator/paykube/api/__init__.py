"""The PaymentSession API as typed values (pure: no I/O)."""

from paykube.api.types import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Condition,
    ErrorInfo,
    HistoryEntry,
    LineItem,
    ObjectRef,
    PaymentSessionSpec,
    Phase,
    Source,
    Status,
)

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Condition",
    "ErrorInfo",
    "HistoryEntry",
    "LineItem",
    "ObjectRef",
    "PaymentSessionSpec",
    "Phase",
    "Source",
    "Status",
]
