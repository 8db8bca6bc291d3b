"""``qifu user``: create a login user from the command line, e.g. the first administrator of a fresh
production stack (issue 11).

Wired into the ``qifu`` command as ``app.add_typer(user_app, name="user")``::

    qifu user create admin --full-name 管理员                    # password asked twice, hidden
    printf '%s\\n' "$PASSWORD" | qifu user create admin --full-name 管理员 --password-stdin
    QIFU_USER_PASSWORD=... qifu user create admin --full-name 管理员

The password never comes from the command line (it would show in ``ps`` and the shell history).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

user_app = typer.Typer(help="用户：创建登录用户（如生产环境的第一个管理员）", no_args_is_help=True)

PASSWORD_ENV = "QIFU_USER_PASSWORD"


def _interactive() -> bool:
    return sys.stdin.isatty()


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not _interactive():
        typer.echo(f"错误：没有终端可询问密码；请用 --password-stdin 或环境变量 {PASSWORD_ENV}", err=True)
        raise typer.Exit(2)
    return typer.prompt("密码", hide_input=True, confirmation_prompt=True)


@user_app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="login name: letters, digits, _ . @ -")],
    full_name: Annotated[str, typer.Option(help="the person's name")],
    role: Annotated[str, typer.Option(help="admin | supervisor | officer | department | enterprise")] = "admin",
    enterprise_id: Annotated[int | None, typer.Option(help="an enterprise user's enterprise")] = None,
    department_id: Annotated[int | None, typer.Option(help="a department user's department")] = None,
    region_id: Annotated[int | None, typer.Option(help="a supervisor's region (default: the whole county)")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from the first "
                                                 "line of standard input")] = False,
) -> None:
    """Create a login user (Argon2-hashed password, the same rules as POST /api/v1/users). The
    password comes from --password-stdin, else QIFU_USER_PASSWORD, else a hidden prompt.
    Exit code 2 on bad input or a username already taken."""
    from pydantic import ValidationError

    from service.db import session_scope
    from service.errors import AppError
    from service.reference.service import create_user
    from service.users.schemas import UserCreate

    password = _password(password_stdin)
    try:
        data = UserCreate(username=username, full_name=full_name, password=password, role=role,
                          enterprise_id=enterprise_id, department_id=department_id, region_id=region_id)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(map(str, error["loc"])) or "input"
            typer.echo(f"错误：{field}: {error['msg']}", err=True)
        raise typer.Exit(2) from None
    try:
        with session_scope() as session:
            user = create_user(session, data)
            user_id = user.id
    except AppError as exc:
        typer.echo(f"错误：{exc.detail}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"已创建用户 {username}（id {user_id}，角色 {data.role.value}）")
