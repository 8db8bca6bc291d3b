"""stats: the deadline rollup of "overdue now" (stats_due_delta, stats_due_day, stats_due_month)
and, on PostgreSQL, the running deadlines indexed by deadline (issue 10)

The rows and the triggers are made by ``service.stats.rollup.install`` (its own definitions hash,
``due_definitions``), run by ``qifu migrate`` after this migration and by ``qifu stats rebuild``.

Revision ID: due000000001
Revises: stat10000002
Create Date: 2026-12-04 22:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'due000000001'
down_revision: Union[str, Sequence[str], None] = 'stat10000002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

RUNNING = "due_at IS NOT NULL AND due_step <> 'feedback'"
DUE_AT = ['due_at', 'submitted_at', 'lead_department_id', 'grid_id', 'category_id', 'channel', 'officer_id',
          'service_type']
TRIGGERS = ('stats_due_ins', 'stats_due_upd', 'stats_due_del', 'stats_due_trunc')


def _due():
    return [sa.Column('due_dn', sa.Integer(), nullable=False), sa.Column('n', sa.Integer(), nullable=False)]


def _dim_key():
    return [sa.Column('dim', sa.String(16), nullable=False), sa.Column('key', sa.String(16), nullable=False),
            sa.Column('dn', sa.Integer(), nullable=False)]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('stats_due_delta',
                    sa.Column('dn', sa.Integer(), nullable=False),
                    sa.Column('department_id', sa.Integer(), nullable=False),
                    sa.Column('grid_id', sa.Integer(), nullable=False),
                    sa.Column('category_id', sa.Integer(), nullable=False),
                    sa.Column('channel', sa.String(16), nullable=False),
                    sa.Column('officer_id', sa.Integer(), nullable=False),
                    sa.Column('service_type', sa.String(16), nullable=False),
                    *_due())
    for table in ('stats_due_day', 'stats_due_month'):
        op.create_table(table, *_dim_key(), *_due(),
                        sa.PrimaryKeyConstraint('dim', 'dn', 'key', 'due_dn', name=f'pk_{table}'))
    if op.get_bind().dialect.name == 'postgresql':
        op.create_index('ix_ticket_running_due_at', 'ticket', DUE_AT, unique=False,
                        postgresql_where=sa.text(RUNNING))


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == 'postgresql':
        for name in TRIGGERS:
            op.execute(f'DROP TRIGGER IF EXISTS {name} ON ticket')
            op.execute(f'DROP FUNCTION IF EXISTS {name}()')
        op.execute("DELETE FROM stats_meta WHERE name IN ('due_definitions', 'due_horizon')")
        op.drop_index('ix_ticket_running_due_at', table_name='ticket', postgresql_where=sa.text(RUNNING))
    op.drop_table('stats_due_month')
    op.drop_table('stats_due_day')
    op.drop_table('stats_due_delta')
