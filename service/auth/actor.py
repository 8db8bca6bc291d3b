"""The authenticated caller and their row-visibility scope (SPEC §1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Actor:
    """Who is acting: a logged-in user, or the system (workers, imports).

    ``enterprise_id`` is set for enterprise users, ``department_id`` for department handlers,
    ``region_id`` for supervisors limited to a region subtree (``None`` = whole county).
    """

    user_id: int | None
    role: str
    enterprise_id: int | None = None
    department_id: int | None = None
    region_id: int | None = None
    username: str = ""

    @classmethod
    def system(cls) -> Actor:
        """The actor used by workers and imports (role ``system``, no user)."""
        return cls(user_id=None, role="system", username="system")


def actor_of(user: Any) -> Actor:
    """Build the :class:`Actor` of a user (a ``User`` entity or a row with the same column names:
    ``id``, ``role``, ``enterprise_id``, ``department_id``, ``region_id``, ``username``)."""
    return Actor(user_id=user.id, role=user.role, enterprise_id=user.enterprise_id,
                 department_id=user.department_id, region_id=user.region_id, username=user.username)
