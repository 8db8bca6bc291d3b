"""The model registry: importing this module registers every table on ``SQLModel.metadata``
(used by Alembic, the seeds and tests). Import the models themselves from their packages."""

import service.cadences.models  # noqa: F401  (the five cadences' tables, SPEC §5)
import service.calendar.models  # noqa: F401
import service.categories.models  # noqa: F401
import service.departments.models  # noqa: F401
import service.enterprises.models  # noqa: F401
import service.notifications.models  # noqa: F401
import service.outbox_models  # noqa: F401
import service.regions.models  # noqa: F401
import service.sla.models  # noqa: F401
import service.stats.models  # noqa: F401  (the statistics rollup, issue 10)
import service.tickets.models  # noqa: F401
import service.users.models  # noqa: F401
