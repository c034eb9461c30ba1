"""HTTPS for ``serve --tls-cert FILE --tls-key FILE``: the server's ``ssl.SSLContext``."""

from __future__ import annotations

import ssl

from ..common.errors import ServerTrackError


class TlsSetupError(ServerTrackError):
    """The certificate or key of ``--tls-cert`` / ``--tls-key`` cannot be used (one line, naming the files)."""


def _no_passphrase() -> bytes:
    # Called by OpenSSL for an encrypted key: serve never prompts on a terminal.
    raise TlsSetupError("the key is encrypted; serve needs an unencrypted key (openssl pkey -in KEY -out NEW)")


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context for ``cert_file`` (PEM, the certificate and any intermediates) and ``key_file``
    (PEM, unencrypted): TLS 1.2 at least, the ``ssl`` module's default ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except TlsSetupError as error:
        raise TlsSetupError(f"cannot use --tls-key {key_file}: {error}") from None
    except (OSError, ssl.SSLError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise TlsSetupError(f"cannot use --tls-cert {cert_file} with --tls-key {key_file}: {reason}") from None
    return context
