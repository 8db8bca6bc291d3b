"""``qifu open311 key``: issue, list and revoke the API keys of Open311 GeoReport v2 (issue 12,
docs/open311.md). The same rules as ``/api/v1/open311/keys``.

    qifu open311 key create "12345 市民热线门户"                    # any enterprise, by attribute[uscc]
    qifu open311 key create "某企业自有系统" --enterprise-id 7       # only enterprise 7
    qifu open311 key list
    qifu open311 key revoke 3

The key is printed once, on standard output alone (``create`` writes its other lines to standard
error), so that ``KEY=$(qifu open311 key create ...)`` captures only the key.
"""

from __future__ import annotations

from typing import Annotated

import typer

open311_app = typer.Typer(help="Open311 GeoReport v2：API 密钥", no_args_is_help=True)
key_app = typer.Typer(help="API 密钥：签发、列出、吊销", no_args_is_help=True)
open311_app.add_typer(key_app, name="key")


@key_app.command("create")
def create(
    system_name: Annotated[str, typer.Argument(help="the integrating system's name")],
    enterprise_id: Annotated[int | None, typer.Option(help="the one enterprise the key may submit for "
                                                      "(default: any, named by attribute[uscc])")] = None,
    channel: Annotated[str, typer.Option(help="the channel of its tickets")] = "open311",
) -> None:
    """Issue a key; prints it once (only its SHA-256 is stored). Exit code 2 on bad input."""
    from pydantic import ValidationError

    from service.auth.actor import Actor
    from service.db import session_scope
    from service.errors import AppError
    from service.open311 import schemas
    from service.open311 import service as open311

    try:
        data = schemas.KeyCreate(system_name=system_name, enterprise_id=enterprise_id, channel=channel)
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"错误：{'.'.join(map(str, error['loc'])) or 'input'}: {error['msg']}", err=True)
        raise typer.Exit(2) from None
    try:
        with session_scope() as session:
            row, raw = open311.create_key(session, Actor.system(), data)
            key_id, prefix = row.id, row.key_prefix
    except AppError as exc:
        typer.echo(f"错误：{exc.detail}", err=True)
        raise typer.Exit(2) from None
    scope = f"企业 {enterprise_id}" if enterprise_id is not None else "任意企业（attribute[uscc]）"
    typer.echo(f"已签发密钥 {key_id}（{prefix}…，{system_name}，{scope}）；仅显示这一次：", err=True)
    typer.echo(raw)


@key_app.command("list")
def list_keys() -> None:
    """List the keys (never the keys themselves: their first characters)."""
    from service.db import session_scope
    from service.open311 import service as open311

    with session_scope() as session:
        for row in open311.list_keys(session):
            state = f"吊销于 {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "有效"
            scope = f"企业 {row.enterprise_id}" if row.enterprise_id is not None else "任意企业"
            typer.echo(f"{row.id}\t{row.key_prefix}…\t{row.system_name}\t{row.channel}\t{scope}\t{state}")


@key_app.command("revoke")
def revoke(key_id: Annotated[int, typer.Argument(help="the key's id (qifu open311 key list)")]) -> None:
    """Revoke a key (at once in this process; within 5 s in the running API processes)."""
    from service.db import session_scope
    from service.errors import AppError
    from service.open311 import service as open311

    try:
        with session_scope() as session:
            open311.revoke_key(session, key_id)
    except AppError as exc:
        typer.echo(f"错误：{exc.detail}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"已吊销密钥 {key_id}")
