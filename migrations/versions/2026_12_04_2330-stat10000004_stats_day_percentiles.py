"""stats: the percentiles of each day's total histogram (stats_day_pct), kept by the fold (issue 10)

Filled by ``service.stats.rollup.install`` (its own hash, ``pct``), run by ``qifu migrate`` after
this migration and by ``qifu stats rebuild``.

Revision ID: stat10000004
Revises: stat10000003
Create Date: 2026-12-04 23:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'stat10000004'
down_revision: Union[str, Sequence[str], None] = 'stat10000003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('stats_day_pct',
                    sa.Column('dn', sa.Integer(), nullable=False),
                    sa.Column('duration', sa.SmallInteger(), nullable=False),
                    sa.Column('p50', sa.Float(), nullable=True),
                    sa.Column('p90', sa.Float(), nullable=True),
                    sa.PrimaryKeyConstraint('dn', 'duration', name='pk_stats_day_pct'))


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM stats_meta WHERE name = 'pct'")
    op.drop_table('stats_day_pct')
