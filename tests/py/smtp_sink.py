"""A real SMTP server (aiosmtpd) for hookd's email tests.

Listens on 127.0.0.1 on a free port, prints `READY <port>` once it accepts connections, and
appends every message it accepts to the --out file as one JSON line (envelope, authenticated
user, whether the connection was encrypted, and the parsed message). Exits when its stdin closes,
so it never outlives the test that started it.

Modes: plain (no TLS), starttls (STARTTLS required before anything else), tls (TLS from the
first byte). With --user/--password, AUTH is required.
"""

import argparse
import asyncio
import email
import email.policy
import json
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Recorder:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        user = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            user = session.auth_data.login.decode()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth_user": user,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "message_id": str(msg["message-id"]),
            "event_id_header": str(msg["x-hookd-event-id"]),
            "content_type": msg.get_content_type(),
            "body": msg.get_content(),
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 OK"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == user
              and auth_data.password.decode() == password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
    return check


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    ctx = None
    if a.mode != "plain":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)

    def factory():
        kw = {"hostname": "sink.test", "decode_data": False}
        if a.user:
            # Over implicit TLS the whole connection is encrypted, which aiosmtpd does not see
            # as "TLS" for AUTH purposes; STARTTLS mode requires the upgrade before AUTH.
            kw.update(authenticator=authenticator(a.user, a.password), auth_required=True,
                      auth_require_tls=(a.mode == "starttls"))
        if a.mode == "starttls":
            kw.update(tls_context=ctx, require_starttls=True)
        return SMTP(Recorder(a.out), **kw)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0,
                                      ssl=ctx if a.mode == "tls" else None)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


asyncio.run(main())
