"""paykube: payments declared as Kubernetes objects, reconciled against a PSP."""
