"""The model registry: importing this module registers every table on ``SQLModel.metadata``
(used by Alembic, the seeds and tests). Import the models themselves from their packages."""

import service.cadences.models  # noqa: F401  (the five cadences' tables, SPEC §5)
import service.calendar.models  # noqa: F401
import service.categories.models  # noqa: F401
import service.departments.models  # noqa: F401
import service.enterprises.models  # noqa: F401
import service.mail_intake.models  # noqa: F401  (the inbound e-mail ledger, issue 12)
import service.notifications.models  # noqa: F401
import service.open311.models  # noqa: F401  (Open311 API keys, issue 12)
import service.outbox_models  # noqa: F401
import service.regions.models  # noqa: F401
import service.sla.models  # noqa: F401
import service.stats.models  # noqa: F401  (the statistics rollup, issue 10)
import service.tickets.models  # noqa: F401
import service.triage.models  # noqa: F401  (training examples and stored models, issue 13)
import service.triage.search_models  # noqa: F401  (duplicates, knowledge base, hot issues)
import service.users.models  # noqa: F401
