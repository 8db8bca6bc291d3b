"""stats rollup: stats_day, stats_day_hist, stats_delta, working_day, stats_meta; ticket index for overdue now (issue 10)

The triggers on ``ticket`` that keep the rollup, the calendar rows and the rollup's contents are
generated from the metric definitions by ``service.stats.rollup.install`` (run by ``qifu migrate``
after this migration, and by ``qifu stats rebuild``), not stored here.

Revision ID: rollup000001
Revises: mrank0000001
Create Date: 2026-12-04 17:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'rollup000001'
down_revision: Union[str, Sequence[str], None] = 'mrank0000001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

KEY = ('dn', 'department_id', 'grid_id', 'category_id', 'channel', 'officer_id', 'service_type')
COUNTS = ('received', 'accepted', 'answered', 'dispatched', 'replied', 'closed', 'closed_on_time',
          'response_due', 'responded', 'rated', 'satisfied', 'closed_rated', 'reopened', 'returned')


def _key(nullable=False):
    return [sa.Column(name, sa.String(16) if name in ('channel', 'service_type') else sa.Integer(),
                      nullable=nullable) for name in KEY]


def _counts():
    return [sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('stats_day', *_key(), *_counts(), sa.PrimaryKeyConstraint(*KEY, name='pk_stats_day'))
    op.create_table('stats_day_hist', *_key(),
                    sa.Column('duration', sa.SmallInteger(), nullable=False),
                    sa.Column('bucket', sa.SmallInteger(), nullable=False),
                    sa.Column('n', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint(*KEY, 'duration', 'bucket', name='pk_stats_day_hist'))
    for name in ('stats_dim_day', 'stats_dim_hist'):
        dim_key = [sa.Column('dim', sa.String(16), nullable=False), sa.Column('key', sa.String(16), nullable=False),
                   sa.Column('dn', sa.Integer(), nullable=False)]
        if name == 'stats_dim_day':
            op.create_table(name, *dim_key, *_counts(), sa.PrimaryKeyConstraint('dim', 'key', 'dn', name='pk_stats_dim_day'))
        else:
            op.create_table(name, *dim_key,
                            sa.Column('duration', sa.SmallInteger(), nullable=False),
                            sa.Column('bucket', sa.SmallInteger(), nullable=False),
                            sa.Column('n', sa.Integer(), nullable=False),
                            sa.PrimaryKeyConstraint('dim', 'key', 'dn', 'duration', 'bucket', name='pk_stats_dim_hist'))
    op.create_table('stats_delta', *_key(),
                    sa.Column('b_hours_to_claim', sa.SmallInteger(), nullable=True),
                    sa.Column('b_hours_to_reply', sa.SmallInteger(), nullable=True),
                    sa.Column('b_hours_to_close', sa.SmallInteger(), nullable=True),
                    *_counts())
    op.create_table('working_day',
                    sa.Column('dn', sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column('cum', sa.BigInteger(), nullable=False),
                    sa.Column('wd', sa.SmallInteger(), nullable=False),
                    sa.Column('week', sa.Integer(), nullable=False),
                    sa.Column('month', sa.Integer(), nullable=False),
                    sa.Column('quarter', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('dn'))
    op.create_table('stats_meta',
                    sa.Column('name', sa.String(length=32), nullable=False),
                    sa.Column('value', sa.String(length=128), nullable=False),
                    sa.PrimaryKeyConstraint('name'))
    op.create_index('ix_ticket_running_due', 'ticket', ['submitted_at', 'due_at'], unique=False,
                    postgresql_where=sa.text("due_at IS NOT NULL AND due_step <> 'feedback'"),
                    sqlite_where=sa.text("due_at IS NOT NULL AND due_step <> 'feedback'"))


def downgrade() -> None:
    """Downgrade schema (the triggers go first: they write stats_delta)."""
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        for name in ('stats_ticket_ins', 'stats_ticket_upd', 'stats_ticket_del', 'stats_ticket_trunc'):
            op.execute(f'DROP TRIGGER IF EXISTS {name} ON ticket')
            op.execute(f'DROP FUNCTION IF EXISTS {name}()')
    else:
        for name in ('stats_ticket_ins', 'stats_ticket_upd', 'stats_ticket_del'):
            op.execute(f'DROP TRIGGER IF EXISTS {name}')
    op.drop_index('ix_ticket_running_due', table_name='ticket',
                  postgresql_where=sa.text("due_at IS NOT NULL AND due_step <> 'feedback'"),
                  sqlite_where=sa.text("due_at IS NOT NULL AND due_step <> 'feedback'"))
    for table in ('stats_meta', 'working_day', 'stats_delta', 'stats_dim_hist', 'stats_dim_day', 'stats_day_hist',
                  'stats_day'):
        op.drop_table(table)
