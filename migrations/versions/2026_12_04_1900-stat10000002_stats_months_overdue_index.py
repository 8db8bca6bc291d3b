"""stats: per-dimension rollup per month (stats_dim_month, stats_dim_month_hist), working_day.month_dn,
and the "overdue now" index widened to the statistics' key columns (issue 10)

The rows of the new tables are filled by ``service.stats.rollup.install`` (the definitions hash
changes with them), run by ``qifu migrate`` after this migration and by ``qifu stats rebuild``.

Revision ID: stat10000002
Revises: intk00000002
Create Date: 2026-12-04 19:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'stat10000002'
down_revision: Union[str, Sequence[str], None] = 'intk00000002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COUNTS = ('received', 'accepted', 'answered', 'dispatched', 'replied', 'closed', 'closed_on_time',
          'response_due', 'responded', 'rated', 'satisfied', 'closed_rated', 'reopened', 'returned')
RUNNING = "due_at IS NOT NULL AND due_step <> 'feedback'"
WIDE = ['submitted_at', 'due_at', 'lead_department_id', 'grid_id', 'category_id', 'channel', 'officer_id',
        'service_type']


def _dim_key():
    return [sa.Column('dim', sa.String(16), nullable=False), sa.Column('key', sa.String(16), nullable=False),
            sa.Column('dn', sa.Integer(), nullable=False)]


def _dim_pk(order) -> None:
    """The per-dimension tables' primary keys in ``order`` (upgrade: a dimension's rows of a run of
    days lie together, so a period reads one index range)."""
    for table, extra in (('stats_dim_day', ()), ('stats_dim_hist', ('duration', 'bucket'))):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f'pk_{table}', type_='primary')
            batch.create_primary_key(f'pk_{table}', [*order, *extra])


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('stats_dim_month', *_dim_key(),
                    *(sa.Column(n, sa.Integer(), nullable=False) for n in COUNTS),
                    sa.PrimaryKeyConstraint('dim', 'dn', 'key', name='pk_stats_dim_month'))
    op.create_table('stats_dim_month_hist', *_dim_key(),
                    sa.Column('duration', sa.SmallInteger(), nullable=False),
                    sa.Column('bucket', sa.SmallInteger(), nullable=False),
                    sa.Column('n', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('dim', 'dn', 'key', 'duration', 'bucket', name='pk_stats_dim_month_hist'))
    with op.batch_alter_table('working_day') as batch:
        batch.add_column(sa.Column('month_dn', sa.Integer(), nullable=True))
    _dim_pk(('dim', 'dn', 'key'))
    op.drop_index('ix_ticket_running_due', table_name='ticket', postgresql_where=sa.text(RUNNING),
                  sqlite_where=sa.text(RUNNING))
    op.create_index('ix_ticket_running_due', 'ticket', WIDE, unique=False, postgresql_where=sa.text(RUNNING),
                    sqlite_where=sa.text(RUNNING))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_ticket_running_due', table_name='ticket', postgresql_where=sa.text(RUNNING),
                  sqlite_where=sa.text(RUNNING))
    op.create_index('ix_ticket_running_due', 'ticket', ['submitted_at', 'due_at'], unique=False,
                    postgresql_where=sa.text(RUNNING), sqlite_where=sa.text(RUNNING))
    _dim_pk(('dim', 'key', 'dn'))
    with op.batch_alter_table('working_day') as batch:
        batch.drop_column('month_dn')
    op.drop_table('stats_dim_month_hist')
    op.drop_table('stats_dim_month')
