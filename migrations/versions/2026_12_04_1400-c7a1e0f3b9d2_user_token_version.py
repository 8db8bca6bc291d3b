"""user_account.token_version: access tokens issued before a password or role change stop working

Revision ID: c7a1e0f3b9d2
Revises: 91efe46cecb6
Create Date: 2026-12-04 14:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'c7a1e0f3b9d2'
down_revision: Union[str, Sequence[str], None] = '91efe46cecb6'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('user_account', sa.Column('token_version', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column('user_account', 'token_version')
