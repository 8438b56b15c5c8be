"""paykube-dashboard: a read-only web view of the reporting mirror (transaction monitoring)."""
