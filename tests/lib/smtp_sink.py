#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A real SMTP server for the tests (aiosmtpd): every message it accepts is stored byte for byte
as one file in MAILDIR/new, written under MAILDIR/tmp first and renamed, so a reader never sees
half a message. Each file starts with X-Envelope-From, X-Envelope-To, X-Peer (ip:port, one port
per connection), X-TLS and X-Auth lines, then the message exactly as received.

Options make it behave like servers the daemon meets: --delay per message (a slow server),
--reject / --defer for recipients containing a text (550 / 451 at RCPT), --tls CERT KEY for
STARTTLS, --auth USER:PASSWORD to require authentication (only over TLS). Runs until SIGTERM.
Needs Debian's python3-aiosmtpd: run it with /usr/bin/python3."""

import argparse
import asyncio
import itertools
import os
import signal
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, maildir, delay, reject, defer):
        self.maildir = maildir
        self.delay = delay
        self.reject = reject
        self.defer = defer
        self.serial = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject and self.reject in address:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        if self.defer and self.defer in address:
            return "451 4.3.0 <%s>: try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        login = getattr(session, "auth_data", None) or getattr(session, "login_data", None)
        head = (
            "X-Envelope-From: %s\r\n"
            "X-Envelope-To: %s\r\n"
            "X-Peer: %s:%s\r\n"
            "X-TLS: %s\r\n"
            "X-Auth: %s\r\n"
            % (
                envelope.mail_from,
                ", ".join(envelope.rcpt_tos),
                session.peer[0],
                session.peer[1],
                "yes" if session.ssl else "no",
                login.decode() if isinstance(login, bytes) else (login or ""),
            )
        ).encode()
        name = "%d.%06d.eml" % (time.time_ns(), next(self.serial))
        tmp = os.path.join(self.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(head + envelope.original_content)
        os.rename(tmp, os.path.join(self.maildir, "new", name))
        return "250 2.0.0 OK: stored as %s" % name


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--reject", default="")
    p.add_argument("--defer", default="")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth", default="", metavar="USER:PASSWORD")
    p.add_argument("--ready", default="", metavar="FILE", help="created once listening")
    a = p.parse_args()
    for d in ("tmp", "new"):
        os.makedirs(os.path.join(a.maildir, d), exist_ok=True)

    kwargs = {}
    if a.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls[0], a.tls[1])
        kwargs["tls_context"] = ctx
    if a.auth:
        user, _, password = a.auth.partition(":")

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                getattr(auth_data, "login", None) == user.encode()
                and getattr(auth_data, "password", None) == password.encode()
            )
            # handled=False: the server sends its own 535 (the default leaves the client waiting).
            return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)

    controller = Controller(
        Sink(a.maildir, a.delay, a.reject, a.defer), hostname="127.0.0.1", port=a.port, **kwargs
    )
    controller.start()
    print("smtp_sink: listening on 127.0.0.1:%d" % a.port, flush=True)
    if a.ready:
        open(a.ready, "w").close()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main())
