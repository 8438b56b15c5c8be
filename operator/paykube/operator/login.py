"""kopf's login through paykube's own credentials (`KubeAuth`), so that kopf and paykube's
client share one kubeconfig reading and one run of its exec plugin.

kopf calls the login handler at start, when the last `ConnectionInfo.expiration` has
passed, and after a 401 (it then never accepts that same info again). The two later calls
mean that the credentials last given must be replaced, unless paykube's client replaced
them meanwhile: `KubeAuth.renew` decides.
"""

from __future__ import annotations

import datetime as dt
import threading

import kopf

from paykube.errors import PaykubeError
from paykube.kube.config import Credentials, KubeConfig

RETRY_DELAY = 5.0  # seconds before kopf calls a failed login again
MIN_LIFETIME = 10.0  # seconds


class KopfLogin:
    def __init__(self, config: KubeConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._given: Credentials | None = None

    def __call__(self) -> kopf.ConnectionInfo:
        auth = self._config.auth
        with self._lock:
            try:
                credentials = auth.current() if self._given is None else auth.renew(self._given)
            except PaykubeError as exc:
                raise kopf.TemporaryError(exc.message, delay=RETRY_DELAY) from None
            self._given = credentials
        return connection_info(self._config, credentials)


def connection_info(config: KubeConfig, credentials: Credentials) -> kopf.ConnectionInfo:
    scheme, _, token = (credentials.authorization or "").partition(" ")
    identity = credentials.tls_identity
    return kopf.ConnectionInfo(
        server=config.server, ca_data=config.ca_data, insecure=config.insecure,
        scheme=scheme or None, token=token or None,
        # kopf loads them into its SSL context from files it deletes at once.
        certificate_data=identity[0] if identity else None,
        private_key_data=identity[1] if identity else None,
        default_namespace=config.namespace,
        expiration=expiration(credentials),
    )


def expiration(credentials: Credentials) -> dt.datetime | None:
    """When kopf logs in again: before the credentials end; never in less than
    MIN_LIFETIME, so that a plugin handing out nearly expired tokens cannot make kopf log
    in again at once, forever."""
    if credentials.renew_before is None:
        return None
    return max(credentials.renew_before,
               dt.datetime.now(dt.UTC) + dt.timedelta(seconds=MIN_LIFETIME))
