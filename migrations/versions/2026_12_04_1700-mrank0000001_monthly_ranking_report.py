"""cadence_report.kind may be monthly_ranking (the monthly cadence stores the month's department ranking)

Revision ID: mrank0000001
Revises: srch00000001
Create Date: 2026-12-04 17:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "mrank0000001"
down_revision: str | None = "srch00000001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "kind IN ('quarterly_ranking', 'annual', 'long_open')"
NEW = "kind IN ('monthly_ranking', 'quarterly_ranking', 'annual', 'long_open')"


def upgrade() -> None:
    with op.batch_alter_table("cadence_report") as batch:
        batch.drop_constraint(op.f("ck_cadence_report_kind_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_cadence_report_kind_valid"), NEW)


def downgrade() -> None:
    op.execute("DELETE FROM cadence_report WHERE kind = 'monthly_ranking'")
    with op.batch_alter_table("cadence_report") as batch:
        batch.drop_constraint(op.f("ck_cadence_report_kind_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_cadence_report_kind_valid"), OLD)
