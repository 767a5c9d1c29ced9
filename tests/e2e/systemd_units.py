"""Start a unit of ``deploy/systemd/`` as systemd would, without systemd.

What systemd does for ``systemctl start ticker-web@8001`` and these units rely on, done
here the same way: the unit file is read (repeated keys accumulate, an empty assignment
resets), specifiers are replaced (``%i``, ``%H``, ...), the environment is built from
nothing (``env -i``) with the unit's ``Environment=`` lines, then its ``EnvironmentFile=``
(which overrides them), then what systemd adds itself (``USER``, ``HOME``, a default
``PATH``, ``STATE_DIRECTORY``); ``ExecStart=`` is split into words with ``${VAR}`` and
``$VAR`` expanded, and its program run directly (no shell), as the unit's user, in its
``WorkingDirectory``, under its ``UMask``. A unit that may notify (``NotifyAccess=``) gets a
``NOTIFY_SOCKET`` whose ``MAINPID=`` messages change its main process, as systemd's does;
``reload`` runs ``ExecReload=`` with ``$MAINPID``; ``stop`` sends ``KillSignal=`` to the
main process and waits ``TimeoutStopSec=``.

The production paths are substituted, nothing else: the checkout (``/srv/ticker``) by
this repository, its virtualenv by the running one, the state directory and the secrets
file by the test's. The unit's ``User=`` (``ticker``, ``valkey``) is the test's unprivileged user: ``nobody`` when
the test runs as root, the current user otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.stack import ROOT
from tests.waiting import wait_until

# Every unit shipped under deploy/ (deploy/systemd/ for Ticker, deploy/valkey/ for Valkey).
UNITS = ROOT / "deploy"
# systemd's own search path for a program named without a directory (not the unit's PATH).
SYSTEMD_EXEC_SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin")
DEFAULT_PATH = ":".join(SYSTEMD_EXEC_SEARCH_PATH)
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|\$\$")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file: each key's values in order; ``Key=`` (empty) resets the list."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting outside any section: {line!r}"
        key, _, value = line.partition("=")
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return sections


def specifiers(unit_name: str, user: pwd.struct_passwd) -> dict[str, str]:
    """The values of the specifiers these units may use, for ``unit_name``."""
    stem, _, _suffix = unit_name.rpartition(".")
    prefix, _, instance = stem.partition("@")
    return {
        "n": unit_name,
        "N": stem,
        "p": prefix,
        "P": prefix,
        "i": instance,
        "I": instance,
        "H": socket.gethostname(),
        "u": user.pw_name,
        "U": str(user.pw_uid),
        "h": user.pw_dir,
        "%": "%",
    }


def expand_specifiers(value: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        letter = match[1]
        assert letter in values, f"specifier %{letter} is not emulated here: add it"
        return values[letter]

    return re.sub(r"%(.)", one, value)


def environment_assignments(value: str) -> dict[str, str]:
    """``Environment=A=1 "B=two words"``: whitespace-separated, quotes grouping."""
    pairs = {}
    for word in shlex.split(value):
        key, sep, val = word.partition("=")
        assert sep, f"not an assignment: {word!r}"
        pairs[key] = val
    return pairs


def read_environment_file(path: Path) -> dict[str, str]:
    """systemd's EnvironmentFile format: KEY=VALUE lines, # and ; comments, optional quotes."""
    pairs = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not an assignment: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs[key.strip()] = value
    return pairs


def expand_command(exec_start: str, env: dict[str, str]) -> list[str]:
    """ExecStart's words: ``${VAR}`` replaced inside a word, a lone ``$VAR`` word split on
    whitespace into words, unset variables empty (systemd.service(5), "Command lines")."""

    def variable(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        value = env.get(match[1], "")
        if match[2] == "-":
            return value or match[3]
        if match[2] == "+":
            return match[3] if value else ""
        return value

    argv: list[str] = []
    for word in shlex.split(exec_start):
        lone = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if lone:
            argv += env.get(lone[1], "").split()
        else:
            argv.append(VARIABLE.sub(variable, word))
    assert argv[0][0] not in "-@:+!", f"ExecStart prefixes are not emulated: {argv[0]}"
    if not argv[0].startswith("/"):
        # systemd looks a bare name up in its fixed path, never the unit's PATH.
        found = next((d for d in SYSTEMD_EXEC_SEARCH_PATH if os.access(f"{d}/{argv[0]}", os.X_OK)), None)
        assert found, f"{argv[0]}: not in systemd's search path"
        argv[0] = f"{found}/{argv[0]}"
    return argv


def unprivileged_user() -> pwd.struct_passwd:
    """Who the unit's ``User=`` becomes here: nobody when root, else the current user."""
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


@functools.cache
def drop_privileges_prefix(user: pwd.struct_passwd) -> list[str]:
    """The command that runs what follows as ``user`` with NoNewPrivileges (empty when that is us).

    On a machine whose interpreter lives in root's home (0700, pyenv) ``nobody`` cannot
    load it; only then the process keeps the capability to read and traverse what root can
    (CAP_DAC_READ_SEARCH) -- not to write: it still writes only where ``user`` may."""
    if user.pw_uid == os.geteuid():
        return []
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--no-new-privs"]
    # Not just "does it start": an interpreter whose shared library cannot be reached loads
    # the system's libpython instead, a different Python under the same name.
    same_python = f"import sys; sys.exit(sys.version != {sys.version!r})"
    probe = subprocess.run([*prefix, "--", sys.executable, "-c", same_python], capture_output=True, check=False)
    if probe.returncode != 0:
        prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return [*prefix, "--"]


class NotifySocket:
    """systemd's notification socket for one unit: records the ``MAINPID=`` it is sent."""

    def __init__(self, path: Path, on_main_pid: Callable[[int], None]) -> None:
        self.path = path
        self.on_main_pid = on_main_pid
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        # Any process of the unit may write to it (NotifyAccess=all), whatever its user.
        path.chmod(0o777)
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            try:
                message = self.sock.recv(4096).decode()
            except OSError:
                return
            for line in message.splitlines():
                key, _, value = line.partition("=")
                if key == "MAINPID":
                    self.on_main_pid(int(value))

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@dataclass
class UnitRun:
    """One unit instance (``ticker-web@8001.service``) from its template file, started as systemd would."""

    unit_name: str
    paths: dict[str, str]
    state_dir: Path
    log: Path
    text: str | None = None
    user: pwd.struct_passwd = field(default_factory=unprivileged_user)
    popen: subprocess.Popen[bytes] | None = None
    main_pid: int | None = None
    notify: NotifySocket | None = None

    def template(self) -> str:
        if self.text is not None:
            return self.text
        stem, _, suffix = self.unit_name.rpartition(".")
        prefix, at, _instance = stem.partition("@")
        name = f"{prefix}{at}.{suffix}"
        found = [path for path in UNITS.rglob(name)]
        assert len(found) == 1, f"one {name} under deploy/: {found}"
        return found[0].read_text()

    def service(self) -> dict[str, list[str]]:
        text = self.template()
        # Longest first: the virtualenv inside the checkout before the checkout.
        for production, here in sorted(self.paths.items(), key=lambda item: -len(item[0])):
            text = text.replace(production, here)
        values = specifiers(self.unit_name, self.user)
        section = parse_unit(text)["Service"]
        return {key: [expand_specifiers(v, values) for v in vs] for key, vs in section.items()}

    def environment(self, service: dict[str, list[str]]) -> dict[str, str]:
        env: dict[str, str] = {}
        for value in service.get("Environment", []):
            env.update(environment_assignments(value))
        for value in service.get("EnvironmentFile", []):
            optional = value.startswith("-")
            path = Path(value.lstrip("-"))
            if path.exists() or not optional:
                env.update(read_environment_file(path))
        env.setdefault("PATH", DEFAULT_PATH)
        # What systemd sets for a unit with User= and StateDirectory=.
        env.update(USER=self.user.pw_name, LOGNAME=self.user.pw_name, HOME=self.user.pw_dir, SHELL=self.user.pw_shell)
        if service.get("StateDirectory"):
            env["STATE_DIRECTORY"] = str(self.state_dir)
        return env

    def command(self) -> tuple[list[str], dict[str, str], Path, int]:
        """argv, environment, working directory and umask, as systemd would run them."""
        service = self.service()
        assert service.get("User"), "every unit names its (unprivileged) user"
        (exec_start,) = service["ExecStart"]
        env = self.environment(service)
        workdir = Path(service["WorkingDirectory"][-1])
        umask = int(service.get("UMask", ["0022"])[-1], 8)
        return expand_command(exec_start, env), env, workdir, umask

    def prepare_state_directory(self) -> None:
        """StateDirectory=: created and owned by the unit's user, with its mode."""
        mode = int(self.service().get("StateDirectoryMode", ["0755"])[-1], 8)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.state_dir, self.user.pw_uid, self.user.pw_gid)
        self.state_dir.chmod(mode)

    def start(self) -> None:
        argv, env, workdir, umask = self.command()
        service = self.service()
        if service.get("StateDirectory"):
            self.prepare_state_directory()
        if service.get("NotifyAccess", ["none"])[-1] != "none" or service.get("Type") == ["notify"]:
            # Beside the state directory: a place the unit's user can reach.
            path = self.state_dir.parent / f"notify-{self.unit_name}.sock"
            self.notify = NotifySocket(path, self._main_pid_changed)
            env["NOTIFY_SOCKET"] = str(path)
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            [*drop_privileges_prefix(self.user), *argv],
            env=env,
            cwd=workdir,
            umask=umask,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        self.main_pid = self.popen.pid

    def _main_pid_changed(self, pid: int) -> None:
        self.main_pid = pid

    def reload(self) -> None:
        """``systemctl reload``: each ``ExecReload=`` with ``$MAINPID``, as the unit's user."""
        _argv, env, workdir, umask = self.command()
        env["MAINPID"] = str(self.main_pid)
        for command in self.service()["ExecReload"]:
            done = subprocess.run(
                [*drop_privileges_prefix(self.user), *expand_command(command, env)],
                env=env,
                cwd=workdir,
                umask=umask,
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert done.returncode == 0, done

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        """A one-off command with this unit's user, environment and directory (what an
        operator runs with ``systemd-run --uid=ticker -p EnvironmentFile=...``: migrate)."""
        _argv, env, workdir, umask = self.command()
        return subprocess.run(
            [*drop_privileges_prefix(self.user), *argv],
            env=env,
            cwd=workdir,
            umask=umask,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def alive(self) -> bool:
        if self.popen is None or self.main_pid is None:
            return False
        self.popen.poll()  # reaps the first main process once it exits
        return running(self.main_pid)

    def stop(self) -> float | None:
        """KillSignal= to the main process (KillMode=mixed), SIGKILL to the group after
        TimeoutStopSec=; returns the seconds it took to exit, None if it had to be killed."""
        took: float | None = 0.0
        if self.popen is not None and self.main_pid is not None and self.alive():
            service = self.service()
            kill_signal = getattr(signal, service.get("KillSignal", ["SIGTERM"])[-1])
            timeout = float(service.get("TimeoutStopSec", ["90"])[-1])
            started = time.monotonic()
            os.kill(self.main_pid, kill_signal)
            try:
                # A main process that is not our child (a successor) cannot be waited for: polled.
                wait_until(lambda: not self.alive(), timeout, f"{self.unit_name} to exit")
                took = time.monotonic() - started
            except AssertionError:
                took = None
        if self.popen is not None:
            # The whole group, successors included (they inherit it), as systemd's cgroup.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
            self.popen = None
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        return took
