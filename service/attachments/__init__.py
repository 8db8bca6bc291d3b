"""Attachments (附件) on tickets and their events (issue 12, docs/attachments.md)."""
