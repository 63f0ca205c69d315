"""How every client of ours talks to the broker: TLS (CA bundle, optional client certificate), SASL over it.

One place builds the connection options from the settings, for the Faust worker
(`faust_credentials`) and for the aiokafka producers, consumers and admin clients we create
ourselves (`client_options`), so no client speaks plaintext by accident. PHI crosses this
link: a plaintext connection to a broker that is not on this machine is logged as a warning
at start (`warn_if_plaintext`).
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from typing import TYPE_CHECKING, Any

from streams.exceptions import StreamsError

if TYPE_CHECKING:
    from streams.settings import WardflowSettings

log = logging.getLogger(__name__)


class BrokerSecurityError(StreamsError):
    """The TLS files named in the settings cannot be used (missing, unreadable, wrong password)."""


def ssl_context(settings: WardflowSettings) -> ssl.SSLContext | None:
    """A client TLS context verifying the broker (hostname and chain), or None for plaintext."""
    if not settings.broker_uses_tls:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=str(settings.broker_ca_file) if settings.broker_ca_file else None)
        if settings.broker_cert_file:
            password = settings.broker_key_password.get_secret_value() if settings.broker_key_password else None
            context.load_cert_chain(str(settings.broker_cert_file), str(settings.broker_key_file), password=password)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerSecurityError(f"cannot use the broker TLS files (--broker-ca-file, --broker-cert-file, "
                                  f"--broker-key-file): {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def security_protocol(settings: WardflowSettings) -> str:
    sasl = bool(settings.broker_username)
    if settings.broker_uses_tls:
        return "SASL_SSL" if sasl else "SSL"
    return "SASL_PLAINTEXT" if sasl else "PLAINTEXT"


def client_options(settings: WardflowSettings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
    options: dict[str, Any] = {"security_protocol": security_protocol(settings)}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.broker_username:
        options.update(sasl_mechanism=settings.broker_sasl_mechanism, sasl_plain_username=settings.broker_username,
                       sasl_plain_password=settings.broker_password.get_secret_value()
                       if settings.broker_password else "")
    return options


def faust_credentials(settings: WardflowSettings) -> Any:
    """`broker_credentials` for the Faust app (None: plaintext, no login)."""
    import faust

    context = ssl_context(settings)
    if settings.broker_username:
        password = settings.broker_password.get_secret_value() if settings.broker_password else ""
        return faust.SASLCredentials(username=settings.broker_username, password=password, ssl_context=context,
                                     mechanism=settings.broker_sasl_mechanism)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def broker_hosts(url: str) -> list[str]:
    """Host names of a `kafka://a:9092,kafka://b:9092` URL."""
    hosts = []
    for part in url.split(","):
        address = part.strip().split("://", 1)[-1]
        if address:
            hosts.append(address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[")
                         else address)
    return hosts


def warn_if_plaintext(settings: WardflowSettings) -> bool:
    """Log a warning when patient data would cross a network unencrypted; True when it warned."""
    if settings.broker_uses_tls:
        return False
    remote = [h for h in broker_hosts(settings.broker_url) if not _is_loopback(h)]
    if not remote:
        return False
    log.warning("the broker connection to %s is PLAINTEXT (%s): patient data and the SASL password cross the "
                "network unencrypted; set --broker-ca-file (TLS) unless this network is private by design",
                ", ".join(remote), security_protocol(settings))
    return True
