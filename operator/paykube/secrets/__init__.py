"""Credentials from external secret stores (AWS Secrets Manager) and their readiness.

Adapter layer: imports paykube.api, paykube.errors and paykube.settings only. Import from
the modules (`.aws`, `.health`, `.stripe_secrets`): the package itself loads nothing, so
boto3 is imported only where AWS is actually used.
"""
