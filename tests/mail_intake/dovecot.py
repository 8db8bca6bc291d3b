"""A real IMAP server for the e-mail intake's tests and benchmark: Debian's Dovecot
(``apt-get install dovecot-imapd``; ``.ci/run`` installs it when missing), started with a
configuration of its own in a temporary directory.

- listens on 127.0.0.1 only, on the first free port of 18060-18068 (helper ports of this
  project; :data:`PORTS`), plaintext ``LOGIN`` allowed (no TLS: loopback only);
- users from a ``passwd-file`` (``{PLAIN}`` passwords), Maildir mailboxes under the directory;
- as root, the mail processes run as the package's unprivileged ``dovecot`` user (Dovecot refuses
  uid 0 for mail access); otherwise as the current user;
- the master runs in the foreground (``-F``) as our child with ``PR_SET_PDEATHSIG``: if the test
  process dies, so does Dovecot. :meth:`Dovecot.stop` terminates it and removes the directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

PORTS = range(18060, 18069)
USER, PASSWORD = "intake", "intake-secret"


def available() -> bool:
    """Whether the ``dovecot`` binary is installed."""
    return shutil.which("dovecot") is not None or Path("/usr/sbin/dovecot").exists()


def _binary() -> str:
    return shutil.which("dovecot") or "/usr/sbin/dovecot"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = qifu-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
first_valid_uid = {uid}
first_valid_gid = {gid}
{run_as}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""


class Dovecot:
    """One Dovecot instance; ``with Dovecot() as server:`` starts and stops it."""

    def __init__(self, ports: range = PORTS) -> None:
        self.ports = ports
        self.root: Path | None = None
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Start on the first free port of :attr:`ports`; waits until a login works.

        Raises:
            RuntimeError: no port worked (the log's tail is in the message).
        """
        self.root = Path(tempfile.mkdtemp(prefix="qifu-dovecot-"))
        os.chmod(self.root, 0o755)  # the mail processes (another uid) go through it
        if os.geteuid() == 0:
            account = pwd.getpwnam("dovecot")
            uid, gid, run_as = account.pw_uid, account.pw_gid, ""
        else:
            me = pwd.getpwuid(os.geteuid())
            uid, gid = me.pw_uid, me.pw_gid
            run_as = f"default_internal_user = {me.pw_name}\ndefault_login_user = {me.pw_name}"
        for sub in ("mail", "home"):
            (self.root / sub).mkdir()
            os.chown(self.root / sub, uid, gid)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        errors = []
        for port in self.ports:
            if not _port_free(port):
                continue
            (self.root / "dovecot.conf").write_text(
                CONFIG.format(root=self.root, port=port, uid=uid, gid=gid, run_as=run_as))
            self.process = subprocess.Popen(
                [_binary(), "-F", "-c", str(self.root / "dovecot.conf")], stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
            self.port = port
            if self._wait_ready():
                return
            errors.append(self._log_tail())
            self._terminate()
        self.stop()
        raise RuntimeError("dovecot did not start: " + " | ".join(errors[-2:]))

    def _wait_ready(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with self.client():
                    return True
            except OSError:
                time.sleep(0.1)
            except Exception:  # noqa: BLE001 - still starting (auth not up yet)
                time.sleep(0.1)
        return False

    def _log_tail(self) -> str:
        parts = []
        for path in (self.root / "dovecot.log",):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-500:])
        if self.process is not None and self.process.stderr is not None and self.process.poll() is not None:
            parts.append(self.process.stderr.read().decode(errors="replace")[-500:])
        return " ".join(parts)

    def _terminate(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def stop(self) -> None:
        """Stop Dovecot (its children follow their master) and remove its directory."""
        self._terminate()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    # ---- clients

    def client(self, folder: str | None = None) -> IMAPClient:
        """A logged-in client (plain IMAP on loopback), with ``folder`` selected when given."""
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        try:
            client.login(USER, PASSWORD)
            if folder is not None:
                client.select_folder(folder)
        except BaseException:
            client.shutdown()
            raise
        return client

    def new_folder(self, name: str) -> str:
        """Create folder ``name`` (letters and digits) and return it."""
        with self.client() as client:
            client.create_folder(name)
        return name

    def append(self, folder: str, *messages: bytes) -> None:
        """Deliver ``messages`` to ``folder`` by IMAP APPEND (bytes as a mail client would store them)."""
        with self.client() as client:
            for raw in messages:
                client.append(folder, raw)

    def settings_env(self, folder: str) -> dict[str, str]:
        """The ``QIFU_MAIL_IMAP_*`` environment of an intake polling ``folder`` here."""
        return {"QIFU_MAIL_IMAP_HOST": "127.0.0.1", "QIFU_MAIL_IMAP_PORT": str(self.port),
                "QIFU_MAIL_IMAP_TLS": "false", "QIFU_MAIL_IMAP_USER": USER,
                "QIFU_MAIL_IMAP_PASSWORD": PASSWORD, "QIFU_MAIL_IMAP_FOLDER": folder}

    def settings(self, folder: str, **overrides):
        """:class:`service.config.Settings` of an intake polling ``folder`` here."""
        from service.config import Settings

        values = {"mail_imap_host": "127.0.0.1", "mail_imap_port": self.port, "mail_imap_tls": False,
                  "mail_imap_user": USER, "mail_imap_password": PASSWORD, "mail_imap_folder": folder}
        values.update(overrides)
        return Settings(**values)
