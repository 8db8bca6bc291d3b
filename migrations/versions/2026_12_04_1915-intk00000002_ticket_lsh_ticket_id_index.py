"""ticket_lsh: index on ticket_id, for the near-duplicate index's batch job (intake, session 3)

The one-statement intake no longer writes the 16 ``ticket_lsh`` rows of a new ticket; the periodic
job ``service.triage.duplicates.index_pending`` does, and finds the highest indexed ticket and the
tickets without rows through this index (docs/performance.md "Intake, session 3").

Revision ID: intk00000002
Revises: ent120000002
Create Date: 2026-12-04 19:15:00

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = 'intk00000002'
down_revision: Union[str, Sequence[str], None] = 'ent120000002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('ticket_lsh', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_lsh_ticket_id', ['ticket_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('ticket_lsh', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_lsh_ticket_id')
