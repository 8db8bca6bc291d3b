"""stats: per-dimension rollup per ISO week and per calendar year (stats_dim_week*, stats_dim_year*),
working_day.year_dn (issue 10)

The rows are filled by ``service.stats.rollup.install`` (the definitions hash changes with them:
``VERSION`` 4), run by ``qifu migrate`` after this migration and by ``qifu stats rebuild``.

Revision ID: stat10000003
Revises: due000000001
Create Date: 2026-12-04 23:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'stat10000003'
down_revision: Union[str, Sequence[str], None] = 'due000000001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COUNTS = ('received', 'accepted', 'answered', 'dispatched', 'replied', 'closed', 'closed_on_time',
          'response_due', 'responded', 'rated', 'satisfied', 'closed_rated', 'reopened', 'returned')


def _dim_key():
    return [sa.Column('dim', sa.String(16), nullable=False), sa.Column('key', sa.String(16), nullable=False),
            sa.Column('dn', sa.Integer(), nullable=False)]


def upgrade() -> None:
    """Upgrade schema."""
    for level in ('week', 'year'):
        op.create_table(f'stats_dim_{level}', *_dim_key(),
                        *(sa.Column(n, sa.Integer(), nullable=False) for n in COUNTS),
                        sa.PrimaryKeyConstraint('dim', 'dn', 'key', name=f'pk_stats_dim_{level}'))
        op.create_table(f'stats_dim_{level}_hist', *_dim_key(),
                        sa.Column('duration', sa.SmallInteger(), nullable=False),
                        sa.Column('bucket', sa.SmallInteger(), nullable=False),
                        sa.Column('n', sa.Integer(), nullable=False),
                        sa.PrimaryKeyConstraint('dim', 'dn', 'key', 'duration', 'bucket',
                                                name=f'pk_stats_dim_{level}_hist'))
    with op.batch_alter_table('working_day') as batch:
        batch.add_column(sa.Column('year_dn', sa.Integer(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('working_day') as batch:
        batch.drop_column('year_dn')
    for level in ('year', 'week'):
        op.drop_table(f'stats_dim_{level}_hist')
        op.drop_table(f'stats_dim_{level}')
