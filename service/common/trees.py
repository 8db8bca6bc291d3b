"""Trees of reference rows linked by ``parent_id`` (regions: county → town → …; categories: service
type → topic), SPEC §2."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session


def subtree_ids(session: Session, model, root_id: int) -> list[int]:
    """Ids of ``root_id`` and all its descendants in ``model``'s ``parent_id`` tree, root first;
    ``[]`` when ``root_id`` is not a row. The reference tables are small: read once, walked in Python."""
    parents = dict(session.execute(sa.select(model.id, model.parent_id)).all())
    if root_id not in parents:
        return []
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    out, todo = [], [root_id]
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(children.get(node, []))
    return out
