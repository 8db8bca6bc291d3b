"""The model registry: importing this module registers every table on ``SQLModel.metadata``
(used by Alembic, workers and tests)."""

import service.cadences.models  # noqa: F401  (the five cadences' tables, SPEC §5)
from service.calendar.models import CalendarOverride
from service.categories.models import Category
from service.departments.models import Department
from service.enterprises.models import Enterprise
from service.notifications.models import Notification, NotificationDelivery
from service.outbox_models import OutboxMessage
from service.regions.models import Grid, Region
from service.sla.models import SlaPolicy
from service.tickets.models import (
    IdempotencyKey,
    Ticket,
    TicketCoDepartment,
    TicketEvent,
    TicketLink,
    TicketNumberCounter,
)
from service.users.models import OfficerGrid, User

__all__ = [
    "CalendarOverride", "SlaPolicy", "Notification", "NotificationDelivery", "OutboxMessage", "Category", "Department", "Enterprise", "Grid", "IdempotencyKey", "OfficerGrid", "Region",
    "Ticket", "TicketCoDepartment", "TicketEvent", "TicketLink", "TicketNumberCounter", "User",
]
