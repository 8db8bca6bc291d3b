"""enterprise: latitude, longitude and contact_email (issue 12: Open311 location, e-mail intake)

Revision ID: ent120000002
Revises: op311a000001
Create Date: 2026-12-04 19:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = 'ent120000002'
down_revision: Union[str, Sequence[str], None] = 'op311a000001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: three nullable columns (``address`` exists since the first revision)."""
    with op.batch_alter_table('enterprise', schema=None) as batch_op:
        batch_op.add_column(sa.Column('latitude', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('longitude', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('contact_email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('enterprise', schema=None) as batch_op:
        batch_op.drop_column('contact_email')
        batch_op.drop_column('longitude')
        batch_op.drop_column('latitude')
