"""SLA policy management (SPEC §4)."""

from __future__ import annotations

from sqlmodel import Session, select

from service import clock
from service.categories.models import Category
from service.errors import FieldError
from service.sla.models import SlaPolicy
from service.sla.policy import clear_cache


def upsert_policy(session: Session, *, category_id: int, priority: str, step: str, amount: int,
                  unit: str) -> SlaPolicy:
    """Create or replace the limit of ``(category_id, priority, step)``. Existing tickets keep
    their deadlines (they were computed with the policy in force when each step started).

    Raises:
        FieldError (422): unknown category; ``first_reply`` outside consultations; ``reply``
            on a consultation category.
    """
    category = session.get(Category, category_id)
    if category is None:
        raise FieldError("category_id", f"分类 {category_id} 不存在")
    if step == "first_reply" and category.service_type != "consultation":
        raise FieldError("step", "first_reply 只适用于政策咨询类")
    if step == "reply" and category.service_type == "consultation":
        raise FieldError("step", "政策咨询类的答复时限请设置 first_reply")
    row = session.exec(select(SlaPolicy).where(SlaPolicy.category_id == category_id,
                                               SlaPolicy.priority == priority, SlaPolicy.step == step)).first()
    if row is None:
        row = SlaPolicy(category_id=category_id, priority=priority, step=step, amount=amount, unit=unit)
        session.add(row)
    else:
        row.amount, row.unit, row.updated_at = amount, unit, clock.now()
    session.flush()
    clear_cache()
    return row
