"""attachments: files on tickets and events (issue 12, docs/attachments.md); ticket.attachment_count

Revision ID: att000000001
Revises: c7a1e0f3b9d2
Create Date: 2026-12-04 16:20:45

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes  # noqa: F401

import service.db.types


# revision identifiers, used by Alembic.
revision: str = 'att000000001'
down_revision: Union[str, Sequence[str], None] = 'c7a1e0f3b9d2'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('attachment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('storage_key', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', service.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('size > 0', name=op.f('ck_attachment_size_positive')),
    sa.ForeignKeyConstraint(['event_id'], ['ticket_event.id'], name=op.f('fk_attachment_event_id_ticket_event')),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], name=op.f('fk_attachment_ticket_id_ticket')),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['user_account.id'], name=op.f('fk_attachment_uploaded_by_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachment')),
    sa.UniqueConstraint('ticket_id', 'sha256', name=op.f('uq_attachment_ticket_id_sha256'))
    )
    op.create_index(op.f('ix_attachment_event_id'), 'attachment', ['event_id'], unique=False)
    op.create_index(op.f('ix_attachment_sha256'), 'attachment', ['sha256'], unique=False)
    op.add_column('ticket', sa.Column('attachment_count', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_column('attachment_count')
    op.drop_index(op.f('ix_attachment_sha256'), table_name='attachment')
    op.drop_index(op.f('ix_attachment_event_id'), table_name='attachment')
    op.drop_table('attachment')
